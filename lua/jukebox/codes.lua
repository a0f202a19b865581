--- Codes as data: a folder of VQ-VAE codes (written by recipes/encode_codes.lua, one
-- safetensors file per audio file) read as a dataset of token windows for training
-- priors.
--
-- A codes file holds `codes_l1` ... `codes_lL`: int32 [T_l], 0-based code ids, with
-- T_l = padded / hop_l, where padded is the file's length at the VQ-VAE's rate rounded
-- up to the top level's hop. Its metadata (strings, as safetensors requires):
--   format = "jukebox-c codes 1", file (the audio file's path relative to the data
--   folder), source (the path it was read from), data_dir, samples (length at the
--   VQ-VAE's rate before padding), seconds, sample_rate, padded_samples, levels,
--   hop_lengths ("8,32,128"), l_bins, source_rate, source_frames, vqvae (checkpoint
--   path), vqvae_step, vqvae_fingerprint (codes.fingerprint), vqvae_hparams (JSON),
--   artist, genre, lyrics (a path relative to the data folder, or absent), labelled
--   ("true" when a labels file named it).
--
-- Reading, for a prior trainer:
--   local codes = require "jukebox.codes"
--   local ds = codes.open("runs/codes", {level = 3, n_ctx = 1024, split = "train",
--                                        vqvae_fingerprint = codes.fingerprint(model)})
--   local rng = jbx.core.rng(seed)                  -- its rng:state() checkpoints
--   local w = ds:window(rng)  -- w.codes [n_ctx] int32, w.upper (level + 1) or nil,
--                             -- w.offset, w.length, w.total_length (samples), w.artist, ...
--   local b = ds:batch(rng, 4) -- codes [4, n_ctx], upper [4, n_ctx / ratio] or nil, windows
--   print(ds:entropy())       -- unigram entropy of the level's codes, bits per token
local core = require "jukebox.core"
local options = require "jukebox.options"

local codes = {}

codes.FORMAT = "jukebox-c codes 1"
codes.EXT = ".codes.safetensors"

-- ------------------------------------------------------------------ fingerprints

local FNV_OFFSET, FNV_PRIME = -3750763034362895579, 1099511628211 -- 0xcbf29ce484222325, 0x100000001b3

--- 64-bit FNV-1a of a string, continuing from h (integers wrap in Lua 5.4).
function codes.hash(s, h)
  h = h or FNV_OFFSET
  for i = 1, #s, 64 do
    local bytes = { s:byte(i, math.min(i + 63, #s)) }
    for j = 1, #bytes do h = (h ~ bytes[j]) * FNV_PRIME end
  end
  return h
end

-- JSON-like text of a value with sorted keys: the same table gives the same text in
-- every run (pairs order does not).
local function canonical(v)
  local t = type(v)
  if t == "table" then
    if #v > 0 or next(v) == nil then
      local parts = {}
      for i, x in ipairs(v) do parts[i] = canonical(x) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    local parts = {}
    for i, k in ipairs(keys) do parts[i] = ("%q:%s"):format(k, canonical(v[k])) end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "number" then
    return math.type(v) == "integer" and tostring(v) or ("%.17g"):format(v)
  elseif t == "string" then
    return ("%q"):format(v)
  end
  return tostring(v)
end

--- codes.fingerprint(model) -> "vqvae-<16 hex digits>": a hash of the VQ-VAE's
-- hyperparameters and the exact bits of its codebooks, so codes from another VQ-VAE
-- (another architecture, or the same one trained differently or for longer) are told
-- apart. `model` is a VQ-VAE (jukebox.vqvae, as models.load gives it) or the path of
-- its checkpoint.
function codes.fingerprint(model)
  if type(model) == "string" then model = require("jukebox.models").load(model) end
  if type(model) ~= "table" or not model.hp or not model.bottleneck then
    error("codes.fingerprint: expects a VQ-VAE (or its checkpoint path)", 2)
  end
  local h = codes.hash(canonical(model.hp))
  for _, b in ipairs(model.bottleneck) do
    local k = b.k:contiguous():reshape({ -1 }):totable()
    local packed = {}
    for i = 1, #k, 4096 do
      packed[#packed + 1] = string.pack(("<" .. ("f"):rep(math.min(4096, #k - i + 1))),
        table.unpack(k, i, math.min(i + 4095, #k)))
    end
    h = codes.hash(table.concat(packed), h)
  end
  return ("vqvae-%016x"):format(h)
end

-- ------------------------------------------------------------------ writing

local function str(v) return v == nil and nil or tostring(v) end

--- codes.save(path, levels, meta): writes int32 codes per level ({[T_1], [T_2], ...})
-- with `meta` (a table of strings and numbers; format is added) atomically.
function codes.save(path, levels, meta)
  local named, md = {}, { format = codes.FORMAT }
  for l, c in ipairs(levels) do named["codes_l" .. l] = c:reshape({ -1 }) end
  for k, v in pairs(meta) do md[k] = str(v) end
  core.safetensors_save(path, named, md)
  return path
end

--- codes.output_name(rel) -> the codes file's path relative to the codes folder for an
-- audio file at `rel` (relative to the data folder): "music/x.flac" -> "music/x.flac.codes.safetensors"
-- (the audio extension stays, so x.wav and x.flac do not collide).
function codes.output_name(rel) return rel .. codes.EXT end

-- ------------------------------------------------------------------ reading

-- Integer fields of the metadata.
local INT_FIELDS = { "samples", "sample_rate", "padded_samples", "levels", "l_bins", "source_rate", "source_frames" }

local function parse_list(s)
  local out = {}
  for item in tostring(s or ""):gmatch("[^,]+") do out[#out + 1] = math.tointeger(tonumber(item)) end
  return out
end

--- codes.info(path) -> the codes file's metadata as a table (integers for the counts,
-- hop_lengths a list, tokens = {T_1, ...}), from its header only; or nil and why the
-- file is not a complete codes file.
function codes.info(path)
  local ok, tensors, md = pcall(core.safetensors_info, path)
  if not ok then return nil, tostring(tensors):gsub("^[%w_.]+: ", "") end
  if md.format ~= codes.FORMAT then
    return nil, ("not a codes file (format '%s', expected '%s')"):format(tostring(md.format), codes.FORMAT)
  end
  local m = {}
  for k, v in pairs(md) do m[k] = v end
  for _, k in ipairs(INT_FIELDS) do
    m[k] = math.tointeger(tonumber(md[k]))
    if not m[k] then return nil, ("metadata %s is missing or not an integer"):format(k) end
  end
  m.seconds = tonumber(md.seconds)
  m.hop_lengths = parse_list(md.hop_lengths)
  if #m.hop_lengths ~= m.levels then return nil, "hop_lengths does not list every level" end
  m.tokens = {}
  for l = 1, m.levels do
    local t = tensors["codes_l" .. l]
    if not t then return nil, ("no codes_l%d"):format(l) end
    if t.loads_as ~= "int32" or #t.shape ~= 1 then return nil, ("codes_l%d is not a 1-D int32 tensor"):format(l) end
    if t.shape[1] * m.hop_lengths[l] ~= m.padded_samples then
      return nil, ("codes_l%d has %d tokens, %d samples at hop %d need %d"):format(l, t.shape[1], m.padded_samples,
        m.hop_lengths[l], m.padded_samples // m.hop_lengths[l])
    end
    m.tokens[l] = t.shape[1]
  end
  m.labelled = md.labelled == "true"
  if md.lyrics == "" then m.lyrics = nil end
  return m
end

--- codes.list(dir) -> sorted paths of the codes files under dir (recursive).
function codes.list(dir)
  local out = {}
  local function walk(d)
    for _, name in ipairs(core.list_dir(d)) do
      local p = d .. "/" .. name
      local k = core.path_kind(p)
      if name:sub(1, 1) == "." then
        -- hidden (and temporary files of the atomic writer)
      elseif k == "dir" then
        walk(p)
      elseif k == "file" and name:sub(-#codes.EXT) == codes.EXT then
        out[#out + 1] = p
      end
    end
  end
  walk(dir)
  table.sort(out)
  return out
end

--- Entropy in bits of a table of counts (id -> count, any keys).
function codes.entropy_of_counts(counts)
  local total = 0
  for _, c in pairs(counts) do total = total + c end
  if total == 0 then return 0 end
  local h = 0
  for _, c in pairs(counts) do
    if c > 0 then
      local p = c / total
      h = h - p * math.log(p, 2)
    end
  end
  return h
end

--- Adds the ids of `t` (int32 tensor or Lua array of ids) to counts[id] and returns counts.
function codes.count(t, counts)
  counts = counts or {}
  local ids = core.is_tensor(t) and t:reshape({ -1 }):totable() or t
  for _, id in ipairs(ids) do counts[id] = (counts[id] or 0) + 1 end
  return counts
end

--- Unigram entropy (bits per token) of a sequence of codes (int32 tensor or Lua array).
function codes.unigram_entropy(t) return codes.entropy_of_counts(codes.count(t)) end

local Dataset = {}
Dataset.__index = Dataset

codes.defaults = {
  level = nil, n_ctx = nil, vqvae_fingerprint = nil, split = "all", eval_fraction = 0.1, cache = 64,
  quiet = false,
}

-- A file's place in the held-out ranking: its name's hash (independent of the folder's
-- listing order and of the machine).
local function split_key(name) return codes.hash(name) end

--- codes.open(dir, opts) -> a dataset of windows at one level:
--   level               the level to model, 1 (finest) .. levels (top); required
--   n_ctx               tokens per window; required. For an upsampler (level < top) a
--                       multiple of hop_{level+1} / hop_level, so the level above lines up
--   vqvae_fingerprint   when given, the codes must come from that VQ-VAE (codes.fingerprint)
--   split               "all", "train" or "eval": the held-out files are the
--                       ceil(eval_fraction * n) files (at least one when there are two or
--                       more files and eval_fraction > 0) whose names hash highest, so
--                       the split depends only on the file names
--   eval_fraction       0.1
--   cache               codes files kept in memory (loaded on first use)
--   quiet               no line on stderr for files shorter than one window
-- Fields: files (each {path, name, tokens, samples, seconds, artist, genre, lyrics,
-- lyrics_path (data_dir/lyrics), labelled, held_out, windows, meta = codes.info's}),
-- all_files (every file of every split, shorter ones included), skipped (files shorter than n_ctx), level, levels, n_ctx,
-- hop_lengths, hop (this level's), sample_rate, l_bins, fingerprint, vqvae, ratio
-- (hop_{level+1} / hop_level, nil at the top), upper_ctx (n_ctx / ratio), tokens (total).
function codes.open(dir, opts)
  local o = options.merge("codes.open", codes.defaults, opts,
    { optional = { "level", "n_ctx", "vqvae_fingerprint" } })
  if type(dir) ~= "string" then error("codes.open: dir must be a string (a codes folder)", 2) end
  local level, n_ctx = math.tointeger(o.level), math.tointeger(o.n_ctx)
  if not level then error(("codes.open: level must be an integer, got %s"):format(tostring(o.level)), 2) end
  if not n_ctx or n_ctx < 1 then
    error(("codes.open: n_ctx must be an integer >= 1, got %s"):format(tostring(o.n_ctx)), 2)
  end
  if o.split ~= "all" and o.split ~= "train" and o.split ~= "eval" then
    error(("codes.open: split must be \"all\", \"train\" or \"eval\", got %s"):format(tostring(o.split)), 2)
  end
  if not math.tointeger(o.cache) or o.cache < 0 then
    error(("codes.open: cache must be an integer >= 0, got %s"):format(tostring(o.cache)), 2)
  end
  if type(o.eval_fraction) ~= "number" or o.eval_fraction < 0 or o.eval_fraction >= 1 then
    error(("codes.open: eval_fraction must be in [0, 1), got %s"):format(tostring(o.eval_fraction)), 2)
  end
  local kind = core.path_kind(dir)
  if kind ~= "dir" then
    error(("codes: '%s' %s"):format(dir, kind and "is not a folder" or "is missing"), 2)
  end
  local paths = codes.list(dir)
  if #paths == 0 then
    error(("codes: no codes files (*%s) in '%s': write them with recipes/encode_codes.lua"):format(codes.EXT, dir), 2)
  end
  local all, first = {}, nil
  for _, p in ipairs(paths) do
    local m, why = codes.info(p)
    if not m then error(("codes: '%s' cannot be read: %s"):format(p, why), 2) end
    if not first then
      first = { path = p, m = m }
    elseif m.vqvae_fingerprint ~= first.m.vqvae_fingerprint then
      error(("codes: '%s' mixes codes of two VQ-VAEs: %s (%s, from %s) and %s (%s, from %s)"):format(dir,
        first.path, tostring(first.m.vqvae_fingerprint), tostring(first.m.vqvae), p, tostring(m.vqvae_fingerprint),
        tostring(m.vqvae)), 2)
    end
    all[#all + 1] = {
      path = p, name = m.file or p, tokens = m.tokens[level], samples = m.samples, seconds = m.seconds,
      artist = m.artist or "unknown", genre = m.genre or "unknown", lyrics = m.lyrics, labelled = m.labelled,
      lyrics_path = m.lyrics and ((m.data_dir or ".") .. "/" .. m.lyrics), meta = m,
    }
  end
  local m1 = first.m
  if o.vqvae_fingerprint and o.vqvae_fingerprint ~= m1.vqvae_fingerprint then
    error(("codes: the codes in '%s' come from another VQ-VAE: %s (%s), expected %s"):format(dir,
      tostring(m1.vqvae_fingerprint), tostring(m1.vqvae), o.vqvae_fingerprint), 2)
  end
  if level < 1 or level > m1.levels then
    error(("codes: level %d does not exist: the codes in '%s' have levels 1..%d (hops %s)"):format(level, dir,
      m1.levels, table.concat(m1.hop_lengths, ", ")), 2)
  end
  for _, f in ipairs(all) do f.tokens = f.meta.tokens[level] end
  local self = setmetatable({
    dir = dir, level = level, levels = m1.levels, n_ctx = n_ctx, hop_lengths = m1.hop_lengths,
    hop = m1.hop_lengths[level], sample_rate = m1.sample_rate, l_bins = m1.l_bins,
    fingerprint = m1.vqvae_fingerprint, vqvae = m1.vqvae, split = o.split, cache_size = o.cache,
    cached = {}, cache_order = {}, skipped = {},
  }, Dataset)
  if level < m1.levels then
    self.ratio = m1.hop_lengths[level + 1] // m1.hop_lengths[level]
    if n_ctx % self.ratio ~= 0 then
      error(("codes.open: n_ctx %d at level %d must be a multiple of %d (hop %d / hop %d) so the level above lines up")
        :format(n_ctx, level, self.ratio, m1.hop_lengths[level + 1], m1.hop_lengths[level]), 2)
    end
    self.upper_ctx = n_ctx // self.ratio
  end
  -- The held-out files: the highest hashes of the names.
  local ranked = {}
  for i, f in ipairs(all) do ranked[i] = f end
  table.sort(ranked, function(a, b)
    local ka, kb = split_key(a.name), split_key(b.name)
    if ka ~= kb then return math.ult(ka, kb) end
    return a.name < b.name
  end)
  local n_eval = 0
  if o.eval_fraction > 0 and #all >= 2 then
    n_eval = math.min(#all - 1, math.max(1, math.ceil(o.eval_fraction * #all - 1e-9)))
  end
  for i, f in ipairs(ranked) do f.held_out = i > #ranked - n_eval end
  self.all_files = all
  local files = {}
  for _, f in ipairs(all) do
    if o.split == "all" or (o.split == "eval") == f.held_out then
      if f.tokens >= n_ctx then files[#files + 1] = f else self.skipped[#self.skipped + 1] = f end
    end
  end
  if #files == 0 then
    local longest = 0
    for _, f in ipairs(all) do longest = math.max(longest, f.tokens) end
    error(("codes: no %sfile in '%s' has %d tokens at level %d (%d samples at hop %d); the longest has %d")
      :format(o.split == "all" and "" or (o.split .. " "), dir, n_ctx, level, n_ctx * self.hop, self.hop, longest), 2)
  end
  if #self.skipped > 0 and not o.quiet then
    io.stderr:write(("codes: warning: %d file(s) of '%s' are shorter than %d tokens at level %d and are left out (first: %s)\n")
      :format(#self.skipped, dir, n_ctx, level, self.skipped[1].name))
  end
  self.files = files
  -- Windows start at multiples of `step` (ratio for an upsampler: the level above lines
  -- up); file i has starts 0, step, ..., (tokens - n_ctx) rounded down.
  self.step = self.ratio or 1
  local total, cum = 0, {}
  self.tokens = 0
  for i, f in ipairs(files) do
    f.windows = (f.tokens - n_ctx) // self.step + 1
    total = total + f.windows
    cum[i] = total
    self.tokens = self.tokens + f.tokens
  end
  self.n_windows, self.cum = total, cum
  return self
end

--- The codes of file f (an entry of ds.files) at `level`, int32 [T] (cached).
function Dataset:load(f, level)
  local tensors = self.cached[f.path]
  if not tensors then
    tensors = core.safetensors_load(f.path)
    if self.cache_size > 0 then
      if #self.cache_order >= self.cache_size then
        self.cached[table.remove(self.cache_order, 1)] = nil
      end
      self.cached[f.path] = tensors
      self.cache_order[#self.cache_order + 1] = f.path
    end
  end
  return tensors["codes_l" .. (level or self.level)]
end

--- The window of file i (index into ds.files) starting at token `start` (0-based, a
-- multiple of ds.step): {codes = int32 [n_ctx], upper = int32 [upper_ctx] (level + 1,
-- the same stretch of audio) or nil at the top, file = the entry, start, offset (samples
-- from the file's start), length (n_ctx * hop samples), total_length (the file's
-- samples), artist, genre, lyrics}.
function Dataset:window_at(i, start)
  local f = self.files[i]
  if not f then error(("codes: window_at: file %s out of range 1..%d"):format(tostring(i), #self.files), 2) end
  if start < 0 or start + self.n_ctx > f.tokens or start % self.step ~= 0 then
    error(("codes: window_at: start %d is not a window of %s (0..%d, multiples of %d)"):format(start, f.name,
      f.tokens - self.n_ctx, self.step), 2)
  end
  local w = {
    codes = self:load(f):narrow(1, start + 1, self.n_ctx), file = f, start = start, offset = start * self.hop,
    length = self.n_ctx * self.hop, total_length = f.samples, artist = f.artist, genre = f.genre, lyrics = f.lyrics,
  }
  if self.ratio then
    w.upper = self:load(f, self.level + 1):narrow(1, start // self.ratio + 1, self.upper_ctx)
  end
  return w
end

--- A random window, uniform over every (file, start) pair: one rng:below draw, so the
-- generator's state (rng:state()) is all a checkpoint needs to continue the sequence.
function Dataset:window(rng) return self:window_number(rng:below(self.n_windows)) end

-- Window r (0-based) of the n_windows the dataset draws from.
function Dataset:window_number(r)
  -- The first file whose cumulative count exceeds r.
  local lo, hi = 1, #self.cum
  while lo < hi do
    local mid = (lo + hi) // 2
    if self.cum[mid] > r then hi = mid else lo = mid + 1 end
  end
  local before = lo > 1 and self.cum[lo - 1] or 0
  return self:window_at(lo, (r - before) * self.step)
end

--- n random windows as a batch: {codes = int32 [n, n_ctx], upper = int32 [n, upper_ctx]
-- or nil, windows = the n windows (for their labels and offsets)}. With `ranks`
-- processes (data-parallel training) it is part `rank` (0-based) of a global batch of
-- n x ranks windows: every rank draws them all and reads only its own.
function Dataset:batch(rng, n, rank, ranks)
  rank, ranks = rank or 0, ranks or 1
  local picks = {}
  for i = 0, n * ranks - 1 do
    local r = rng:below(self.n_windows)
    if i // n == rank then picks[#picks + 1] = r end
  end
  local ws, cs, us = {}, {}, {}
  for i, r in ipairs(picks) do
    local w = self:window_number(r)
    ws[i] = w
    cs[i] = w.codes:reshape({ 1, self.n_ctx })
    if w.upper then us[i] = w.upper:reshape({ 1, self.upper_ctx }) end
  end
  return { codes = core.concat(cs, 1), upper = self.ratio and core.concat(us, 1) or nil, windows = ws }
end

--- Every window of the dataset without overlap (starts 0, n_ctx, 2 n_ctx ...), in file
-- order: for evaluation. for w in ds:windows() do ... end
function Dataset:windows()
  local i, start = 1, 0
  return function()
    while self.files[i] and start + self.n_ctx > self.files[i].tokens do i, start = i + 1, 0 end
    if not self.files[i] then return nil end
    local w = self:window_at(i, start)
    start = start + self.n_ctx
    return w
  end
end

--- Unigram entropy (bits per token) of this level's codes over the dataset's files (its
-- split): the loss of the best model that ignores context, which a prior must beat.
function Dataset:entropy()
  if not self._entropy then
    local counts = {}
    for _, f in ipairs(self.files) do codes.count(self:load(f), counts) end
    self._entropy = codes.entropy_of_counts(counts)
  end
  return self._entropy
end

--- The artists and genres of the dataset's files, each a sorted list of names.
function Dataset:label_names()
  local a, g, seen_a, seen_g = {}, {}, {}, {}
  for _, f in ipairs(self.all_files) do
    if not seen_a[f.artist] then seen_a[f.artist] = true; a[#a + 1] = f.artist end
    if not seen_g[f.genre] then seen_g[f.genre] = true; g[#g + 1] = f.genre end
  end
  table.sort(a)
  table.sort(g)
  return { artists = a, genres = g }
end

return codes
