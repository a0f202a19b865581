--- Plots through gnuplot (a declared dependency: Debian package gnuplot-nox), run as a
-- separate process: waveforms, spectrograms, code-usage histograms, training curves and heatmaps,
-- as PNG (pngcairo where present, else png) or SVG (when the path ends in .svg).
-- Data goes through temporary files, removed afterwards.
local core = require "jukebox.core"

local plot = {}

local terminal_cache

local MISSING = "plot: gnuplot not found on PATH; install it (Debian/Ubuntu: apt-get install gnuplot-nox) " ..
  "or turn plots off (--plots=false)"

--- The best available terminal: "pngcairo", "png" or "svg". Raises a one-line error
-- naming gnuplot-nox when gnuplot is missing. Cached per process (plot.reset() forgets).
function plot.terminal()
  if terminal_cache then return terminal_cache end
  local p = io.popen("gnuplot -e 'set terminal' 2>&1 </dev/null", "r")
  local listing = p and p:read("a") or ""
  local ok = p and p:close()
  if not ok or not listing:find("Available terminal") then error(MISSING, 0) end
  local function has(name) return listing:find("\n%s*" .. name .. "%s") ~= nil end
  terminal_cache = has("pngcairo") and "pngcairo" or has("png") and "png" or "svg"
  return terminal_cache
end

--- Forgets the cached terminal (after PATH changes, and for tests).
function plot.reset() terminal_cache = nil end

-- Text is set literally (noenhanced): file names like a_b_00.flac must not turn into
-- subscripts.
local function term_line(path, w, h)
  local t = plot.terminal()
  local ext = path:match("%.(%w+)$")
  if ext == "svg" or t == "svg" then
    return ("set terminal svg size %d,%d noenhanced font 'sans,11' background '#ffffff'"):format(w, h)
  end
  if t == "pngcairo" then
    return ("set terminal pngcairo size %d,%d noenhanced font 'sans,10'"):format(w, h)
  end
  return ("set terminal png size %d,%d noenhanced"):format(w, h)
end

-- Quotes a string for a gnuplot script. Text is literal (noenhanced), so a "\\_" that
-- callers wrote for gnuplot's enhanced mode is turned back into "_".
local function q(s) return "'" .. tostring(s):gsub("\\_", "_"):gsub("'", "''") .. "'" end

-- Runs a gnuplot script; raises with gnuplot's own message on failure.
local function run(script, path)
  local errfile = os.tmpname()
  local p = io.popen("gnuplot 2>" .. errfile, "w")
  if not p then error(MISSING, 0) end
  p:write(script)
  local ok, _, code = p:close()
  local f = io.open(errfile)
  local err = f and f:read("a") or ""
  if f then f:close() end
  os.remove(errfile)
  if code == 127 then -- the shell found no gnuplot (removed since plot.terminal() looked)
    terminal_cache = nil
    error(MISSING, 0)
  end
  if not ok then
    error(("plot: gnuplot failed writing %s: %s"):format(path, (err:gsub("%s+$", ""):gsub("\n", " | "))), 0)
  end
  return path
end

-- Runs `body(files)` and removes every temporary data file it registered, also on error.
local function with_tmp(body)
  local files = {}
  local ok, res = pcall(body, files)
  for _, f in ipairs(files) do os.remove(f) end
  if not ok then error(res, 0) end
  return res
end

local function tmpdata(files, rows)
  local name = os.tmpname()
  local f = assert(io.open(name, "w"))
  f:write(table.concat(rows, "\n"), "\n")
  f:close()
  files[#files + 1] = name
  return name
end

local function flat(t) return t:reshape({ -1 }) end

local PALETTE = "set palette defined (0 '#000004', 1 '#2c115f', 2 '#721f81', 3 '#b73779', " ..
  "4 '#f1605d', 5 '#feb078', 6 '#fcfdbf')" -- magma: dark quiet, light loud

--- Waveforms: the first series (the input) drawn in grey under each other series, one
-- panel per series (or a single panel when there is one series).
-- opts: series = {{name =, audio = [T]}, ...}; rate; from, to (seconds; default the
-- first second; a window past the end slides back); title; width, height.
function plot.waveforms(path, opts)
  local rate = opts.rate or 22050
  local from = math.max(0, opts.from or 0)
  local to = opts.to or (from + 1)
  if to <= from then error(("plot.waveforms: empty window %g..%g s"):format(from, to), 2) end
  local series = opts.series
  if not series or #series == 0 then error("plot.waveforms: no series", 2) end
  -- A window past the end of the audio slides back to its last (to - from) seconds.
  local dur = math.huge
  for _, s in ipairs(series) do dur = math.min(dur, s.audio:numel() / rate) end
  if to > dur then from, to = math.max(0, dur - (to - from)), dur end
  return with_tmp(function(files)
    local names, peak = {}, 0
    for i, s in ipairs(series) do
      local x = flat(s.audio)
      local total = x:numel()
      local a = math.min(math.floor(from * rate), math.max(total - 1, 0))
      local n = math.max(1, math.min(total - a, math.floor((to - from) * rate)))
      local vals = x:narrow(1, a + 1, n):totable()
      local rows = {}
      for j, v in ipairs(vals) do
        rows[j] = ("%.6f %.6g"):format((a + j - 1) / rate, v)
        if math.abs(v) > peak then peak = math.abs(v) end
      end
      names[i] = tmpdata(files, rows)
    end
    local lim = peak > 0 and peak * 1.1 or 1
    local panels = {}
    local function panel(i, title)
      local parts = {}
      if i ~= 1 then parts[1] = ("%s using 1:2 with lines lw 2 lc rgb '#b0b0b0' title %s"):format(q(names[1]), q(series[1].name)) end
      parts[#parts + 1] = ("%s using 1:2 with lines lw 1.3 lc rgb %s title %s"):format(q(names[i]),
        q(i == 1 and "#202020" or "#d62728"), q(series[i].name))
      panels[#panels + 1] = "set title " .. q(title) .. "\nplot " .. table.concat(parts, ", ")
    end
    if #series == 1 then
      panel(1, series[1].name)
    else
      for i = 2, #series do panel(i, series[i].name .. " over " .. series[1].name) end
    end
    local rows_n = #panels
    return run(table.concat({
      term_line(path, opts.width or 1200, opts.height or (80 + 260 * rows_n)),
      "set output " .. q(path),
      "set xlabel 'time (s)'", "set ylabel 'amplitude'", "set grid",
      ("set xrange [%.6f:%.6f]"):format(from, to), ("set yrange [%.6g:%.6g]"):format(-lim, lim),
      "set key outside right top",
      ("set multiplot layout %d,1 title %s"):format(rows_n, q(opts.title or "Waveforms")),
      table.concat(panels, "\n"), "unset multiplot", "",
    }, "\n"), path)
  end)
end

--- Log-magnitude spectrograms (dB) side by side, on one colour scale: the loudest
-- bin of all panels down to `range` dB below it.
-- opts: items = {{name =, audio = [T]}, ...}; rate; from, to (seconds); n_fft (1024),
-- hop (256); range (80 dB); columns (2); title; width, height.
function plot.spectrograms(path, opts)
  local rate = opts.rate or 22050
  local n_fft, hop = opts.n_fft or 1024, opts.hop or 256
  local from = math.max(0, opts.from or 0)
  local items = opts.items
  if not items or #items == 0 then error("plot.spectrograms: no items", 2) end
  local n = #items
  local cols = math.min(n, opts.columns or 2)
  local rows_n = math.ceil(n / cols)
  return with_tmp(function(files)
    local panels, peak, t_end = {}, -math.huge, from
    local specs = {}
    for i, item in ipairs(items) do
      local x = flat(item.audio)
      local a = math.floor(from * rate)
      local len = x:numel() - a
      if opts.to then len = math.min(len, math.floor((opts.to - from) * rate)) end
      if len < n_fft then
        error(("plot.spectrograms: %s has %d samples from %g s, fewer than n_fft %d"):format(
          item.name, math.max(len, 0), from, n_fft), 0)
      end
      local s = core.no_grad(function()
        local mag = core.stft_mag(x:narrow(1, a + 1, len):reshape({ 1, -1 }), n_fft, hop, n_fft)
        return ((mag + 1e-6):log() * (20 / math.log(10))):reshape({ n_fft // 2 + 1, -1 })
      end)
      peak = math.max(peak, s:max():item())
      specs[i] = s
      t_end = math.max(t_end, from + len / rate)
    end
    local lo = peak - (opts.range or 80)
    for i, s in ipairs(specs) do
      local bins, frames = table.unpack(s:shape())
      local t = s:totable()
      local lines = {}
      for f = 1, frames do
        local tf = from + (f - 1) * hop / rate
        for b = 1, bins do
          lines[#lines + 1] = ("%.4f %.4f %.1f"):format(tf, (b - 1) * rate / n_fft / 1000, math.max(t[b][f], lo))
        end
        lines[#lines + 1] = ""
      end
      panels[i] = "set title " .. q(items[i].name) .. "\n" ..
        ("plot %s using 1:2:3 with image notitle"):format(q(tmpdata(files, lines)))
    end
    return run(table.concat({
      term_line(path, opts.width or 640 * cols, opts.height or (60 + 330 * rows_n)),
      "set output " .. q(path),
      "set xlabel 'time (s)'", "set ylabel 'frequency (kHz)'", "set cblabel 'magnitude (dB)'",
      ("set xrange [%.4f:%.4f]"):format(from, t_end), ("set yrange [0:%.4f]"):format(rate / 2000),
      ("set cbrange [%.1f:%.1f]"):format(lo, peak), PALETTE, "set tics out",
      ("set multiplot layout %d,%d title %s"):format(rows_n, cols, q(opts.title or "Log-magnitude spectrograms")),
      table.concat(panels, "\n"), "unset multiplot", "",
    }, "\n"), path)
  end)
end

--- Code-usage histograms: counts of each level sorted in decreasing order, log-scale
-- count axis (unused codes are not drawn: each line stops at its number of used codes).
-- opts: levels = {{name =, counts = {...}}, ...}; title; width, height.
function plot.code_usage(path, opts)
  if not opts.levels or #opts.levels == 0 then error("plot.code_usage: no levels", 2) end
  return with_tmp(function(files)
    local plots, K = {}, 1
    for _, lv in ipairs(opts.levels) do
      local c = {}
      for j, v in ipairs(lv.counts) do c[j] = v end
      table.sort(c, function(a, b) return a > b end)
      K = math.max(K, #c)
      local rows = {}
      for j, v in ipairs(c) do
        if v > 0 then rows[#rows + 1] = ("%d %d"):format(j, v) end
      end
      if #rows > 0 then
        -- steps: each count holds over [rank, rank + 1); a last point closes the final step.
        rows[#rows + 1] = ("%d %d"):format(#rows + 1, c[#rows])
        plots[#plots + 1] = ("%s using 1:2 with steps lw 2 title %s"):format(q(tmpdata(files, rows)), q(lv.name))
      end
    end
    if #plots == 0 then error("plot.code_usage: every level has zero counts", 0) end
    return run(table.concat({
      term_line(path, opts.width or 1000, opts.height or 500),
      "set output " .. q(path),
      "set title " .. q(opts.title or "Code usage per level (codes sorted by count)"),
      "set xlabel 'code rank (most used first)'", "set ylabel 'occurrences (log scale)'",
      "set logscale y", "set yrange [0.7:*]", "set format y '%g'", "set grid", "set key top right",
      ("set xrange [1:%d]"):format(K + 1),
      "plot " .. table.concat(plots, ", "), "",
    }, "\n"), path)
  end)
end

--- Generic line plot: series = {{name =, x = {...}, y = {...}}, ...}; title, xlabel,
-- ylabel, logy; style ("linespoints", or "points" for dots); width, height.
function plot.lines(path, opts)
  if not opts.series or #opts.series == 0 then error("plot.lines: no series", 2) end
  return with_tmp(function(files)
    local plots = {}
    for i, s in ipairs(opts.series) do
      local rows = {}
      for j = 1, #s.x do rows[j] = ("%.10g %.10g"):format(s.x[j], s.y[j]) end
      if #rows == 0 then rows[1] = "NaN NaN" end
      local style = opts.style == "points" and "points pt 7 ps 0.3" or "linespoints lw 2 pt 7 ps 0.5"
      plots[i] = ("%s using 1:2 with %s title %s"):format(q(tmpdata(files, rows)), style, q(s.name))
    end
    return run(table.concat({
      term_line(path, opts.width or 1000, opts.height or 500),
      "set output " .. q(path),
      "set title " .. q(opts.title or ""),
      "set xlabel " .. q(opts.xlabel or "x"), "set ylabel " .. q(opts.ylabel or "y"),
      opts.logy and "set logscale y" or "", "set grid", "set key outside right top",
      "plot " .. table.concat(plots, ", "), "",
    }, "\n"), path)
  end)
end

--- Training curves from a train_vqvae log.csv: one panel per term (total loss,
-- reconstruction, multispectral, commit, codebook usage, code entropy, fit), a line per
-- level. opts: title; width, height.
function plot.training_curves(path, csv_path, opts)
  opts = opts or {}
  local f = io.open(csv_path)
  if not f then error(("plot: cannot open log '%s'"):format(csv_path), 2) end
  local header = f:read("l")
  local rows = 0
  for _ in f:lines() do rows = rows + 1 end
  f:close()
  if not header or rows == 0 then error(("plot: log '%s' has no rows"):format(csv_path), 2) end
  local col, i = {}, 0
  for name in header:gmatch("[^,]+") do
    i = i + 1
    col[name] = i
  end
  if not col.step then error(("plot: log '%s' has no 'step' column"):format(csv_path), 2) end
  -- Points as well as lines: a short log still shows something.
  local style = rows < 30 and "linespoints pt 7 ps 0.6" or "lines"
  local panels = {}
  local function panel(title, ylabel, series, logy)
    local parts = {}
    for _, s in ipairs(series) do
      if col[s[1]] then
        parts[#parts + 1] = ("%s using %d:%d with %s lw 2 %s title %s"):format(q(csv_path), col.step, col[s[1]],
          style, s[3] or "", q(s[2]))
      end
    end
    if #parts > 0 then
      panels[#panels + 1] = table.concat({
        "set title " .. q(title), "set ylabel " .. q(ylabel),
        logy and "set logscale y\nset yrange [*:*]\nset format y '%g'" or "unset logscale y\nset yrange [0:*]\nset format y '%g'",
        "plot " .. table.concat(parts, ", "),
      }, "\n")
    end
  end
  local levels = 0
  while col[("recons_loss_l%d"):format(levels + 1)] do levels = levels + 1 end
  local function per(prefix, label, extra, tight)
    local out = {}
    for l = 1, levels do
      out[l] = { ("%s_l%d"):format(prefix, l), (tight and "%s%d" or "%s %d"):format(label, l), extra and extra(l) }
    end
    return out
  end
  panel("Total loss (sum over levels)", "loss (log scale)", { { "loss", "total" } }, true)
  panel("Reconstruction loss", "loss (log scale)", per("recons_loss", "level"), true)
  panel("Multispectral loss", "loss (log scale)", per("multispectral_loss", "level"), true)
  panel("Commit loss", "loss (log scale)", per("commit_loss", "level"), true)
  local usage = per("usage", "usage l", nil, true)
  for l, s in ipairs(per("used_curr", "batch l", function(l) return "dt 2 lc " .. l end, true)) do
    usage[levels + l] = s
  end
  for l = 1, levels do usage[l][3] = "lc " .. l end
  panel("Codes in use (usage: k_elem >= threshold; dashed: hit in the batch)", "codes", usage, false)
  panel("Code entropy of the batch", "entropy (nats)", per("entropy", "level"), false)
  local rows_n = math.ceil(#panels / 2)
  return run(table.concat({
    term_line(path, opts.width or 1300, opts.height or (60 + 340 * rows_n)),
    "set output " .. q(path), "set datafile separator ','", "set rmargin 15",
    "set xlabel 'step'", "set grid", "set key outside right top vertical font ',9'",
    ("set multiplot layout %d,2 title %s"):format(rows_n, q(opts.title or ("Training curves: " .. csv_path))),
    table.concat(panels, "\n"), "unset multiplot", "",
  }, "\n"), path)
end

--- Heatmaps of matrices side by side on one colour scale, row 0 at the top (as a matrix
-- is printed): e.g. attention maps, query positions down, key positions across.
-- opts: items = {{name =, matrix = tensor [R, C] or rows of numbers}, ...}; log10 (true:
-- colour by log10 of the value); floor (with log10, smaller positive values are drawn
-- at the floor; default 1e-4); exact zeros are left blank (white), so a pattern's
-- excluded entries show as such; columns (2); title, xlabel, ylabel, cblabel; width, height.
function plot.heatmaps(path, opts)
  local items = opts.items
  if not items or #items == 0 then error("plot.heatmaps: no items", 2) end
  local n = #items
  local cols = math.min(n, opts.columns or 2)
  local rows_n = math.ceil(n / cols)
  local floor = opts.floor or 1e-4
  return with_tmp(function(files)
    local panels, lo, hi = {}, math.huge, -math.huge
    for i, item in ipairs(items) do
      local m = core.is_tensor(item.matrix) and item.matrix:totable() or item.matrix
      if type(m) ~= "table" or type(m[1]) ~= "table" then
        error(("plot.heatmaps: item %d (%s): matrix must be a 2-D tensor or rows of numbers"):format(i,
          tostring(item.name)), 0)
      end
      local lines = {}
      for r, row in ipairs(m) do
        local cells = {}
        for c, v in ipairs(row) do
          if v == 0 then
            cells[c] = "NaN"
          else
            if opts.log10 then v = math.log(math.max(v, floor), 10) end
            lo, hi = math.min(lo, v), math.max(hi, v)
            cells[c] = ("%.5g"):format(v)
          end
        end
        lines[r] = table.concat(cells, " ")
      end
      panels[i] = table.concat({
        "set title " .. q(item.name),
        ("set xrange [-0.5:%.1f]"):format(#m[1] - 0.5), ("set yrange [%.1f:-0.5]"):format(#m - 0.5),
        ("plot %s matrix with image notitle"):format(q(tmpdata(files, lines))),
      }, "\n")
    end
    if lo > hi then lo, hi = 0, 1 end
    if lo == hi then lo, hi = lo - 1, hi + 1 end
    return run(table.concat({
      term_line(path, opts.width or 580 * cols, opts.height or (60 + 460 * rows_n)),
      "set output " .. q(path),
      "set xlabel " .. q(opts.xlabel or "column"), "set ylabel " .. q(opts.ylabel or "row"),
      "set cblabel " .. q(opts.cblabel or (opts.log10 and "log10 value" or "value")),
      ("set cbrange [%.5g:%.5g]"):format(lo, hi), PALETTE, "set tics out", "set size ratio -1",
      ("set multiplot layout %d,%d title %s"):format(rows_n, cols, q(opts.title or "")),
      table.concat(panels, "\n"), "unset multiplot", "",
    }, "\n"), path)
  end)
end

return plot
