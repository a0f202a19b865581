-- make bench: the speed tables, each configuration in its own process so its peak memory
-- is its own. Run on an idle machine. `jbx bench/bench.lua [vqvae|prior|all]`.
--   vqvae: training step and encode+decode of the VQ-VAE presets, 1 and 2 threads.
--   prior: a prior training step beside the same model in PyTorch (bench/prior_torch.py,
--          Debian's python3-torch; skipped with a message when it is missing), and
--          tokens/s against n_ctx for the block patterns.
local exe = arg[-1] or "build/jbx"
local which = arg[1] or "all"
if which ~= "all" and which ~= "vqvae" and which ~= "prior" then
  error("bench: unknown table '" .. which .. "' (known: vqvae, prior, all)")
end

local function result_of(cmd)
  io.stderr:write("running: ", cmd, "\n")
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ok = p:close()
  local line = out:match("RESULT (.-)\n")
  if not ok or not line then error("bench: failed: " .. cmd .. "\n" .. out) end
  return line
end

local median = dofile("bench/bench_util.lua").median

if which ~= "prior" then
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

if which ~= "vqvae" then
  local torch_ok = os.execute("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1")
  if not torch_ok then
    print("prior: PyTorch rows skipped: /usr/bin/python3 cannot import torch (apt-get install python3-torch)")
  end
  local function args(c) return table.concat(c, " ") end
  local function jbx_cmd(c) return ("%s bench/bench_prior_one.lua %s"):format(exe, args(c)) end
  local function torch_cmd(c) return "/usr/bin/python3 bench/prior_torch.py " .. args(c) end
  -- Fields of a RESULT row after the config: ms, tokens/s, GFLOP/s, %sgemm, sgemm, peak MB.
  local function numbers(line)
    local n = {}
    for v in line:match("|(.*)$"):gmatch("[%d%.]+") do n[#n + 1] = tonumber(v) end
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
  local runs = { jbx = {}, torch = {} }
  for _ = 1, 3 do
    runs.jbx[#runs.jbx + 1] = result_of(jbx_cmd(goal))
    if torch_ok then runs.torch[#runs.torch + 1] = result_of(torch_cmd(goal)) end
  end
  local summary = {}
  for _, who in ipairs({ "jbx", "torch" }) do
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
