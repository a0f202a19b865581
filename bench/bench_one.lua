-- One benchmark configuration: bench_one.lua PRESET BATCH SAMPLES THREADS
local jbx = require "jukebox"
local core = jbx.core
local nn = require "jukebox.nn"
local vqvae = require "jukebox.vqvae"
local optim = require "jukebox.optim"

local preset, batch, length, threads = arg[1], tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])
core.set_threads(threads)

local util = dofile((arg[0]:match("^(.*)/") or ".") .. "/bench_util.lua")
local median = util.median
local sgemm = util.sgemm_gflops()

local model = vqvae.new(preset, { seed = 1 })
local opt = optim.adam(model:named_parameters(), {})
local x = (core.randn({ batch, 1, length }, { seed = 3 }) * 0.1):detach()

-- FLOPs of one forward pass, counted by the conv modules.
nn.flops = { forward = 0 }
core.no_grad(function() model:forward(x) end)
local fwd_flops = nn.flops.forward
nn.flops = nil

local steps = preset == "jukebox" and 5 or 10
local train_s = util.train_step_seconds(function() return model:forward(x) end, opt, steps)

model:eval()
local enc = {}
local enc_flops = 0
for i = 0, steps do
  local t = core.clock()
  nn.flops = i == 0 and { forward = 0 } or nil
  local codes = model:encode(x)
  for l = 1, model.hp.levels do model:decode(codes[l], l) end
  if i == 0 then enc_flops = nn.flops.forward end
  nn.flops = nil
  collectgarbage()
  if i > 0 then enc[#enc + 1] = core.clock() - t end
end
local enc_s = median(enc)
local audio = batch * length / model.hp.sr
local train_gflops = 3 * fwd_flops / train_s / 1e9
print(("RESULT %-8s %3d %5d %9d | %9.1f %9.2f %8.1f %6.0f%% | %9.1f %9.2f %8.1f | %8.1f %8.0f"):format(
  preset, threads, batch, length, train_s * 1e3, audio / train_s, train_gflops, 100 * train_gflops / sgemm,
  enc_s * 1e3, audio / enc_s, enc_flops / enc_s / 1e9, sgemm, core.peak_rss_mb()))
