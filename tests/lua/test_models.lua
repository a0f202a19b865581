-- jukebox.models: a checkpoint's format picks its model kind; a new kind registers
-- and loads like the VQ-VAE; errors name the file and what is wrong.
local H = require "helpers"
local eq, yes = H.assert_eq, H.assert_true

local T = {}

-- A kind as a prior would be: one Linear, with a counter as non-tensor state.
local toy = {
  format = "jukebox-c toy 1",
  build = function(meta) return require("jukebox.nn").Linear.new(meta.hparams.n_in, meta.hparams.n_out) end,
  tensors = function(m) return { w = m.w, b = m.b } end,
  meta = function(m) return { format = "jukebox-c toy 1", hparams = { n_in = m.n_in, n_out = m.n_out }, seen = m.seen } end,
  restore = function(m, meta) m.seen = meta.seen end,
}

function T.a_registered_kind_loads(jbx)
  local models, checkpoint = require "jukebox.models", require "jukebox.checkpoint"
  models.register("toy", toy)
  local m = jbx.nn.Linear.new(3, 2, { seeds = jbx.nn.seeder(5) })
  m.seen = 42
  local path = os.tmpname() .. ".safetensors"
  checkpoint.save(path, { params = toy.tensors(m), meta = toy.meta(m) })
  local loaded, ck, meta = models.load(path)
  os.remove(path)
  eq(loaded.kind, "toy")
  eq(loaded.seen, 42)
  eq(meta.hparams.n_in, 3)
  yes(ck.tensors.w ~= nil)
  H.assert_close(loaded.w, m.w, 0)
end

function T.kind_of_formats(jbx)
  local models = require "jukebox.models"
  eq(models.kind_of({ format = "jukebox-c prior 1" }), "prior")
  eq(models.kind_of({ hparams = {} }), "vqvae", "the first checkpoints had no format")
  local none, why = models.kind_of({ format = "pt" })
  eq(none, nil)
  eq(why, "format 'pt' is not one of jukebox-c's")
  H.assert_error(function() models.kind("nosuch") end, "models: unknown model kind 'nosuch' (known: ")
end

function T.load_errors(jbx)
  local models, checkpoint = require "jukebox.models", require "jukebox.checkpoint"
  local path = os.tmpname() .. ".safetensors"
  local t = { x = jbx.zeros({ 2 }) }
  checkpoint.save(path, { params = t, meta = { step = 1 } })
  H.assert_error(function() models.load(path) end, "no model hyperparameters in its metadata")
  checkpoint.save(path, { params = t, meta = { format = "jukebox-c nosuch 1" } })
  H.assert_error(function() models.load(path) end, "unknown model kind 'nosuch'")
  checkpoint.save(path, { params = t, meta = { format = "jukebox-c vqvae 9", hparams = {} } })
  H.assert_error(function() models.load(path) end, "format 'jukebox-c vqvae 9', this version reads 'jukebox-c vqvae 1'")
  os.remove(path)
end

return T
