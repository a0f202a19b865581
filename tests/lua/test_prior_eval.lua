-- jukebox.prior_eval and recipes/eval_prior.lua: attention maps read from the fused op
-- (against a softmax written out here, and against each pattern's own definition),
-- the layer inputs and heads against the model's forward, bits per token by position on
-- the trainer's held-out split, the recipe's outputs and its one-line errors. The codes
-- are synthetic (codes.save, no VQ-VAE): two levels, hops 8 and 32, 16 codes.
local H = require "helpers"
local pe = require "jukebox.prior_eval"
local eq, yes = H.assert_eq, H.assert_true

-- The pattern of attn_func over T positions (block_ctx bc), written from the reference's
-- definitions: may query i (0-based) see key j?
local function allowed(func, i, j, bc)
  if func == 0 then return j <= i end
  if func == 1 then return j <= i and i // bc == j // bc end
  if func == 2 then return j <= i and i % bc == j % bc end
  if func == 3 then return i // bc >= 1 and j // bc == i // bc - 1 end
  error("no such pattern")
end

-- Every entry of map [T, T] outside the pattern is exactly 0, every entry inside > 0;
-- rows sum to 1 (0 for the first block under the previous-block pattern).
local function check_map(map, func, bc, what)
  local m = map:totable()
  local T = #m
  for i = 0, T - 1 do
    local sum = 0
    for j = 0, T - 1 do
      local p = m[i + 1][j + 1]
      if allowed(func, i, j, bc) then
        yes(p > 0, ("%s: weight of query %d on key %d is %g, inside the pattern"):format(what, i, j, p))
      else
        eq(p, 0, ("%s: weight of query %d on key %d, outside the pattern"):format(what, i, j))
      end
      sum = sum + p
    end
    local want = (func == 3 and i < bc) and 0 or 1
    H.assert_close(sum, want, 1e-5, ("%s: row %d sums"):format(what, i))
  end
end

-- ------------------------------------------------------------------ fixtures

local function tmpdir(name)
  local d = os.tmpname()
  os.remove(d)
  return d .. "_" .. name
end

-- A folder of synthetic codes files: n files of `tokens` top-level tokens (hop 32) and
-- 4x as many at level 1 (hop 8), `bins` codes, from the VQ-VAE `fingerprint`. The codes
-- repeat a short random motif, so a prior has something to learn.
local function make_codes(jbx, dir, o)
  local codes = require "jukebox.codes"
  jbx.core.mkdir_p(dir)
  local r = jbx.rng(o.seed or 1)
  for f = 1, o.files or 3 do
    local T = o.tokens or 96
    local top, low = {}, {}
    local motif = {}
    for i = 1, 5 do motif[i] = r:below(o.bins) end
    for i = 1, T do top[i] = (i % 7 == 0) and r:below(o.bins) or motif[i % 5 + 1] end
    for i = 1, 4 * T do low[i] = r:below(o.bins) end
    codes.save(("%s/clip_%d.flac%s"):format(dir, f, codes.EXT),
      { jbx.from_ints(low, { 4 * T }), jbx.from_ints(top, { T }) },
      { file = ("clip_%d.flac"):format(f), samples = 32 * T, sample_rate = 22050, padded_samples = 32 * T,
        levels = 2, hop_lengths = "8,32", l_bins = o.bins, source_rate = 22050, source_frames = 32 * T,
        seconds = 32 * T / 22050, vqvae_fingerprint = o.fingerprint, vqvae = "synthetic" })
  end
  return dir
end

local fixture
local function setup(jbx)
  if fixture then return fixture end
  local train = require "jukebox.train"
  local root = tmpdir("prior_eval")
  fixture = { root = root }
  fixture.codes = make_codes(jbx, root .. "/codes", { bins = 16, fingerprint = "vqvae-000000000000000a" })
  fixture.other = make_codes(jbx, root .. "/other", { bins = 16, fingerprint = "vqvae-000000000000000b", seed = 2 })
  fixture.other_bins = make_codes(jbx, root .. "/other_bins", { bins = 8, fingerprint = "vqvae-000000000000000a",
    seed = 3 })
  -- A tiny prior: layers 0, 1, 2 use patterns 1, 2, 3 (attn_order 2), block_ctx 8.
  local r = train.run({ task = "prior", codes = fixture.codes, out = root .. "/prior", preset = "tiny_prior",
    level = 0, steps = 4, batch = 2, log_every = 1, ckpt_every = 4, threads = 1, quiet = true, warmup = 2, lr = 1e-3 },
    { n_ctx = 32, blocks = 4, width = 16, depth = 3, heads = 2 })
  fixture.ckpt = r.checkpoint
  return fixture
end

-- An error of the recipe: exit code 1 and one line "eval_prior: ..." containing `text`.
local function expect_error(args, text, code)
  local _, e, c = H.recipe("eval_prior", args)
  eq(c, code or 1, "exit code (stderr: " .. e .. ")")
  local first, rest = e:match("^([^\n]*)\n?(.*)$")
  yes(first:find("eval_prior: ", 1, true) == 1, "first line names the recipe: " .. e)
  yes(first:find(text, 1, true), ("expected '%s' in: %s"):format(text, first))
  if (code or 1) == 1 then eq(rest, "", "one line") end
end

-- ------------------------------------------------------------------ tests

return {
  ["attention_probs: the dense map is the causal softmax of q k^T / sqrt d"] = function(jbx)
    local T, d = 40, 8 -- T not a multiple of d: the last slice of one-hot columns is partial
    local q, k = jbx.randn({ T, d }, { seed = 1 }), jbx.randn({ T, d }, { seed = 2 })
    local map = pe.attention_probs(q, k, { attn_func = 0 })
    H.assert_shape(map, { T, T })
    local scores = jbx.matmul(q, k:transpose(1, 2)) * (1 / math.sqrt(d))
    local ids = jbx.arange(T)
    local future = jbx.core.gt(ids:view({ 1, T }), ids:view({ T, 1 })) -- key after query
    local want = scores:masked_fill(future, -math.huge):softmax(2)
    H.assert_close(map, want, 1e-5, "map")
    check_map(map, 0, T, "dense")
  end,

  ["attention_probs: block patterns are zero outside the pattern and reproduce the op"] = function(jbx)
    local T, d, bc = 32, 4, 8
    local q, k, v = jbx.randn({ 1, 1, T, d }, { seed = 3 }), jbx.randn({ 1, 1, T, d }, { seed = 4 }),
      jbx.randn({ 1, 1, T, d }, { seed = 5 })
    for func = 0, 3 do
      local o = { attn_func = func, block_ctx = bc }
      local map = pe.attention_probs(q, k, o)
      check_map(map, func, bc, pe.pattern_names[func])
      -- The map is the operator the op applies: map v = attention(q, k, v).
      local out = jbx.attention(q, k, v, o):reshape({ T, d })
      H.assert_close(jbx.matmul(map, v:reshape({ T, d })), out, 1e-5, pe.pattern_names[func] .. ": map v")
    end
  end,

  ["attention_map: a layer's heads, input and pattern match the model's forward"] = function(jbx)
    local fx = setup(jbx)
    local model = pe.load(fx.ckpt)
    local ds = pe.heldout(model, fx.codes)
    local batch = pe.heldout_batch(model, ds)
    local items = model.prior.transformer._attn_mods.items
    -- The captured input run through every block is the transformer's output.
    local x = pe.transformer_input(model, batch)
    local full = jbx.no_grad(function() return model.prior.transformer:forward(x) end)
    local last = pe.layer_input(model, batch, 2)
    local through = jbx.no_grad(function() return items[3]:forward(last) end)
    H.assert_close(through, full, 1e-5, "blocks in turn")
    eq(rawget(model.prior.transformer, "forward"), nil, "the transformer's forward is restored")
    for layer = 0, 2 do
      local block = items[layer + 1]
      local xl = pe.layer_input(model, batch, layer)
      local q, k, v = pe.qkv(block, xl)
      local func, bc = block.attn.attn_func, block.attn.block_ctx
      eq(func, layer + 1, "attn_order 2: layer d uses pattern d % 3 + 1")
      -- The heads merged and projected are the layer's attention output.
      local o = jbx.attention(q, k, v, { attn_func = func, block_ctx = bc })
      local merged = o:permute({ 1, 3, 2, 4 }):contiguous():view({ 1, 32, block.attn.n_state })
      local want = jbx.no_grad(function() return block.attn:forward(block.ln_0:forward(xl)) end)
      H.assert_close(jbx.no_grad(function() return block.attn.c_proj:forward(merged) end), want, 1e-5, "c_proj")
      for head = 0, 1 do
        local a = pe.attention_map(model, batch, { layer = layer, head = head, positions = 20 })
        eq(a.positions, 16, "positions rounded down to a multiple of block_ctx")
        eq(a.attn_func, func)
        check_map(a.map, func, bc, ("layer %d head %d"):format(layer, head))
        local vh = v:select(1, 1):select(1, head + 1):narrow(1, 1, 16)
        local oh = o:select(1, 1):select(1, head + 1):narrow(1, 1, 16)
        H.assert_close(jbx.matmul(a.map, vh:contiguous()), oh, 1e-5, "map v")
      end
    end
    H.raises("layer 3 is out of range: the prior has layers 0..2", pe.attention_map, model, batch, { layer = 3 })
    H.raises("head 2 is out of range: the prior has heads 0..1", pe.attention_map, model, batch, { head = 2 })
    H.raises("head -1 is out of range", pe.attention_map, model, batch, { head = -1 })
  end,

  ["attention_map of an upsampler: the conditioning is part of the captured input"] = function(jbx)
    local P = require "jukebox.prior"
    local model = P.new("tiny_upsampler", { bins = 16, n_ctx = 32, blocks = 4, width = 16, depth = 2,
      cond_width = 4, cond_depth = 1, cond_bins = 16, cond_down_t = 2 })
    local r = jbx.rng(5)
    local c, u = {}, {}
    for i = 1, 32 do c[i] = r:below(16) end
    for i = 1, 8 do u[i] = r:below(16) end
    local batch = { codes = jbx.from_ints(c, { 1, 32 }), upper = jbx.from_ints(u, { 1, 8 }) }
    local x = pe.transformer_input(model, batch)
    H.assert_shape(x, { 1, 32, 16 })
    -- The same codes with other upper codes: another input (the conditioner's output is in it).
    local u2 = {}
    for i = 1, 8 do u2[i] = (u[i] + 1) % 16 end
    local x2 = pe.transformer_input(model, { codes = batch.codes, upper = jbx.from_ints(u2, { 1, 8 }) })
    yes(H.max_abs_diff(x, x2) > 1e-6, "the upper codes condition the input")
    for layer = 0, 1 do
      local a = pe.attention_map(model, batch, { layer = layer, head = 0, positions = 32 })
      check_map(a.map, a.attn_func, a.block_ctx, ("upsampler layer %d"):format(layer))
    end
  end,

  ["bits_by_position: the trainer's held-out windows, bucketed"] = function(jbx)
    local fx = setup(jbx)
    local task = require "jukebox.tasks.prior"
    local model = pe.load(fx.ckpt)
    local r = pe.bits_by_position(model, fx.codes, { buckets = 4 })
    local ev = task.evaluate({ codes = fx.codes, level = 0, quiet = true }, model, 64)
    H.assert_close(r.bits, ev.bits, 1e-6, "the trainer's own held-out number")
    eq(r.windows, 3, "one held-out file of 96 tokens: 3 windows of 32")
    eq(r.level, 2)
    eq(#r.per_position, 32)
    eq(#r.buckets, 4)
    eq(r.buckets[1].from, 0); eq(r.buckets[1].to, 7); eq(r.buckets[4].to, 31)
    local mean = 0
    for _, b in ipairs(r.buckets) do mean = mean + b.bits / 4 end
    H.assert_close(mean, r.bits, 1e-5, "equal buckets average to the overall bits")
    local b = pe.buckets({ 1, 2, 3, 4, 5 }, 2)
    eq(b[1].from, 0); eq(b[1].to, 1); eq(b[1].bits, 1.5); eq(b[2].from, 2); eq(b[2].bits, 4)
    eq(#pe.buckets({ 1, 2 }, 8), 2, "no more buckets than positions")
    -- Codes of another VQ-VAE, and bins that do not match a prior without a record.
    H.raises("the prior was trained on codes of vqvae-000000000000000a; '" .. fx.other
      .. "' holds codes of vqvae-000000000000000b (another VQ-VAE)", pe.heldout, model, fx.other)
    model.data_info = nil
    H.raises("the prior models 16 codes (bins); the codes in '" .. fx.other_bins .. "' have 8 (l_bins)",
      pe.heldout, model, fx.other_bins)
  end,

  ["eval_prior recipe: table, metrics.json, CSV and plots"] = function(jbx)
    local fx = setup(jbx)
    local json = require "jukebox.json"
    local out = fx.root .. "/eval"
    local o, e, c = H.recipe("eval_prior", { "--ckpt=" .. fx.ckpt, "--out=" .. out, "--layer=2", "--head=1",
      "--buckets=4", "--positions=32" })
    eq(c, 0, "eval_prior: " .. e)
    yes(o:find("held%-out bits per token: %d+%.%d+ %(unigram entropy of the held%-out codes: %d+%.%d+ bits%)"), o)
    yes(o:find("   24 .. 31   ", 1, true), "the last bucket's row: " .. o)
    yes(o:find("layer 2, head 1 (previous block), 32 positions", 1, true), o)
    local doc = json.read(out .. "/metrics.json")
    eq(doc.windows, 3); eq(#doc.buckets, 4); eq(#doc.per_position, 32); eq(doc.codes, fx.codes, "codes from the checkpoint")
    eq(doc.attention.attn_func, 3)
    yes(doc.attention.max_row_sum_error < 1e-5, "rows sum to 1")
    local rows = 0
    for _ in io.lines(out .. "/bits_by_position.csv") do rows = rows + 1 end
    eq(rows, 33)
    for _, f in ipairs({ "loss.png", "bits_by_position.png", "attention_l2_h1.png" }) do
      eq(jbx.core.path_kind(out .. "/" .. f), "file", f)
    end
  end,

  ["eval_prior recipe: one-line errors"] = function(jbx)
    local fx = setup(jbx)
    local out = fx.root .. "/eval_err"
    expect_error({ "--out=" .. out }, "--ckpt is required", 2)
    expect_error({ "--ckpt=/nonexistent/p.safetensors", "--out=" .. out },
      "checkpoint '/nonexistent/p.safetensors' does not exist")
    expect_error({ "--ckpt=" .. fx.ckpt, "--codes=" .. fx.other, "--out=" .. out },
      "holds codes of vqvae-000000000000000b (another VQ-VAE)")
    expect_error({ "--ckpt=" .. fx.ckpt, "--codes=" .. fx.root .. "/nonexistent", "--out=" .. out }, "is missing")
    expect_error({ "--ckpt=" .. fx.ckpt, "--level=5", "--out=" .. out }, "level 5 does not exist")
    expect_error({ "--ckpt=" .. fx.ckpt, "--level=1", "--out=" .. out }, "the prior was trained on level 2; level 1")
    expect_error({ "--ckpt=" .. fx.ckpt, "--layer=3", "--out=" .. out }, "layer 3 is out of range: the prior has layers 0..2")
    expect_error({ "--ckpt=" .. fx.ckpt, "--head=2", "--out=" .. out }, "head 2 is out of range: the prior has heads 0..1")
    expect_error({ "--ckpt=" .. fx.ckpt, "--window=9", "--out=" .. out }, "window 9 does not exist")
    expect_error({ "--ckpt=" .. fx.ckpt, "--buckets=0", "--out=" .. out }, "--buckets must be an integer >= 1")
    expect_error({ "--ckpt=" .. fx.root .. "/codes/clip_1.flac.codes.safetensors", "--out=" .. out },
      "no model hyperparameters in its metadata")
  end,
}
