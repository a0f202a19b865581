--- Evaluating checkpoints: metrics over a folder, the table, metrics.json and plots.
-- Shared by recipes/eval_vqvae.lua, recipes/quickstart.lua and the notebooks.
local core = require "jukebox.core"
local cli = require "jukebox.cli"
local json = require "jukebox.json"
local metrics = require "jukebox.metrics"
local plot = require "jukebox.plot"
local models = require "jukebox.models"

local evaluate = {}

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end
local function basename(path) return (path:match("([^/]*)$"):gsub("%.safetensors$", "")) end

-- A name per checkpoint: the file name, with the folder when file names repeat.
local function names_for(ckpts)
  local seen, dup = {}, false
  for _, c in ipairs(ckpts) do
    if seen[basename(c)] then dup = true end
    seen[basename(c)] = true
  end
  local names = {}
  for i, c in ipairs(ckpts) do
    names[i] = dup and (basename(dirname(c)) .. "/" .. basename(c)) or basename(c)
  end
  return names
end

-- NaN and infinities become JSON null (the encoder refuses them).
local function json_safe(v)
  if type(v) == "number" and (v ~= v or v == math.huge or v == -math.huge) then return json.null end
  if type(v) == "table" then
    local out = {}
    for k, x in pairs(v) do out[k] = json_safe(x) end
    return out
  end
  return v
end

-- The plots of one checkpoint: waveforms and spectrograms of the kept clip, code usage,
-- and training curves when the checkpoint's folder holds a log.csv.
local function plots_for(r, model, prefix, opts)
  local written, kept, rate = {}, r.kept, model.hp.sr
  local clip = kept.path:match("[^/]*$")
  local dur = kept.x:numel() / rate
  local series, items = { { name = "input", audio = kept.x } }, { { name = "input", audio = kept.x } }
  for l, y in ipairs(kept.recons) do
    local name = ("level %d (hop %d)"):format(l, model.hop_lengths[l])
    series[#series + 1] = { name = name, audio = y }
    items[#items + 1] = { name = ("level %d reconstruction (hop %d)"):format(l, model.hop_lengths[l]), audio = y }
  end
  local window = opts.plot_seconds or 0.05
  local from = math.max(0, math.min(opts.plot_from or 2.0, dur - window))
  written[#written + 1] = plot.waveforms(prefix .. "waveforms.png", { series = series, rate = rate, from = from,
    to = from + window, title = ("%s: input and reconstructions of %s"):format(r.name, clip) })
  local spec_to = math.min(dur, 4)
  written[#written + 1] = plot.spectrograms(prefix .. "spectrograms.png", { items = items, rate = rate,
    from = 0, to = spec_to, title = ("%s: log-magnitude spectrograms, first %.3g s of %s"):format(r.name, spec_to, clip) })
  local lv = {}
  for l, s in ipairs(r.levels) do
    lv[l] = { name = ("level %d (hop %d): %d/%d used, perplexity %.1f"):format(l, s.hop_length, s.used, s.codes,
      s.perplexity), counts = s.counts }
  end
  written[#written + 1] = plot.code_usage(prefix .. "code_usage.png", { levels = lv,
    title = ("%s: code usage per level over %d clips (%.0f s), codes sorted by count"):format(r.name, r.clips, r.seconds) })
  local log = dirname(r.path) .. "/log.csv"
  if core.path_kind(log) == "file" then
    written[#written + 1] = plot.training_curves(prefix .. "training_curves.png", log,
      { title = ("Training curves: %s"):format(log) })
  end
  return written
end

--- Evaluates each checkpoint on `data_dir`; writes OUT/metrics.json, OUT/metrics.txt,
-- OUT/code_counts.csv and plots; returns {results =, table =, json =, plots =}.
-- opts: max_seconds, segment, chunk, plots (default true), plot_from/plot_seconds
-- (window of the waveform plot), quiet.
function evaluate.run(ckpts, data_dir, out, opts)
  opts = opts or {}
  if #ckpts == 0 then error("eval: no checkpoint given", 2) end
  for _, c in ipairs(ckpts) do
    local kind = core.path_kind(c)
    if kind ~= "file" then
      error(("checkpoint '%s' %s"):format(c, kind and "is not a file" or "does not exist"), 0)
    end
  end
  if core.path_kind(data_dir) ~= "dir" then
    error(("data folder '%s' %s"):format(data_dir,
      core.path_kind(data_dir) and "is not a folder" or "does not exist"), 0)
  end
  -- Fail before the long part when plots cannot be drawn.
  if opts.plots ~= false then plot.terminal() end
  core.mkdir_p(out)
  local names = names_for(ckpts)
  local results, loaded = {}, {}
  for ci, ckpt in ipairs(ckpts) do
    local model, _, meta = models.load(ckpt)
    local kept, bar
    local t0 = core.clock()
    local r = metrics.evaluate(model, data_dir, {
      max_seconds = opts.max_seconds, segment = opts.segment, chunk = opts.chunk,
      progress = not opts.quiet and function(i, n)
        bar = bar or cli.progress(n, { every = 1, label = ("eval %s "):format(names[ci]) })
        bar:update(i)
      end or nil,
      keep = function(path, x, recons) if not kept then kept = { path = path, x = x, recons = recons } end end,
    })
    if bar then bar:finish() end
    r.name, r.path, r.kept = names[ci], ckpt, kept
    r.step = meta and meta.step
    r.eval_seconds = core.clock() - t0
    results[ci], loaded[ci] = r, model
  end

  -- Numbers first (they survive a plotting failure).
  local doc = { data = data_dir, segment = results[1].segment, checkpoints = {} }
  for ci, r in ipairs(results) do
    local levels = {}
    for l, s in ipairs(r.levels) do
      local e = { level = l }
      for k, v in pairs(s) do
        if k ~= "counts" then e[k] = v end
      end
      levels[l] = e
    end
    local clips = {}
    for i, c in ipairs(r.per_clip) do clips[i] = { file = c.path, seconds = c.seconds, snr_db = c.snr_db } end
    doc.checkpoints[ci] = { name = r.name, path = r.path, step = r.step, clips = r.clips, seconds = r.seconds,
                            eval_seconds = r.eval_seconds, levels = levels, per_clip = clips }
  end
  local json_path = out .. "/metrics.json"
  json.write(json_path, json_safe(doc))
  local tbl = metrics.format_table(results)
  core.fsync_write(out .. "/metrics.txt", tbl .. "\n")
  -- Code histograms, one row per (checkpoint, level, code).
  local rows = { "checkpoint,level,code,count" }
  for _, r in ipairs(results) do
    for l, s in ipairs(r.levels) do
      for code, c in ipairs(s.counts) do rows[#rows + 1] = ("%s,%d,%d,%d"):format(r.name, l, code - 1, c) end
    end
  end
  core.fsync_write(out .. "/code_counts.csv", table.concat(rows, "\n") .. "\n")

  local written = {}
  if opts.plots ~= false then
    for ci, r in ipairs(results) do
      local prefix = #ckpts > 1 and ("%s/ckpt%d_"):format(out, ci) or (out .. "/")
      for _, p in ipairs(plots_for(r, loaded[ci], prefix, opts)) do written[#written + 1] = p end
    end
  end
  for _, r in ipairs(results) do r.kept = nil end
  return { results = results, table = tbl, json = json_path, plots = written }
end

return evaluate
