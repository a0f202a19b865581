-- The VQ bottleneck from Lua (jbx.core.vq_*) and the Rng userdata whose state checkpoints
-- save: values against brute force and hand computations, the PyTorch fixture, gradients,
-- resuming from a saved state, and the errors a user sees. Each test raises to fail.
local H = require "helpers"

local FIX = "tests/fixtures/vq.fix"

local read_fixture = H.read_fixture

local function tensor_of(core, a)
  local t = core.tensor(a.data, a.dtype == "i32" and { dtype = "int32" } or nil)
  return t:reshape(a.shape)
end

-- Squared distance between row i of the nested table x and row j of k (1-based rows).
local function sqdist(x, i, k, j)
  local s = 0
  for c = 1, #x[i] do s = s + (x[i][c] - k[j][c]) ^ 2 end
  return s
end

-- A tiny codebook state and batch whose EMA step is worked out by hand in test_vq.c.
local function hand_case(core)
  return core.tensor({ { 0, 0 }, { 1, 1 }, { 5, 5 } }), core.tensor({ { 0, 0 }, { 2, 2 }, { 10, 10 } }),
    core.tensor({ 2, 2, 2 }), core.tensor({ { 0, 1 }, { 1, 0 }, { 1, 2 }, { 0, 0 } }),
    core.tensor({ 0, 1, 1, 0 }, { dtype = "int32" })
end

return {
  ["vq_assign picks the nearest code (0-based) and its distance"] = function(jbx)
    local core = jbx.core
    local x, k = core.randn({ 200, 8 }, { seed = 1 }), core.randn({ 16, 8 }, { seed = 2 })
    local codes, md = core.vq_assign(x, k)
    H.assert_shape(codes, { 200 })
    H.assert_shape(md, { 200 })
    local xt, kt, ct, mt = x:totable(), k:totable(), codes:totable(), md:totable()
    for i = 1, 200 do
      local best, bd = 0, math.huge
      for j = 1, 16 do
        local d = sqdist(xt, i, kt, j)
        if d < bd then best, bd = j - 1, d end
      end
      H.assert_true(sqdist(xt, i, kt, ct[i] + 1) <= bd + 1e-4 * (1 + bd),
        ("row %d: code %d, brute force %d"):format(i, ct[i], best))
      H.assert_close(mt[i], bd, 1e-5, "min_dist row " .. i)
    end
  end,

  ["vq_quantise: straight-through values, commit loss and its gradient"] = function(jbx)
    local core = jbx.core
    local x = core.randn({ 30, 4 }, { seed = 3, requires_grad = true })
    local k = core.randn({ 8, 4 }, { seed = 4 })
    local codes, xq, commit, fit = core.vq_quantise(x, k)
    local xd = core.vq_dequantise(k, codes)
    H.assert_close(xq, xd, 1e-6, "x_q has the values of k[codes]")
    local xt, dt = x:totable(), xd:totable()
    local sq, grad = 0, {}
    for i = 1, 30 do
      grad[i] = {}
      for c = 1, 4 do
        sq = sq + (xt[i][c] - dt[i][c]) ^ 2
        grad[i][c] = 2 * (xt[i][c] - dt[i][c]) / 120
      end
    end
    H.assert_close(commit:item(), sq / 120, 1e-5, "commit = mean squared distance")
    H.assert_close(fit, sq / 30, 1e-5, "fit = mean min distance")
    commit:backward()
    H.assert_close(x.grad, grad, 1e-6, "d commit / d x")
    x:zero_grad()
    local g = core.randn({ 30, 4 }, { seed = 5 })
    xq:backward(g)
    H.assert_close(x.grad, g, 0, "x_q passes the gradient straight through")
    H.assert_close(core.vq_prenorm(core.tensor({ { 0, 1 }, { 1, 0 }, { 1, 2 }, { 0, 0 } })),
      math.sqrt(3.875 / 8), 1e-7, "prenorm")
  end,

  ["vq_dequantise keeps the codes' shape and sends gradients to k"] = function(jbx)
    local core = jbx.core
    local k = core.randn({ 5, 3 }, { seed = 6, requires_grad = true })
    local codes = core.tensor({ { 4, 0, 4 }, { 2, 2, 2 } }, { dtype = "int32" })
    local out = core.vq_dequantise(k, codes)
    H.assert_shape(out, { 2, 3, 3 })
    out:backward(core.ones({ 2, 3, 3 }))
    H.assert_close(k.grad, { { 1, 1, 1 }, { 0, 0, 0 }, { 3, 3, 3 }, { 0, 0, 0 }, { 2, 2, 2 } }, 0,
      "each code's gradient counts its uses")
  end,

  ["vq_ema_update: the hand-computed step and its metrics"] = function(jbx)
    local core = jbx.core
    local k, ks, ke, x, codes = hand_case(core)
    local m = core.vq_ema_update(k, ks, ke, x, codes, { mu = 0.5, threshold = 0.5, rng = core.rng(1) })
    H.assert_close(k, { { 0, 0.25 }, { 1, 1 }, { 5, 5 } }, 1e-6, "k")
    H.assert_close(ks, { { 0, 0.5 }, { 2, 2 }, { 5, 5 } }, 1e-6, "k_sum")
    H.assert_close(ke, { 2, 2, 1 }, 1e-6, "k_elem")
    H.assert_eq(m.usage, 3, "usage")
    H.assert_eq(m.used_curr, 2, "used_curr")
    H.assert_eq(math.type(m.usage), "integer", "usage is a count")
    H.assert_close(m.entropy, math.log(2), 1e-6, "entropy")
    H.assert_close(m.dk, math.sqrt(0.25 ^ 2 / 6), 1e-6, "dk")
    H.assert_close(m.fit, 0.75, 1e-7, "fit")
    H.assert_close(m.pn, math.sqrt(3.875 / 8), 1e-7, "pn")
    -- Defaults (mu 0.99, threshold 1, the default stream) need no options table.
    local m2 = core.vq_ema_update(k, ks, ke, x, codes)
    H.assert_true(m2.usage >= 1, "defaults work")
  end,

  ["vq_ema_update with restart = false restarts nothing and draws nothing"] = function(jbx)
    local core = jbx.core
    local x = core.randn({ 20, 3 }, { seed = 61 })
    local k = core.randn({ 8, 3 }, { seed = 62 })
    local ke = core.tensor({ 10, 10, 0.1, 0.1, 0.5, 0.1, 5, 0 })
    local ks = k * ke:reshape({ 8, 1 }) -- as an EMA leaves dead codes: k_sum = k_elem * k
    local cv = {}
    for i = 1, 20 do cv[i] = (i - 1) % 2 end
    local codes = core.tensor(cv, { dtype = "int32" })
    local k0, ks0, ke0 = k:clone(), ks:clone(), ke:clone()
    local rng = core.rng(7)
    local before = rng:state()
    local m = core.vq_ema_update(k, ks, ke, x, codes, { mu = 0.9, rng = rng, restart = false })
    H.assert_eq(rng:state(), before, "the rng state is unchanged")
    -- Unhit codes keep their k (k_sum and k_elem decayed alike); code 8 (k_elem 0) too.
    H.assert_close(k:narrow(1, 3, 6), k0:narrow(1, 3, 6), 1e-5, "no code restarted")
    local _, md = core.vq_assign(k:narrow(1, 3, 6):contiguous(), x)
    H.assert_true(md:min():item() > 1e-6, "no dead code became a row of x")
    H.assert_eq(m.usage, 3, "usage counts codes 1, 2 and 7 either way")
    -- The same step with restarts (the default) draws and moves dead codes onto x.
    local r2 = core.rng(7)
    local m2 = core.vq_ema_update(k0, ks0, ke0, x, codes, { mu = 0.9, rng = r2, restart = true })
    H.assert_true(r2:state() ~= before, "restarts draw from the rng")
    H.assert_eq(m2.usage, m.usage, "same usage")
    H.assert_close(ks0, ks, 0, "same k_sum")
    H.assert_true(m2.dk > m.dk, "restarts move the codebook more")
  end,

  ["vq_init from a batch: rows of x, k_sum = k, k_elem = 1"] = function(jbx)
    local core = jbx.core
    local x = core.randn({ 40, 4 }, { seed = 7 })
    local k, ks, ke = core.zeros({ 16, 4 }), core.zeros({ 16, 4 }), core.zeros({ 16 })
    core.vq_init(k, ks, ke, x, 11)
    H.assert_close(ks, k, 0, "k_sum = k")
    H.assert_close(ke, core.ones({ 16 }), 0, "k_elem = 1")
    local _, md = core.vq_assign(k, x) -- every code is exactly a row of x
    H.assert_close(md:abs():max():item(), 0, 1e-5, "codes are rows of x")
  end,

  ["rng state round-trips and a resumed run replays the same restarts"] = function(jbx)
    local core = jbx.core
    local function run(rng, k, ks, ke, from, to)
      for s = from, to do
        local x = core.randn({ 10, 4 }, { seed = 100 + s })
        local codes = core.vq_assign(x, k)
        core.vq_ema_update(k, ks, ke, x, codes, { mu = 0.9, rng = rng })
      end
    end
    local r = core.rng(42)
    local k, ks, ke = core.zeros({ 32, 4 }), core.zeros({ 32, 4 }), core.zeros({ 32 })
    core.vq_init(k, ks, ke, core.randn({ 10, 4 }, { seed = 99 }), r)
    run(r, k, ks, ke, 1, 2)
    local saved = r:state()
    H.assert_true(type(saved) == "string" and #saved == 64 and saved:match("^%x+$"), "64 hex digits")
    local k2, ks2, ke2 = k:clone(), ks:clone(), ke:clone()
    run(r, k, ks, ke, 3, 5)
    local r2 = core.rng(0):set_state(saved)
    run(r2, k2, ks2, ke2, 3, 5)
    H.assert_close(k2, k, 0, "resumed codebook")
    H.assert_eq(r2:state(), r:state(), "resumed generator")
    -- A table of 4 integers and core.rng(state) work too; clone copies the stream.
    local ints = {}
    for i = 1, 4 do ints[i] = math.tointeger(tonumber(saved:sub(16 * i - 15, 16 * i), 16)) end
    local a, b = core.rng(1):set_state(ints), core.rng(saved)
    H.assert_eq(a:state(), saved, "table state")
    H.assert_eq(b:state(), saved, "rng(state)")
    local c = a:clone()
    H.assert_eq(a:uniform(), c:uniform(), "clone")
    H.assert_true(a:seed(5):state() == core.rng(5):state(), "seed")
    H.assert_true(tostring(a):find("^Rng%(") ~= nil, "tostring")
  end,

  ["the PyTorch fixture: codes, commit, fit and one EMA step"] = function(jbx)
    local core = jbx.core
    local fx = read_fixture(FIX)
    local x, k = tensor_of(core, fx.x), tensor_of(core, fx.k)
    local ks, ke = tensor_of(core, fx.k_sum), tensor_of(core, fx.k_elem)
    local codes, xq, commit, fit = core.vq_quantise(x, k)
    H.assert_close(codes, tensor_of(core, fx.codes), 0, "codes")
    H.assert_close(xq, tensor_of(core, fx.x_q), 1e-6, "x_q")
    H.assert_close(commit:item(), fx.commit.data[1], 1e-5, "commit")
    H.assert_close(fit, fx.fit.data[1], 1e-5, "fit")
    local m = core.vq_ema_update(k, ks, ke, x, codes,
      { mu = fx.params.data[1], threshold = fx.params.data[2], rng = core.rng(0) })
    H.assert_close(k, tensor_of(core, fx.new_k), 1e-5, "new k")
    H.assert_close(ks, tensor_of(core, fx.new_k_sum), 1e-5, "new k_sum")
    H.assert_close(ke, tensor_of(core, fx.new_k_elem), 1e-5, "new k_elem")
    H.assert_eq(m.usage, math.tointeger(fx.metrics.data[1]), "usage")
    H.assert_eq(m.used_curr, math.tointeger(fx.metrics.data[2]), "used_curr")
    H.assert_close(m.entropy, fx.metrics.data[3], 1e-5, "entropy")
    H.assert_close(m.dk, fx.metrics.data[4], 1e-4, "dk")
    H.assert_close(m.pn, fx.pn.data[1], 1e-5, "pn")
  end,

  ["vq errors name the function and the shapes"] = function(jbx)
    local core = jbx.core
    local x, k = core.zeros({ 10, 16 }), core.zeros({ 64, 8 })
    H.assert_error(function() core.vq_assign(x, k) end,
      "vq_assign: x [10, 16] and codebook k [64, 8] differ in width (16 vs 8)")
    H.assert_error(function() core.vq_assign(x) end, "vq_assign: argument 2 (codebook) must be a tensor, got no value")
    H.assert_error(function() core.vq_dequantise(k, core.tensor({ 3, 64 }, { dtype = "int32" })) end,
      "vq_dequantise: code 64 at position 1 is out of range for a codebook of 64 codes")
    local kk, ks, ke, xx, codes = hand_case(core)
    H.assert_error(function() core.vq_ema_update(kk, ks, ke, xx, codes, { mux = 1 }) end,
      "vq_ema_update: unknown option 'mux' (known: mu, threshold, rng, restart, across)")
    H.assert_error(function() core.vq_ema_update(kk, ks, ke, xx, codes, { restart = 0 }) end,
      "vq_ema_update: option 'restart' must be a boolean, got number")
    H.assert_error(function() core.vq_ema_update(kk, ks, ke, xx, codes, 0.9) end,
      "vq_ema_update: argument 6 (options) must be a table, got number")
    H.assert_error(function() core.vq_ema_update(kk, ks, ke, xx, codes, { rng = "x" }) end,
      "vq_ema_update: option 'rng' must be an Rng or an integer seed, got string")
    H.assert_error(function() core.vq_ema_update(kk, ks, ke, xx, codes, { mu = 2 }) end,
      "vq_ema_update: mu must be in [0, 1], got 2")
    H.assert_error(function() core.vq_ema_update(kk, kk, ke, xx, codes) end,
      "vq_ema_update: k, k_sum and k_elem must not share storage")
    H.assert_error(function() core.vq_ema_update(kk, ks, ke, xx, core.tensor({ 0, 1, 9, 0 }, { dtype = "int32" })) end,
      "vq_ema_update: code 9 at position 2 is out of range for a codebook of 3 codes")
    H.assert_error(function() core.vq_init(kk, ks, ke, x) end,
      "vq_init: x [10, 16] and codebook k [3, 2] differ in width (16 vs 2)")
    H.assert_error(function() core.vq_init(kk, ks, ke, xx, {}) end,
      "vq_init: argument 5 (rng) must be an Rng or an integer seed, got table")
    local r = core.rng(1)
    H.assert_error(function() r:set_state("abc") end,
      "set_state: a state string has 64 hex digits, got 3 characters")
    H.assert_error(function() r:set_state(("g"):rep(64)) end, "'g' in the state string is not a hex digit")
    H.assert_error(function() r:set_state({ 0, 0, 0, 0 }) end, "set_state: the all-zero state is not valid")
    H.assert_error(function() r:set_state({ 1, 2 }) end, "set_state: a state table has 4 integers, got 2 entries")
    H.assert_error(function() core.rng(1.5) end, "rng: argument 1 (seed) must be an integer seed or a state, got number")
  end,
}
