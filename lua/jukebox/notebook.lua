--- Literate notebooks: a Lua script that computes, plots and writes prose renders a
-- Markdown report with its figures under notebooks/out/NAME/.
--   local nb = require("jukebox.notebook").new("codebook_study")
--   nb:md("# Title"); nb:figure(path, "caption"); nb:table(header, rows); nb:write()
local core = require "jukebox.core"

local notebook = {}
local Notebook = {}
Notebook.__index = Notebook

function notebook.new(name, root)
  local dir = (root or "notebooks/out") .. "/" .. name
  core.mkdir_p(dir)
  return setmetatable({ name = name, dir = dir, parts = {}, t0 = core.clock() }, Notebook)
end

--- A path inside the report's folder, for figures and data.
function Notebook:path(file) return self.dir .. "/" .. file end

--- Markdown text (dedented by its first line's indentation).
function Notebook:md(text)
  local indent = text:match("^\n?([ \t]*)")
  text = text:gsub("^\n", ""):gsub("\n" .. indent, "\n"):gsub("^" .. indent, "")
  self.parts[#self.parts + 1] = text
  io.stderr:write(("[%s] %s\n"):format(self.name, (text:match("^[^\n]*"))))
end

--- A figure (path inside the report folder or absolute) with a caption.
function Notebook:figure(path, caption)
  local rel = path:sub(1, #self.dir + 1) == self.dir .. "/" and path:sub(#self.dir + 2) or path
  self.parts[#self.parts + 1] = ("![%s](%s)\n\n*%s*"):format(caption, rel, caption)
end

--- A Markdown table from a header list and rows of cells.
function Notebook:table(header, rows)
  local lines = { "| " .. table.concat(header, " | ") .. " |", "|" .. (" --- |"):rep(#header) }
  for _, r in ipairs(rows) do
    local cells = {}
    for i, c in ipairs(r) do cells[i] = tostring(c) end
    lines[#lines + 1] = "| " .. table.concat(cells, " | ") .. " |"
  end
  self.parts[#self.parts + 1] = table.concat(lines, "\n")
end

--- Writes report.md and returns its path.
function Notebook:write()
  self:md(("---\n*Rendered by `build/jbx notebooks/%s.lua` in %.1f minutes.*"):format(self.name,
    (core.clock() - self.t0) / 60))
  local path = self:path("report.md")
  core.fsync_write(path, table.concat(self.parts, "\n\n") .. "\n")
  print("report: " .. path)
  return path
end

return notebook
