-- core.attention from Lua: values and q/k/v gradients against the reference's attention
-- composed from tensor ops (d^-1/4 on q and k, a dense 0/1 mask applied as
-- w * mask - 1e9 * (1 - mask), softmax, @ v; previous block over [zero block; k]) for
-- every attn_func, the gradient reaching a whole graph, and the errors a user sees.
local H = require "helpers"

-- Does query t see key s (0-based)? For attn_func 3, s indexes [zero block; k].
local function sees(func, bc, t, s)
  if func == 0 then return s <= t end
  if func == 1 then return s // bc == t // bc and s <= t end
  if func == 2 then return s % bc == t % bc and s <= t end
  return s // bc == t // bc
end

local function composed(core, q, k, v, func, bc)
  local shape = q:shape()
  local B, Hh, T, d = shape[1], shape[2], shape[3], shape[4]
  if func == 3 then
    local zero = core.zeros({ B, Hh, bc, d })
    k = core.cat({ zero, k:narrow(3, 1, T - bc) }, 3)
    v = core.cat({ zero, v:narrow(3, 1, T - bc) }, 3)
  end
  local rows = {}
  for t = 0, T - 1 do
    rows[t + 1] = {}
    for s = 0, T - 1 do rows[t + 1][s + 1] = sees(func, bc, t, s) and 1 or 0 end
  end
  local mask = core.tensor(rows)
  local scale = d ^ -0.25
  local w = (q * scale):matmul((k * scale):transpose(3, 4))
  w = w * mask - (1 - mask) * 1e9
  return w:softmax(4):matmul(v)
end

local function leaves(core, shape, seed)
  local a, b = {}, {}
  for i = 1, 3 do
    a[i] = core.randn(shape, { seed = seed + i, requires_grad = true })
    b[i] = core.randn(shape, { seed = seed + i, requires_grad = true })
  end
  return a, b
end

local CASES = {
  { func = 0, bc = nil }, { func = 1, bc = 4 }, { func = 2, bc = 4 }, { func = 2, bc = 2 },
  { func = 3, bc = 4 }, { func = 3, bc = 2 },
}

return {
  ["attention matches the reference composed from tensor ops, values and gradients"] = function(jbx)
    local core = jbx.core
    for i, c in ipairs(CASES) do
      local shape = { 2, 2, 8, 4 }
      local a, b = leaves(core, shape, 10 * i)
      local go = core.randn(shape, { seed = 100 + i })
      local out = core.attention(a[1], a[2], a[3], { attn_func = c.func, block_ctx = c.bc })
      local ref = composed(core, b[1], b[2], b[3], c.func, c.bc or 1)
      local what = ("attn_func %d block_ctx %s"):format(c.func, tostring(c.bc))
      H.assert_close(out, ref, 1e-5, what .. " out")
      ;(out * go):sum():backward()
      ;(ref * go):sum():backward()
      for j, name in ipairs({ "q", "k", "v" }) do
        H.assert_close(a[j].grad, b[j].grad, 1e-4, what .. " grad " .. name)
      end
    end
  end,

  ["attention(x, x, x): one leaf as q, k and v gets the three gradients summed"] = function(jbx)
    local core = jbx.core
    local a = core.randn({ 1, 2, 8, 4 }, { seed = 7, requires_grad = true })
    local b = core.randn({ 1, 2, 8, 4 }, { seed = 7, requires_grad = true })
    core.attention(a, a, a, { attn_func = 2, block_ctx = 2 }):sum():backward()
    composed(core, b, b, b, 2, 2):sum():backward()
    H.assert_close(a.grad, b.grad, 1e-4)
  end,

  ["attention: previous block's first block is exactly zero, dense is the default"] = function(jbx)
    local core = jbx.core
    local q = core.randn({ 1, 1, 8, 4 }, { seed = 3 })
    local out = core.attention(q, q, q, { attn_func = 3, block_ctx = 4 })
    H.assert_close(out:narrow(3, 1, 4), core.zeros({ 1, 1, 4, 4 }), 0)
    H.assert_close(core.attention(q, q, q), core.attention(q, q, q, { attn_func = 0 }), 0)
    -- the first position of dense attention sees only itself: its output is v's first row
    H.assert_close(core.attention(q, q, q):narrow(3, 1, 1), q:narrow(3, 1, 1), 1e-6)
  end,

  ["attention: the gradient flows through a graph around it (strided q from a projection)"] = function(jbx)
    local core = jbx.core
    local x = core.randn({ 2, 8, 6 }, { seed = 5, requires_grad = true })
    local w = core.randn({ 6, 12 }, { seed = 6, requires_grad = true })
    local h = x:matmul(w):view({ 2, 8, 3, 4 }) -- [B, T, (q, k, v), d]
    local function head(i) return h:narrow(3, i, 1):transpose(2, 3) end -- [2, 1, 8, 4], strided
    local out = core.attention(head(1), head(2), head(3), { attn_func = 1, block_ctx = 4 })
    H.assert_shape(out, { 2, 1, 8, 4 })
    out:sum():backward()
    H.assert_true(x.grad ~= nil and w.grad ~= nil, "gradients reach x and w")
    H.assert_true(w.grad:abs():sum():item() > 0, "w's gradient is not zero")
  end,

  ["attention errors name the function, the argument or option and the shapes"] = function(jbx)
    local core = jbx.core
    local q = core.zeros({ 1, 2, 8, 4 })
    H.raises("attention: argument 2 (k) must be a tensor, got nil", core.attention, q, nil, q)
    H.raises("attention: argument 4", core.attention, q, q, q, 3)
    H.raises("attention: unknown option 'blocks' (known: attn_func, block_ctx)",
      core.attention, q, q, q, { blocks = 2 })
    H.raises("attention: option 'attn_func' must be an integer", core.attention, q, q, q,
      { attn_func = 1.5, block_ctx = 4 })
    H.raises("attention: option 'block_ctx' must be an integer >= 1", core.attention, q, q, q,
      { attn_func = 1, block_ctx = 0 })
    H.raises("attention: option 'block_ctx' is required for attn_func 2", core.attention, q, q, q,
      { attn_func = 2 })
    H.raises("attention: T = 8 (q [1, 2, 8, 4]) is not a multiple of block_ctx 3",
      core.attention, q, q, q, { attn_func = 1, block_ctx = 3 })
    H.raises("attention: attn_func 6 (encoder-decoder) is not implemented yet",
      core.attention, q, q, q, { attn_func = 6, block_ctx = 4 })
    H.raises("attention: unknown attn_func 9", core.attention, q, q, q, { attn_func = 9 })
    H.raises("attention: q [2, 8, 4] must be 4-D [batch, heads, T, d]",
      core.attention, core.zeros({ 2, 8, 4 }), q, q)
    H.raises("attention: v [1, 2, 4, 4] must have q's shape [1, 2, 8, 4]",
      core.attention, q, q, core.zeros({ 1, 2, 4, 4 }))
  end,
}
