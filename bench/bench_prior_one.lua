-- One prior training-step configuration:
--   bench_prior_one.lua WIDTH DEPTH HEADS N_CTX BLOCKS ATTN_ORDER BATCH C_RES THREADS
-- prints "RESULT ..." with ms per step, tokens/s, GFLOP/s, share of this machine's sgemm
-- and peak memory. One Adam step per iteration, median of the timed steps.
local core = require "jukebox.core"
local prior = require "jukebox.prior"
local optim = require "jukebox.optim"
local here = (arg[0]:match("^(.*)/") or ".") .. "/"
local flops = dofile(here .. "prior_flops.lua")
local util = dofile(here .. "bench_util.lua")

local a = {}
for i = 1, 9 do a[i] = math.tointeger(tonumber(arg[i])) end
local c = { width = a[1], depth = a[2], heads = a[3], n_ctx = a[4], blocks = a[5], attn_order = a[6], batch = a[7],
            c_res = a[8], threads = a[9], bins = 2048 }
core.set_threads(c.threads)

local sgemm = util.sgemm_gflops()

local model = prior.new("custom", { bins = c.bins, n_ctx = c.n_ctx, width = c.width, depth = c.depth, heads = c.heads,
  attn_order = c.attn_order, blocks = c.attn_order ~= 0 and c.blocks or false, c_res = c.c_res, seed = 1 })
local opt = optim.adam(model:named_parameters(), {})
local batch = { codes = util.random_codes(c.batch, c.n_ctx, c.bins, 3) }

-- Timed steps after one warm-up: 5, 3 from 8192 tokens, 1 past a TFLOP per forward.
local fwd = flops.forward(c, model.prior.transformer.funcs)
local steps = fwd > 1e12 and 1 or c.n_ctx * c.batch >= 8192 and 3 or 5
local s = util.train_step_seconds(function() return model:forward(batch, { logits = false }) end, opt, steps)
local train_gflops = 3 * fwd / s / 1e9
print(("RESULT jbx     %5d %5d %5d %6d %5d %5d %5d %5d %3d | %9.1f %9.0f %8.1f %6.0f%% | %8.1f %8.0f"):format(
  c.width, c.depth, c.heads, c.n_ctx, c.blocks, c.attn_order, c.batch, c.c_res, c.threads, s * 1e3,
  c.batch * c.n_ctx / s, train_gflops, 100 * train_gflops / sgemm, sgemm, core.peak_rss_mb()))
