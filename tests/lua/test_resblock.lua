-- res_conv_block from Lua: the fused residual block agrees with its composition from
-- relu, conv1d and + (output and every gradient); optional biases; the recompute option;
-- errors. Each test
-- raises an error to fail.
local H = require "helpers"

-- Leaves for one block: x [B, C, L], w3 [S, C, 3], b3 [S], w1 [C, S, 1], b1 [C].
local function inputs(core, B, C, S, L, seed)
  local function leaf(shape, scale, k)
    return (core.randn(shape, { seed = seed + k }) * scale):detach():requires_grad_(true)
  end
  return leaf({ B, C, L }, 1, 0), leaf({ S, C, 3 }, 1 / math.sqrt(3 * C), 1), leaf({ S }, 0.1, 2),
      leaf({ C, S, 1 }, 1 / math.sqrt(S), 3), leaf({ C }, 0.1, 4)
end

local function composed(core, x, w3, b3, w1, b1, d)
  local h = core.conv1d(x:relu(), w3, b3, { padding = d, dilation = d }):relu()
  return x + core.conv1d(h, w1, b1)
end

-- Same values in fresh leaves, so the two graphs accumulate separately.
local function twin(t)
  return t:clone():detach():requires_grad_(true)
end

local function check_agree(core, B, C, S, L, d, with_bias, opts)
  local x, w3, b3, w1, b1 = inputs(core, B, C, S, L, 10 * d + L)
  if not with_bias then b3, b1 = nil, nil end
  local x2, w32, w12 = twin(x), twin(w3), twin(w1)
  local b32, b12 = b3 and twin(b3), b1 and twin(b1)
  local g = core.randn({ B, C, L }, { seed = 99 })
  local where = ("B%d C%d S%d L%d d%d"):format(B, C, S, L, d)
  local y = core.res_conv_block(x, w3, b3, w1, b1, d, opts)
  local yc = composed(core, x2, w32, b32, w12, b12, d)
  H.assert_close(y, yc, 1e-4, where .. " forward")
  y:backward(g)
  yc:backward(g)
  H.assert_close(x.grad, x2.grad, 1e-4, where .. " grad x")
  H.assert_close(w3.grad, w32.grad, 1e-4, where .. " grad w3")
  H.assert_close(w1.grad, w12.grad, 1e-4, where .. " grad w1")
  if with_bias then
    H.assert_close(b3.grad, b32.grad, 1e-4, where .. " grad b3")
    H.assert_close(b1.grad, b12.grad, 1e-4, where .. " grad b1")
  end
end

return {
  ["res_conv_block agrees with relu, conv1d and add"] = function(jbx)
    local core = jbx.core
    check_agree(core, 1, 3, 5, 7, 1, true)
    check_agree(core, 2, 4, 6, 40, 3, true)
    check_agree(core, 4, 8, 8, 300, 27, true)
    check_agree(core, 2, 5, 4, 12, 9, true)
  end,

  ["res_conv_block without biases"] = function(jbx)
    check_agree(jbx.core, 2, 4, 3, 20, 2, false)
  end,

  ["res_conv_block keeping its hidden activation (recompute = false)"] = function(jbx)
    check_agree(jbx.core, 2, 4, 6, 40, 3, true, { recompute = false })
    check_agree(jbx.core, 1, 3, 2, 10, 1, false, { recompute = false })
    check_agree(jbx.core, 2, 4, 6, 40, 3, true, { recompute = true })
  end,

  ["res_conv_block keeps the shape"] = function(jbx)
    local core = jbx.core
    local x, w3, b3, w1, b1 = inputs(core, 2, 4, 6, 9, 1)
    H.assert_shape(core.res_conv_block(x, w3, b3, w1, b1, 81), { 2, 4, 9 }, "dilation 81 > length")
  end,

  ["res_conv_block errors"] = function(jbx)
    local core = jbx.core
    local x, w3, b3, w1, b1 = inputs(core, 2, 4, 6, 10, 1)
    H.assert_error(function() core.res_conv_block(x, core.zeros({ 6, 5, 3 }), b3, w1, b1, 1) end,
      "res_conv_block: weight3 [6, 5, 3] must be [state, 4, 3] for input [2, 4, 10]")
    H.assert_error(function() core.res_conv_block(x, w3, b3, core.zeros({ 4, 5, 1 }), b1, 1) end,
      "res_conv_block: weight1 [4, 5, 1] must be [4, 6, 1] for input [2, 4, 10] and weight3 [6, 4, 3]")
    H.assert_error(function() core.res_conv_block(x, w3, core.zeros({ 5 }), w1, b1, 1) end,
      "res_conv_block: bias3 [5] must be [6]")
    H.assert_error(function() core.res_conv_block(x, w3, b3, w1, core.zeros({ 3 }), 1) end,
      "res_conv_block: bias1 [3] must be [4]")
    H.assert_error(function() core.res_conv_block(x, w3, b3, w1, b1, 0) end,
      "res_conv_block: dilation must be >= 1, got 0")
    H.assert_error(function() core.res_conv_block(x, w3, b3, w1, b1, 2 ^ 40) end,
      "res_conv_block: argument 6 (dilation) must be an integer in -2147483648..2147483647, got 1099511627776")
    H.assert_error(function() core.res_conv_block(x, w3, b3, w1, b1) end, "res_conv_block: argument 6 (dilation) must be an integer, got no value")
    H.assert_error(function() core.res_conv_block(x, "w3", b3, w1, b1, 1) end,
      "res_conv_block: argument 2 (weight3) must be a tensor, got string")
    H.assert_error(function() core.res_conv_block(x, w3, b3, w1, b1, 1, { recompte = false }) end,
      "res_conv_block: unknown option 'recompte' (known: recompute)")
    H.assert_error(function() core.res_conv_block(x, w3, b3, w1, b1, 1, { recompute = 0 }) end,
      "res_conv_block: option 'recompute' must be a boolean, got number")
    H.assert_error(function() core.res_conv_block(x, w3, b3, w1, b1, 1, 5) end,
      "res_conv_block: argument 7 (options) must be a table, got number")
  end,
}
