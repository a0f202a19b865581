--- Training a prior with jukebox.train (the fields are documented at the top of
-- lua/jukebox/train.lua): batches are random windows of n_ctx codes at one level of a
-- codes folder (recipes/encode_codes.lua), with the level above's codes for an
-- upsampler and label vectors (artist, genre, timing) for a labelled preset. The loss is
-- the prior's, in bits per token; log.csv adds tokens/s.
local core = require "jukebox.core"
local codes = require "jukebox.codes"
local prior = require "jukebox.prior"
local dist = core.dist

local task = { kind = "prior" }

--- Options of this task, beside the trainer's own (train.defaults). level 0 = the top.
task.defaults = { codes = "runs/codes", level = 0, preset = "tiny_prior", batch = 4, out = "runs/prior" }

--- The options recorded in a checkpoint's metadata (`train`), beside the trainer's.
task.recorded = { "batch", "level", "codes" }

-- The level `o.level` of a codes folder (0: its top), checked against the preset.
local function open_codes(o, n_ctx, split, upsampler)
  local level = o.level
  if level == 0 then
    -- The top: read from the first file's metadata (codes.open checks the folder).
    local first = core.path_kind(o.codes) == "dir" and codes.list(o.codes)[1]
    local m = first and codes.info(first)
    level = m and m.levels or 1
  end
  local ds = codes.open(o.codes, { level = level, n_ctx = n_ctx, split = split, quiet = o.quiet })
  local top = ds.levels
  if upsampler and level >= top then
    error(("prior: an upsampler is conditioned on the level above: --level must be below the top level %d of '%s'")
      :format(top, o.codes), 0)
  end
  return ds, level
end

-- The artist and genre id lists of a labelled prior: "unknown" (id 0) then the folder's
-- names in order.
local function label_lists(ds, hp)
  local names = ds:label_names()
  local lists = {}
  for key, bins in pairs({ artists = hp.y_bins[2], genres = hp.y_bins[1] }) do
    local l = { "unknown" }
    for _, n in ipairs(names[key]) do
      if n ~= "unknown" then l[#l + 1] = n end
    end
    if #l > bins then
      error(("prior: the codes name %d %s (with unknown), more than the preset's %d (y_bins)"):format(#l, key, bins), 0)
    end
    lists[key] = l
  end
  return lists
end

-- Names -> label vectors for a labelled prior (nil otherwise), with the model's id lists.
local function labeller(model, quiet)
  local hp = model.hp
  if not hp.labels then return nil end
  local C = require "jukebox.conditioners"
  local set = C.label_sets[hp.labels]
  return C.labels({ artists = model.label_lists.artists, genres = model.label_lists.genres, style = set.normalise,
    G = hp.max_bow_genre_size or set.G, warn = quiet and function() end or nil })
end

--- task.open_codes(o, n_ctx, split, upsampler) -> dataset, level: the codes folder o.codes
-- at o.level (0: its top), as training and evaluation read it.
task.open_codes = open_codes

--- task.labeller(model, quiet) -> names-to-label-vectors of a labelled prior, or nil.
task.labeller = labeller

function task.new_model(o, hparams)
  local hp = prior.hparams(o.preset, hparams)
  local ds, level = open_codes(o, hp.n_ctx, "train", hp.x_cond)
  local over = {}
  for k, v in pairs(hparams or {}) do over[k] = v end
  over.seed = over.seed or o.seed
  over.bins = ds.l_bins
  if hp.x_cond then
    over.cond_bins = ds.l_bins
    local d, r = 0, ds.ratio
    while r % hp.cond_stride_t == 0 and r > 1 do r, d = r // hp.cond_stride_t, d + 1 end
    if r ~= 1 then over.cond_stride_t, d = ds.ratio, 1 end
    over.cond_down_t = d
  end
  if hp.labels then over.sr = ds.sample_rate end
  local model = prior.new(o.preset, over)
  model.data_info = { level = level, fingerprint = ds.fingerprint, hop = ds.hop }
  if hp.labels then model.label_lists = label_lists(ds, model.hp) end
  return model
end

--- The batches: {codes, upper, labels} from the train split, drawn with a core rng whose
-- state the checkpoints keep; in a data-parallel run, this process's part of each
-- global batch.
function task.data(o, model)
  local hp = model.hp
  local ds, level = open_codes(o, hp.n_ctx, "train", hp.x_cond)
  local info = model.data_info
  if info and (info.level ~= level or info.fingerprint ~= ds.fingerprint) then
    error(("prior: the checkpoint was trained on level %d of codes %s; '%s' level %d holds %s"):format(info.level,
      info.fingerprint, o.codes, level, ds.fingerprint), 0)
  end
  local labels = labeller(model, o.quiet)
  local rng = core.rng(o.seed)
  local loader = { ds = ds, level = level, files = ds.files }
  function loader:next()
    local b = ds:batch(rng, o.batch, dist.rank(), dist.size())
    if labels then
      local ys = {}
      for i, w in ipairs(b.windows) do
        local y = labels:y(w.artist, w.genre, w.total_length, w.offset, w.length)
        for _, v in ipairs(y) do ys[#ys + 1] = v end
        if i == 1 then loader.width = #y end
      end
      b.labels = core.from_ints(ys, { o.batch, loader.width })
    end
    b.windows = nil
    return b
  end
  function loader:get_state() return rng:state() end
  function loader:set_state(s) rng:set_state(s) end
  model._tokens, model._clock = 0, core.clock()
  return loader
end

function task.prepare(o, model, loader, say)
  say("codes: level %d (hop %d), %d train files, %d tokens; unigram entropy %.3f bits per token",
    loader.level, loader.ds.hop, #loader.files, loader.ds.tokens, loader.ds:entropy())
end

function task.describe(o, model, loader)
  local hp = model.hp
  return ("training %s: width %d, depth %d, heads %d, n_ctx %d, attn_order %d, %d parameters%s%s; batch %d"):format(
    hp.preset, hp.width, hp.depth, hp.heads, hp.n_ctx, hp.attn_order, model:num_parameters(),
    hp.x_cond and (", conditioned on level %d"):format(loader.level + 1) or "", hp.labels and ", labelled" or "",
    o.batch)
end

function task.forward(model, batch)
  local out = model:forward(batch, { logits = false }) -- the fused output layer and loss
  -- Tokens of the global batch: every process of a data-parallel run has an equal part.
  local tokens = batch.codes:numel() * dist.size()
  model._tokens = (model._tokens or 0) + tokens
  out.tokens = tokens
  return out
end

function task.columns() return { "tokens_per_s" } end

-- Tokens per second since the previous row (or the start).
function task.log_cells(model, out)
  local now = core.clock()
  local rate = model._tokens / math.max(now - model._clock, 1e-9)
  model._tokens, model._clock = 0, now
  return { ("%.1f"):format(rate) }
end

function task.progress_fields(o, model, out, steps_per_second)
  return { { "tokens/s", steps_per_second * out.tokens } }
end

--- The batch of one window w (codes.Dataset:window_at) for model: {codes = [1, n_ctx],
-- upper, labels (with task.labeller(model)'s `labels`)}.
function task.window_batch(model, w, labels)
  local b = { codes = w.codes:reshape({ 1, model.hp.n_ctx }), upper = w.upper and w.upper:reshape({ 1, -1 }) }
  if labels then
    local y = labels:y(w.artist, w.genre, w.total_length, w.offset, w.length)
    b.labels = core.from_ints(y, { 1, #y })
  end
  return b
end

--- Held-out bits per token of `model` on the eval split of its codes (every window
-- without overlap, at most max_windows): {bits = mean, windows = n, by_position = {...}}.
function task.evaluate(o, model, max_windows)
  local hp = model.hp
  local ds = open_codes(o, hp.n_ctx, "eval", hp.x_cond)
  local labels = labeller(model, true)
  local sum, n, pos = 0, 0, nil
  model:eval()
  core.no_grad(function()
    for w in ds:windows() do
      if max_windows and n >= max_windows then break end
      local per = model:forward(task.window_batch(model, w, labels), { reduction = "none" }).loss:reshape({ -1 })
      pos = pos and pos + per or per
      sum, n = sum + per:mean():item(), n + 1
    end
  end)
  model:train()
  if n == 0 then return nil end
  return { bits = sum / n, windows = n, by_position = (pos * (1 / n)):totable(), entropy = ds:entropy() }
end

return task
