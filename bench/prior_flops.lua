-- FLOPs of one prior forward pass, counted from the shapes (the same formula as
-- bench/prior_torch.py): the sgemm work of the linear layers and of attention's two
-- products (q k^T and p v) over the keys each query sees (causal: half of a block),
-- plus the output layer. Training counts 3x (forward and the two backward products).
local M = {}

--- Keys summed over all queries of one sequence of T tokens, per attention function.
local function attended_keys(func, t, block_ctx)
  if func == 0 then return t * (t + 1) / 2 end
  local blocks = t // block_ctx
  if func == 1 then return blocks * block_ctx * (block_ctx + 1) / 2 end
  if func == 2 then return block_ctx * blocks * (blocks + 1) / 2 end
  return (blocks - 1) * block_ctx * block_ctx -- func 3: the whole previous block (block 0 sees zeros)
end

--- c = {width, depth, heads, n_ctx, blocks, attn_order, bins, batch}; funcs: attn_func per layer.
function M.forward(c, funcs)
  local w, t = c.width, c.n_ctx
  local n_state = w // 4
  local per_token = 2 * w * (3 * n_state) + 2 * n_state * w + 2 * 2 * w * w -- c_attn, c_proj, c_fc + c_proj
  local f = c.depth * per_token * t + 2 * w * c.bins * t
  local block_ctx = c.blocks and t // c.blocks
  for _, func in ipairs(funcs) do f = f + 2 * 2 * n_state * attended_keys(func, t, block_ctx) end
  return f * c.batch
end

return M
