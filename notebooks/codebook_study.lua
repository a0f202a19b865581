-- Codebook study: how random restarts of unused codes and the codebook size change
-- codebook usage and reconstruction fidelity, from short training runs of the small
-- preset on data/. Renders notebooks/out/codebook_study/report.md with its figures.
--   build/jbx notebooks/codebook_study.lua [--steps=N] [--bins=64,512] [--quick] [--out=DIR]
local cli = require "jukebox.cli"
local core = require "jukebox.core"
local metrics = require "jukebox.metrics"
local notebook = require "jukebox.notebook"
local plot = require "jukebox.plot"
local train = require "jukebox.train"

local NAME = "codebook_study"
local spec = {
  { "data", "data/music", "folder of audio clips to train and evaluate on" },
  { "out", "notebooks/out/" .. NAME, "report folder (report.md, figures, runs/)" },
  { "steps", 500, "training steps per run" },
  { "bins", { 64, 512 }, "codebook sizes (l_bins) to compare, each with restarts on and off" },
  { "batch", 4, "crops per batch" },
  { "sample_length", 8192, "samples per crop" },
  { "eval_seconds", 60, "seconds of audio evaluated per run (clips spread over the folder)" },
  { "threads", 2, "threads for BLAS and OpenMP" },
  { "seed", 0, "seed of every run (weights, crops, restarts)" },
  { "quick", false, "smoke test: 20 steps per run and 10 s of evaluation" },
}
local usage = "usage: jbx notebooks/codebook_study.lua [options]"
local ok, opts = pcall(cli.parse, arg, spec, usage)
if not ok then
  io.stderr:write(NAME, ": ", opts, "\n")
  os.exit(2)
end
if opts.quick then
  opts.steps = math.min(opts.steps, 20)
  opts.eval_seconds = math.min(opts.eval_seconds, 10)
end
if #opts.bins < 1 then
  io.stderr:write(NAME, ": --bins needs at least one codebook size\n")
  os.exit(2)
end
core.set_threads(opts.threads)

local nb = notebook.new(NAME, { out = opts.out, threads = opts.threads })
local fmt = string.format
local function pct(x) return fmt("%.1f%%", 100 * x) end
local function db(x) return fmt("%.2f dB", x) end

nb:md(fmt([[
  # Codebook usage with and without random restarts

  Jukebox's bottleneck keeps an EMA codebook per level and **restarts** every code whose
  EMA count `k_elem` falls below 1: it is moved onto a random encoder output of the
  current batch. This study trains the `small` preset (3 levels, hops 8/32/128,
  emb_width 32) for %d steps with codebooks of %s codes, each once with restarts and
  once without (`restarts = false`: dead codes keep `k = k_sum / k_elem` and stay where
  they are), then evaluates each run over the same clips.

  Settings: batch %d x %d samples (%.2f s at 22050 Hz), Adam lr 3e-4, seed %d, %d threads.
  Training usage is the number of codes with `k_elem >= 1` at a logged step; evaluation
  usage counts the codes that the encoder actually picks over the evaluation audio.]],
  opts.steps, table.concat(opts.bins, " and "), opts.batch, opts.sample_length,
  opts.sample_length / 22050, opts.seed, opts.threads))

-- ---- training runs ----
local runs = {}
for _, bins in ipairs(opts.bins) do
  for _, restarts in ipairs({ true, false }) do
    runs[#runs + 1] = { bins = bins, restarts = restarts,
                        name = fmt("K=%d %s", bins, restarts and "restarts" or "no restarts"),
                        dir = fmt("%s/runs/K%d_%s", nb.dir, bins, restarts and "restarts" or "norestarts") }
  end
end

local log_every = math.max(1, opts.steps // 50)
for i, run in ipairs(runs) do
  io.stderr:write(fmt("[%s] run %d/%d: %s\n", NAME, i, #runs, run.name))
  os.execute(fmt("rm -rf '%s'", run.dir)) -- a fresh run, never a resumed one
  local t0 = core.clock()
  local r = train.run({ data = opts.data, out = run.dir, preset = "small", steps = opts.steps,
    batch = opts.batch, sample_length = opts.sample_length, seed = opts.seed, threads = opts.threads,
    log_every = log_every, ckpt_every = opts.steps, keep = 1 },
    { l_bins = run.bins, restarts = run.restarts })
  if r.interrupted then os.exit(130) end
  run.train_seconds = core.clock() - t0
  run.model, run.log = r.model, notebook.read_csv(r.log)
  run.checkpoint = r.checkpoint
end

-- ---- evaluation ----
-- The same clips for every run, spread over the folder (metrics.evaluate takes a folder).
local eval_dir, chosen = notebook.spread_clips(opts.data, opts.eval_seconds, nb:path("eval_clips"))
for _, run in ipairs(runs) do
  local t0 = core.clock()
  run.eval = metrics.evaluate(run.model, eval_dir, { max_seconds = opts.eval_seconds })
  run.eval_seconds = core.clock() - t0
  run.model = nil
  collectgarbage()
end
local L = #runs[1].eval.levels
local hops = {}
for l = 1, L do hops[l] = runs[1].eval.levels[l].hop_length end

nb:md(fmt([[
  ## Evaluation per run

  Each run's final checkpoint is evaluated on %.0f s of audio (%d clips%s). SC is the
  spectral convergence `||S(x) - S(y)|| / ||S(x)||` of each level's reconstruction
  (n_fft 2048, hop 256, window 1536), averaged over clips; in dB, `20 log10(SC)`: lower
  is better. Perplexity is `2^H` of the code histogram over the evaluation audio.]],
  runs[1].eval.seconds, runs[1].eval.clips,
  chosen and (": " .. table.concat(chosen, ", ")) or ", the first clips of the folder"))

for _, run in ipairs(runs) do
  local times = run.log.columns.time
  nb:md(fmt("### %s\n\nTrained in %.0f s (%.2f s per step), evaluated in %.0f s; checkpoint `%s`.",
    run.name, run.train_seconds, times[#times] / opts.steps, run.eval_seconds, run.checkpoint))
  local rows = {}
  for l, s in ipairs(run.eval.levels) do
    rows[l] = { l, s.hop_length, s.used, pct(s.usage), fmt("%.1f", s.perplexity), s.dead,
                fmt("%.3f", s.spectral_convergence), fmt("%.2f", s.spectral_convergence_db) }
  end
  nb:table({ "level", "hop", "used codes", "usage", "perplexity", "dead codes", "SC", "SC (dB)" }, rows,
    { align = "rrrrrrrr" })
end

-- ---- usage over training ----
nb:md([[
  ## Usage during training

  The fraction of each codebook with `k_elem >= 1` at every logged step (the `usage_l*`
  columns of each run's `log.csv`), one figure per level.]])
for l = 1, L do
  local series = {}
  for _, run in ipairs(runs) do
    local steps, u = run.log.columns.step, run.log.columns[fmt("usage_l%d", l)]
    local y = {}
    for i = 1, #u do y[i] = u[i] / run.bins end
    series[#series + 1] = { name = run.name, x = steps, y = y }
  end
  local path = plot.lines(nb:path(fmt("usage_l%d.png", l)), { series = series,
    title = fmt("Level %d (hop %d): fraction of the codebook with k_elem >= 1", l, hops[l]),
    xlabel = "step", ylabel = "fraction of codes in use", width = 1000, height = 420 })
  nb:figure(path, fmt("Training usage, level %d (hop %d)", l, hops[l]))
end

-- ---- code-usage histograms ----
nb:md([[
  ## Code-usage histograms

  Counts of each code over the evaluation audio, codes sorted by count (log scale): a
  long flat curve means many codes share the work; a steep drop means a few codes
  carry most frames and the rest are dead.]])
for l = 1, L do
  local lv = {}
  for _, run in ipairs(runs) do
    local s = run.eval.levels[l]
    lv[#lv + 1] = { name = fmt("%s: %d/%d used", run.name, s.used, s.codes), counts = s.counts }
  end
  local path = plot.code_usage(nb:path(fmt("code_usage_l%d.png", l)), { levels = lv,
    title = fmt("Level %d (hop %d): code counts over %.0f s of audio, sorted", l, hops[l], runs[1].eval.seconds),
    width = 1000, height = 420 })
  nb:figure(path, fmt("Code usage, level %d (hop %d)", l, hops[l]))
end

-- ---- interpretation, computed from the numbers above ----
local function find(bins, restarts)
  for _, r in ipairs(runs) do
    if r.bins == bins and r.restarts == restarts then return r end
  end
end
local level_name = {}
for l = 1, L do
  level_name[l] = l == 1 and "bottom" or (l == L and "top" or "middle")
  level_name[l] = fmt("%s level (hop %d)", level_name[l], hops[l])
end

-- "raised usage from X to Y" with the direction taken from the numbers.
local function moved(what, a, b, text_a, text_b, tol)
  if math.abs(b - a) <= tol then return fmt("left %s about unchanged (%s vs %s)", what, text_a, text_b) end
  return fmt("%s %s from %s to %s", b > a and "raised" or "lowered", what, text_a, text_b)
end

local lines = {}
local summary = {}
for _, bins in ipairs(opts.bins) do
  local on, off = find(bins, true), find(bins, false)
  local parts = {}
  for l = 1, L do
    local a, b = off.eval.levels[l], on.eval.levels[l]
    local u = moved("usage", a.usage, b.usage, fmt("%s, %d codes", pct(a.usage), a.used),
      fmt("%s, %d codes", pct(b.usage), b.used), 0.005)
    local dsc = b.spectral_convergence_db - a.spectral_convergence_db
    local sc
    if math.abs(dsc) < 0.25 then
      sc = fmt("SC barely moved (%s without, %s with)", db(a.spectral_convergence_db), db(b.spectral_convergence_db))
    else
      sc = fmt("SC %s by %.2f dB (%s -> %s)", dsc < 0 and "improved" or "worsened", math.abs(dsc),
        db(a.spectral_convergence_db), db(b.spectral_convergence_db))
    end
    parts[#parts + 1] = fmt("at the %s restarts %s and %s", level_name[l], u, sc)
    summary[#summary + 1] = { bins = bins, level = l, usage_without = a.usage, usage_with = b.usage,
      used_without = a.used, used_with = b.used, sc_db_without = a.spectral_convergence_db,
      sc_db_with = b.spectral_convergence_db, perplexity_without = a.perplexity, perplexity_with = b.perplexity }
  end
  lines[#lines + 1] = fmt("- **K = %d**: %s.", bins, table.concat(parts, "; "))
end

-- Which level and size gain the most usage from restarts.
local best
for _, s in ipairs(summary) do
  local gain = s.usage_with - s.usage_without
  if not best or gain > best.gain then best = { gain = gain, s = s } end
end
if best and best.gain > 0.005 then
  lines[#lines + 1] = fmt("- The largest gain in usage from restarts is at K = %d, %s: +%.1f percentage points "
    .. "(%d -> %d codes).", best.s.bins, level_name[best.s.level], 100 * best.gain, best.s.used_without,
    best.s.used_with)
elseif best then
  lines[#lines + 1] = "- Restarts did not raise evaluation usage noticeably at any level or size in these runs."
end

-- Codebook size: the fraction in use and the absolute count, per restarts setting.
if #opts.bins >= 2 then
  local small, large = opts.bins[1], opts.bins[#opts.bins]
  for _, restarts in ipairs({ true, false }) do
    local a, b = find(small, restarts), find(large, restarts)
    local parts = {}
    for l = 1, L do
      local sa, sb = a.eval.levels[l], b.eval.levels[l]
      parts[#parts + 1] = fmt("level %d %s of %d vs %s of %d (%d vs %d codes, SC %s vs %s)", l, pct(sa.usage), small,
        pct(sb.usage), large, sa.used, sb.used, db(sa.spectral_convergence_db), db(sb.spectral_convergence_db))
    end
    lines[#lines + 1] = fmt("- %s, the %d-code books use %s.", restarts and "With restarts" or "Without restarts",
      large, table.concat(parts, "; "))
  end
end

-- Training-time usage: how low it went without restarts, and where it ended.
for _, run in ipairs(runs) do
  if not run.restarts then
    local parts = {}
    for l = 1, L do
      local u = run.log.columns[fmt("usage_l%d", l)]
      local lo, at = math.huge, 0
      for i, v in ipairs(u) do
        if v < lo then lo, at = v, run.log.columns.step[i] end
      end
      parts[#parts + 1] = fmt("level %d ended at %d/%d codes with k_elem >= 1 (lowest %d at step %d)", l, u[#u],
        run.bins, lo, at)
    end
    local on = find(run.bins, true)
    local last_on = {}
    for l = 1, L do
      local u = on.log.columns[fmt("usage_l%d", l)]
      last_on[l] = u[#u]
    end
    lines[#lines + 1] = fmt("- During training without restarts at K = %d, %s; with restarts the last logged usage was %s.",
      run.bins, table.concat(parts, ", "), table.concat(last_on, "/"))
  end
end

nb:md("## What the numbers say\n\n" .. table.concat(lines, "\n"))
nb:md(fmt([[
  These are single runs of %d steps with one seed, so differences of a few tenths of a dB
  in SC are within run-to-run noise; usage differences of many codes are not. Evaluation
  usage counts codes picked at least once, which can exceed the training usage (codes
  whose EMA count is below 1 can still be picked now and then).]], opts.steps))

nb:json("results.json", { steps = opts.steps, bins = opts.bins, eval_seconds = runs[1].eval.seconds,
  clips = runs[1].eval.clips, summary = summary, train_seconds = (function()
    local t = {}
    for i, r in ipairs(runs) do t[i] = { name = r.name, seconds = r.train_seconds } end
    return t
  end)() })
nb:write()
