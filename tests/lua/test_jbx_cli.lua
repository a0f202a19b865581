-- The jbx executable: -e, scripts and `arg`, error reports, --version, the prompt, Ctrl-C.
-- Runs the same jbx that runs these tests (arg[-1]), or build/jbx under another interpreter.
local H = require "helpers"
local eq, yes, err = H.assert_eq, H.assert_true, H.assert_error

local exe = (arg and arg[-1] and arg[-1]:match("jbx$")) and arg[-1] or "build/jbx"

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local write = H.write_file

-- Runs `jbx <args>` (args already quoted) and returns stdout, stderr, exit code.
local function jbx(args, stdin, env) return H.run((env or "") .. " " .. q(exe) .. " " .. args, stdin) end

local T = {}

function T.version(j)
  local out, _, code = jbx("--version")
  eq(code, 0)
  yes(out:match("^jbx 0%.1%.0 %(Lua 5%.4%.%d+%)\n$"), "version line: " .. out)
  local out2 = jbx("-v")
  eq(out2, out)
end

function T.help(j)
  local out, _, code = jbx("--help")
  eq(code, 0)
  yes(out:find("usage: jbx [options] [script [args]]", 1, true), out)
  yes(out:find("-e CODE", 1, true))
  local out2 = jbx("-h")
  eq(out2, out)
end

function T.e_chunks_run_in_order(j)
  local out, e, code = jbx("-e " .. q("print(1 + 1)"))
  eq(code, 0, e)
  eq(out, "2\n")
  out = jbx("-e " .. q("x = 2") .. " -e " .. q("print(x * 3)"))
  eq(out, "6\n")
  out = jbx(q("-eprint(7)"))
  eq(out, "7\n")
  out = jbx("-e " .. q('local j = require "jukebox"; print(j.ones(2, 3):sum():item())'))
  eq(out, "6.0\n")
end

function T.done_criterion_of_the_issue(j)
  local out, e, code = jbx("-e " .. q('local j=require"jukebox"; local a=j.randn({3,4},{seed=1,requires_grad=true}); ' ..
    'local l=(a*a):sum(); l:backward(); print(l:item(), a.grad:shape()[1])'))
  eq(code, 0, e)
  local sum, rows = out:match("^(%S+)\t(%d+)\n$")
  yes(tonumber(sum) and tonumber(sum) > 0, "a positive sum: " .. out)
  eq(rows, "3")
end

function T.script_sees_arg_like_stock_lua(j)
  local script = write(os.tmpname(), [[
print(arg[0], #arg, arg[1], arg[2], select("#", ...), ..., arg[-1] ~= nil)
]])
  local out, e, code = jbx(q(script) .. " one 'two words'")
  eq(code, 0, e)
  eq(out, script .. "\t2\tone\ttwo words\t2\tone\ttrue\n") -- `...` mid-list gives one value
  -- interpreter options take negative indices
  out = jbx("-e " .. q("y = 5") .. " " .. q(script) .. " a")
  eq(out, script .. "\t1\ta\tnil\t1\ta\ttrue\n")
  local s2 = write(os.tmpname(), "print(y, arg[-2], arg[-1])\n")
  out = jbx("-e " .. q("y = 5") .. " " .. q(s2))
  eq(out, "5\t-e\ty = 5\n")
  os.remove(script)
  os.remove(s2)
end

function T.errors_exit_1_with_location_and_traceback(j)
  local script = write(os.tmpname(), "local x = 1\nerror('boom')\n")
  local out, e, code = jbx(q(script))
  eq(code, 1)
  eq(out, "")
  yes(e:find("jbx: " .. script .. ":2: boom\n", 1, true), e)
  yes(e:find("stack traceback:", 1, true), e)
  os.remove(script)
  -- an error raised by a tensor op names the script line too
  local s2 = write(os.tmpname(), 'local j = require "jukebox"\nlocal t = j.ones(2)\nprint(t:item())\n')
  out, e, code = jbx(q(s2))
  eq(code, 1)
  yes(e:find("jbx: " .. s2 .. ":3: item: tensor of shape [2] has 2 elements, expected exactly one", 1, true), e)
  yes(e:find("in method 'item'", 1, true), e)
  os.remove(s2)
  _, e, code = jbx("-e " .. q("error('x')"))
  eq(code, 1)
  yes(e:find("jbx: (command line):1: x", 1, true), e)
  _, e, code = jbx("-e " .. q("error({})"))
  eq(code, 1)
  yes(e:find("jbx: (error object is a table value)", 1, true), e)
  _, e, code = jbx("-e " .. q("error(setmetatable({}, {__tostring = function() return 'custom' end}))"))
  eq(code, 1)
  yes(e:find("jbx: custom", 1, true), e)
end

function T.bad_command_lines(j)
  local _, e, code = jbx("/nonexistent/script.lua")
  eq(code, 1)
  yes(e:find("jbx: cannot open /nonexistent/script.lua", 1, true), e)
  _, e, code = jbx("--bogus")
  eq(code, 1)
  yes(e:find("jbx: unrecognized option '--bogus'", 1, true), e)
  yes(e:find("usage:", 1, true), e)
  _, e, code = jbx("-e")
  eq(code, 1)
  yes(e:find("jbx: '-e' needs an argument", 1, true), e)
  local bad = write(os.tmpname(), "x = = 1\n")
  _, e, code = jbx(q(bad))
  eq(code, 1)
  yes(e:find("jbx: " .. bad .. ":1:", 1, true), e)
  os.remove(bad)
end

function T.os_exit_code_passes_through(j)
  local _, _, code = jbx("-e " .. q("os.exit(3)"))
  eq(code, 3)
end

function T.stdin_script(j)
  local out = jbx("-", "print('from stdin', ...)\n")
  eq(out, "from stdin\n")
end

function T.prompt_prints_expressions_and_continues_lines(j)
  local out, e, code = jbx("", "1 + 1\nx = 3\nx * 2\nfor i = 1, 2 do\nprint(i)\nend\n=x\nreturn 4, 5\n")
  eq(code, 0, e)
  eq(out, "2\n6\n1\n2\n3\n4\t5\n")
  out, e, code = jbx("", "error('oops')\n1 + 2\nj = require 'jukebox'\nj.ones(2) + j.ones(3)\n")
  eq(code, 0)
  eq(out, "3\n")
  yes(e:find("jbx: stdin:1: oops", 1, true), e)
  yes(e:find("add:", 1, true), e)
  out = jbx("-i -e " .. q("z = 9"), "z\n")
  yes(out:find("^jbx 0%.1%.0"), out)
  yes(out:find("\n9\n", 1, true), out)
end

function T.jbx_lua_path_is_prepended(j)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. q(dir)))
  write(dir .. "/mymod_jbx_test.lua", "return {v = 42}\n")
  local out, e = jbx("-e " .. q('print(require("mymod_jbx_test").v, package.path:find("' .. dir .. '", 1, true) == 1)'), nil,
    "JBX_LUA_PATH=" .. q(dir .. "/?.lua"))
  eq(out, "42\ttrue\n", e)
  out = jbx("-e " .. q('print(package.path:find("/lua/?.lua;", 1, true) ~= nil, package.preload["jukebox.core"] ~= nil)'))
  eq(out, "true\ttrue\n")
  os.remove(dir .. "/mymod_jbx_test.lua")
  os.remove(dir)
end

function T.ctrl_c_raises_interrupted(j)
  if not os.execute("command -v timeout >/dev/null 2>&1") then return end
  local script = write(os.tmpname(), [[
io.stdout:setvbuf("no")
local ok, e = pcall(function() print("ready") while true do end end) -- "ready" inside: no race
print(ok, (tostring(e):gsub("^.*: ", "")))
]])
  local out = jbx("", nil, "timeout -s INT 5") -- warm-up: timeout is there and works on jbx
  out = select(1, jbx(q(script), nil, "timeout -s INT 3")) -- time to start even under ASan
  eq(out, "ready\nfalse\tinterrupted\n")
  os.remove(script)
end

return T
