--- The VQ-VAE as a checkpointed model kind (see jukebox.models): its checkpoints hold
-- the weights, the codebooks (k, k_sum, k_elem) and, in the metadata, the
-- hyperparameters, the loss normalisers and each codebook's restart generator.
local vqvae = require "jukebox.vqvae"

local kind = { format = "jukebox-c vqvae 1" }

function kind.build(meta) return vqvae.new(meta.hparams) end

function kind.tensors(model)
  local named = {}
  for _, p in ipairs(model:named_parameters()) do named[p.name] = p.tensor end
  for _, b in ipairs(model:named_buffers()) do named[b.name] = b.tensor end
  return named
end

function kind.meta(model)
  local vq = {}
  for l, b in ipairs(model.bottleneck) do vq[l] = { initialised = b.initialised, rng = b.rng:state() } end
  return { format = kind.format, hparams = model.hp, bandwidth = model.bandwidth, bottleneck = vq }
end

function kind.restore(model, meta)
  model.bandwidth = meta.bandwidth or model.bandwidth
  for l, b in ipairs(model.bottleneck) do
    local s = meta.bottleneck and meta.bottleneck[l]
    if s then
      b.initialised = s.initialised
      -- A converted reference checkpoint has no generator state: the seeded one stays.
      if s.rng then b.rng:set_state(s.rng) end
    end
  end
end

return kind
