-- The notebook helper: a tiny notebook (two training steps of the tiny preset, a plot of
-- its log) renders report.md with a working figure link, a table and the timed footer.
local H = require "helpers"

local function tmpdir(name)
  local d = os.tmpname()
  os.remove(d)
  return d .. "_" .. name
end

local function read(path)
  local f = assert(io.open(path))
  local s = f:read("a")
  f:close()
  return s
end

return {
  ["a tiny notebook renders its report with a figure link"] = function(jbx)
    local notebook = require "jukebox.notebook"
    local train = require "jukebox.train"
    local plot = require "jukebox.plot"
    local dir = tmpdir("nb")
    local nb = notebook.new("tiny", { out = dir .. "/report", command = "jbx tiny.lua --quick", threads = 1,
      quiet = true })
    nb:md([[
      # A tiny study
      Two steps of the tiny preset.
        (an indented line keeps its extra indent)]])
    local r = train.run({ data = "data/music", out = dir .. "/run", preset = "tiny", steps = 2, batch = 2,
      sample_length = 2048, log_every = 1, ckpt_every = 2, threads = 1, bandwidth_batches = 1, quiet = true,
      warmup = 1 })
    local log = notebook.read_csv(r.log)
    local usage = log.columns.usage_l1
    H.assert_eq(log.rows, 2, "two logged steps")
    H.assert_eq(#usage, 2, "a value per step")
    H.assert_eq(log.columns.step[2], 2, "numbers are numbers")
    H.assert_eq(log.header[1], "step", "header order")
    local fig = plot.lines(nb:path("usage.png"), { series = { { name = "level 1", x = { 1, 2 }, y = usage } },
      title = "usage", xlabel = "step", ylabel = "codes" })
    nb:figure(fig, "Codebook usage | level 1")
    nb:table({ "level", "usage", "note" }, { { 1, usage[2], "a|b" }, { 2, 0.123456, "x" } }, { align = "rrl" })
    nb:code("print(1)", "lua")
    local json = nb:json("results.json", { usage = usage[2] })
    local path = nb:write()
    H.assert_eq(path, dir .. "/report/report.md", "report path")
    local md = read(path)
    H.assert_true(md:find("^# A tiny study\nTwo steps of the tiny preset.\n  %(an indented") ~= nil,
      "dedented markdown: " .. md:sub(1, 80))
    H.assert_true(md:find("![Codebook usage | level 1](usage.png)", 1, true) ~= nil, "figure link relative to the report")
    H.assert_eq(jbx.core.path_kind(dir .. "/report/usage.png"), "file", "the figure exists")
    H.assert_true(md:find("| level | usage | note |\n| ---: | ---: | --- |", 1, true) ~= nil, "table header")
    H.assert_true(md:find("| 2 | 0.1235 | x |", 1, true) ~= nil, "numbers at 4 significant digits")
    H.assert_true(md:find("a\\|b", 1, true) ~= nil, "pipes in cells are escaped")
    H.assert_true(md:find("```lua\nprint(1)\n```", 1, true) ~= nil, "code block")
    H.assert_true(md:find("%*Rendered by `jbx tiny.lua %-%-quick` in %d+ s %(wall clock, 1 thread%) on ") ~= nil,
      "footer with command and measured time")
    H.assert_true(read(json):find('"usage"') ~= nil, "json written")
    H.assert_true(nb.seconds >= 0, "seconds recorded")
    os.execute("rm -rf '" .. dir .. "'")
  end,

  ["spread_clips links whole clips spread over the folder"] = function(jbx)
    local notebook = require "jukebox.notebook"
    local data = require "jukebox.data"
    local dir = tmpdir("spread")
    local all = data.scan("data/music")
    local into, names = notebook.spread_clips("data/music", 30, dir)
    H.assert_eq(into, dir, "a folder of links")
    H.assert_eq(#names, 2, "30 s of 15 s clips")
    local linked = data.scan(dir)
    H.assert_eq(#linked, 2, "the links scan as audio")
    H.assert_eq(names[1], all[1].path:match("[^/]*$"), "the first clip")
    H.assert_eq(names[2], all[#all // 2 + 1].path:match("[^/]*$"), "then half-way through the folder")
    H.assert_eq(linked[1].frames, all[1].frames, "the same audio")
    -- Called again, the folder is emptied first.
    local _, again = notebook.spread_clips("data/music", 1, dir)
    H.assert_eq(#again, 1, "at least one clip")
    H.assert_eq(#jbx.core.list_dir(dir), 1, "old links removed")
    os.execute("rm -rf '" .. dir .. "'")
  end,

  ["notebook misuse is an error"] = function()
    local notebook = require "jukebox.notebook"
    local dir = tmpdir("nb_err")
    H.assert_error(function() notebook.new("a/b") end, "notebook: name must be a plain file name, got 'a/b'")
    H.assert_error(function() notebook.new("x", { outdir = dir }) end, "notebook: unknown option 'outdir'")
    local nb = notebook.new("x", { out = dir, quiet = true })
    H.assert_error(function() nb:figure(dir .. "/missing.png", "c") end,
      "notebook: figure '" .. dir .. "/missing.png' does not exist")
    H.assert_error(function() nb:table({ "a", "b" }, { { 1 } }) end, "notebook: table row 1 has 1 cells, the header 2")
    -- The old form new(name, root) puts the report in ROOT/NAME.
    local old = notebook.new("y", dir)
    H.assert_eq(old.dir, dir .. "/y", "root form")
    H.assert_error(function() notebook.read_csv(dir .. "/none.csv") end, "notebook: cannot open CSV")
    local f = assert(io.open(dir .. "/t.csv", "w"))
    f:write("a,b,c\n1,,x\n2,3\n")
    f:close()
    local t = notebook.read_csv(dir .. "/t.csv")
    H.assert_eq(t.rows, 2, "rows")
    H.assert_true(t.columns.b[1] ~= t.columns.b[1] and t.columns.c[2] ~= t.columns.c[2], "empty and missing cells are NaN")
    H.assert_eq(t.columns.c[1], "x", "text stays text")
    H.assert_eq(t.columns.b[2], 3, "number")
    os.execute("rm -rf '" .. dir .. "'")
  end,
}
