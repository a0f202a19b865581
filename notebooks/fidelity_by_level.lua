-- Fidelity by level: how well each level of a VQ-VAE reconstructs music, as spectral
-- convergence (linear and dB), SNR, L1 and the multispectral distance per level, per
-- frequency band and per clip, with log-magnitude spectrograms of the input and of every
-- level's reconstruction. Trains a short small-preset run, or evaluates --ckpt=FILE
-- (e.g. runs/quickstart/train/step_*.safetensors from `make demo`).
--   build/jbx notebooks/fidelity_by_level.lua [--ckpt=FILE] [--steps=N] [--quick] [--out=DIR]
local cli = require "jukebox.cli"
local codec = require "jukebox.codec"
local core = require "jukebox.core"
local losses = require "jukebox.losses"
local metrics = require "jukebox.metrics"
local notebook = require "jukebox.notebook"
local plot = require "jukebox.plot"
local models = require "jukebox.models"

local NAME = "fidelity_by_level"
local spec = {
  { "data", "data/music", "folder of audio clips to train and evaluate on" },
  { "out", "notebooks/out/" .. NAME, "report folder (report.md, figures, run/)" },
  { "ckpt", "", "evaluate this checkpoint instead of training one" },
  { "steps", 1500, "training steps when no --ckpt is given" },
  { "batch", 4, "crops per batch (training)" },
  { "sample_length", 8192, "samples per crop (training)" },
  { "eval_seconds", 120, "seconds of audio evaluated (whole clips spread over the folder)" },
  { "clip", "", "clip (file name) shown in the spectrograms; default: the median one by level-1 SC" },
  { "spec_seconds", 4, "seconds shown in the spectrograms" },
  { "threads", 2, "threads for BLAS and OpenMP" },
  { "seed", 0, "seed of the training run" },
  { "quick", false, "smoke test: 20 training steps, 10 s of evaluation" },
}
local ok, opts = pcall(cli.parse, arg, spec, "usage: jbx notebooks/fidelity_by_level.lua [options]")
if not ok then
  io.stderr:write(NAME, ": ", opts, "\n")
  os.exit(2)
end
if opts.quick then
  opts.steps = math.min(opts.steps, 20)
  opts.eval_seconds = math.min(opts.eval_seconds, 10)
  opts.spec_seconds = math.min(opts.spec_seconds, 2)
end
if opts.ckpt ~= "" and core.path_kind(opts.ckpt) ~= "file" then
  io.stderr:write(("%s: checkpoint '%s' not found\n"):format(NAME, opts.ckpt))
  os.exit(2)
end
core.set_threads(opts.threads)

local nb = notebook.new(NAME, { out = opts.out, threads = opts.threads })
local fmt = string.format
local function db(x) return math.abs(x) < 0.005 and "0.00 dB" or fmt("%.2f dB", x) end
-- plot.lua's PNG terminal uses gnuplot's enhanced text, where "_" makes a subscript.
local function gp(s) return (s:gsub("_", "\\_")) end

-- ---- the model: a checkpoint, or a short training run ----
local model, source, log_path, step
if opts.ckpt ~= "" then
  local meta
  model, _, meta = models.load(opts.ckpt)
  step = meta.step
  source = fmt("the checkpoint `%s` (step %s)", opts.ckpt, tostring(step))
  local dir = opts.ckpt:match("^(.*)/[^/]*$") or "."
  if core.path_kind(dir .. "/log.csv") == "file" then log_path = dir .. "/log.csv" end
else
  local run_dir = nb:path("run")
  os.execute(fmt("rm -rf '%s'", run_dir)) -- a fresh run, never a resumed one
  local train = require "jukebox.train" -- only here: evaluating a --ckpt needs no trainer
  local r = train.run({ data = opts.data, out = run_dir, preset = "small", steps = opts.steps,
    batch = opts.batch, sample_length = opts.sample_length, seed = opts.seed, threads = opts.threads,
    log_every = math.max(1, opts.steps // 100), ckpt_every = opts.steps, keep = 1 })
  if r.interrupted then os.exit(130) end
  model, log_path, step = r.model, r.log, r.step
  source = fmt("a run of the `small` preset trained here for %d steps (batch %d x %d samples, seed %d; "
    .. "checkpoint `%s`)", r.step, opts.batch, opts.sample_length, opts.seed, r.checkpoint)
end
local hp, hops, L = model.hp, model.hop_lengths, model.hp.levels
local rate = hp.sr

-- ---- evaluation, with per-clip and per-band statistics gathered on the way ----
-- Bands of the reference's STFT (n_fft 2048 at 22050 Hz: 10.8 Hz per bin), each 4x wider.
local bands = { { 0, 250 }, { 250, 1000 }, { 1000, 4000 }, { 4000, rate / 2 } }
local n_fft = losses.stft.n_fft
local function band_bins(b)
  local lo = math.floor(b[1] * n_fft / rate + 0.5)
  local hi = math.min(n_fft // 2, math.floor(b[2] * n_fft / rate + 0.5) - 1)
  if b[2] >= rate / 2 then hi = n_fft // 2 end
  return lo, hi
end
local band_sum = {} -- band_sum[l][b] = {x2 =, err2 =, y2 =}: energies summed over clips
for l = 1, L do
  band_sum[l] = {}
  for b = 1, #bands do band_sum[l][b] = { x2 = 0, err2 = 0, y2 = 0 } end
end
local per_clip = {} -- {name =, path =, sc_db = {per level}, snr_db = {per level}}
local eval_dir, chosen = notebook.spread_clips(opts.data, opts.eval_seconds, nb:path("eval_clips"))
local function energy(t) return (t * t):sum():item() end

local t_eval = core.clock()
local result = metrics.evaluate(model, eval_dir, {
  max_seconds = opts.eval_seconds,
  progress = function(i, n, path) io.stderr:write(fmt("[%s] eval %d/%d %s\n", NAME, i, n, path:match("[^/]*$"))) end,
  keep = function(path, x, recons)
    local name = path:match("[^/]*$"):gsub("^%d%d_", "")
    local row = { name = name, path = path, sc_db = {}, snr_db = {} }
    -- The clip's own SC and SNR, defined exactly as the table's (metrics.fidelity).
    local acc = metrics.fidelity(L)
    acc:add(x, recons)
    for l = 1, L do
      local r = acc:result(l)
      row.sc_db[l], row.snr_db[l] = r.spectral_convergence_db, r.snr_db
    end
    core.no_grad(function()
      local sx = losses.spec(x:reshape({ 1, 1, -1 }))
      for l = 1, L do
        local sy = losses.spec(recons[l]:reshape({ 1, 1, -1 }))
        local d = sx - sy
        for b, band in ipairs(bands) do
          local lo, hi = band_bins(band)
          local s = band_sum[l][b]
          s.x2 = s.x2 + energy(sx:narrow(2, lo + 1, hi - lo + 1))
          s.err2 = s.err2 + energy(d:narrow(2, lo + 1, hi - lo + 1))
          s.y2 = s.y2 + energy(sy:narrow(2, lo + 1, hi - lo + 1))
        end
      end
    end)
    per_clip[#per_clip + 1] = row
  end,
})
local eval_time = core.clock() - t_eval

-- Genres from the folder's manifest.csv (data/manifest.csv for data/music), when there is one.
local genre = {}
for _, m in ipairs({ opts.data .. "/manifest.csv", (opts.data:match("^(.*)/[^/]+/?$") or ".") .. "/manifest.csv" }) do
  local f = io.open(m)
  if f then
    f:read("l")
    for line in f:lines() do
      local file, g = line:match("^([^,]+),.*,([^,]*)$")
      if file then genre[file] = g end
    end
    f:close()
    break
  end
end

-- The clip for the spectrograms: --clip, else the median clip by level-1 SC (a typical one).
local shown
do
  local order = {}
  for i, c in ipairs(per_clip) do order[i] = c end
  table.sort(order, function(a, b) return a.sc_db[1] < b.sc_db[1] end)
  shown = order[(#order + 1) // 2]
  if opts.clip ~= "" then
    local found
    for _, c in ipairs(per_clip) do
      if c.name == opts.clip then found = c end
    end
    if found then
      shown = found
    else
      io.stderr:write(fmt("%s: clip '%s' is not among the evaluated clips; showing %s\n", NAME, opts.clip, shown.name))
    end
  end
end
local lv = result.levels
local segment = result.segment or metrics.defaults.segment

nb:md(fmt([[
  # Fidelity by level

  Jukebox's VQ-VAE has one encoder, codebook and decoder per level; each level
  reconstructs the audio on its own from codes at its own rate. This report measures
  how much each level keeps, on %s: %d levels with hop lengths %s (%s codes per
  second), %d codes per level.

  Evaluated on %.0f s of audio (%s spread over `%s`%s) in %.0f s. Every clip
  is encoded and decoded whole (in chunks with context), then compared with the input:

  - **SC**, spectral convergence `||S(x) - S(y)||_F / ||S(x)||_F` of the magnitude STFT
    (n_fft 2048, hop 256, Hann window 1536, as the reference), averaged over segments of
    %d samples (%.2f s) of every clip; in dB `20 log10(SC)`. 0 dB means the error is as
    large as the signal; lower is better.
  - **SNR**, `10 log10(sum x^2 / sum (y - x)^2)` on the waveform: it rewards getting the
    phase right, which a coarse level need not do to sound similar.
  - **L1**, mean absolute sample error; **multispectral**, the reference's training
    distance (mean over three STFT resolutions of `||S(x) - S(y)||_F`).]],
  source, L, table.concat(hops, "/"),
  (function()
    local t = {}
    for l = 1, L do t[l] = fmt("%.0f", rate / hops[l]) end
    return table.concat(t, "/")
  end)(), hp.l_bins, result.seconds, fmt("%d whole clip%s", result.clips, result.clips == 1 and "" or "s"), opts.data,
  chosen and (": " .. table.concat(chosen, ", ")) or "", eval_time, segment, segment / rate))

-- ---- the table ----
local rows = {}
for l = 1, L do
  local s = lv[l]
  rows[l] = { l, s.hop_length, fmt("%.3f", s.spectral_convergence), fmt("%.2f", s.spectral_convergence_db),
              fmt("%.2f", s.snr_db), fmt("%.4f", s.l1), fmt("%.3f", s.multispectral), s.used,
              fmt("%.1f", s.perplexity) }
end
nb:md("## Per level")
nb:table({ "level", "hop", "SC", "SC (dB)", "SNR (dB)", "L1", "multispectral", "codes used", "perplexity" },
  rows, { align = "rrrrrrrrr" })

-- SC per clip: the spread behind the means.
local lo_db, hi_db, best_clip, worst_clip = {}, {}, {}, {}
for l = 1, L do
  lo_db[l], hi_db[l] = math.huge, -math.huge
  for _, c in ipairs(per_clip) do
    if c.sc_db[l] < lo_db[l] then lo_db[l], best_clip[l] = c.sc_db[l], c.name end
    if c.sc_db[l] > hi_db[l] then hi_db[l], worst_clip[l] = c.sc_db[l], c.name end
  end
end
local clip_rows = {}
local has_genre = next(genre) ~= nil
for i, c in ipairs(per_clip) do
  local r = { c.name }
  if has_genre then r[2] = genre[c.name] or "" end
  for l = 1, L do r[#r + 1] = fmt("%.2f / %.2f", c.sc_db[l], c.snr_db[l]) end
  clip_rows[i] = r
end
local clip_head = { "clip" }
if has_genre then clip_head[2] = "genre" end
for l = 1, L do clip_head[#clip_head + 1] = fmt("level %d SC / SNR (dB)", l) end
nb:md("Per clip (SC in dB, then SNR in dB):")
nb:table(clip_head, clip_rows)

-- ---- SC vs level ----
local xs, mean_y, lo_y, hi_y, snr_y = {}, {}, {}, {}, {}
for l = 1, L do
  xs[l], mean_y[l], lo_y[l], hi_y[l], snr_y[l] = l, lv[l].spectral_convergence_db, lo_db[l], hi_db[l], lv[l].snr_db
end
local hop_label = table.concat(hops, ", ")
local path = plot.lines(nb:path("sc_db_by_level.png"), { series = {
    { name = "SC, mean over clips (dB)", x = xs, y = mean_y },
    { name = "SC, best clip (dB)", x = xs, y = lo_y },
    { name = "SC, worst clip (dB)", x = xs, y = hi_y },
    { name = "SNR, mean over clips (dB)", x = xs, y = snr_y },
  }, title = "Spectral convergence and SNR by level (SC: lower is better; SNR: higher is better)",
  xlabel = fmt("level (hop lengths %s)", hop_label), ylabel = "dB", width = 1000, height = 450 })
nb:figure(path, fmt("SC (dB) and SNR (dB) against level; hops %s", hop_label))

-- ---- per band ----
nb:md([[
  ## Per frequency band

  SC restricted to four bands of the STFT (energies summed over all clips), and the energy
  of each level's reconstruction relative to the input's in that band (0 dB: the same
  energy; negative: the level loses energy there).]])
local band_names, band_rows = {}, {}
for b, band in ipairs(bands) do band_names[b] = fmt("%g-%g Hz", band[1], band[2]) end
local band_sc, band_gain = {}, {}
for l = 1, L do
  band_sc[l], band_gain[l] = {}, {}
  local r = { fmt("level %d (hop %d)", l, hops[l]) }
  for b = 1, #bands do
    local s = band_sum[l][b]
    band_sc[l][b] = 10 * math.log(math.max(s.err2, 1e-20) / math.max(s.x2, 1e-20), 10)
    band_gain[l][b] = 10 * math.log(math.max(s.y2, 1e-20) / math.max(s.x2, 1e-20), 10)
    r[#r + 1] = fmt("%.2f / %s", band_sc[l][b], math.abs(band_gain[l][b]) < 0.05 and "0.0"
      or fmt("%+.1f", band_gain[l][b]))
  end
  band_rows[l] = r
end
local bh = { "level" }
for b = 1, #bands do bh[#bh + 1] = band_names[b] .. ": SC / energy (dB)" end
nb:table(bh, band_rows)
local band_series = {}
for l = 1, L do
  local x, y = {}, {}
  for b = 1, #bands do x[b], y[b] = b, band_sc[l][b] end
  band_series[l] = { name = fmt("level %d (hop %d)", l, hops[l]), x = x, y = y }
end
path = plot.lines(nb:path("sc_db_by_band.png"), { series = band_series,
  title = "Spectral convergence per frequency band (lower is better)",
  xlabel = "band: " .. table.concat(band_names, ", "), ylabel = "SC (dB)", width = 1000, height = 450 })
nb:figure(path, "SC (dB) per band and level")

-- ---- spectrograms ----
do
  -- Decode the first spec_seconds of the clip again (cheaper than keeping every clip).
  local x = core.audio.load(shown.path, { rate = rate, mono = true, seconds = opts.spec_seconds }):reshape({ -1 })
  local recons = codec.reconstruct(model, x)
  local items = { { name = "input", audio = x } }
  for l = 1, L do
    items[#items + 1] = { name = fmt("level %d (hop %d): SC of the clip %.2f dB", l, hops[l], shown.sc_db[l]),
                          audio = recons[l] }
  end
  local secs = x:numel() / rate
  nb:md(fmt("## Spectrograms\n\nLog-magnitude spectrograms (n_fft 1024, hop 256) of the first %.0f s of `%s`%s: "
    .. "the input, then each level's reconstruction.", secs, shown.name,
    opts.clip ~= "" and shown.name == opts.clip and "" or " (the median clip by level-1 SC)"))
  path = plot.spectrograms(nb:path("spectrograms.png"), { items = items, rate = rate, from = 0, to = secs,
    columns = 2, title = gp(fmt("Log-magnitude spectrograms: %s", shown.name)) })
  nb:figure(path, fmt("Input and reconstructions of %s", shown.name))
end

if log_path then
  nb:md("## Training curves\n\nFrom the run's `log.csv`.")
  path = plot.training_curves(nb:path("training_curves.png"), log_path)
  nb:figure(path, "Training curves of the evaluated run")
end

-- ---- interpretation, computed from the numbers above ----
local lines = {}
local sc = mean_y
local monotone = true
for l = 2, L do
  if sc[l] <= sc[l - 1] then monotone = false end
end
if L >= 2 then
  local per_step = (sc[L] - sc[1]) / (L - 1)
  if monotone then
    lines[#lines + 1] = fmt("- SC gets worse with every coarser level: from %s at level 1 (hop %d) to %s at level %d "
      .. "(hop %d), %.2f dB per level on average.", db(sc[1]), hops[1], db(sc[L]), L, hops[L], per_step)
  else
    local order = {}
    for l = 1, L do order[l] = l end
    table.sort(order, function(a, b) return sc[a] < sc[b] end)
    local ranks = {}
    for i, l in ipairs(order) do ranks[i] = fmt("level %d (%s)", l, db(sc[l])) end
    lines[#lines + 1] = fmt("- SC does not simply worsen with the hop length here; from best to worst: %s.",
      table.concat(ranks, ", "))
  end
end
do
  local near_zero = {}
  for l = 1, L do
    if sc[l] > -1 then near_zero[#near_zero + 1] = fmt("level %d (%s)", l, db(sc[l])) end
  end
  if #near_zero > 0 then
    lines[#lines + 1] = fmt("- At %s the spectral error is about as large as the input itself (SC above -1 dB): "
      .. "%s little of the input's spectrum yet%s.", table.concat(near_zero, ", "),
      #near_zero > 1 and "these levels reconstruct" or "this level reconstructs",
      opts.ckpt == "" and fmt(" after %d training steps", step) or "")
  end
end
do
  local parts, low = {}, {}
  for l = 1, L do
    parts[#parts + 1] = fmt("%.2f", lv[l].snr_db)
    if lv[l].snr_db < 1 then low[#low + 1] = tostring(l) end
  end
  local s = fmt("- SNR by level is %s dB.", table.concat(parts, " / "))
  if #low > 0 then
    s = s .. fmt(" Below 1 dB (level%s %s) the waveform is not followed sample by sample (the error has "
      .. "about the energy of the signal), so SC and the spectrograms say more about what that level keeps.",
      #low > 1 and "s" or "", table.concat(low, ", "))
  end
  lines[#lines + 1] = s
end
do
  local best, worst, same_best, same_worst = {}, {}, true, true
  for l = 1, L do
    best[l], worst[l] = 1, 1
    for b = 2, #bands do
      if band_sc[l][b] < band_sc[l][best[l]] then best[l] = b end
      if band_sc[l][b] > band_sc[l][worst[l]] then worst[l] = b end
    end
    if best[l] ~= best[1] then same_best = false end
    if worst[l] ~= worst[1] then same_worst = false end
  end
  local function per_level(tbl)
    local t = {}
    for l = 1, L do t[l] = fmt("level %d: %s", l, db(band_sc[l][tbl[l]])) end
    return table.concat(t, ", ")
  end
  if same_best and same_worst then
    lines[#lines + 1] = fmt("- Every level is most accurate in %s (SC %s) and least accurate in %s (SC %s).",
      band_names[best[1]], per_level(best), band_names[worst[1]], per_level(worst))
  else
    for l = 1, L do
      lines[#lines + 1] = fmt("- Level %d (hop %d) is most accurate in %s (SC %s) and least in %s (SC %s).", l, hops[l],
        band_names[best[l]], db(band_sc[l][best[l]]), band_names[worst[l]], db(band_sc[l][worst[l]]))
    end
  end
  -- Energy kept per band: where the reconstructions fall short (or overshoot) the most.
  local parts = {}
  for l = 1, L do
    local lo_b = 1
    for b = 2, #bands do
      if band_gain[l][b] < band_gain[l][lo_b] then lo_b = b end
    end
    local g = band_gain[l][lo_b]
    if math.abs(g) < 0.5 then
      parts[#parts + 1] = fmt("level %d keeps at least the input's energy to within 0.5 dB in every band", l)
    elseif g > 0 then
      parts[#parts + 1] = fmt("level %d has more energy than the input in every band (at least %.1f dB more, in %s)",
        l, g, band_names[lo_b])
    else
      parts[#parts + 1] = fmt("level %d has %.1f dB less energy than the input in %s", l, -g, band_names[lo_b])
    end
  end
  lines[#lines + 1] = fmt("- The band where each reconstruction's energy is furthest below the input's: %s.",
    table.concat(parts, "; "))
  -- Bands "reproduced": SC below -6 dB, i.e. an error of at most half the input's magnitude.
  local upto = {}
  for l = 1, L do
    local top
    for b = 1, #bands do
      if band_sc[l][b] < -6 then top = b else break end
    end
    upto[l] = top and fmt("level %d up to %g Hz", l, bands[top][2]) or fmt("level %d not even below %g Hz", l,
      bands[1][2])
  end
  lines[#lines + 1] = fmt("- Counting a band as reproduced when its SC is below -6 dB (an error of at most half "
    .. "the input's magnitude), from the lowest band up: %s.", table.concat(upto, ", "))
end
if #per_clip > 1 then
  local parts = {}
  for l = 1, L do
    local function named(c) return genre[c] and fmt("%s, %s", c, genre[c]) or c end
    parts[#parts + 1] = fmt("level %d from %s (%s) to %s (%s)", l, db(lo_db[l]), named(best_clip[l]), db(hi_db[l]),
      named(worst_clip[l]))
  end
  lines[#lines + 1] = fmt("- Clips differ: SC per clip ranges %s.", table.concat(parts, "; "))
end
nb:md("## What the numbers say\n\n" .. table.concat(lines, "\n"))

local json_levels = {}
for l = 1, L do
  json_levels[l] = { level = l, hop = hops[l], sc = lv[l].spectral_convergence, sc_db = lv[l].spectral_convergence_db,
    snr_db = lv[l].snr_db, l1 = lv[l].l1, multispectral = lv[l].multispectral, used = lv[l].used,
    band_sc_db = band_sc[l], band_energy_db = band_gain[l] }
end
nb:json("results.json", { source = source, step = step, clips = result.clips, seconds = result.seconds,
  bands = band_names, levels = json_levels, per_clip = per_clip })
nb:write()
