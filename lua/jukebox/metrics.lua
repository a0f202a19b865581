--- Evaluation of a trained VQ-VAE over a whole folder: codebook usage per level and
-- reconstruction fidelity per level, accumulated over every clip (not one batch).
--
-- Definitions (see docs of each function):
--   usage        codes used at least once / l_bins;  dead = l_bins - used
--   entropy_bits entropy of the code histogram in bits; perplexity = 2^entropy_bits
--   top10_share  share of all code occurrences taken by the ten most used codes
--   l1, l2       mean |y - x| and mean (y - x)^2 over every sample
--   snr_db       10 log10(sum x^2 / sum (y - x)^2) over every sample
--   spectral_convergence  mean over segments of ||S(x) - S(y)|| / ||S(x)|| (STFT
--                n_fft 2048, hop 256, window 1536); segments with ||S(x)|| <= 2e-3 are
--                left out of the mean (the reference counts them as 0)
--   spectral_convergence_db  20 log10(spectral_convergence)
--   multispectral mean over segments of the reference's multispectral loss
-- Spectral metrics use fixed segments of `segment` samples (default 16384, the training
-- crop length), because a spectral norm grows with the length of the signal.
local core = require "jukebox.core"
local codec = require "jukebox.codec"
local data = require "jukebox.data"
local losses = require "jukebox.losses"

local metrics = {}

metrics.defaults = { segment = 16384, sc_eps = 2e-3 }

--- Statistics of a code histogram (Lua array of counts, one per code) and, when given,
-- of its codebook k [K, D].
function metrics.codebook_stats(counts, k)
  local total, used, sorted = 0, 0, {}
  for i, c in ipairs(counts) do
    total = total + c
    if c > 0 then used = used + 1 end
    sorted[i] = c
  end
  table.sort(sorted, function(a, b) return a > b end)
  local entropy, top10 = 0, 0
  for i, c in ipairs(sorted) do
    if c > 0 then
      local p = c / total
      entropy = entropy - p * math.log(p, 2)
    end
    if i <= 10 then top10 = top10 + c end
  end
  local K = #counts
  local s = {
    codes = K, used = used, usage = K > 0 and used / K or 0, dead = K - used, entropy_bits = entropy,
    perplexity = 2 ^ entropy, top10_share = total > 0 and top10 / total or 0, total = total,
  }
  if k then s.nearest_code_distance = metrics.nearest_code_distance(k) end
  return s
end

--- Mean Euclidean distance from each code of k [K, D] to its nearest other code
-- (0 for a codebook of fewer than two codes).
function metrics.nearest_code_distance(k)
  local K = k:shape()[1]
  if K < 2 then return 0 end
  return core.no_grad(function()
    local sq = (k * k):sum(2, true) -- [K, 1]
    local d2 = sq + sq:transpose(1, 2) - core.matmul(k, k:transpose(1, 2)) * 2
    -- Mask the diagonal with a large value so a code is not its own neighbour.
    local idx = core.arange(0, K, 1)
    local diag = idx:reshape({ K, 1 }):eq(idx:reshape({ 1, K }))
    local masked = core.where(diag, core.full({ K, K }, 1e30), d2:clamp(0, math.huge))
    return masked:min(2):sqrt():mean():item()
  end)
end

local FIDELITY_KEYS = { "l1", "l2", "snr_db", "spectral_convergence", "spectral_convergence_db", "multispectral" }
metrics.fidelity_keys = FIDELITY_KEYS

-- x [n] -> [segments, 1, len]: whole segments of `seg` samples, or the whole signal
-- (zero-padded to the STFT's minimum) when it is shorter than one segment.
local function segments(x, seg)
  local n = x:numel()
  local count = n // seg
  if count == 0 then
    local len = math.max(n, losses.stft.n_fft)
    if len > n then x = core.concat({ x, core.zeros({ len - n }) }, 1) end
    return x:reshape({ 1, 1, len })
  end
  return x:narrow(1, 1, count * seg):reshape({ count, 1, seg })
end

local function frob(t) -- per-example L2 norm of [N, ...] -> [N]
  return t:reshape({ t:shape()[1], -1 }):norm(2)
end

--- Accumulates fidelity over clips for several reconstructions at once (one per level).
-- acc = metrics.fidelity(levels, {segment =}); acc:add(x, {y1, y2, ...}) with x, y [n]
-- returns the clip's SNR (dB) per level; acc:result(l) -> {l1, l2, snr_db,
-- spectral_convergence, spectral_convergence_db, multispectral, sc_segments}.
-- The input's spectrograms are computed once per clip for all levels.
function metrics.fidelity(levels, opts)
  opts = opts or {}
  local seg = opts.segment or metrics.defaults.segment
  local eps = opts.sc_eps or metrics.defaults.sc_eps
  if math.type(seg) ~= "integer" or seg < losses.stft.n_fft then
    error(("metrics: segment must be an integer of at least %d samples (the STFT size), got %s"):format(
      losses.stft.n_fft, tostring(seg)), 2)
  end
  local acc = { n = 0, signal = 0, segments = 0, levels = {} }
  for l = 1, levels do
    acc.levels[l] = { abs = 0, sq = 0, sc_sum = 0, sc_n = 0, ms_sum = 0 }
  end
  function acc.add(self, x, ys)
    local snr = {}
    core.no_grad(function()
      x = x:reshape({ -1 })
      local n = x:numel()
      local sig = (x * x):sum():item()
      self.n = self.n + n
      self.signal = self.signal + sig
      local xs = segments(x, seg)
      local nseg = xs:shape()[1]
      self.segments = self.segments + nseg
      local sx = losses.spec(xs)
      local gt = frob(sx)
      local keep = gt:gt(eps)
      local kept = math.floor(keep:sum():item() + 0.5)
      local msx = {}
      for i, r in ipairs(losses.multispec) do msx[i] = losses.spec(xs, r) end
      for l, y in ipairs(ys) do
        local a = self.levels[l]
        y = y:reshape({ -1 })
        if y:numel() ~= n then
          error(("metrics: reconstruction of level %d has %d samples, input %d"):format(l, y:numel(), n), 3)
        end
        local err = y - x
        local sq = (err * err):sum():item()
        a.abs = a.abs + err:abs():sum():item()
        a.sq = a.sq + sq
        snr[l] = 10 * math.log(math.max(sig, 1e-30) / math.max(sq, 1e-30), 10)
        local ysg = segments(y, seg)
        local sc = frob(sx - losses.spec(ysg)) / gt:clamp(eps, math.huge)
        a.sc_sum = a.sc_sum + (sc * keep):sum():item()
        a.sc_n = a.sc_n + kept
        local ms
        for i, r in ipairs(losses.multispec) do
          local d = frob(msx[i] - losses.spec(ysg, r))
          ms = ms and ms + d or d
        end
        a.ms_sum = a.ms_sum + ms:sum():item() / #losses.multispec
      end
    end)
    return snr
  end
  function acc.result(self, l)
    local a = self.levels[l]
    local n = math.max(self.n, 1)
    local sc = a.sc_n > 0 and a.sc_sum / a.sc_n or 0 / 0
    return {
      l1 = a.abs / n,
      l2 = a.sq / n,
      snr_db = 10 * math.log(math.max(self.signal, 1e-30) / math.max(a.sq, 1e-30), 10),
      spectral_convergence = sc,
      spectral_convergence_db = 20 * math.log(math.max(sc, 1e-12), 10),
      multispectral = self.segments > 0 and a.ms_sum / self.segments or 0 / 0,
      sc_segments = a.sc_n,
    }
  end
  return acc
end

--- Evaluates `model` on every audio file of `dir` (up to max_seconds of audio in all).
-- Returns {levels = {{codebook stats..., fidelity...}, ...}, clips =, seconds =,
-- per_clip = {{path =, seconds =, snr_db = {per level}}, ...}}.
-- opts: max_seconds, segment, chunk (codec), progress(i, n, path), keep(path, x, recons,
-- codes) called per clip (e.g. to keep one clip for plots).
function metrics.evaluate(model, dir, opts)
  opts = opts or {}
  local budget = opts.max_seconds and opts.max_seconds > 0 and opts.max_seconds or math.huge
  local files, listed = {}, 0
  for _, f in ipairs(data.scan(dir)) do -- the files the budget reaches
    if listed < budget then files[#files + 1] = f end
    listed = listed + f.seconds
  end
  local rate = model.hp.sr
  local L = model.hp.levels
  local counts = {}
  for l = 1, L do
    counts[l] = {}
    for i = 1, model.hp.l_bins do counts[l][i] = 0 end
  end
  local fid = metrics.fidelity(L, { segment = opts.segment })
  local per_clip = {}
  local seconds, clips = 0, 0
  local copts = { chunk = opts.chunk }
  model:eval()
  for i, f in ipairs(files) do
    if seconds >= budget then break end
    local load = { rate = rate, mono = true }
    if seconds + f.seconds > budget then load.seconds = budget - seconds end
    local x = core.audio.load(f.path, load):reshape({ -1 })
    local n = x:numel()
    if n > 0 then
      local recons, codes = codec.reconstruct(model, x, copts)
      for l = 1, L do
        local cl = counts[l]
        for _, c in ipairs(codes[l]:totable()) do cl[c + 1] = cl[c + 1] + 1 end
      end
      -- Per-clip SNR, to spot outliers; the totals come from the accumulator.
      local clip = { path = f.path, seconds = n / rate, snr_db = fid:add(x, recons) }
      if opts.keep then opts.keep(f.path, x, recons, codes) end
      clips = clips + 1
      per_clip[clips] = clip
      seconds = seconds + n / rate
    end
    if opts.progress then opts.progress(i, #files, f.path) end
    collectgarbage("step", 0)
  end
  if clips == 0 then error(("eval: no clip evaluated from '%s'"):format(dir), 2) end
  local levels = {}
  for l = 1, L do
    local s = metrics.codebook_stats(counts[l], model.bottleneck[l].k)
    for k, v in pairs(fid:result(l)) do s[k] = v end
    s.hop_length = model.hop_lengths[l]
    s.counts = counts[l]
    levels[l] = s
  end
  return { levels = levels, clips = clips, seconds = seconds, per_clip = per_clip,
           segment = opts.segment or metrics.defaults.segment }
end

--- Columns of the printed table: key, header, format.
metrics.table_columns = {
  { "hop_length", "hop", "%d" },
  { "used", "used", "%d" },
  { "usage", "usage", "%.3f" },
  { "dead", "dead", "%d" },
  { "entropy_bits", "H(bits)", "%.2f" },
  { "perplexity", "perplex", "%.1f" },
  { "top10_share", "top10", "%.3f" },
  { "nearest_code_distance", "nn-dist", "%.3g" },
  { "l1", "L1", "%.4f" },
  { "l2", "L2", "%.5f" },
  { "snr_db", "SNR(dB)", "%.2f" },
  { "spectral_convergence", "SC", "%.3f" },
  { "spectral_convergence_db", "SC(dB)", "%.2f" },
  { "multispectral", "multispec", "%.2f" },
}

--- A plain-text table: one row per (checkpoint, level), one column per metric.
function metrics.format_table(results)
  local width = 10
  for _, r in ipairs(results) do width = math.max(width, #r.name) end
  width = math.min(width, 40)
  local head = { ("%-" .. width .. "s %5s"):format("checkpoint", "level") }
  for _, c in ipairs(metrics.table_columns) do head[#head + 1] = ("%9s"):format(c[2]) end
  local lines = { table.concat(head, " ") }
  for _, r in ipairs(results) do
    for l, s in ipairs(r.levels) do
      local row = { ("%-" .. width .. "s %5d"):format(r.name:sub(1, width), l) }
      for _, c in ipairs(metrics.table_columns) do
        local v = s[c[1]]
        local cell = v == nil and "-" or (c[3] == "%d" and ("%d"):format(math.floor(v)) or c[3]:format(v))
        row[#row + 1] = ("%9s"):format(cell)
      end
      lines[#lines + 1] = table.concat(row, " ")
    end
  end
  return table.concat(lines, "\n")
end

return metrics
