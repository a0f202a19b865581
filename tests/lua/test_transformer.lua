-- jukebox.transformer: the reference's parameter names, the attn_order patterns, zero_out
-- and init, a module-level gradient check of a tiny Transformer using attention functions
-- 1, 2 and 3, causality, per-block recompute (checkpoint_res) and core.recompute, and
-- the errors a user sees.
local H = require "helpers"
local TR = require "jukebox.transformer"
local core = require "jukebox.core"
local eq, yes = H.assert_eq, H.assert_true

local function tiny(opts)
  local o = { n_in = 8, n_ctx = 8, n_head = 2, n_depth = 3, blocks = 2, attn_order = 2, seed = 3 }
  for k, v in pairs(opts or {}) do o[k] = v end
  if o.attn_order == 0 then o.blocks = nil end
  return TR.Transformer.new(o)
end

return {
  ["parameter names and shapes are the reference's state dict"] = function()
    local m = tiny({ n_depth = 2 })
    local names = {}
    for _, p in ipairs(m:named_parameters()) do names[#names + 1] = p.name .. " " .. H.shape_of(p.tensor) end
    local want = {}
    for i = 0, 1 do
      local b = "_attn_mods." .. i .. "."
      for _, s in ipairs({ "attn.c_attn.w [8, 6]", "attn.c_attn.b [6]", "attn.c_proj.w [2, 8]", "attn.c_proj.b [8]",
        "ln_0.weight [8]", "ln_0.bias [8]", "mlp.c_fc.w [8, 8]", "mlp.c_fc.b [8]", "mlp.c_proj.w [8, 8]",
        "mlp.c_proj.b [8]", "ln_1.weight [8]", "ln_1.bias [8]" }) do want[#want + 1] = b .. s end
    end
    eq(table.concat(names, "\n"), table.concat(want, "\n"))
  end,

  ["attn_order 0 is dense, 2 repeats 1, 2, 3; block_ctx = n_ctx / blocks"] = function()
    eq(table.concat(tiny({ n_depth = 7 }).funcs, ","), "1,2,3,1,2,3,1")
    eq(table.concat(tiny({ attn_order = 0 }).funcs, ","), "0,0,0")
    eq(tiny({ n_ctx = 64, blocks = 4 }).block_ctx, 16)
  end,

  ["init: weights N(0, (0.02 init_scale)^2), biases 0, zero_out zeroes both c_proj"] = function()
    local m = TR.Transformer.new({ n_in = 64, n_ctx = 8, n_depth = 1, init_scale = 0.5 })
    local w = m._attn_mods.items[1].mlp.c_fc.w
    H.assert_close(w:pow(2):mean():sqrt():item(), 0.01, 1e-3)
    eq(m._attn_mods.items[1].mlp.c_fc.b:abs():max():item(), 0)
    local z = TR.Transformer.new({ n_in = 8, n_ctx = 8, n_depth = 1, zero_out = true })
    eq(z._attn_mods.items[1].attn.c_proj.w:abs():max():item(), 0)
    eq(z._attn_mods.items[1].mlp.c_proj.w:abs():max():item(), 0)
    yes(z._attn_mods.items[1].attn.c_attn.w:abs():max():item() > 0, "c_attn is not zeroed")
    -- Seeded: the same seed gives the same weights.
    local a, b = tiny(), tiny()
    eq(H.max_abs_diff(a._attn_mods.items[3].mlp.c_fc.w, b._attn_mods.items[3].mlp.c_fc.w), 0)
  end,

  ["gradient check: width 8, 3 layers (funcs 1, 2, 3), 2 heads, n_ctx 8, blocks 2"] = function(jbx)
    local m = tiny()
    local x = jbx.randn({ 2, 8, 8 }, { seed = 5, requires_grad = true })
    local n = H.check_module_grads(m, x)
    yes(n > 700, "checked " .. n)
  end,

  ["gradient check: dense attention, res_scale"] = function(jbx)
    local m = tiny({ attn_order = 0, n_depth = 2, res_scale = true, n_head = 1 })
    local x = jbx.randn({ 1, 8, 8 }, { seed = 6, requires_grad = true })
    H.check_module_grads(m, x)
  end,

  ["causal: changing position t changes no output before t"] = function(jbx)
    for _, order in ipairs({ 0, 2 }) do
      local m = tiny({ attn_order = order })
      local x = jbx.randn({ 1, 8, 8 }, { seed = 9 })
      local y1 = m:forward(x)
      local x2 = x:clone()
      jbx.no_grad(function() x2:narrow(2, 6, 3):copy_(jbx.randn({ 1, 3, 8 }, { seed = 10 })) end)
      local y2 = m:forward(x2)
      eq(H.max_abs_diff(y1:narrow(2, 1, 5), y2:narrow(2, 1, 5)), 0, "order " .. order)
      yes(H.max_abs_diff(y1:narrow(2, 6, 1), y2:narrow(2, 6, 1)) > 0, "position 6 depends on itself")
    end
  end,

  ["checkpoint_res 1: the same loss and exactly the same gradients, no graph kept per block"] = function(jbx)
    local function run(c_res)
      local m = tiny({ checkpoint_res = c_res })
      local x = jbx.randn({ 2, 8, 8 }, { seed = 5, requires_grad = true })
      local y = m:forward(x)
      if c_res == 1 then eq(y.requires_grad, true, "the checkpointed output is on the graph") end
      local l = (y * y):sum()
      l:backward()
      local g = { x = x.grad }
      for _, p in ipairs(m:named_parameters()) do g[p.name] = p.tensor.grad end
      return l:item(), g
    end
    local l0, g0 = run(0)
    local l1, g1 = run(1)
    eq(l1, l0, "loss")
    local n = 0
    for k, v in pairs(g0) do
      eq(H.max_abs_diff(v, g1[k]), 0, k)
      n = n + 1
    end
    eq(n, 1 + 3 * 12, "every parameter and the input compared")
    H.raises("checkpoint_res must be 0 or 1", tiny, { checkpoint_res = 2 })
  end,

  ["core.recompute: Lua errors in the forward and in the recompute, bad arguments"] = function(jbx)
    local w = jbx.randn({ 3, 3 }, { seed = 1, requires_grad = true })
    local x = jbx.randn({ 2, 3 }, { seed = 2, requires_grad = true })
    local fail = false
    local function f(a)
      if fail then error("block exploded") end
      return (a:matmul(w)):tanh()
    end
    local y = core.recompute(f, { x }, { w })
    fail = true
    H.raises("block exploded", function() (y * y):sum():backward() end)
    H.raises("block exploded", core.recompute, f, { x }, { w })
    fail = false
    H.raises("must return a tensor, got number", core.recompute, function() return 1 end, { x })
    H.raises("inputs[2] must be a tensor, got string", core.recompute, f, { x, "a" })
    H.raises("argument 1 (fn) must be", core.recompute, 3, { x })
    -- Under no_grad nothing is recorded.
    jbx.no_grad(function() eq(core.recompute(f, { x }, { w }).requires_grad, false, "no graph") end)
  end,

  ["errors: bad order, missing blocks, bad shapes"] = function(jbx)
    H.raises("attn_order 12 is not supported", tiny, { attn_order = 12 })
    H.raises("attn_order 2 needs blocks", TR.Transformer.new, { n_in = 8, n_ctx = 8, attn_order = 2 })
    H.raises("blocks 3 must be an integer dividing n_ctx 8", tiny, { blocks = 3 })
    H.raises("must be a multiple of heads 3", tiny, { n_head = 3 })
    H.raises("Transformer: unknown option", tiny, { width = 3 })
    local m = tiny()
    H.raises("input [1, 8, 4] must be [batch, T, 8]", function() return m:forward(jbx.zeros({ 1, 8, 4 })) end)
    H.raises("input length 6 must be at most n_ctx 8 and a multiple of block_ctx 4",
      function() return m:forward(jbx.zeros({ 1, 6, 8 })) end)
  end,
}
