--- Adam with the reference's defaults (lr 3e-4, betas 0.9/0.999, eps 1e-8, linear
-- warm-up over 100 steps), gradient-norm clipping and an optional EMA of the weights.
-- The update is one fused C loop over the flat parameter arena (core.adam_step).
local core = require "jukebox.core"
local options = require "jukebox.options"

local optim = {}

local Adam = {}
Adam.__index = Adam
optim.Adam = Adam

optim.adam_defaults = {
  lr = 3e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0,
  warmup = 100, clip = math.huge, ema = nil, -- ema: decay of a weight average (e.g. 0.999), or nil
}

--- optim.adam(named_params, opts): named_params as from Module:named_parameters().
-- The parameters move into one flat arena (core.param_arena) and their gradients into
-- another: Adam is one fused loop over the arena, zero_grad one memset, and the
-- gradient all-reduce of data-parallel training (core.dist) one call. Moments and the
-- EMA are flat too; state_tensors gives views of them by parameter name, so
-- checkpoints are unchanged. A parameter the loss did not reach has a zero gradient.
function optim.adam(named_params, opts)
  local o = options.merge("optim.adam", optim.adam_defaults, opts, { optional = { "ema" } })
  local tensors = {}
  for i, p in ipairs(named_params) do tensors[i] = p.tensor end
  local arena = core.param_arena(tensors)
  local self = setmetatable({ opts = o, params = named_params, arena = arena, weights = arena:weights(),
                              grads = arena:grads(), step = 0 }, Adam)
  self.m = core.zeros({ arena:size() })
  self.v = core.zeros({ arena:size() })
  if o.ema then self.ema = self.weights:detach():clone() end
  return self
end

--- The learning rate at the current step: linear warm-up min(1, step / warmup).
function Adam:lr()
  local w = self.opts.warmup
  local scale = (w and w > 0) and math.min(1, self.step / w) or 1
  return self.opts.lr * scale
end

--- Global L2 norm of all gradients (one pass over the gradient arena).
function Adam:grad_norm() return math.sqrt(core.grad_sumsq(self.weights)) end

--- One update from the current gradients, averaged over the processes of a
-- data-parallel run first (one all-reduce of the gradient arena; nothing with one
-- process); returns the gradient norm before clipping (not finite: the step is skipped,
-- as the reference skips overflowing steps).
function Adam:step_update()
  self.arena:collect_grads()
  if core.dist.size() > 1 then core.dist.allreduce_mean(self.grads) end
  local gn = self:grad_norm()
  if gn ~= gn or gn == math.huge then return gn, false end
  self.step = self.step + 1
  local o = self.opts
  local scale = gn > o.clip and o.clip / gn or 1
  core.adam_step(self.weights, self.m, self.v, { lr = self:lr(), beta1 = o.beta1, beta2 = o.beta2, eps = o.eps,
                                                 weight_decay = o.weight_decay, step = self.step, grad_scale = scale })
  if o.ema then core.ema_update(self.ema, self.weights, o.ema) end
  return gn, true
end

--- Zeroes every gradient (one memset of the gradient arena).
function Adam:zero_grad() self.arena:zero_grads() end

-- Parameter i's view of a flat tensor (m, v or ema).
function Adam:slot(flat, i) return self.arena:slot(flat, self.arena:index(self.params[i].tensor)) end

--- Moments (and EMA weights) by name, for checkpoints: "adam.m.<param>", ...
function Adam:state_tensors()
  local out = {}
  for i, p in ipairs(self.params) do
    out["adam.m." .. p.name] = self:slot(self.m, i)
    out["adam.v." .. p.name] = self:slot(self.v, i)
    if self.opts.ema then out["ema." .. p.name] = self:slot(self.ema, i) end
  end
  return out
end

--- Restores moments from a table of tensors (as state_tensors names them) and the step.
function Adam:load_state(tensors, step)
  for i, p in ipairs(self.params) do
    for _, kind in ipairs({ "m", "v" }) do
      local src = tensors["adam." .. kind .. "." .. p.name]
      if not src then error(("optim: checkpoint has no adam.%s.%s"):format(kind, p.name), 2) end
      self:slot(self[kind], i):copy_(src)
    end
    if self.opts.ema and tensors["ema." .. p.name] then self:slot(self.ema, i):copy_(tensors["ema." .. p.name]) end
  end
  self.step = step
end

return optim
