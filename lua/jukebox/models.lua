--- Models from checkpoints, for every model kind, so inference never needs the trainer:
--   local model, ck, meta = models.load("runs/small/step_000300.safetensors")
-- A checkpoint's metadata names its kind in `format` ("jukebox-c <kind> <version>").
-- A kind is a table (lua/jukebox/models/<kind>.lua, or models.register) with:
--   format                 the format string its checkpoints carry
--   build(meta)            a new model from the metadata's hyperparameters
--   tensors(model)         {name = tensor}: every tensor its checkpoints hold
--   meta(model)            the model's part of the metadata (format, hyperparameters,
--                          state that is not a tensor)
--   restore(model, meta)   that state back from the metadata
local checkpoint = require "jukebox.checkpoint"
local options = require "jukebox.options"

local models = {}

-- Kinds by name: a module name until first use, then the module.
local kinds = { vqvae = "jukebox.models.vqvae", prior = "jukebox.models.prior" }

--- Registers (or replaces) a kind: `kind` is the table above or a module name.
function models.register(name, kind)
  kinds[name] = kind
end

--- The kind called `name`.
function models.kind(name)
  local k = options.choose("models", "model kind", kinds, name)
  if type(k) == "string" then
    k = require(k)
    kinds[name] = k
  end
  return k
end

--- The kind name of a checkpoint's metadata, or nil and why not.
function models.kind_of(meta)
  local name = type(meta.format) == "string" and meta.format:match("^jukebox%-c (%S+) %d+$")
  if name then return name end
  -- The first checkpoints had no format: they are VQ-VAEs.
  if meta.format == nil and meta.hparams then return "vqvae" end
  return nil, meta.format and ("format '%s' is not one of jukebox-c's"):format(tostring(meta.format))
    or "no model hyperparameters in its metadata"
end

--- models.load(path) -> model, ck (as checkpoint.load), meta: builds the model its
-- metadata describes and loads every tensor and state into it (model.kind names the kind).
function models.load(path)
  local ck = checkpoint.load(path)
  local meta = ck.meta
  local name, why = models.kind_of(meta)
  if not name then error(("checkpoint %s: %s"):format(path, why), 2) end
  local kind = models.kind(name)
  if meta.format and meta.format ~= kind.format then
    error(("checkpoint %s: format '%s', this version reads '%s'"):format(path, meta.format, kind.format), 2)
  end
  local model = kind.build(meta)
  checkpoint.copy_into(path, ck.tensors, kind.tensors(model))
  kind.restore(model, meta)
  model.kind = name
  return model, ck, meta
end

return models
