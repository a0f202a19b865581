-- Plots a checkpoint's reconstructions of one clip: the input's waveform with each
-- level's reconstruction overlaid over a window, and log-magnitude spectrograms of the
-- input and each reconstruction side by side.
--   build/jbx recipes/plot_recon.lua --ckpt=FILE --input=AUDIO --out=DIR [--from=2 --window=0.05]
local jbx = require "jukebox"
local cli = require "jukebox.cli"
local codec = require "jukebox.codec"
local plot = require "jukebox.plot"
local train = require "jukebox.train"

local spec = {
  { "ckpt", nil, "checkpoint (.safetensors)", type = "string" },
  { "input", nil, "audio clip", type = "string" },
  { "out", "runs/plots", "output folder" },
  { "from", 2.0, "start of the waveform window (s)" },
  { "window", 0.05, "length of the waveform window (s)" },
  { "seconds", 6, "length of audio to reconstruct and show in spectrograms (s)" },
  { "threads", 2, "threads for BLAS and OpenMP" },
}
local usage = "usage: jbx recipes/plot_recon.lua --ckpt=FILE --input=AUDIO --out=DIR"
local ok, opts = pcall(cli.parse, arg, spec, usage)
if ok and (not opts.ckpt or not opts.input) then ok, opts = false, "--ckpt and --input are required" end
if not ok then
  io.stderr:write("plot_recon: ", opts, "\n", usage, "\n")
  os.exit(2)
end
jbx.core.set_threads(opts.threads)
local model = train.load_model(opts.ckpt)
model:eval()
local rate = model.hp.sr
local x = jbx.audio.load(opts.input, { rate = rate, mono = true, seconds = opts.seconds }):reshape({ -1 })
local n = x:numel()
local codes = codec.encode(model, x)
local clip = opts.input:match("[^/]*$")
local series, items = { { name = "input", audio = x } }, { { name = "input", audio = x } }
for l, c in ipairs(codes) do
  local y = codec.decode(model, c, l):narrow(1, 1, n)
  local name = ("level %d (hop %d)"):format(l, model.hop_lengths[l])
  series[#series + 1] = { name = name, audio = y }
  items[#items + 1] = { name = name, audio = y }
end
jbx.core.mkdir_p(opts.out)
print("plot: " .. plot.waveforms(opts.out .. "/waveforms.png", { series = series, rate = rate,
  from = opts.from, to = opts.from + opts.window, title = "Input and reconstructions: " .. clip }))
print("plot: " .. plot.spectrograms(opts.out .. "/spectrograms.png", { items = items, rate = rate,
  title = "Log-magnitude spectrograms: " .. clip }))
