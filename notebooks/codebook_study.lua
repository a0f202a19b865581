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
  { "steps", 400, "training steps per run" },
  { "bins", { 256, 1024 }, "codebook sizes (l_bins) to compare, each with restarts on and off" },
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
local function db(x) return math.abs(x) < 0.005 and "0.00 dB" or fmt("%.2f dB", x) end
-- plot.lua's PNG terminal uses gnuplot's enhanced text, where "_" makes a subscript.
local function gp(s) return (s:gsub("_", "\\_")) end
local function plural(n, word) return fmt("%d %s%s", n, word, n == 1 and "" or "s") end

nb:md(fmt([[
  # Codebook usage with and without random restarts

  Jukebox's bottleneck keeps an EMA codebook per level and **restarts** every code whose
  EMA count `k_elem` falls below 1: it is moved onto a random encoder output of the
  current batch. This study trains the `small` preset (3 levels, hops 8/32/128,
  emb_width 32) for %d steps with codebooks of %s codes, each once with restarts and
  once without (`restarts = false`: dead codes keep `k = k_sum / k_elem` and stay where
  they are), then evaluates each run over the same clips.

  Settings: batch %d x %d samples (%.2f s at 22050 Hz), Adam lr 3e-4, seed %d, %s.
  Training usage is the number of codes with `k_elem >= 1` at a logged step; evaluation
  usage counts the codes that the encoder actually picks over the evaluation audio.]],
  opts.steps, table.concat(opts.bins, " and "), opts.batch, opts.sample_length,
  opts.sample_length / 22050, opts.seed, plural(opts.threads, "thread")))

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

  Each run's final checkpoint is evaluated on %.0f s of audio (%s%s). SC is the
  spectral convergence `||S(x) - S(y)|| / ||S(x)||` of each level's reconstruction
  (n_fft 2048, hop 256, window 1536), averaged over segments of %d samples; in dB,
  `20 log10(SC)`: lower is better. Perplexity is `2^H` of the code histogram over the
  evaluation audio.]],
  runs[1].eval.seconds, plural(runs[1].eval.clips, "clip"),
  chosen and (": " .. table.concat(chosen, ", ")) or ", the first clips of the folder",
  runs[1].eval.segment or metrics.defaults.segment))

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
    title = gp(fmt("Level %d (hop %d): fraction of the codebook with k_elem >= 1", l, hops[l])),
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
  level_name[l] = fmt("%s level (hop %d)", l == 1 and "bottom" or (l == L and "top" or "middle"), hops[l])
end
-- "+0.12", and "0.00" rather than "-0.00".
local function signed(x) return math.abs(x) < 0.005 and "0.00" or fmt("%+.2f", x) end
local SC_NOISE = 0.25 -- dB: smaller SC differences are not read as effects (single runs)

-- The summary table: restarts off -> on, per size and level.
local summary, rows = {}, {}
for _, bins in ipairs(opts.bins) do
  local on, off = find(bins, true), find(bins, false)
  for l = 1, L do
    local a, b = off.eval.levels[l], on.eval.levels[l]
    local s = { bins = bins, level = l, hop = hops[l], used_without = a.used, used_with = b.used,
      usage_without = a.usage, usage_with = b.usage, perplexity_without = a.perplexity,
      perplexity_with = b.perplexity, sc_db_without = a.spectral_convergence_db,
      sc_db_with = b.spectral_convergence_db }
    s.sc_gain = s.sc_db_without - s.sc_db_with -- positive: restarts helped
    summary[#summary + 1] = s
    rows[#rows + 1] = { bins, l, fmt("%d -> %d", a.used, b.used), fmt("%s -> %s", pct(a.usage), pct(b.usage)),
      fmt("%.1f -> %.1f", a.perplexity, b.perplexity),
      fmt("%.2f -> %.2f", s.sc_db_without, s.sc_db_with), signed(-s.sc_gain) }
  end
end
nb:md("## Restarts off -> on\n\nEvaluation numbers of each pair of runs (without restarts -> with restarts).")
nb:table({ "K", "level", "used codes", "usage", "perplexity", "SC (dB)", "change in SC (dB)" }, rows,
  { align = "rrrrrrr" })

local lines = {}
local function sc_phrase(s)
  if math.abs(s.sc_gain) < SC_NOISE then
    return fmt("SC about the same (%.2f dB with, %.2f dB without)", s.sc_db_with, s.sc_db_without)
  end
  return fmt("restarts made SC %.2f dB %s (%.2f dB with, %.2f dB without)", math.abs(s.sc_gain),
    s.sc_gain > 0 and "better" or "worse", s.sc_db_with, s.sc_db_without)
end
for _, bins in ipairs(opts.bins) do
  local parts = {}
  for _, s in ipairs(summary) do
    if s.bins == bins then
      parts[#parts + 1] = fmt("the %s used %d codes with restarts against %d without (%s vs %s of the book), %s",
        level_name[s.level], s.used_with, s.used_without, pct(s.usage_with), pct(s.usage_without), sc_phrase(s))
    end
  end
  lines[#lines + 1] = fmt("- **K = %d**: %s.", bins, table.concat(parts, "; "))
end

-- Collapse without restarts: how few codes carried a level.
do
  local worst
  for _, s in ipairs(summary) do
    if not worst or s.usage_without < worst.usage_without then worst = s end
  end
  local helped, hurt = 0, 0
  for _, s in ipairs(summary) do
    if s.sc_gain >= SC_NOISE then helped = helped + 1 elseif s.sc_gain <= -SC_NOISE then hurt = hurt + 1 end
  end
  lines[#lines + 1] = fmt("- Restarts improved SC by at least %.2f dB in %d of the %d (size, level) pairs and made it "
    .. "worse by as much in %d. Without restarts the lowest usage was at K = %d, %s: %d of %d codes (perplexity %.1f).",
    SC_NOISE, helped, #summary, hurt, worst.bins, level_name[worst.level], worst.used_without, worst.bins,
    worst.perplexity_without)
end

-- Codebook size, with and without restarts.
if #opts.bins >= 2 then
  local small, large = opts.bins[1], opts.bins[#opts.bins]
  for _, restarts in ipairs({ true, false }) do
    local a, b = find(small, restarts), find(large, restarts)
    local parts = {}
    for l = 1, L do
      local sa, sb = a.eval.levels[l], b.eval.levels[l]
      local d = sa.spectral_convergence_db - sb.spectral_convergence_db
      parts[#parts + 1] = fmt("level %d %s, SC %s", l, sb.used == sa.used and fmt("used as many codes (%d)", sb.used)
        or fmt("used %d instead of %d codes", sb.used, sa.used),
        math.abs(d) < SC_NOISE and fmt("about the same (%.2f vs %.2f dB)", sb.spectral_convergence_db,
          sa.spectral_convergence_db)
        or fmt("%.2f dB %s (%.2f vs %.2f dB)", math.abs(d), d > 0 and "better" or "worse",
          sb.spectral_convergence_db, sa.spectral_convergence_db))
    end
    lines[#lines + 1] = fmt("- %s, going from K = %d to K = %d: %s.", restarts and "With restarts" or "Without restarts",
      small, large, table.concat(parts, "; "))
  end
end

-- Levels whose SC hardly depends on the codebook at this training length.
do
  local flat = {}
  for l = 1, L do
    local lo, hi = math.huge, -math.huge
    for _, run in ipairs(runs) do
      local v = run.eval.levels[l].spectral_convergence_db
      lo, hi = math.min(lo, v), math.max(hi, v)
    end
    if hi - lo < SC_NOISE then flat[#flat + 1] = fmt("level %d (%.2f to %.2f dB)", l, lo, hi) end
  end
  if #flat > 0 then
    lines[#lines + 1] = fmt("- SC stays within %.2f dB across all %d runs at %s: after %d steps the codebook is not "
      .. "what limits %s.", SC_NOISE, #runs, table.concat(flat, " and "), opts.steps, #flat > 1 and "those levels"
      or "that level")
  end
end

-- The threshold caps training usage: sum_j k_elem tends to the N vectors of a batch.
do
  local caps = {}
  for l = 1, L do
    local n = opts.batch * opts.sample_length // hops[l]
    for _, bins in ipairs(opts.bins) do
      if bins > n then
        local on = find(bins, true)
        local u = on.log.columns[fmt("usage_l%d", l)]
        caps[#caps + 1] = fmt("at K = %d, level %d sees %d vectors per batch, so at most about %d codes can keep "
          .. "`k_elem >= 1` (the run with restarts ended at %d) and the rest are restarted again and again; "
          .. "over the evaluation audio %d codes were picked", bins, l, n, n, u[#u], on.eval.levels[l].used)
      end
    end
  end
  if #caps > 0 then
    lines[#lines + 1] = "- The EMA counts of a level sum to about the number of encoder vectors in a batch, so "
      .. "training usage cannot exceed it: " .. table.concat(caps, "; ") .. "."
  end
end

-- Training-time usage without restarts.
for _, run in ipairs(runs) do
  if not run.restarts then
    local parts = {}
    for l = 1, L do
      local u = run.log.columns[fmt("usage_l%d", l)]
      parts[#parts + 1] = fmt("%d", u[#u])
    end
    local on = find(run.bins, true)
    local last_on = {}
    for l = 1, L do
      local u = on.log.columns[fmt("usage_l%d", l)]
      last_on[l] = fmt("%d", u[#u])
    end
    local names = {}
    for l = 1, L do names[l] = tostring(l) end
    lines[#lines + 1] = fmt("- At the last logged step with K = %d, %s codes (levels %s) had `k_elem >= 1` "
      .. "without restarts and %s with them.", run.bins, table.concat(parts, "/"), table.concat(names, "/"),
      table.concat(last_on, "/"))
  end
end

nb:md("## What the numbers say\n\n" .. table.concat(lines, "\n"))
nb:md(fmt([[
  These are single runs of %d steps with one seed, so SC differences below %.2f dB are
  not read as effects; differences of many codes in usage are. Evaluation usage counts
  the codes picked at least once over %.0f s of audio; training usage counts codes whose
  EMA count is at least 1, so the two can differ either way.]], opts.steps, SC_NOISE, runs[1].eval.seconds))

nb:json("results.json", { steps = opts.steps, bins = opts.bins, eval_seconds = runs[1].eval.seconds,
  clips = runs[1].eval.clips, summary = summary, train_seconds = (function()
    local t = {}
    for i, r in ipairs(runs) do t[i] = { name = r.name, seconds = r.train_seconds } end
    return t
  end)() })
nb:write()
