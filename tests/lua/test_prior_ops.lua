-- The prior's dense ops through the binding: core.linear (the reference's Conv1D, bias
-- fused), core.cross_entropy (fused log-softmax + NLL, nats), losses.bits_per_token, and
-- nn.Linear on core.linear; values against the PyTorch fixture
-- (tools/fixtures/prior_ops.py) and the composed ops, gradients, and the errors a Lua
-- user can reach (dims and positions counted from 1).
local H = require "helpers"
local eq = H.assert_eq

local T = {}

local fix
local function fixture(jbx)
  fix = fix or H.read_fixture("tests/fixtures/prior_ops.fix")
  return function(name)
    local a = fix[name]
    assert(a, "no fixture array " .. name)
    local t = jbx.tensor(a.data, { dtype = a.dtype == "i32" and "int32" or "float32" })
    return t:reshape(a.shape)
  end
end

local function leaf(t) return t:detach():clone():requires_grad_(true) end

function T.linear_against_pytorch(jbx)
  local F = fixture(jbx)
  local x, w, b, g = leaf(F("lin_x")), leaf(F("lin_w")), leaf(F("lin_b")), F("lin_g")
  local y = jbx.linear(x, w, b)
  H.assert_shape(y, { 2, 3, 4 })
  eq(y.grad_fn, "linear")
  H.assert_close(y, F("lin_y"), 1e-6, "y")
  ;(y * g):sum():backward()
  H.assert_close(x.grad, F("lin_dx"), 1e-6, "dx")
  H.assert_close(w.grad, F("lin_dw"), 1e-6, "dw")
  H.assert_close(b.grad, F("lin_db"), 1e-6, "db")
  H.assert_close(x:linear(w), F("lin_y_nob"), 1e-6, "method form, no bias")
end

function T.linear_matches_matmul_plus_bias_on_views(jbx)
  local x = jbx.randn({ 4, 2, 3 }, { seed = 1 }):transpose(1, 2) -- [2, 4, 3], not foldable
  local w = jbx.randn({ 5, 3 }, { seed = 2 }):transpose()        -- [3, 5], torch layout
  local b = jbx.randn({ 5 }, { seed = 3 })
  H.assert_close(jbx.linear(x, w, b), jbx.matmul(x, w) + b, 1e-5)
  H.assert_close(jbx.linear(x, w, nil), jbx.matmul(x, w), 1e-5)
end

function T.linear_errors(jbx)
  local x, w = jbx.zeros({ 2, 5 }), jbx.zeros({ 4, 3 })
  H.raises("linear: input [2, 5] must end in 4 features (weight [4, 3])", jbx.linear, x, w)
  H.raises("linear: argument 2 (weight) must be a tensor, got nil", jbx.linear, x, nil)
  H.raises("linear: argument 3 (bias) must be a tensor, got number", jbx.linear, jbx.zeros({ 2, 4 }), w, 3)
  H.raises("linear: bias [4] must be [3] to match weight [4, 3]", jbx.linear, jbx.zeros({ 2, 4 }), w, jbx.zeros({ 4 }))
  H.raises("linear: weight [3] must be [n_in, n_out]", jbx.linear, jbx.zeros({ 2, 3 }), jbx.zeros({ 3 }))
end

function T.cross_entropy_against_pytorch(jbx)
  local F = fixture(jbx)
  local logits, targets = leaf(F("ce_logits")), F("ce_targets")
  eq(targets.dtype, "int32")
  local m = jbx.cross_entropy(logits, targets)
  H.assert_shape(m, {})
  H.assert_close(m, F("ce_mean"), 1e-6, "mean")
  m:backward()
  H.assert_close(logits.grad, F("ce_dmean"), 1e-6, "d mean")
  logits.grad = nil
  local n = logits:cross_entropy(targets, { reduction = "none" })
  H.assert_shape(n, { 3, 4 })
  H.assert_close(n, F("ce_none"), 1e-6, "none")
  ;(n * F("ce_g")):sum():backward()
  H.assert_close(logits.grad, F("ce_dnone"), 1e-6, "d none")
  H.assert_close(jbx.cross_entropy(F("ce_big_logits"), F("ce_big_targets"), { reduction = "none" }),
    F("ce_big_none"), 1e-6, "logits near 1000")
end

-- The fused op is log_softmax + a pick of each target's entry, computed once.
function T.cross_entropy_is_log_softmax_nll(jbx)
  local logits = jbx.randn({ 6, 7 }, { seed = 4 }) * 3
  local t = jbx.tensor({ 0, 6, 3, 3, 1, 5 }, { dtype = "int32" })
  local nll = -jbx.log_softmax(logits, 2):gather(2, t:reshape({ 6, 1 })):reshape({ 6 })
  H.assert_close(jbx.cross_entropy(logits, t, { reduction = "none" }), nll, 1e-6)
  H.assert_close(jbx.cross_entropy(logits, t, { reduction = "mean" }), nll:mean(), 1e-6)
  H.assert_close(jbx.cross_entropy(logits, t, {}), nll:mean(), 1e-6, "an empty options table: mean")
end

function T.cross_entropy_errors(jbx)
  local logits = jbx.zeros({ 2, 3, 7 })
  local t = jbx.tensor({ { 0, 1, 2 }, { 6, 9, 4 } }, { dtype = "int32" })
  H.raises("cross_entropy: target 9 at [2, 2] is out of range for 7 classes (ids are 0..6)", jbx.cross_entropy,
    logits, t)
  local ok = jbx.tensor({ { 0, 1, 2 }, { 6, 5, 4 } }, { dtype = "int32" })
  H.raises([[cross_entropy: option 'reduction' must be "mean" or "none", got "sum"]], jbx.cross_entropy, logits, ok,
    { reduction = "sum" })
  H.raises([[cross_entropy: option 'reduction' must be "mean" or "none", got boolean]], jbx.cross_entropy, logits, ok,
    { reduction = true })
  H.raises("cross_entropy: unknown option 'reduce' (known: reduction)", jbx.cross_entropy, logits, ok,
    { reduce = "none" })
  H.raises("cross_entropy: argument 3 (options) must be a table, got string", jbx.cross_entropy, logits, ok, "none")
  H.raises("cross_entropy: argument 2 (targets) must be a tensor, got nil", jbx.cross_entropy, logits, nil)
  H.raises("cross_entropy: targets must be int32 class ids, got float32 [2, 3]", jbx.cross_entropy, logits,
    jbx.zeros({ 2, 3 }))
  H.raises("cross_entropy: targets [3] must have the shape of logits [2, 3, 7] without its last dim, [2, 3]",
    jbx.cross_entropy, logits, jbx.tensor({ 0, 1, 2 }, { dtype = "int32" }))
end

function T.bits_per_token(jbx)
  local losses = jbx.losses
  local logits = jbx.zeros({ 2, 3, 8 }, { requires_grad = true })
  local t = jbx.tensor({ { 0, 1, 2 }, { 7, 6, 5 } }, { dtype = "int32" })
  -- uniform over 8 codes: exactly 3 bits per token
  local bpt = losses.bits_per_token(logits, t)
  H.assert_shape(bpt, {})
  H.assert_close(bpt, 3, 1e-6)
  bpt:backward()
  -- d bits / d logit = (1/8 - [target]) / (6 ln 2)
  H.assert_close(logits.grad:select(3, 1):select(1, 1), { (1 / 8 - 1) / (6 * math.log(2)), 1 / 8 / (6 * math.log(2)),
    1 / 8 / (6 * math.log(2)) }, 1e-6)
  local per = losses.bits_per_token(logits, t, { reduction = "none" })
  H.assert_shape(per, { 2, 3 })
  H.assert_close(per, { { 3, 3, 3 }, { 3, 3, 3 } }, 1e-6)
  local F = fixture(jbx)
  H.assert_close(losses.bits_per_token(F("ce_logits"), F("ce_targets")), F("ce_mean") / math.log(2), 1e-6,
    "nats / ln 2")
end

function T.nn_linear_runs_on_core_linear(jbx)
  local l = jbx.nn.Linear.new(3, 2, { seeds = jbx.nn.seeder(1) })
  jbx.no_grad(function() l.b:copy_(jbx.tensor({ 0.5, -1 })) end)
  local x = jbx.randn({ 4, 2, 3 }, { seed = 5 }):transpose(1, 2)
  local y = l:forward(x)
  eq(y.grad_fn, "linear", "one fused op, not matmul + add")
  H.assert_shape(y, { 2, 4, 2 })
  H.assert_close(y, jbx.matmul(x, l.w) + l.b, 1e-6)
end

function T.quick_gelu_against_pytorch(jbx)
  local F = fixture(jbx)
  local x = leaf(F("qg_x"))
  local y = x:quick_gelu()
  H.assert_close(y, F("qg_y"), 1e-6, "values")
  ;(y * F("qg_g")):sum():backward()
  H.assert_close(x.grad, F("qg_dx"), 1e-6, "gradient")
end

return T
