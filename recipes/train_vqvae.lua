-- Trains a Jukebox VQ-VAE on a folder of audio.
--   build/jbx recipes/train_vqvae.lua --data=data --out=runs/small --preset=small --steps=300
-- Every hyperparameter of the model is an option too (--l_bins=512, --downs_t=3,2,2 ...).
-- Ctrl-C saves a checkpoint and exits; --resume continues from the newest checkpoint.
local jbx = require "jukebox"
local cli = require "jukebox.cli"
local train = require "jukebox.train"
local vqvae = require "jukebox.vqvae"

local d = train.options("vqvae")
local spec = {
  { "data", d.data, "folder of audio files (wav, flac, ...)" },
  { "out", d.out, "output folder: log.csv and step_*.safetensors" },
  { "preset", d.preset, "model preset: jukebox, jukebox_44k (44.1 kHz), small or tiny" },
  { "batch", d.batch, "crops per batch" },
  { "sample_length", d.sample_length, "samples per crop (a multiple of the top hop length)" },
  { "seed", d.seed, "seed of the data, initial weights and codebook restarts" },
  { "strict", false, "fail on any unreadable or too short file in --data instead of skipping it with a warning" },
}
for _, row in ipairs(train.recipe_options(d)) do spec[#spec + 1] = row end
-- Hyperparameters: default nil means "the preset's value".
local hp_names = {}
for k in pairs(vqvae.defaults) do
  if k ~= "seed" then hp_names[#hp_names + 1] = k end
end
table.sort(hp_names)
for _, k in ipairs(hp_names) do
  local v = vqvae.defaults[k]
  local kind = type(v) == "table" and "list" or type(v)
  spec[#spec + 1] = { k, nil, "model hyperparameter (preset default)", type = kind }
end
spec[#spec + 1] = { "dilation_cycle", nil, "model hyperparameter (none by default)", type = "number" }

local usage = "usage: jbx recipes/train_vqvae.lua --data=DIR --out=DIR [options]"
cli.run("train_vqvae", spec, usage, function(opts)
  local run_opts, hp = {}, {}
  for k in pairs(d) do
    if opts[k] ~= nil then run_opts[k] = opts[k] end
  end
  for _, k in ipairs(hp_names) do hp[k] = opts[k] end
  hp.dilation_cycle = opts.dilation_cycle
  local result = train.run(run_opts, hp)
  -- Under mpirun every rank trained the same model; rank 0 alone reports.
  if jbx.dist.rank() ~= 0 then os.exit(result.interrupted and 130 or 0) end
  print(("step %d; log: %s; checkpoint: %s"):format(result.step, result.log, tostring(result.checkpoint)))
  if result.interrupted then os.exit(130) end
end)
