-- Trains a prior over VQ-VAE codes (recipes/encode_codes.lua writes them): the top-level
-- prior, or an upsampler conditioned on the level above, with labels when the preset uses them.
--   build/jbx recipes/train_prior.lua --codes=runs/codes --level=3 --preset=tiny_prior --out=runs/prior --steps=300
-- Ctrl-C saves a checkpoint and exits; --resume continues from the newest checkpoint.
-- At the end it prints the held-out bits per token beside the codes' unigram entropy.
local jbx = require "jukebox"
local cli = require "jukebox.cli"
local train = require "jukebox.train"
local prior = require "jukebox.prior"
local task = require "jukebox.tasks.prior"

local d = train.options("prior")
local spec = {
  { "codes", d.codes, "codes folder (recipes/encode_codes.lua)" },
  { "level", d.level, "level to model (1 = finest; 0 = the top level)" },
  { "out", d.out, "output folder: log.csv and step_*.safetensors" },
  { "preset", d.preset, "prior preset: tiny_prior, tiny_upsampler, tiny_labelled_prior, small_prior, ..." },
  { "batch", d.batch, "windows per batch" },
  { "seed", d.seed, "seed of the windows and the initial weights" },
  { "eval", true, "print the held-out bits per token and the unigram entropy at the end" },
  { "eval_windows", 64, "at most this many held-out windows" },
}
for _, row in ipairs(train.recipe_options(d)) do spec[#spec + 1] = row end
-- Model hyperparameters: default nil means "the preset's value".
local HP = { n_ctx = "number", width = "number", depth = "number", heads = "number", blocks = "number",
             attn_order = "number", init_scale = "number", m_attn = "number", m_mlp = "number",
             merged_decoder = "boolean", cond_width = "number", cond_depth = "number",
             min_duration = "number", max_duration = "number", c_res = "number" }
local hp_names = {}
for k in pairs(HP) do hp_names[#hp_names + 1] = k end
table.sort(hp_names)
for _, k in ipairs(hp_names) do spec[#spec + 1] = { k, nil, "model hyperparameter (preset default)", type = HP[k] } end

local usage = "usage: jbx recipes/train_prior.lua --codes=DIR --level=N --out=DIR [--preset=tiny_prior] [options]"
cli.run("train_prior", spec, usage, function(opts)
  local run_opts, hp = { task = "prior" }, {}
  for k in pairs(d) do
    if opts[k] ~= nil and k ~= "task" then run_opts[k] = opts[k] end
  end
  for _, k in ipairs(hp_names) do hp[k] = opts[k] end
  prior.hparams(opts.preset, hp) -- a bad preset or value fails before any work
  local result = train.run(run_opts, hp)
  -- Under mpirun every rank trained the same model; rank 0 alone reports.
  if jbx.dist.rank() ~= 0 then os.exit(result.interrupted and 130 or 0) end
  print(("step %d; log: %s; checkpoint: %s"):format(result.step, result.log, tostring(result.checkpoint)))
  if result.interrupted then os.exit(130) end
  if opts.eval then
    local ev = task.evaluate({ codes = opts.codes, level = opts.level, quiet = true }, result.model,
      opts.eval_windows)
    if ev then
      print(("held-out: %.4f bits per token over %d windows of %d tokens; unigram entropy of the held-out codes: %.4f bits")
        :format(ev.bits, ev.windows, result.model.hp.n_ctx, ev.entropy))
    else
      print("held-out: no held-out file is long enough for one window")
    end
  end
end)
