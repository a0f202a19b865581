-- Data-parallel training of the jukebox VQ-VAE: `bench_dist_one.lua BATCH_PER_RANK THREADS`,
-- one process or each rank of `mpirun -np N`. Every rank times the same training steps
-- (forward, backward, the gradient all-reduce, Adam) and the time inside the gradient
-- all-reduce; rank 0 prints "RESULT ..." with each rank's median step, averaged over ranks.
local core = require("jukebox").core
local vqvae = require "jukebox.vqvae"
local optim = require "jukebox.optim"
local util = dofile((arg[0]:match("^(.*)/") or ".") .. "/bench_util.lua")

local batch, threads = math.tointeger(tonumber(arg[1])), math.tointeger(tonumber(arg[2]))
if not batch or not threads then error("bench_dist_one.lua BATCH_PER_RANK THREADS") end
core.set_threads(threads)
local dist, length, steps = core.dist, 22016, 5

local model = vqvae.new("jukebox", { seed = 1 })
local opt = optim.adam(model:named_parameters(), {})
local x = (core.randn({ batch, 1, length }, { seed = 3 + dist.rank() }) * 0.1):detach()

-- The optimiser all-reduces the gradient arena through core.dist.allreduce_mean: time it.
local reduce_s = 0
local allreduce_mean = dist.allreduce_mean
dist.allreduce_mean = function(t)
  local t0 = core.clock()
  allreduce_mean(t)
  reduce_s = reduce_s + core.clock() - t0
end
local step_s = util.train_step_seconds(function() return model:forward(x) end, opt, steps)
dist.allreduce_mean = allreduce_mean
local share = reduce_s / (steps + 1) / step_s -- the warm-up step's reduce is in reduce_s too

-- Means over the ranks (they run the same work; the step ends at the same all-reduce).
local sums = dist.sum_numbers({ step_s, share })
step_s, share = sums[1] / dist.size(), sums[2] / dist.size()
if dist.rank() == 0 then
  print(("RESULT jukebox %5d %7d %7d %7d | %9.1f %8.2f %9.2f %8.1f%% | %8.0f"):format(dist.size(), threads,
    batch, batch * dist.size(), step_s * 1e3, 1 / step_s, batch * dist.size() * length / 22050 / step_s,
    100 * share, core.peak_rss_mb()))
end
