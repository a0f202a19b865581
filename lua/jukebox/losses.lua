--- Reconstruction and spectral losses as the reference defines them
-- (jukebox/vqvae/vqvae.py _loss_fn, jukebox/utils/audio_utils.py).
local core = require "jukebox.core"

local losses = {}

--- STFT settings of the reference: the single-resolution loss and the dataset
-- statistics use n_fft 2048, hop 256, window 1536; the multispectral loss averages three.
losses.stft = { n_fft = 2048, hop = 256, window = 1536 }
losses.multispec = {
  { n_fft = 2048, hop = 240, window = 1200 },
  { n_fft = 1024, hop = 120, window = 600 },
  { n_fft = 512, hop = 50, window = 240 },
}

-- [N, 1, T] or [N, T] -> [N, T]
local function flat(x)
  local s = x:shape()
  return #s == 3 and x:reshape({ s[1], s[3] }) or x
end

--- Magnitude spectrogram [N, bins, frames] of audio [N, 1, T].
function losses.spec(x, r)
  r = r or losses.stft
  return core.stft_mag(flat(x), r.n_fft, r.hop, r.window)
end

-- Per-example L2 norm of a [N, ...] tensor -> [N].
local function norm_per_example(t)
  local n = t:shape()[1]
  return t:reshape({ n, -1 }):norm(2)
end

--- ||S(x) - S(y)||_2 per example at one resolution -> [N].
function losses.spectral_loss(x, y, r)
  return norm_per_example(losses.spec(x, r) - losses.spec(y, r))
end

--- Mean of the spectral loss over the three resolutions -> [N].
function losses.multispectral(x, y)
  local total
  for _, r in ipairs(losses.multispec) do
    local l = losses.spectral_loss(x, y, r)
    total = total and total + l or l
  end
  return total / #losses.multispec
end

--- ||S(x) - S(y)|| / ||S(x)|| per example -> [N]; examples with ||S(x)|| <= eps give 0.
function losses.spectral_convergence(x, y, r, eps)
  eps = eps or 2e-3
  local sx = losses.spec(x, r)
  local gt = norm_per_example(sx)
  local resid = norm_per_example(sx - losses.spec(y, r))
  local mask = gt:gt(eps)
  return resid * mask / gt:clamp(eps, math.huge)
end

--- Spectral convergence in dB: 20 log10(SC).
function losses.spectral_convergence_db(x, y, r)
  return losses.spectral_convergence(x, y, r):clamp(1e-12, math.huge):log() * (20 / math.log(10))
end

--- Mean |log S(x) - log S(y)| (log-magnitude distance) -> [N].
function losses.log_magnitude(x, y, r, eps)
  eps = eps or 1e-5
  local a = (losses.spec(x, r) + eps):log()
  local b = (losses.spec(y, r) + eps):log()
  local n = a:shape()[1]
  return (a - b):abs():reshape({ n, -1 }):mean(2)
end

--- Multi-scale log-mel L1 loss (as later codecs train with) -> scalar tensor.
-- scales: list of {n_fft=, hop=, window=, n_mels=}; rate: sample rate.
losses.mel_scales = {
  { n_fft = 512, hop = 128, window = 512, n_mels = 40 },
  { n_fft = 1024, hop = 256, window = 1024, n_mels = 80 },
  { n_fft = 2048, hop = 512, window = 2048, n_mels = 80 },
}
local mel_cache = {}
function losses.multiscale_mel(x, y, rate, scales)
  rate = rate or 22050
  local total
  for _, r in ipairs(scales or losses.mel_scales) do
    local key = ("%d/%d/%d"):format(r.n_fft, r.n_mels, rate)
    mel_cache[key] = mel_cache[key] or core.mel_filterbank(r.n_fft, rate, r.n_mels, 0, rate / 2)
    local fb = mel_cache[key]
    local mx = core.matmul(fb, losses.spec(x, r))
    local my = core.matmul(fb, losses.spec(y, r))
    local l = ((mx + 1e-5):log() - (my + 1e-5):log()):abs():mean()
    total = total and total + l or l
  end
  return total
end

--- The reconstruction loss `hp.loss_fn` of prediction y for target x, each term divided
-- by the dataset's bandwidth statistic as the reference does.
function losses.reconstruction(hp, x, y, bw)
  bw = bw or { l1 = 1, l2 = 1 }
  local function term(name)
    if name == "l1" then return (y - x):abs():mean() / bw.l1 end
    local sq = (y - x) ^ 2
    if name == "l2" then return sq:mean() / bw.l2 end
    if name == "linf" then
      local n = sq:shape()[1]
      local flat_sq = sq:reshape({ n, -1 })
      local k = math.min(hp.linf_k, flat_sq:shape()[2])
      return flat_sq:topk_mean(k):mean() / bw.l2
    end
    error(("losses: unknown loss_fn '%s' (known: l1, l2, linf, lmix)"):format(name), 3)
  end
  if hp.loss_fn ~= "lmix" then return term(hp.loss_fn) end
  local total
  for _, part in ipairs({ { "l1", hp.lmix_l1 }, { "l2", hp.lmix_l2 }, { "linf", hp.lmix_linf } }) do
    if part[2] ~= 0 then
      local t = term(part[1]) * part[2]
      total = total and total + t or t
    end
  end
  return total
end

--- Dataset statistics for the loss normalisers, as the reference's calculate_bandwidth:
-- l1 = mean |x|, l2 = variance of x, spec = mean spectral norm of the clips.
-- `batches` is an iterator of [N, 1, T] tensors. `sum_over` (optional) sums a list of
-- the running totals over the processes of a data-parallel run (core.dist.sum_numbers),
-- each of which read its own share of the crops.
function losses.bandwidth(batches, n_batches, sum_over)
  local l1, sum, sumsq, n, spec_total, spec_n = 0, 0, 0, 0, 0, 0
  core.no_grad(function()
    for _ = 1, n_batches do
      local x = batches()
      l1 = l1 + x:abs():sum():item()
      sum = sum + x:sum():item()
      sumsq = sumsq + (x * x):sum():item()
      n = n + x:numel()
      local norms = norm_per_example(losses.spec(x))
      spec_total = spec_total + norms:sum():item()
      spec_n = spec_n + norms:numel()
    end
  end)
  if sum_over then l1, sum, sumsq, n, spec_total, spec_n = table.unpack(sum_over({ l1, sum, sumsq, n, spec_total, spec_n })) end
  local mean = sum / n
  return { l1 = l1 / n, l2 = sumsq / n - mean * mean, spec = spec_total / spec_n }
end

--- Bits per token of logits [..., V] for int32 targets [...] (0-based codes): the
-- reference prior's loss, cross-entropy in nats / ln 2 (logged there as `bpd`). A 0-dim
-- mean by default; {reduction = "none"} gives one value per token, shaped as targets.
function losses.bits_per_token(logits, targets, opts)
  return core.cross_entropy(logits, targets, opts) * (1 / math.log(2))
end

return losses
