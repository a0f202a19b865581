--- The priors' transformer (the reference's jukebox/transformer/transformer.py and
-- factored_attention.py, re-expressed over the fused core.attention op):
--
--   Transformer       n_depth pre-LN residual blocks over x [N, T, width]
--   ResAttnBlock      h = x + a + m, a = attn(ln_0(x)), m = mlp(ln_1(x + a))
--                     (h = x + res_scale (a + m) with res_scale = 1 / n_depth when asked)
--   FactoredAttention c_attn (width -> 3 n_state, n_state = m_attn width), heads split
--                     n_state, core.attention with the layer's attn_func (q and k each
--                     scaled by d^-1/4 inside), c_proj (n_state -> width)
--   MLP               c_fc (width -> m_mlp width), quick GELU, c_proj (-> width)
--
-- Parameter names are the reference's state dict names, relative to the Transformer:
--   _attn_mods.<i>.attn.c_attn.{w,b}, _attn_mods.<i>.attn.c_proj.{w,b},
--   _attn_mods.<i>.ln_0.{weight,bias}, _attn_mods.<i>.mlp.c_fc.{w,b},
--   _attn_mods.<i>.mlp.c_proj.{w,b}, _attn_mods.<i>.ln_1.{weight,bias}   (i from 0)
-- Every Linear weight ~ N(0, (0.02 init_scale)^2), biases zero; with zero_out the two
-- c_proj weights are zeros (the reference forces it for encoder-decoder layers, func 6,
-- which come with lyrics). Dropouts are all 0 in the reference's configs and absent here.
-- Per-block recompute (the reference's checkpoint_res = 1, c_res in the priors' configs):
-- each block runs under core.recompute, which keeps only the block's input and runs the
-- block again in the backward, so training memory holds one block's activations at a
-- time instead of n_depth blocks'.
local core = require "jukebox.core"
local nn = require "jukebox.nn"
local options = require "jukebox.options"

local M = {}

--- The reference's attn_order patterns: layer d (0-based) -> attn_func. Only the orders
-- whose functions core.attention has (0 dense, 1 block, 2 transposed block, 3 previous
-- block); the lyric orders (8, 10, 12) need encoder-decoder and prime attention.
M.attn_orders = {
  [0] = function() return 0 end,
  [1] = function(d) return ({ 1, 2 })[d % 2 + 1] end,
  [2] = function(d) return ({ 1, 2, 3 })[d % 3 + 1] end,
  [9] = function(d) return ({ 1, 2, 3, 0 })[d % 4 + 1] end,
}

--- attn_func of layer d (0-based) under attn_order (an error for an unknown order).
function M.attn_func(attn_order, d)
  local f = M.attn_orders[attn_order]
  if not f then
    local known = {}
    for k in pairs(M.attn_orders) do known[#known + 1] = k end
    table.sort(known)
    error(("Transformer: attn_order %s is not supported (known: %s; the lyric orders 8, 10, 12 come with lyrics)")
      :format(tostring(attn_order), table.concat(known, ", ")), 4)
  end
  return f(d)
end

local function shape_str(t) return "[" .. table.concat(t:shape(), ", ") .. "]" end

---------------------------------------------------------------------------------------
-- FactoredAttention
---------------------------------------------------------------------------------------

local FactoredAttention = nn.class("FactoredAttention")
M.FactoredAttention = FactoredAttention

--- FactoredAttention(n_in, n_ctx, n_state, n_head, {attn_func, block_ctx, zero_out, init_scale, seeds})
function FactoredAttention:init(n_in, n_ctx, n_state, n_head, opts)
  self.n_in, self.n_ctx, self.n_state, self.n_head = n_in, n_ctx, n_state, n_head
  self.attn_func, self.block_ctx = opts.attn_func, opts.block_ctx
  if n_state % n_head ~= 0 then
    error(("Transformer: n_state %d (m_attn x width) must be a multiple of heads %d"):format(n_state, n_head), 4)
  end
  self.c_attn = self:child("c_attn", nn.Linear.new(n_in, 3 * n_state, { init_scale = opts.init_scale, seeds = opts.seeds }))
  self.c_proj = self:child("c_proj", nn.Linear.new(n_state, n_in, { zero_out = opts.zero_out,
    init_scale = opts.init_scale, seeds = opts.seeds }))
end

--- x [N, T, n_in] -> [N, T, n_in]
function FactoredAttention:forward(x)
  local s = x:shape()
  local n, t = s[1], s[2]
  local h, d = self.n_head, self.n_state // self.n_head
  local qkv = self.c_attn:forward(x) -- [N, T, 3 n_state]: query, key, value (chunk(3, dim=2))
  -- Split heads as views ([N, T, H, d] -> [N, H, T, d]); the op reads any strides.
  local function heads(i)
    return qkv:narrow(3, i * self.n_state + 1, self.n_state):view({ n, t, h, d }):permute({ 1, 3, 2, 4 })
  end
  local o = core.attention(heads(0), heads(1), heads(2), { attn_func = self.attn_func, block_ctx = self.block_ctx })
  o = o:permute({ 1, 3, 2, 4 }):contiguous():view({ n, t, self.n_state }) -- merge heads
  return self.c_proj:forward(o)
end

---------------------------------------------------------------------------------------
-- MLP, ResAttnBlock
---------------------------------------------------------------------------------------

local MLP = nn.class("MLP")
M.MLP = MLP
function MLP:init(n_in, n_state, opts)
  self.c_fc = self:child("c_fc", nn.Linear.new(n_in, n_state, { init_scale = opts.init_scale, seeds = opts.seeds }))
  self.c_proj = self:child("c_proj", nn.Linear.new(n_state, n_in, { zero_out = opts.zero_out,
    init_scale = opts.init_scale, seeds = opts.seeds }))
end
function MLP:forward(x) return self.c_proj:forward(self.c_fc:forward(x):quick_gelu()) end

local ResAttnBlock = nn.class("ResAttnBlock")
M.ResAttnBlock = ResAttnBlock
function ResAttnBlock:init(hp, attn_func, seeds)
  local o = { attn_func = attn_func, block_ctx = hp.block_ctx, zero_out = hp.zero_out,
              init_scale = hp.init_scale, seeds = seeds }
  self.attn_func = attn_func
  self.res_scale = hp.res_scale and 1 / hp.n_depth or 1.0
  -- Children in the reference's order: attn, ln_0, mlp, ln_1.
  self.attn = self:child("attn", FactoredAttention.new(hp.n_in, hp.n_ctx, math.floor(hp.m_attn * hp.n_in),
    hp.n_head, o))
  self.ln_0 = self:child("ln_0", nn.LayerNorm.new(hp.n_in))
  self.mlp = self:child("mlp", MLP.new(hp.n_in, math.floor(hp.m_mlp * hp.n_in), o))
  self.ln_1 = self:child("ln_1", nn.LayerNorm.new(hp.n_in))
end

function ResAttnBlock:forward(x)
  local a = self.attn:forward(self.ln_0:forward(x))
  local xa = x + a
  local m = self.mlp:forward(self.ln_1:forward(xa))
  if self.res_scale == 1.0 then return xa + m end
  return x + (a + m) * self.res_scale
end

---------------------------------------------------------------------------------------
-- Transformer
---------------------------------------------------------------------------------------

--- The Transformer's options (the reference's names).
M.defaults = {
  n_in = 128, -- width
  n_ctx = 1024,
  n_head = 1,
  n_depth = 2,
  zero_out = false,
  init_scale = 1.0,
  res_scale = false,
  m_attn = 0.25,
  m_mlp = 1.0,
  attn_order = 0,
  blocks = nil, -- n_ctx / block_ctx; needed by attn_orders other than 0
  checkpoint_res = 0, -- 1: recompute each block in the backward (see the top of this file)
  seed = 0,
}

local Transformer = nn.class("Transformer")
M.Transformer = Transformer

--- Transformer.new(opts): options as M.defaults; opts.seeds (a nn.seeder) instead of seed
-- lets a parent module share its stream of init seeds.
function Transformer:init(opts)
  local hp = options.merge("Transformer", M.defaults, opts, { optional = { "blocks", "seeds" }, level = 3 })
  for _, k in ipairs({ "n_in", "n_ctx", "n_head", "n_depth" }) do
    if math.type(hp[k]) ~= "integer" or hp[k] < 1 then
      error(("Transformer: %s must be an integer >= 1, got %s"):format(k, tostring(hp[k])), 3)
    end
  end
  if hp.blocks ~= nil then
    if math.type(hp.blocks) ~= "integer" or hp.blocks < 1 or hp.n_ctx % hp.blocks ~= 0 then
      error(("Transformer: blocks %s must be an integer dividing n_ctx %d"):format(tostring(hp.blocks), hp.n_ctx), 3)
    end
    hp.block_ctx = hp.n_ctx // hp.blocks
  end
  local funcs = {}
  for d = 0, hp.n_depth - 1 do
    funcs[d + 1] = M.attn_func(hp.attn_order, d)
    if funcs[d + 1] ~= 0 and not hp.block_ctx then
      error(("Transformer: attn_order %d needs blocks (n_ctx / block_ctx)"):format(hp.attn_order), 3)
    end
  end
  if hp.checkpoint_res ~= 0 and hp.checkpoint_res ~= 1 then
    error(("Transformer: checkpoint_res must be 0 or 1, got %s"):format(tostring(hp.checkpoint_res)), 3)
  end
  local seeds = hp.seeds or nn.seeder(hp.seed)
  hp.seeds = nil
  self.hp = hp
  self.n_in, self.n_ctx, self.block_ctx, self.funcs = hp.n_in, hp.n_ctx, hp.block_ctx, funcs
  self._attn_mods = self:child("_attn_mods", nn.ModuleList.new())
  for d = 1, hp.n_depth do self._attn_mods:add(ResAttnBlock.new(hp, funcs[d], seeds)) end
end

--- x [N, T, n_in] -> [N, T, n_in]; T <= n_ctx, a multiple of block_ctx when a layer
-- uses a block pattern.
function Transformer:forward(x)
  local s = x:shape()
  if #s ~= 3 or s[3] ~= self.n_in then
    error(("Transformer: input %s must be [batch, T, %d]"):format(shape_str(x), self.n_in), 2)
  end
  if s[2] > self.n_ctx or (self.block_ctx and s[2] % self.block_ctx ~= 0) then
    error(("Transformer: input length %d must be at most n_ctx %d%s"):format(s[2], self.n_ctx,
      self.block_ctx and (" and a multiple of block_ctx %d"):format(self.block_ctx) or ""), 2)
  end
  for _, l in ipairs(self._attn_mods.items) do
    if self.hp.checkpoint_res == 1 then
      x = core.recompute(function(input) return l:forward(input) end, { x }, l:parameters())
    else
      x = l:forward(x)
    end
  end
  return x
end

return M
