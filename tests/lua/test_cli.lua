-- cli.lua: option parsing (types, lists, repeatable, booleans, required, unknown
-- options), help text, error messages, progress lines.
local H = require "helpers"
local eq, yes, err = H.assert_eq, H.assert_true, H.assert_error

local T = {}

local spec = {
  { "data", "data", "folder" },
  { "steps", 100, "steps" },
  { "lr", 3e-4, "learning rate" },
  { "plots", true, "write plots" },
  { "downs_t", { 3, 2, 2 }, "downsamplings per level" },
  { "ckpt", nil, "checkpoint", type = "strings" },
  { "margin", nil, "context", type = "number" },
  { "name", nil, "a name", type = "string" },
}

local function parse(args, s) return require("jukebox.cli").parse(args, s or spec, "usage: test") end

function T.defaults_and_types(jbx)
  local o, rest = parse({})
  eq(o.data, "data"); eq(o.steps, 100); eq(o.lr, 3e-4); eq(o.plots, true); eq(o.margin, nil)
  eq(#o.ckpt, 0); eq(#rest, 0); eq(#o.downs_t, 3)
  o = parse({ "--steps=250", "--lr=1e-3", "--data=x=y", "--margin=0.5", "--name=7" })
  eq(o.steps, 250); eq(math.type(o.steps), "integer", "integers stay integers")
  eq(o.lr, 1e-3); eq(o.data, "x=y", "the value is everything after the first ="); eq(o.margin, 0.5)
  eq(o.name, "7", "type string keeps text")
  o = parse({ "--downs-t=5,3", "--ckpt=a.safetensors", "--ckpt=b.safetensors", "pos1", "--", "--pos2" })
  eq(#o.downs_t, 2); eq(o.downs_t[1], 5); eq(o.downs_t[2], 3); eq(math.type(o.downs_t[1]), "integer")
  eq(#o.ckpt, 2); eq(o.ckpt[2], "b.safetensors")
  local _, r = parse({ "pos1", "--", "--pos2" })
  eq(#r, 2); eq(r[1], "pos1"); eq(r[2], "--pos2", "after -- everything is positional")
end

function T.booleans(jbx)
  eq(parse({ "--plots" }).plots, true)
  eq(parse({ "--plots=false" }).plots, false)
  eq(parse({ "--plots=0" }).plots, false)
  eq(parse({ "--plots=yes" }).plots, true)
  eq(parse({ "--no-plots" }).plots, false)
  err(function() parse({ "--plots=maybe" }) end, "option --plots: 'maybe' is not true/false")
end

function T.dashes_and_underscores(jbx)
  eq(parse({ "--downs_t=4" }).downs_t[1], 4)
  eq(parse({ "--downs-t=4" }).downs_t[1], 4)
end

function T.errors(jbx)
  err(function() parse({ "--stepz=3" }) end, "unknown option --stepz (did you mean --steps?)")
  err(function() parse({ "--zzzzzzzz=3" }) end, "unknown option --zzzzzzzz (see --help)")
  err(function() parse({ "--steps=ten" }) end, "option --steps: 'ten' is not a number")
  err(function() parse({ "--steps" }) end, "option --steps needs a value: --steps=...")
  err(function() parse({ "--downs-t=3,x" }) end, "option --downs-t: 'x' is not a number")
  err(function() parse({ "--downs-t=," }) end, "option --downs-t: empty list")
  err(function() parse({ "-steps=3" }) end, "bad option '-steps=3'")
  err(function() parse({ "--no-data" }) end, "unknown option --no-data")
  local req = { { "ckpt", nil, "checkpoints", type = "strings", required = true },
                { "input", nil, "input", type = "string", required = true } }
  err(function() parse({ "--input=x" }, req) end, "--ckpt is required")
  err(function() parse({ "--ckpt=x" }, req) end, "--input is required")
  local o = parse({ "--ckpt=x", "--input=y" }, req)
  eq(o.ckpt[1], "x"); eq(o.input, "y")
  -- Messages carry no Lua position: they are for the command line.
  local ok, e = pcall(parse, { "--stepz=1" })
  yes(not ok and not e:find("%.lua:%d+"), e)
end

function T.help_text(jbx)
  local cli = require "jukebox.cli"
  local h = cli.help(spec, "usage: jbx recipes/x.lua")
  yes(h:find("^usage: jbx recipes/x.lua\n"), h)
  yes(h:find("--steps=V", 1, true) and h:find("(default: 100)", 1, true), "number option with default")
  yes(h:find("--downs-t=V", 1, true) and h:find("(default: 3,2,2)", 1, true), "list default")
  yes(h:find("--plots ", 1, true), "a boolean takes no value")
  yes(h:find("(repeatable)", 1, true), "strings repeat")
  yes(h:find("--help", 1, true))
end

function T.message_and_check_file(jbx)
  local cli = require "jukebox.cli"
  eq(cli.message("lua/jukebox/x.lua:12: checkpoint 'a' does not exist"), "checkpoint 'a' does not exist")
  eq(cli.message("plain message"), "plain message")
  eq(cli.check_file("data/README.md", "readme"), "data/README.md")
  err(function() cli.check_file("/nonexistent.jbx", "checkpoint") end, "checkpoint '/nonexistent.jbx' does not exist")
  err(function() cli.check_file("data", "input") end, "input 'data' is a folder, not a file")
end

function T.progress_plain_lines(jbx)
  local cli = require "jukebox.cli"
  -- Silent progress counts updates and writes nothing.
  local p = cli.progress(10, { silent = true })
  for i = 1, 10 do p:update(i, { { "loss", 0.5 }, { "note", "x" } }) end
  eq(p.n, 10)
  p:finish()
end

return T
