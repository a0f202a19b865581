--- Adam with the reference's defaults (lr 3e-4, betas 0.9/0.999, eps 1e-8, linear
-- warm-up over 100 steps), gradient-norm clipping and an optional EMA of the weights.
-- The update is one fused C loop per parameter (core.adam_step).
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
function optim.adam(named_params, opts)
  local o = options.merge("optim.adam", optim.adam_defaults, opts, { optional = { "ema" } })
  local self = setmetatable({ opts = o, params = named_params, m = {}, v = {}, ema = {}, step = 0 }, Adam)
  for i, p in ipairs(named_params) do
    local shape = p.tensor:shape()
    self.m[i] = core.zeros(shape)
    self.v[i] = core.zeros(shape)
    if o.ema then self.ema[i] = p.tensor:detach():clone() end
  end
  return self
end

--- The learning rate at the current step: linear warm-up min(1, step / warmup).
function Adam:lr()
  local w = self.opts.warmup
  local scale = (w and w > 0) and math.min(1, self.step / w) or 1
  return self.opts.lr * scale
end

--- Global L2 norm of all gradients.
function Adam:grad_norm()
  local s = 0
  for _, p in ipairs(self.params) do s = s + core.grad_sumsq(p.tensor) end
  return math.sqrt(s)
end

--- One update from the current gradients; returns the gradient norm before clipping
-- (not finite: the step is skipped, as the reference skips overflowing steps).
function Adam:step_update()
  local gn = self:grad_norm()
  if gn ~= gn or gn == math.huge then return gn, false end
  self.step = self.step + 1
  local o = self.opts
  local scale = gn > o.clip and o.clip / gn or 1
  local args = { lr = self:lr(), beta1 = o.beta1, beta2 = o.beta2, eps = o.eps,
                 weight_decay = o.weight_decay, step = self.step, grad_scale = scale }
  for i, p in ipairs(self.params) do
    core.adam_step(p.tensor, self.m[i], self.v[i], args)
    if o.ema then core.ema_update(self.ema[i], p.tensor, o.ema) end
  end
  return gn, true
end

function Adam:zero_grad()
  for _, p in ipairs(self.params) do p.tensor.grad = nil end
end

--- Moments (and EMA weights) by name, for checkpoints: "adam.m.<param>", ...
function Adam:state_tensors()
  local out = {}
  for i, p in ipairs(self.params) do
    out["adam.m." .. p.name] = self.m[i]
    out["adam.v." .. p.name] = self.v[i]
    if self.opts.ema then out["ema." .. p.name] = self.ema[i] end
  end
  return out
end

--- Restores moments from a table of tensors (as state_tensors names them) and the step.
function Adam:load_state(tensors, step)
  for i, p in ipairs(self.params) do
    for kind, dst in pairs({ m = self.m[i], v = self.v[i] }) do
      local src = tensors["adam." .. kind .. "." .. p.name]
      if not src then error(("optim: checkpoint has no adam.%s.%s"):format(kind, p.name), 2) end
      dst:copy_(src)
    end
    if self.opts.ema and tensors["ema." .. p.name] then self.ema[i]:copy_(tensors["ema." .. p.name]) end
  end
  self.step = step
end

return optim
