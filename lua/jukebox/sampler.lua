--- Sampling a prior token by token in C, over per-layer KV caches (core/sampler.c,
-- core/ops/kv_cache.c): Lua is called once per window, not per token.
--
--   local sampler = require "jukebox.sampler"
--   local s = sampler.new(prior, { batch = B, temp = 1.0, top_k = 0, top_p = 0.0, seed = 0,
--                                  chunk_size = 64, want_logits = true })
--   s:reset()                           -- empty caches, position 0 (the generator goes on)
--   s:set_conditioning(x_cond, y_cond)  -- x_cond [B, T, W] or nil: positions 0..T-1 of the
--                                       -- window (T = 1: every position); y_cond [B, 1, W]
--                                       -- or nil: the start at position 0 (labelled priors)
--   local logits = s:prime(codes)       -- int32 [B, t0]: the tokens at positions pos..pos+t0-1,
--                                       -- fed in chunks of chunk_size; logits [B, t0, bins]
--                                       -- those positions had (nil when want_logits is false)
--   local new = s:sample(n, { temp =, top_k =, top_p = })  -- int32 [B, n]: positions
--                                       -- pos..pos+n-1 drawn, fed back, the caches advanced
--   local lg = s:step(codes_col)        -- int32 [B, 1]: one given token, its logits [B, 1, bins]
--   s.position                          -- tokens fed so far
--   s.partial                           -- after Ctrl-C stopped s:sample: the codes it drew
--
-- The logits at position p are what Prior:forward gives at p for the same codes (its
-- input at p is the token at p - 1, or the start at 0): prime, step and sample agree with
-- it to float rounding (tests/lua/test_sampler.lua). Sampling is the reference's: logits
-- / temp, top_k or top_p (not both, as its filter_logits), then one seeded draw per
-- sample in sample order, so a seed gives the same codes on any thread count. temp must
-- be > 0; greedy decoding is top_k = 1. Ctrl-C stops a call between tokens with the error
-- "interrupted: sampler: stopped by Ctrl-C at position P (...)", the state consistent.
--
-- The sampler reads the prior's weights in place (the core holds references to the
-- tensors): build it after loading weights; a weight replaced by a new tensor later is
-- not seen (one updated in place is).
local core = require "jukebox.core"
local options = require "jukebox.options"

local M = {}

local defaults = { batch = 1, temp = 1.0, top_k = 0, top_p = 0.0, seed = 0, chunk_size = 64, want_logits = true }

local function shape_str(t) return "[" .. table.concat(t:shape(), ", ") .. "]" end

-- Calls the C side; its errors are raised again at the caller of the public function
-- (two levels up: so never a tail call), without this file's position in front.
local function call(f, ...)
  local r = table.pack(pcall(f, ...))
  if not r[1] then error((tostring(r[2]):gsub("^[^:]*sampler%.lua:%d+: ", "")), 3) end
  return table.unpack(r, 2, r.n)
end

--- The C description of a Prior (jukebox.prior) or of its ConditionalAutoregressive2D.
function M.describe(prior)
  local ar = prior and prior.prior or prior
  if type(ar) ~= "table" or not ar.transformer or not ar.x_emb then
    error("sampler: expected a jukebox.prior Prior module", 3)
  end
  local tr = ar.transformer
  local layers = {}
  for i, l in ipairs(tr._attn_mods.items) do
    if l.ln_0.eps ~= tr._attn_mods.items[1].ln_0.eps or l.ln_1.eps ~= l.ln_0.eps
        or l.res_scale ~= tr._attn_mods.items[1].res_scale then
      error("sampler: every layer must share one layer norm eps and res_scale", 3)
    end
    layers[i] = {
      attn_func = l.attn_func,
      ln_0_w = l.ln_0.weight, ln_0_b = l.ln_0.bias,
      c_attn_w = l.attn.c_attn.w, c_attn_b = l.attn.c_attn.b,
      c_proj_w = l.attn.c_proj.w, c_proj_b = l.attn.c_proj.b,
      ln_1_w = l.ln_1.weight, ln_1_b = l.ln_1.bias,
      c_fc_w = l.mlp.c_fc.w, c_fc_b = l.mlp.c_fc.b,
      mlp_proj_w = l.mlp.c_proj.w, mlp_proj_b = l.mlp.c_proj.b,
    }
  end
  local first = tr._attn_mods.items[1]
  return {
    bins = ar.bins, width = ar.width, n_ctx = ar.n_ctx, heads = first.attn.n_head,
    block_ctx = tr.block_ctx or 0, res_scale = first.res_scale, ln_eps = first.ln_0.eps,
    x_emb = ar.x_emb.weight, out_w = ar:out_weight(), pos_emb = ar.pos_emb.pos_emb,
    start_token = ar.start_token, x_cond = ar.x_cond and true or false,
    cond_after = not ar.merged_decoder, layers = layers,
  }
end

--- A window's conditioning from a batch, as Prior:forward computes it (Prior:conditioning):
-- batch = {labels = ..., upper = ...}, t = the window's length -> x_cond or nil, y_cond or nil.
function M.conditioning(prior, batch, t) return prior:conditioning(batch, t) end

local Sampler = {}
local mt = {
  __index = function(self, k)
    if k == "position" then return self._c:position() end
    if k == "partial" then return self._c:partial() end
    return Sampler[k]
  end,
}

--- sampler.new(prior, opts): opts as `defaults` above; temp, top_k and top_p are the
-- defaults of s:sample.
function M.new(prior, opts)
  opts = options.merge("sampler.new", defaults, opts)
  for _, k in ipairs({ "batch", "chunk_size" }) do
    if math.type(opts[k]) ~= "integer" or opts[k] < 1 then
      error(("sampler.new: option '%s' must be an integer >= 1, got %s"):format(k, tostring(opts[k])), 2)
    end
  end
  local desc = M.describe(prior)
  local c = call(core.sampler, desc, opts.batch, opts.chunk_size, opts.seed)
  local s = setmetatable({ _c = c, prior = prior, opts = opts, batch = opts.batch, bins = desc.bins,
                           n_ctx = desc.n_ctx }, mt)
  -- checked once here, so a bad default fails at new rather than at the first sample
  s:_sample_opts(nil, 2)
  return s
end

function Sampler:_sample_opts(given, level)
  local o = options.merge("sampler:sample", { temp = self.opts.temp, top_k = self.opts.top_k,
    top_p = self.opts.top_p }, given, { level = (level or 2) + 1 })
  if not (type(o.temp) == "number" and o.temp > 0) then
    error(("sampler: temp must be > 0, got %s (for greedy decoding use top_k = 1)"):format(tostring(o.temp)),
      (level or 2) + 1)
  end
  if (o.top_k or 0) > 0 and (o.top_p or 0) > 0 then
    error(("sampler: top_k (%s) and top_p (%s) cannot both be set: use one filter (as the reference's filter_logits)")
      :format(tostring(o.top_k), tostring(o.top_p)), (level or 2) + 1)
  end
  return o
end

--- Empties the caches: the next position is 0 (a new window). seed: reseed the generator.
function Sampler:reset(seed) call(self._c.reset, self._c, seed) end

--- x_cond [B, T, W] or nil, y_cond [B, 1, W] or nil for the window's positions.
function Sampler:set_conditioning(x_cond, y_cond) call(self._c.set_conditioning, self._c, x_cond, y_cond) end

--- codes int32 [B, t0] -> logits [B, t0, bins] (nil when want_logits is false).
function Sampler:prime(codes)
  local s = type(codes) == "userdata" and codes.shape and codes:shape()
  if not s or codes.dtype ~= "int32" or #s ~= 2 then
    error(("sampler:prime: codes must be an int32 tensor [%d, t0], got %s"):format(self.batch,
      s and (codes.dtype .. " " .. shape_str(codes)) or type(codes)), 2)
  end
  local r = call(self._c.prime, self._c, codes, self.opts.want_logits) -- not a tail call: call() counts levels from here
  return r
end

--- codes_col int32 [B, 1] -> logits [B, 1, bins] of that position.
function Sampler:step(codes_col)
  local s = type(codes_col) == "userdata" and codes_col.shape and codes_col:shape()
  if not s or codes_col.dtype ~= "int32" or #s ~= 2 or s[2] ~= 1 then
    error(("sampler:step: codes must be an int32 tensor [%d, 1], got %s"):format(self.batch,
      s and (codes_col.dtype .. " " .. shape_str(codes_col)) or type(codes_col)), 2)
  end
  local r = call(self._c.prime, self._c, codes_col, true) -- not a tail call: call() counts levels from here
  return r
end

--- n tokens per sample -> int32 [B, n]; opts {temp, top_k, top_p} override new's.
function Sampler:sample(n, opts)
  if math.type(n) ~= "integer" or n < 1 then
    error(("sampler:sample: n must be an integer >= 1, got %s"):format(tostring(n)), 2)
  end
  local r = call(self._c.sample, self._c, n, self:_sample_opts(opts, 2)) -- not a tail call: call() counts levels from here
  return r
end

M.defaults = defaults
return M
