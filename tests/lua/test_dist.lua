-- The dist room at world size 1 (core.dist: a plain jbx is one process), the flat
-- parameter arenas behind optim.adam, and the pieces of data parallelism that one
-- process can check: per-rank crops, the EMA update's `across` form (the windows of
-- a prior: test_codes.lua). The
-- runs on two ranks are tests/lua/test_dist_mpi.lua (ctest mpi_dist).
local H = require "helpers"
local optim = require "jukebox.optim"
local data = require "jukebox.data"
local nn = require "jukebox.nn"

local T = {}

function T.world_of_one_process(jbx)
  local d = jbx.dist
  H.assert_eq(d.rank(), 0, "rank")
  H.assert_eq(d.size(), 1, "size")
  H.assert_eq(type(d.mpi), "boolean", "dist.mpi says how jbx was built")
  local t = jbx.tensor({ 1, 2, 3 })
  H.assert_true(rawequal(d.allreduce_mean(t), t), "in place, returns its tensor")
  H.assert_close(t, { 1, 2, 3 }, 0, "the mean over one process")
  H.assert_close(d.allreduce_sum(t), { 1, 2, 3 }, 0, "the sum over one process")
  H.assert_close(d.broadcast(jbx.tensor({ 4, 5 }), 0), { 4, 5 }, 0, "broadcast from rank 0")
  H.assert_close(d.broadcast(jbx.from_ints({ 7 }, { 1 }), 0):totable(), { 7 }, 0, "int32 too")
  d.barrier()
  H.assert_eq(d.any(false), false, "any(false)")
  H.assert_eq(d.any(true), true, "any(true)")
  local sums = d.sum_numbers({ 1.5, 2 ^ 40 + 1 })
  H.assert_eq(sums[1], 1.5, "sum_numbers keeps doubles")
  H.assert_eq(sums[2], 2 ^ 40 + 1, "to the last bit")
end

function T.dist_errors(jbx)
  local d = jbx.dist
  H.assert_error(function() d.broadcast(jbx.tensor({ 1 }), 1) end, "dist.broadcast: root 1 is not a rank (0 to 0)")
  H.assert_error(function() d.allreduce_mean(jbx.zeros({ 2, 3 }):transpose(1, 2)) end,
    "dist.allreduce_mean: tensor float32 [3, 2] must be contiguous float32")
  H.assert_error(function() d.allreduce_sum(jbx.from_ints({ 1 }, { 1 })) end, "must be contiguous float32")
  H.assert_error(function() d.allreduce_mean(jbx.zeros({ 2 }, { requires_grad = true })) end,
    "dist.allreduce_mean: tensor [2] requires grad")
  H.assert_error(function() d.sum_numbers({ 1, "x" }) end, "dist.sum_numbers: numbers[2] must be a number, got string")
end

-- Two small modules' parameters, as a model's.
local function two_layers(jbx)
  local seeds = nn.seeder(5)
  local a, b = nn.Linear.new(3, 4, { seeds = seeds }), nn.Linear.new(4, 2, { seeds = seeds })
  local named = {}
  for _, m in ipairs({ { "a", a }, { "b", b } }) do
    for _, p in ipairs(m[2]:named_parameters()) do named[#named + 1] = { name = m[1] .. "." .. p.name, tensor = p.tensor } end
  end
  return a, b, named
end

function T.arena_makes_parameters_views_of_one_storage(jbx)
  local a, b, named = two_layers(jbx)
  local before = {}
  for i, p in ipairs(named) do before[i] = p.tensor:clone() end
  local opt = optim.adam(named, { warmup = 0 })
  -- Values unchanged; slots start on 16-float boundaries: w 12 -> 16, b 4 -> 16, w 8 -> 16, b 2 -> 16.
  for i, p in ipairs(named) do H.assert_close(p.tensor, before[i], 0, "values of " .. p.name) end
  H.assert_eq(opt.arena:size(), 64, "arena elements")
  H.assert_eq(opt.arena:count(), 4, "parameters")
  -- A write to the arena is a write to the parameter, and the other way round.
  opt.weights:fill_(0.5)
  H.assert_close(a.w, jbx.full({ 3, 4 }, 0.5), 0, "a.w reads the arena")
  b.b:fill_(2)
  H.assert_close(opt.weights:narrow(1, 49, 2), { 2, 2 }, 0, "b.b's slot")
  -- Backward accumulates into the gradient arena in place.
  local x = jbx.randn({ 5, 3 }, { seed = 1 })
  local loss = b:forward(a:forward(x)):sum()
  loss:backward()
  local g_before = a.w.grad:clone()
  H.assert_true(math.abs(opt.grads:sum():item()) > 0, "gradients landed in the arena")
  H.assert_close(opt.arena:slot(opt.grads, 1), g_before, 0, "a.w.grad is its slot")
  b:forward(a:forward(x)):sum():backward()
  H.assert_close(a.w.grad, g_before * 2, 1e-6, "a second backward adds")
  opt:zero_grad()
  H.assert_close(opt.grads, jbx.zeros({ 64 }), 0, "zero_grad: one memset")
  H.assert_close(a.w.grad, jbx.zeros({ 3, 4 }), 0, "a.w.grad stays attached")
end

function T.arena_takes_back_replaced_gradients(jbx)
  local a, _, named = two_layers(jbx)
  local opt = optim.adam(named, { warmup = 0 })
  a.w.grad = jbx.full({ 3, 4 }, 3)
  a.b.grad = nil
  opt.arena:collect_grads()
  H.assert_close(opt.arena:slot(opt.grads, 1), jbx.full({ 3, 4 }, 3), 0, "a grad set by hand is copied in")
  H.assert_close(opt.arena:slot(opt.grads, 2), jbx.zeros({ 4 }), 0, "a removed grad is zeros")
  H.assert_close(a.w.grad, jbx.full({ 3, 4 }, 3), 0, "and the parameter sees its slot")
  -- nn.Module:zero_grad (grad = nil) then a backward: the step still sees the gradient.
  a:zero_grad()
  a:forward(jbx.ones({ 1, 3 })):sum():backward()
  local want = a.w.grad:clone()
  local gn = opt:step_update()
  H.assert_true(gn > 0, "the step saw the new gradient")
  H.assert_close(opt.arena:slot(opt.grads, 1), want, 0, "collected before the step")
end

function T.arena_checkpoint_names_unchanged_and_errors(jbx)
  local _, _, named = two_layers(jbx)
  local opt = optim.adam(named, { ema = 0.5 })
  local st = opt:state_tensors()
  for _, p in ipairs(named) do
    H.assert_shape(st["adam.m." .. p.name], p.tensor:shape(), "adam.m." .. p.name)
    H.assert_shape(st["adam.v." .. p.name], p.tensor:shape(), "adam.v." .. p.name)
    H.assert_shape(st["ema." .. p.name], p.tensor:shape(), "ema." .. p.name)
  end
  -- A tied parameter listed twice takes one slot.
  local w = jbx.ones({ 2 })
  local tied = optim.adam({ { name = "x", tensor = w }, { name = "y", tensor = w } })
  H.assert_eq(tied.arena:count(), 1, "one slot for a tensor listed twice")
  H.assert_error(function() jbx.param_arena({ jbx.ones({ 2 }), "w" }) end,
    "param_arena: parameter 2 must be a tensor, got string")
  H.assert_error(function() jbx.param_arena({ jbx.from_ints({ 1 }, { 1 }) }) end,
    "param_arena: parameter 1 (int32 [1]) must be a float32 leaf tensor")
  local made = jbx.ones({ 2 }, { requires_grad = true }) * 2
  H.assert_error(function() jbx.param_arena({ made }) end, "must be a float32 leaf tensor")
  H.assert_error(function() opt.arena:slot(jbx.zeros({ 3 }), 1) end,
    "param_arena: a flat tensor must be contiguous float32 [64], got [3]")
end

function T.loader_ranks_share_one_global_batch(jbx)
  local function loader(rank, ranks, batch)
    return data.loader({ dir = "data", batch = batch, length = 512, seed = 9, rank = rank, ranks = ranks, quiet = true })
  end
  local one, r0, r1 = loader(0, 1, 4), loader(0, 2, 2), loader(1, 2, 2)
  for step = 1, 3 do
    local whole = one:next()
    H.assert_close(r0:next(), whole:narrow(1, 1, 2), 0, "rank 0's part, batch " .. step)
    H.assert_close(r1:next(), whole:narrow(1, 3, 2), 0, "rank 1's part, batch " .. step)
  end
  H.assert_eq(r0:get_state(), one:get_state(), "every rank's generator follows the global sequence")
  H.assert_eq(r1:get_state(), one:get_state(), "on rank 1 too")
  H.assert_error(function() loader(2, 2, 2) end, "data.loader: rank 2 is not below ranks 2")
end

function T.vq_across_is_the_plain_update_on_one_process(jbx)
  local C = jbx.core
  local x = jbx.randn({ 40, 4 }, { seed = 2 })
  local function state() return { jbx.zeros({ 8, 4 }), jbx.zeros({ 8, 4 }), jbx.zeros({ 8 }) } end
  local a, b = state(), state()
  C.vq_init(a[1], a[2], a[3], x, 11)
  C.vq_init(b[1], b[2], b[3], x, 11, { across = true })
  H.assert_close(a[1], b[1], 0, "init")
  local codes = C.vq_assign(x * 1.5, a[1])
  local ra, rb = C.rng(4), C.rng(4)
  local ma = C.vq_ema_update(a[1], a[2], a[3], x * 1.5, codes, { rng = ra, threshold = 6 })
  local mb = C.vq_ema_update(b[1], b[2], b[3], x * 1.5, codes, { rng = rb, threshold = 6, across = true })
  H.assert_true(ma.usage < 8, "some codes restarted")
  for i = 1, 3 do H.assert_close(a[i], b[i], 0, "state " .. i) end
  for _, k in ipairs({ "usage", "used_curr", "entropy", "dk", "fit", "pn" }) do H.assert_eq(ma[k], mb[k], k) end
  H.assert_error(function() C.vq_ema_update(a[1], a[2], a[3], x, codes, { across = 1 }) end, "across")
end

return T
