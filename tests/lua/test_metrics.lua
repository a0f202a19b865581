-- metrics.lua: codebook statistics on hand-made histograms, nearest-code distance on a
-- hand-made codebook, fidelity numbers on hand-made signals, and a whole evaluation.
local H = require "helpers"
local close, eq, yes = H.assert_close, H.assert_eq, H.assert_true

local T = {}

local function sine(n, freq, amp, rate)
  local t = {}
  for i = 1, n do t[i] = amp * math.sin(2 * math.pi * freq * (i - 1) / (rate or 22050)) end
  return t
end

function T.codebook_stats_uniform(jbx)
  local m = require "jukebox.metrics"
  local s = m.codebook_stats({ 5, 5, 5, 5, 5, 5, 5, 5 })
  close(s.entropy_bits, 3, 1e-12, "entropy of 8 equal codes = log2 8")
  close(s.perplexity, 8, 1e-12)
  eq(s.used, 8); eq(s.dead, 0); eq(s.codes, 8); eq(s.total, 40)
  close(s.usage, 1)
  close(s.top10_share, 1, 1e-12, "fewer than ten codes: all of them")
  local K = 64
  local c = {}
  for i = 1, K do c[i] = 3 end
  local u = m.codebook_stats(c)
  close(u.entropy_bits, math.log(K, 2), 1e-12); close(u.perplexity, K, 1e-9)
  close(u.top10_share, 10 / K, 1e-12)
end

function T.codebook_stats_skewed_and_dead(jbx)
  local m = require "jukebox.metrics"
  -- p = 1/2, 1/4, 1/4 and one dead code: H = 1.5 bits.
  local s = m.codebook_stats({ 0, 8, 4, 4 })
  close(s.entropy_bits, 1.5, 1e-12); close(s.perplexity, 2 ^ 1.5, 1e-12)
  eq(s.used, 3); eq(s.dead, 1); close(s.usage, 0.75)
  -- 20 codes: ten with 9 each, ten with 1 each; the ten most used hold 90 of 100.
  local c = {}
  for i = 1, 20 do c[i] = i % 2 == 0 and 9 or 1 end
  local t = m.codebook_stats(c)
  close(t.top10_share, 0.9, 1e-12)
  eq(t.dead, 0)
  -- Nothing counted: zero entropy, perplexity 1, no share.
  local z = m.codebook_stats({ 0, 0, 0 })
  eq(z.used, 0); eq(z.dead, 3); close(z.entropy_bits, 0); close(z.perplexity, 1); close(z.top10_share, 0)
end

function T.nearest_code_distance(jbx)
  local m = require "jukebox.metrics"
  -- Nearest other code: 0 -> 2 (3), 1 -> 2 (4), 2 -> 0 (3), 3 -> 1 (sqrt 85).
  local k = jbx.tensor({ { 0, 0 }, { 3, 4 }, { 3, 0 }, { 10, 10 } })
  close(m.nearest_code_distance(k), (3 + 4 + 3 + math.sqrt(85)) / 4, 1e-5)
  -- Duplicate codes are at distance 0 from each other.
  close(m.nearest_code_distance(jbx.tensor({ { 1, 2, 3 }, { 1, 2, 3 } })), 0, 1e-6)
  eq(m.nearest_code_distance(jbx.tensor({ { 1, 2 } })), 0, "a single code")
  local s = m.codebook_stats({ 1, 1, 1, 1 }, k)
  close(s.nearest_code_distance, (10 + math.sqrt(85)) / 4, 1e-5)
end

function T.fidelity_offset_and_snr(jbx)
  local m = require "jukebox.metrics"
  local n = 8192
  local x = jbx.tensor(sine(n, 441, 0.5))
  -- y = x + 0.1: L1 = 0.1, L2 = 0.01, SNR = 10 log10(mean x^2 / 0.01).
  local acc = m.fidelity(2, { segment = 4096 })
  local snr = acc:add(x, { x + 0.1, x })
  local r = acc:result(1)
  close(r.l1, 0.1, 1e-5); close(r.l2, 0.01, 1e-5)
  local px = (x * x):mean():item()
  close(r.snr_db, 10 * math.log(px / 0.01, 10), 1e-4)
  close(snr[1], r.snr_db, 1e-9, "per-clip SNR")
  -- Perfect reconstruction: zero errors, SC 0, multispectral 0, SNR capped high.
  local p = acc:result(2)
  close(p.l1, 0); close(p.l2, 0); close(p.spectral_convergence, 0, 1e-6); close(p.multispectral, 0, 1e-6)
  yes(p.snr_db > 200, "perfect reconstruction has a huge SNR")
  eq(p.sc_segments, 2, "two whole segments of 4096")
end

function T.fidelity_known_noise_snr(jbx)
  local m = require "jukebox.metrics"
  local n, amp, sigma = 16384, 0.4, 0.02
  local xt, nt = sine(n, 300, amp), {}
  for i = 1, n do nt[i] = (i % 2 == 0) and sigma or -sigma end -- power exactly sigma^2
  local x, noise = jbx.tensor(xt), jbx.tensor(nt)
  local acc = m.fidelity(1)
  acc:add(x, { x + noise })
  local r = acc:result(1)
  close(r.snr_db, 10 * math.log((amp * amp / 2) / (sigma * sigma), 10), 2e-3, "SNR of y = x + noise")
  close(r.l1, sigma, 1e-5); close(r.l2, sigma * sigma, 1e-5)
end

function T.fidelity_spectral_convergence(jbx)
  local m = require "jukebox.metrics"
  local losses = require "jukebox.losses"
  local seg = 4096
  local x = jbx.tensor(sine(2 * seg, 1000, 0.3))
  local xs = x:reshape({ 2, 1, seg })
  -- |S(2x) - S(x)| = |S(x)|: SC = 1, 0 dB; the multispectral loss is the spectral norm of x.
  local acc = m.fidelity(2, { segment = seg })
  acc:add(x, { x * 2, x * 0 })
  local r = acc:result(1)
  close(r.spectral_convergence, 1, 1e-4); close(r.spectral_convergence_db, 0, 1e-3)
  local ms = losses.multispectral(xs, xs * 2):mean():item()
  close(r.multispectral, ms, 1e-4, "mean over segments of the multispectral loss")
  close(acc:result(2).spectral_convergence, 1, 1e-5, "silence as reconstruction")
  -- Any reconstruction: the mean over segments of the reference's per-example SC.
  local y = x * 0.7 + jbx.randn({ 2 * seg }) * 0.05
  local acc_y = m.fidelity(1, { segment = seg })
  acc_y:add(x, { y })
  local ref = losses.spectral_convergence(xs, y:reshape({ 2, 1, seg })):mean():item()
  close(acc_y:result(1).spectral_convergence, ref, 1e-5, "SC as losses.spectral_convergence")
  close(acc_y:result(1).spectral_convergence_db, 20 * math.log(ref, 10), 1e-4)
  -- A silent segment is left out of the SC mean (the reference would count it as 0).
  local quiet = jbx.concat({ jbx.zeros({ seg }), jbx.tensor(sine(seg, 1000, 0.3)) }, 1)
  local acc2 = m.fidelity(1, { segment = seg })
  acc2:add(quiet, { quiet * 0 })
  local q = acc2:result(1)
  close(q.spectral_convergence, 1, 1e-5); eq(q.sc_segments, 1)
  -- Shorter than one segment: the whole clip is one segment; shorter than n_fft: padded.
  local acc3 = m.fidelity(1, { segment = seg })
  acc3:add(jbx.tensor(sine(1000, 500, 0.5)), { jbx.zeros({ 1000 }) })
  close(acc3:result(1).spectral_convergence, 1, 1e-5)
  H.assert_error(function() acc3:add(x, { jbx.zeros({ 5 }) }) end, "has 5 samples, input 8192")
  H.assert_error(function() m.fidelity(1, { segment = 100 }) end, "segment must be an integer of at least 2048")
end

-- A short WAV folder and a tiny model whose codebooks are initialised.
local function tiny_setup(jbx)
  local vqvae = require "jukebox.vqvae"
  local dir = os.tmpname() .. "_metrics"
  jbx.core.mkdir_p(dir)
  jbx.audio.save(dir .. "/a.wav", jbx.tensor({ sine(3000, 440, 0.5) }), 22050)
  jbx.audio.save(dir .. "/b.wav", jbx.tensor({ sine(5000, 220, 0.3) }), 22050)
  local model = vqvae.new("tiny", { seed = 3 })
  model:train()
  model:forward(jbx.randn({ 2, 1, 2048 }) * 0.3)
  model:eval()
  return model, dir
end

function T.evaluate_folder(jbx)
  local m = require "jukebox.metrics"
  local model, dir = tiny_setup(jbx)
  local kept = 0
  local r = m.evaluate(model, dir, { segment = 2048, keep = function(path, x, recons, codes)
    kept = kept + 1
    eq(#recons, 2); eq(recons[1]:numel(), x:numel(), "recons cut to the input length")
  end })
  os.execute("rm -rf '" .. dir .. "'")
  eq(r.clips, 2); eq(kept, 2)
  close(r.seconds, 8000 / 22050, 1e-9)
  for l, s in ipairs(r.levels) do
    -- Every sample (padded to the top hop 4) gives a code: 3000/hop + 5000/hop.
    eq(s.total, (3000 + 5000) // model.hop_lengths[l], "codes counted at level " .. l)
    eq(s.codes, 16); eq(s.used + s.dead, 16)
    for _, key in ipairs({ "usage", "perplexity", "spectral_convergence", "spectral_convergence_db", "snr_db",
                           "l1", "l2", "multispectral", "nearest_code_distance", "entropy_bits", "top10_share" }) do
      yes(type(s[key]) == "number" and s[key] == s[key], ("level %d: %s is a number"):format(l, key))
    end
  end
  eq(#r.per_clip, 2)
  local cut = m.evaluate(model, "data/music", { max_seconds = 0.5 })
  eq(cut.clips, 1); close(cut.seconds, 0.5, 1e-3)
  yes(m.format_table({ { name = "x", levels = r.levels } }):find("SC%(dB%)"), "table header")
end

function T.evaluate_errors(jbx)
  local m = require "jukebox.metrics"
  local vqvae = require "jukebox.vqvae"
  local model = vqvae.new("tiny")
  H.assert_error(function() m.evaluate(model, "/nonexistent_dir_jbx") end, "is missing")
  local empty = os.tmpname() .. "_empty"
  jbx.core.mkdir_p(empty)
  H.assert_error(function() m.evaluate(model, empty) end, "no audio files")
  os.execute("rm -rf '" .. empty .. "'")
end

return T
