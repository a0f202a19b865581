--- Labels of a music folder: which artist and genre each file is (and, later, its lyrics),
-- read from a CSV file:
--
--   file,artist,genre[,lyrics]
--   music/wesnoth_love_theme_00.flac,wesnoth,orchestral
--   "music/a, b.flac","Sectoid","rock/metal",lyrics/a_b.txt
--
-- `file` (and `lyrics`) are paths relative to the data folder (the --data of the
-- recipes), not to the CSV. Columns may come in any order; file, artist and genre are
-- required, lyrics is optional, any other column is an error (a typo would otherwise
-- lose a label). Fields follow RFC 4180: commas and quotes inside "quoted" fields, ""
-- for a quote. An empty artist or genre is "unknown"; an empty lyrics is none.
-- Names are kept as written: normalising them (lower case, "_" for other characters)
-- is the label conditioner's job. A row naming a file that is not in the data folder,
-- or a lyrics file that is not there, is an error naming the row; a folder file that no
-- row names gets artist and genre "unknown" (labels.UNKNOWN).
local core = require "jukebox.core"

local labels = {}

labels.UNKNOWN = "unknown"
labels.columns = { "file", "artist", "genre", "lyrics" }

--- Splits CSV text into rows of fields, each row {fields..., line = first line number}.
-- Raises "<name>:<line>: ..." for an unterminated quote or a stray quote.
function labels.parse_csv(text, name)
  name = name or "csv"
  local rows, pos, line, n = {}, 1, 1, #text
  if text:sub(1, 3) == "\239\187\191" then pos = 4 end -- a UTF-8 byte order mark
  while pos <= n do
    local row, start_line = {}, line
    while true do
      local field
      if text:sub(pos, pos) == '"' then
        local parts, i = {}, pos + 1
        while true do
          local q = text:find('"', i, true)
          if not q then error(("%s:%d: a quoted field is not closed"):format(name, start_line), 0) end
          parts[#parts + 1] = text:sub(i, q - 1)
          if text:sub(q + 1, q + 1) == '"' then
            parts[#parts + 1] = '"'
            i = q + 2
          else
            pos = q + 1
            break
          end
        end
        field = table.concat(parts)
        for _ in field:gmatch("\n") do line = line + 1 end
        local nxt = text:sub(pos, pos)
        if nxt ~= "," and nxt ~= "\n" and nxt ~= "\r" and nxt ~= "" then
          error(("%s:%d: text after a closing quote (write \"\" for a quote inside a field)"):format(name, line), 0)
        end
      else
        local e = text:find("[,\r\n]", pos) or n + 1
        field = text:sub(pos, e - 1)
        if field:find('"', 1, true) then
          error(("%s:%d: a quote inside an unquoted field (quote the whole field)"):format(name, line), 0)
        end
        pos = e
      end
      row[#row + 1] = field
      local c = text:sub(pos, pos)
      if c == "," then
        pos = pos + 1
      else
        if c == "\r" then pos = pos + 1 end
        if text:sub(pos, pos) == "\n" then pos = pos + 1 end
        line = line + 1
        break
      end
    end
    row.line = start_line
    -- Blank lines are skipped.
    if not (#row == 1 and row[1]:match("^%s*$")) then rows[#rows + 1] = row end
  end
  return rows
end

--- "./a//b/c.flac" -> "a/b/c.flac": the form paths are compared in.
function labels.normalise_path(p)
  p = p:gsub("\\", "/"):gsub("/+", "/")
  while p:sub(1, 2) == "./" do p = p:sub(3) end
  return (p:gsub("/%./", "/"))
end

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

--- labels.read(csv_path, data_dir) -> {rel_path = {artist =, genre =, lyrics = rel or nil, line = n}}
-- with rel_path normalised (labels.normalise_path). Checks every row against data_dir.
function labels.read(path, data_dir)
  local f, err = io.open(path, "rb")
  if not f then
    error(("labels: cannot open '%s': %s"):format(path, tostring(err):gsub("^[^:]*: ", "")), 0)
  end
  local text = f:read("a")
  f:close()
  local rows = labels.parse_csv(text, path)
  if #rows == 0 then error(("labels: '%s' is empty (expected a header file,artist,genre[,lyrics])"):format(path), 0) end
  local header, col = rows[1], {}
  local known = {}
  for _, c in ipairs(labels.columns) do known[c] = true end
  for i, h in ipairs(header) do
    h = trim(h):lower()
    if not known[h] then
      error(("labels: %s:%d: unknown column '%s' (known: %s)"):format(path, header.line, h,
        table.concat(labels.columns, ", ")), 0)
    end
    if col[h] then error(("labels: %s:%d: column '%s' appears twice"):format(path, header.line, h), 0) end
    col[h] = i
  end
  for _, c in ipairs({ "file", "artist", "genre" }) do
    if not col[c] then
      error(("labels: %s:%d: no '%s' column (the header is file,artist,genre[,lyrics])"):format(path,
        header.line, c), 0)
    end
  end
  local out = {}
  for r = 2, #rows do
    local row = rows[r]
    local where = ("%s:%d"):format(path, row.line)
    if #row ~= #header then
      error(("labels: %s: %d fields, the header has %d"):format(where, #row, #header), 0)
    end
    local file = labels.normalise_path(trim(row[col.file]))
    if file == "" then error(("labels: %s: the file field is empty"):format(where), 0) end
    if out[file] then
      error(("labels: %s: '%s' is already labelled on line %d"):format(where, file, out[file].line), 0)
    end
    if core.path_kind(data_dir .. "/" .. file) ~= "file" then
      error(("labels: %s: '%s' is not in the data folder '%s' (files are relative to the data folder)")
        :format(where, file, data_dir), 0)
    end
    local function name(k)
      local v = trim(row[col[k]])
      return v ~= "" and v or labels.UNKNOWN
    end
    local lyrics = col.lyrics and trim(row[col.lyrics]) or ""
    if lyrics ~= "" then
      lyrics = labels.normalise_path(lyrics)
      if core.path_kind(data_dir .. "/" .. lyrics) ~= "file" then
        error(("labels: %s: lyrics file '%s' is not in the data folder '%s'"):format(where, lyrics, data_dir), 0)
      end
    end
    out[file] = { artist = name("artist"), genre = name("genre"), lyrics = lyrics ~= "" and lyrics or nil,
                  line = row.line }
  end
  return out
end

--- The labels of the file at rel_path (relative to the data folder): its row, or
-- unknown artist and genre. `map` may be nil (no labels file).
function labels.of(map, rel_path)
  local row = map and map[labels.normalise_path(rel_path)]
  if row then return { artist = row.artist, genre = row.genre, lyrics = row.lyrics, labelled = true } end
  return { artist = labels.UNKNOWN, genre = labels.UNKNOWN, labelled = false }
end

return labels
