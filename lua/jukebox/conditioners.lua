--- Conditioning for the priors (the reference's jukebox/prior/conditioners.py and
-- jukebox/data/labels.py, re-expressed):
--
--   LabelConditioner  artist + bag-of-genre-words embeddings (the top prior's start
--                     token) and the timing embeddings (total length, absolute and
--                     relative position of the window, summed: the top prior's x_cond)
--   Conditioner       an upsampler's conditioning on the codes of the level above:
--                     Embedding -> DecoderConvBock (Resnet1D + ConvTranspose1d) -> LayerNorm
--   Labels            artist and genre names -> ids, with the reference's v2 / v3 name
--                     normalisation, and the label vector
--                     y = [total_length, offset, sample_length, artist_id, genre_id_1..G]
--                     (lengths in samples, genre slots padded with -1; lyric tokens later)
--
-- Parameter names are the reference's state dict names, relative to the module:
--   LabelConditioner: bow_genre_emb.emb.weight, artist_emb.emb.weight and, with
--     include_time_signal, total_length_emb.emb.weight, absolute_pos_emb.emb.weight,
--     relative_pos_emb.emb.weight (in the reference prior they sit under `y_emb.`)
--   Conditioner: x_emb.weight, cond.model.0.{weight,bias} (Conv1d W -> width, k3),
--     cond.model.<i>.0.<blocks|model>.<j>.model.{1,3}.{weight,bias} (Resnet1D block j of
--     upsampling stage i; `blocks` when checkpoint_res, the reference's cond_c_res = 1, as
--     all its upsampler presets; `model` otherwise), cond.model.<i>.1.{weight,bias}
--     (ConvTranspose1d), ln.{weight,bias} (in the reference prior: `conditioner_blocks.0.`)
local core = require "jukebox.core"
local nn = require "jukebox.nn"
local options = require "jukebox.options"
local int_range = require("jukebox.tensor").int_range
local vqvae = require "jukebox.vqvae"

local M = {}

---------------------------------------------------------------------------------------
-- Presets
---------------------------------------------------------------------------------------

--- Label settings of the reference (hparams.py `labels`, `labels_v3`, prior t_ranges).
-- y_bins = {genre_bins, artist_bins} as the reference orders them; G = max_bow_genre_size
-- (genre slots); t_bins = bins of each timing embedding; min/max_duration in seconds give
-- the t_ranges in samples at `sr` (the reference's priors use 44100 Hz:
-- 60 s = 2646000, 600 s = 26460000); normalise = how names are matched to ids.
--   v2              prior_5b (and the 5b upsamplers' ids): 120 genre words, 4111 artists
--   v2_lyrics       prior_5b_lyrics: as v2, min_duration 23.8 s
--   v3              prior_1b_lyrics: 604 genres, 7898 artists, whole genre string
--   small_labelled  small_labelled_prior: placeholder bins for a user's own ids
M.label_sets = {
  v2 = { y_bins = { 120, 4111 }, t_bins = 128, G = 5, n_vocab = 80, min_duration = 60,
         max_duration = 600, sr = 44100, normalise = "v2" },
  v2_lyrics = { y_bins = { 120, 4111 }, t_bins = 128, G = 5, n_vocab = 80, min_duration = 23.8,
                max_duration = 600, sr = 44100, normalise = "v2" },
  v3 = { y_bins = { 604, 7898 }, t_bins = 64, G = 1, n_vocab = 79, min_duration = 17.84,
         max_duration = 600, sr = 44100, normalise = "v3" },
  small_labelled = { y_bins = { 10, 100 }, t_bins = 64, G = 1, n_vocab = 79, min_duration = 60,
                     max_duration = 600, sr = 44100, normalise = "v3" },
}

--- The upsamplers' conditioner hyperparameters (hparams.py `upsamplers`,
-- `upsampler_level_0/1`, `small_upsampler`), as Conditioner options. bins and down_t
-- come from the VQ-VAE the upsampler sits on: the 5b VQ-VAE (l_bins 2048, downs_t
-- 3,2,2: the level above a level-0 or level-1 upsampler has down_t 2), and for
-- small_upsampler the reference's small_vqvae (l_bins 1024, downs_t 5,3: the level above
-- level 0 has down_t 3). out_width is the prior's width.
M.presets = {
  upsampler_level_0 = { bins = 2048, out_width = 1920, down_t = 2, stride_t = 2, width = 1024,
                        depth = 16, m_conv = 1.0, dilation_growth_rate = 3, dilation_cycle = 8,
                        res_scale = false, zero_out = false, checkpoint_res = true, init_scale = 0.4 },
  upsampler_level_1 = { bins = 2048, out_width = 1920, down_t = 2, stride_t = 2, width = 1024,
                        depth = 16, m_conv = 1.0, dilation_growth_rate = 3, dilation_cycle = 8,
                        res_scale = true, zero_out = false, checkpoint_res = true, init_scale = 0.4 },
  small_upsampler = { bins = 1024, out_width = 1024, down_t = 3, stride_t = 2, width = 512,
                      depth = 16, m_conv = 1.0, dilation_growth_rate = 3, dilation_cycle = 8,
                      res_scale = false, zero_out = false, checkpoint_res = true, init_scale = 0.7 },
}

---------------------------------------------------------------------------------------
-- Names -> ids
---------------------------------------------------------------------------------------

--- v2 normalisation (artist_genre_processor.py `norm`): lowercase, every character
-- outside a-z 0-9 becomes `_`, runs of `_` collapse to one, leading/trailing `_` go.
function M.norm_v2(s)
  s = tostring(s):lower():gsub("[^a-z0-9]", "_"):gsub("_+", "_"):gsub("^_", ""):gsub("_$", "")
  return s
end

--- v3 normalisation: lowercase only.
function M.norm_v3(s) return (tostring(s):lower()) end

local normalisers = { v2 = M.norm_v2, v3 = M.norm_v3 }

local Labels = {}
Labels.__index = Labels
M.Labels = Labels

-- A name list ({"unknown", "a", ...}: id = position - 1) or a map ({name = id}) ->
-- {normalised name = id}.
local function id_map(list, norm, what)
  local map = {}
  if type(list) ~= "table" then
    error(("labels: %s must be a list of names or a table name -> id, got %s"):format(what, type(list)), 4)
  end
  if #list > 0 then
    for i, name in ipairs(list) do
      local key = norm(name)
      if map[key] == nil then map[key] = i - 1 end
    end
  else
    for name, id in pairs(list) do
      if math.type(id) ~= "integer" or id < 0 then
        error(("labels: %s id of '%s' must be an integer >= 0, got %s"):format(what, tostring(name), tostring(id)), 4)
      end
      map[norm(name)] = id
    end
  end
  return map
end

--- conditioners.labels({artists = list|map, genres = list|map, style = "v2"|"v3", G = 1, sample_length =,
-- warn = function(msg)}): names -> ids. A list gives ids by position from 0 (its first
-- entry is the "unknown" id 0 by the reference's convention); a map gives them directly.
-- Names are normalised with `style` on both sides. An unknown artist or genre maps to id 0
-- with one warning per name (on stderr unless `warn` is given).
-- v2 splits a genre into a bag of words ("Blues Rock" -> blues, rock); v3 keeps it whole.
function M.labels(opts)
  opts = options.merge("labels", { style = "v2", G = 1 }, opts,
    { optional = { "artists", "genres", "warn", "sample_length" } })
  local norm = normalisers[opts.style]
  if not norm then error(("labels: style must be \"v2\" or \"v3\", got %s"):format(tostring(opts.style)), 2) end
  local self = setmetatable({ style = opts.style, norm = norm, G = opts.G, sample_length = opts.sample_length,
    warned = {} }, Labels)
  self.artist_map = id_map(opts.artists or {}, norm, "artists")
  self.genre_map = id_map(opts.genres or {}, norm, "genres")
  self.warn = opts.warn or function(msg) io.stderr:write(msg, "\n") end
  return self
end

function Labels:_unknown(what, name, key)
  local k = what .. "\0" .. key
  if not self.warned[k] then
    self.warned[k] = true
    self.warn(("labels: warning: %s '%s' (normalised '%s') is not in the list; using id 0 (unknown)")
      :format(what, name, key))
  end
  return 0
end

--- The artist's id (0 with a warning when unknown).
function Labels:artist_id(name)
  local key = self.norm(name)
  return self.artist_map[key] or self:_unknown("artist", name, key)
end

--- The genre's ids: v2 one per word of the normalised name, v3 one for the whole name.
function Labels:genre_ids(name)
  local key = self.norm(name)
  local words = {}
  if self.style == "v2" then
    for w in key:gmatch("[^_]+") do words[#words + 1] = w end
  else
    words[1] = key
  end
  local ids = {}
  for i, w in ipairs(words) do ids[i] = self.genre_map[w] or self:_unknown("genre", name, w) end
  return ids
end

--- The label vector (a Lua list of integers) of one example:
-- {total_length, offset, sample_length, artist_id, genre_id_1..G (-1 padded)}; lengths
-- in samples; sample_length defaults to the one given to labels().
function Labels:y(artist, genre, total_length, offset, sample_length)
  sample_length = sample_length or self.sample_length
  if not sample_length then error("labels.y: sample_length is not set (give it here or to labels())", 2) end
  local g = self:genre_ids(genre)
  if #g > self.G then
    error(("labels.y: genre '%s' has %d words, more than the %d genre slots (G)"):format(genre, #g, self.G), 2)
  end
  local y = { total_length, offset, sample_length, self:artist_id(artist) }
  for i = 1, self.G do y[4 + i] = g[i] or -1 end
  return y
end

---------------------------------------------------------------------------------------
-- LabelConditioner
---------------------------------------------------------------------------------------

-- Rounds to float32 (the reference computes the timing positions in float32; rounding
-- every step of the same arithmetic here puts every position in the same bin).
local function f32(x) return (string.unpack("<f", string.pack("<f", x))) end

--- An Embedding under the name `emb` (the reference's SimpleEmbedding and RangeEmbedding
-- hold theirs so), weight ~ N(0, (0.01 init_scale)^2).
local SimpleEmbedding = nn.class("SimpleEmbedding")
M.SimpleEmbedding = SimpleEmbedding
function SimpleEmbedding:init(bins, width, init_scale, seeds)
  self.bins = bins
  -- nn.Embedding's std is 0.02 init_scale; the label embeddings' is 0.01 init_scale.
  self.emb = self:child("emb", nn.Embedding.new(bins, width, { init_scale = 0.5 * init_scale, seeds = seeds }))
end
function SimpleEmbedding:forward(ids) return self.emb:forward(ids) end

--- RangeEmbedding(n_time, bins, {lo, hi}, width, init_scale, clamp): values in [lo, hi)
-- binned to floor(bins (v - lo) / (hi - lo)); with n_time > 1 each example's [start, end]
-- is interpolated to n_time positions start + (end - start) i / n_time first.
local RangeEmbedding = nn.class("RangeEmbedding", SimpleEmbedding)
M.RangeEmbedding = RangeEmbedding
function RangeEmbedding:init(n_time, bins, range, width, init_scale, clamp, seeds)
  SimpleEmbedding.init(self, bins, width, init_scale, seeds)
  self.n_time, self.lo, self.hi, self.clamp = n_time, range[1], range[2], clamp or false
end

--- The bins (flat Lua list, N x n_time, 0-based) for per-example starts and ends (float32 values).
function RangeEmbedding:bin_ids(starts, ends)
  local lo32, span32 = f32(self.lo), f32(self.hi - self.lo)
  local ids = {}
  for n, s in ipairs(starts) do
    local e = ends and ends[n]
    if e and self.clamp then e = math.min(math.max(e, self.lo), self.hi) end
    local d = e and f32(e - s)
    for i = 0, self.n_time - 1 do
      local pos = s
      if self.n_time ~= 1 then pos = f32(s + f32(d * f32(i / self.n_time))) end
      local b = math.floor(f32(self.bins * f32(f32(pos - lo32) / span32)))
      -- Unreachable for values checked to lie in [lo, hi); a guard against rounding.
      ids[#ids + 1] = math.min(math.max(b, 0), self.bins - 1)
    end
  end
  return ids
end

function RangeEmbedding:forward(starts, ends)
  return self.emb:forward(core.from_ints(self:bin_ids(starts, ends), { #starts, self.n_time }))
end

local LabelConditioner = nn.class("LabelConditioner")
M.LabelConditioner = LabelConditioner

local label_defaults = {
  y_bins = nil, -- {genre_bins, artist_bins}
  t_bins = 64,
  G = 1, -- max_bow_genre_size
  n_time = 1, -- n_ctx of the prior: positions of the timing embedding
  out_width = 128, -- the prior's width W
  init_scale = 1.0,
  include_time_signal = true, -- the top prior's (the reference: not x_cond)
  min_duration = 60, -- seconds
  max_duration = 600,
  sr = 44100, -- the label vector's lengths are samples at this rate
  seed = 0,
}

--- LabelConditioner.new(opts) or LabelConditioner.new("v2", opts): options as
-- label_defaults above (a label set name fills y_bins, t_bins, G, min/max_duration, sr);
-- opts.t_ranges = {{lo, hi}, {lo, hi}, {lo, hi}} (samples, samples, fraction) overrides
-- the ranges the durations give.
function LabelConditioner:init(set, opts)
  if type(set) ~= "string" then set, opts = nil, set end
  local base = label_defaults
  if set then
    local ls = options.choose("LabelConditioner", "label set", M.label_sets, set, 4)
    base = options.merge("LabelConditioner", label_defaults,
      { y_bins = ls.y_bins, t_bins = ls.t_bins, G = ls.G, min_duration = ls.min_duration,
        max_duration = ls.max_duration, sr = ls.sr }, { optional = { "y_bins" } })
  end
  local hp = options.merge("LabelConditioner", base, opts, { optional = { "y_bins", "t_ranges" }, level = 3 })
  if type(hp.y_bins) ~= "table" or #hp.y_bins ~= 2 then
    error("LabelConditioner: y_bins must be {genre_bins, artist_bins}", 4)
  end
  if not (hp.min_duration < hp.max_duration) then
    error(("LabelConditioner: min_duration %g s must be below max_duration %g s"):format(hp.min_duration,
      hp.max_duration), 4)
  end
  self.hp = hp
  self.G, self.n_time, self.width = hp.G, hp.n_time, hp.out_width
  local seeds = nn.seeder(hp.seed)
  self.bow_genre_emb = self:child("bow_genre_emb", SimpleEmbedding.new(hp.y_bins[1], hp.out_width, hp.init_scale, seeds))
  self.artist_emb = self:child("artist_emb", SimpleEmbedding.new(hp.y_bins[2], hp.out_width, hp.init_scale, seeds))
  self.include_time_signal = hp.include_time_signal
  if hp.include_time_signal then
    local r = hp.t_ranges or { { hp.min_duration * hp.sr, hp.max_duration * hp.sr }, { 0, hp.max_duration * hp.sr },
      { 0.0, 1.0 } }
    self.t_ranges = r
    self.total_length_emb = self:child("total_length_emb",
      RangeEmbedding.new(1, hp.t_bins, r[1], hp.out_width, hp.init_scale, false, seeds))
    self.absolute_pos_emb = self:child("absolute_pos_emb",
      RangeEmbedding.new(hp.n_time, hp.t_bins, r[2], hp.out_width, hp.init_scale, false, seeds))
    self.relative_pos_emb = self:child("relative_pos_emb",
      RangeEmbedding.new(hp.n_time, hp.t_bins, r[3], hp.out_width, hp.init_scale, true, seeds))
  end
end

-- y (int32 tensor [N, 4 + G] or a Lua list of rows) -> list of rows of integers.
function LabelConditioner:_rows(y)
  local rows = y
  local width = 4 + self.G
  if type(y) == "userdata" then
    local s = y:shape()
    if #s ~= 2 or s[2] ~= width then
      error(("LabelConditioner: labels [%s] must be [batch, %d]: total_length, offset, sample_length, artist, %d genre ids")
        :format(table.concat(s, ", "), width, self.G), 3)
    end
    rows = y:totable()
  elseif type(y) ~= "table" or #y == 0 then
    error("LabelConditioner: labels must be an int32 tensor [batch, 4 + G] or a non-empty list of label vectors", 3)
  end
  for n, row in ipairs(rows) do
    if type(row) ~= "table" or #row ~= width then
      error(("LabelConditioner: label vector %d has %s values, expected %d: total_length, offset, sample_length, artist, %d genre ids")
        :format(n, type(row) == "table" and tostring(#row) or "no", width, self.G), 3)
    end
    for i = 1, width do
      if math.type(row[i]) ~= "integer" and not (type(row[i]) == "number" and row[i] == math.floor(row[i])) then
        error(("LabelConditioner: label vector %d value %d is %s, not an integer"):format(n, i, tostring(row[i])), 3)
      end
    end
  end
  return rows
end

-- The checked timing values of the rows (float32, as the reference computes them).
function LabelConditioner:_timing(rows, level)
  local hp = self.hp
  local r = self.t_ranges
  local totals, starts, ends, rel_s, rel_e = {}, {}, {}, {}, {}
  for i, row in ipairs(rows) do
    local total, offset, len = row[1], row[2], row[3]
    if not (total >= r[1][1] and total < r[1][2]) then
      error(("LabelConditioner: total length %.6g s (example %d, %d samples at %d Hz) is outside [%g, %g) s")
        :format(total / hp.sr, i, total, hp.sr, r[1][1] / hp.sr, r[1][2] / hp.sr), level + 1)
    end
    local s, e = offset, offset + len
    if offset < r[2][1] or offset >= r[2][2] or e > r[2][2] or len < 0 then
      error(("LabelConditioner: window [%.6g, %.6g) s (example %d: offset %d, sample_length %d samples) is outside [%g, %g) s")
        :format(s / hp.sr, e / hp.sr, i, offset, len, r[2][1] / hp.sr, r[2][2] / hp.sr), level + 1)
    end
    totals[i] = f32(total)
    starts[i], ends[i] = f32(s), f32(e)
    rel_s[i], rel_e[i] = f32(starts[i] / totals[i]), f32(ends[i] / totals[i])
    if rel_s[i] >= r[3][2] then
      error(("LabelConditioner: offset %.6g s (example %d) is not before the total length %.6g s")
        :format(s / hp.sr, i, total / hp.sr), level + 1)
    end
  end
  return { totals = totals, starts = starts, ends = ends, rel_starts = rel_s, rel_ends = rel_e }
end

--- The timing bins of labels y (0-based, flat lists): total (N), absolute and relative
-- (N x n_time each); for inspection and tests.
function LabelConditioner:timing_bins(y)
  if not self.include_time_signal then error("LabelConditioner: timing_bins needs include_time_signal", 2) end
  local t = self:_timing(self:_rows(y), 2)
  return { total = self.total_length_emb:bin_ids(t.totals),
           absolute = self.absolute_pos_emb:bin_ids(t.starts, t.ends),
           relative = self.relative_pos_emb:bin_ids(t.rel_starts, t.rel_ends) }
end

--- y -> start token [N, 1, W] (artist + summed genre words), timing [N, n_time, W] (nil
-- without include_time_signal). y = [total_length, offset, sample_length, artist_id,
-- genre_id_1..G] per example (lengths in samples at sr; genre slots -1 when empty).
function LabelConditioner:forward(y)
  local rows = self:_rows(y)
  local hp, G = self.hp, self.G
  local n = #rows
  local artists, genres, mask = {}, {}, {}
  for i, row in ipairs(rows) do
    local a = math.tointeger(row[4])
    if a < 0 or a >= hp.y_bins[2] then
      error(("LabelConditioner: artist id %d (example %d) is out of range [0, %d)"):format(a, i, hp.y_bins[2]), 2)
    end
    artists[i] = a
    for g = 1, G do
      local id = math.tointeger(row[4 + g])
      if id < -1 or id >= hp.y_bins[1] then
        error(("LabelConditioner: genre id %d (example %d, slot %d) is out of range [0, %d) (-1 marks an empty slot)")
          :format(id, i, g, hp.y_bins[1]), 2)
      end
      genres[#genres + 1] = math.max(id, 0)
      mask[#mask + 1] = id >= 0 and 1 or 0
    end
  end
  local artist_emb = self.artist_emb:forward(core.from_ints(artists, { n, 1 }))
  local genre_emb = self.bow_genre_emb:forward(core.from_ints(genres, { n, G }))
  local m = core.tensor(mask):reshape({ n, G, 1 })
  local start = (genre_emb * m):sum(2, true) + artist_emb
  if not self.include_time_signal then return start, nil end

  local t = self:_timing(rows, 2)
  local pos = self.total_length_emb:forward(t.totals) + self.absolute_pos_emb:forward(t.starts, t.ends)
    + self.relative_pos_emb:forward(t.rel_starts, t.rel_ends)
  return start, pos
end

---------------------------------------------------------------------------------------
-- Conditioner (upsamplers)
---------------------------------------------------------------------------------------

local Conditioner = nn.class("Conditioner")
M.Conditioner = Conditioner

local cond_defaults = {
  bins = 2048, -- codes of the level above
  out_width = 128, -- W, the prior's width
  down_t = 2, -- downs_t of the level above
  stride_t = 2,
  width = 128, -- cond_width
  depth = 3, -- cond_depth
  m_conv = 1.0, -- cond_m_conv
  dilation_growth_rate = 1, -- cond_dilation_growth_rate
  dilation_cycle = nil, -- cond_dilation_cycle
  zero_out = false, -- cond_zero_out
  res_scale = false, -- cond_res_scale: 1/sqrt(depth)
  checkpoint_res = false, -- cond_c_res: blocks named `blocks.N`, hidden activation recomputed
  init_scale = 1.0,
  seed = 0,
}
M.conditioner_defaults = cond_defaults

--- Conditioner.new(opts) or Conditioner.new("small_upsampler", opts): options as
-- cond_defaults above (the reference's cond_conv_block defaults); a preset fills them.
function Conditioner:init(preset, opts)
  if type(preset) ~= "string" then preset, opts = nil, preset end
  local base = cond_defaults
  if preset then
    local p = options.choose("Conditioner", "preset", M.presets, preset, 4)
    base = options.merge("Conditioner", cond_defaults, p, { optional = { "dilation_cycle" } })
  end
  local hp = options.merge("Conditioner", base, opts, { optional = { "dilation_cycle" }, level = 3 })
  self.hp = hp
  self.width = hp.out_width
  self.upsample = math.tointeger(hp.stride_t ^ hp.down_t)
  local seeds = nn.seeder(hp.seed)
  self.x_emb = self:child("x_emb", nn.Embedding.new(hp.bins, hp.out_width, { init_scale = hp.init_scale, seeds = seeds }))
  -- The reference's DecoderConvBock is the VQ-VAE decoder's block, here not reversed,
  -- with the conditioner's residual options and, with cond_c_res, its `blocks` names.
  local block_hp = { m_conv = hp.m_conv, dilation_growth_rate = hp.dilation_growth_rate,
                     dilation_cycle = hp.dilation_cycle, checkpoint_res = hp.checkpoint_res,
                     zero_out = hp.zero_out, res_scale = hp.res_scale, reverse_decoder_dilation = false,
                     blocks_name = hp.checkpoint_res and "blocks" or "model" }
  self.cond = self:child("cond", vqvae.DecoderConvBlock.new(hp.out_width, hp.out_width, hp.down_t, hp.stride_t,
    hp.width, hp.depth, block_hp, seeds))
  self.ln = self:child("ln", nn.LayerNorm.new(hp.out_width))
end

--- codes int32 [N, T] (the level above's) -> x_cond [N, T stride^down_t, W]; x_cond
-- (optional, [N, T, W]) is added to the embedding first, as the reference allows.
function Conditioner:forward(codes, x_cond)
  local s = type(codes) == "userdata" and codes:shape()
  if not s or #s ~= 2 or codes.dtype ~= "int32" then
    error(("Conditioner: codes must be an int32 tensor [batch, T], got %s"):format(
      s and (codes.dtype .. " [" .. table.concat(s, ", ") .. "]") or type(codes)), 2)
  end
  if codes:numel() > 0 then
    local lo, hi = int_range(codes)
    if lo < 0 or hi >= self.hp.bins then
      error(("Conditioner: code %d is out of range [0, %d)"):format(lo < 0 and lo or hi, self.hp.bins), 2)
    end
  end
  local x = self.x_emb:forward(codes)
  if x_cond then x = x + x_cond end
  x = self.cond:forward(x:permute({ 1, 3, 2 }):contiguous())
  return self.ln:forward(x:permute({ 1, 3, 2 }):contiguous())
end

return M
