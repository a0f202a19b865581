--- Training a VQ-VAE with jukebox.train: what the generic trainer needs from a model
-- kind (the fields are documented at the top of lua/jukebox/train.lua). Batches are
-- random crops of a folder of audio; the loss and the per-level terms of log.csv are
-- the model's own (vqvae.lua).
local vqvae = require "jukebox.vqvae"
local data = require "jukebox.data"
local losses = require "jukebox.losses"
local dist = require("jukebox.core").dist

local task = { kind = "vqvae" }

--- Options of this task, beside the trainer's own (train.defaults).
task.defaults = { data = "data", preset = "small", batch = 4, sample_length = 16384, bandwidth_batches = 16,
                  strict = false }

--- The options recorded in a checkpoint's metadata (`train`), beside the trainer's.
task.recorded = { "batch", "sample_length" }

-- Per-level terms of log.csv (empty cells for terms a model does not compute).
local PER_LEVEL = { "recons_loss", "commit_loss", "multispectral_loss", "usage", "used_curr",
                    "entropy", "dk", "fit", "pn", "spectral_loss", "mel_loss" }

--- The per-level log.csv columns of a model with `levels` levels: recons_loss_l1, ...
function task.level_columns(levels)
  local cols = {}
  for l = 1, levels do
    for _, c in ipairs(PER_LEVEL) do cols[#cols + 1] = ("%s_l%d"):format(c, l) end
  end
  return cols
end

function task.new_model(o, hparams)
  local hp = {}
  for k, v in pairs(hparams or {}) do hp[k] = v end
  hp.seed = hp.seed or o.seed
  return vqvae.new(o.preset, hp)
end

-- Each process of a data-parallel run (core.dist) reads its part of every global batch.
function task.data(o, model)
  return data.loader({ dir = o.data, batch = o.batch, length = o.sample_length, rate = model.hp.sr,
                       seed = o.seed, strict = o.strict, quiet = o.quiet, rank = dist.rank(), ranks = dist.size() })
end

-- Loss normalisers from crops of their own stream, so the training data is unaffected;
-- with several processes each measures its share and the sums are added up, so every
-- process gets the statistics one process with the global batch would.
function task.prepare(o, model, loader, say)
  local stats = data.loader({ files = loader.files, batch = o.batch, length = o.sample_length,
                              rate = model.hp.sr, seed = o.seed + 1, rank = dist.rank(), ranks = dist.size() })
  model.bandwidth = losses.bandwidth(function() return stats:next() end, o.bandwidth_batches, dist.sum_numbers)
  say("bandwidth: l1 %.4g, l2 %.4g, spec %.4g", model.bandwidth.l1, model.bandwidth.l2, model.bandwidth.spec)
end

function task.describe(o, model, loader)
  local hp = model.hp
  return ("training %s preset: %d levels, hops %s, %d parameters, %d files, batch %d x %d samples (%.2f s)"):format(
    hp.preset, hp.levels, table.concat(model.hop_lengths, "/"), model:num_parameters(), #loader.files,
    o.batch, o.sample_length, o.sample_length / hp.sr)
end

function task.forward(model, x) return model:forward(x) end

function task.columns(model) return task.level_columns(model.hp.levels) end

function task.log_cells(model, out)
  local cells = {}
  for l = 1, model.hp.levels do
    local m = out.levels[l].metrics
    for _, c in ipairs(PER_LEVEL) do cells[#cells + 1] = m[c] and ("%.6g"):format(m[c]) or "" end
  end
  return cells
end

-- The per-level terms that are means over this process's crops; the codebook terms
-- (usage, used_curr, entropy, dk, pn) already cover the global batch (the EMA
-- statistics are all-reduced in core.vq_ema_update).
local PER_CROP = { "recons_loss", "commit_loss", "multispectral_loss", "spectral_loss", "mel_loss", "fit" }

function task.mean_over_ranks(model, out, mean)
  local values, where = {}, {}
  for l = 1, model.hp.levels do
    local m = out.levels[l].metrics
    for _, c in ipairs(PER_CROP) do
      if m[c] then
        values[#values + 1] = m[c]
        where[#where + 1] = { m, c }
      end
    end
  end
  for i, v in ipairs(mean(values)) do where[i][1][where[i][2]] = v end
end

function task.progress_fields(o, model, out, steps_per_second)
  return { { "audio-s/s", steps_per_second * o.batch * dist.size() * o.sample_length / model.hp.sr },
           { "usage", out.levels[1].metrics.usage or 0 } }
end

return task
