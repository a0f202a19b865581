--- A slow reference sampler for the priors: the interface of the KV-cache sampler
-- (jukebox.sampler, in C), implemented by recomputing the prior's full forward
-- (Autoregressive:forward over every token so far) for each new token. It is the
-- schedules' fallback until the fast one exists, and a test oracle for it afterwards.
--
--   local s = sampler_ref.new(prior, {batch = B, temp = 1.0, top_k = 0, top_p = 0.0, seed = 0, chunk_size = 64})
--   s:reset()                            empty cache, position 0
--   s:set_conditioning(x_cond, y_cond)   x_cond [B, T, W] (this window's positions) or nil,
--                                        y_cond [B, 1, W] or nil (Prior:conditioning gives both)
--   s:prime(codes)                       int32 [B, t0]: feeds tokens pos..pos+t0-1 -> their logits [B, t0, bins]
--   s:sample(n, {temp, top_k, top_p})    int32 [B, n]: the next n tokens, drawn and fed
--   s:step(col)                          int32 [B, 1]: feeds one given token -> logits [B, 1, bins]
--   s.position                           tokens fed so far
--
-- Logits are jukebox.sampler's: the row for the token fed at position p is the prior's
-- forward at p, the distribution that token was drawn from (given tokens 0..p-1).
-- Drawing: logits / temp, then top-k (keep the k largest; ties with the k-th kept) or
-- top-p (keep the most probable tokens until their cumulative probability exceeds p,
-- always the first), never both (an error, as the reference's filter_logits); then one
-- uniform draw of the sampler's core.rng per token and batch row, inverted through the
-- cumulative softmax (in double precision).
local core = require "jukebox.core"
local options = require "jukebox.options"
local int_range = require("jukebox.tensor").int_range

local M = {}

M.defaults = { batch = 1, temp = 1.0, top_k = 0, top_p = 0.0, seed = 0, chunk_size = 64 }

local Sampler = {}
Sampler.__index = Sampler

local function shape_str(t) return "[" .. table.concat(t:shape(), ", ") .. "]" end

local function check_filter(fn, o)
  if type(o.temp) ~= "number" or not (o.temp > 0) then
    error(("%s: temp must be a number > 0, got %s"):format(fn, tostring(o.temp)), 3)
  end
  if math.type(o.top_k) ~= "integer" or o.top_k < 0 then
    error(("%s: top_k must be an integer >= 0 (0: off), got %s"):format(fn, tostring(o.top_k)), 3)
  end
  if type(o.top_p) ~= "number" or o.top_p < 0 or o.top_p > 1 then
    error(("%s: top_p must be a number in [0, 1] (0: off), got %s"):format(fn, tostring(o.top_p)), 3)
  end
  if o.top_k > 0 and o.top_p > 0 then
    error(("%s: top_k (%d) and top_p (%g) cannot both be set, as in the reference; choose one"):format(fn,
      o.top_k, o.top_p), 3)
  end
end

--- sampler_ref.new(prior, opts): prior is a jukebox.prior Prior; opts as M.defaults.
function M.new(prior, opts)
  opts = options.merge("sampler.new", M.defaults, opts)
  if type(prior) ~= "table" or not prior.prior or not prior.n_ctx then
    error("sampler.new: argument 1 must be a jukebox.prior Prior", 2)
  end
  if math.type(opts.batch) ~= "integer" or opts.batch < 1 then
    error(("sampler.new: batch must be an integer >= 1, got %s"):format(tostring(opts.batch)), 2)
  end
  check_filter("sampler.new", opts)
  local self = setmetatable({ model = prior, ar = prior.prior, n_ctx = prior.n_ctx, bins = prior.bins,
    batch = opts.batch, opts = opts, rng = core.rng(opts.seed),
    block_ctx = prior.prior.transformer.block_ctx }, Sampler)
  self:reset()
  return self
end

--- Empties the cache: position 0, no conditioning.
function Sampler:reset()
  self.position = 0
  self.codes = core.zeros({ self.batch, 0 }, { dtype = "int32" })
  self.x_cond, self.y_cond = nil, nil
end

function Sampler:set_conditioning(x_cond, y_cond)
  local b, w = self.batch, self.ar.width
  if x_cond ~= nil then
    local s = x_cond:shape()
    if #s ~= 3 or s[1] ~= b or s[3] ~= w or s[2] > self.n_ctx then
      error(("sampler:set_conditioning: x_cond %s must be [%d, T <= %d, %d]"):format(shape_str(x_cond), b,
        self.n_ctx, w), 2)
    end
  end
  if y_cond ~= nil then
    local s = y_cond:shape()
    if #s ~= 3 or s[1] ~= b or s[2] ~= 1 or s[3] ~= w then
      error(("sampler:set_conditioning: y_cond %s must be [%d, 1, %d]"):format(shape_str(y_cond), b, w), 2)
    end
  end
  if self.ar.x_cond and x_cond == nil then
    error("sampler:set_conditioning: this prior needs x_cond (Prior:conditioning gives it)", 2)
  end
  if self.ar.y_cond and y_cond == nil then
    error("sampler:set_conditioning: this prior is labelled: it needs y_cond", 2)
  end
  self.x_cond, self.y_cond = x_cond, y_cond
end

-- The forward's logits over positions 0..len-1 for the fed codes plus `extra` dummy
-- tokens (the last input is never read by the positions asked for), padded to a
-- multiple of block_ctx (every attention pattern is causal, so padding after the
-- positions read changes nothing).
function Sampler:_forward(len)
  local bc = self.block_ctx
  local padded = bc and ((len + bc - 1) // bc) * bc or len
  padded = math.min(padded, self.n_ctx)
  local codes = self.codes
  local have = codes:shape()[2]
  if have < padded then
    codes = core.concat({ codes, core.zeros({ self.batch, padded - have }, { dtype = "int32" }) }, 2)
  end
  if have > padded then codes = codes:narrow(2, 1, padded) end
  local xc = self.x_cond
  if xc then
    local t = xc:shape()[2]
    if t < len then
      error(("sampler: x_cond covers %d positions, position %d needs more (set_conditioning for the whole window)")
        :format(t, len - 1), 3)
    end
    if t >= padded then
      xc = xc:narrow(2, 1, padded)
    else
      xc = core.concat({ xc, core.zeros({ self.batch, padded - t, self.ar.width }) }, 2)
    end
  end
  return core.no_grad(function() return self.ar:forward(codes, xc, self.y_cond) end)
end

local function check_codes(self, codes, fn)
  local s = core.is_tensor(codes) and codes:shape()
  if not s or #s ~= 2 or codes.dtype ~= "int32" or s[1] ~= self.batch then
    error(("%s: codes must be an int32 tensor [%d, T], got %s"):format(fn, self.batch,
      s and (codes.dtype .. " " .. shape_str(codes)) or type(codes)), 3)
  end
  if self.position + s[2] > self.n_ctx then
    error(("%s: %d tokens after position %d pass n_ctx %d"):format(fn, s[2], self.position, self.n_ctx), 3)
  end
  if s[2] > 0 then
    local lo, hi = int_range(codes)
    if lo < 0 or hi >= self.bins then
      error(("%s: code %d is out of range [0, %d) (bins)"):format(fn, lo < 0 and lo or hi, self.bins), 3)
    end
  end
  return s[2]
end

--- Feeds the tokens at positions pos..pos+t0-1 -> their logits [B, t0, bins] (the
-- forward at those positions).
function Sampler:prime(codes)
  local t0 = check_codes(self, codes, "sampler:prime")
  if t0 == 0 then return nil end
  local p0 = self.position
  self.codes = core.concat({ self.codes, codes }, 2)
  self.position = p0 + t0
  return self:_forward(self.position):narrow(2, p0 + 1, t0)
end

--- Feeds one given token per row (int32 [B, 1]) at position pos -> its logits [B, 1, bins].
function Sampler:step(col)
  local n = check_codes(self, col, "sampler:step")
  if n ~= 1 then error(("sampler:step: codes must be [%d, 1], got %s"):format(self.batch, shape_str(col)), 2) end
  self.codes = core.concat({ self.codes, col }, 2)
  self.position = self.position + 1
  return self:_forward(self.position):narrow(2, self.position, 1)
end

-- Filters one row of logits (a Lua list, already divided by temp) in place: -inf
-- outside the kept set.
local function filter(row, top_k, top_p)
  local n = #row
  if top_k > 0 and top_k < n then
    local sorted = table.move(row, 1, n, 1, {})
    table.sort(sorted, function(a, b) return a > b end)
    local kth = sorted[top_k]
    for i = 1, n do
      if row[i] < kth then row[i] = -math.huge end
    end
  elseif top_p > 0 then
    local idx = {}
    for i = 1, n do idx[i] = i end
    table.sort(idx, function(a, b) return row[a] > row[b] or (row[a] == row[b] and a < b) end)
    local mx, z = row[idx[1]], 0
    for i = 1, n do z = z + math.exp(row[i] - mx) end
    local cum = 0
    for r = 1, n do
      local i = idx[r]
      if cum > top_p then row[i] = -math.huge end -- the cumulative probability before this token
      cum = cum + math.exp(row[i] - mx) / z
    end
  end
end

-- One draw from softmax(row) with the uniform u.
local function draw(row, u)
  local mx = -math.huge
  for i = 1, #row do
    if row[i] > mx then mx = row[i] end
  end
  local z = 0
  for i = 1, #row do z = z + math.exp(row[i] - mx) end
  local target, cum, last = u * z, 0, nil
  for i = 1, #row do
    if row[i] > -math.huge then
      cum = cum + math.exp(row[i] - mx)
      last = i
      if cum > target then return i - 1 end
    end
  end
  return last - 1
end

--- Draws the next n tokens (int32 [B, n]), feeding each; opts overrides temp, top_k, top_p.
function Sampler:sample(n, opts)
  local o = options.merge("sampler:sample", { temp = self.opts.temp, top_k = self.opts.top_k,
    top_p = self.opts.top_p }, opts)
  check_filter("sampler:sample", o)
  if math.type(n) ~= "integer" or n < 0 then
    error(("sampler:sample: n must be an integer >= 0, got %s"):format(tostring(n)), 2)
  end
  if self.position + n > self.n_ctx then
    error(("sampler:sample: %d tokens after position %d pass n_ctx %d"):format(n, self.position, self.n_ctx), 2)
  end
  local b = self.batch
  local out = {}
  for i = 1, b do out[i] = {} end
  for t = 1, n do
    local p = self.position
    local lg = self:_forward(p + 1):narrow(2, p + 1, 1):reshape({ b, self.bins })
    if o.temp ~= 1 then lg = lg * (1 / o.temp) end
    local rows = lg:totable()
    local col = {}
    for i = 1, b do
      local row = rows[i]
      filter(row, o.top_k, o.top_p)
      col[i] = draw(row, self.rng:uniform())
      out[i][t] = col[i]
    end
    self.codes = core.concat({ self.codes, core.from_ints(col, { b, 1 }) }, 2)
    self.position = p + 1
  end
  if n == 0 then return core.zeros({ b, 0 }, { dtype = "int32" }) end
  return core.from_ints(out)
end

M.Sampler = Sampler
M.filter = filter
M.draw = draw
return M
