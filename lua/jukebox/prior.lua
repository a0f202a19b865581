--- The autoregressive priors over VQ-VAE codes (the reference's jukebox/prior/prior.py
-- `SimplePrior` without lyrics, around jukebox/prior/autoregressive.py
-- `ConditionalAutoregressive2D`), re-expressed:
--
--   input  = roll(x_emb(z), 1) with position 0 = the start token (the learned
--            `start_token` without labels; the LabelConditioner's artist + genre
--            embedding with them), + pos_emb [n_ctx, W], + x_cond
--   x_cond = an upsampler's Conditioner output (codes of the level above), or at the top
--            with labels the timing embedding, or nothing (a labelled upsampler, as the
--            reference's, takes its start token from the labels and no timing)
--   output = transformer; + x_cond again unless merged_decoder; x_out: tied to x_emb
--            (merged_decoder false, the reference's default) or its own weight (true)
--   loss   = cross entropy / ln 2: bits per token
--
-- Parameter names are the reference SimplePrior's state dict names:
--   prior.x_emb.weight [bins, W], prior.start_token [1, W] (without labels),
--   prior.pos_emb.pos_emb [n_ctx, W], prior.transformer._attn_mods.<i>... (transformer.lua),
--   prior.x_out.weight [bins, W] (untied only: tied, it IS prior.x_emb.weight, which a
--   PyTorch state dict lists twice), y_emb.* (LabelConditioner, with labels),
--   conditioner_blocks.0.* (Conditioner, upsamplers).
local core = require "jukebox.core"
local nn = require "jukebox.nn"
local options = require "jukebox.options"
local losses = require "jukebox.losses"
local transformer = require "jukebox.transformer"
local int_range = require("jukebox.tensor").int_range -- codes' smallest and largest

local M = {}


local LN2 = math.log(2)

---------------------------------------------------------------------------------------
-- Hyperparameters and presets
---------------------------------------------------------------------------------------

--- Every hyperparameter of a Prior (the reference's hps names where it has one; false
-- stands for "none" so the table survives JSON in checkpoints).
M.defaults = {
  preset = "custom",
  bins = 2048, -- codes of this level (the VQ-VAE's l_bins)
  n_ctx = 1024,
  width = 128, -- prior_width
  depth = 2, -- prior_depth
  heads = 1,
  attn_order = 0,
  blocks = false, -- n_ctx / block_ctx
  init_scale = 1.0,
  m_attn = 0.25,
  m_mlp = 1.0,
  zero_out = false,
  res_scale = false,
  merged_decoder = false, -- true: untied x_out and no second x_cond
  c_res = 0, -- 1: recompute each transformer block in the backward (less memory, ~1/3 more compute)
  seed = 0,
  -- Upsamplers: conditioning on the codes of the level above (Conditioner options).
  x_cond = false,
  cond_bins = false, -- codes of the level above (default: bins)
  cond_down_t = 2, -- the level above's downs_t: stride_t^down_t = hop ratio
  cond_stride_t = 2,
  cond_width = 128,
  cond_depth = 3,
  cond_m_conv = 1.0,
  cond_dilation_growth_rate = 1,
  cond_dilation_cycle = false,
  cond_res_scale = false,
  cond_zero_out = false,
  cond_c_res = 0,
  -- Labels (top level): a label set of conditioners.label_sets, or false; the rest
  -- override the set's values (false: the set's).
  labels = false,
  y_bins = false, -- {genre_bins, artist_bins}
  t_bins = false,
  max_bow_genre_size = false,
  min_duration = false,
  max_duration = false,
  sr = false, -- the label vectors' sample rate
}

local function preset(base, over)
  local p = {}
  for k, v in pairs(base) do p[k] = v end
  for k, v in pairs(over) do p[k] = v end
  return p
end

-- hparams.py: small_prior, small_upsampler, small_labelled_prior.
local small = { n_ctx = 8192, width = 1024, depth = 48, heads = 1, c_res = 1, attn_order = 2, blocks = 64,
                init_scale = 0.7 }

--- Presets. The small_* are the reference's (hparams.py); tiny_* learn visibly on this
-- CPU in minutes. bins (and for upsamplers cond_bins, cond_down_t) come from the codes
-- a prior is trained on.
M.presets = {
  small_prior = preset(small, {}),
  small_upsampler = preset(small, { x_cond = true, cond_width = 512, cond_depth = 16,
    cond_dilation_growth_rate = 3, cond_dilation_cycle = 8, cond_c_res = 1, cond_down_t = 3 }),
  small_labelled_prior = preset(small, { labels = "small_labelled", y_bins = { 10, 100 }, max_bow_genre_size = 1,
    min_duration = 60.0, max_duration = 600.0, t_bins = 64 }),
  tiny_prior = { n_ctx = 512, width = 128, depth = 6, heads = 2, attn_order = 2, blocks = 8, init_scale = 1.0 },
  tiny_upsampler = { n_ctx = 512, width = 128, depth = 6, heads = 1, attn_order = 2, blocks = 8, init_scale = 1.0,
    x_cond = true, cond_width = 64, cond_depth = 4, cond_dilation_growth_rate = 3, cond_dilation_cycle = 8,
    cond_c_res = 1 },
  -- tiny_prior with labels, for short clips (1 s to 10 min) and up to 31 artists and 31 genres.
  tiny_labelled_prior = { n_ctx = 512, width = 128, depth = 6, heads = 2, attn_order = 2, blocks = 8,
    init_scale = 1.0, labels = "small_labelled", y_bins = { 32, 32 }, max_bow_genre_size = 1, t_bins = 64,
    min_duration = 1.0, max_duration = 600.0 },
}

--- The full hyperparameters of preset `name` (nil: the defaults) with `over` on top.
function M.hparams(name, over)
  local hp = {}
  for k, v in pairs(M.defaults) do hp[k] = v end
  if name and name ~= "custom" then
    local p = options.choose("prior", "preset", M.presets, name, 3)
    for k, v in pairs(p) do hp[k] = v end
    hp.preset = name
  end
  return options.merge("prior", hp, over, { level = 4 })
end

local function shape_str(t) return "[" .. table.concat(t:shape(), ", ") .. "]" end

---------------------------------------------------------------------------------------
-- ConditionalAutoregressive2D
---------------------------------------------------------------------------------------

-- A module that only holds parameters (PositionEmbedding, x_out).
local Holder = nn.class("Holder")

local Autoregressive = nn.class("ConditionalAutoregressive2D")
M.Autoregressive = Autoregressive

-- hp as M.defaults; y_cond: the start token comes from labels.
function Autoregressive:init(hp, y_cond, seeds)
  local w = hp.width
  self.bins, self.width, self.n_ctx, self.y_cond = hp.bins, w, hp.n_ctx, y_cond
  self.x_cond = hp.x_cond or (hp.labels and true) or false
  self.merged_decoder = hp.merged_decoder
  self.x_emb = self:child("x_emb", nn.Embedding.new(hp.bins, w, { init_scale = hp.init_scale, seeds = seeds }))
  if not y_cond then
    self:param("start_token", (core.randn({ 1, w }, { seed = seeds() }) * (0.01 * hp.init_scale)):detach())
  end
  local pos = self:child("pos_emb", Holder.new())
  self.pos_emb = pos
  pos:param("pos_emb", (core.randn({ hp.n_ctx, w }, { seed = seeds() }) * (0.01 * hp.init_scale)):detach())
  self.transformer = self:child("transformer", transformer.Transformer.new({
    n_in = w, n_ctx = hp.n_ctx, n_head = hp.heads, n_depth = hp.depth, zero_out = hp.zero_out,
    init_scale = hp.init_scale, res_scale = hp.res_scale, m_attn = hp.m_attn, m_mlp = hp.m_mlp,
    attn_order = hp.attn_order, blocks = hp.blocks or nil, checkpoint_res = hp.c_res, seeds = seeds }))
  if hp.merged_decoder then
    -- torch.nn.Linear(width, bins, bias=False): weight [bins, width], default init
    -- uniform(+-1/sqrt(width)).
    local out = self:child("x_out", Holder.new())
    self.x_out = out
    out:param("weight", nn.uniform({ hp.bins, w }, 1 / math.sqrt(w), seeds))
  end
end

--- The output weight [bins, W]: x_out's, or x_emb's when tied.
function Autoregressive:out_weight()
  return self.merged_decoder and self.x_out.weight or self.x_emb.weight
end

--- codes int32 [N, T] (T <= n_ctx), x_cond [N, T, W] or [N, 1, W] or nil, y_cond
-- [N, 1, W] or nil -> logits [N, T, bins].
function Autoregressive:forward(codes, x_cond, y_cond)
  return core.linear(self:hidden(codes, x_cond, y_cond), self:out_weight():transpose(1, 2))
end

--- The last hidden state [N, T, W] that the output layer reads (x_cond added again when
-- not merged_decoder).
function Autoregressive:hidden(codes, x_cond, y_cond)
  local s = codes:shape()
  local n, t, w = s[1], s[2], self.width
  local e = self.x_emb:forward(codes) -- [N, T, W]
  local start = y_cond or self.start_token:view({ 1, 1, w }):expand({ n, 1, w })
  local x = t > 1 and core.concat({ start, e:narrow(2, 1, t - 1) }, 2) or start
  x = x + self.pos_emb.pos_emb:narrow(1, 1, t)
  if x_cond then x = x + x_cond end
  x = self.transformer:forward(x)
  if x_cond and not self.merged_decoder then x = x + x_cond end
  return x
end

---------------------------------------------------------------------------------------
-- Prior
---------------------------------------------------------------------------------------

local Prior = nn.class("Prior")
M.Prior = Prior

--- Prior.new(preset_name, overrides) or Prior.new(hparams): hyperparameters as
-- M.defaults (see M.presets).
function Prior:init(name, over)
  if type(name) == "table" then name, over = name.preset, name end
  local hp = M.hparams(name, over)
  for _, k in ipairs({ "bins", "n_ctx", "width", "depth", "heads" }) do
    if math.type(hp[k]) ~= "integer" or hp[k] < 1 then
      error(("prior: %s must be an integer >= 1, got %s"):format(k, tostring(hp[k])), 3)
    end
  end
  self.hp = hp
  self.bins, self.n_ctx, self.width = hp.bins, hp.n_ctx, hp.width
  local seeds = nn.seeder(hp.seed)
  if hp.x_cond then
    local C = require "jukebox.conditioners"
    local blocks = self:child("conditioner_blocks", nn.ModuleList.new())
    self.conditioner = blocks:add(C.Conditioner.new({
      bins = hp.cond_bins or hp.bins, out_width = hp.width, down_t = hp.cond_down_t, stride_t = hp.cond_stride_t,
      width = hp.cond_width, depth = hp.cond_depth, m_conv = hp.cond_m_conv,
      dilation_growth_rate = hp.cond_dilation_growth_rate, dilation_cycle = hp.cond_dilation_cycle or nil,
      res_scale = hp.cond_res_scale, zero_out = hp.cond_zero_out, checkpoint_res = hp.cond_c_res == 1,
      init_scale = hp.init_scale, seed = hp.seed + 1 }))
    self.ratio = math.tointeger(hp.cond_stride_t ^ hp.cond_down_t)
  end
  if hp.labels then
    local C = require "jukebox.conditioners"
    local set = C.label_sets[hp.labels]
    if not set then error(("prior: unknown label set '%s'"):format(tostring(hp.labels)), 3) end
    self.y_emb = self:child("y_emb", C.LabelConditioner.new(hp.labels, {
      y_bins = hp.y_bins or nil, t_bins = hp.t_bins or nil, G = hp.max_bow_genre_size or nil,
      min_duration = hp.min_duration or nil, max_duration = hp.max_duration or nil, sr = hp.sr or nil,
      n_time = hp.n_ctx, out_width = hp.width, init_scale = hp.init_scale, include_time_signal = not hp.x_cond,
      seed = hp.seed + 2 }))
  end
  self.prior = self:child("prior", Autoregressive.new(hp, hp.labels and true or false, seeds))
end

--- The conditioning of a batch: x_cond [N, T, W] or nil, y_cond [N, 1, W] or nil.
function Prior:conditioning(batch, t)
  local x_cond, y_cond
  if self.y_emb then
    if batch.labels == nil then error("prior: this prior is labelled: the batch needs labels", 3) end
    local timing
    y_cond, timing = self.y_emb:forward(batch.labels)
    if timing then x_cond = timing:narrow(2, 1, t) end
  end
  if self.conditioner then
    local up = batch.upper
    if up == nil then error("prior: an upsampler needs the codes of the level above (batch.upper)", 3) end
    local us = up:shape()
    if up.dtype ~= "int32" or #us ~= 2 or us[2] * self.ratio ~= t then
      error(("prior: upper codes %s (%s) must be int32 [batch, %d]: T / %d"):format(shape_str(up), up.dtype,
        t // self.ratio, self.ratio), 3)
    end
    x_cond = self.conditioner:forward(up)
  end
  return x_cond, y_cond
end

--- batch = {codes = int32 [N, T], upper = int32 [N, T / ratio] (upsamplers), labels =
-- label vectors [N, 4 + G] (labelled)}; opts.reduction "mean" (default) or "none" ->
-- {loss = bits per token (a scalar, or [N, T] per position), logits = [N, T, bins]}.
-- opts.logits = false (training) returns no logits: the mean loss then comes from the
-- fused core.linear_cross_entropy, which never holds the [N, T, bins] logits.
function Prior:forward(batch, opts)
  opts = options.merge("Prior:forward", { reduction = "mean", logits = true }, opts)
  local codes = type(batch) == "table" and batch.codes
  local s = type(codes) == "userdata" and codes:shape()
  if not s or #s ~= 2 or codes.dtype ~= "int32" then
    error(("prior: batch.codes must be an int32 tensor [batch, T], got %s"):format(
      s and (codes.dtype .. " " .. shape_str(codes)) or type(codes)), 2)
  end
  local t = s[2]
  local bc = self.prior.transformer.block_ctx
  if t < 1 or t > self.n_ctx or (bc and t % bc ~= 0) then
    error(("prior: codes of %d tokens; expected at most n_ctx %d%s"):format(t, self.n_ctx,
      bc and (", a multiple of block_ctx %d"):format(bc) or ""), 2)
  end
  local lo, hi = int_range(codes)
  if lo < 0 or hi >= self.bins then
    error(("prior: code %d is out of range [0, %d) (bins)"):format(lo < 0 and lo or hi, self.bins), 2)
  end
  local x_cond, y_cond = self:conditioning(batch, t)
  if not opts.logits and opts.reduction == "mean" then
    local h = self.prior:hidden(codes, x_cond, y_cond)
    return { loss = core.linear_cross_entropy(h, self.prior:out_weight(), codes) * (1 / LN2) }
  end
  local logits = self.prior:forward(codes, x_cond, y_cond)
  return { loss = losses.bits_per_token(logits, codes, { reduction = opts.reduction }), logits = logits }
end

--- prior.new(preset, overrides): a Prior.
function M.new(name, over) return Prior.new(name, over) end

M.LN2 = LN2
return M
