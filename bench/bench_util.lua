-- What the bench scripts share: this machine's sgemm rate, medians, random codes.
local core = require "jukebox.core"

local M = {}

--- The median of a list of numbers (the upper one of an even count).
function M.median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  return s[(#s + 1) // 2]
end

--- GFLOP/s of a 1024^3 sgemm at the current thread count, best of 5.
function M.sgemm_gflops()
  local a, b = core.randn({ 1024, 1024 }, { seed = 1 }), core.randn({ 1024, 1024 }, { seed = 2 })
  core.matmul(a, b)
  local best = math.huge
  for _ = 1, 5 do
    local t = core.clock()
    core.matmul(a, b)
    best = math.min(best, core.clock() - t)
  end
  return 2 * 1024 ^ 3 / best / 1e9
end

--- Median seconds of `steps` training steps (forward() -> {loss}, backward, Adam update)
-- after one warm-up step, which also makes the peak memory a training run's (Adam's
-- moments exist from the first update on).
function M.train_step_seconds(forward, opt, steps)
  local times = {}
  for i = 0, steps do
    local t = core.clock()
    local out = forward()
    out.loss:backward()
    opt:step_update()
    opt:zero_grad()
    out = nil
    collectgarbage()
    if i > 0 then times[#times + 1] = core.clock() - t end
  end
  return M.median(times)
end

--- Uniform random codes int32 [n, t] in [0, bins), seeded.
function M.random_codes(n, t, bins, seed)
  local rng, ints = core.rng(seed), {}
  for i = 1, n * t do ints[i] = rng:below(bins) end
  return core.from_ints(ints, { n, t })
end

return M
