--- Jukebox's multi-level VQ-VAE (jukebox/vqvae/ of the reference): per level an
-- encoder, an EMA-codebook bottleneck and a decoder, each level reconstructing the
-- audio on its own. Module and parameter names follow the reference's state dict.
local core = require "jukebox.core"
local nn = require "jukebox.nn"
local losses = require "jukebox.losses"
local options = require "jukebox.options"

local vqvae = {}

--- Every hyperparameter with the reference's default (jukebox/hparams.py, `vqvae`).
vqvae.defaults = {
  sr = 22050,
  levels = 3,
  downs_t = { 3, 2, 2 },
  strides_t = { 2, 2, 2 },
  width = 32,
  depth = 4,
  m_conv = 1.0,
  dilation_growth_rate = 3,
  dilation_cycle = nil, -- none in the VQ-VAE
  reverse_decoder_dilation = true,
  checkpoint_res = false, -- recompute residual blocks' hidden activation in the backward
  multipliers = { 2, 1, 1 }, -- hvqvae_multipliers: scale width and depth per level
  emb_width = 64,
  l_bins = 2048,
  mu = 0.99, -- l_mu: EMA decay of the codebooks
  threshold = 1.0, -- codes with k_elem below this are restarted
  restarts = true, -- random restarts of unused codes (the reference always restarts)
  commit = 0.02,
  spectral = 0.0,
  multispectral = 1.0,
  mel = 0.0, -- weight of a multi-scale log-mel L1 loss (not in the reference; later codecs use it)
  loss_fn = "lmix", -- l1 | l2 | linf | lmix
  lmix_l1 = 0.0,
  lmix_l2 = 1.0,
  lmix_linf = 0.02,
  linf_k = 2048,
  seed = 0, -- parameter init and codebook restarts
}

--- Presets: jukebox (the reference's 3-level model at 22050 Hz), jukebox_44k (the same
-- at 44.1 kHz: hparams.py `vqvae`, the VQ-VAE of the released 5b/1b models, which
-- tools/convert_jukebox.py converts), small (trains visibly in minutes on 2 cores, same
-- hops 8/32/128) and tiny (for tests).
vqvae.presets = {
  jukebox = {},
  jukebox_44k = { sr = 44100 },
  small = { width = 16, depth = 2, multipliers = { 1, 1, 1 }, emb_width = 32, l_bins = 256 },
  tiny = { levels = 2, downs_t = { 1, 1 }, strides_t = { 2, 2 }, width = 4, depth = 1,
           multipliers = { 1, 1 }, emb_width = 4, l_bins = 16, linf_k = 64 },
}

--- The full hyperparameter table for a preset name plus overrides; unknown keys are errors.
function vqvae.config(preset, overrides)
  preset = preset or "jukebox"
  local p = options.choose("vqvae", "preset", vqvae.presets, preset)
  local base = options.merge("vqvae", vqvae.defaults, p)
  base.preset = preset
  local hp = options.merge("vqvae", base, overrides,
    { optional = { "dilation_cycle" }, what = "hyperparameter" })
  for _, key in ipairs({ "downs_t", "strides_t", "multipliers" }) do
    if #hp[key] ~= hp.levels then
      error(("vqvae: %s has %d entries, levels is %d"):format(key, #hp[key], hp.levels), 2)
    end
  end
  return hp
end

--- Hop length of each level: cumulative products of stride^down.
function vqvae.hop_lengths(hp)
  local hops, h = {}, 1
  for l = 1, hp.levels do
    h = h * hp.strides_t[l] ^ hp.downs_t[l]
    hops[l] = math.tointeger(h)
  end
  return hops
end

--- x + res_scale * Conv1d(n_state, n_in, 1)(ReLU(Conv1d(n_in, n_state, 3, dilation=d, pad=d)(ReLU(x)))),
-- the reference's resnet.py ResConv1DBlock (names model.1, model.3). hp: checkpoint_res,
-- and for the priors' conditioner zero_out (the last conv starts at zero) and res_scale.
local ResConv1DBlock = nn.class("ResConv1DBlock")
vqvae.ResConv1DBlock = ResConv1DBlock
function ResConv1DBlock:init(n_in, n_state, dilation, seeds, hp)
  self.checkpoint_res = hp.checkpoint_res or false
  self.res_scale = hp.res_scale or 1
  self.model = self:child("model", nn.Sequential.new(
    nn.ReLU.new(),
    nn.Conv1d.new(n_in, n_state, 3, { padding = dilation, dilation = dilation, seeds = seeds }),
    nn.ReLU.new(),
    nn.Conv1d.new(n_state, n_in, 1, { seeds = seeds })))
  if hp.zero_out then
    local out = self.model.layers[4]
    core.no_grad(function()
      out.weight:fill_(0)
      out.bias:fill_(0)
    end)
  end
end
-- One fused C op (core/ops/resblock.c): the same maths as the Sequential above, but it
-- stores two activations instead of five (the jukebox preset's training step peaks at
-- 1.4 GB instead of 2.9 GB); with checkpoint_res it keeps one and recomputes the hidden
-- one in the backward (0.9 GB, about 11% slower). The Sequential keeps the reference's names.
function ResConv1DBlock:forward(x)
  -- The fused op has no residual scale: a scaled block runs as the composed ops.
  if self.res_scale ~= 1 then return x + self.model:forward(x) * self.res_scale end
  local conv3, conv1 = self.model.layers[2], self.model.layers[4]
  if nn.flops then
    local s = x:shape()
    nn.flops.forward = nn.flops.forward + 2 * s[1] * (conv3.weight:numel() + conv1.weight:numel()) * s[3]
  end
  return core.res_conv_block(x, conv3.weight, conv3.bias, conv1.weight, conv1.bias, conv3.dilation,
    { recompute = self.checkpoint_res })
end

--- The dilations of a Resnet1D of `depth` blocks: growth^(i % cycle) for i = 0.., reversed
-- in the decoder when reverse is set. Also the receptive field's (codec.lua).
function vqvae.dilations(hp, depth, reverse)
  local d = {}
  for i = 0, depth - 1 do
    local e = hp.dilation_cycle and (i % hp.dilation_cycle) or i
    d[#d + 1] = math.tointeger(hp.dilation_growth_rate ^ e)
  end
  if reverse then
    for i = 1, #d // 2 do d[i], d[#d + 1 - i] = d[#d + 1 - i], d[i] end
  end
  return d
end

--- `depth` residual blocks with vqvae.dilations, under `model` (a Sequential), or under
-- `blocks` when hp.blocks_name says so (the reference's name when it checkpoints them,
-- as the priors' conditioner does). hp.res_scale true scales each block by 1/sqrt(depth).
local Resnet1D = nn.class("Resnet1D")
vqvae.Resnet1D = Resnet1D
function Resnet1D:init(n_in, depth, hp, reverse, seeds)
  local block_hp = { checkpoint_res = hp.checkpoint_res, zero_out = hp.zero_out,
                     res_scale = hp.res_scale and 1 / math.sqrt(depth) or 1 }
  self.list = self:child(hp.blocks_name or "model", nn.Sequential.new())
  for _, d in ipairs(vqvae.dilations(hp, depth, reverse)) do
    self.list:add(ResConv1DBlock.new(n_in, math.floor(hp.m_conv * n_in), d, seeds, block_hp))
  end
end
function Resnet1D:forward(x) return self.list:forward(x) end

-- Per-level width and depth, scaled by the level's multiplier.
local function level_size(hp, level)
  return hp.width * hp.multipliers[level], hp.depth * hp.multipliers[level]
end

--- down_t x [Conv1d(in, width, 2s, s, s/2), Resnet1D] then Conv1d(width, out, 3, 1, 1).
local EncoderConvBlock = nn.class("EncoderConvBlock")
function EncoderConvBlock:init(cin, cout, down_t, stride, width, depth, hp, seeds)
  self.model = self:child("model", nn.Sequential.new())
  for i = 1, down_t do
    self.model:add(nn.Sequential.new(
      nn.Conv1d.new(i == 1 and cin or width, width, 2 * stride,
        { stride = stride, padding = stride // 2, seeds = seeds }),
      Resnet1D.new(width, depth, hp, false, seeds)))
  end
  self.model:add(nn.Conv1d.new(width, cout, 3, { padding = 1, seeds = seeds }))
end
function EncoderConvBlock:forward(x) return self.model:forward(x) end

--- Conv1d(emb, width, 3, 1, 1), then down_t x [Resnet1D (reversed when
-- hp.reverse_decoder_dilation), ConvTranspose1d]; nothing when down_t is 0. Also the
-- priors' upsampling conditioner (the reference's DecoderConvBock).
local DecoderConvBlock = nn.class("DecoderConvBlock")
vqvae.DecoderConvBlock = DecoderConvBlock
function DecoderConvBlock:init(cout, emb, down_t, stride, width, depth, hp, seeds)
  self.model = self:child("model", nn.Sequential.new())
  if down_t == 0 then return end
  self.model:add(nn.Conv1d.new(emb, width, 3, { padding = 1, seeds = seeds }))
  for i = 1, down_t do
    self.model:add(nn.Sequential.new(
      Resnet1D.new(width, depth, hp, hp.reverse_decoder_dilation, seeds),
      nn.ConvTranspose1d.new(width, i == down_t and cout or width, 2 * stride,
        { stride = stride, padding = stride // 2, seeds = seeds })))
  end
end
function DecoderConvBlock:forward(x) return self.model:forward(x) end

--- Level `level`'s encoder: the raw audio through level blocks 1..level.
local Encoder = nn.class("Encoder")
function Encoder:init(hp, level, seeds)
  local width, depth = level_size(hp, level)
  self.level_blocks = self:child("level_blocks", nn.ModuleList.new())
  for l = 1, level do
    self.level_blocks:add(EncoderConvBlock.new(l == 1 and 1 or hp.emb_width, hp.emb_width,
      hp.downs_t[l], hp.strides_t[l], width, depth, hp, seeds))
  end
end
function Encoder:forward(x)
  for _, b in ipairs(self.level_blocks.items) do x = b:forward(x) end
  return x
end

--- Level `level`'s decoder: level blocks in reverse, then Conv1d(emb, 1, 3, 1, 1).
local Decoder = nn.class("Decoder")
function Decoder:init(hp, level, seeds)
  local width, depth = level_size(hp, level)
  self.level_blocks = self:child("level_blocks", nn.ModuleList.new())
  for l = 1, level do
    self.level_blocks:add(DecoderConvBlock.new(hp.emb_width, hp.emb_width, hp.downs_t[l],
      hp.strides_t[l], width, depth, hp, seeds))
  end
  self.out = self:child("out", nn.Conv1d.new(hp.emb_width, 1, 3, { padding = 1, seeds = seeds }))
end
function Decoder:forward(z)
  local items = self.level_blocks.items
  for i = #items, 1, -1 do z = items[i]:forward(z) end
  return self.out:forward(z)
end

--- One level's EMA codebook: k [l_bins, emb_width] with k_sum, k_elem, restarted from
-- the batch when unused. Not trained by gradients.
local BottleneckBlock = nn.class("BottleneckBlock")
function BottleneckBlock:init(hp, level)
  self.hp = hp
  self.k = core.zeros({ hp.l_bins, hp.emb_width })
  self.k_sum = core.zeros({ hp.l_bins, hp.emb_width })
  self.k_elem = core.zeros({ hp.l_bins })
  self.initialised = false
  self.rng = core.rng(hp.seed * 7919 + level)
end

--- z [N, C, T] -> quantised z (straight-through), codes [N, T], commit loss, metrics.
function BottleneckBlock:forward(z)
  local n, c, t = table.unpack(z:shape())
  local x = z:permute({ 1, 3, 2 }):reshape({ -1, c })
  local xd = x:detach()
  local metrics = {}
  if self.training and not self.initialised then
    -- across: under data parallelism (core.dist) the batch is spread over the processes.
    core.vq_init(self.k, self.k_sum, self.k_elem, xd, self.rng, { across = true })
    self.initialised = true
  end
  -- Quantise with the codebook as it was before this step's update, as the reference:
  -- codes, x + stopgrad(k[z] - x), the commit loss |stopgrad(k[z]) - x|^2 / numel, fit.
  local codes, xq, commit, fit = core.vq_quantise(x, self.k)
  if self.training then
    local ema = { mu = self.hp.mu, threshold = self.hp.threshold, rng = self.rng, across = true }
    if not self.hp.restarts then ema.restart = false end
    metrics = core.vq_ema_update(self.k, self.k_sum, self.k_elem, xd, codes, ema)
  else
    metrics.pn = core.vq_prenorm(xd)
  end
  metrics.fit = fit
  local out = xq:reshape({ n, t, c }):permute({ 1, 3, 2 })
  return out, codes:reshape({ n, t }), commit, metrics
end

--- Codes [N, T] -> embeddings [N, C, T] (no gradient).
function BottleneckBlock:decode(codes)
  local n, t = table.unpack(codes:shape())
  return core.vq_dequantise(self.k, codes:reshape({ -1 })):reshape({ n, t, -1 }):permute({ 1, 3, 2 })
end

--- The whole VQ-VAE.
local VQVAE = nn.class("VQVAE")
vqvae.VQVAE = VQVAE

--- vqvae.new(preset_or_config, overrides)
function vqvae.new(preset, overrides)
  local hp = type(preset) == "table" and vqvae.config(preset.preset, preset)
    or vqvae.config(preset, overrides)
  return VQVAE.new(hp)
end

function VQVAE:init(hp)
  self.hp = hp
  self.hop_lengths = vqvae.hop_lengths(hp)
  local seeds = nn.seeder(hp.seed)
  self.encoders = self:child("encoders", nn.ModuleList.new())
  self.decoders = self:child("decoders", nn.ModuleList.new())
  self.bottleneck = {}
  for l = 1, hp.levels do self.encoders:add(Encoder.new(hp, l, seeds)) end
  for l = 1, hp.levels do self.decoders:add(Decoder.new(hp, l, seeds)) end
  for l = 1, hp.levels do self.bottleneck[l] = BottleneckBlock.new(hp, l) end
  -- Per-dataset normalisers of the losses (set from data by losses.bandwidth).
  self.bandwidth = { l1 = 1, l2 = 1, spec = 1 }
end

function VQVAE:train(on)
  nn.Module.train(self, on)
  for _, b in ipairs(self.bottleneck) do b.training = self.training end
  return self
end

--- Codebook state tensors by reference name (for checkpoints).
function VQVAE:named_buffers()
  local out = {}
  for l, b in ipairs(self.bottleneck) do
    local p = ("bottleneck.level_blocks.%d."):format(l - 1)
    out[#out + 1] = { name = p .. "k", tensor = b.k }
    out[#out + 1] = { name = p .. "k_sum", tensor = b.k_sum }
    out[#out + 1] = { name = p .. "k_elem", tensor = b.k_elem }
  end
  return out
end

local function check_input(self, x)
  local s = x:shape()
  local hop = self.hop_lengths[#self.hop_lengths]
  if #s ~= 3 or s[2] ~= 1 then
    error(("vqvae: input [%s] must be [batch, 1, length]"):format(table.concat(s, ", ")), 3)
  end
  if s[3] % hop ~= 0 then
    error(("vqvae: input length %d is not a multiple of the top hop length %d"):format(s[3], hop), 3)
  end
end

--- x [N, 1, T] -> {loss =, levels = {{recon =, codes =, metrics = {...}}, ...}, metrics = {...}}
-- Loss as the reference: sum over levels of recons + spectral*spec + multispectral*multispec
-- + commit*commit_loss.
function VQVAE:forward(x, opts)
  check_input(self, x)
  local hp = self.hp
  local out = { levels = {}, metrics = {} }
  local total
  for l = 1, hp.levels do
    local z = self.encoders.items[l]:forward(x)
    local zq, codes, commit, m = self.bottleneck[l]:forward(z)
    local recon = self.decoders.items[l]:forward(zq)
    local rl = losses.reconstruction(hp, x, recon, self.bandwidth)
    local level_loss = rl + commit * hp.commit
    m.recons_loss = rl:item()
    m.commit_loss = commit:item()
    if hp.multispectral > 0 then
      local ms = losses.multispectral(x, recon):mean() / self.bandwidth.spec
      m.multispectral_loss = ms:item()
      level_loss = level_loss + ms * hp.multispectral
    end
    if hp.spectral > 0 then -- the reference's non-relative spectral loss
      local sl = losses.spectral_loss(x, recon):mean() / self.bandwidth.spec
      m.spectral_loss = sl:item()
      level_loss = level_loss + sl * hp.spectral
    end
    if hp.mel > 0 then
      local ml = losses.multiscale_mel(x, recon, hp.sr)
      m.mel_loss = ml:item()
      level_loss = level_loss + ml * hp.mel
    end
    total = total and total + level_loss or level_loss
    out.levels[l] = { recon = recon, codes = codes, metrics = m }
  end
  out.loss = total
  return out
end

--- Audio [N, 1, T] -> codes per level ({[N, T/hop_l]}), without gradients.
function VQVAE:encode(x, levels)
  check_input(self, x)
  return core.no_grad(function()
    local codes = {}
    for l = 1, self.hp.levels do
      if not levels or levels[l] then
        local z = self.encoders.items[l]:forward(x)
        local n, c, t = table.unpack(z:shape())
        local c_codes = core.vq_assign(z:permute({ 1, 3, 2 }):reshape({ -1, c }), self.bottleneck[l].k)
        codes[l] = c_codes:reshape({ n, t })
      end
    end
    return codes
  end)
end

--- Codes [N, T_l] of level l -> audio [N, 1, T_l * hop_l], without gradients.
function VQVAE:decode(codes, level)
  return core.no_grad(function()
    return self.decoders.items[level]:forward(self.bottleneck[level]:decode(codes))
  end)
end

return vqvae
