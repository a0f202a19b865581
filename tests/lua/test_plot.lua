-- plot.lua: every plot writes a non-empty PNG through gnuplot (a declared dependency:
-- gnuplot-nox), and a missing gnuplot is one clear error naming the package.
local H = require "helpers"
local eq, yes = H.assert_eq, H.assert_true

local T = {}

local exe = H.jbx_exe()

local function is_png(path)
  local f = io.open(path, "rb")
  if not f then return false, "missing" end
  local head = f:read(8)
  local size = f:seek("end")
  f:close()
  return head == "\137PNG\r\n\26\n" and size > 2000, ("%d bytes"):format(size)
end

local function check_png(path)
  local ok, why = is_png(path)
  yes(ok, path .. " is not a PNG with content: " .. why)
  os.remove(path)
end

local function sine(jbx, n, f, a)
  local t = {}
  for i = 1, n do t[i] = a * math.sin(2 * math.pi * f * (i - 1) / 22050) end
  return jbx.tensor(t)
end

function T.waveforms_and_spectrograms(jbx)
  local plot = require "jukebox.plot"
  local x = sine(jbx, 22050, 440, 0.5)
  local y = x * 0.8 + jbx.randn({ 22050 }) * 0.01
  local base = os.tmpname()
  check_png(plot.waveforms(base .. "_wave.png", { series = { { name = "input_a", audio = x },
    { name = "level 1", audio = y } }, rate = 22050, from = 0.1, to = 0.12, title = "clip_00.flac" }))
  -- One series; a window past the end is clamped to the audio.
  check_png(plot.waveforms(base .. "_wave1.png", { series = { { name = "x", audio = x } }, from = 5, to = 6 }))
  check_png(plot.spectrograms(base .. "_spec.png", { items = { { name = "input", audio = x },
    { name = "recon", audio = y } }, rate = 22050, from = 0, to = 1 }))
  H.assert_error(function() plot.spectrograms(base .. "_s.png", { items = { { name = "short", audio = x:narrow(1, 1, 100) } } }) end,
    "fewer than n_fft")
  H.assert_error(function() plot.waveforms(base .. "_w.png", { series = {} }) end, "no series")
end

function T.code_usage_and_lines(jbx)
  local plot = require "jukebox.plot"
  local base = os.tmpname()
  local a, b = {}, {}
  for i = 1, 256 do
    a[i] = i <= 40 and math.floor(1e5 / i ^ 2) or 0
    b[i] = (i * 37) % 11
  end
  check_png(plot.code_usage(base .. "_usage.png", { levels = { { name = "level 1", counts = a },
    { name = "level 2", counts = b } } }))
  H.assert_error(function() plot.code_usage(base .. "_u.png", { levels = { { name = "l", counts = { 0, 0 } } } }) end,
    "every level has zero counts")
  check_png(plot.lines(base .. "_lines.png", { series = { { name = "sc", x = { 1, 2, 3 }, y = { 3, 2, 1 } } },
    xlabel = "level", ylabel = "dB", title = "t", logy = true }))
end

-- Heatmaps: a tensor and a table of rows, log colour with zeros left blank; bad items.
function T.heatmaps(jbx)
  local plot = require "jukebox.plot"
  local base = os.tmpname()
  local rows = {}
  for r = 1, 16 do
    rows[r] = {}
    for c = 1, 16 do rows[r][c] = c <= r and 1 / r or 0 end
  end
  check_png(plot.heatmaps(base .. "_heat.png", { items = { { name = "rows", matrix = rows },
    { name = "tensor", matrix = jbx.tensor(rows) } }, log10 = true, title = "t", xlabel = "key", ylabel = "query" }))
  check_png(plot.heatmaps(base .. "_heat1.png", { items = { { name = "zeros", matrix = { { 0, 0 }, { 0, 0 } } } } }))
  H.assert_error(function() plot.heatmaps(base .. "_h.png", { items = {} }) end, "plot.heatmaps: no items")
  H.assert_error(function() plot.heatmaps(base .. "_h.png", { items = { { name = "v", matrix = { 1, 2 } } } }) end,
    "plot.heatmaps: item 1 (v): matrix must be a 2-D tensor or rows of numbers")
end

function T.training_curves(jbx)
  local plot = require "jukebox.plot"
  local train = require "jukebox.train"
  local base = os.tmpname()
  local csv = base .. "_log.csv"
  local f = assert(io.open(csv, "w"))
  f:write(table.concat(train.columns(require("jukebox.tasks.vqvae").level_columns(2)), ","), "\n")
  for step = 10, 50, 10 do
    local row = { step, step * 0.1, 3e-4, 10 / step, 1 }
    for _ = 1, 2 do
      for _, v in ipairs({ 5 / step, 1e-3, 2 / step, 16, 10, 2.5, 0.01, 0.1, 0.5 }) do row[#row + 1] = v end
    end
    f:write(table.concat(row, ","), "\n")
  end
  f:close()
  check_png(plot.training_curves(base .. "_curves.png", csv))
  os.remove(csv)
  H.assert_error(function() plot.training_curves(base .. "_c.png", base .. "_missing.csv") end, "cannot open log")
  f = assert(io.open(csv, "w"))
  f:write("step,loss\n")
  f:close()
  H.assert_error(function() plot.training_curves(base .. "_c.png", csv) end, "has no rows")
  os.remove(csv)
end

function T.svg_by_extension(jbx)
  local plot = require "jukebox.plot"
  local path = os.tmpname() .. "_lines.svg"
  plot.lines(path, { series = { { name = "a", x = { 1, 2 }, y = { 1, 4 } } } })
  local f = assert(io.open(path))
  local text = f:read("a")
  f:close()
  os.remove(path)
  yes(text:find("<svg", 1, true), "an SVG file")
end

-- gnuplot missing from PATH: one line naming gnuplot-nox, non-zero exit.
function T.missing_gnuplot(jbx)
  local q = H.shell_quote
  local errf = os.tmpname()
  local code = "require('jukebox.plot').waveforms('/tmp/never.png', {series = {{name = 'x', audio = require('jukebox').zeros({100})}}})"
  local p = assert(io.popen("PATH=/nonexistent_jbx " .. q(exe) .. " -e " .. q(code) .. " 2>" .. errf))
  p:read("a")
  local ok, _, status = p:close()
  local f = io.open(errf)
  local msg = f:read("a")
  f:close()
  os.remove(errf)
  yes(not ok and status ~= 0, "non-zero exit")
  yes(msg:find("gnuplot not found on PATH", 1, true) and msg:find("gnuplot-nox", 1, true), msg)
  -- In this process gnuplot is present; reset() forgets the cached terminal.
  local plot = require "jukebox.plot"
  plot.reset()
  yes(({ pngcairo = true, png = true, svg = true })[plot.terminal()], "a terminal")
end

return T
