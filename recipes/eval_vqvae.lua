-- Evaluates one or more VQ-VAE checkpoints over a folder of audio: per level the
-- codebook usage (codes used, usage, entropy, perplexity, dead codes, top-10 share,
-- nearest-code distance) and fidelity (L1, L2, SNR, spectral convergence, multispectral).
--   build/jbx recipes/eval_vqvae.lua --ckpt=runs/small/step_000300.safetensors --data=data --out=runs/eval
-- Several --ckpt compare side by side. Writes OUT/metrics.json, OUT/metrics.txt,
-- OUT/code_counts.csv and PNG plots (waveforms, spectrograms, code usage, training curves).
local jbx = require "jukebox"
local cli = require "jukebox.cli"
local evaluate = require "jukebox.evaluate"
local metrics = require "jukebox.metrics"

local spec = {
  { "ckpt", nil, "checkpoint to evaluate (repeat to compare)", type = "strings", required = true },
  { "data", "data", "folder of audio files (searched recursively)" },
  { "out", "runs/eval", "output folder" },
  { "max_seconds", 0, "evaluate at most this much audio (0: all)" },
  { "segment", metrics.defaults.segment, "samples per segment for the spectral metrics" },
  { "plots", true, "write PNG plots (needs gnuplot)" },
  { "threads", 2, "threads for BLAS and OpenMP" },
}
local usage = "usage: jbx recipes/eval_vqvae.lua --ckpt=FILE [--ckpt=FILE2 ...] --data=DIR --out=DIR [options]"

cli.run("eval_vqvae", spec, usage, function(opts)
  jbx.core.set_threads(opts.threads)
  local t0 = jbx.core.clock()
  local r = evaluate.run(opts.ckpt, opts.data, opts.out, { max_seconds = opts.max_seconds, plots = opts.plots,
    segment = opts.segment })
  print(r.table)
  print(("evaluated %d clip(s), %.1f s of audio per checkpoint, in %.1f s"):format(
    r.results[1].clips, r.results[1].seconds, jbx.core.clock() - t0))
  print("metrics: " .. r.json)
  for _, p in ipairs(r.plots) do print("plot: " .. p) end
end)
