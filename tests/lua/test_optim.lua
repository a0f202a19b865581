-- lua/jukebox/optim.lua against the torch fixture tests/fixtures/optim.fix
-- (tools/fixtures/optim.py): five Adam steps per case through optim.adam and
-- Adam:step_update (no warm-up), with L2 weight decay, global-norm clipping and the
-- weight EMA, compared step by step in the weights, moments (state_tensors) and EMA.
-- Each test raises to fail.
local FIXTURE = "tests/fixtures/optim.fix"

local H = require "helpers"
local optim = require "jukebox.optim"

local fixture_cache
local function fixture()
  fixture_cache = fixture_cache or H.read_fixture(FIXTURE)
  return fixture_cache
end

local function array(name)
  return assert(fixture()[name], "fixture has no array " .. name)
end

-- Row t (1-based) of a [steps, ...] fixture array, as a list and its shape.
local function row(name, t)
  local a = array(name)
  local shape, n = {}, 1
  for d = 2, #a.shape do
    shape[#shape + 1] = a.shape[d]
    n = n * a.shape[d]
  end
  local out = {}
  for i = 1, n do out[i] = a.data[(t - 1) * n + i] end
  return out, shape
end

local function tensor_of(C, list, shape) return C.tensor(list):view(shape) end

-- max |got - want| over max |want|, as the C test measures (v is ~ g^2, so scale-relative).
local function check_row(got, name, t, tol, what)
  local want = row(name, t)
  local flat = got:contiguous():view({ -1 }):totable()
  local e, s = 0, 0
  for i = 1, #want do
    e = math.max(e, math.abs(flat[i] - want[i]))
    s = math.max(s, math.abs(want[i]))
  end
  e = e / (s > 0 and s or 1)
  if not (e < tol) then error(("%s, step %d: off by %.3g of its scale (tol %g)"):format(what, t, e, tol), 2) end
end

-- Runs the five fixture steps of one case through optim.adam and checks every step.
local function run_case(jbx, case, clip, ema)
  local C = jbx.core
  local hp = array(case .. "_hp").data
  local w = tensor_of(C, array("w0").data, array("w0").shape)
  local b = tensor_of(C, array("b0").data, array("b0").shape)
  local named = { { name = "w", tensor = w }, { name = "b", tensor = b } }
  local opt = optim.adam(named, { lr = hp[1], beta1 = hp[2], beta2 = hp[3], eps = hp[4],
                                  weight_decay = hp[5], warmup = 0, clip = clip, ema = ema })
  -- optim.lua's clip factor is clip / gn; torch's is clip / (gn + 1e-6): 1e-5 covers it.
  local tol = 1e-5
  for t = 1, 5 do
    w.grad = tensor_of(C, row("gw", t))
    b.grad = tensor_of(C, row("gb", t))
    local gn, stepped = opt:step_update()
    H.assert_true(stepped, "step " .. t .. " was taken")
    H.assert_close(gn, array("gnorm").data[t], 1e-6, "gradient norm, step " .. t)
    local st = opt:state_tensors()
    for _, p in ipairs({ { "w", w }, { "b", b } }) do
      local n, tensor = p[1], p[2]
      check_row(tensor, case .. "_" .. n, t, tol, "case " .. case .. " " .. n)
      check_row(st["adam.m." .. n], case .. "_m" .. n, t, tol, "case " .. case .. " m of " .. n)
      check_row(st["adam.v." .. n], case .. "_v" .. n, t, tol, "case " .. case .. " v of " .. n)
      if ema then check_row(st["ema." .. n], "ema_" .. n, t, tol, "ema of " .. n) end
    end
    opt:zero_grad()
  end
  return opt
end

return {
  ["Adam without decay or clipping matches torch.optim.Adam"] = function(jbx)
    run_case(jbx, "a")
  end,

  ["Adam with weight decay matches torch.optim.Adam (L2 added to the gradient)"] = function(jbx)
    run_case(jbx, "b")
  end,

  ["Adam with clipping, weight decay and the EMA matches torch"] = function(jbx)
    local opt = run_case(jbx, "c", array("c_max_norm").data[1], array("ema_decay").data[1])
    H.assert_eq(opt.step, 5, "step count")
  end,

  ["a non-finite gradient norm skips the step and changes nothing"] = function(jbx)
    local C = jbx.core
    local w = C.tensor({ 1, 2, 3 })
    local opt = optim.adam({ { name = "w", tensor = w } }, { warmup = 0, ema = 0.5 })
    w.grad = C.tensor({ 1, 0 / 0, 1 })
    local gn, stepped = opt:step_update()
    H.assert_true(gn ~= gn and not stepped, "NaN norm, no step")
    w.grad = C.tensor({ 1, math.huge, 1 })
    gn, stepped = opt:step_update()
    H.assert_true(gn == math.huge and not stepped, "infinite norm, no step")
    H.assert_eq(opt.step, 0, "step count")
    local st = opt:state_tensors()
    H.assert_close(w, { 1, 2, 3 }, 0, "weights")
    H.assert_close(st["adam.m.w"], { 0, 0, 0 }, 0, "m")
    H.assert_close(st["adam.v.w"], { 0, 0, 0 }, 0, "v")
    H.assert_close(st["ema.w"], { 1, 2, 3 }, 0, "ema")
  end,
}
