-- jukebox.prior: a tiny prior against the PyTorch re-expression (tools/fixtures/prior.py,
-- weights loaded by the reference's names: loss, per-position loss, every gradient), its
-- parameter names, module-level gradient checks (plain, upsampler, labelled), presets,
-- the shifted input and the errors a user sees.
local H = require "helpers"
local P = require "jukebox.prior"
local nn = require "jukebox.nn"
local eq, yes = H.assert_eq, H.assert_true

local FIX = "tests/fixtures/prior.fix"

local function tensor_of(core, a)
  if a.dtype == "i32" then return core.from_ints(a.data, a.shape) end
  return core.tensor(a.data):reshape(a.shape)
end

-- max |a - b| / max |b|: the error relative to the tensor's scale.
local function rel(a, b)
  return (a - b):abs():max():item() / math.max(b:abs():max():item(), 1e-30)
end

local function fixture_prior(merged)
  return P.new(nil, { bins = 5, n_ctx = 8, width = 8, depth = 3, heads = 2, attn_order = 2, blocks = 2,
    merged_decoder = merged })
end

-- Wraps a prior so H.check_module_grads sees its loss (bits per token, the mean: the
-- per-position sum in float32 is too coarse for central differences at eps 1e-3).
local Wrap = nn.class("Wrap")
function Wrap:init(m) self.m = self:child("m", m) end
function Wrap:forward(batch) return self.m:forward(batch).loss:view({ 1 }) end

local codes_of = H.random_codes

-- ------------------------------------------------------------------ training

-- One codes folder per run: 3 bundled clips encoded with a tiny VQ-VAE (3 steps; 2
-- levels, hops 8 and 32, 16 codes), two of them labelled.
local CLIPS = { "wesnoth_love_theme_00.flac", "supertux_theme_00.flac", "sonicpi_loop_tabla_00.flac" }
local codes_fixture
local function codes_dir(jbx)
  if codes_fixture then return codes_fixture end
  local train = require "jukebox.train"
  local root = os.tmpname() .. "_prior"
  local data = root .. "/data"
  jbx.core.mkdir_p(data)
  for _, c in ipairs(CLIPS) do os.execute(("cp data/music/%s %s/"):format(c, H.shell_quote(data))) end
  -- Hops 8 and 32 (tiny's downs_t 1, 1 would give hops 2 and 4: 8x more tokens to hold).
  local vq = train.run({ data = data, out = root .. "/vq", preset = "tiny", steps = 3, batch = 2, seed = 0,
    sample_length = 2048, log_every = 1, ckpt_every = 3, threads = 1, quiet = true, bandwidth_batches = 2 },
    { downs_t = { 3, 2 } })
  local f = assert(io.open(root .. "/labels.csv", "w"))
  f:write("file,artist,genre\n" .. CLIPS[1] .. ",wesnoth,orchestral\n" .. CLIPS[3] .. ",sonic pi,percussion\n")
  f:close()
  local cmd = ("%s recipes/encode_codes.lua --vqvae=%s --data=%s --out=%s --labels=%s --threads=1 >/dev/null 2>&1")
    :format(H.shell_quote(H.jbx_exe()), H.shell_quote(vq.checkpoint), H.shell_quote(data),
      H.shell_quote(root .. "/codes"), H.shell_quote(root .. "/labels.csv"))
  assert(os.execute(cmd), "encode_codes failed: " .. cmd)
  codes_fixture = root .. "/codes"
  return codes_fixture
end

-- A small run of the prior task; hp: model overrides.
local SMALL = { n_ctx = 32, blocks = 4, width = 16, depth = 3, cond_width = 4, cond_depth = 1 }
local function run_prior(jbx, out, o)
  local train = require "jukebox.train"
  local opts = { task = "prior", codes = codes_dir(jbx), out = out, preset = "tiny_prior", level = 0, steps = 4,
    batch = 2, log_every = 1, ckpt_every = 2, threads = 1, quiet = true, warmup = 2, lr = 1e-3 }
  for k, v in pairs(o or {}) do opts[k] = v end
  return train.run(opts, SMALL)
end

-- log.csv without the wall-clock columns (time, tokens_per_s).
local function log_rows(path)
  local rows = {}
  for line in io.lines(path) do
    local cells = {}
    for c in (line .. ","):gmatch("([^,]*),") do cells[#cells + 1] = c end
    table.remove(cells, 6)
    table.remove(cells, 2)
    rows[#rows + 1] = table.concat(cells, ",")
  end
  return table.concat(rows, "\n")
end

local function slurp_cmd(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("a")
  local _, _, code = p:close()
  return s, code
end

return {
  ["task prior: trains on codes, resumes exactly, reloads with models.load"] = function(jbx)
    local root = os.tmpname() .. "_runs"
    local a = run_prior(jbx, root .. "/a", { steps = 6 })
    eq(a.step, 6)
    local header = io.lines(a.log)()
    eq(header, "step,time,lr,loss,grad_norm,tokens_per_s")
    -- Stopped at step 2, resumed to 6: the same log and the same weights.
    run_prior(jbx, root .. "/b", { steps = 2 })
    local b = run_prior(jbx, root .. "/b", { steps = 6, resume = true })
    eq(b.step, 6)
    eq(log_rows(b.log), log_rows(a.log), "log.csv of the resumed run")
    local pa, pb = a.model:named_parameters(), b.model:named_parameters()
    for i, p in ipairs(pa) do eq(H.max_abs_diff(p.tensor, pb[i].tensor), 0, p.name) end
    -- The checkpoint rebuilds the prior (hyperparameters, what it was trained on).
    local models = require "jukebox.models"
    local m = models.load(a.checkpoint)
    eq(m.kind, "prior")
    eq(m.hp.width, 16)
    eq(m.hp.bins, 16, "bins from the codes' l_bins")
    eq(m.data_info.level, 2)
    local batch = { codes = jbx.from_ints({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7, 8,
      9, 10, 11, 12, 13, 14, 15, 0 }, { 1, 32 }) }
    eq(H.max_abs_diff(m:forward(batch).logits, a.model:forward(batch).logits), 0, "reloaded logits")
  end,

  ["task prior: an upsampler (level 1 under level 2) and a labelled prior train"] = function(jbx)
    local root = os.tmpname() .. "_runs"
    local up = run_prior(jbx, root .. "/up", { preset = "tiny_upsampler", level = 1, steps = 2 })
    eq(up.model.hp.cond_down_t, 2, "hop ratio 4 = stride 2 ^ 2")
    yes(up.model.conditioner ~= nil, "conditioned")
    local lab = run_prior(jbx, root .. "/lab", { preset = "tiny_labelled_prior", steps = 2 })
    eq(table.concat(lab.model.label_lists.artists, ","), "unknown,sonic pi,wesnoth")
    local models = require "jukebox.models"
    local m = models.load(lab.checkpoint)
    eq(table.concat(m.label_lists.genres, ","), "unknown,orchestral,percussion")
    -- Another artist changes the predictions.
    local c = jbx.from_ints({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
      13, 14, 15, 0 }, { 1, 32 })
    local l1 = m:forward({ codes = c, labels = jbx.from_ints({ 22050 * 20, 0, 64, 1, 1 }, { 1, 5 }) }).logits
    local l2 = m:forward({ codes = c, labels = jbx.from_ints({ 22050 * 20, 0, 64, 2, 1 }, { 1, 5 }) }).logits
    yes(H.max_abs_diff(l1, l2) > 0, "the artist label matters")
  end,

  ["recipe train_prior: trains, prints held-out bits and the entropy; one-line errors"] = function(jbx)
    local root = os.tmpname() .. "_recipe"
    local exe = H.shell_quote(H.jbx_exe())
    local base = ("%s recipes/train_prior.lua --codes=%s --out=%s --steps=2 --batch=2 --n_ctx=32 --blocks=4 --width=16 "
      .. "--depth=3 --threads=1 --eval_windows=4"):format(exe, H.shell_quote(codes_dir(jbx)), H.shell_quote(root))
    local out, code = slurp_cmd(base .. " 2>/dev/null")
    eq(code, 0, out)
    yes(out:find("held%-out: [%d.]+ bits per token over 4 windows of 32 tokens; unigram entropy"), out)
    for _, case in ipairs({
      { " --preset=tiny_upsampler --level=2", "train_prior: prior: an upsampler is conditioned on the level above" },
      { " --level=5", "train_prior: codes: level 5 does not exist" },
      { " --preset=huge", "train_prior: prior: unknown preset 'huge'" },
    }) do
      local e, c = slurp_cmd(base .. case[1] .. " 2>&1 >/dev/null")
      yes(c ~= 0, case[1] .. " fails")
      yes(e:find(case[2], 1, true) and not e:find("traceback", 1, true), case[1] .. ": " .. e)
    end
  end,

  ["matches the PyTorch fixture: loss, per position, every gradient (untied and tied)"] = function(jbx)
    local fx = H.read_fixture(FIX)
    local codes = tensor_of(jbx, fx.codes)
    local worst = 0
    for _, tag in ipairs({ "untied", "tied" }) do
      local m = fixture_prior(tag == "untied")
      local n = 0
      for _, p in ipairs(m:named_parameters()) do
        local a = fx[tag .. ".w." .. p.name]
        if not a then error("fixture has no weight " .. p.name) end
        eq(table.concat(a.shape, ","), table.concat(p.tensor:shape(), ","), p.name .. " shape")
        jbx.no_grad(function() p.tensor:copy_(tensor_of(jbx, a)) end)
        n = n + 1
      end
      local want = 0
      for name in pairs(fx) do
        if name:sub(1, #tag + 3) == tag .. ".w." then want = want + 1 end
      end
      eq(n, want, tag .. ": every fixture weight is a parameter")
      -- Both output paths: logits + cross_entropy, and the fused linear_cross_entropy
      -- that training uses.
      for _, with_logits in ipairs({ true, false }) do
        local path = tag .. (with_logits and " (logits)" or " (fused)")
        local out = m:forward({ codes = codes }, { logits = with_logits })
        eq(out.logits ~= nil, with_logits, path .. ": logits returned only when asked")
        local e = math.abs(out.loss:item() - fx[tag .. ".loss"].data[1]) / fx[tag .. ".loss"].data[1]
        yes(e < 1e-5, path .. " loss rel " .. e)
        out.loss:backward()
        for _, p in ipairs(m:named_parameters()) do
          local r = rel(p.tensor.grad, tensor_of(jbx, fx[tag .. ".g." .. p.name]))
          worst = math.max(worst, r)
          yes(r < 1e-4, ("%s %s gradient rel %.3g"):format(path, p.name, r))
          p.tensor.grad = nil
        end
      end
      local per = jbx.no_grad(function() return m:forward({ codes = codes }, { reduction = "none" }).loss end)
      yes(rel(per, tensor_of(jbx, fx[tag .. ".per_position"])) < 1e-5, "per position")
    end
    io.stderr:write(("  [prior fixture: worst gradient error %.3g relative]\n"):format(worst))
  end,

  ["parameter names: the reference SimplePrior's (tied, untied, upsampler, labelled)"] = function()
    local function names(m)
      local t = {}
      for _, p in ipairs(m:named_parameters()) do
        if not p.name:find("transformer._attn_mods.", 1, true) and not p.name:find("cond.model.", 1, true) then
          t[#t + 1] = p.name
        end
      end
      table.sort(t)
      return table.concat(t, " ")
    end
    eq(names(fixture_prior(false)), "prior.pos_emb.pos_emb prior.start_token prior.x_emb.weight")
    eq(names(fixture_prior(true)), "prior.pos_emb.pos_emb prior.start_token prior.x_emb.weight prior.x_out.weight")
    local up = P.new("tiny_upsampler", { bins = 7, n_ctx = 16, blocks = 2, width = 8, depth = 1, cond_width = 4,
      cond_depth = 1 })
    eq(names(up), "conditioner_blocks.0.ln.bias conditioner_blocks.0.ln.weight conditioner_blocks.0.x_emb.weight "
      .. "prior.pos_emb.pos_emb prior.start_token prior.x_emb.weight")
    local lab = P.new("tiny_labelled_prior", { bins = 7, n_ctx = 16, blocks = 2, width = 8, depth = 1 })
    eq(names(lab), "prior.pos_emb.pos_emb prior.x_emb.weight y_emb.absolute_pos_emb.emb.weight "
      .. "y_emb.artist_emb.emb.weight y_emb.bow_genre_emb.emb.weight y_emb.relative_pos_emb.emb.weight "
      .. "y_emb.total_length_emb.emb.weight")
    local names_t = {}
    for _, p in ipairs(fixture_prior(false):named_parameters()) do names_t[p.name] = H.shape_of(p.tensor) end
    eq(names_t["prior.transformer._attn_mods.2.attn.c_attn.w"], "[8, 6]")
    eq(names_t["prior.pos_emb.pos_emb"], "[8, 8]")
    eq(names_t["prior.start_token"], "[1, 8]")
  end,

  -- One layer: the Transformer's own check (test_transformer.lua) covers funcs 1, 2, 3
  -- and the fixture the whole prior; each attention call here churns ~33 KB of scratch,
  -- which AddressSanitizer's quarantine keeps resident (test_tensor's RSS bound).
  ["gradient check: a whole tiny prior (untied, x_out, start token, positions)"] = function(jbx)
    local m = P.new(nil, { bins = 5, n_ctx = 8, width = 8, depth = 1, heads = 2, attn_order = 2, blocks = 2,
      merged_decoder = true })
    H.check_module_grads(Wrap.new(m), { codes = codes_of(jbx, 2, 8, 5, 3) })
  end,

  ["gradient check: tiny upsampler (tied, x_cond added twice)"] = function(jbx)
    local m = P.new("tiny_upsampler", { bins = 5, n_ctx = 8, blocks = 2, width = 8, depth = 1, heads = 2,
      cond_width = 2, cond_depth = 1, cond_down_t = 1, cond_dilation_cycle = false })
    H.check_module_grads(Wrap.new(m), { codes = codes_of(jbx, 1, 8, 5, 4), upper = codes_of(jbx, 1, 4, 5, 5) })
  end,

  ["gradient check: tiny labelled prior (start token and timing from labels)"] = function(jbx)
    local m = P.new("tiny_labelled_prior", { bins = 5, n_ctx = 8, blocks = 2, width = 4, depth = 1, heads = 1,
      y_bins = { 3, 4 }, t_bins = 4 })
    local labels = jbx.from_ints({ 44100 * 30, 44100 * 2, 44100, 2, 1, 44100 * 90, 0, 44100, 3, -1 }, { 2, 5 })
    H.check_module_grads(Wrap.new(m), { codes = codes_of(jbx, 2, 8, 5, 6), labels = labels })
  end,

  ["a labelled upsampler: start token from the labels, x_cond from the level above, no timing"] = function(jbx)
    local m = P.new("tiny_upsampler", { bins = 5, n_ctx = 8, blocks = 2, width = 8, depth = 1, cond_width = 2,
      cond_depth = 1, cond_down_t = 1, labels = "small_labelled", y_bins = { 3, 4 }, min_duration = 1 })
    yes(m.y_emb and not m.y_emb.include_time_signal and m.conditioner, "labels without timing, conditioner")
    yes(m.prior.start_token == nil, "no learned start token")
    local b = { codes = codes_of(jbx, 1, 8, 5, 1), upper = codes_of(jbx, 1, 4, 5, 2),
                labels = jbx.from_ints({ 44100 * 30, 0, 8, 1, 2 }, { 1, 5 }) }
    local a = m:forward(b).logits
    b.labels = jbx.from_ints({ 44100 * 30, 0, 8, 2, 2 }, { 1, 5 })
    yes(H.max_abs_diff(a, m:forward(b).logits) > 0, "the artist matters")
  end,

  ["the input is shifted: the logits at t do not depend on codes at t or later"] = function(jbx)
    for _, preset in ipairs({ "tiny_prior", "tiny_upsampler" }) do
      local m = P.new(preset, { bins = 9, n_ctx = 16, blocks = 4, width = 16, depth = 3, cond_width = 4,
        cond_depth = 1 })
      local c = codes_of(jbx, 1, 16, 9, 7)
      local up = codes_of(jbx, 1, 4, 9, 8)
      local a = m:forward({ codes = c, upper = up }).logits
      local v = c:totable()
      for i = 10, 16 do v[1][i] = (v[1][i] + 1) % 9 end
      local b = m:forward({ codes = jbx.from_ints({ table.unpack(v[1]) }, { 1, 16 }), upper = up }).logits
      eq(H.max_abs_diff(a:narrow(2, 1, 10), b:narrow(2, 1, 10)), 0, preset .. ": up to position 10")
      yes(H.max_abs_diff(a:narrow(2, 11, 6), b:narrow(2, 11, 6)) > 0, preset .. ": later positions see it")
    end
  end,

  ["presets: the reference's small_* hyperparameters; tiny_* in the CPU range"] = function()
    local s = P.hparams("small_prior")
    eq(table.concat({ s.width, s.depth, s.heads, s.attn_order, s.blocks, s.n_ctx, s.init_scale, s.c_res }, ","),
      "1024,48,1,2,64,8192,0.7,1")
    yes(not s.merged_decoder and not s.labels and not s.x_cond, "small_prior: tied, unlabelled")
    local u = P.hparams("small_upsampler")
    eq(table.concat({ u.width, u.depth, u.cond_width, u.cond_depth, u.cond_dilation_growth_rate,
      u.cond_dilation_cycle, u.cond_c_res }, ","), "1024,48,512,16,3,8,1")
    local l = P.hparams("small_labelled_prior")
    eq(table.concat({ l.labels, l.y_bins[1], l.y_bins[2], l.max_bow_genre_size, l.t_bins, l.min_duration,
      l.max_duration }, ","), "small_labelled,10,100,1,64,60.0,600.0")
    for _, name in ipairs({ "tiny_prior", "tiny_upsampler" }) do
      local t = P.hparams(name)
      local bc = t.n_ctx // t.blocks
      yes(t.width >= 128 and t.width <= 256 and t.depth >= 4 and t.depth <= 8 and t.n_ctx >= 512
        and t.n_ctx <= 1024 and bc >= 32 and bc <= 64 and t.attn_order == 2, name)
    end
  end,

  ["errors: codes, lengths, missing conditioning, presets"] = function(jbx)
    local m = fixture_prior(false)
    H.raises("batch.codes must be an int32 tensor [batch, T], got float32 [2, 8]",
      function() return m:forward({ codes = jbx.zeros({ 2, 8 }) }) end)
    H.raises("code 5 is out of range [0, 5)",
      function() return m:forward({ codes = jbx.from_ints({ 0, 1, 2, 3, 4, 5, 0, 0 }, { 1, 8 }) }) end)
    H.raises("codes of 6 tokens; expected at most n_ctx 8, a multiple of block_ctx 4",
      function() return m:forward({ codes = codes_of(jbx, 1, 6, 5, 1) }) end)
    H.raises("prior: unknown preset 'huge' (known: small_labelled_prior", P.new, "huge")
    H.raises("prior: unknown option 'widht'", P.new, "tiny_prior", { widht = 3 })
    local up = P.new("tiny_upsampler", { bins = 5, n_ctx = 8, blocks = 2, width = 8, depth = 1, cond_width = 2,
      cond_depth = 1 })
    H.raises("an upsampler needs the codes of the level above",
      function() return up:forward({ codes = codes_of(jbx, 1, 8, 5, 1) }) end)
    H.raises("upper codes [1, 3] (int32) must be int32 [batch, 2]: T / 4",
      function() return up:forward({ codes = codes_of(jbx, 1, 8, 5, 1), upper = codes_of(jbx, 1, 3, 5, 1) }) end)
    local lab = P.new("tiny_labelled_prior", { bins = 5, n_ctx = 8, blocks = 2, width = 4, depth = 1, heads = 1 })
    H.raises("this prior is labelled: the batch needs labels",
      function() return lab:forward({ codes = codes_of(jbx, 1, 8, 5, 1) }) end)
  end,
}
