-- make bench: the speed tables, each configuration in its own process so its peak memory
-- is its own. Run on an idle machine. `jbx bench/bench.lua [vqvae|prior|sample|all]`.
--   vqvae: training step and encode+decode of the VQ-VAE presets, 1 and 2 threads.
--   prior: a prior training step beside the same model in PyTorch (bench/prior_torch.py,
--          Debian's python3-torch; skipped with a message when it is missing), and
--          tokens/s against n_ctx for the block patterns.
--   sample: per-token sampling (bench/bench_sample_one.lua) beside the same loop in
--           PyTorch (bench/sample_torch.py), batch 1 and 16, against the bandwidth bound.
--   gemm: the hot paths' matrix products through OpenBLAS and through jbx_sgemm's own
--         engine (bench/bench_gemm_one.lua), 1 and 2 threads.
--   dist: the jukebox VQ-VAE's training step on 2 MPI ranks x 1 thread against 1 rank x 2
--         threads, the same global batch (bench/bench_dist_one.lua).
local exe = arg[-1] or "build/jbx"
local which = arg[1] or "all"
local tables = { all = true, vqvae = true, prior = true, sample = true, gemm = true, dist = true }
if not tables[which] then
  error("bench: unknown table '" .. which .. "' (known: vqvae, prior, sample, gemm, dist, all)")
end
local function runs_table(name) return which == "all" or which == name end

local function result_of(cmd)
  io.stderr:write("running: ", cmd, "\n")
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ok = p:close()
  local line = out:match("RESULT (.-)\n")
  if not ok or not line then error("bench: failed: " .. cmd .. "\n" .. out) end
  return line
end

-- Every "RESULT ..." line of a command's output, in order.
local function results_of(cmd)
  io.stderr:write("running: ", cmd, "\n")
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ok = p:close()
  local lines = {}
  for line in out:gmatch("RESULT (.-)\n") do lines[#lines + 1] = line end
  if not ok or #lines == 0 then error("bench: failed: " .. cmd .. "\n" .. out) end
  return lines
end

local median = dofile("bench/bench_util.lua").median

-- The numbers of a RESULT row after its first "|", in order.
local function fields(line)
  local n = {}
  for v in line:match("|(.*)$"):gmatch("[%d%.]+") do n[#n + 1] = tonumber(v) end
  return n
end

-- torch* rows: a PyTorch command run with OpenBLAS free to choose its kernels (AVX-512 on
-- this CPU), which the environment otherwise pins (see the gemm table): the fastest
-- PyTorch this machine can give, beside the one installed here. Nil when nothing is pinned.
local function torch_unpinned(cmd)
  if not os.getenv("OPENBLAS_CORETYPE") then return nil end
  local line = result_of("env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE " .. cmd)
  return (line:gsub("^torch ", "torch*"))
end

if runs_table("gemm") then
  -- Each engine in its own process (the engine is chosen once per process), 3 runs each,
  -- alternating; the median GFLOP/s per shape.
  print(("%-24s %5s %5s %5s %3s | %9s %9s %6s"):format("product", "m", "n", "k", "thr", "OpenBLAS", "jbx", "ratio"))
  for _, threads in ipairs({ 1, 2 }) do
    local runs = { blas = {}, own = {} }
    for _ = 1, 3 do
      runs.blas[#runs.blas + 1] = results_of(("JBX_GEMM=blas %s bench/bench_gemm_one.lua %d"):format(exe, threads))
      runs.own[#runs.own + 1] = results_of(("%s bench/bench_gemm_one.lua %d"):format(exe, threads))
    end
    for i, line in ipairs(runs.own[1]) do
      local name, m, n, k = line:match("^(.-)%s+(%d+)%s+(%d+)%s+(%d+)")
      local function med(who)
        local v = {}
        for _, r in ipairs(runs[who]) do v[#v + 1] = tonumber(r[i]:match("([%d%.]+)$")) end
        return median(v)
      end
      local engine = line:match("(%a+%d*)%s+%d+%s+[%d%.]+$")
      local blas, own = med("blas"), med("own")
      print(("%-24s %5s %5s %5s %3d | %9.1f %9.1f %5.2fx%s"):format(name, m, n, k, threads, blas, own, own / blas,
        engine == "openblas" and " (no AVX-512: both OpenBLAS)" or ""))
    end
  end
  print(("GFLOP/s, medians of 3 runs. OpenBLAS kernels here: OPENBLAS_CORETYPE=%s (set by the environment)."):format(
    os.getenv("OPENBLAS_CORETYPE") or "unset: its own choice"))
  print()
end

if runs_table("vqvae") then
  local configs = {
    { preset = "jukebox", batch = 4, length = 22016 },
    { preset = "small", batch = 4, length = 22016 },
  }
  local rows = {}
  for _, threads in ipairs({ 1, 2 }) do
    for _, c in ipairs(configs) do
      rows[#rows + 1] = result_of(("%s bench/bench_one.lua %s %d %d %d"):format(exe, c.preset, c.batch, c.length,
        threads))
    end
  end
  print(("%-8s %3s %5s %9s | %9s %9s %8s %7s | %9s %9s %8s | %8s %8s"):format("preset", "thr", "batch",
    "samples", "train ms", "audio-s/s", "GFLOP/s", "%sgemm", "enc+dec", "audio-s/s", "GFLOP/s", "sgemm", "peak MB"))
  for _, r in ipairs(rows) do print(r) end
  print("samples: 22016 = 1 s of 22050 Hz audio rounded down to a multiple of the top hop (128).")
  print("train GFLOP/s counts 3x the forward convolution FLOPs (forward + two backward products).")
  print()
end

if runs_table("prior") then
  local torch_ok = os.execute("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1")
  if not torch_ok then
    print("prior: PyTorch rows skipped: /usr/bin/python3 cannot import torch (apt-get install python3-torch)")
  end
  local function args(c) return table.concat(c, " ") end
  local function jbx_cmd(c) return ("%s bench/bench_prior_one.lua %s"):format(exe, args(c)) end
  local function torch_cmd(c) return "/usr/bin/python3 bench/prior_torch.py " .. args(c) end
  -- Fields of a RESULT row after the config: ms, tokens/s, GFLOP/s, %sgemm, sgemm, peak MB.
  local function numbers(line)
    local n = fields(line)
    return { ms = n[1], tps = n[2], mb = n[6] }
  end
  local header = ("%-6s %5s %5s %5s %6s %5s %5s %5s %5s %3s | %9s %9s %8s %7s | %8s %8s"):format("", "width", "depth",
    "heads", "n_ctx", "blocks", "order", "batch", "c_res", "thr", "step ms", "tokens/s", "GFLOP/s", "%sgemm", "sgemm",
    "peak MB")

  -- width, depth, heads, n_ctx, blocks, attn_order, batch, c_res, threads
  local goal = { 512, 8, 2, 2048, 32, 2, 2, 0, 2 }
  local small = { 1024, 48, 1, 8192, 64, 2, 1, 1, 2 }
  print(header)
  -- The goal's shape: jbx and torch alternate, 3 runs each; the median run is compared.
  local runs = { jbx = {}, torch = {}, torch_free = {} }
  for _ = 1, 3 do
    runs.jbx[#runs.jbx + 1] = result_of(jbx_cmd(goal))
    if torch_ok then runs.torch[#runs.torch + 1] = result_of(torch_cmd(goal)) end
    if torch_ok then runs.torch_free[#runs.torch_free + 1] = torch_unpinned(torch_cmd(goal)) end
  end
  local summary = {}
  for _, who in ipairs({ "jbx", "torch", "torch_free" }) do
    local tps = {}
    for _, line in ipairs(runs[who]) do
      print(line)
      tps[#tps + 1] = numbers(line).tps
    end
    if #tps > 0 then summary[who] = { tps = median(tps), mb = numbers(runs[who][1]).mb } end
  end
  local small_rows = { jbx = result_of(jbx_cmd(small)) }
  print(small_rows.jbx)
  if torch_ok then
    small_rows.torch = result_of(torch_cmd(small))
    print(small_rows.torch)
  end
  if summary.torch then
    print(("width 512: jbx %.0f tokens/s vs PyTorch %.0f (median of 3 runs each): %.2fx; peak memory %.0f vs %.0f MB")
      :format(summary.jbx.tps, summary.torch.tps, summary.jbx.tps / summary.torch.tps, summary.jbx.mb, summary.torch.mb))
    if summary.torch_free then
      print(("width 512: jbx vs torch* (PyTorch with OpenBLAS unpinned: %.0f tokens/s): %.2fx"):format(
        summary.torch_free.tps, summary.jbx.tps / summary.torch_free.tps))
    end
    local a, b = numbers(small_rows.jbx), numbers(small_rows.torch)
    print(("small_prior shape (n_ctx 8192, c_res 1): jbx %.0f tokens/s vs PyTorch %.0f: %.2fx; peak memory %.0f vs %.0f MB")
      :format(a.tps, b.tps, a.tps / b.tps, a.mb, b.mb))
  end
  print()

  -- Block patterns are linear in n_ctx: the same 8192 tokens per step at every n_ctx,
  -- block_ctx 64 throughout (blocks = n_ctx / 64).
  print(header)
  for _, n_ctx in ipairs({ 1024, 2048, 4096, 8192 }) do
    print(result_of(jbx_cmd({ 512, 8, 2, n_ctx, n_ctx // 64, 2, 8192 // n_ctx, 0, 2 })))
  end
  print("prior GFLOP/s counts 3x the forward's sgemm work (bench/prior_flops.lua; the recompute of c_res 1 is not")
  print("counted), tokens/s = batch x n_ctx / step time; 2048 code bins; one Adam step included.")
end

if runs_table("sample") then
  -- Sampling tokens/s at the small_prior shape (width 1024, depth 48, 1 head, n_ctx 8192,
  -- 64 blocks, attn_order 2, 2 threads), jbx and torch alternating, 3 runs each; the
  -- medians are compared. Batch 16 primes 512 past tokens, not 4096: priming 16 x 4096
  -- positions takes minutes per run, and a token's cost hardly depends on it in jbx (the
  -- column caches hold 64 keys at 4096) while torch's cache copies grow with it.
  local torch_ok = os.execute("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1")
  if not torch_ok then
    print("sample: PyTorch rows skipped: /usr/bin/python3 cannot import torch (apt-get install python3-torch)")
  end
  local shape = "1024 48 1 8192 64 2"
  -- batch, past tokens, new tokens timed by jbx and by torch (each run under a minute)
  local configs = { { batch = 1, past = 4096, jbx = 32, torch = 8 }, { batch = 16, past = 512, jbx = 16, torch = 4 } }
  -- Fields of a RESULT row after the config: tokens/s, bound, %bound, GB/s, cache MB, peak MB.
  local function numbers(line)
    local n = fields(line)
    return { tps = n[1], pct = n[3], mb = n[5] }
  end
  print(("%-6s %5s %5s %5s %6s %5s %5s %5s %5s %3s | %9s %8s %7s | %7s %8s %8s"):format("", "width", "depth",
    "heads", "n_ctx", "blocks", "order", "batch", "past", "thr", "tokens/s", "bound", "%bound", "GB/s",
    "cache MB", "peak MB"))
  local med = {}
  for _, c in ipairs(configs) do
    local runs = { jbx = {}, torch = {}, torch_free = {} }
    local cfg = ("%s %d %d"):format(shape, c.batch, c.past)
    local torch_cmd = ("/usr/bin/python3 bench/sample_torch.py %s %d 2"):format(cfg, c.torch)
    for _ = 1, 3 do
      runs.jbx[#runs.jbx + 1] = result_of(("%s bench/bench_sample_one.lua %s %d 2"):format(exe, cfg, c.jbx))
      if torch_ok then runs.torch[#runs.torch + 1] = result_of(torch_cmd) end
      -- torch* at batch 16, where its products matter
      if torch_ok and c.batch > 1 then runs.torch_free[#runs.torch_free + 1] = torch_unpinned(torch_cmd) end
    end
    med[c.batch] = {}
    for _, who in ipairs({ "jbx", "torch", "torch_free" }) do
      local tps, pct = {}, {}
      for _, line in ipairs(runs[who]) do
        print(line)
        local n = numbers(line)
        tps[#tps + 1], pct[#pct + 1] = n.tps, n.pct
      end
      if #tps > 0 then med[c.batch][who] = { tps = median(tps), pct = median(pct), mb = numbers(runs[who][1]).mb } end
    end
  end
  local j1, j16 = med[1].jbx, med[16].jbx
  print(("sample (medians of 3): batch 1 %.1f tokens/s = %.0f%% of the bandwidth bound (every weight read once per"
    .. " token); batch 16 %.1f tokens/s; KV cache %.0f MB per sample (the reference: ~400)"):format(j1.tps, j1.pct,
    j16.tps, j1.mb))
  if med[1].torch and med[16].torch then
    print(("sample vs PyTorch: batch 1 %.1fx (%.2f tokens/s), batch 16 %.1fx (%.2f tokens/s)"):format(
      j1.tps / med[1].torch.tps, med[1].torch.tps, j16.tps / med[16].torch.tps, med[16].torch.tps))
  end
  if med[16].torch_free then
    print(("sample vs torch* (OpenBLAS unpinned): batch 16 %.1fx (%.2f tokens/s)"):format(
      j16.tps / med[16].torch_free.tps, med[16].torch_free.tps))
  end
  print("bound: this run's read bandwidth (sum of 1 GiB) / weight bytes per token; cache MB: jbx allocates the whole")
  print("n_ctx window, torch's is what its caches hold at the end of its run.")
end

if runs_table("dist") then
  local core = require("jukebox").core
  local has_mpirun = os.execute("command -v mpirun >/dev/null 2>&1")
  if not core.dist.mpi or not has_mpirun then
    print("dist: skipped: " .. (core.dist.mpi and "mpirun not found" or "jbx was built without MPI")
      .. " (tools/install-deps.sh installs Open MPI)")
  else
    -- Each configuration 3 times, alternating; the median step. Global batch 4 x 1 s.
    local one = ("%s bench/bench_dist_one.lua 4 2"):format(exe)
    local two = ("OMP_NUM_THREADS=1 mpirun -np 2 --oversubscribe --allow-run-as-root %s bench/bench_dist_one.lua 2 1")
      :format(exe)
    print(("%-7s %5s %7s %7s %7s | %9s %8s %9s %9s | %8s"):format("preset", "ranks", "threads", "batch/r", "global",
      "step ms", "steps/s", "audio-s/s", "allreduce", "peak MB"))
    local runs = { one = {}, two = {} }
    for _ = 1, 3 do
      runs.one[#runs.one + 1] = result_of(one)
      runs.two[#runs.two + 1] = result_of(two)
    end
    local med = {}
    for _, who in ipairs({ "one", "two" }) do
      local ms = {}
      for _, line in ipairs(runs[who]) do
        print(line)
        ms[#ms + 1] = fields(line)[1]
      end
      med[who] = median(ms)
    end
    print(("dist: 2 ranks x 1 thread %.0f ms per step vs 1 rank x 2 threads %.0f ms (medians of 3): %.2fx;"
      .. " allreduce = share of a step inside the gradient all-reduce (the codebook statistics' all-reduce,"
      .. " 1.6 MB, runs inside the VQ op and is not split out); peak MB is rank 0's"):format(med.two, med.one,
      med.one / med.two))
  end
  print()
end
