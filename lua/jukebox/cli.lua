--- Command-line options and progress for recipes.
-- cli.parse(arg, spec, usage): spec is a list of {name, default, help, type=}; values
-- are converted to the default's type (or `type`: "number", "string", "boolean",
-- "list" (comma-separated numbers), "strings" (repeatable)). Unknown options are errors.
local core = require "jukebox.core"

local cli = {}

local function convert(name, value, kind)
  if kind == "number" then
    local n = tonumber(value)
    if not n then error(("option --%s: '%s' is not a number"):format(name, value), 0) end
    return math.tointeger(n) or n
  elseif kind == "boolean" then
    if value == true or value == "true" or value == "1" or value == "yes" then return true end
    if value == "false" or value == "0" or value == "no" then return false end
    error(("option --%s: '%s' is not true/false"):format(name, tostring(value)), 0)
  elseif kind == "list" then
    local out = {}
    for item in tostring(value):gmatch("[^,]+") do
      local n = tonumber(item)
      if not n then error(("option --%s: '%s' is not a number"):format(name, item), 0) end
      out[#out + 1] = math.tointeger(n) or n
    end
    return out
  end
  return tostring(value)
end

local function kind_of(o)
  if o.type then return o.type end
  local t = type(o[2])
  return (t == "number" or t == "boolean") and t or (t == "table" and "list" or "string")
end

--- Prints usage and the options with defaults.
function cli.help(spec, usage)
  local lines = { usage, "", "options:" }
  for _, o in ipairs(spec) do
    local d = o[2]
    if type(d) == "table" then d = table.concat(d, ",") end
    lines[#lines + 1] = ("  --%-22s %s%s"):format(o[1], o[3] or "",
      d ~= nil and (" (default: %s)"):format(tostring(d)) or "")
  end
  lines[#lines + 1] = ("  --%-22s %s"):format("help", "show this message")
  return table.concat(lines, "\n")
end

--- Parses arg; returns a table of options (defaults filled in) and the positional args.
function cli.parse(args, spec, usage)
  local by_name, opts, rest = {}, {}, {}
  for _, o in ipairs(spec) do
    by_name[o[1]] = o
    if kind_of(o) == "strings" then opts[o[1]] = {} else opts[o[1]] = o[2] end
  end
  for _, a in ipairs(args) do
    if a == "--help" or a == "-h" then
      print(cli.help(spec, usage))
      os.exit(0)
    end
    local name, value = a:match("^%-%-([%w_%-]+)=(.*)$")
    if not name then name = a:match("^%-%-([%w_%-]+)$"); value = true end
    if name then
      local key = name:gsub("%-", "_")
      local o = by_name[key] or by_name[name]
      if not o then
        error(("unknown option --%s (see --help)"):format(name), 0)
      end
      local kind = kind_of(o)
      if value == true and kind ~= "boolean" then
        error(("option --%s needs a value: --%s=..."):format(name, name), 0)
      end
      if kind == "strings" then
        table.insert(opts[o[1]], value)
      else
        opts[o[1]] = convert(name, value, kind)
      end
    else
      rest[#rest + 1] = a
    end
  end
  return opts, rest
end

--- A progress line: on a terminal it redraws in place on stderr; otherwise it prints
-- a plain line every `every` updates (so logs stay readable).
local Progress = {}
Progress.__index = Progress

function cli.progress(total, opts)
  opts = opts or {}
  return setmetatable({
    total = total, start = core.clock(), tty = core.isatty(2), every = opts.every or 10,
    label = opts.label or "", n = 0, silent = opts.silent,
  }, Progress)
end

local function fmt_time(s)
  if s ~= s or s == math.huge then return "?" end
  s = math.floor(s + 0.5)
  return ("%d:%02d"):format(s // 60, s % 60)
end

--- update(done, fields): fields is a list of {name, value-or-string}.
function Progress:update(done, fields)
  self.n = self.n + 1
  if self.silent then return end
  local elapsed = core.clock() - self.start
  local parts = {}
  for _, f in ipairs(fields or {}) do
    local v = f[2]
    parts[#parts + 1] = type(v) == "number" and ("%s %.4g"):format(f[1], v) or (f[1] .. " " .. v)
  end
  local frac = self.total > 0 and done / self.total or 0
  local eta = frac > 0 and elapsed * (1 - frac) / frac or math.huge
  if self.tty then
    local width = 24
    local filled = math.floor(frac * width + 0.5)
    io.stderr:write(("\r%s[%s%s] %d/%d %s<%s %s\27[K"):format(self.label, ("#"):rep(filled),
      ("."):rep(width - filled), done, self.total, fmt_time(elapsed), fmt_time(eta),
      table.concat(parts, " ")))
    if done >= self.total then io.stderr:write("\n") end
  elseif self.n % self.every == 0 or done >= self.total or done == 1 then
    io.stderr:write(("%s%d/%d %s elapsed, %s left  %s\n"):format(self.label, done, self.total,
      fmt_time(elapsed), fmt_time(eta), table.concat(parts, " ")))
  end
  io.stderr:flush()
end

function Progress:finish()
  if self.tty and not self.silent then io.stderr:write("\n") end
end

return cli
