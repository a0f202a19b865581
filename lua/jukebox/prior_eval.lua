--- Evaluating a trained prior (recipes/eval_prior.lua, notebooks/prior_study.lua):
--   local pe = require "jukebox.prior_eval"
--   local model = pe.load("runs/prior/step_000300.safetensors")
--   local ds, level = pe.heldout(model, "runs/codes")        -- the trainer's held-out split
--   local r = pe.bits_by_position(model, "runs/codes", { buckets = 8 })
--   -- r.bits, r.windows, r.per_position[i] (position i - 1), r.buckets[i] = {from, to, bits}
--   local a = pe.attention_map(model, pe.heldout_batch(model, ds), { layer = 0, head = 0, positions = 256 })
--   -- a.map [T, T]: row i = the attention weights of query i over keys 0..T-1
--
-- Layers and heads count from 0, as the state dict names them (_attn_mods.<layer>).
-- The attention map is not recomputed from masks of our own: attention_probs runs the
-- fused core.attention with the values V = one-hot columns (identity slices), so its
-- output IS the probability matrix the op applies. Under the previous-block pattern (3)
-- the first block attends to the reference's zero block, outside the sequence: its rows
-- sum to 0, every other row to 1.
local core = require "jukebox.core"
local models = require "jukebox.models"
local options = require "jukebox.options"
local task = require "jukebox.tasks.prior"

local M = {}

--- M.load(path) -> model, meta: a prior checkpoint (one-line errors for a missing file
-- or another model kind).
function M.load(path)
  local kind = core.path_kind(path)
  if kind ~= "file" then
    error(("checkpoint '%s' %s"):format(tostring(path), kind and "is not a file" or "does not exist"), 0)
  end
  local model, _, meta = models.load(path)
  if model.kind ~= "prior" then
    error(("checkpoint '%s' holds a %s, not a prior (recipes/train_prior.lua writes those)"):format(path,
      tostring(model.kind)), 0)
  end
  return model, meta
end

--- M.heldout(model, dir, level) -> dataset, level: the held-out split ("eval", the one
-- the trainer holds out: codes.open) of the codes folder `dir` at `level` (nil: the level
-- the prior was trained on; 0: the top), checked against what the prior was trained on.
function M.heldout(model, dir, level)
  local info = model.data_info
  if level == nil then level = info and info.level or 0 end
  local ds, lvl = task.open_codes({ codes = dir, level = level, quiet = true }, model.hp.n_ctx, "eval",
    model.hp.x_cond)
  if info and info.fingerprint and info.fingerprint ~= ds.fingerprint then
    error(("the prior was trained on codes of %s; '%s' holds codes of %s (another VQ-VAE)"):format(
      tostring(info.fingerprint), dir, tostring(ds.fingerprint)), 0)
  end
  if ds.l_bins ~= model.hp.bins then
    error(("the prior models %d codes (bins); the codes in '%s' have %d (l_bins): another VQ-VAE's"):format(
      model.hp.bins, dir, ds.l_bins), 0)
  end
  if info and info.level and info.level ~= lvl then
    error(("the prior was trained on level %d; level %d of '%s' is another level (levels 1..%d)"):format(info.level,
      lvl, dir, ds.levels), 0)
  end
  return ds, lvl
end

--- M.buckets(per_position, n) -> n ranges of positions {from, to (0-based, inclusive),
-- bits = the mean of per_position over the range}; n is capped at #per_position.
function M.buckets(per_position, n)
  local T = #per_position
  n = math.max(1, math.min(n, T))
  local out = {}
  for b = 1, n do
    local a, z = (b - 1) * T // n, b * T // n -- [a, z)
    local s = 0
    for p = a + 1, z do s = s + per_position[p] end
    out[b] = { from = a, to = z - 1, bits = s / (z - a) }
  end
  return out
end

M.defaults = { level = nil, windows = 64, buckets = 8 }

--- M.bits_by_position(model, dir, opts) -> {bits, windows, tokens, n_ctx, level,
-- per_position = {bits at position 0, 1, ...: means over the windows}, buckets (M.buckets),
-- entropy = the held-out codes' unigram entropy}, or nil when no held-out file holds a
-- window. The held-out windows are the trainer's (tasks/prior.lua task.evaluate: every
-- window of the eval split without overlap, at most opts.windows of them).
-- opts: level (nil: the prior's), windows (64), buckets (8).
function M.bits_by_position(model, dir, opts)
  local o = options.merge("prior_eval.bits_by_position", M.defaults, opts, { optional = { "level" } })
  local _, level = M.heldout(model, dir, o.level)
  local ev = task.evaluate({ codes = dir, level = level, quiet = true }, model, o.windows)
  if not ev then return nil end
  return { bits = ev.bits, windows = ev.windows, tokens = ev.windows * model.hp.n_ctx, n_ctx = model.hp.n_ctx,
    level = level, per_position = ev.by_position, buckets = M.buckets(ev.by_position, o.buckets),
    entropy = ev.entropy }
end

--- M.heldout_batch(model, ds, i) -> the batch of the i-th held-out window (default 1;
-- the order of ds:windows()), and that window.
function M.heldout_batch(model, ds, i)
  i = i or 1
  local n = 0
  for w in ds:windows() do
    n = n + 1
    if n == i then return task.window_batch(model, w, task.labeller(model, true)), w end
  end
  error(("window %d does not exist: the held-out codes hold %d window(s) of %d tokens"):format(i, n, ds.n_ctx), 0)
end

--- M.transformer_input(model, batch) -> x [N, T, W]: what the prior feeds its
-- transformer (shifted embeddings, positions, conditioning), taken from the prior's
-- own forward so nothing of it is rebuilt here.
function M.transformer_input(model, batch)
  local tr = model.prior.transformer
  local captured
  rawset(tr, "forward", function(_, x)
    captured = x
    return x
  end)
  local ok, err = pcall(core.no_grad, function() model:forward(batch) end)
  rawset(tr, "forward", nil)
  if not ok then error(err, 0) end
  return captured
end

--- M.check_layer(model, layer, head): one-line errors for a layer or head out of range.
function M.check_layer(model, layer, head)
  local depth, heads = #model.prior.transformer._attn_mods.items, model.hp.heads
  if math.type(layer) ~= "integer" or layer < 0 or layer >= depth then
    error(("layer %s is out of range: the prior has layers 0..%d"):format(tostring(layer), depth - 1), 0)
  end
  if head ~= nil and (math.type(head) ~= "integer" or head < 0 or head >= heads) then
    error(("head %s is out of range: the prior has heads 0..%d"):format(tostring(head), heads - 1), 0)
  end
end

--- M.layer_input(model, batch, layer) -> the input [N, T, W] of block `layer` (0-based):
-- the transformer's input run through the blocks before it.
function M.layer_input(model, batch, layer)
  M.check_layer(model, layer)
  local x = M.transformer_input(model, batch)
  local items = model.prior.transformer._attn_mods.items
  core.no_grad(function()
    for i = 1, layer do x = items[i]:forward(x) end
  end)
  return x
end

--- M.qkv(block, x) -> q, k, v [N, H, T, d]: block's ln_0 -> c_attn -> the split into
-- query, key and value heads, as FactoredAttention:forward does.
function M.qkv(block, x)
  local attn = block.attn
  local s = x:shape()
  local n, t = s[1], s[2]
  local h = attn.n_head
  local d = attn.n_state // h
  local qkv = core.no_grad(function() return attn.c_attn:forward(block.ln_0:forward(x)) end)
  local function heads(i)
    return qkv:narrow(3, i * attn.n_state + 1, attn.n_state):view({ n, t, h, d }):permute({ 1, 3, 2, 4 })
  end
  return heads(0), heads(1), heads(2)
end

--- M.attention_probs(q, k, opts) -> [T, T]: the attention weights core.attention(q, k,
-- ., opts) applies for one (batch, head), q and k [T, d] (or [1, 1, T, d]). The values are
-- one-hot: with V[j, m] = 1 when j = c + m, output column m is the weights on key c + m,
-- so ceil(T / d) slices of width d (run as one batch) give every column.
function M.attention_probs(q, k, opts)
  local s = q:shape()
  local T, d = s[#s - 1], s[#s]
  local n = (T + d - 1) // d
  return core.no_grad(function()
    local Q = q:reshape({ 1, 1, T, d }):expand({ n, 1, T, d }):contiguous()
    local K = k:reshape({ 1, 1, T, d }):expand({ n, 1, T, d }):contiguous()
    local ids = core.arange(T)
    local eye = core.eq(ids:view({ T, 1 }), core.arange(n * d):view({ 1, n * d })) -- [T, n d]
    local V = eye:view({ T, n, d }):permute({ 2, 1, 3 }):contiguous():view({ n, 1, T, d })
    local O = core.attention(Q, K, V, opts) -- [n, 1, T, d]: O[c][i][m] = P[i][c d + m]
    return O:view({ n, T, d }):permute({ 2, 1, 3 }):contiguous():view({ T, n * d }):narrow(2, 1, T):contiguous()
  end)
end

--- M.attention_map(model, batch, opts) -> {map = [T, T] (query rows, key columns),
-- layer, head, attn_func, block_ctx, positions = T, row_sums = {...}}: the attention
-- weights of one head of one layer over the first T positions of the batch's first
-- window. opts: layer (0), head (0), positions (256; at most n_ctx, rounded down to a
-- multiple of the layer's block_ctx).
function M.attention_map(model, batch, opts)
  local o = options.merge("prior_eval.attention_map", { layer = 0, head = 0, positions = 256 }, opts)
  M.check_layer(model, o.layer, o.head)
  local block = model.prior.transformer._attn_mods.items[o.layer + 1]
  local func, bc = block.attn.attn_func, block.attn.block_ctx
  local T = math.min(o.positions, batch.codes:shape()[2])
  if func ~= 0 then T = T - T % bc end
  if T < 1 then
    error(("positions %d: the map needs at least one block of %d positions"):format(o.positions, bc), 0)
  end
  local x = M.layer_input(model, batch, o.layer)
  local q, k = M.qkv(block, x)
  local function one(t) return t:select(1, 1):select(1, o.head + 1):narrow(1, 1, T) end
  local map = M.attention_probs(one(q), one(k), { attn_func = func, block_ctx = func ~= 0 and bc or nil })
  local sums = map:sum(2):reshape({ -1 }):totable()
  return { map = map, layer = o.layer, head = o.head, attn_func = func, block_ctx = bc, positions = T,
    row_sums = sums }
end

--- M.read_log(path) -> the columns of a train_prior log.csv ({step = {...}, loss =
-- {...}, ...}, as notebook.read_csv reads them), or nil and why.
function M.read_log(path)
  if core.path_kind(path) ~= "file" then return nil, ("no log '%s'"):format(path) end
  local csv = require("jukebox.notebook").read_csv(path)
  local cols = csv.columns
  if not cols.step or not cols.loss or csv.rows == 0 then
    return nil, ("'%s' has no rows of step and loss"):format(path)
  end
  return cols
end

-- A horizontal line over [x0, x1] as a plot.lines series.
local function hline(name, x0, x1, y) return { name = name, x = { x0, x1 }, y = { y, y } } end

--- M.plot_loss(path, runs, opts): bits per token against step, one series per run
-- {name, log = M.read_log's}, with the held-out points ({name, step, bits}, opts.heldout)
-- and horizontal reference lines ({name, bits}, opts.lines). opts: title.
function M.plot_loss(path, runs, opts)
  local plot = require "jukebox.plot"
  opts = opts or {}
  local series, x0, x1 = {}, math.huge, -math.huge
  for _, r in ipairs(runs) do
    series[#series + 1] = { name = r.name, x = r.log.step, y = r.log.loss }
    x0, x1 = math.min(x0, r.log.step[1]), math.max(x1, r.log.step[#r.log.step])
  end
  for _, h in ipairs(opts.heldout or {}) do
    series[#series + 1] = { name = h.name, x = { h.step }, y = { h.bits } }
    x0, x1 = math.min(x0, h.step), math.max(x1, h.step)
  end
  for _, l in ipairs(opts.lines or {}) do series[#series + 1] = hline(l.name, x0, x1, l.bits) end
  return plot.lines(path, { series = series, title = opts.title or "Bits per token", xlabel = "step",
    ylabel = "bits per token" })
end

--- M.plot_positions(path, results, opts): held-out bits per token against position in
-- the context, one series per result {name, r = M.bits_by_position's} (the buckets'
-- means, drawn at their midpoints), with reference lines (opts.lines). opts: title.
function M.plot_positions(path, results, opts)
  local plot = require "jukebox.plot"
  opts = opts or {}
  local series, T = {}, 1
  for _, res in ipairs(results) do
    local x, y = {}, {}
    for i, b in ipairs(res.r.buckets) do x[i], y[i] = (b.from + b.to) / 2, b.bits end
    series[#series + 1] = { name = res.name, x = x, y = y }
    T = math.max(T, res.r.n_ctx)
  end
  for _, l in ipairs(opts.lines or {}) do series[#series + 1] = hline(l.name, 0, T - 1, l.bits) end
  return plot.lines(path, { series = series, title = opts.title or "Held-out bits per token by position",
    xlabel = "position in the context (bucket midpoints)", ylabel = "bits per token" })
end

--- M.plot_maps(path, maps, opts): attention maps (M.attention_map's) side by side, log10
-- colour; entries outside the pattern (exactly 0) blank. opts: title, columns, names.
function M.plot_maps(path, maps, opts)
  local plot = require "jukebox.plot"
  opts = opts or {}
  local items = {}
  for i, a in ipairs(maps) do
    items[i] = { name = (opts.names and opts.names[i]) or ("layer %d, head %d: %s%s"):format(a.layer, a.head,
      M.pattern_names[a.attn_func] or tostring(a.attn_func),
      a.attn_func ~= 0 and (" (block_ctx %d)"):format(a.block_ctx) or ""), matrix = a.map }
  end
  return plot.heatmaps(path, { items = items, log10 = true, floor = 1e-4, columns = opts.columns,
    title = opts.title or "Attention weights (log10; blank = outside the pattern)", xlabel = "key position",
    ylabel = "query position", cblabel = "log10 weight" })
end

M.pattern_names = { [0] = "dense", [1] = "block", [2] = "transposed block", [3] = "previous block" }

return M
