--- Literate notebooks: a Lua script that computes, plots and writes prose renders a
-- Markdown report with its figures under notebooks/out/NAME/ (or --out).
--   local nb = require("jukebox.notebook").new("codebook_study", { out = opts.out })
--   nb:md("# Title"); nb:figure(path, "caption"); nb:table(header, rows)
--   nb:json("results.json", t); nb:write()  -- report.md, with the measured time in its footer
local core = require "jukebox.core"
local options = require "jukebox.options"

local notebook = {}
local Notebook = {}
Notebook.__index = Notebook

-- The command line that ran this script, for the footer ("build/jbx notebooks/x.lua --quick").
local function command_line()
  local a = rawget(_G, "arg")
  if type(a) ~= "table" or not a[0] then return nil end
  local parts = { a[-1] or "jbx", a[0] }
  for i = 1, #a do parts[#parts + 1] = a[i] end
  return table.concat(parts, " ")
end

--- notebook.new(name, opts): opts.out is the report folder (default notebooks/out/NAME);
-- opts.command the command line shown in the footer (default: this process's own);
-- opts.threads is shown there too; opts.quiet silences the progress lines on stderr.
-- A string opts is a root folder: the report goes to ROOT/NAME.
function notebook.new(name, opts)
  if type(name) ~= "string" or not name:match("^[%w_%-%.]+$") then
    error(("notebook: name must be a plain file name, got '%s'"):format(tostring(name)), 2)
  end
  if type(opts) == "string" then opts = { out = opts .. "/" .. name } end
  opts = options.merge("notebook", {}, opts, { optional = { "out", "command", "threads", "quiet" } })
  local dir = (opts.out or ("notebooks/out/" .. name)):gsub("/+$", "")
  core.mkdir_p(dir)
  return setmetatable({ name = name, dir = dir, parts = {}, figures = {}, t0 = core.clock(),
                        command = opts.command or command_line(), threads = opts.threads,
                        quiet = opts.quiet },
    Notebook)
end

--- A path inside the report's folder, for figures and data.
function Notebook:path(file) return self.dir .. "/" .. file end

--- Seconds since the notebook started.
function Notebook:elapsed() return core.clock() - self.t0 end

--- Markdown text, dedented by its first non-empty line's indentation (so long strings can
-- follow the code's indentation).
function Notebook:md(text)
  text = tostring(text):gsub("^%s*\n", "")
  local indent = text:match("^([ \t]*)")
  if #indent > 0 then
    local lines = {}
    for line in (text .. "\n"):gmatch("(.-)\n") do
      lines[#lines + 1] = line:sub(1, #indent) == indent and line:sub(#indent + 1) or line:gsub("^[ \t]+", "")
    end
    text = table.concat(lines, "\n")
  end
  text = text:gsub("%s+$", "")
  self.parts[#self.parts + 1] = text
  if not self.quiet then
    io.stderr:write(("[%s %5.1fs] %s\n"):format(self.name, self:elapsed(), (text:match("^[^\n]*"))))
  end
end

--- A figure (path inside the report folder, or any path) with a caption. The file must
-- exist: a report with a broken image link is an error here, not a surprise later.
function Notebook:figure(path, caption)
  if core.path_kind(path) ~= "file" then
    error(("notebook: figure '%s' does not exist"):format(path), 2)
  end
  local rel = path:sub(1, #self.dir + 1) == self.dir .. "/" and path:sub(#self.dir + 2) or path
  caption = caption or rel
  self.figures[#self.figures + 1] = rel
  self.parts[#self.parts + 1] = ("![%s](%s)\n\n*%s*"):format(caption:gsub("[%[%]]", ""), rel, caption)
end

-- A table cell: numbers with a sensible precision, pipes escaped.
local function cell(v)
  if type(v) == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    if v ~= v then return "nan" end
    if v == math.floor(v) and math.abs(v) < 1e15 then return ("%d"):format(v) end
    return ("%.4g"):format(v)
  end
  return (tostring(v):gsub("|", "\\|"):gsub("\n", " "))
end

--- A Markdown table from a header list and rows of cells (numbers get 4 significant digits;
-- format them yourself for anything else). opts.align: a string of l/r/c per column.
function Notebook:table(header, rows, opts)
  opts = opts or {}
  local sep = {}
  for i = 1, #header do
    local a = opts.align and opts.align:sub(i, i) or "l"
    sep[i] = a == "r" and "---:" or a == "c" and ":---:" or "---"
  end
  local head = {}
  for i, h in ipairs(header) do head[i] = cell(h) end
  local lines = { "| " .. table.concat(head, " | ") .. " |", "| " .. table.concat(sep, " | ") .. " |" }
  for ri, r in ipairs(rows) do
    if #r ~= #header then
      error(("notebook: table row %d has %d cells, the header %d"):format(ri, #r, #header), 2)
    end
    local cells = {}
    for i = 1, #header do cells[i] = cell(r[i]) end
    lines[#lines + 1] = "| " .. table.concat(cells, " | ") .. " |"
  end
  self.parts[#self.parts + 1] = table.concat(lines, "\n")
end

--- A fenced code block.
function Notebook:code(text, lang)
  self.parts[#self.parts + 1] = ("```%s\n%s\n```"):format(lang or "", (tostring(text):gsub("%s+$", "")))
end

--- Reads a CSV with a header row (as train.run's log.csv): returns {header = {names},
-- columns = {name = {values}}, rows = n}. Numeric cells become numbers, empty ones NaN
-- (so every column keeps one entry per row), anything else stays a string.
function notebook.read_csv(path)
  local f = io.open(path)
  if not f then error(("notebook: cannot open CSV '%s'"):format(path), 2) end
  local header_line = f:read("l")
  if not header_line then
    f:close()
    error(("notebook: CSV '%s' is empty"):format(path), 2)
  end
  local header, columns = {}, {}
  for name in (header_line .. ","):gmatch("([^,]*),") do
    header[#header + 1] = name
    columns[name] = {}
  end
  local n = 0
  for line in f:lines() do
    if line ~= "" then
      n = n + 1
      local i = 0
      for c in (line .. ","):gmatch("([^,]*),") do
        i = i + 1
        if header[i] then columns[header[i]][n] = tonumber(c) or (c == "" and 0 / 0 or c) end
      end
      for j = i + 1, #header do columns[header[j]][n] = 0 / 0 end
    end
  end
  f:close()
  return { header = header, columns = columns, rows = n }
end

--- A folder of links to whole clips of `dir` spread evenly over its sorted file list, as
-- many as fit in about `seconds` (at least one), so an evaluation with a time budget sees
-- several sources and genres, not just the first files. Returns the folder and the list of
-- clip names; when links cannot be made, returns `dir` itself and nil.
function notebook.spread_clips(dir, seconds, into)
  local files = require("jukebox.data").scan(dir)
  local total = 0
  for _, f in ipairs(files) do total = total + f.seconds end
  local n = math.max(1, math.min(#files, math.floor(seconds / (total / #files) + 0.5)))
  core.mkdir_p(into)
  for _, name in ipairs(core.list_dir(into)) do os.remove(into .. "/" .. name) end
  local quote = require("jukebox.cli").shell_quote
  local chosen = {}
  for i = 1, n do
    local f = files[math.floor((i - 1) * #files / n) + 1]
    local name = f.path:match("[^/]*$")
    -- -r: the link is made relative to its folder, so it works from any working
    -- directory ($PWD is not the process's directory under ctest).
    if not os.execute(("ln -sr %s %s"):format(quote(f.path), quote(("%s/%02d_%s"):format(into, i, name)))) then
      return dir, nil
    end
    chosen[#chosen + 1] = name
  end
  return into, chosen
end

--- Writes a Lua table as JSON next to the report (for the numbers behind the prose);
-- returns its path.
function Notebook:json(file, value)
  local path = self:path(file)
  core.fsync_write(path, core.json_encode(value, { indent = true }))
  return path
end

--- Writes report.md (with a footer giving the command and the measured wall-clock time)
-- and returns its path.
function Notebook:write()
  local secs = self:elapsed()
  local took = secs < 120 and ("%.0f s"):format(secs) or ("%.1f minutes"):format(secs / 60)
  local how = self.command and ("`%s`"):format(self.command) or ("notebooks/%s.lua"):format(self.name)
  local threads = self.threads and (", %d thread%s"):format(self.threads, self.threads == 1 and "" or "s") or ""
  self.parts[#self.parts + 1] = ("---\n*Rendered by %s in %s (wall clock%s) on %s.*"):format(how, took,
    threads, os.date("%Y-%m-%d %H:%M"))
  self.seconds = secs
  local path = self:path("report.md")
  core.fsync_write(path, table.concat(self.parts, "\n\n") .. "\n")
  if not self.quiet then print(("report: %s (%s)"):format(path, took)) end
  return path
end

return notebook
