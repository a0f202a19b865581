-- Run under mpirun by tests/lua/test_dist_mpi.lua: trains as the training recipes do
-- (jukebox.train.run with --key=value options and model hyperparameters) and then writes what this rank holds,
-- its model's tensors and metadata, to OUT/rank_<r>.safetensors, so the test can check
-- that every rank ends with the same model. Its process id goes to OUT/pid_<r> first,
-- for the test that kills one rank, and every step's loss to OUT/losses.txt at full
-- precision.
local jbx = require "jukebox"
local core = jbx.core
local train = require "jukebox.train"
local models = require "jukebox.models"

-- --key=value: the trainer's options (train.options), the rest model hyperparameters.
local given = {}
for _, a in ipairs(arg) do
  local k, v = a:match("^%-%-([%w_]+)=(.*)$")
  if not k then error("train_ranks: arguments are --key=value, got " .. a, 0) end
  given[k] = math.tointeger(tonumber(v)) or tonumber(v) or (v == "true" and true) or (v == "false" and false) or v
end
local known = train.options(given.task)
local opts, hparams = { quiet = true }, {}
for k, v in pairs(given) do
  if known[k] ~= nil then opts[k] = v else hparams[k] = v end
end
local rank = jbx.dist.rank()
core.mkdir_p(opts.out)
local stat = assert(io.open("/proc/self/stat")):read("l")
local f = assert(io.open(("%s/pid_%d"):format(opts.out, rank), "w"))
f:write(stat:match("^(%d+)"), "\n")
f:close()

-- Every step's loss at full precision (log.csv keeps 6 digits): this rank's, averaged
-- over the ranks at the end, written to OUT/losses.txt.
local task = train.task(opts.task or train.defaults.task)
local forward, losses = task.forward, {}
task.forward = function(model, batch)
  local out = forward(model, batch)
  losses[#losses + 1] = out.loss:item()
  return out
end
local result = train.run(opts, hparams)
local mean = jbx.dist.sum_numbers(losses)
if rank == 0 then
  local lf = assert(io.open(opts.out .. "/losses.txt", "w"))
  for _, l in ipairs(mean) do lf:write(("%.17g\n"):format(l / jbx.dist.size())) end
  lf:close()
end
local kind = models.kind(task.kind)
core.safetensors_save(("%s/rank_%d.safetensors"):format(opts.out, rank), kind.tensors(result.model),
  { jukebox = core.json_encode(kind.meta(result.model)) })
if result.interrupted then os.exit(130) end
