--- The VQ-VAE training loop behind recipes/train_vqvae.lua, as a function so tests
-- can run it in-process. Everything a run needs to continue exactly is checkpointed:
-- weights, codebooks (k, k_sum, k_elem), Adam moments, the step, the data and
-- restart generators, and the dataset statistics.
local core = require "jukebox.core"
local vqvae = require "jukebox.vqvae"
local optim = require "jukebox.optim"
local data = require "jukebox.data"
local losses = require "jukebox.losses"
local checkpoint = require "jukebox.checkpoint"
local cli = require "jukebox.cli"
local options = require "jukebox.options"

local train = {}

train.defaults = {
  data = "data", out = "runs/vqvae", preset = "small", steps = 1000, batch = 4,
  sample_length = 16384, lr = 3e-4, warmup = 100, clip = 100.0, ema = 0, seed = 0,
  ckpt_every = 100, log_every = 10, threads = 2, resume = false, keep = 3,
  bandwidth_batches = 16, quiet = false,
}

-- The data generator's state as a decimal string in the metadata (the checkpoint format
-- since its first version; the restart generators' states are already hex strings).
local function int_str(i) return ("%d"):format(i) end
local function str_int(s) return math.tointeger(tonumber(s)) end

-- Per-level terms of log.csv (empty cells for terms a model does not compute).
local PER_LEVEL = { "recons_loss", "commit_loss", "multispectral_loss", "usage", "used_curr",
                    "entropy", "dk", "fit", "pn", "spectral_loss", "mel_loss" }

--- The CSV columns: step, time, lr, loss, grad_norm, then per level its terms.
function train.columns(levels)
  local cols = { "step", "time", "lr", "loss", "grad_norm" }
  for l = 1, levels do
    for _, c in ipairs(PER_LEVEL) do cols[#cols + 1] = ("%s_l%d"):format(c, l) end
  end
  return cols
end

local function ckpt_path(out, step) return ("%s/step_%06d.safetensors"):format(out, step) end

local function save(run, path)
  local m, opt, loader = run.model, run.opt, run.loader
  local params, state = {}, opt:state_tensors()
  for _, p in ipairs(m:named_parameters()) do params[p.name] = p.tensor end
  for _, b in ipairs(m:named_buffers()) do state[b.name] = b.tensor end
  local vq = {}
  for l, b in ipairs(m.bottleneck) do vq[l] = { initialised = b.initialised, rng = b.rng:state() } end
  checkpoint.save(path, { params = params, state = state, meta = {
    format = "jukebox-c vqvae 1", hparams = m.hp, step = opt.step, elapsed = run.elapsed(),
    bandwidth = m.bandwidth, data_state = int_str(loader:get_state()), bottleneck = vq,
    train = run.public_opts,
  } })
end

--- Builds a model from a checkpoint's metadata and loads every tensor into it.
function train.load_model(path)
  local ck = checkpoint.load(path)
  local meta = ck.meta
  if not meta or not meta.hparams then
    error(("checkpoint %s: no VQ-VAE hyperparameters in its metadata"):format(path), 2)
  end
  local model = vqvae.new(meta.hparams)
  local named = {}
  for _, p in ipairs(model:named_parameters()) do named[p.name] = p.tensor end
  for _, b in ipairs(model:named_buffers()) do named[b.name] = b.tensor end
  checkpoint.copy_into(path, ck.tensors, named)
  model.bandwidth = meta.bandwidth or model.bandwidth
  for l, b in ipairs(model.bottleneck) do
    local s = meta.bottleneck and meta.bottleneck[l]
    if s then
      b.initialised = s.initialised
      b.rng:set_state(s.rng)
    end
  end
  return model, ck, meta
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

--- train.run(opts, hparams): opts as train.defaults; hparams overrides the preset.
-- Returns {step =, log = path, checkpoint = path, interrupted = bool, model = model}.
function train.run(opts, hparams)
  local o = options.merge("train", train.defaults, opts)
  core.set_threads(o.threads)
  core.mkdir_p(o.out)
  local say = o.quiet and function() end or function(...) io.stderr:write(string.format(...), "\n") end
  local run = { public_opts = { batch = o.batch, sample_length = o.sample_length, lr = o.lr, seed = o.seed } }

  local model, ck, meta
  local resume_from = o.resume and checkpoint.latest(o.out)
  if o.resume and not resume_from then say("no checkpoint in %s: starting a new run", o.out) end
  if resume_from then
    model, ck, meta = train.load_model(resume_from)
    say("resuming from %s (step %d)", resume_from, meta.step)
  else
    local hp = {}
    for k, v in pairs(hparams or {}) do hp[k] = v end
    hp.seed = hp.seed or o.seed
    model = vqvae.new(o.preset, hp)
  end
  local hp = model.hp
  local loader = data.loader({ dir = o.data, batch = o.batch, length = o.sample_length,
                               rate = hp.sr, seed = o.seed })
  if loader.skipped > 0 then say("skipping %d files shorter than one crop", loader.skipped) end
  local opt = optim.adam(model:named_parameters(), { lr = o.lr, warmup = o.warmup, clip = o.clip,
                                                     ema = o.ema > 0 and o.ema or nil })
  local elapsed0 = 0
  if resume_from then
    opt:load_state(ck.tensors, meta.step)
    loader:set_state(str_int(meta.data_state))
    elapsed0 = meta.elapsed or 0
  else
    -- Loss normalisers from crops of their own stream, so training data is unaffected.
    local stats_loader = data.loader({ files = loader.files, batch = o.batch,
                                       length = o.sample_length, rate = hp.sr, seed = o.seed + 1 })
    model.bandwidth = losses.bandwidth(function() return stats_loader:next() end, o.bandwidth_batches)
    say("bandwidth: l1 %.4g, l2 %.4g, spec %.4g", model.bandwidth.l1, model.bandwidth.l2, model.bandwidth.spec)
  end
  local t0 = core.clock()
  run.model, run.opt, run.loader = model, opt, loader
  run.elapsed = function() return elapsed0 + core.clock() - t0 end

  local log_path = o.out .. "/log.csv"
  local cols = train.columns(hp.levels)
  if not (resume_from and trim_log(log_path, opt.step)) then
    local f = assert(io.open(log_path, "w"))
    f:write(table.concat(cols, ","), "\n")
    f:close()
  end
  local log = assert(io.open(log_path, "a"))

  say("training %s preset: %d levels, hops %s, %d parameters, %d files, batch %d x %d samples (%.2f s)",
    hp.preset, hp.levels, table.concat(model.hop_lengths, "/"), model:num_parameters(), #loader.files,
    o.batch, o.sample_length, o.sample_length / hp.sr)
  local progress = cli.progress(o.steps, { every = o.log_every, label = "train ", silent = o.quiet })
  local audio_per_step = o.batch * o.sample_length / hp.sr
  -- Speed over a sliding window of recent steps, not since start-up (the first step
  -- pays for page faults and plan creation).
  local recent = {}
  local last_ckpt, interrupted = nil, false
  core.defer_interrupts(true)
  while opt.step < o.steps do
    local x = loader:next()
    local out = model:forward(x)
    out.loss:backward()
    local gn = opt:step_update()
    opt:zero_grad()
    local step = opt.step
    recent[#recent + 1] = core.clock()
    if #recent > 20 then table.remove(recent, 1) end
    local loss = out.loss:item()
    if step % o.log_every == 0 or step == o.steps then
      local row = { step, ("%.3f"):format(run.elapsed()), ("%.6g"):format(opt:lr()), ("%.6g"):format(loss),
                    ("%.6g"):format(gn) }
      for l = 1, hp.levels do
        local m = out.levels[l].metrics
        for _, c in ipairs(PER_LEVEL) do
          row[#row + 1] = m[c] and ("%.6g"):format(m[c]) or ""
        end
      end
      log:write(table.concat(row, ","), "\n")
      log:flush()
    end
    local sps = #recent > 1 and (#recent - 1) / (recent[#recent] - recent[1]) or 0
    progress:update(step, { { "loss", loss }, { "steps/s", sps }, { "audio-s/s", sps * audio_per_step },
      { "usage", out.levels[1].metrics.usage or 0 } })
    if step % o.ckpt_every == 0 or step == o.steps then
      last_ckpt = ckpt_path(o.out, step)
      save(run, last_ckpt)
      remove_old(o.out, o.keep, step)
    end
    -- Free this step's activations now: their buffers go back to the cache and the
    -- next step reuses them instead of faulting in fresh pages.
    out, x = nil, nil
    collectgarbage()
    if core.interrupted() then
      interrupted = true
      break
    end
  end
  if interrupted then
    last_ckpt = ckpt_path(o.out, opt.step)
    save(run, last_ckpt)
    say("\ninterrupted: saved %s; continue with --resume", last_ckpt)
  end
  core.defer_interrupts(false)
  log:close()
  progress:finish()
  return { step = opt.step, log = log_path, checkpoint = last_ckpt or checkpoint.latest(o.out),
           interrupted = interrupted, model = model }
end

return train
