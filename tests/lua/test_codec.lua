-- codec.lua: chunked encoding and decoding equal whole-signal processing (no seams),
-- the receptive field bounds the measured one, shapes and errors.
local H = require "helpers"
local close, eq, yes = H.assert_close, H.assert_eq, H.assert_true

local T = {}

-- A tiny model whose codebooks were initialised from encoder outputs (as after training).
local function tiny(jbx, seed)
  local vqvae = require "jukebox.vqvae"
  local model = vqvae.new("tiny", { seed = seed or 5 })
  model:train()
  model:forward(jbx.randn({ 2, 1, 2048 }) * 0.3)
  model:eval()
  return model
end

-- Music-like test signal: a few partials and some noise.
local function signal(jbx, n)
  local t = {}
  for i = 1, n do
    local s = (i - 1) / 22050
    t[i] = 0.3 * math.sin(2 * math.pi * 220 * s) + 0.2 * math.sin(2 * math.pi * 1375 * s + 1)
      + 0.1 * math.sin(2 * math.pi * 4100 * s)
  end
  return jbx.tensor(t) + jbx.randn({ n }) * 0.02
end

local function agreement(a, b)
  local ta, tb = a:totable(), b:totable()
  eq(#ta, #tb, "code counts")
  local same = 0
  for i = 1, #ta do if ta[i] == tb[i] then same = same + 1 end end
  return same / #ta
end

local function max_abs(t) return t:abs():max():item() end

function T.receptive_field_bounds_measured(jbx)
  local codec = require "jukebox.codec"
  local model = tiny(jbx)
  local n = 1024
  local x = jbx.randn({ 1, 1, n }) * 0.3
  for l = 1, model.hp.levels do
    local rf = codec.receptive_field(model.hp, l)
    local hop = model.hop_lengths[l]
    local enc = model.encoders.items[l]
    -- An impulse changes the latents over at most span/hop + 1 positions.
    local z0 = jbx.no_grad(function() return enc:forward(x) end)
    local bump = jbx.zeros({ 1, 1, n }):totable()
    bump[1][1][n // 2] = 1
    local z1 = jbx.no_grad(function() return enc:forward(x + jbx.tensor(bump)) end)
    local d = (z1 - z0):abs():sum(2):reshape({ -1 }):totable()
    local first, last
    for i, v in ipairs(d) do if v > 0 then first = first or i; last = i end end
    yes(first, "the impulse reaches the latents")
    yes((last - first + 1) <= rf.encoder // hop + 1, ("level %d: %d latents changed, field %d samples"):format(
      l, last - first + 1, rf.encoder))
    -- Changing one latent changes at most rf.decoder codes' worth of output samples.
    local zc = jbx.randn({ 1, model.hp.emb_width, n // hop })
    local dec = model.decoders.items[l]
    local y0 = jbx.no_grad(function() return dec:forward(zc) end)
    local dz = jbx.zeros({ 1, model.hp.emb_width, n // hop }):totable()
    for c = 1, model.hp.emb_width do dz[1][c][n // hop // 2] = 1 end
    local y1 = jbx.no_grad(function() return dec:forward(zc + jbx.tensor(dz)) end)
    local dy = (y1 - y0):abs():reshape({ -1 }):totable()
    first, last = nil, nil
    for i, v in ipairs(dy) do if v > 0 then first = first or i; last = i end end
    yes((last - first + 1) <= rf.decoder * hop, ("level %d: decoder span %d samples, field %d codes"):format(
      l, last - first + 1, rf.decoder))
  end
  -- The small preset's top level sees about 2.4k samples; the computed field covers it.
  local vqvae = require "jukebox.vqvae"
  local small = vqvae.config("small")
  yes(codec.receptive_field(small, 3).encoder >= 2432)
end

function T.chunked_equals_whole(jbx)
  local codec = require "jukebox.codec"
  local model = tiny(jbx)
  local n = 3001 -- not a multiple of the top hop: padded to 3004
  local x = signal(jbx, n)
  local whole, padded = codec.encode(model, x, { chunk = 1e9 })
  eq(padded, 3004)
  local chunked = codec.encode(model, x, { chunk = 100 }) -- 31 chunks (rounded to 100)
  for l = 1, model.hp.levels do
    eq(whole[l]:numel(), padded // model.hop_lengths[l])
    yes(tostring(whole[l]):find("int32"), "codes are int32")
    -- Only near-ties in the nearest-code search may flip with float rounding.
    local agree = agreement(whole[l], chunked[l])
    yes(agree >= 0.995, ("level %d: chunked codes agree with whole-signal codes on %.4f"):format(l, agree))
    local yw = codec.decode(model, whole[l], l, { chunk = 1e9 })
    local yc = codec.decode(model, whole[l], l, { chunk = 96 })
    eq(yw:numel(), padded)
    local err = max_abs(yw - yc)
    yes(err < 1e-5 * (1 + max_abs(yw)), ("level %d: chunked decode differs by %g"):format(l, err))
  end
end

function T.no_seams_at_chunk_boundaries(jbx)
  local codec = require "jukebox.codec"
  local model = tiny(jbx, 9)
  local x = signal(jbx, 2400)
  local codes = codec.encode(model, x, { chunk = 1e9 })
  local chunk = 200
  for l = 1, model.hp.levels do
    local yw = codec.decode(model, codes[l], l, { chunk = 1e9 }):totable()
    local yc = codec.decode(model, codes[l], l, { chunk = chunk }):totable()
    -- The step across each boundary is the whole-signal step there.
    for b = chunk + 1, #yw, chunk do
      local jump_c, jump_w = yc[b] - yc[b - 1], yw[b] - yw[b - 1]
      close(jump_c, jump_w, 1e-5, ("level %d: step at boundary %d"):format(l, b))
    end
    -- Without context (margin 0) the boundaries do show: the test can see seams.
    local ys = codec.decode(model, codes[l], l, { chunk = chunk, margin = 0 })
    yes(max_abs(ys - jbx.tensor(yw)) > 1e-4, "margin 0 gives seams")
  end
  -- Encoding without context changes codes near the boundaries too.
  local bad = codec.encode(model, x, { chunk = 64, margin = 0 })
  yes(agreement(bad[1], codes[1]) < 1, "margin 0 changes some codes")
end

function T.shapes_and_errors(jbx)
  local codec = require "jukebox.codec"
  local model = tiny(jbx)
  local x = signal(jbx, 512)
  local a = codec.encode(model, x)
  local b = codec.encode(model, x:reshape({ 1, -1 }))
  local c = codec.encode(model, x:reshape({ 1, 1, -1 }))
  for l = 1, model.hp.levels do
    eq(agreement(a[l], b[l]), 1); eq(agreement(a[l], c[l]), 1)
    H.assert_shape(a[l], { 512 // model.hop_lengths[l] })
    local y = codec.decode(model, a[l]:reshape({ 1, -1 }), l)
    H.assert_shape(y, { 512 })
  end
  H.assert_error(function() codec.encode(model, jbx.zeros({ 2, 512 })) end, "must be mono")
  H.assert_error(function() codec.encode(model, jbx.zeros({ 0 })) end, "audio is empty")
  H.assert_error(function() codec.decode(model, a[1], 3) end, "level 3 out of range 1..2")
  -- One sample still encodes (padded to the top hop).
  local one = codec.encode(model, jbx.zeros({ 1 }))
  eq(one[1]:numel(), 2); eq(one[2]:numel(), 1)
end

return T
