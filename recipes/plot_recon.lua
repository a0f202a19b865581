-- Plots a checkpoint's reconstructions of one clip: the input's waveform with each
-- level's reconstruction overlaid over a short window, and log-magnitude spectrograms
-- of the input and each reconstruction side by side.
--   build/jbx recipes/plot_recon.lua --ckpt=FILE --input=AUDIO --out=DIR [--from=2 --window=0.05]
local jbx = require "jukebox"
local cli = require "jukebox.cli"
local codec = require "jukebox.codec"
local plot = require "jukebox.plot"
local models = require "jukebox.models"

local spec = {
  { "ckpt", nil, "checkpoint (.safetensors)", type = "string", required = true },
  { "input", nil, "audio clip", type = "string", required = true },
  { "out", "runs/plots", "output folder" },
  { "from", 2.0, "start of the waveform window (s)" },
  { "window", 0.05, "length of the waveform window (s)" },
  { "seconds", 6, "length of audio to reconstruct and show in spectrograms (s; more if --from needs it)" },
  { "threads", 2, "threads for BLAS and OpenMP" },
}
local usage = "usage: jbx recipes/plot_recon.lua --ckpt=FILE --input=AUDIO --out=DIR [options]"

cli.run("plot_recon", spec, usage, function(opts)
  if opts.seconds <= 0 then error("--seconds must be positive", 0) end
  if opts.window <= 0 then error("--window must be positive", 0) end
  cli.check_file(opts.ckpt, "checkpoint")
  cli.check_file(opts.input, "input")
  jbx.core.set_threads(opts.threads)
  local info = jbx.audio.info(opts.input) -- a clear error for an unreadable file
  plot.terminal()
  local model = models.load(opts.ckpt)
  model:eval()
  local rate = model.hp.sr
  -- Enough audio for the waveform window too (--from may lie past --seconds).
  local want = math.min(math.max(opts.seconds, opts.from + opts.window), info.seconds)
  local x = jbx.audio.load(opts.input, { rate = rate, mono = true, seconds = want }):reshape({ -1 })
  local n = x:numel()
  local dur = n / rate
  local clip = opts.input:match("[^/]*$")
  local series, items = { { name = "input", audio = x } }, { { name = "input", audio = x } }
  for l, y in ipairs(codec.reconstruct(model, x)) do
    series[#series + 1] = { name = ("level %d (hop %d)"):format(l, model.hop_lengths[l]), audio = y }
    items[#items + 1] = { name = ("level %d reconstruction (hop %d)"):format(l, model.hop_lengths[l]), audio = y }
  end
  jbx.core.mkdir_p(opts.out)
  local from = math.max(0, math.min(opts.from, dur - opts.window))
  print("plot: " .. plot.waveforms(opts.out .. "/waveforms.png", { series = series, rate = rate,
    from = from, to = from + opts.window, title = "Input and reconstructions: " .. clip }))
  print("plot: " .. plot.spectrograms(opts.out .. "/spectrograms.png", { items = items, rate = rate,
    title = ("Log-magnitude spectrograms: %s (first %.3g s)"):format(clip, dur) }))
end)
