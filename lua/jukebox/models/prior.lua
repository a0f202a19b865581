--- The priors as a checkpointed model kind (see jukebox.models): checkpoints hold the
-- weights and, in the metadata, the hyperparameters and what the prior was trained on
-- (codes level, the VQ-VAE's fingerprint, the artist and genre id lists of labelled
-- priors), so evaluation and sampling rebuild the same prior and label ids.
local prior = require "jukebox.prior"

local kind = { format = "jukebox-c prior 1" }

function kind.build(meta)
  local m = prior.new(meta.hparams)
  kind.restore(m, meta)
  return m
end

function kind.tensors(model)
  local named = {}
  for _, p in ipairs(model:named_parameters()) do named[p.name] = p.tensor end
  return named
end

function kind.meta(model)
  return { format = kind.format, hparams = model.hp, data = model.data_info or false,
           label_lists = model.label_lists or false }
end

function kind.restore(model, meta)
  model.data_info = meta.data or nil
  model.label_lists = meta.label_lists or nil
end

return kind
