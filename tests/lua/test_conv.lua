-- conv1d / conv_transpose1d from Lua: shapes, options, the PyTorch fixture (outputs and
-- every gradient) and the errors a user sees. Each test raises an error to fail.
local H = require "helpers"

local FIX = "tests/fixtures/conv.fix"

local read_fixture = H.read_fixture

-- A leaf tensor (reshaped before requires_grad is set, so gradients land on it).
local function tensor_of(core, a, requires_grad)
  local t = core.tensor(a.data):reshape(a.shape)
  if requires_grad then t:requires_grad_(true) end
  return t
end

-- Runs one fixture case and compares the output and the gradients of sum(out * g).
local function check_case(core, fx, name, fn, opts)
  local x = tensor_of(core, fx[name .. "_x"], true)
  local w = tensor_of(core, fx[name .. "_w"], true)
  local b = fx[name .. "_b"] and tensor_of(core, fx[name .. "_b"], true) or nil
  local out = core[fn](x, w, b, opts)
  H.assert_close(out, tensor_of(core, fx[name .. "_out"]), 1e-4, name .. " forward")
  out:backward(tensor_of(core, fx[name .. "_g"]))
  H.assert_close(x.grad, tensor_of(core, fx[name .. "_gx"]), 1e-4, name .. " grad x")
  H.assert_close(w.grad, tensor_of(core, fx[name .. "_gw"]), 1e-4, name .. " grad w")
  if b then
    H.assert_close(b.grad, tensor_of(core, fx[name .. "_gb"]), 1e-4, name .. " grad bias")
  end
end

return {
  ["conv1d shape with default and given options"] = function(jbx)
    local core = jbx.core
    local x, w = core.randn({ 2, 3, 16 }), core.randn({ 4, 3, 3 })
    H.assert_shape(core.conv1d(x, w), { 2, 4, 14 }, "no options")
    H.assert_shape(core.conv1d(x, w, nil, {}), { 2, 4, 14 }, "empty options")
    H.assert_shape(core.conv1d(x, w, nil, { padding = 1 }), { 2, 4, 16 }, "padding 1")
    H.assert_shape(core.conv1d(x, w, nil, { padding = 3, dilation = 3 }), { 2, 4, 16 }, "dilation")
    local w4, b4 = core.randn({ 4, 3, 4 }), core.randn({ 4 })
    local down = core.conv1d(x, w4, b4, { stride = 2, padding = 1 })
    H.assert_shape(down, { 2, 4, 8 }, "stride 2 kernel 4")
  end,

  ["conv_transpose1d shape with output_padding"] = function(jbx)
    local core = jbx.core
    local x, w = core.randn({ 2, 4, 8 }), core.randn({ 4, 3, 4 })
    local up = core.conv_transpose1d(x, w, nil, { stride = 2, padding = 1 })
    H.assert_shape(up, { 2, 3, 16 }, "upsample x2")
    local opts = { stride = 2, padding = 1, output_padding = 1 }
    local up1 = core.conv_transpose1d(x, w, core.randn({ 3 }), opts)
    H.assert_shape(up1, { 2, 3, 17 }, "output_padding 1")
    H.assert_shape(core.conv_transpose1d(x, w), { 2, 3, 11 }, "defaults")
  end,

  ["conv1d kernel 1 is a per-position matmul"] = function(jbx)
    local core = jbx.core
    local x = core.tensor({ { { 1, 2, 3 }, { 4, 5, 6 } } })  -- [1, 2, 3]
    local w = core.tensor({ { { 1 }, { 10 } }, { { -1 }, { 0 } } }) -- [2, 2, 1]
    local y = core.conv1d(x, w, core.tensor({ 0.5, 0 }))
    H.assert_close(y, { { { 41.5, 52.5, 63.5 }, { -1, -2, -3 } } }, 1e-6)
  end,

  ["conv1d matches PyTorch: outputs and gradients"] = function(jbx)
    local fx = read_fixture(FIX)
    check_case(jbx.core, fx, "c1", "conv1d", { stride = 1, padding = 1, dilation = 1 })
    check_case(jbx.core, fx, "c2", "conv1d", { stride = 2, padding = 1 })
    check_case(jbx.core, fx, "c3", "conv1d", { padding = 3, dilation = 3 })
    check_case(jbx.core, fx, "c4", "conv1d", {})
    check_case(jbx.core, fx, "c5", "conv1d", { stride = 2, dilation = 2 })
  end,

  ["conv_transpose1d matches PyTorch: outputs and gradients"] = function(jbx)
    local fx = read_fixture(FIX)
    check_case(jbx.core, fx, "t1", "conv_transpose1d", { stride = 2, padding = 1 })
    local opts = { stride = 2, padding = 1, output_padding = 1 }
    check_case(jbx.core, fx, "t2", "conv_transpose1d", opts)
    check_case(jbx.core, fx, "t3", "conv_transpose1d", nil)
  end,

  ["unknown options are errors"] = function(jbx)
    local core = jbx.core
    local x, w = core.randn({ 1, 2, 8 }), core.randn({ 2, 2, 3 })
    H.assert_error(function() core.conv1d(x, w, nil, { strides = 2 }) end,
      "conv1d: unknown option 'strides' (known: stride, padding, dilation)")
    H.assert_error(function() core.conv1d(x, w, nil, { output_padding = 1 }) end,
      "conv1d: unknown option 'output_padding'")
    H.assert_error(function() core.conv_transpose1d(x, w, nil, { dilation = 2 }) end,
      "conv_transpose1d: unknown option 'dilation' (known: stride, padding, output_padding)")
  end,

  ["bad arguments are errors"] = function(jbx)
    local core = jbx.core
    local x, w = core.randn({ 1, 2, 8 }), core.randn({ 2, 2, 3 })
    H.assert_error(function() core.conv1d(x, "w") end,
      "conv1d: argument 2 (weight) must be a tensor, got string")
    H.assert_error(function() core.conv1d(nil, w) end,
      "conv1d: argument 1 (input) must be a tensor, got nil")
    H.assert_error(function() core.conv1d(x, w, nil, 5) end, "conv1d: argument 4 (options) must be a table, got number")
    H.assert_error(function() core.conv1d(x, w, nil, { stride = 2 ^ 40 }) end,
      "conv1d: option 'stride' must be an integer in -2147483648..2147483647, got 1099511627776")
  end,

  ["core errors reach Lua with their message"] = function(jbx)
    local core = jbx.core
    local x = core.zeros({ 4, 1, 16384 })
    H.assert_error(function() core.conv1d(x, core.zeros({ 32, 32, 3 })) end,
      "conv1d: input [4, 1, 16384] has 1 channel, weight expects 32")
    H.assert_error(function() core.conv1d(x, core.zeros({ 32, 1, 3 }), nil, { stride = 0 }) end,
      "conv1d: stride must be >= 1, got 0")
    H.assert_error(function() core.conv1d(x, core.zeros({ 32, 1, 3 }), core.zeros({ 5 })) end,
      "conv1d: bias [5] must be [32], one value per output channel")
    H.assert_error(function()
      core.conv_transpose1d(core.zeros({ 1, 2, 4 }), core.zeros({ 2, 3, 4 }), nil,
        { stride = 2, output_padding = 2 })
    end, "conv_transpose1d: output_padding must be >= 0 and smaller than stride 2, got 2")
  end,

  ["gradients flow to x, w and bias through a loss"] = function(jbx)
    local core = jbx.core
    local x = core.randn({ 2, 3, 10 }, { requires_grad = true })
    local w = core.randn({ 4, 3, 3 }, { requires_grad = true })
    local b = core.randn({ 4 }, { requires_grad = true })
    local y = core.conv1d(x, w, b, { padding = 1 })
    y:sum():backward()
    H.assert_shape(x.grad, { 2, 3, 10 }, "grad x")
    H.assert_shape(w.grad, { 4, 3, 3 }, "grad w")
    -- d sum(y) / d bias[o] is the number of output positions per channel: 2 * 10
    H.assert_close(b.grad, { 20, 20, 20, 20 }, 1e-6, "grad bias")
  end,
}
