-- Samples music from a stack of priors (recipes/train_prior.lua) over a VQ-VAE: the top
-- level first, then each upsampler conditioned on the level above, every level decoded
-- to audio. Levels are the VQ-VAE's (1 = finest, hop 8; the top is the highest).
--   build/jbx recipes/sample.lua --vqvae=VQ.safetensors --prior=3:TOP.safetensors \
--       --prior=2:UP2.safetensors --prior=1:UP1.safetensors --seconds=4 --out=runs/sample
--   ... --mode=primed --prompt=data/music/x.flac --prompt-seconds=2
--   ... --mode=continue --codes=runs/sample/codes.safetensors --seconds=8
--   ... --mode=upsample --codes=runs/sample/level_3/codes.safetensors
-- Writes OUT/settings.json, then after each level OUT/level_L/: codes.safetensors (every
-- level's codes so far, int32 [n_samples, T]), sample_N.flac (that level decoded alone),
-- spectrograms.png and codes.png; at the end OUT/codes.safetensors. The codes are saved
-- after every window (OUT/progress.safetensors), so a run stopped by Ctrl-C or kill -9
-- continues with --resume and gives the codes the uninterrupted run gives (each window
-- draws from its own generator, seeded from --seed, the level and the window).
local cli = require "jukebox.cli"
local sample = require "jukebox.sample"

local spec = {
  { "vqvae", nil, "VQ-VAE checkpoint (train_vqvae.lua)", type = "string", required = true },
  { "prior", nil, "LEVEL:CKPT, a prior for a level (1 = finest; the top is the VQ-VAE's levels); CKPT alone "
    .. "takes the level the prior was trained on", type = "strings" },
  { "mode", "ancestral",
    "ancestral, primed (continue --prompt), continue (extend --codes), upsample (--codes' top level)" },
  { "seconds", 4.0, "seconds of audio to sample (rounded down to a multiple of the top hop)" },
  { "total_seconds", nil, "the song's intended length, for the timing labels (default: --seconds)", type = "number" },
  { "prompt", nil, "audio file whose start primes --mode=primed", type = "string" },
  { "prompt_seconds", 2.0, "seconds of --prompt kept (rounded down to a multiple of the top hop)" },
  { "codes", nil, "codes.safetensors of an earlier run, for --mode=continue and upsample", type = "string" },
  { "temp", "0.99", "temperature: one value or one per level, finest first (0.99,0.99,0.98)" },
  { "top_k", 0, "keep only the k most probable codes (0: off)" },
  { "top_p", 0.0, "keep the most probable codes up to this cumulative probability (0: off; not with --top-k)" },
  { "hop_fraction", nil, "window hop as a fraction of n_ctx per level, finest first (default 0.5,0.5,0.125)",
    type = "string" },
  { "n_samples", 1, "samples to draw" },
  { "batch", 1, "samples per sampler call" },
  { "seed", 0, "seed of every window's generator" },
  { "artist", "unknown", "artist for a labelled prior (an unknown name warns and uses id 0)" },
  { "genre", "unknown", "genre for a labelled prior (an unknown name warns and uses id 0)" },
  { "out", "runs/sample", "output folder" },
  { "resume", false, "continue the interrupted run in --out" },
  { "plots", true, "write spectrograms.png and codes.png per level (needs gnuplot)" },
  { "sampler", "auto", "auto (the KV-cache jukebox.sampler when built, else the reference), kv or ref "
    .. "(jukebox.sampler_ref, slow: a full forward per token)" },
  { "threads", 2, "threads for BLAS and OpenMP" },
}
local usage = "usage: jbx recipes/sample.lua --vqvae=CKPT --prior=LEVEL:CKPT [--prior=...] [--mode=ancestral] [options]"

local function numbers(name, s)
  local out = {}
  for item in tostring(s):gmatch("[^,]+") do
    local v = tonumber(item)
    if not v then error(("--%s: '%s' is not a number"):format(name, item), 0) end
    out[#out + 1] = v
  end
  if #out == 0 then error(("--%s is empty"):format(name), 0) end
  return out
end

cli.run("sample", spec, usage, function(opts)
  local models = require "jukebox.models"
  local samplers = { auto = false, kv = "jukebox.sampler", ref = "jukebox.sampler_ref" }
  if samplers[opts.sampler] == nil then
    error(("--sampler must be auto, kv or ref, got '%s'"):format(opts.sampler), 0)
  end
  local new_sampler = false
  if samplers[opts.sampler] then
    local ok, mod = pcall(require, samplers[opts.sampler])
    if not ok then
      error(("--sampler=%s: %s is not available (%s)"):format(opts.sampler, samplers[opts.sampler],
        tostring(mod):match("^[^\n]*")), 0)
    end
    new_sampler = mod.new
  end
  local priors = {}
  for _, p in ipairs(opts.prior) do
    local level, path = p:match("^(%d+):(.+)$")
    if not level then
      path = p
      cli.check_file(path, "prior")
      local m = models.load(path)
      if m.kind ~= "prior" then error(("prior '%s' is a %s checkpoint"):format(path, m.kind), 0) end
      level = m.data_info and m.data_info.level
      if not level then error(("prior '%s' does not say its level: write --prior=LEVEL:%s"):format(path, path), 0) end
    end
    level = math.tointeger(tonumber(level))
    if priors[level] then error(("--prior: two priors for level %d"):format(level), 0) end
    priors[level] = path
  end
  if opts.mode ~= "upsample" and next(priors) == nil then error("--prior=LEVEL:CKPT is required", 0) end
  local t0 = require("jukebox.core").clock()
  local r = sample.run({
    vqvae = opts.vqvae, priors = priors, mode = opts.mode, seconds = opts.seconds,
    total_seconds = opts.total_seconds or false, prompt = opts.prompt or false, prompt_seconds = opts.prompt_seconds,
    codes = opts.codes or false, temp = numbers("temp", opts.temp), top_k = opts.top_k, top_p = opts.top_p,
    hop_fraction = opts.hop_fraction and numbers("hop-fraction", opts.hop_fraction) or false,
    n_samples = opts.n_samples, batch = opts.batch, seed = opts.seed, artist = opts.artist, genre = opts.genre,
    out = opts.out, resume = opts.resume, plots = opts.plots, threads = opts.threads, sampler = new_sampler,
  })
  if require("jukebox.core").dist.rank() ~= 0 then return end -- under mpirun, rank 0 reports
  print(("done in %.1f s with %s: codes %s; the audio of level %d is %s/level_%d/sample_*.flac"):format(
    require("jukebox.core").clock() - t0, r.sampler, r.codes, r.lowest, opts.out, r.lowest))
end)
