-- Evaluates one or more VQ-VAE checkpoints over a folder of audio: per level the
-- codebook usage (codes used, usage, entropy, perplexity, dead codes, top-10 share,
-- nearest-code distance) and fidelity (L1, L2, SNR, spectral convergence, multispectral).
--   build/jbx recipes/eval_vqvae.lua --ckpt=runs/small/step_000300.safetensors --data=data --out=runs/eval
-- Several --ckpt compare side by side. Writes OUT/metrics.json, OUT/metrics.txt and PNG plots.
local jbx = require "jukebox"
local cli = require "jukebox.cli"
local evaluate = require "jukebox.evaluate"

local spec = {
  { "ckpt", nil, "checkpoint to evaluate (repeat to compare)", type = "strings" },
  { "data", "data", "folder of audio files" },
  { "out", "runs/eval", "output folder" },
  { "max_seconds", 0, "evaluate at most this much audio (0: all)" },
  { "plots", true, "write PNG plots" },
  { "threads", 2, "threads for BLAS and OpenMP" },
}
local usage = "usage: jbx recipes/eval_vqvae.lua --ckpt=FILE [--ckpt=FILE2] --data=DIR --out=DIR [--max-seconds=N]"
local ok, opts = pcall(cli.parse, arg, spec, usage)
if ok and #opts.ckpt == 0 then ok, opts = false, "--ckpt is required" end
if not ok then
  io.stderr:write("eval_vqvae: ", opts, "\n", usage, "\n")
  os.exit(2)
end
jbx.core.set_threads(opts.threads)
local t0 = jbx.core.clock()
local r = evaluate.run(opts.ckpt, opts.data, opts.out, { max_seconds = opts.max_seconds, plots = opts.plots })
print(r.table)
print(("evaluated %d clip(s), %.1f s of audio per checkpoint, in %.1f s"):format(
  r.results[1].clips, r.results[1].seconds, jbx.core.clock() - t0))
print("metrics: " .. r.json)
for _, p in ipairs(r.plots) do print("plot: " .. p) end
