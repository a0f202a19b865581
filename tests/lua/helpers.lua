-- Assertions for the Lua tests (tests/lua/test_*.lua). Each raises an error naming what
-- differed; the runner reports it as "FAIL file: name: message".
local H = {}

local function is_tensor(x) return type(x) == "userdata" and x.totable ~= nil end

local function shape_str(s) return "[" .. table.concat(s, ", ") .. "]" end

-- Flattens a number, nested table or tensor into a list of numbers (and its shape if known).
local function flatten(x)
  if type(x) == "number" then return {x}, {} end
  local shape
  if is_tensor(x) then
    shape = x:shape()
    x = x:totable()
    if type(x) == "number" then return {x}, shape end
  end
  local out = {}
  local function rec(t)
    for i = 1, #t do
      if type(t[i]) == "table" then rec(t[i]) else out[#out + 1] = t[i] end
    end
  end
  rec(x)
  return out, shape
end

-- a and b (numbers, nested tables or tensors) agree elementwise: |a - b| <= tol * (1 + |b|).
-- Tensors on both sides must have the same shape. tol defaults to 1e-5.
function H.assert_close(a, b, tol, msg)
  tol = tol or 1e-5
  local fa, sa = flatten(a)
  local fb, sb = flatten(b)
  local where = msg and (msg .. ": ") or ""
  if sa and sb and shape_str(sa) ~= shape_str(sb) then
    error(where .. "shapes differ: " .. shape_str(sa) .. " vs " .. shape_str(sb), 2)
  end
  if #fa ~= #fb then error(where .. ("sizes differ: %d vs %d elements"):format(#fa, #fb), 2) end
  for i = 1, #fa do
    local x, y = fa[i], fb[i]
    if not (math.abs(x - y) <= tol * (1 + math.abs(y))) and not (x ~= x and y ~= y) then
      error(where .. ("element %d: got %.9g, expected %.9g (tol %g)"):format(i, x, y, tol), 2)
    end
  end
end

function H.assert_eq(a, b, msg)
  if a ~= b then
    error((msg and (msg .. ": ") or "") .. ("got %s, expected %s"):format(tostring(a), tostring(b)), 2)
  end
end

-- fn() must raise an error whose message contains `pattern` (plain text). Returns the message.
function H.assert_error(fn, pattern, msg)
  local ok, err = pcall(fn)
  local where = msg and (msg .. ": ") or ""
  if ok then error(where .. "expected an error containing '" .. pattern .. "', got none", 2) end
  err = tostring(err)
  if not string.find(err, pattern, 1, true) then
    error(where .. "expected an error containing '" .. pattern .. "', got: " .. err, 2)
  end
  return err
end

function H.assert_shape(t, shape, msg)
  local got = shape_str(t:shape())
  if got ~= shape_str(shape) then
    error((msg and (msg .. ": ") or "") .. "shape " .. got .. ", expected " .. shape_str(shape), 2)
  end
end

function H.assert_true(v, msg)
  if not v then error(msg or "expected true", 2) end
end

-- The named arrays of a fixture file (format in tools/fixtures/fixture_io.py) as
-- {shape = {...}, data = {...}, dtype = "f32" | "i32"}.
function H.read_fixture(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  assert(s:sub(1, 8) == "JBXFIX1\n", path .. " is not a fixture file")
  local pos, out = 9, {}
  while pos <= #s do
    local nl = s:find("\n", pos, true)
    local words = {}
    for w in s:sub(pos, nl - 1):gmatch("%S+") do words[#words + 1] = w end
    local name, dtype, ndim = words[1], words[2], tonumber(words[3])
    local shape, n = {}, 1
    for d = 1, ndim do
      shape[d] = tonumber(words[3 + d])
      n = n * shape[d]
    end
    local fmt, data = dtype == "i32" and "<i4" or "<f", {}
    pos = nl + 1
    for i = 1, n do data[i], pos = string.unpack(fmt, s, pos) end
    out[name] = { shape = shape, data = data, dtype = dtype }
  end
  return out
end

-- The error message of f(...) must contain `part` (plain text).
function H.raises(part, f, ...)
  local args = table.pack(...)
  return H.assert_error(function() return f(table.unpack(args, 1, args.n)) end, part)
end

-- Largest |a - b| of two tensors.
--- Uniform random codes int32 [n, t] in [0, bins), seeded.
function H.random_codes(jbx, n, t, bins, seed)
  local r = jbx.rng(seed)
  local v = {}
  for i = 1, n * t do v[i] = r:below(bins) end
  return jbx.from_ints(v, { n, t })
end

function H.max_abs_diff(a, b)
  return (a - b):abs():max():item()
end

-- Module-level gradient check: L = sum(m(x) * r) for a fixed random r; every element of
-- every parameter (and of x when it requires grad) is moved by +-eps and the central
-- difference compared with what :backward() gave, |num - grad| <= atol + rtol |num|.
-- The defaults suit float32 (a forward sum carries ~1e-7 relative rounding, divided by 2 eps).
-- opts: eps (1e-3), atol (2e-3), rtol (1e-2), before (called before every forward,
-- e.g. to replay a dropout mask).
function H.check_module_grads(m, x, opts)
  opts = opts or {}
  local core = require "jukebox.core"
  local eps, atol, rtol = opts.eps or 1e-3, opts.atol or 2e-3, opts.rtol or 1e-2
  local before = opts.before or function() end
  before()
  local r = core.randn(m:forward(x):shape(), { seed = 7 })
  local function loss() before(); return (m:forward(x) * r):sum() end
  m:zero_grad()
  x.grad = nil
  loss():backward()
  local checks = {}
  for _, p in ipairs(m:named_parameters()) do checks[#checks + 1] = { name = p.name, t = p.tensor } end
  if x.requires_grad then checks[#checks + 1] = { name = "input", t = x } end
  local n = 0
  for _, c in ipairs(checks) do
    assert(c.t.grad, c.name .. ": no gradient after backward")
    local shape, vals, grads = c.t:shape(), flatten(c.t), flatten(c.t.grad)
    local function set(i, v)
      local moved = table.move(vals, 1, #vals, 1, {})
      moved[i] = v
      core.no_grad(function() c.t:copy_(core.tensor(moved):reshape(shape)) end)
    end
    for i = 1, #vals do
      set(i, vals[i] + eps)
      local up = core.no_grad(function() return loss():item() end)
      set(i, vals[i] - eps)
      local down = core.no_grad(function() return loss():item() end)
      set(i, vals[i])
      local num = (up - down) / (2 * eps)
      if not (math.abs(num - grads[i]) <= atol + rtol * math.abs(num)) then
        error(("%s element %d: backward gives %.6g, central difference %.6g"):format(c.name, i, grads[i], num), 2)
      end
      n = n + 1
    end
  end
  return n
end

-- The jbx these tests are testing: $JBX_EXE (ctest sets it to the jbx of the build that
-- runs the suite), else the jbx running them (arg[-1], made absolute), so a build
-- configured into any folder tests its own executable.
function H.jbx_exe()
  local env = os.getenv("JBX_EXE")
  if env and env ~= "" then return env end
  local a = rawget(_G, "arg")
  local exe = a and a[-1]
  if not (exe and exe:match("jbx$")) then error("tests: not run by jbx; set JBX_EXE to the jbx to test", 2) end
  if exe:sub(1, 1) ~= "/" and exe:find("/", 1, true) then
    local p = assert(io.popen("pwd -P"))
    exe = p:read("l") .. "/" .. exe
    p:close()
  end
  return exe
end

-- A word for sh: 'it''s' quoted.
function H.shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- A file's contents, or nil when it cannot be opened.
function H.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- Writes text to path; returns path.
function H.write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

-- Runs a shell command with stdin from the text `stdin` (or /dev/null); returns stdout,
-- stderr and the exit code.
function H.run(cmd, stdin)
  local errf, inf = os.tmpname(), stdin and H.write_file(os.tmpname(), stdin)
  local p = assert(io.popen(("%s 2>%s <%s"):format(cmd, errf, inf or "/dev/null")))
  local out = p:read("a")
  local _, _, code = p:close()
  local e = H.read_file(errf) or ""
  os.remove(errf)
  if inf then os.remove(inf) end
  return out, e, code
end

-- Runs `[env] jbx recipes/<name>.lua args... --threads=1` with the jbx under test;
-- returns stdout, stderr and the exit code.
function H.recipe(name, args, env)
  local parts = {}
  for i, a in ipairs(args) do parts[i] = H.shell_quote(a) end
  return H.run(("%s %s recipes/%s.lua %s --threads=1"):format(env or "", H.shell_quote(H.jbx_exe()), name,
    table.concat(parts, " ")))
end

-- "[2, 3]" for a tensor.
function H.shape_of(t)
  return shape_str(t:shape())
end

return H
