-- The Lua test runner, run by ctest from the source dir as `build/jbx tests/lua/run.lua`.
-- Every tests/lua/test_*.lua returns a table name -> function(jbx); each test runs in pcall
-- with a fresh seed and grad mode on. An optional argument is a Lua pattern matched against
-- "file: name" to pick tests. Ends with "N passed, N failed"; exit status 1 on any failure.
package.path = "tests/lua/?.lua;" .. package.path
local jbx = require "jukebox"

local filter = arg and arg[1]
local files = {}
local ls = assert(io.popen("ls tests/lua"))
-- *_mpi.lua files launch mpirun themselves and have a ctest entry of their own: they run
-- only when the filter names them.
for f in ls:lines() do
  if f:match("^test_.+%.lua$") and (not f:match("_mpi%.lua$") or (filter and f:find(filter))) then
    files[#files + 1] = f
  end
end
ls:close()
table.sort(files)

local passed, failed = 0, 0
local t0 = os.clock()
for _, file in ipairs(files) do
  local chunk, err = loadfile("tests/lua/" .. file)
  local ok, tests = false, err
  if chunk then ok, tests = pcall(chunk) end
  if not ok or type(tests) ~= "table" then
    if not filter or (file .. ": (load)"):find(filter) then
      print(("FAIL %s: (load): %s"):format(file, ok and "did not return a table of tests" or tostring(tests)))
      failed = failed + 1
    end
  else
    local names = {}
    for name in pairs(tests) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      local full = file .. ": " .. name
      if not filter or full:find(filter) then
        jbx.manual_seed(1234)
        jbx.set_grad_enabled(true)
        local tok, terr = pcall(tests[name], jbx)
        if tok then
          print("ok   " .. full)
          passed = passed + 1
        else
          print("FAIL " .. full .. ": " .. tostring(terr))
          failed = failed + 1
        end
        collectgarbage()
      end
    end
  end
end
print(("(%.2f s of CPU)"):format(os.clock() - t0))
print(("%d passed, %d failed"):format(passed, failed))
os.exit(failed == 0 and 0 or 1, true)
