-- One sampling configuration:
--   bench_sample_one.lua WIDTH DEPTH HEADS N_CTX BLOCKS ATTN_ORDER BATCH PAST NEW THREADS
-- primes PAST tokens into the KV caches (untimed), then times drawing NEW tokens per
-- sample. Prints "RESULT ..." with tokens/s, the memory-bandwidth bound at batch 1 (this
-- run's measured read bandwidth / the weight bytes each token reads), the share of it
-- reached, the KV cache per sample and peak memory.
local core = require "jukebox.core"
local prior = require "jukebox.prior"
local sampler = require "jukebox.sampler"
local util = dofile((arg[0]:match("^(.*)/") or ".") .. "/bench_util.lua")

local a = {}
for i = 1, 10 do a[i] = math.tointeger(tonumber(arg[i])) end
local c = { width = a[1], depth = a[2], heads = a[3], n_ctx = a[4], blocks = a[5], attn_order = a[6], batch = a[7],
            past = a[8], new = a[9], threads = a[10], bins = 2048 }
core.set_threads(c.threads)

-- Read bandwidth: the sum of a 1 GiB tensor (larger than any cache), best of 3.
local big = core.ones({ 256 * 1024 * 1024 })
big:sum()
local best = math.huge
for _ = 1, 3 do
  local t = core.clock()
  big:sum()
  best = math.min(best, core.clock() - t)
end
local bandwidth = 4 * big:numel() / best -- bytes/s
big = nil
collectgarbage()

local model = prior.new("custom", { bins = c.bins, n_ctx = c.n_ctx, width = c.width, depth = c.depth, heads = c.heads,
  attn_order = c.attn_order, blocks = c.attn_order ~= 0 and c.blocks or false, seed = 1 })
model:eval()
-- Bytes every token reads at batch 1: every weight once (the layers and the output).
local weight_bytes = 0
for _, p in ipairs(model:named_parameters()) do
  if p.name:find("transformer", 1, true) or p.name:find("x_emb", 1, true) or p.name:find("x_out", 1, true) then
    weight_bytes = weight_bytes + 4 * p.tensor:numel()
  end
end
-- The KV cache per sample, as core/ops/kv_cache.c keeps it: all positions for dense (0)
-- and column (2), one block for row (1), two for previous-block (3).
local d = (c.width // 4) // c.heads
local block_ctx = c.n_ctx // c.blocks
local rows = { [0] = c.n_ctx, [1] = block_ctx, [2] = c.n_ctx, [3] = 2 * block_ctx }
local cache_bytes = 0
for _, f in ipairs(model.prior.transformer.funcs) do cache_bytes = cache_bytes + 2 * 4 * c.heads * d * rows[f] end

local s = sampler.new(model, { batch = c.batch, seed = 5, chunk_size = 128, want_logits = false })
s:prime(util.random_codes(c.batch, c.past, c.bins, 3))
s:sample(2) -- warm-up
local t = core.clock()
s:sample(c.new)
local secs = core.clock() - t
local tps = c.batch * c.new / secs
local bound = bandwidth / weight_bytes
print(("RESULT jbx     %5d %5d %5d %6d %5d %5d %5d %5d %3d | %9.1f %8.1f %6.0f%% | %7.1f %8.1f %8.0f"):format(
  c.width, c.depth, c.heads, c.n_ctx, c.blocks, c.attn_order, c.batch, c.past, c.threads, tps, bound,
  100 * tps / bound, bandwidth / 1e9, cache_bytes / 2 ^ 20, core.peak_rss_mb()))
