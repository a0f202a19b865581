--- The training loop behind recipes/train_vqvae.lua, generic over model kinds, as a
-- function so tests can run it in-process: Adam with warm-up and clipping, log.csv,
-- checkpoints every ckpt_every steps (the last `keep` kept), exact resumption, Ctrl-C
-- with a checkpoint, and a progress line. Everything a run needs to continue exactly is
-- checkpointed: the model's tensors and state (its kind's meta), Adam's moments, the
-- step and the data generator's state.
--
-- What is trained comes from a task, lua/jukebox/tasks/<opts.task>.lua (the VQ-VAE's
-- is tasks/vqvae.lua), a table with:
--   kind                           the model kind (jukebox.models) its checkpoints are
--   defaults                       its options, beside train.defaults
--   recorded                       names of its options kept in the checkpoint (`train`)
--   new_model(o, hparams)          a fresh model
--   data(o, model)                 batches: :next(), :get_state(), :set_state(s)
--   prepare(o, model, data, say)   once before a new run's first step (not on resume)
--   describe(o, model, data)       the start-up line
--   forward(model, batch)          {loss = scalar tensor, ...}
--   columns(model)                 its log.csv columns after step,time,lr,loss,grad_norm
--   log_cells(model, out)          those cells (strings) for one step's output
--   progress_fields(o, model, out, steps_per_second)  {{name, value}, ...} after loss, steps/s
--   mean_over_ranks(model, out, mean)  (optional) under data parallelism, before a
--                                  row is logged: replaces the terms of `out` that are
--                                  means over this process's examples with their mean
--                                  over the processes (mean(list) -> list, collective)
--
-- Data parallelism: run under mpirun (or srun) with N processes, each trains on its
-- own `batch` examples of a global batch of batch x N (the task's data draws the same
-- global sequence everywhere and keeps its part), Adam averages the gradients with one
-- all-reduce per step (optim.lua), and every process holds the same weights. Rank 0
-- alone logs, writes checkpoints and shows progress; --out must be a folder every rank
-- can read (a shared file system) for --resume. Ctrl-C on any rank stops every rank
-- after the same step, with one checkpoint.
local core = require "jukebox.core"
local optim = require "jukebox.optim"
local models = require "jukebox.models"
local checkpoint = require "jukebox.checkpoint"
local cli = require "jukebox.cli"
local options = require "jukebox.options"

local dist = core.dist
local train = {}

--- The trainer's options; a task adds its own (train.options(task)).
train.defaults = {
  task = "vqvae", out = "runs/vqvae", steps = 1000, lr = 3e-4, warmup = 100, clip = 100.0, ema = 0, seed = 0,
  ckpt_every = 100, log_every = 10, threads = 2, resume = false, keep = 3, quiet = false,
}

--- The task module called `name` (lua/jukebox/tasks/<name>.lua).
function train.task(name)
  local module = "jukebox.tasks." .. tostring(name)
  if not package.searchpath(module, package.path) then
    error(("train: unknown task '%s' (no lua/jukebox/tasks/%s.lua)"):format(tostring(name), tostring(name)), 3)
  end
  return require(module)
end

--- Every option of a run of task `name` (default vqvae) with its default.
function train.options(name)
  local all = {}
  for k, v in pairs(train.defaults) do all[k] = v end
  for k, v in pairs(train.task(name or train.defaults.task).defaults) do all[k] = v end
  if name then all.task = name end
  return all
end

--- The trainer's own command-line options (cli.run spec rows), with the defaults d of
-- train.options(task): every training recipe appends them to its task's options.
function train.recipe_options(d)
  return {
    { "steps", d.steps, "train until this many steps in total" },
    { "lr", d.lr, "Adam learning rate (after warm-up)" },
    { "warmup", d.warmup, "linear warm-up steps" },
    { "clip", d.clip, "clip the gradient norm to this" },
    { "ema", d.ema, "decay of an EMA of the weights (0: off)" },
    { "ckpt_every", d.ckpt_every, "steps between checkpoints" },
    { "log_every", d.log_every, "steps between rows of log.csv" },
    { "threads", d.threads, "threads for BLAS and OpenMP" },
    { "keep", d.keep, "checkpoints to keep" },
    { "resume", false, "continue from the newest checkpoint in --out" },
  }
end

--- The log.csv columns: step, time, lr, loss, grad_norm, then the task's.
function train.columns(task_columns)
  local cols = { "step", "time", "lr", "loss", "grad_norm" }
  for _, c in ipairs(task_columns or {}) do cols[#cols + 1] = c end
  return cols
end

local function ckpt_path(out, step) return ("%s/step_%06d.safetensors"):format(out, step) end

-- The model's parameters as params; its other tensors (buffers such as codebooks) and
-- Adam's moments as state; the kind's meta plus the run's.
local function save(run, path)
  local m, kind = run.model, models.kind(run.task.kind)
  local params, state = {}, run.opt:state_tensors()
  for _, p in ipairs(m:named_parameters()) do params[p.name] = p.tensor end
  for name, t in pairs(kind.tensors(m)) do
    if not params[name] then state[name] = t end
  end
  local meta = kind.meta(m)
  meta.step, meta.elapsed, meta.data_state, meta.train = run.opt.step, run.elapsed(), run.data:get_state(), run.recorded
  checkpoint.save(path, { params = params, state = state, meta = meta })
end

-- The data generator's state is the core rng's (64 hex digits); checkpoints written
-- before it was (a decimal integer) cannot continue the same crops.
local function restore_data(path, data, s)
  if type(s) ~= "string" or not s:match("^" .. ("%x"):rep(64) .. "$") then
    error(("checkpoint %s: its data generator state '%s' is from an older jukebox-c and cannot be resumed "
      .. "exactly; start a new run (another --out)"):format(path, tostring(s)), 0)
  end
  data:set_state(s)
end

local function remove_old(out, keep, now)
  local steps = {}
  for _, name in ipairs(core.list_dir(out)) do
    local s = name:match("^step_(%d+)%.safetensors$")
    if s then steps[#steps + 1] = tonumber(s) end
  end
  table.sort(steps)
  for i = 1, #steps - keep do
    if steps[i] ~= now then os.remove(ckpt_path(out, steps[i])) end
  end
end

-- Rewrites log.csv keeping rows up to `step`: a resumed run then logs exactly the rows
-- the uninterrupted run would have.
local function trim_log(path, step)
  local f = io.open(path, "r")
  if not f then return false end
  local keep = {}
  for line in f:lines() do
    local s = tonumber(line:match("^(%d+),"))
    if #keep == 0 or (s and s <= step) then keep[#keep + 1] = line end
  end
  f:close()
  f = assert(io.open(path, "w"))
  f:write(table.concat(keep, "\n"), "\n")
  f:close()
  return true
end

-- log.csv opened for appending: its header on a new run, its rows up to `step` on a resumed one.
local function open_log(path, cols, resumed, step)
  if not (resumed and trim_log(path, step)) then
    local f = assert(io.open(path, "w"))
    f:write(table.concat(cols, ","), "\n")
    f:close()
  end
  return assert(io.open(path, "a"))
end

-- Steps per second over a sliding window of recent steps, not since start-up (the
-- first step pays for page faults and plan creation).
local function speedometer()
  local recent = {}
  return function()
    recent[#recent + 1] = core.clock()
    if #recent > 20 then table.remove(recent, 1) end
    return #recent > 1 and (#recent - 1) / (recent[#recent] - recent[1]) or 0
  end
end

-- The run's model, optimiser and batches: resumed from the newest checkpoint in o.out
-- (exactly: weights, model state, Adam, data generator, elapsed time), or new.
local function start(o, task, hparams, say)
  local run = { task = task, recorded = { lr = o.lr, seed = o.seed } }
  for _, k in ipairs(task.recorded) do run.recorded[k] = o[k] end
  local ck, meta
  local resume_from = o.resume and checkpoint.latest(o.out)
  if o.resume and not resume_from then say("no checkpoint in %s: starting a new run", o.out) end
  if resume_from then
    run.model, ck, meta = models.load(resume_from)
    if run.model.kind ~= task.kind then
      error(("train: %s holds a %s model, task %s trains a %s"):format(resume_from, run.model.kind, o.task,
        task.kind), 3)
    end
    say("resuming from %s (step %d)", resume_from, meta.step)
  else
    run.model = task.new_model(o, hparams)
  end
  run.data = task.data(o, run.model)
  run.opt = optim.adam(run.model:named_parameters(), { lr = o.lr, warmup = o.warmup, clip = o.clip,
                                                       ema = o.ema > 0 and o.ema or nil })
  local elapsed0 = 0
  if resume_from then
    run.opt:load_state(ck.tensors, meta.step)
    restore_data(resume_from, run.data, meta.data_state)
    elapsed0 = meta.elapsed or 0
  else
    task.prepare(o, run.model, run.data, say)
  end
  if dist.size() > 1 then
    -- Every rank must continue from the same checkpoint (the same step).
    local step = resume_from and meta.step or 0
    local sum = dist.sum_numbers({ step })[1]
    if sum ~= step * dist.size() then
      error(("train: rank %d starts at step %d but the ranks' steps sum to %d: --out '%s' must be one folder "
        .. "that every rank sees (a shared file system)"):format(dist.rank(), step, math.tointeger(sum) or sum, o.out), 0)
    end
  end
  local t0 = core.clock()
  run.elapsed = function() return elapsed0 + core.clock() - t0 end
  run.resumed = resume_from and true or false
  return run
end

-- One row of log.csv: step, time, lr, loss, grad_norm, then the task's cells.
local function log_row(log, run, loss, grad_norm, out)
  local row = { run.opt.step, ("%.3f"):format(run.elapsed()), ("%.6g"):format(run.opt:lr()), ("%.6g"):format(loss),
                ("%.6g"):format(grad_norm) }
  for _, cell in ipairs(run.task.log_cells(run.model, out)) do row[#row + 1] = cell end
  log:write(table.concat(row, ","), "\n")
  log:flush()
end

--- train.run(opts, hparams): opts as train.options(opts.task); hparams go to the task's
-- new model (for the VQ-VAE: overrides of the preset).
-- Returns {step =, log = path, checkpoint = path, interrupted = bool, model = model}.
function train.run(opts, hparams)
  local task_name = type(opts) == "table" and opts.task or train.defaults.task
  local o = options.merge("train", train.options(task_name), opts)
  local task = train.task(o.task)
  -- A jbx built without MPI, started by mpirun, would train N copies into one folder.
  local launched = tonumber(os.getenv("OMPI_COMM_WORLD_SIZE") or "")
  if not dist.mpi and launched and launched > 1 then
    error(("train: mpirun started %d processes but this jbx was built without MPI (install libopenmpi-dev and "
      .. "rebuild); each would train alone"):format(launched), 0)
  end
  core.set_threads(o.threads)
  core.mkdir_p(o.out)
  local ranks, root = dist.size(), dist.rank() == 0
  local quiet = o.quiet or not root
  local say = quiet and function() end or function(...) io.stderr:write(string.format(...), "\n") end
  local run = start(o, task, hparams, say)
  local model, opt = run.model, run.opt

  local log_path = o.out .. "/log.csv"
  local log = root and open_log(log_path, train.columns(task.columns(model)), run.resumed, opt.step)
  say("%s", task.describe(o, model, run.data))
  if ranks > 1 then say("data parallel: %d processes x batch %d = global batch %d", ranks, o.batch, ranks * o.batch) end
  local progress = cli.progress(o.steps, { every = o.log_every, label = "train ", silent = quiet })
  local function mean(list)
    local sums = dist.sum_numbers(list)
    for i = 1, #sums do sums[i] = sums[i] / ranks end
    return sums
  end
  local speed = speedometer()
  local last_ckpt, interrupted = nil, false
  core.defer_interrupts(true)
  while opt.step < o.steps do
    local x = run.data:next()
    local out = task.forward(model, x)
    out.loss:backward()
    local gn = opt:step_update()
    opt:zero_grad()
    local step, sps, loss = opt.step, speed(), out.loss:item()
    -- Ctrl-C on any rank stops all after this step: the flag travels with the loss.
    local stop = core.interrupted()
    if ranks > 1 then
      local m = mean({ loss, stop and 1 or 0 })
      loss, stop = m[1], m[2] > 0
    end
    local log_now = step % o.log_every == 0 or step == o.steps
    if log_now and ranks > 1 and task.mean_over_ranks then task.mean_over_ranks(model, out, mean) end
    if log_now and root then log_row(log, run, loss, gn, out) end
    local fields = { { "loss", loss }, { "steps/s", sps } }
    for _, f in ipairs(task.progress_fields(o, model, out, sps)) do fields[#fields + 1] = f end
    progress:update(step, fields)
    if step % o.ckpt_every == 0 or step == o.steps then
      last_ckpt = ckpt_path(o.out, step)
      if root then
        save(run, last_ckpt)
        remove_old(o.out, o.keep, step)
      end
    end
    -- Free this step's activations now: their buffers go back to the cache and the
    -- next step reuses them instead of faulting in fresh pages.
    out, x = nil, nil
    collectgarbage()
    -- One process also takes a Ctrl-C that came during this step's checkpoint or GC;
    -- ranks take it at the next step's agreement.
    if stop or (ranks == 1 and core.interrupted()) then
      interrupted = true
      break
    end
  end
  if interrupted then
    last_ckpt = ckpt_path(o.out, opt.step)
    if root then save(run, last_ckpt) end
    say("\ninterrupted: saved %s; continue with --resume", last_ckpt)
  end
  -- The other ranks wait for rank 0's last checkpoint: a rank that exits first with a
  -- non-zero status (Ctrl-C) would make mpirun end rank 0 while it writes.
  dist.barrier()
  core.defer_interrupts(false)
  if log then log:close() end
  progress:finish()
  return { step = opt.step, log = log_path, checkpoint = last_ckpt or checkpoint.latest(o.out),
           interrupted = interrupted, model = model }
end

return train
