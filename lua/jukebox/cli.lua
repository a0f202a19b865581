--- Command-line options and progress for recipes.
-- cli.parse(arg, spec, usage): spec is a list of {name, default, help, type=, required=};
-- values are converted to the default's type (or `type`: "number", "string",
-- "boolean", "list" (comma-separated numbers), "strings" (repeatable)). Names may be
-- written with - or _ (--max-seconds or --max_seconds). Booleans: --flag, --flag=false,
-- --no-flag. Unknown options are errors.
-- cli.run(prog, spec, usage, main) parses, then runs main(opts, rest) and turns any
-- error into one line "prog: message" on stderr and a non-zero exit (2 for bad
-- options, 1 for failures, 130 for Ctrl-C); JBX_TRACEBACK=1 adds the traceback.
local core = require "jukebox.core"

local cli = {}

local function convert(name, value, kind)
  if kind == "number" then
    local n = tonumber(value)
    if not n then error(("option --%s: '%s' is not a number"):format(name, tostring(value)), 0) end
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
    if #out == 0 then error(("option --%s: empty list"):format(name), 0) end
    return out
  end
  return tostring(value)
end

local function kind_of(o)
  if o.type then return o.type end
  local t = type(o[2])
  return (t == "number" or t == "boolean") and t or (t == "table" and "list" or "string")
end

-- Edit distance, for "did you mean" on unknown options.
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a:sub(i, i) == b:sub(j, j) and 0 or 1))
    end
    prev = cur
  end
  return prev[#b]
end

local function dashed(name) return (name:gsub("_", "-")) end

--- The usage line and the options with defaults, as one string.
--- s (any value, as tostring) quoted for a POSIX shell command line.
function cli.shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

function cli.help(spec, usage)
  local lines = { usage, "", "options:" }
  for _, o in ipairs(spec) do
    local d = o[2]
    if type(d) == "table" then d = table.concat(d, ",") end
    local kind = kind_of(o)
    local name = dashed(o[1]) .. (kind == "boolean" and "" or "=" .. (kind == "strings" and "X" or "V"))
    local note = o.required and " (required)" or (d ~= nil and (" (default: %s)"):format(tostring(d)) or "")
    if kind == "strings" then note = note .. " (repeatable)" end
    lines[#lines + 1] = ("  --%-22s %s%s"):format(name, o[3] or "", note)
  end
  lines[#lines + 1] = ("  --%-22s %s"):format("help", "show this message")
  return table.concat(lines, "\n")
end

--- Parses args; returns a table of options (defaults filled in) and the positional args.
-- --help prints the help and exits 0.
function cli.parse(args, spec, usage)
  local by_name, opts, rest = {}, {}, {}
  for _, o in ipairs(spec) do
    by_name[o[1]] = o
    if kind_of(o) == "strings" then opts[o[1]] = {} else opts[o[1]] = o[2] end
  end
  local only_positional = false
  for _, a in ipairs(args) do
    if only_positional then
      rest[#rest + 1] = a
    elseif a == "--" then
      only_positional = true
    elseif a == "--help" or a == "-h" then
      print(cli.help(spec, usage or "usage:"))
      os.exit(0)
    else
      local name, value = a:match("^%-%-([%w][%w_%-]*)=(.*)$")
      if not name then
        name = a:match("^%-%-([%w][%w_%-]*)$")
        value = true
      end
      if name then
        local key = name:gsub("%-", "_")
        local o = by_name[key]
        if not o and value == true and key:match("^no_") and by_name[key:sub(4)]
            and kind_of(by_name[key:sub(4)]) == "boolean" then
          o, value = by_name[key:sub(4)], "false"
        end
        if not o then
          local best, bd = nil, 3
          for _, s in ipairs(spec) do
            local d = distance(key, s[1])
            if d < bd then best, bd = s[1], d end
          end
          error(("unknown option --%s%s (see --help)"):format(name,
            best and (" (did you mean --%s?)"):format(dashed(best)) or ""), 0)
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
      elseif a:match("^%-%-?%a") then
        error(("bad option '%s': options are written --name=value"):format(a), 0)
      else
        rest[#rest + 1] = a
      end
    end
  end
  for _, o in ipairs(spec) do
    local v = opts[o[1]]
    if o.required and (v == nil or (kind_of(o) == "strings" and #v == 0)) then
      error(("--%s is required"):format(dashed(o[1])), 0)
    end
  end
  return opts, rest
end

--- Raises "<what> '<path>' does not exist" (or "is a folder") unless path is a file.
function cli.check_file(path, what)
  local kind = core.path_kind(path)
  if kind == "file" then return path end
  error(("%s '%s' %s"):format(what or "file", path, kind == "dir" and "is a folder, not a file"
    or kind and "is not a regular file" or "does not exist"), 0)
end

--- The message of an error without a "file.lua:12: " position prefix.
function cli.message(err)
  local s = tostring(err)
  return (s:gsub("^[^\n:]-%.lua:%d+: ", ""))
end

--- Runs a recipe: parses `args` with `spec`, then main(opts, rest). Errors become one
-- line on stderr and an exit status (never returns on error).
function cli.run(prog, spec, usage, main, args)
  local ok, opts, rest = pcall(cli.parse, args or arg or {}, spec, usage)
  if not ok then
    io.stderr:write(prog, ": ", cli.message(opts), "\n", usage, "\n")
    os.exit(2)
  end
  local trace = os.getenv("JBX_TRACEBACK") == "1"
  local ok2, err = xpcall(main, function(e)
    return trace and debug.traceback(tostring(e), 2) or e
  end, opts, rest)
  if not ok2 then
    local msg = trace and tostring(err) or cli.message(err)
    io.stderr:write(prog, ": ", msg, "\n")
    os.exit(msg:match("^interrupted") and 130 or 1)
  end
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
    parts[#parts + 1] = type(v) == "number" and ("%s %.4g"):format(f[1], v) or (f[1] .. " " .. tostring(v))
  end
  local frac = self.total > 0 and done / self.total or 0
  local eta = frac > 0 and elapsed * (1 - frac) / frac or math.huge
  if self.tty then
    local width = 24
    local filled = math.max(0, math.min(width, math.floor(frac * width + 0.5)))
    io.stderr:write(("\r%s[%s%s] %d/%d %s<%s %s\27[K"):format(self.label, ("#"):rep(filled),
      ("."):rep(width - filled), done, self.total, fmt_time(elapsed), fmt_time(eta),
      table.concat(parts, " ")))
    self.open = done < self.total
    if not self.open then io.stderr:write("\n") end
  elseif self.n % self.every == 0 or done >= self.total or done == 1 then
    io.stderr:write(("%s%d/%d %s elapsed, %s left  %s\n"):format(self.label, done, self.total,
      fmt_time(elapsed), fmt_time(eta), table.concat(parts, " ")))
  end
  io.stderr:flush()
end

--- Ends a progress line left open on a terminal.
function Progress:finish()
  if self.tty and not self.silent and self.open then io.stderr:write("\n") end
  self.open = false
end

return cli
