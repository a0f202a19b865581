--- Encoding and decoding audio of any length with a trained VQ-VAE, in chunks.
-- Each chunk is processed with `margin` samples of real context on both sides and only
-- its centre is kept, so chunk boundaries fall where the network saw context on both
-- sides and leave no seams (with a margin beyond the receptive field, the result equals
-- processing the whole file at once).
local core = require "jukebox.core"

local codec = {}

codec.defaults = { chunk = 65536, margin = 16384 }

local function round_up(n, m) return ((n + m - 1) // m) * m end

--- audio [T] or [1, T] or [1, 1, T] -> codes per level {[T_l] int32}, and the padded length.
function codec.encode(model, audio, opts)
  opts = opts or {}
  local top = model.hop_lengths[#model.hop_lengths]
  local chunk = round_up(opts.chunk or codec.defaults.chunk, top)
  local margin = round_up(opts.margin or codec.defaults.margin, top)
  local x = audio:reshape({ -1 })
  local n = x:numel()
  local padded = round_up(n, top)
  if padded > n then x = core.concat({ x, core.zeros({ padded - n }) }, 1) end
  local pieces = {}
  for l = 1, model.hp.levels do pieces[l] = {} end
  for start = 0, padded - 1, chunk do
    local len = math.min(chunk, padded - start)
    local lo = math.max(0, start - margin)
    local hi = math.min(padded, start + len + margin)
    local window = x:narrow(1, lo + 1, hi - lo):reshape({ 1, 1, hi - lo })
    local codes = model:encode(window)
    for l, c in ipairs(codes) do
      local hop = model.hop_lengths[l]
      pieces[l][#pieces[l] + 1] = c:reshape({ -1 }):narrow(1, (start - lo) // hop + 1, len // hop)
    end
    if opts.progress then opts.progress(start + len, padded) end
  end
  local out = {}
  for l = 1, model.hp.levels do out[l] = core.concat(pieces[l], 1) end
  return out, padded
end

--- codes [T_l] of level l -> audio [T_l * hop_l], decoded in chunks with margins.
function codec.decode(model, codes, level, opts)
  opts = opts or {}
  local hop = model.hop_lengths[level]
  local chunk = math.max(1, (opts.chunk or codec.defaults.chunk) // hop)
  local margin = math.max(1, (opts.margin or codec.defaults.margin) // hop)
  local c = codes:reshape({ -1 })
  local n = c:numel()
  local pieces = {}
  for start = 0, n - 1, chunk do
    local len = math.min(chunk, n - start)
    local lo = math.max(0, start - margin)
    local hi = math.min(n, start + len + margin)
    local y = model:decode(c:narrow(1, lo + 1, hi - lo):reshape({ 1, hi - lo }), level)
    pieces[#pieces + 1] = y:reshape({ -1 }):narrow(1, (start - lo) * hop + 1, len * hop)
  end
  return core.concat(pieces, 1)
end

return codec
