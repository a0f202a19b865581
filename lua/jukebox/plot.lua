--- Plots through gnuplot, run as a separate process: waveforms, spectrograms, code
-- usage histograms and training curves, as PNG (pngcairo where present, else png)
-- or SVG. Data goes through temporary files next to the output.
local core = require "jukebox.core"

local plot = {}

local terminal_cache

--- The best available terminal: "pngcairo", "png" or "svg"; errors when gnuplot is missing.
function plot.terminal()
  if terminal_cache then return terminal_cache end
  local p = io.popen("gnuplot -e 'set terminal' 2>&1 </dev/null", "r")
  local listing = p and p:read("a") or ""
  local ok = p and p:close()
  if not ok or listing == "" or not listing:find("Available terminal") then
    error("plot: gnuplot not found (apt-get install gnuplot-nox)", 2)
  end
  local function has(name) return listing:find("\n%s*" .. name .. "%s") ~= nil end
  terminal_cache = has("pngcairo") and "pngcairo" or has("png") and "png" or "svg"
  return terminal_cache
end

local function term_line(path, w, h)
  local t = plot.terminal()
  local ext = path:match("%.(%w+)$")
  if ext == "svg" or t == "svg" then
    return ("set terminal svg size %d,%d font 'sans,11' background '#ffffff'"):format(w, h)
  end
  if t == "pngcairo" then
    return ("set terminal pngcairo size %d,%d enhanced font 'sans,11'"):format(w, h)
  end
  return ("set terminal png size %d,%d"):format(w, h)
end

-- Quotes a string for a gnuplot script.
local function q(s) return "'" .. tostring(s):gsub("'", "''") .. "'" end

-- Runs a gnuplot script; raises with gnuplot's own message on failure.
local function run(script, path)
  local errfile = os.tmpname()
  local p = assert(io.popen("gnuplot 2>" .. errfile, "w"))
  p:write(script)
  local ok = p:close()
  local f = io.open(errfile)
  local err = f and f:read("a") or ""
  if f then f:close() end
  os.remove(errfile)
  if not ok then error(("plot: gnuplot failed writing %s: %s"):format(path, err), 3) end
  return path
end

local function tmpdata(rows)
  local name = os.tmpname()
  local f = assert(io.open(name, "w"))
  f:write(table.concat(rows, "\n"), "\n")
  f:close()
  return name
end

--- Waveforms overlaid: series = {{name =, audio = [T] tensor}, ...}; rate; from, to
-- (seconds, default the first second); title.
function plot.waveforms(path, opts)
  local rate = opts.rate or 22050
  local from = opts.from or 0
  local to = opts.to or (from + 1)
  local files, plots = {}, {}
  for i, s in ipairs(opts.series) do
    local x = s.audio:reshape({ -1 })
    local a = math.floor(from * rate)
    local n = math.min(x:numel() - a, math.floor((to - from) * rate))
    local vals = x:narrow(1, a + 1, n):totable()
    local rows = {}
    for j, v in ipairs(vals) do rows[j] = ("%.6f %.6g"):format((a + j - 1) / rate, v) end
    files[i] = tmpdata(rows)
    plots[i] = ("%s using 1:2 with lines lw %s title %s"):format(q(files[i]), i == 1 and "2" or "1.2", q(s.name))
  end
  local script = table.concat({
    term_line(path, opts.width or 1200, opts.height or 500),
    "set output " .. q(path),
    "set title " .. q(opts.title or "Waveform"),
    "set xlabel 'time (s)'", "set ylabel 'amplitude'", "set grid",
    "set key outside right top", "set yrange [-1.05:1.05]",
    "plot " .. table.concat(plots, ", "), "",
  }, "\n")
  local ok, err = pcall(run, script, path)
  for _, f in ipairs(files) do os.remove(f) end
  if not ok then error(err, 2) end
  return path
end

--- Log-magnitude spectrograms side by side: items = {{name =, audio = [T]}, ...};
-- rate; from, to (seconds); n_fft (1024), hop (256).
function plot.spectrograms(path, opts)
  local rate = opts.rate or 22050
  local n_fft, hop = opts.n_fft or 1024, opts.hop or 256
  local from, to = opts.from or 0, opts.to
  local files, panels = {}, {}
  local n = #opts.items
  local cols = math.min(n, opts.columns or 2)
  local rows_n = math.ceil(n / cols)
  for i, item in ipairs(opts.items) do
    local x = item.audio:reshape({ -1 })
    local a = math.floor(from * rate)
    local len = to and math.min(x:numel() - a, math.floor((to - from) * rate)) or (x:numel() - a)
    local s = core.no_grad(function()
      local mag = core.stft_mag(x:narrow(1, a + 1, len):reshape({ 1, -1 }), n_fft, hop, n_fft)
      return ((mag + 1e-5):log() * (20 / math.log(10))):reshape({ n_fft // 2 + 1, -1 })
    end)
    local bins, frames = table.unpack(s:shape())
    local t = s:totable()
    local lines = {}
    for f = 1, frames do
      for b = 1, bins do
        lines[#lines + 1] = ("%.4f %.1f %.2f"):format(from + (f - 1) * hop / rate, (b - 1) * rate / n_fft, t[b][f])
      end
      lines[#lines + 1] = ""
    end
    files[i] = tmpdata(lines)
    panels[i] = table.concat({
      "set title " .. q(item.name),
      ("plot %s using 1:2:3 with image notitle"):format(q(files[i])),
    }, "\n")
  end
  local script = table.concat({
    term_line(path, opts.width or 700 * cols, opts.height or 420 * rows_n),
    "set output " .. q(path),
    "set xlabel 'time (s)'", "set ylabel 'frequency (Hz)'", "set cblabel 'dB'",
    "set cbrange [-100:40]", "set palette rgb 34,35,36",
    ("set multiplot layout %d,%d title %s"):format(rows_n, cols, q(opts.title or "Log-magnitude spectrograms")),
    table.concat(panels, "\n"), "unset multiplot", "",
  }, "\n")
  local ok, err = pcall(run, script, path)
  for _, f in ipairs(files) do os.remove(f) end
  if not ok then error(err, 2) end
  return path
end

--- Code-usage histograms: levels = {{name =, counts = {...}}, ...}; counts sorted
-- descending, log-scale y.
function plot.code_usage(path, opts)
  local files, plots = {}, {}
  for i, lv in ipairs(opts.levels) do
    local c = {}
    for j, v in ipairs(lv.counts) do c[j] = v end
    table.sort(c, function(a, b) return a > b end)
    local rows = {}
    for j, v in ipairs(c) do
      if v > 0 then rows[#rows + 1] = ("%d %d"):format(j, v) end
    end
    if #rows == 0 then rows[1] = "1 1" end
    files[i] = tmpdata(rows)
    plots[i] = ("%s using 1:2 with steps lw 2 title %s"):format(q(files[i]), q(lv.name))
  end
  local script = table.concat({
    term_line(path, opts.width or 1000, opts.height or 500),
    "set output " .. q(path),
    "set title " .. q(opts.title or "Code usage per level (codes sorted by count)"),
    "set xlabel 'code rank'", "set ylabel 'count'", "set logscale y", "set grid",
    "set key top right",
    "plot " .. table.concat(plots, ", "), "",
  }, "\n")
  local ok, err = pcall(run, script, path)
  for _, f in ipairs(files) do os.remove(f) end
  if not ok then error(err, 2) end
  return path
end

--- Generic line plot: series = {{name =, x = {...}, y = {...}}, ...}; title, xlabel,
-- ylabel, logy.
function plot.lines(path, opts)
  local files, plots = {}, {}
  for i, s in ipairs(opts.series) do
    local rows = {}
    for j = 1, #s.x do rows[j] = ("%.10g %.10g"):format(s.x[j], s.y[j]) end
    files[i] = tmpdata(rows)
    plots[i] = ("%s using 1:2 with linespoints lw 2 pt 7 ps 0.5 title %s"):format(q(files[i]), q(s.name))
  end
  local script = table.concat({
    term_line(path, opts.width or 1000, opts.height or 500),
    "set output " .. q(path),
    "set title " .. q(opts.title or ""),
    "set xlabel " .. q(opts.xlabel or "x"), "set ylabel " .. q(opts.ylabel or "y"),
    opts.logy and "set logscale y" or "", "set grid", "set key outside right top",
    "plot " .. table.concat(plots, ", "), "",
  }, "\n")
  local ok, err = pcall(run, script, path)
  for _, f in ipairs(files) do os.remove(f) end
  if not ok then error(err, 2) end
  return path
end

--- Training curves from a log.csv: one panel per kind of term (loss, recons, commit,
-- multispectral, usage), a line per level.
function plot.training_curves(path, csv_path, opts)
  opts = opts or {}
  local f = io.open(csv_path)
  if not f then error(("plot: cannot open log '%s'"):format(csv_path), 2) end
  local header = f:read("l")
  f:close()
  if not header then error(("plot: log '%s' is empty"):format(csv_path), 2) end
  local col = {}
  local i = 0
  for name in header:gmatch("[^,]+") do
    i = i + 1
    col[name] = i
  end
  local panels = {}
  local function panel(title, ylabel, names, logy)
    local parts = {}
    for _, n in ipairs(names) do
      if col[n] then
        parts[#parts + 1] = ("%s every ::1 using 1:%d with lines lw 2 title %s"):format(q(csv_path), col[n], q(n))
      end
    end
    if #parts > 0 then
      panels[#panels + 1] = table.concat({
        "set title " .. q(title), "set ylabel " .. q(ylabel), logy and "set logscale y" or "unset logscale y",
        "plot " .. table.concat(parts, ", "),
      }, "\n")
    end
  end
  local levels = 0
  while col[("recons_loss_l%d"):format(levels + 1)] do levels = levels + 1 end
  local function per(prefix)
    local out = {}
    for l = 1, levels do out[l] = ("%s_l%d"):format(prefix, l) end
    return out
  end
  panel("Total loss", "loss", { "loss" }, true)
  panel("Reconstruction loss", "loss", per("recons_loss"), true)
  panel("Multispectral loss", "loss", per("multispectral_loss"), true)
  panel("Commit loss", "loss", per("commit_loss"), true)
  panel("Codebook usage (codes with k_elem >= threshold)", "codes", per("usage"), false)
  panel("Code entropy of the batch", "nats", per("entropy"), false)
  local rows_n = math.ceil(#panels / 2)
  local script = table.concat({
    term_line(path, opts.width or 1300, opts.height or 380 * rows_n),
    "set output " .. q(path), "set datafile separator ','",
    "set xlabel 'step'", "set grid", "set key top right",
    ("set multiplot layout %d,2 title %s"):format(rows_n, q(opts.title or "Training curves")),
    table.concat(panels, "\n"), "unset multiplot", "",
  }, "\n")
  return run(script, path)
end

return plot
