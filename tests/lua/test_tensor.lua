-- Tensors from Lua: creation, arithmetic, methods, views, autograd, and every error
-- message of the binding (lua/bind/l_tensor*.c). Dims are 1-based; indices 0-based.
local H = require "helpers"
local close, err, shape, eq, yes = H.assert_close, H.assert_error, H.assert_shape, H.assert_eq, H.assert_true

local T = {}

-- ---------------------------------------------------------------- creation

function T.tensor_from_nested_tables(j)
  local a = j.tensor({{1, 2, 3}, {4, 5, 6}})
  shape(a, {2, 3})
  eq(a.dtype, "float32")
  close(a:totable(), {{1, 2, 3}, {4, 5, 6}})
  local s = j.tensor(2.5)
  shape(s, {})
  eq(s:item(), 2.5)
  eq(s:totable(), 2.5)
  shape(j.tensor({}), {0})
  local i = j.tensor({{1, 2}, {3, 4}}, {dtype = "int32"})
  eq(i.dtype, "int32")
  eq(i:totable()[2][1], 3)
  local c = j.tensor(a) -- a copy
  c:fill_(0)
  eq(a:sum():item(), 21)
  eq(j.tensor(i, {dtype = "float32"}).dtype, "float32")
  yes(j.tensor({1, 2}, {requires_grad = true}).requires_grad)
  yes(j.is_tensor(a) and not j.is_tensor({}))
end

function T.zeros_ones_full_empty(j)
  shape(j.zeros({2, 3}), {2, 3})
  shape(j.zeros(2, 3), {2, 3})
  eq(j.zeros(2, 3):sum():item(), 0)
  eq(j.ones({4}):sum():item(), 4)
  close(j.full({2, 2}, 1.5):totable(), {{1.5, 1.5}, {1.5, 1.5}})
  close(j.full(3, 7):totable(), {7, 7, 7})
  shape(j.empty(5), {5})
  shape(j.zeros({}), {})
  local zi = j.zeros({2}, {dtype = "int32"})
  eq(zi.dtype, "int32")
  eq(j.ones(2, {dtype = "int32"}):totable()[2], 1)
  eq(j.full({2}, 3, {dtype = "int32"}):totable()[1], 3)
  yes(j.zeros(2, {requires_grad = true}).requires_grad)
  shape(j.zeros_like(j.ones(2, 5)), {2, 5})
  eq(j.ones(3):zeros_like():sum():item(), 0)
  eq(j.zeros(3):ones_like():sum():item(), 3)
end

function T.arange(j)
  close(j.arange(4):totable(), {0, 1, 2, 3})
  close(j.arange(2, 5):totable(), {2, 3, 4})
  close(j.arange(0, 1, 0.25):totable(), {0, 0.25, 0.5, 0.75})
  close(j.arange(3, 0, -1):totable(), {3, 2, 1})
  eq(j.arange(3, {dtype = "int32"}).dtype, "int32")
  shape(j.arange(0), {0})
end

function T.rand_randn_seeds(j)
  local a = j.randn({3, 4}, {seed = 7})
  local b = j.randn({3, 4}, {seed = 7})
  close(a, b, 0)
  local c = j.randn(3, 4, {seed = 8})
  yes(math.abs((a - c):abs():sum():item()) > 0, "different seeds differ")
  j.manual_seed(5)
  local d = j.rand(100)
  j.manual_seed(5)
  close(j.rand(100), d, 0)
  yes(d:min():item() >= 0 and d:max():item() < 1, "rand in [0, 1)")
  local n = j.randn(10000, {seed = 1})
  yes(math.abs(n:mean():item()) < 0.05, "randn mean near 0")
  yes(math.abs((n * n):mean():item() - 1) < 0.05, "randn variance near 1")
  yes(j.rand({2}, {requires_grad = true}).requires_grad)
end

function T.from_ints(j)
  local c = j.from_ints({3, 0, 2})
  eq(c.dtype, "int32")
  eq(tostring(c), "tensor[3] int32 {3, 0, 2}")
  local m = j.from_ints({1, 2, 3, 4, 5, 6}, {2, 3})
  shape(m, {2, 3})
  eq(m:totable()[2][3], 6)
  shape(j.from_ints({{1}, {2}}), {2, 1})
end

-- ---------------------------------------------------------------- arithmetic

function T.arithmetic_with_numbers_either_side(j)
  local a = j.tensor({1, 2, 4})
  close(a + 1, {2, 3, 5})
  close(1 + a, {2, 3, 5})
  close(a - 1, {0, 1, 3})
  close(10 - a, {9, 8, 6})
  close(a * 2, {2, 4, 8})
  close(2 * a, {2, 4, 8})
  close(a / 2, {0.5, 1, 2})
  close(8 / a, {8, 4, 2})
  close(a ^ 2, {1, 4, 16})
  close(2 ^ a, {2, 4, 16})
  close(-a, {-1, -2, -4})
  close(a + a, {2, 4, 8})
  close(a - a, {0, 0, 0})
  close(a * a, {1, 4, 16})
  close(a / a, {1, 1, 1})
  close(a ^ a, {1, 4, 256})
  close(j.add(a, 1), {2, 3, 5})
  close(a:sub(1), {0, 1, 3})
  close(a:mul(a), {1, 4, 16})
  close(j.div(a, 4), {0.25, 0.5, 1})
  close(a:pow(0.5), {1, math.sqrt(2), 2})
  close(j.add(1, 2), 3)
end

function T.broadcasting(j)
  local a = j.tensor({{1, 2, 3}, {4, 5, 6}})
  local b = j.tensor({10, 20, 30})
  close(a + b, {{11, 22, 33}, {14, 25, 36}})
  local col = j.tensor({{1}, {2}})
  local row = j.tensor({{1, 2, 3}})
  shape(col * row, {2, 3})
  close(col * row, {{1, 2, 3}, {2, 4, 6}})
  close(a - j.tensor(1), a - 1)
end

function T.unary_ops(j)
  local x = j.tensor({-1, 0.5, 2})
  local function each(f) local r = {} for i, v in ipairs({-1, 0.5, 2}) do r[i] = f(v) end return r end
  close(x:exp(), each(math.exp))
  close(j.tensor({1, 2, 4}):log(), {0, math.log(2), math.log(4)})
  close(j.tensor({1, 4, 9}):sqrt(), {1, 2, 3})
  close(x:abs(), {1, 0.5, 2})
  close(x:relu(), {0, 0.5, 2})
  close(x:neg(), {1, -0.5, -2})
  close(j.tanh(x), each(function(v) return (math.exp(v) - math.exp(-v)) / (math.exp(v) + math.exp(-v)) end))
  close(x:sigmoid(), each(function(v) return 1 / (1 + math.exp(-v)) end))
  local c = math.sqrt(2 / math.pi)
  close(x:gelu(), each(function(v)
    local u = c * (v + 0.044715 * v ^ 3)
    local th = (math.exp(u) - math.exp(-u)) / (math.exp(u) + math.exp(-u))
    return 0.5 * v * (1 + th)
  end), 1e-5)
  close(x:quick_gelu(), each(function(v) return v / (1 + math.exp(-1.702 * v)) end), 1e-5)
  close(x:clamp(0, 1), {0, 0.5, 1})
  close(x:clamp(nil, 1), {-1, 0.5, 1})
  close(x:clamp(0), {0, 0.5, 2})
  close(x:square(), {1, 0.25, 4})
end

function T.comparisons_and_selection(j)
  local a = j.tensor({1, 2, 3})
  local b = j.tensor({3, 2, 1})
  close(j.maximum(a, b), {3, 2, 3})
  close(a:minimum(b), {1, 2, 1})
  close(a:maximum(2), {2, 2, 3})
  close(a:gt(b), {0, 0, 1})
  close(a:lt(2), {1, 0, 0})
  close(a:eq(b), {0, 1, 0})
  close(a:ge(2), {0, 1, 1})
  close(a:le(2), {1, 1, 0})
  close(a:ne(2), {1, 0, 1})
  close(j.where(a:gt(1), a, 0), {0, 2, 3})
  close(j.where(a:gt(1), -1, b), {3, -1, -1})
  close(a:where(a:gt(1), b), {3, 2, 3}) -- PyTorch order: where(mask, self, other)
  close(a:masked_fill(a:eq(2), 9), {1, 9, 3})
  yes(a:allclose(a + 1e-9) and not a:allclose(b))
end

-- ---------------------------------------------------------------- reductions

function T.reductions(j)
  local a = j.tensor({{1, 5, 3}, {4, 2, 6}})
  close(a:sum(), 21)
  shape(a:sum(), {})
  close(a:sum(1), {5, 7, 9})
  close(a:sum(2), {9, 12})
  close(a:sum(-1), {9, 12})
  shape(a:sum(2, true), {2, 1})
  close(j.sum(a, 1, true), {{5, 7, 9}})
  close(a:mean(), 3.5)
  close(a:mean(1), {2.5, 3.5, 4.5})
  close(a:max(), 6)
  close(a:min(), 1)
  local v, i = a:max(2)
  close(v, {5, 6})
  eq(i.dtype, "int32")
  eq(i:totable()[1], 1) -- indices are 0-based
  eq(i:totable()[2], 2)
  local mv, mi = a:min(1, true)
  shape(mv, {1, 3})
  eq(mi:totable()[1][2], 1)
  eq(a:argmax(2):totable()[1], 1)
  eq(a:argmin(1):totable()[3], 0)
  eq(a:argmax():item(), 5)
  close(j.tensor({3, 4}):norm(), 5)
  close(a:norm(2), {math.sqrt(35), math.sqrt(56)})
  close(j.tensor({0, 0}):logsumexp(), math.log(2))
  local sm = a:softmax(2)
  close(sm:sum(2), {1, 1})
  close(a:log_softmax(-1):exp(), sm)
  close(j.tensor({{1, 9, 3, 7}}):topk_mean(2), {8})
end

-- ---------------------------------------------------------------- linear algebra, shape ops

function T.matmul(j)
  local a = j.tensor({{1, 2}, {3, 4}})
  local b = j.tensor({{5, 6}, {7, 8}})
  close(a:matmul(b), {{19, 22}, {43, 50}})
  close(j.matmul(a, j.tensor({1, 1})), {3, 7})
  shape(j.matmul(j.ones(5, 2, 3), j.ones(3, 4)), {5, 2, 4})
end

function T.concat_index_gather_embedding(j)
  local a = j.tensor({{1, 2}, {3, 4}})
  close(j.concat({a, a}), {{1, 2}, {3, 4}, {1, 2}, {3, 4}})
  close(j.cat({a, a}, 2), {{1, 2, 1, 2}, {3, 4, 3, 4}})
  close(a:index_select(1, j.from_ints({1, 1, 0})), {{3, 4}, {3, 4}, {1, 2}})
  close(a:gather(2, j.from_ints({{1}, {0}})), {{2}, {3}})
  local w = j.tensor({{0, 0}, {1, 1}, {2, 2}})
  close(j.embedding(w, j.from_ints({2, 0})), {{2, 2}, {0, 0}})
  close(w:embedding(j.from_ints({{1}})), {{{1, 1}}})
end

function T.layer_norm(j)
  local x = j.tensor({{1, 2, 3}, {2, 4, 6}})
  local y = j.layer_norm(x)
  close(y:mean(2), {0, 0}, 1e-5)
  close(j.layer_norm(x, j.ones(3), j.zeros(3), 1e-5), y)
  close(x:layer_norm(nil, nil, {eps = 1e-5}), y)
end

function T.dtype_conversion(j)
  local f = j.tensor({1.7, -2.2, 3})
  local i = f:int()
  eq(i.dtype, "int32")
  eq(i:float().dtype, "float32")
  yes(rawequal(f:float(), f), "float() of a float tensor is itself")
  yes(rawequal(i:int(), i), "int() of an int tensor is itself")
end

-- ---------------------------------------------------------------- views

function T.views(j)
  local a = j.arange(6)
  shape(a:view(2, 3), {2, 3})
  shape(a:view({3, -1}), {3, 2})
  shape(a:reshape(-1, 2), {3, 2})
  shape(a:view(2, 3):flatten(), {6})
  local m = a:view(2, 3)
  local t = m:transpose(1, 2)
  shape(t, {3, 2})
  yes(not t:is_contiguous(), "a transpose is not contiguous")
  yes(t:contiguous():is_contiguous())
  close(t, {{0, 3}, {1, 4}, {2, 5}})
  close(m:transpose(), t)
  close(m:transpose(-1, -2), t)
  local p = j.arange(24):view(2, 3, 4)
  shape(p:permute(3, 1, 2), {4, 2, 3})
  shape(p:permute({2, 3, 1}), {3, 4, 2})
  shape(p:permute(-1, 1, 2), {4, 2, 3})
  close(m:narrow(2, 2, 2), {{1, 2}, {4, 5}})
  close(m:narrow(2, -1, 1), {{2}, {5}})
  close(m:select(1, 2), {3, 4, 5})
  close(m:select(2, -1), {2, 5})
  local r = j.tensor({{1, 2, 3}})
  close(r:expand(2, 3), {{1, 2, 3}, {1, 2, 3}})
  close(r:expand({2, -1}), {{1, 2, 3}, {1, 2, 3}})
  shape(j.tensor({1, 2}):expand(4, 2), {4, 2})
  shape(r:expand_as(j.zeros(5, 3)), {5, 3})
  shape(m:unsqueeze(1), {1, 2, 3})
  shape(m:unsqueeze(3), {2, 3, 1})
  shape(m:unsqueeze(-1), {2, 3, 1})
  shape(j.zeros(1, 2, 1):squeeze(), {2})
  shape(j.zeros(1, 2, 1):squeeze(3), {1, 2})
  shape(j.zeros(1, 2, 1):squeeze(-1), {1, 2})
end

function T.views_share_storage_clone_does_not(j)
  local a = j.zeros(2, 3)
  a:narrow(2, 2, 1):fill_(5)
  close(a, {{0, 5, 0}, {0, 5, 0}})
  local c = a:clone()
  c:fill_(1)
  eq(a:sum():item(), 10)
  local d = a:detach()
  d:fill_(2)
  eq(a:sum():item(), 12)
  a:view(6):narrow(1, 1, 1):fill_(0)
  eq(a:totable()[1][1], 0)
end

-- ---------------------------------------------------------------- inspection & conversion

function T.inspection(j)
  local a = j.zeros(2, 3, 4)
  eq(a:numel(), 24)
  eq(j.numel(a), 24)
  eq(a:dim(), 3)
  eq(#a, 2)
  eq(a:size(1), 2)
  eq(a:size(-1), 4)
  eq(a:size()[3], 4)
  eq(a:shape()[2], 3)
  eq(#a:shape(), 3)
  eq(j.tensor(3):dim(), 0)
  eq(j.tensor({{7}}):item(), 7)
  eq(a.is_leaf, true)
  eq(a.grad, nil)
  eq(a.grad_fn, nil)
  eq(a.requires_grad, false)
  eq(a.nonexistent_field, nil)
end

function T.tostring(j)
  eq(tostring(j.tensor({{1, 2, 3}, {4, 5, 6}})), "tensor[2, 3] float32 {1, 2, 3, 4, 5, 6}")
  eq(tostring(j.arange(10)), "tensor[10] float32 {0, 1, 2, 3, 4, 5, 6, 7, ...}")
  eq(tostring(j.tensor(2.5)), "tensor[] float32 {2.5}")
  eq(tostring(j.zeros(0)), "tensor[0] float32 {}")
  eq(tostring(j.from_ints({-3, 4})), "tensor[2] int32 {-3, 4}")
  eq(tostring(j.tensor({{1, 2}, {3, 4}}):transpose(1, 2)), "tensor[2, 2] float32 {1, 3, 2, 4}")
end

function T.totable_of_views_and_ints(j)
  local m = j.arange(6):view(2, 3):transpose(1, 2)
  close(m:totable(), {{0, 3}, {1, 4}, {2, 5}})
  local i = j.from_ints({{1, 2}, {3, 4}})
  eq(math.type(i:totable()[2][2]), "integer")
  eq(math.type(i:narrow(1, 2, 1):narrow(2, 1, 1):item()), "integer")
  eq(math.type(j.tensor(1):item()), "float")
end

function T.close_is_idempotent(j)
  local t = j.zeros(2)
  do
    local c <close> = t
  end
  err(function() return t + 1 end, "tensor: used after close")
  getmetatable(t).__close(t) -- a second close does nothing
  getmetatable(t).__gc(t)
  err(function() return t:sum() end, "tensor: used after close")
end

function T.copy_and_fill(j)
  local a = j.zeros(2, 2)
  yes(rawequal(a:copy_(j.tensor({{1, 2}, {3, 4}})), a), "copy_ returns self")
  close(a, {{1, 2}, {3, 4}})
  a:transpose(1, 2):copy_(j.tensor({{1, 2}, {3, 4}}))
  close(a, {{1, 3}, {2, 4}})
  yes(rawequal(a:fill_(3), a))
  eq(a:sum():item(), 12)
  local i = j.zeros({3}, {dtype = "int32"})
  i:fill_(4)
  eq(tostring(i), "tensor[3] int32 {4, 4, 4}")
end

-- ---------------------------------------------------------------- autograd

function T.backward_through_an_expression(j)
  local a = j.tensor({1, 2}, {requires_grad = true})
  local b = j.tensor({3, 4}, {requires_grad = true})
  local l = (a * b + a ^ 2):sum()
  eq(l.is_leaf, false)
  yes(l.grad_fn ~= nil)
  close(l, 1 * 3 + 2 * 4 + 1 + 4)
  l:backward()
  close(a.grad, {3 + 2, 4 + 4})
  close(b.grad, {1, 2})
end

function T.gradient_accumulates_and_zero_grad(j)
  local a = j.tensor({1, 2, 3}, {requires_grad = true})
  ;(a * a):sum():backward()
  close(a.grad, {2, 4, 6})
  ;(a * 3):sum():backward()
  close(a.grad, {5, 7, 9})
  a:zero_grad()
  eq(a.grad, nil)
  ;(a * 2):sum():backward()
  close(a.grad, {2, 2, 2})
  a.grad = nil
  eq(a.grad, nil)
  a.grad = j.ones(3)
  close(a.grad, {1, 1, 1})
end

function T.backward_with_broadcast_and_views(j)
  local a = j.ones({2, 3}, {requires_grad = true})
  local b = j.tensor({1, 2, 3}, {requires_grad = true})
  ;(a * b):sum():backward()
  close(b.grad, {2, 2, 2})
  close(a.grad, {{1, 2, 3}, {1, 2, 3}})
  local x = j.arange(6, {requires_grad = true})
  x:view(2, 3):transpose(1, 2):narrow(1, 2, 2):sum():backward()
  close(x.grad, {0, 1, 1, 0, 1, 1})
  local g = j.tensor({1, 2}, {requires_grad = true})
  local y = g * 3
  y:backward(j.tensor({1, 10}))
  close(g.grad, {3, 30})
end

function T.straight_through_passes_gradient(j)
  local a = j.tensor({1, 2}, {requires_grad = true})
  local b = j.tensor({5, 7})
  local st = j.straight_through(a, b)
  close(st, {5, 7})
  st:sum():backward()
  close(a.grad, {1, 1})
end

function T.requires_grad_flags(j)
  local a = j.zeros(2)
  yes(rawequal(a:requires_grad_(), a))
  eq(a.requires_grad, true)
  a:requires_grad_(false)
  eq(a.requires_grad, false)
  a.requires_grad = true
  eq(a.requires_grad, true)
  local d = (a * 2):detach()
  eq(d.requires_grad, false)
  eq(d.is_leaf, true)
end

function T.no_grad_and_grad_mode(j)
  local a = j.tensor({1, 2}, {requires_grad = true})
  local y, z = j.no_grad(function(x, k) return x * k, "second" end, a, 2)
  eq(y.requires_grad, false)
  eq(z, "second")
  eq(j.is_grad_enabled(), true)
  local ok, msg = pcall(j.no_grad, function() error("boom") end)
  yes(not ok and msg:find("boom", 1, true), "the error passes through")
  eq(j.is_grad_enabled(), true, "grad mode restored after an error")
  j.no_grad(function()
    j.no_grad(function() end)
    eq(j.is_grad_enabled(), false, "nested no_grad keeps grad off")
  end)
  eq(j.set_grad_enabled(false), true)
  eq((a * 2).requires_grad, false)
  eq(j.set_grad_enabled(true), false)
  eq((a * 2).requires_grad, true)
end

-- Resident memory in kB, or nil off Linux.
local function rss_kb()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local rss = tonumber(f:read("a"):match("VmRSS:%s*(%d+)"))
  f:close()
  return rss
end

function T.memory_stays_bounded_in_loops(j)
  -- 1,000 tensors of 1 MB: without the GC hints of new tensors the heap would grow by
  -- 1 GB. Growth, not the total: earlier tests (and ASAN's quarantine of freed memory,
  -- up to 256 MB) decide where the process starts.
  local before = rss_kb()
  for _ = 1, 1000 do
    local t = j.zeros(262144)
  end
  local after = rss_kb()
  if before and after then
    yes(after - before < 300 * 1024, ("RSS grew by %d kB in the loop"):format(after - before))
  end
end

-- ---------------------------------------------------------------- errors

function T.errors_argument_types(j)
  local a = j.ones(2, 3)
  err(function() return j.matmul(a, "x") end, "matmul: argument 2 (other) must be a tensor, got string")
  err(function() return a:matmul() end, "matmul: argument 2 (other) must be a tensor, got no value")
  err(function() return a + "x" end, "add: argument 2 (other) must be a tensor or a number, got string")
  err(function() return "x" * a end, "mul: argument 1 (input) must be a tensor or a number, got string")
  err(function() return a - {} end, "sub: argument 2 (other) must be a tensor or a number, got table")
  err(function() return j.maximum(a, true) end, "maximum: argument 2 (other) must be a tensor or a number, got boolean")
  err(function() return a.sum(5) end, "sum: argument 1 (input) must be a tensor, got number")
  err(function() return j.exp(io.stdout) end, "exp: argument 1 (input) must be a tensor, got FILE*")
  err(function() return j.where(1, a, a) end, "where: argument 1 (condition) must be a tensor, got number")
  err(function() return j.where(a, a, "x") end, "where: argument 3 (other) must be a tensor or a number, got string")
  err(function() return a:clamp("x") end, "clamp: argument 2 (min) must be a number, got string")
  err(function() return a:masked_fill(a) end, "masked_fill: argument 3 (value) must be a number, got no value")
  err(function() return a:topk_mean(1.5) end, "topk_mean: argument 2 (k) must be an integer, got 1.5")
  err(function() return a:fill_("x") end, "fill_: argument 2 (value) must be a number, got string")
  err(function() return j.no_grad(5) end, "no_grad: argument 1 (fn) must be a function, got number")
  err(function() return j.set_grad_enabled("x") end, "set_grad_enabled: argument 1 (enabled) must be a boolean, got string")
  err(function() return j.manual_seed("x") end, "manual_seed: argument 1 (seed) must be an integer, got string")
  err(function() return a:requires_grad_(1) end, "requires_grad_: argument 2 (flag) must be a boolean, got number")
  err(function() return j.layer_norm(a, nil, nil, {eps = "x"}) end, "layer_norm: option 'eps' must be a number, got string")
  err(function() return j.conv1d(j.ones(1, 1, 4), j.ones(1, 1, 2), nil, {stride = "x"}) end,
    "conv1d: option 'stride' must be an integer, got string")
end

function T.errors_creation(j)
  err(function() return j.tensor({{1, 2, 3}, {4, 5}}) end, "tensor: ragged nested table at depth 2: expected 3 elements, got 2")
  err(function() return j.tensor({{1, 2}, 3}) end,
    "tensor: ragged nested table at depth 2: element [2] is number, expected a table of 2 elements")
  err(function() return j.tensor({{1, 2}, {3, {4}}}) end,
    "tensor: ragged nested table at depth 2: element [2][2] is a table, expected a number")
  err(function() return j.tensor({{{1}, {2}}, {{3}, {4, 5}}}) end,
    "tensor: ragged nested table at depth 3: expected 1 elements, got 2")
  err(function() return j.tensor({1, "x"}) end, "tensor: element [2] is string, expected a number")
  err(function() return j.tensor({{"x"}}) end, "tensor: element [1][1] is string, expected a number")
  err(function() return j.tensor(true) end,
    "tensor: argument 1 (data) must be a number, a nested table of numbers or a tensor, got boolean")
  err(function() return j.tensor({1.5}, {dtype = "int32"}) end, "tensor: element [1] = 1.5 is not an int32 integer")
  err(function() return j.tensor(1.5, {dtype = "int32"}) end, "tensor: 1.5 is not an int32 integer")
  err(function() return j.tensor({1}, {dtype = "float64"}) end,
    "tensor: option 'dtype' must be \"float32\" or \"int32\", got \"float64\"")
  err(function() return j.tensor({1}, {dtype = 3}) end, "tensor: option 'dtype' must be \"float32\" or \"int32\", got number")
  err(function() return j.zeros({2}, {requires_gradient = true}) end,
    "zeros: unknown option 'requires_gradient' (known: dtype, requires_grad)")
  err(function() return j.zeros({2}, {1}) end, "zeros: unknown option [1] (known: dtype, requires_grad)")
  err(function() return j.randn({2}, {dtype = "int32"}) end, "randn: unknown option 'dtype' (known: seed, requires_grad)")
  err(function() return j.zeros({2}, "x") end, "zeros: argument 2 (options) must be a table, got string")
  err(function() return j.ones({2}, {requires_grad = 1}) end, "ones: option 'requires_grad' must be a boolean, got number")
  err(function() return j.randn({2}, {seed = 1.5}) end, "randn: option 'seed' must be an integer, got 1.5")
  err(function() return j.randn({2}, {seed = "x"}) end, "randn: option 'seed' must be an integer, got string")
  err(function() return j.zeros("x") end, "zeros: argument 1 (shape) must be a table of sizes or sizes as numbers, got string")
  err(function() return j.zeros() end, "zeros: argument 1 (shape) must be a table of sizes or sizes as numbers, got no value")
  err(function() return j.zeros({2, -1}) end, "zeros: size -1 in dim 2 must be a non-negative integer")
  err(function() return j.ones({2.5}) end, "ones: size 2.5 in dim 1 must be a non-negative integer")
  err(function() return j.ones({"x"}) end, "ones: size in dim 1 must be a non-negative integer, got string")
  err(function() return j.zeros({1, 1, 1, 1, 1, 1, 1, 1, 1}) end, "zeros: 9 dims given, at most 8 supported")
  err(function() return j.zeros(1, 1, 1, 1, 1, 1, 1, 1, 1) end, "zeros: more than 8 dims given")
  err(function() return j.full({2}) end, "full: argument 2 (value) must be a number, got no value")
  err(function() return j.full({2}, 1.5, {dtype = "int32"}) end, "full: value 1.5 is not an int32 integer")
  err(function() return j.from_ints(3) end, "from_ints: argument 1 (data) must be a table of integers, got number")
  err(function() return j.from_ints({1, 2, 3}, {2, 2}) end, "from_ints: the table has 3 elements, the shape needs 4")
  err(function() return j.from_ints({1, 2.5}) end, "from_ints: element [2] = 2.5 is not an int32 integer")
  err(function() return j.arange() end, "arange: argument 1 (stop) must be a number, got no value")
  err(function() return j.arange(0, 1, 0) end, "arange: step must be non-zero")
  err(function() return j.zeros_like(3) end, "zeros_like: argument 1 (input) must be a tensor, got number")
end

function T.errors_item_len_index(j)
  local a = j.ones(2, 3)
  err(function() return a:item() end, "item: tensor of shape [2, 3] has 6 elements, expected exactly one")
  err(function() return j.zeros(0):item() end, "item: tensor of shape [0] has 0 elements, expected exactly one")
  err(function() return #j.tensor(1) end, "tensor: # (length) of a 0-dim tensor is undefined")
  err(function() return a[1] end, "tensor: t[i] indexing is not supported")
  err(function() return j.tensor(1):size(1) end, "size: a 0-dim tensor has no dims")
  err(function() a.foo = 1 end, "tensor: cannot set field 'foo' (settable: requires_grad, grad)")
  err(function() a[1] = 1 end, "tensor: cannot set a number key (settable: requires_grad, grad)")
end

function T.errors_dims(j)
  local a = j.ones(2, 3)
  err(function() return a:sum(3) end,
    "sum: dim 3 out of range for a tensor of shape [2, 3] (dims are 1-based: 1..2, or -2..-1 from the end)")
  err(function() return a:sum(0) end, "sum: dim 0 out of range for a tensor of shape [2, 3]")
  err(function() return a:mean(-3) end, "mean: dim -3 out of range")
  err(function() return a:sum("x") end, "sum: argument 2 (dim) must be an integer, got string")
  err(function() return a:sum(1.5) end, "sum: argument 2 (dim) must be an integer, got 1.5")
  err(function() return a:sum(1, 1) end, "sum: argument 3 (keepdim) must be a boolean, got number")
  err(function() return a:max(5) end, "max: dim 5 out of range")
  err(function() return a:argmax(0) end, "argmax: dim 0 out of range")
  err(function() return a:softmax() end, "softmax: argument 2 (dim) must be an integer, got no value")
  err(function() return a:log_softmax(3) end, "log_softmax: dim 3 out of range")
  err(function() return a:size(3) end, "size: dim 3 out of range")
  err(function() return a:transpose(1, 3) end, "transpose: dim 3 out of range")
  err(function() return j.concat({a, a}, 3) end, "concat: dim 3 out of range")
  err(function() return a:index_select(0, j.from_ints({0})) end, "index_select: dim 0 out of range")
  err(function() return a:gather(4, j.from_ints({{0}})) end, "gather: dim 4 out of range")
  err(function() return a:unsqueeze(4) end,
    "unsqueeze: dim 4 out of range for a tensor of shape [2, 3] (1..3, or -3..-1 from the end)")
  err(function() return a:unsqueeze(0) end, "unsqueeze: dim 0 out of range")
  err(function() return a:squeeze(1) end, "squeeze: dim 1 of [2, 3] is not of size 1")
  err(function() return a:squeeze(3) end, "squeeze: dim 3 out of range")
end

function T.errors_views(j)
  local a = j.ones(2, 3)
  err(function() return a:narrow(1, 0, 1) end,
    "narrow: argument 3 (start) must be a 1-based position in 1..3 (or -2..-1 from the end), got 0")
  err(function() return a:narrow(1, -3, 1) end, "narrow: argument 3 (start) must be a 1-based position")
  -- what a range means is the core's to check (core/view.c); its messages count as Lua does
  err(function() return a:narrow(1, 2, 2) end, "narrow: range [2, 4) is outside dim 1 of size 2 in [2, 3]")
  err(function() return a:narrow(2, 1, -1) end, "narrow: range [1, 0) is outside dim 2 of size 3")
  err(function() return j.tensor(1):narrow(1, 1, 1) end, "narrow: cannot narrow a 0-dim tensor")
  err(function() return a:narrow(1, "x", 1) end, "narrow: argument 3 (start) must be an integer, got string")
  err(function() return a:select(1, 3) end, "select: argument 3 (index) must be a 1-based position in 1..2 (or -2..-1 from the end), got 3")
  err(function() return j.tensor(1):select(1, 1) end, "select: cannot select from a 0-dim tensor")
  err(function() return a:permute(1) end, "permute: the order gives 1 dims, the tensor [2, 3] has 2")
  err(function() return a:permute(1, 1) end, "permute: order is not a permutation of the 2 dims of [2, 3]")
  err(function() return a:permute({1, "x"}) end, "permute: element 2 of the order must be an integer dim, got string")
  err(function() return a:permute(1, 3) end, "permute: dim 3 out of range")
  err(function() return a:expand(2, 4) end, "expand: dim 2 of [2, 3] has size 3, cannot expand to 4")
  err(function() return a:expand(-1, 2, 3) end, "expand: size -1 is not allowed for the new leading dim 1")
  err(function() return a:expand(3) end, "expand: cannot expand [2, 3] to 1 dims")
  err(function() return a:expand_as(j.ones(3)) end, "expand: cannot expand [2, 3] to 1 dims")
  err(function() return a:view(4, -1) end, "view: cannot view [2, 3] (6 elements) as [4, -1]")
  err(function() return a:view({2, -2}) end, "view: size -2 in dim 2 must be a non-negative integer or -1")
  err(function() return a:reshape("x") end, "reshape: argument 2 (shape) must be a table of sizes or sizes as numbers, got string")
  err(function() return j.concat(a) end, "concat: argument 1 (tensors) must be a list of tensors, got tensor")
  err(function() return j.concat({}) end, "concat: argument 1 (tensors) must be a non-empty list of tensors, got an empty one")
  err(function() return j.concat({a, 2}) end, "concat: argument 1 (tensors) must be a list of tensors, got number at [2]")
  err(function() return a:copy_(j.ones(4)) end, "copy: destination [2, 3] and source [4] differ in size")
  err(function() return j.zeros({2}, {dtype = "int32"}):fill_(1.5) end, "fill_: value 1.5 is not an int32 integer")
end

-- Errors that used to be Lua's stock "bad argument #N" now name the function, the
-- argument and what was expected, in every room of the binding.
function T.errors_named_in_every_room(j)
  local c = j.core
  local x = j.ones(1, 1, 8)
  local r = c.rng(1)
  err(function() return r:below(0) end, "rng:below: argument 1 (n) must be an integer >= 1, got 0")
  err(function() return r:below(2.5) end, "rng:below: argument 1 (n) must be an integer, got 2.5")
  err(function() return r:seed("x") end, "rng:seed: argument 1 (seed) must be an integer, got string")
  err(function() return c.conv1d(x, nil) end, "conv1d: argument 2 (weight) must be a tensor, got nil")
  err(function() return c.res_conv_block(x, x, nil, x, nil, "2") end,
    "res_conv_block: argument 6 (dilation) must be an integer, got string")
  err(function() return c.stft_mag(j.ones(64), "16") end, "stft_mag: argument 2 (n_fft) must be an integer, got string")
  err(function() return c.mel_filterbank(64, 8000, 8, 0, -1) end,
    "mel_filterbank: argument 5 (fmax) must be a number > 0, got -1")
  err(function() return c.adam_step(x, x, x) end, "adam_step: argument 4 (options) must be a table, got no value")
  err(function() return c.ema_update(x, x) end, "ema_update: argument 3 (decay) must be a number, got no value")
  err(function() return c.set_threads(0) end, "set_threads: argument 1 (n) must be an integer in 1..2147483647, got 0")
  err(function() return c.isatty("x") end, "isatty: argument 1 (fd) must be an integer, got string")
  err(function() return c.list_dir(5) end, "list_dir: argument 1 (path) must be a string, got number")
  err(function() return c.fsync_write("x") end, "fsync_write: argument 2 (text) must be a string, got no value")
  err(function() return c.json_decode({}) end, "json_decode: argument 1 (text) must be a string, got table")
  err(function() return c.safetensors_load() end, "safetensors_load: argument 1 (path) must be a string, got no value")
  err(function() return c.audio.save("x.wav", x, "fast") end,
    "audio.save: argument 3 (rate) must be an integer, got string")
  err(function() return c.audio.info(nil) end, "audio.info: argument 1 (path) must be a string, got nil")
  err(function() return c.vq_init(x, x, x, x, "seed") end,
    "vq_init: argument 5 (rng) must be an Rng or an integer seed, got string")
end

function T.errors_autograd(j)
  local i = j.from_ints({1, 2})
  err(function() i.requires_grad = true end, "tensor: requires_grad needs a float32 tensor, this one is int32 [2]")
  err(function() return i:requires_grad_() end, "requires_grad_: requires_grad needs a float32 tensor, this one is int32 [2]")
  err(function() return j.zeros({2}, {dtype = "int32", requires_grad = true}) end,
    "zeros: requires_grad needs a float32 tensor, this one is int32 [2]")
  local a = j.ones({2}, {requires_grad = true})
  local b = a * a
  err(function() b.requires_grad = false end,
    "tensor: requires_grad can only be changed on a leaf tensor; this one was made by 'mul' (use t:detach())")
  err(function() a.requires_grad = 1 end, "tensor: requires_grad must be a boolean, got number")
  err(function() a.grad = "x" end, "tensor: grad must be a tensor or nil, got string")
  err(function() a.grad = j.ones(3) end, "tensor: grad must be a float32 tensor of shape [2], got float32 [3]")
  err(function() b:backward() end, "backward: the tensor [2] has more than one element; pass a gradient")
  err(function() j.ones(1):backward() end, "backward: the tensor [1] does not require grad")
  err(function() b:backward("x") end, "backward: argument 2 (gradient) must be a tensor, got string")
  local l = (a * a):sum()
  l:backward()
  err(function() l:backward() end, "already freed by an earlier backward")
end

return T
