-- The matrix products of the toolkit's hot paths, through whichever engine jbx_sgemm uses
-- in this process (JBX_GEMM=blas: OpenBLAS): `bench_gemm_one.lua THREADS` prints one
-- "RESULT name m n k engine threads GFLOP/s" line per shape, best of 5 after a warm-up.
local core = require "jukebox.core"
local threads = math.tointeger(tonumber(arg[1])) or error("bench_gemm_one.lua THREADS")
core.set_threads(threads)

-- name, m, n, k, transpose a, transpose b (C [m, n] = op(A) [m, k] op(B) [k, n])
local shapes = {
  { "prior qkv (width 512)", 4096, 384, 512, false, false },
  { "prior mlp", 4096, 512, 512, false, false },
  { "prior dx = g w^T", 4096, 512, 512, false, true },
  { "prior dw = x^T g", 512, 512, 4096, true, false },
  { "prior logits (2048)", 4096, 2048, 512, false, true },
  { "small_prior mlp (1024)", 8192, 1024, 1024, false, false },
  { "sample batch 16 qkv", 16, 768, 1024, false, false },
  { "sample batch 16 mlp", 16, 1024, 1024, false, false },
  { "attention (block_ctx)", 64, 64, 64, false, true },
  { "vq-vae conv (64 ch)", 64, 4096, 192, false, false },
  { "square", 1024, 1024, 1024, false, false },
}
for _, s in ipairs(shapes) do
  local name, m, n, k, ta, tb = table.unpack(s)
  local a = core.randn(ta and { k, m } or { m, k }, { seed = 1 })
  local b = core.randn(tb and { n, k } or { k, n }, { seed = 2 })
  if ta then a = a:transpose(1, 2) end
  if tb then b = b:transpose(1, 2) end
  local reps = math.max(1, math.floor(2e8 / (m * n * k)))
  local best = math.huge
  for round = 0, 5 do
    local t = core.clock()
    for _ = 1, reps do core.matmul(a, b) end
    if round > 0 then best = math.min(best, (core.clock() - t) / reps) end
  end
  print(("RESULT %-24s %5d %5d %5d %-8s %d %8.1f"):format(name, m, n, k, core.gemm_engine(), threads,
    2 * m * n * k / best / 1e9))
end
