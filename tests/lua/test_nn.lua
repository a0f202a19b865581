-- nn.lua's modules: ModuleList, Linear, LayerNorm, Embedding, Dropout. Each has a
-- module-level gradient check (central differences on its parameters and input against
-- :backward()) and parameter names as the reference Jukebox's state dict has them.
local H = require "helpers"
local eq, yes = H.assert_eq, H.assert_true

local T = {}

local function names(m)
  local out = {}
  for _, p in ipairs(m:named_parameters()) do out[#out + 1] = p.name .. " " .. H.shape_of(p.tensor) end
  return table.concat(out, ", ")
end

function T.module_list_names_and_children(jbx)
  local nn = jbx.nn
  local l = nn.ModuleList.new(nn.Linear.new(2, 3), nn.LayerNorm.new(3))
  l:add(nn.Embedding.new(5, 2))
  eq(#l.items, 3)
  eq(names(l), "0.w [2, 3], 0.b [3], 1.weight [3], 1.bias [3], 2.weight [5, 2]")
  l:eval()
  yes(not l.items[1].training, "eval reaches the children")
end

-- Names as in the reference's prior state dict: x_emb.weight,
-- transformer._attn_mods.0.attn.c_attn.w, transformer._attn_mods.0.ln_0.weight ...
function T.reference_state_dict_names(jbx)
  local nn = jbx.nn
  local Attn = nn.class("Attn")
  function Attn:init() self.c_attn = self:child("c_attn", nn.Linear.new(4, 12)) end
  local Block = nn.class("Block")
  function Block:init()
    self.attn = self:child("attn", Attn.new())
    self.ln_0 = self:child("ln_0", nn.LayerNorm.new(4))
  end
  local Transformer = nn.class("Transformer")
  function Transformer:init()
    self._attn_mods = self:child("_attn_mods", nn.ModuleList.new(Block.new(), Block.new()))
  end
  local Prior = nn.class("Prior")
  function Prior:init()
    self.x_emb = self:child("x_emb", nn.Embedding.new(16, 4))
    self.transformer = self:child("transformer", Transformer.new())
  end
  local got = names(Prior.new())
  eq(got, "x_emb.weight [16, 4], transformer._attn_mods.0.attn.c_attn.w [4, 12], "
    .. "transformer._attn_mods.0.attn.c_attn.b [12], transformer._attn_mods.0.ln_0.weight [4], "
    .. "transformer._attn_mods.0.ln_0.bias [4], transformer._attn_mods.1.attn.c_attn.w [4, 12], "
    .. "transformer._attn_mods.1.attn.c_attn.b [12], transformer._attn_mods.1.ln_0.weight [4], "
    .. "transformer._attn_mods.1.ln_0.bias [4]")
end

-- The checker itself: a module whose backward gives half the true gradient fails it.
function T.gradient_check_catches_a_wrong_gradient(jbx)
  local Half = jbx.nn.class("Half")
  function Half:init() self:param("w", jbx.randn({ 3 }, { seed = 1 })) end
  function Half:forward(x)
    local y = x * self.w
    return y * 0.5 + y:detach() * 0.5
  end
  H.assert_error(function() H.check_module_grads(Half.new(), jbx.randn({ 3 }, { seed = 2 })) end,
    "w element 1: backward gives")
end

function T.linear_forward_and_init(jbx)
  local nn = jbx.nn
  local l = nn.Linear.new(3, 2, { seeds = nn.seeder(1) })
  H.assert_close(l.b, { 0, 0 }, 0, "b starts at zero")
  local std = math.sqrt((l.w * l.w):mean():item())
  yes(std > 0.002 and std < 0.06, "w ~ N(0, 0.02^2), got std " .. std)
  H.assert_close(nn.Linear.new(3, 2, { zero_out = true }).w, jbx.zeros({ 3, 2 }), 0, "zero_out")
  local same = nn.Linear.new(3, 2, { seeds = nn.seeder(1) })
  H.assert_close(same.w, l.w, 0, "same seeds, same init")
  jbx.no_grad(function()
    l.w:copy_(jbx.tensor({ { 1, 2 }, { 3, 4 }, { 5, 6 } }))
    l.b:copy_(jbx.tensor({ 0.5, -1 }))
  end)
  -- Leading dims [2, 1] kept; y = x @ w + b.
  local y = l:forward(jbx.tensor({ { { 1, 0, 0 } }, { { 1, 1, 1 } } }))
  H.assert_shape(y, { 2, 1, 2 })
  H.assert_close(y, { { { 1.5, 1 } }, { { 9.5, 11 } } })
  H.assert_error(function() l:forward(jbx.zeros({ 2, 4 })) end, "nn.Linear: input [2, 4] must end in 3 features")
  H.assert_error(function() nn.Linear.new(3, 2, { zeroout = true }) end,
    "nn.Linear: unknown option 'zeroout' (known: init_scale, seeds, zero_out)")
end

function T.linear_gradients(jbx)
  local l = jbx.nn.Linear.new(3, 4, { seeds = jbx.nn.seeder(2), init_scale = 20 })
  jbx.no_grad(function() l.b:copy_(jbx.randn({ 4 }, { seed = 3 })) end)
  local x = jbx.randn({ 2, 2, 3 }, { seed = 4, requires_grad = true })
  eq(H.check_module_grads(l, x), 12 + 4 + 12, "w, b and the input")
end

function T.layer_norm_forward(jbx)
  local ln = jbx.nn.LayerNorm.new(4)
  eq(ln.eps, 1e-5)
  H.assert_close(ln.weight, { 1, 1, 1, 1 }, 0)
  H.assert_close(ln.bias, { 0, 0, 0, 0 }, 0)
  -- (x - mean) / sqrt(var + eps), var the biased variance (5 / 4 for 1..4).
  local y = ln:forward(jbx.tensor({ { 1, 2, 3, 4 } }))
  local s = math.sqrt(1.25 + 1e-5)
  H.assert_close(y, { { -1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s } }, 1e-5)
end

function T.layer_norm_gradients(jbx)
  local ln = jbx.nn.LayerNorm.new(5)
  jbx.no_grad(function()
    ln.weight:copy_(jbx.randn({ 5 }, { seed = 5 }) + 1)
    ln.bias:copy_(jbx.randn({ 5 }, { seed = 6 }))
  end)
  local x = jbx.randn({ 3, 5 }, { seed = 8, requires_grad = true })
  eq(H.check_module_grads(ln, x), 5 + 5 + 15)
end

function T.embedding_forward_and_gradients(jbx)
  local e = jbx.nn.Embedding.new(6, 3, { seeds = jbx.nn.seeder(3), init_scale = 30 })
  local ids = jbx.tensor({ { 0, 5 }, { 2, 0 } }, { dtype = "int32" })
  local y = e:forward(ids)
  H.assert_shape(y, { 2, 2, 3 })
  local w = e.weight:totable()
  H.assert_close(y:select(1, 1):select(1, 2), w[6], 0, "id 5 is row 6 (ids are 0-based)")
  eq(H.check_module_grads(e, ids), 18, "the weight; ids are not differentiable")
end

function T.dropout_identity_at_zero_and_in_eval(jbx)
  local x = jbx.randn({ 4, 5 })
  local d0 = jbx.nn.Dropout.new(0)
  yes(rawequal(d0:forward(x), x), "p = 0: the input itself")
  local d = jbx.nn.Dropout.new(0.5):eval()
  yes(rawequal(d:forward(x), x), "eval mode: the input itself")
  H.assert_error(function() jbx.nn.Dropout.new(1) end, "nn.Dropout: p must be a number in [0, 1), got 1")
end

function T.dropout_mask_seeded_and_scaled(jbx)
  local p, n = 0.25, 4000
  local x = jbx.ones({ n })
  local a = jbx.nn.Dropout.new(p, { seed = 9 })
  local ya = a:forward(x)
  local kept = ya:gt(0):sum():item()
  yes(math.abs(kept / n - (1 - p)) < 0.03, ("kept fraction %.3f, expected %.2f"):format(kept / n, 1 - p))
  H.assert_close(ya:max(), 1 / (1 - p), 1e-6, "kept values scaled by 1 / (1 - p)")
  H.assert_close(ya:sum(), kept / (1 - p), 1e-5)
  H.assert_close(jbx.nn.Dropout.new(p, { seed = 9 }):forward(x), ya, 0, "same seed, same mask")
  yes(not a:forward(x):allclose(ya), "the next call draws a new mask")
end

function T.dropout_gradients(jbx)
  local d = jbx.nn.Dropout.new(0.3, { seed = 4 })
  local state = d.rng:state()
  local x = jbx.randn({ 3, 4 }, { seed = 2, requires_grad = true })
  -- The same mask for every forward of the check.
  eq(H.check_module_grads(d, x, { before = function() d.rng:set_state(state) end }), 12)
end

return T
