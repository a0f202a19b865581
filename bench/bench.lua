-- make bench: training-step and encode+decode speed of the VQ-VAE presets, with 1 and
-- 2 threads, beside this machine's own sgemm GFLOP/s. Each configuration runs in its
-- own process so its peak memory is its own.
local jbx = require "jukebox"

local exe = arg[-1] or "build/jbx"
local configs = {
  { preset = "jukebox", batch = 4, length = 22016 },
  { preset = "small", batch = 4, length = 22016 },
}
local rows = {}
for _, threads in ipairs({ 1, 2 }) do
  for _, c in ipairs(configs) do
    local cmd = ("%s bench/bench_one.lua %s %d %d %d"):format(exe, c.preset, c.batch, c.length, threads)
    io.stderr:write("running: ", cmd, "\n")
    local p = assert(io.popen(cmd, "r"))
    local line = p:read("a")
    local ok = p:close()
    if not ok then error("bench: failed: " .. cmd) end
    rows[#rows + 1] = line:match("RESULT (.-)\n")
  end
end
print(("%-8s %3s %5s %9s | %9s %9s %8s %7s | %9s %9s %8s | %8s %8s"):format("preset", "thr", "batch",
  "samples", "train ms", "audio-s/s", "GFLOP/s", "%sgemm", "enc+dec", "audio-s/s", "GFLOP/s", "sgemm", "peak MB"))
for _, r in ipairs(rows) do print(r) end
print("samples: 22016 = 1 s of 22050 Hz audio rounded down to a multiple of the top hop (128).")
print("train GFLOP/s counts 3x the forward convolution FLOPs (forward + two backward products).")
