--- Evaluating checkpoints: metrics over a folder, the table, metrics.json and plots.
-- Shared by recipes/eval_vqvae.lua, recipes/quickstart.lua and the notebooks.
local core = require "jukebox.core"
local metrics = require "jukebox.metrics"
local plot = require "jukebox.plot"
local train = require "jukebox.train"

local evaluate = {}

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end
local function basename(path) return path:match("([^/]*)$"):gsub("%.safetensors$", "") end

--- Evaluates each checkpoint on `data_dir`; writes OUT/metrics.json and plots; returns
-- the results and the printed table. opts: max_seconds, plots (default true),
-- plot_from/plot_seconds (window of the waveform plot), quiet.
function evaluate.run(ckpts, data_dir, out, opts)
  opts = opts or {}
  core.mkdir_p(out)
  local results, written = {}, {}
  for ci, ckpt in ipairs(ckpts) do
    local model = train.load_model(ckpt)
    local kept
    local t0 = core.clock()
    local r = metrics.evaluate(model, data_dir, {
      max_seconds = opts.max_seconds,
      progress = not opts.quiet and function(i, n, path)
        io.stderr:write(("\reval %s: %d/%d %s\27[K"):format(basename(ckpt), i, n, path:match("[^/]*$")))
      end or nil,
      keep = function(path, x, recons) if not kept then kept = { path = path, x = x, recons = recons } end end,
    })
    if not opts.quiet then io.stderr:write("\n") end
    r.name = #ckpts > 1 and ("%d:%s"):format(ci, basename(ckpt)) or basename(ckpt)
    r.path = ckpt
    r.eval_seconds = core.clock() - t0
    r.step = model.hp and nil
    results[ci] = r
    if opts.plots ~= false then
      local prefix = #ckpts > 1 and ("%s/ckpt%d_"):format(out, ci) or (out .. "/")
      local rate = model.hp.sr
      local series, items = { { name = "input", audio = kept.x } }, { { name = "input", audio = kept.x } }
      for l, y in ipairs(kept.recons) do
        series[#series + 1] = { name = ("level %d (hop %d)"):format(l, model.hop_lengths[l]), audio = y }
        items[#items + 1] = { name = ("level %d reconstruction (hop %d)"):format(l, model.hop_lengths[l]), audio = y }
      end
      local from = opts.plot_from or 2.0
      local clip = kept.path:match("[^/]*$")
      written[#written + 1] = plot.waveforms(prefix .. "waveforms.png", { series = series, rate = rate, from = from,
        to = from + (opts.plot_seconds or 0.05), title = ("Input and reconstructions: %s"):format(clip) })
      written[#written + 1] = plot.spectrograms(prefix .. "spectrograms.png", { items = items, rate = rate,
        from = 0, to = 4, title = ("Log-magnitude spectrograms (first 4 s of %s)"):format(clip) })
      local lv = {}
      for l, s in ipairs(r.levels) do
        lv[l] = { name = ("level %d: %d/%d used"):format(l, s.used, s.codes), counts = s.counts }
      end
      written[#written + 1] = plot.code_usage(prefix .. "code_usage.png", { levels = lv,
        title = ("Code usage per level over %d clips (sorted counts)"):format(r.clips) })
      local log = dirname(ckpt) .. "/log.csv"
      if core.path_kind(log) == "file" then
        written[#written + 1] = plot.training_curves(prefix .. "training_curves.png", log)
      end
    end
  end
  -- metrics.json: per checkpoint, per level, every metric (counts left out).
  local json = { data = data_dir, checkpoints = {} }
  for ci, r in ipairs(results) do
    local levels = {}
    for l, s in ipairs(r.levels) do
      local e = { level = l }
      for k, v in pairs(s) do
        if k ~= "counts" then e[k] = v end
      end
      levels[l] = e
    end
    json.checkpoints[ci] = { name = r.name, path = r.path, clips = r.clips, seconds = r.seconds,
                             eval_seconds = r.eval_seconds, levels = levels }
  end
  local json_path = out .. "/metrics.json"
  core.fsync_write(json_path, core.json_encode(json, { indent = true }))
  local tbl = metrics.format_table(results)
  local f = assert(io.open(out .. "/metrics.txt", "w"))
  f:write(tbl, "\n")
  f:close()
  return { results = results, table = tbl, json = json_path, plots = written }
end

return evaluate
