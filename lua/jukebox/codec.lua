--- Encoding and decoding audio of any length with a trained VQ-VAE, in chunks.
-- Each chunk is processed with `margin` samples of real context on both sides and only
-- its centre is kept. The default margin covers the network's receptive field
-- (computed from the hyperparameters), so every kept output saw exactly the input it
-- would see if the file were processed at once: chunking leaves no seams, and the
-- result equals whole-file processing up to float rounding.
local core = require "jukebox.core"
local vqvae = require "jukebox.vqvae"

local codec = {}

--- chunk: samples kept per chunk (by default at least 4 margins, so context costs
-- little); margin: context samples per side, nil means the receptive field.
codec.defaults = { chunk = 262144, margin = nil }

local function round_up(n, m) return ((n + m - 1) // m) * m end

--- Receptive field of level `level`, from the architecture of vqvae.lua:
-- encoder: input samples one code depends on (whole span); decoder: codes one output
-- sample depends on (whole span). Upper bounds: they add every layer's full reach.
function codec.receptive_field(hp, level)
  local depth = hp.depth * hp.multipliers[level]
  local span, p = 1, 1 -- span in input samples; p: input samples per position
  for b = 1, level do
    local s = hp.strides_t[b]
    for _ = 1, hp.downs_t[b] do
      span = span + (2 * s - 1) * p -- Conv1d(kernel 2s, stride s)
      p = p * s
      for _, d in ipairs(vqvae.dilations(hp, depth, false)) do span = span + 2 * d * p end
    end
    span = span + 2 * p -- Conv1d(kernel 3)
  end
  local enc = span
  -- Decoder, from the codes down: spans in output samples, p = output samples per position.
  span = 1
  for b = level, 1, -1 do
    span = span + 2 * p -- Conv1d(kernel 3) at the block's input rate
    local s = hp.strides_t[b]
    for _ = 1, hp.downs_t[b] do
      for _, d in ipairs(vqvae.dilations(hp, depth, hp.reverse_decoder_dilation)) do span = span + 2 * d * p end
      span = span + p -- ConvTranspose1d(kernel 2s, stride s): two input positions per output
      p = p // s
    end
  end
  span = span + 2 -- the final Conv1d(kernel 3) at the audio rate
  local hop = 1
  for b = 1, level do hop = hop * math.tointeger(hp.strides_t[b] ^ hp.downs_t[b]) end
  return { encoder = enc, decoder = (span + hop - 1) // hop + 1 }
end

--- Margins for a model: encoder margin in samples (a multiple of the top hop, for all
-- levels at once) and decoder margin in codes per level. The field is roughly centred
-- on its output, so half of it plus one top hop (encoder) or one code (decoder) of
-- slack covers each side; `margin` (samples) overrides both.
function codec.margins(model, margin)
  local hp, top = model.hp, model.hop_lengths[#model.hop_lengths]
  local enc, dec = 0, {}
  for l = 1, hp.levels do
    local rf = codec.receptive_field(hp, l)
    enc = math.max(enc, (rf.encoder + 1) // 2 + top)
    dec[l] = margin and (margin + model.hop_lengths[l] - 1) // model.hop_lengths[l] or (rf.decoder + 1) // 2 + 1
  end
  return round_up(margin or enc, top), dec
end

-- Samples kept per chunk: the requested size, else the default but at least four
-- margins (so context costs at most half the work).
local function chunk_size(opts, margin)
  if opts.chunk then return math.max(opts.chunk, 1) end
  return math.max(codec.defaults.chunk, 4 * margin)
end

local function flat_audio(audio)
  local s = audio:shape()
  local numel = audio:numel()
  if (#s == 2 or #s == 3) and numel ~= s[#s] then
    error(("codec: audio [%s] must be mono: [T], [1, T] or [1, 1, T]"):format(table.concat(s, ", ")), 3)
  end
  if numel == 0 then error("codec: audio is empty", 3) end
  return audio:reshape({ -1 })
end

--- audio [T] or [1, T] or [1, 1, T] -> codes per level {[ceil(T / top_hop) * top_hop / hop_l] int32},
-- and the padded length. opts: chunk, margin (samples), progress(done, total).
function codec.encode(model, audio, opts)
  opts = opts or {}
  local top = model.hop_lengths[#model.hop_lengths]
  local margin = codec.margins(model, opts.margin)
  local chunk = round_up(chunk_size(opts, margin), top)
  local x = flat_audio(audio)
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
      local piece = c:reshape({ -1 })
      if lo ~= start or hi ~= start + len then piece = piece:narrow(1, (start - lo) // hop + 1, len // hop) end
      pieces[l][#pieces[l] + 1] = piece
    end
    if opts.progress then opts.progress(start + len, padded) end
  end
  local out = {}
  for l = 1, model.hp.levels do
    out[l] = #pieces[l] == 1 and pieces[l][1] or core.concat(pieces[l], 1)
  end
  return out, padded
end

--- codes [T_l] (or [1, T_l]) of level l -> audio [T_l * hop_l], decoded in chunks with
-- margins. opts: chunk, margin (samples; nil: the receptive field).
function codec.decode(model, codes, level, opts)
  opts = opts or {}
  if not model.hop_lengths[level] then
    error(("codec: level %s out of range 1..%d"):format(tostring(level), #model.hop_lengths), 2)
  end
  local hop = model.hop_lengths[level]
  local _, dec = codec.margins(model, opts.margin)
  local margin = dec[level]
  local chunk = math.max(1, chunk_size(opts, margin * hop) // hop)
  local c = codes:reshape({ -1 })
  local n = c:numel()
  if n == 0 then error("codec: no codes to decode", 2) end
  local pieces = {}
  for start = 0, n - 1, chunk do
    local len = math.min(chunk, n - start)
    local lo = math.max(0, start - margin)
    local hi = math.min(n, start + len + margin)
    local y = model:decode(c:narrow(1, lo + 1, hi - lo):reshape({ 1, hi - lo }), level):reshape({ -1 })
    if lo ~= start or hi ~= start + len then y = y:narrow(1, (start - lo) * hop + 1, len * hop) end
    pieces[#pieces + 1] = y
  end
  return #pieces == 1 and pieces[1] or core.concat(pieces, 1)
end

--- audio -> each level's reconstruction ([T], trimmed to the input's length) and the
-- codes per level: encode, then decode every level. opts as for encode.
function codec.reconstruct(model, audio, opts)
  local x = flat_audio(audio)
  local n = x:numel()
  local codes = codec.encode(model, x, opts)
  local recons = {}
  for l, c in ipairs(codes) do
    local y = codec.decode(model, c, l, opts)
    recons[l] = y:numel() > n and y:narrow(1, 1, n) or y
  end
  return recons, codes
end

return codec
