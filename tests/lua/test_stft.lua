-- The STFT room from Lua (jbx.core.stft_mag, stft, istft, mel_filterbank, stft_window):
-- values against the torch fixture tests/fixtures/stft.fix (tools/fixtures/stft.py),
-- gradients, round trips, defaults and the error messages. Each test raises to fail.
local FIXTURE = "tests/fixtures/stft.fix"

local H = require "helpers"
local eq, shape_str, raises, max_abs_diff = H.assert_eq, H.shape_of, H.raises, H.max_abs_diff

-- The fixture's arrays (read once): name -> {dtype, shape, data}.
local fixture_cache
local function fixture()
  fixture_cache = fixture_cache or H.read_fixture(FIXTURE)
  return fixture_cache
end

-- A fixture array as a float32 tensor of its shape.
local function fixture_tensor(C, name)
  local a = assert(fixture()[name], "fixture has no array " .. name)
  return C.tensor(a.data):view(a.shape)
end

-- The fixture's probe g[b, k, t] = cos(0.37 k + 1.3 t + 2.1 b) (0-based k, t, b).
local function probe(C, B, K, T)
  local v = {}
  for b = 0, B - 1 do
    for k = 0, K - 1 do
      for t = 0, T - 1 do v[#v + 1] = math.cos(0.37 * k + 1.3 * t + 2.1 * b) end
    end
  end
  return C.tensor(v):view({B, K, T})
end

return {
  ["stft_mag matches torch at 512/50/240, and its gradient"] = function(jbx)
    local C = jbx.core
    local x = fixture_tensor(C, "x")
    x.requires_grad = true
    local m = C.stft_mag(x, 512, 50, 240)
    eq(shape_str(m), "[2, 257, 23]", "shape")
    local ref = fixture_tensor(C, "r3_mag")
    local err = max_abs_diff(m, ref) / ref:abs():max():item()
    assert(err < 1e-5, "magnitude error " .. err)
    m:backward(probe(C, 2, 257, 23))
    local gref = fixture_tensor(C, "r3_gx")
    local gerr = max_abs_diff(x.grad, gref) / gref:abs():max():item()
    assert(gerr < 1e-4, "gradient error " .. gerr)
  end,

  ["stft_mag of a 1-D signal, defaults hop = n_fft // 4 and win = n_fft"] = function(jbx)
    local C = jbx.core
    local x = C.randn({100}, {seed = 3})
    local m = C.stft_mag(x, 16)
    eq(shape_str(m), "[9, 26]", "shape")
    eq(max_abs_diff(m, C.stft_mag(x, 16, 4, 16)), 0, "defaults")
  end,

  ["stft gives (re, im) whose modulus is stft_mag"] = function(jbx)
    local C = jbx.core
    local x = C.randn({2, 300}, {seed = 4})
    local s = C.stft(x, 64, 16, 48)
    eq(shape_str(s), "[2, 33, 19, 2]", "shape")
    local re, im = s:select(4, 1), s:select(4, 2)
    local mod = (re * re + im * im):sqrt()
    assert(max_abs_diff(mod, C.stft_mag(x, 64, 16, 48)) < 1e-4, "modulus")
  end,

  ["istft inverts stft and matches torch.istft"] = function(jbx)
    local C = jbx.core
    local x = fixture_tensor(C, "x")
    local y = C.istft(C.stft(x, 1024, 120, 600), 1024, 120, 600, 1100)
    eq(shape_str(y), "[2, 1100]", "round trip shape")
    assert(max_abs_diff(y, x) < 1e-5, "round trip error " .. max_abs_diff(y, x))
    local spec = fixture_tensor(C, "istft_spec")
    assert(max_abs_diff(C.istft(spec, 16, 4, 12), fixture_tensor(C, "istft_out")) < 1e-5, "default length")
    assert(max_abs_diff(C.istft(spec, 16, 4, 12, 60), fixture_tensor(C, "istft_out60")) < 1e-5, "length 60")
  end,

  ["a spectral-convergence-like loss trains through stft_mag"] = function(jbx)
    local C = jbx.core
    local x = C.randn({2, 2000}, {seed = 5})
    local y = C.randn({2, 2000}, {seed = 6, requires_grad = true})
    local loss = (C.stft_mag(x, 256, 64, 192) - C.stft_mag(y, 256, 64, 192)):norm()
    loss:backward()
    eq(shape_str(y.grad), "[2, 2000]", "grad shape")
    assert(y.grad:abs():max():item() > 0, "zero gradient")
  end,

  ["mel_filterbank is torchaudio's HTK filterbank"] = function(jbx)
    local C = jbx.core
    local fb = C.mel_filterbank(1024, 22050, 80)
    eq(shape_str(fb), "[80, 513]", "shape")
    local fx = fixture()
    local start, count, vals = fx.mel_start.data, fx.mel_count.data, fx.mel_vals.data
    local rows, off, worst = fb:totable(), 0, 0
    for m = 1, 80 do
      for k = 1, 513 do
        local j = k - 1 - start[m]
        local want = (j >= 0 and j < count[m]) and vals[off + j + 1] or 0
        worst = math.max(worst, math.abs(rows[m][k] - want))
      end
      off = off + count[m]
    end
    assert(worst < 1e-5, "mel error " .. worst)
    eq(max_abs_diff(fb, C.mel_filterbank(1024, 22050, 80, 0, 11025)), 0, "fmax default")
  end,

  ["stft_window is the periodic Hann window centred in n_fft"] = function(jbx)
    local C = jbx.core
    local w = C.stft_window(8, 4):totable()
    local want = {0, 0, 0, 0.5, 1, 0.5, 0, 0}
    for i = 1, 8 do assert(math.abs(w[i] - want[i]) < 1e-6, "w[" .. i .. "] = " .. w[i]) end
  end,

  ["errors name the op, the shapes and what is needed"] = function(jbx)
    local C = jbx.core
    local x = C.zeros({2, 100})
    raises("stft_mag: input [2, 3, 100] must be [L] or [B, L]", C.stft_mag, C.zeros({2, 3, 100}), 16, 4, 12)
    raises("stft_mag: hop 0 must be >= 1", C.stft_mag, x, 16, 0, 12)
    raises("stft_mag: win_length 17 must be in [1, n_fft 16]", C.stft_mag, x, 16, 4, 17)
    raises("stft_mag: n_fft 1 must be >= 2", C.stft_mag, x, 1, 1, 1)
    raises("stft_mag: input [100] is int32, expected float32", C.stft_mag, C.zeros({100}, {dtype = "int32"}), 16)
    raises("needs at least 1025 samples", C.stft_mag, x, 2048, 256, 1536)
    raises("stft: hop -1 must be >= 1", C.stft, x, 16, -1)
    raises("stft_mag: argument 1 (input) must be a tensor, got string", C.stft_mag, "not a tensor", 16)
    raises("stft_mag: argument 2 (n_fft) must be an integer, got 16.5", C.stft_mag, x, 16.5)
    raises("istft: input [2, 9, 26, 2] has 9 bins, n_fft 32 needs 17", C.istft, C.stft(x, 16, 4, 12), 32, 4, 12)
    raises("istft: the window overlap-add is zero", C.istft, C.stft(x, 16, 4, 12), 16, 13, 12)
    raises("istft: argument 5 (length) must be an integer >= 1, got 0", C.istft, C.stft(x, 16, 4, 12), 16, 4, 12, 0)
    raises("mel_filterbank: n_mels 0 must be >= 1", C.mel_filterbank, 1024, 22050, 0)
    raises("mel_filterbank: need 0 <= fmin < fmax, got fmin 5000, fmax 4000", C.mel_filterbank, 1024, 22050, 80, 5000, 4000)
  end,
}
