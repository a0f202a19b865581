-- The demo (make demo): looks at a clip, trains the small VQ-VAE preset on data/ for
-- about five minutes, reconstructs a clip at every level, and evaluates the checkpoint.
-- Everything lands under runs/quickstart/.
--   build/jbx recipes/quickstart.lua [--steps=N] [--data=DIR] [--out=DIR]
local jbx = require "jukebox"
local cli = require "jukebox.cli"
local codec = require "jukebox.codec"
local data = require "jukebox.data"
local evaluate = require "jukebox.evaluate"
local plot = require "jukebox.plot"
local train = require "jukebox.train"
local models = require "jukebox.models"

local spec = {
  { "data", "data/music", "folder of audio clips" },
  { "out", "runs/quickstart", "output folder" },
  { "steps", 1500, "training steps (about five minutes on 2 cores)" },
  { "threads", 2, "threads for BLAS and OpenMP" },
  { "resume", false, "continue an interrupted demo run" },
}
cli.run("quickstart", spec, "usage: jbx recipes/quickstart.lua [options]", function(opts)
  local out = opts.out
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
  local r = evaluate.run({ result.checkpoint }, opts.data, out, {})
  print(r.table)
  print(("\ndone in %.1f min. Everything is under %s/:"):format((jbx.core.clock() - t_start) / 60, out))
  for _, name in ipairs(jbx.core.list_dir(out)) do print("  " .. out .. "/" .. name) end
end)
