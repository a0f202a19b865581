-- The demo (make demo): looks at a clip, trains the small VQ-VAE preset on data/ for
-- about five minutes, reconstructs a clip at every level, and evaluates the checkpoint;
-- then encodes the clips to codes, trains a tiny top prior and two tiny upsamplers
-- briefly, and samples 4 s ancestrally and 4 s primed with the clip's first 2 s.
-- Everything lands under runs/quickstart/. --quick is a ~2 minute smoke version, under
-- runs/quickstart-quick/ (its VQ-VAE is another one: its codes must not meet the full run's).
--   build/jbx recipes/quickstart.lua [--steps=N] [--data=DIR] [--out=DIR] [--quick]
local jbx = require "jukebox"
local cli = require "jukebox.cli"
local codec = require "jukebox.codec"
local data = require "jukebox.data"
local evaluate = require "jukebox.evaluate"
local plot = require "jukebox.plot"
local train = require "jukebox.train"
local models = require "jukebox.models"
local sample = require "jukebox.sample"

local spec = {
  { "data", "data/music", "folder of audio clips" },
  { "out", "runs/quickstart", "output folder" },
  { "steps", 1500, "training steps (about five minutes on 2 cores)" },
  { "threads", 2, "threads for BLAS and OpenMP" },
  { "prior_steps", 600, "training steps per prior (top and two upsamplers)" },
  { "sample_seconds", 4.0, "seconds of audio per sample" },
  { "resume", false, "continue an interrupted demo run" },
  { "quick", false, "smoke version (~2 min): 200 VQ-VAE steps, 200 per prior, smaller priors, no evaluation" },
}
-- The demo's priors: tiny_prior / tiny_upsampler made smaller (n_ctx 256, 128 quick);
-- 600 steps of each took 21-30 s here.
local function prior_hp(quick)
  return { n_ctx = quick and 128 or 256, width = quick and 64 or 128, depth = 4, heads = quick and 1 or 2,
           blocks = 8, cond_width = quick and 32 or 64, cond_depth = quick and 2 or 3 }
end
cli.run("quickstart", spec, "usage: jbx recipes/quickstart.lua [options]", function(opts)
  local out = opts.out
  if opts.quick and out == "runs/quickstart" then out = "runs/quickstart-quick" end
  if opts.quick then
    opts.steps = math.min(opts.steps, 200)
    opts.prior_steps = math.min(opts.prior_steps, 200)
  end
  jbx.core.mkdir_p(out)
  local t_start = jbx.core.clock()

  -- 1. A first look at one clip.
  local files = data.scan(opts.data, { quiet = true }) -- the training run warns about broken files
  local clip = files[1].path
  local x, rate = jbx.audio.load(clip, { mono = true })
  local rms = math.sqrt((x * x):mean():item())
  print(("clip %s: %.2f s at %d Hz, %d channel(s), RMS %.4f (%.1f dBFS)"):format(clip, files[1].seconds,
    rate, jbx.audio.info(clip).channels, rms, 20 * math.log(rms, 10)))
  jbx.audio.save(out .. "/clip.flac", x, rate)
  plot.waveforms(out .. "/clip_waveform.png", { series = { { name = "clip", audio = x } }, rate = rate,
    from = 0, to = files[1].seconds, title = "Waveform: " .. clip:match("[^/]*$") })
  print(("wrote %s/clip.flac and %s/clip_waveform.png"):format(out, out))

  -- 2. Train the small preset.
  local train_dir = out .. "/train"
  local result = train.run({ data = opts.data, out = train_dir, preset = "small", steps = opts.steps,
    batch = 4, sample_length = 8192, ckpt_every = 250, log_every = 10, threads = opts.threads,
    resume = opts.resume })
  if result.interrupted then os.exit(130) end
  print(("trained %d steps: checkpoint %s, log %s"):format(result.step, result.checkpoint, result.log))

  -- 3. Reconstruct the clip at every level.
  local model = models.load(result.checkpoint)
  model:eval()
  local xr = jbx.audio.load(clip, { rate = model.hp.sr, mono = true }):reshape({ -1 })
  local recons, codes = codec.reconstruct(model, xr)
  local series = { { name = "input", audio = xr } }
  for l, y in ipairs(recons) do
    local path = ("%s/recon_l%d.flac"):format(out, l)
    jbx.audio.save(path, y:clamp(-1, 1), model.hp.sr)
    series[#series + 1] = { name = ("level %d (hop %d)"):format(l, model.hop_lengths[l]), audio = y }
    print(("level %d: %d codes -> %s"):format(l, codes[l]:numel(), path))
  end
  plot.waveforms(out .. "/recon_waveforms.png", { series = series, rate = model.hp.sr, from = 2, to = 2.05,
    title = "Input and reconstructions: " .. clip:match("[^/]*$") })

  -- 4. Evaluate the checkpoint over the whole folder.
  if not opts.quick then
    local r = evaluate.run({ result.checkpoint }, opts.data, out, {})
    print(r.table)
  end

  -- 5. Encode every clip to codes, the priors' data.
  local sh = cli.shell_quote
  local codes_dir = out .. "/codes"
  -- The folder is the demo's own: codes of an earlier run's VQ-VAE (another build or
  -- machine trains other weights) would be refused by encode_codes, so they go first.
  if jbx.core.path_kind(codes_dir) == "dir" then
    for _, name in ipairs(jbx.core.list_dir(codes_dir)) do os.remove(codes_dir .. "/" .. name) end
  end
  local t_enc = jbx.core.clock()
  local cmd = ("%s recipes/encode_codes.lua --vqvae=%s --data=%s --out=%s --threads=%d >/dev/null"):format(
    sh(arg[-1] or "jbx"), sh(result.checkpoint), sh(opts.data), sh(codes_dir), opts.threads)
  if not os.execute(cmd) then error("encode_codes failed: " .. cmd, 0) end
  print(("encoded %s to codes in %.1f s: %s/"):format(opts.data, jbx.core.clock() - t_enc, codes_dir))

  -- 6. A tiny top prior (level 3) and upsamplers (levels 2 and 1), briefly.
  local ckpts = {}
  for _, lv in ipairs({ { 3, "tiny_prior" }, { 2, "tiny_upsampler" }, { 1, "tiny_upsampler" } }) do
    local t_pr = jbx.core.clock()
    local r = train.run({ task = "prior", codes = codes_dir, level = lv[1], preset = lv[2],
      out = ("%s/prior_l%d"):format(out, lv[1]), steps = opts.prior_steps, batch = 4, lr = 1e-3, warmup = 50,
      threads = opts.threads, log_every = 25, ckpt_every = opts.prior_steps, keep = 1, resume = opts.resume,
      quiet = true }, prior_hp(opts.quick))
    if r.interrupted then os.exit(130) end
    ckpts[lv[1]] = r.checkpoint
    print(("trained the level %d prior (%s) for %d steps in %.1f s: %s"):format(lv[1], lv[2], r.step,
      jbx.core.clock() - t_pr, r.checkpoint))
  end

  -- 7. Sample: ancestrally, then primed with the clip's first 2 seconds.
  for _, mode in ipairs({ "ancestral", "primed" }) do
    local dir = ("%s/sample_%s"):format(out, mode)
    if not opts.resume then os.execute("rm -rf " .. sh(dir)) end
    local t_s = jbx.core.clock()
    local s = sample.run({ vqvae = result.checkpoint, priors = ckpts, mode = mode, seconds = opts.sample_seconds,
      prompt = mode == "primed" and clip or false, prompt_seconds = 2.0, out = dir, resume = opts.resume,
      threads = opts.threads, quiet = true })
    local secs = {}
    for _, l in ipairs(s.settings.levels) do
      secs[#secs + 1] = ("level %d %d tokens %.0f tokens/s"):format(l, s.tokens[l],
        s.tokens[l] / math.max(s.seconds[l], 1e-9))
    end
    print(("sampled %.1f s %s in %.1f s with %s (%s):"):format(s.settings.seconds, mode, jbx.core.clock() - t_s,
      s.sampler, table.concat(secs, ", ")))
    print(("  audio: %s/level_1/sample_0.flac (each level decoded alone: %s/level_L/sample_0.flac)"):format(dir, dir))
    print(("  plots: %s/level_L/spectrograms.png and codes.png; codes: %s/codes.safetensors"):format(dir, dir))
    if mode == "primed" then print(("  prompt: %s/prompt.flac"):format(dir)) end
  end

  print(("\ndone in %.1f min. Everything is under %s/:"):format((jbx.core.clock() - t_start) / 60, out))
  for _, name in ipairs(jbx.core.list_dir(out)) do print("  " .. out .. "/" .. name) end
end)
