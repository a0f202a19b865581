--- JSON for Lua, on the core's encoder/decoder (see lua/bind/l_io.c for the mapping):
-- tables with keys exactly 1..n are arrays, other tables objects (keys sorted), {} is
-- an empty object; integers stay integers; NaN/inf are errors naming the key path;
-- null decodes to json.null.
local core = require "jukebox.core"

local json = {
  encode = core.json_encode, -- encode(value, {indent = bool}) -> string
  decode = core.json_decode, -- decode(string) -> value
  null = core.json_null,
}

--- Writes value as indented JSON to path, atomically (temp file, fsync, rename).
function json.write(path, value)
  core.fsync_write(path, core.json_encode(value, { indent = true }) .. "\n")
end

--- Reads and decodes the JSON file at path.
function json.read(path)
  local f, err = io.open(path, "rb")
  if not f then error("json.read: " .. err, 2) end
  local text = f:read("a")
  f:close()
  local ok, v = pcall(core.json_decode, text)
  if not ok then error(("json.read %s: %s"):format(path, v), 2) end
  return v
end

return json
