-- jukebox.conditioners: LabelConditioner and the upsamplers' Conditioner against a PyTorch
-- re-expression (tools/fixtures/conditioners.py, weights loaded by name), their parameter
-- names, module-level gradient checks, presets, name normalisation and the errors a user sees.
local H = require "helpers"
local C = require "jukebox.conditioners"

local FIX = "tests/fixtures/conditioners.fix"

local function tensor_of(core, a)
  if a.dtype == "i32" then return core.from_ints(a.data, a.shape) end
  return core.tensor(a.data):reshape(a.shape)
end

-- Copies fixture arrays "<prefix>.<name>" into the module's parameters, by name; every
-- parameter must be in the fixture and every fixture weight of the prefix a parameter.
local function load_by_name(core, m, fx, prefix)
  local seen = {}
  for _, p in ipairs(m:named_parameters()) do
    local a = fx[prefix .. "." .. p.name]
    if not a then error("fixture has no weight " .. prefix .. "." .. p.name, 2) end
    H.assert_eq(table.concat(a.shape, ","), table.concat(p.tensor:shape(), ","), p.name .. " shape")
    core.no_grad(function() p.tensor:copy_(tensor_of(core, a)) end)
    seen[prefix .. "." .. p.name] = true
  end
  for name in pairs(fx) do
    if name:sub(1, #prefix + 1) == prefix .. "." and not seen[name] then
      error("fixture weight " .. name .. " has no parameter of that name", 2)
    end
  end
end

-- Largest |a - b| / (1 + |b|) of two tensors.
local function max_rel(a, b)
  return ((a - b):abs() / (b:abs() + 1)):max():item()
end

local function label_fixture_module()
  return C.LabelConditioner.new({ y_bins = { 7, 9 }, t_bins = 16, G = 3, n_time = 12, out_width = 8,
    min_duration = 60, max_duration = 600, sr = 44100 })
end

local function conditioner_fixture_module(name)
  if name == "c1" then
    return C.Conditioner.new({ bins = 10, out_width = 8, down_t = 2, stride_t = 2, width = 6, depth = 3,
      dilation_growth_rate = 3, dilation_cycle = 2, res_scale = true, checkpoint_res = true })
  end
  return C.Conditioner.new({ bins = 12, out_width = 6, down_t = 1, stride_t = 4, width = 5, depth = 4,
    dilation_growth_rate = 3, dilation_cycle = 8, res_scale = false, checkpoint_res = false })
end

-- A small labelled row maker for the error tests: v2-like bins, 60-600 s at 44100 Hz.
local SR = 44100
local function small_lc(opts)
  local o = { y_bins = { 5, 6 }, t_bins = 8, G = 2, n_time = 4, out_width = 3 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return C.LabelConditioner.new(o)
end

return {
  ["LabelConditioner matches the PyTorch fixture (start token, timing, bins)"] = function(jbx)
    local core = jbx.core
    local fx = H.read_fixture(FIX)
    local m = label_fixture_module()
    load_by_name(core, m, fx, "lc")
    local y = tensor_of(core, fx.lc_y)
    local bins = m:timing_bins(y)
    H.assert_close(bins.total, fx.lc_bins_total.data, 0, "total length bins")
    H.assert_close(bins.absolute, fx.lc_bins_abs.data, 0, "absolute position bins")
    H.assert_close(bins.relative, fx.lc_bins_rel.data, 0, "relative position bins")
    local start, pos = m:forward(y)
    H.assert_shape(start, { 6, 1, 8 })
    H.assert_shape(pos, { 6, 12, 8 })
    local want_start, want_pos = tensor_of(core, fx.lc_start), tensor_of(core, fx.lc_pos)
    H.assert_close(start, want_start, 1e-5, "start token")
    H.assert_close(pos, want_pos, 1e-5, "timing embedding")
    H.assert_true(max_rel(start, want_start) < 1e-6 and max_rel(pos, want_pos) < 1e-6, "max relative error")
    -- A Lua list of label vectors gives the same as the int32 tensor.
    local s2, p2 = m:forward(y:totable())
    H.assert_close(s2, start, 0, "list start")
    H.assert_close(p2, pos, 0, "list timing")
  end,

  ["Conditioner matches the PyTorch fixture (res_scale, blocks names; stride 4)"] = function(jbx)
    local core = jbx.core
    local fx = H.read_fixture(FIX)
    for _, name in ipairs({ "c1", "c2" }) do
      local m = conditioner_fixture_module(name)
      load_by_name(core, m, fx, name)
      local out = m:forward(tensor_of(core, fx[name .. "_codes"]))
      local want = tensor_of(core, fx[name .. "_out"])
      H.assert_close(out, want, 1e-5, name)
      H.assert_true(max_rel(out, want) < 1e-5, name .. " max relative error")
    end
  end,

  ["parameter names are the reference's"] = function()
    local lc = label_fixture_module()
    local names = {}
    for _, p in ipairs(lc:named_parameters()) do names[#names + 1] = p.name end
    H.assert_eq(table.concat(names, " "), "bow_genre_emb.emb.weight artist_emb.emb.weight "
      .. "total_length_emb.emb.weight absolute_pos_emb.emb.weight relative_pos_emb.emb.weight")
    local no_time = small_lc({ include_time_signal = false })
    H.assert_eq(#no_time:named_parameters(), 2, "without the time signal")
    local c = conditioner_fixture_module("c1")
    local by = {}
    for _, p in ipairs(c:named_parameters()) do by[p.name] = p.tensor end
    H.assert_shape(by["x_emb.weight"], { 10, 8 })
    H.assert_shape(by["cond.model.0.weight"], { 6, 8, 3 })
    H.assert_shape(by["cond.model.1.0.blocks.2.model.1.weight"], { 6, 6, 3 })
    H.assert_shape(by["cond.model.1.0.blocks.2.model.3.bias"], { 6 })
    H.assert_shape(by["cond.model.1.1.weight"], { 6, 6, 4 })
    H.assert_shape(by["cond.model.2.1.weight"], { 6, 8, 4 })
    H.assert_shape(by["ln.weight"], { 8 })
    H.assert_shape(by["ln.bias"], { 8 })
    local c2 = conditioner_fixture_module("c2")
    local n2 = {}
    for _, p in ipairs(c2:named_parameters()) do n2[p.name] = true end
    H.assert_true(n2["cond.model.1.0.model.3.model.1.weight"], "model.N without checkpoint_res")
    H.assert_true(n2["cond.model.1.1.bias"], "the transposed conv")
  end,

  ["LabelConditioner gradients (module-level check)"] = function(jbx)
    local core = jbx.core
    local m = small_lc({ seed = 3 })
    -- Larger weights than the 0.01 init so the check sees them.
    for _, p in ipairs(m:named_parameters()) do
      core.no_grad(function() p.tensor:copy_(core.randn(p.tensor:shape(), { seed = 11 })) end)
    end
    local y = { { 100 * SR, 10 * SR, 30 * SR, 4, 1, 3 }, { 70 * SR, 0, 20 * SR, 0, 2, -1 } }
    -- start and timing in one output: [N, 1 + n_time, W].
    local both = setmetatable({}, { __index = function(_, k) return m[k] end })
    function both:forward() local s, p = m:forward(y); return core.cat({ s, p }, 2) end
    function both:named_parameters() return m:named_parameters() end
    function both:zero_grad() return m:zero_grad() end
    local n = H.check_module_grads(both, core.zeros({ 1 }))
    H.assert_eq(n, m:num_parameters(), "every parameter checked")
  end,

  ["Conditioner gradients (module-level check, fused and res_scale paths)"] = function(jbx)
    local core = jbx.core
    for _, rs in ipairs({ false, true }) do
      local m = C.Conditioner.new({ bins = 4, out_width = 3, down_t = 2, stride_t = 2, width = 2, depth = 2,
        dilation_growth_rate = 3, dilation_cycle = 8, res_scale = rs, checkpoint_res = not rs, seed = 5 })
      local codes = core.from_ints({ 0, 3, 1, 2, 2, 1 }, { 2, 3 })
      local n = H.check_module_grads(m, codes)
      H.assert_eq(n, m:num_parameters(), "every parameter checked")
      H.assert_shape(m:forward(codes), { 2, 12, 3 })
    end
  end,

  ["presets: reference hyperparameters, dilation schedule, upsampling"] = function(jbx)
    local core = jbx.core
    local p = C.presets.small_upsampler
    H.assert_eq(p.width, 512)
    H.assert_eq(p.depth, 16)
    H.assert_eq(p.dilation_growth_rate, 3)
    H.assert_eq(p.dilation_cycle, 8)
    H.assert_eq(C.presets.upsampler_level_0.width, 1024)
    H.assert_eq(C.presets.upsampler_level_1.res_scale, true)
    H.assert_eq(C.presets.upsampler_level_0.res_scale, false)
    H.assert_eq(C.label_sets.v2.G, 5)
    H.assert_eq(C.label_sets.v2.t_bins, 128)
    H.assert_eq(C.label_sets.v3.y_bins[1], 604)
    H.assert_eq(C.label_sets.small_labelled.y_bins[2], 100)
    -- The preset's schedule at a small width: 16 blocks, 1..2187 twice, not reversed.
    local m = C.Conditioner.new("small_upsampler", { width = 2, out_width = 3, bins = 5 })
    local res = m.cond.model.layers[2].layers[1]
    local d = {}
    for i, b in ipairs(res.list.layers) do d[i] = b.model.layers[2].dilation end
    H.assert_eq(table.concat(d, ","), "1,3,9,27,81,243,729,2187,1,3,9,27,81,243,729,2187")
    H.assert_eq(m.upsample, 8, "small_vqvae's level above: down_t 3")
    H.assert_shape(m:forward(core.from_ints({ 1, 4 }, { 1, 2 })), { 1, 16, 3 })
    local v2 = C.LabelConditioner.new("v2", { out_width = 2, n_time = 3 })
    H.assert_shape(v2.bow_genre_emb.emb.weight, { 120, 2 })
    H.assert_shape(v2.artist_emb.emb.weight, { 4111, 2 })
    H.assert_shape(v2.total_length_emb.emb.weight, { 128, 2 })
    H.assert_eq(v2.t_ranges[1][1], 2646000)
    H.assert_eq(v2.t_ranges[2][2], 26460000)
    -- init: N(0, (0.01 init_scale)^2) for the label embeddings, (0.02 init_scale)^2 for x_emb.
    local big = C.LabelConditioner.new("v3", { out_width = 64, init_scale = 0.5, include_time_signal = false })
    local std = big.artist_emb.emb.weight:pow(2):mean():item() ^ 0.5
    H.assert_true(math.abs(std - 0.005) < 0.0002, "label embedding std " .. std)
    local c = C.Conditioner.new({ bins = 512, out_width = 64, init_scale = 0.5, down_t = 0 })
    local cstd = c.x_emb.weight:pow(2):mean():item() ^ 0.5
    H.assert_true(math.abs(cstd - 0.01) < 0.0003, "x_emb std " .. cstd)
  end,

  ["start token: artist plus the genre words, empty slots masked"] = function()
    local m = small_lc({ include_time_signal = false })
    local start, pos = m:forward({ { 100 * SR, 0, SR, 2, 1, -1 }, { 100 * SR, 0, SR, 5, 4, 0 } })
    H.assert_true(pos == nil, "no timing without include_time_signal")
    local a, g = m.artist_emb.emb.weight, m.bow_genre_emb.emb.weight
    H.assert_close(start:select(1, 1):select(1, 1), a:select(1, 3) + g:select(1, 2), 1e-6, "one genre")
    H.assert_close(start:select(1, 2):select(1, 1), a:select(1, 6) + g:select(1, 5) + g:select(1, 1), 1e-6,
      "two genres")
    H.assert_shape(start, { 2, 1, 3 })
  end,

  ["Conditioner: zero_out blocks are the identity; x_cond is added to the embedding"] = function(jbx)
    local core = jbx.core
    local opts = { bins = 5, out_width = 3, width = 2, depth = 2, down_t = 1, zero_out = true, seed = 2 }
    local m = C.Conditioner.new(opts)
    local res = m.cond.model.layers[2].layers[1]
    local x = core.randn({ 1, 2, 6 }, { seed = 4 })
    H.assert_close(res:forward(x), x, 0, "zero_out residual blocks")
    local codes = core.from_ints({ 1, 4, 0 }, { 1, 3 })
    local xc = core.randn({ 1, 3, 3 }, { seed = 9 })
    local with = m:forward(codes, xc)
    local direct = m.ln:forward(m.cond:forward((m.x_emb:forward(codes) + xc):permute({ 1, 3, 2 }):contiguous())
      :permute({ 1, 3, 2 }):contiguous())
    H.assert_close(with, direct, 1e-6, "x_cond")
    H.assert_true(H.max_abs_diff(with, m:forward(codes)) > 1e-3, "x_cond changes the output")
  end,

  ["name normalisation and the labels type"] = function()
    H.assert_eq(C.norm_v2("  The Beatles!! & Co. "), "the_beatles_co")
    H.assert_eq(C.norm_v2("Blues-Rock"), "blues_rock")
    H.assert_eq(C.norm_v2("___a__b___"), "a_b")
    H.assert_eq(C.norm_v3("AC/DC  Live"), "ac/dc  live")
    local warnings = {}
    local L = C.labels({ style = "v2", G = 3, sample_length = 1000,
      artists = { "unknown", "Battle for Wesnoth", "Ardour" }, genres = { "unknown", "blues", "rock", "ambient" },
      warn = function(msg) warnings[#warnings + 1] = msg end })
    H.assert_eq(L:artist_id("battle-for-WESNOTH"), 1)
    H.assert_eq(L:artist_id("Nobody"), 0)
    H.assert_eq(L:artist_id("nobody!"), 0)
    H.assert_eq(#warnings, 1, "one warning for one unknown name")
    H.assert_true(warnings[1]:find("artist 'Nobody' (normalised 'nobody') is not in the list; using id 0", 1, true),
      warnings[1])
    H.assert_eq(table.concat(L:genre_ids("Blues Rock"), ","), "1,2")
    H.assert_eq(table.concat(L:y("Ardour", "Blues Rock", 5000, 100), ","), "5000,100,1000,2,1,2,-1")
    H.assert_eq(table.concat(L:y("Ardour", "jazz", 5000, 100, 10), ","), "5000,100,10,2,0,-1,-1")
    H.assert_eq(#warnings, 2, "an unknown genre warns too")
    H.raises("labels.y: genre 'a b c d' has 4 words, more than the 3 genre slots (G)", L.y, L, "x", "a b c d", 1, 0)
    local v3 = C.labels({ style = "v3", artists = { unknown = 0, ["ac/dc"] = 7 }, genres = { "unknown", "Blues Rock" },
      warn = function() end })
    H.assert_eq(v3:artist_id("AC/DC"), 7)
    H.assert_eq(table.concat(v3:genre_ids("BLUES ROCK"), ","), "1")
    H.raises("labels: style must be \"v2\" or \"v3\", got v4", C.labels, { style = "v4" })
    H.raises("labels: unknown option 'artist'", C.labels, { artist = {} })
    H.raises("labels.y: sample_length is not set", v3.y, v3, "x", "y", 1, 0)
  end,

  ["errors: total length, windows, ids, shapes, presets"] = function(jbx)
    local core = jbx.core
    local m = small_lc()
    local ok = { 100 * SR, 0, 10 * SR, 1, 1, -1 }
    local function row(i, v)
      local r = table.move(ok, 1, #ok, 1, {})
      r[i] = v
      return { r }
    end
    H.raises("LabelConditioner: total length 30 s (example 1, 1323000 samples at 44100 Hz) is outside [60, 600) s",
      m.forward, m, row(1, 30 * SR))
    H.raises("total length 600 s", m.forward, m, row(1, 600 * SR))
    m:forward(row(1, 60 * SR)) -- min_duration itself is in range
    H.raises("LabelConditioner: window [595, 605) s (example 1: offset 26239500, sample_length 441000 samples) is outside [0, 600) s",
      m.forward, m, row(2, 595 * SR))
    H.raises("LabelConditioner: offset 150 s (example 1) is not before the total length 100 s", m.forward, m,
      row(2, 150 * SR))
    H.raises("LabelConditioner: artist id 6 (example 1) is out of range [0, 6)", m.forward, m, row(4, 6))
    H.raises("LabelConditioner: artist id -1 (example 1) is out of range [0, 6)", m.forward, m, row(4, -1))
    H.raises("LabelConditioner: genre id 5 (example 1, slot 1) is out of range [0, 5) (-1 marks an empty slot)",
      m.forward, m, row(5, 5))
    H.raises("genre id -2 (example 1, slot 2)", m.forward, m, row(6, -2))
    H.raises("LabelConditioner: label vector 1 has 5 values, expected 6", m.forward, m, { { 1, 2, 3, 4, 5 } })
    H.raises("LabelConditioner: labels [1, 5] must be [batch, 6]", m.forward, m, core.from_ints({ 1, 2, 3, 4, 5 }, { 1, 5 }))
    H.raises("LabelConditioner: labels must be an int32 tensor [batch, 4 + G] or a non-empty list", m.forward, m, {})
    H.raises("LabelConditioner: label vector 1 value 2 is 0.5, not an integer", m.forward, m, row(2, 0.5))
    H.raises("LabelConditioner: unknown label set 'v9' (known: small_labelled, v2, v2_lyrics, v3)",
      C.LabelConditioner.new, "v9")
    H.raises("LabelConditioner: unknown option 'tbins'", C.LabelConditioner.new, { y_bins = { 2, 2 }, tbins = 3 })
    H.raises("LabelConditioner: y_bins must be {genre_bins, artist_bins}", C.LabelConditioner.new, { t_bins = 3 })
    H.raises("LabelConditioner: min_duration 600 s must be below max_duration 60 s", C.LabelConditioner.new,
      { y_bins = { 2, 2 }, min_duration = 600, max_duration = 60 })
    local c = C.Conditioner.new({ bins = 4, out_width = 3, width = 2, depth = 1 })
    H.raises("Conditioner: code 4 is out of range [0, 4)", c.forward, c, core.from_ints({ 0, 4 }, { 1, 2 }))
    H.raises("Conditioner: code -1 is out of range [0, 4)", c.forward, c, core.from_ints({ -1, 0 }, { 1, 2 }))
    H.raises("Conditioner: codes must be an int32 tensor [batch, T], got float32 [1, 2]", c.forward, c,
      core.zeros({ 1, 2 }))
    H.raises("Conditioner: codes must be an int32 tensor [batch, T], got int32 [2]", c.forward, c,
      core.from_ints({ 0, 1 }, { 2 }))
    H.raises("Conditioner: codes must be an int32 tensor [batch, T], got nil", c.forward, c, nil)
    H.raises("Conditioner: unknown preset 'big' (known: small_upsampler, upsampler_level_0, upsampler_level_1)",
      C.Conditioner.new, "big")
    H.raises("Conditioner: unknown option 'widht'", C.Conditioner.new, { widht = 3 })
  end,
}
