--- Sampling schedules for a stack of priors over a VQ-VAE's codes (the reference's
-- jukebox/sample.py, re-expressed): the top level first, then each upsampler
-- conditioned on the level above, then the lowest sampled level's codes decoded to audio.
--
-- Levels are the VQ-VAE's: 1 = the finest (hop 8), L = the top. Codes are int32
-- [n_samples, T_l] per level (T_l = sample_length / hop_l when done).
--
-- Windows (sample.plan): a level of `total` tokens with a prior of n_ctx is sampled in
-- windows of n_ctx starting every hop_fraction * n_ctx tokens (get_starts: the last
-- start snapped to total - n_ctx); the tokens a window already has (an earlier window's,
-- a prompt's, saved codes) are primed, the rest sampled. A level shorter than n_ctx is
-- one partial window of `total` tokens. Per window the labels (offset = start * hop,
-- sample_length = n_ctx * hop) and the upsampler's slice of the level above
-- ([start / ratio, end / ratio)) are recomputed, as the reference's get_y / get_z_conds.
-- Departure: the reference's partial window samples `total` tokens more than the codes
-- hold (sample_partial_window, for the co-composer); here every level samples up to
-- `total` tokens, so primed and continued runs of short lengths mean the same as long ones.
--
-- Randomness: the sampler interface has no get/set of its rng state, so every window
-- (and batch group) gets a fresh sampler seeded from (seed, level, window index, group)
-- (sample.window_seed). A run stopped after any window and resumed from the saved codes
-- therefore draws exactly what the uninterrupted run draws.
--
-- Modes (sample.run): ancestral (from nothing), primed (the first prompt_seconds of an
-- audio file, encoded to every level, then continued), continue (saved codes extended
-- to a longer length), upsample (saved top-level codes, the lower levels sampled anew).
local core = require "jukebox.core"
local codec = require "jukebox.codec"
local codes_mod = require "jukebox.codes"
local options = require "jukebox.options"

local M = {}

M.FORMAT = "jukebox-c samples 1"

---------------------------------------------------------------------------------------
-- Windows
---------------------------------------------------------------------------------------

--- The reference's hop_fraction (bottom, middle, top = 0.5, 0.5, 0.125) for L levels:
-- 0.125 at the top, 0.5 below.
function M.default_hop_fraction(levels)
  local h = {}
  for l = 1, levels do h[l] = l == levels and 0.125 or 0.5 end
  return h
end

--- Window starts (0-based) over `total` tokens, n_ctx per window, every `hop` tokens;
-- the last one snapped to total - n_ctx (the reference's get_starts). total >= n_ctx.
function M.get_starts(total, n_ctx, hop)
  local starts = {}
  local s = 0
  while s < total - n_ctx + hop do
    starts[#starts + 1] = (s + n_ctx >= total) and total - n_ctx or s
    s = s + hop
  end
  return starts
end

--- The windows that still have tokens to sample for a level of `total` tokens whose
-- codes hold `have` tokens: {{index, start, stop, primed, new}, ...} (0-based, stop
-- exclusive; index counts every window of the level, done or not).
function M.plan(total, n_ctx, hop, have)
  have = have or 0
  if math.type(hop) ~= "integer" or hop < 1 or hop > n_ctx then
    error(("sample: the hop %s must be an integer in [1, n_ctx %d] (hop_fraction * n_ctx)"):format(tostring(hop),
      n_ctx), 2)
  end
  local out = {}
  if total <= n_ctx then
    if have < total then out[1] = { index = 1, start = 0, stop = total, primed = have, new = total - have } end
    return out
  end
  for i, s in ipairs(M.get_starts(total, n_ctx, hop)) do
    local e = s + n_ctx
    if e > have then
      out[#out + 1] = { index = i, start = s, stop = e, primed = have - s, new = e - have }
      have = e
    end
  end
  return out
end

--- A seed for window `window` of level `level`, batch group `group`, from the run's seed.
function M.window_seed(seed, level, window, group)
  return codes_mod.hash(("jukebox-c sample %d %d %d %d"):format(seed, level, window, group or 1))
end

--- The sampler constructor: jukebox.sampler (the KV-cache one) when it exists, else the
-- slow reference (jukebox.sampler_ref). Returns new, name.
function M.default_sampler()
  local ok, mod = pcall(require, "jukebox.sampler")
  if ok then return mod.new, "jukebox.sampler" end
  if not tostring(mod):find("module 'jukebox.sampler' not found", 1, true) then error(mod, 0) end
  return require("jukebox.sampler_ref").new, "jukebox.sampler_ref"
end

---------------------------------------------------------------------------------------
-- Checks
---------------------------------------------------------------------------------------

--- Checks that `prior` (named `name`) can sample level `level` of `vqvae` (fingerprint fp).
function M.check_prior(vqvae, fp, prior, level, name)
  name = name or "prior"
  local L = vqvae.hp.levels
  if prior.bins ~= vqvae.hp.l_bins then
    error(("%s has %d bins but the VQ-VAE has %d codes: it was trained on another VQ-VAE"):format(name,
      prior.bins, vqvae.hp.l_bins), 0)
  end
  local info = prior.data_info
  if info and info.fingerprint and info.fingerprint ~= fp then
    error(("%s was trained on codes of %s; --vqvae is %s (another VQ-VAE)"):format(name, tostring(info.fingerprint),
      fp), 0)
  end
  if info and info.level and info.level ~= level then
    error(("%s models level %d, not level %d"):format(name, info.level, level), 0)
  end
  if level < L and not prior.conditioner then
    error(("%s is for level %d, below the top %d: it must be an upsampler (conditioned on the level above)")
      :format(name, level, L), 0)
  end
  if level == L and prior.conditioner then
    error(("%s is an upsampler; the top level %d needs a prior without x_cond"):format(name, L), 0)
  end
  if prior.conditioner then
    local want = vqvae.hop_lengths[level + 1] // vqvae.hop_lengths[level]
    if prior.ratio ~= want then
      error(("%s upsamples by %d; levels %d and %d of the VQ-VAE differ by %d"):format(name, prior.ratio, level,
        level + 1, want), 0)
    end
  end
end

---------------------------------------------------------------------------------------
-- One level
---------------------------------------------------------------------------------------

local function rows(t, r0, n) return t:narrow(1, r0, n) end

--- Samples level l of state st up to st.sample_length / hop_l tokens.
-- st = {vqvae, priors = {[l] = Prior}, zs = {[l] = int32 [N, T]}, n_samples, sample_length,
--       labels = {[l] = {rows...}} (label rows per sample for labelled priors, offset 0)}
-- o = {temp, top_k, top_p, seed, batch, hop_fraction (list per level), sampler (constructor),
--      chunk (tokens per sampler call), on_window(l, window, st), on_tokens(done, total),
--      interrupted() -> bool, rank = 0, ranks = 1}
-- With `ranks` processes (mpirun; core.dist), the batch groups of every window are
-- shared out, group g to rank (g - 1) % ranks, and each group's codes are broadcast from
-- its rank, so every rank ends each window with all the codes. A group's codes do not
-- depend on which rank draws them (each group has its own seed).
-- Returns the number of tokens this process sampled.
function M.sample_level(st, l, o)
  local prior = st.priors[l]
  local vq = st.vqvae
  local hop = vq.hop_lengths[l]
  local n_ctx = prior.n_ctx
  if st.sample_length % hop ~= 0 then error(("sample: sample_length %d is not a multiple of hop %d"):format(
    st.sample_length, hop), 0) end
  local total = st.sample_length // hop
  local hop_len = math.floor(o.hop_fraction[l] * n_ctx)
  local ratio = prior.conditioner and prior.ratio or nil
  if ratio and (hop_len % ratio ~= 0 or n_ctx % ratio ~= 0) then
    error(("sample: level %d: the window hop %d and n_ctx %d must be multiples of the upsampling ratio %d"):format(l,
      hop_len, n_ctx, ratio), 0)
  end
  local z = st.zs[l]
  local N = st.n_samples
  local rank, ranks = o.rank or 0, o.ranks or 1
  local windows = M.plan(total, n_ctx, hop_len, z:shape()[2])
  local todo = 0
  for _, w in ipairs(windows) do
    for g = 1, (N + o.batch - 1) // o.batch do
      if (g - 1) % ranks == rank then todo = todo + w.new * math.min(o.batch, N - (g - 1) * o.batch) end
    end
  end
  local done = 0
  for _, w in ipairs(windows) do
    local T = w.stop - w.start
    local parts = {}
    for g = 1, (N + o.batch - 1) // o.batch do
      local r0 = (g - 1) * o.batch + 1
      local nb = math.min(o.batch, N - r0 + 1)
      if (g - 1) % ranks ~= rank then goto next_group end
      local batch = {}
      if ratio then
        local up = st.zs[l + 1]
        if up:shape()[2] < w.stop // ratio then
          error(("sample: level %d needs %d tokens of level %d, it has %d"):format(l, w.stop // ratio, l + 1,
            up:shape()[2]), 0)
        end
        batch.upper = rows(up, r0, nb):narrow(2, w.start // ratio + 1, T // ratio):contiguous()
      end
      if prior.y_emb then
        local ys = {}
        for i = r0, r0 + nb - 1 do
          local y = table.move(st.labels[l][i], 1, #st.labels[l][i], 1, {})
          y[2] = y[2] + w.start * hop
          y[3] = n_ctx * hop
          ys[#ys + 1] = y
        end
        batch.labels = ys
      end
      local x_cond, y_cond = core.no_grad(function() return prior:conditioning(batch, T) end)
      local s = o.sampler(prior, { batch = nb, temp = o.temp[l], top_k = o.top_k, top_p = o.top_p,
        seed = M.window_seed(o.seed, l, w.index, g) })
      s:reset()
      s:set_conditioning(x_cond, y_cond)
      if w.primed > 0 then s:prime(rows(z, r0, nb):narrow(2, w.start + 1, w.primed):contiguous()) end
      local got, pieces = 0, {}
      while got < w.new do
        local k = math.min(o.chunk or 32, w.new - got)
        pieces[#pieces + 1] = s:sample(k)
        got = got + k
        done = done + k * nb
        if o.on_tokens then o.on_tokens(done, todo) end
        if o.interrupted and o.interrupted() then
          error(("interrupted: level %d window %d was not finished; continue with --resume"):format(l, w.index), 0)
        end
      end
      parts[g] = #pieces == 1 and pieces[1] or core.concat(pieces, 2)
      ::next_group::
    end
    if ranks > 1 then
      for g = 1, (N + o.batch - 1) // o.batch do
        local nb = math.min(o.batch, N - (g - 1) * o.batch)
        parts[g] = core.dist.broadcast(parts[g] or core.zeros({ nb, w.new }, { dtype = "int32" }), (g - 1) % ranks)
      end
    end
    z = core.concat({ z, #parts == 1 and parts[1] or core.concat(parts, 1) }, 2)
    st.zs[l] = z
    if o.on_window then o.on_window(l, w, st) end
  end
  return done
end

--- Each sample's audio [T_l * hop_l] from level l's codes [N, T_l] (vqvae decode of that level).
function M.decode_level(vqvae, z, l)
  local out = {}
  for n = 1, z:shape()[1] do
    out[n] = core.no_grad(function() return codec.decode(vqvae, z:narrow(1, n, 1):contiguous(), l) end)
  end
  return out
end

---------------------------------------------------------------------------------------
-- Codes files
---------------------------------------------------------------------------------------

--- Writes codes {[l] = int32 [N, T_l]} atomically (empty levels are left out) with meta
-- (a table, stored as JSON in the metadata `jukebox`).
function M.save_codes(path, zs, meta)
  local named = {}
  for l, z in pairs(zs) do
    if z:shape()[2] > 0 then named["codes_l" .. l] = z:contiguous() end
  end
  core.safetensors_save(path, named, { format = M.FORMAT, jukebox = core.json_encode(meta) })
  return path
end

--- Reads a codes file of sample.save_codes -> zs {[l] = [N, T_l]} (every level, empty
-- ones [N, 0]), meta.
function M.load_codes(path, levels)
  local kind = core.path_kind(path)
  if kind ~= "file" then error(("codes file '%s' %s"):format(path, kind and "is not a file" or "does not exist"), 0) end
  local tensors, md = core.safetensors_load(path)
  if md.format ~= M.FORMAT then
    error(("'%s' is not a codes file of recipes/sample.lua (format %s)"):format(path, tostring(md.format)), 0)
  end
  local meta = core.json_decode(md.jukebox)
  local zs, n = {}, meta.n_samples
  for l = 1, levels or meta.levels do
    zs[l] = tensors["codes_l" .. l] or core.zeros({ n, 0 }, { dtype = "int32" })
  end
  return zs, meta
end

---------------------------------------------------------------------------------------
-- A whole run
---------------------------------------------------------------------------------------

M.defaults = {
  vqvae = nil, -- path or model
  priors = nil, -- {[level] = path or Prior}
  mode = "ancestral",
  seconds = 4.0, total_seconds = false, prompt = false, prompt_seconds = 2.0, codes = false,
  temp = { 0.99 }, top_k = 0, top_p = 0.0, n_samples = 1, batch = 1, seed = 0,
  artist = "unknown", genre = "unknown", out = "runs/sample", resume = false,
  hop_fraction = false, sampler = false, chunk = 32, plots = true, quiet = false, progress = true, threads = false,
  warn = false, -- function(msg) for warnings (an unknown artist or genre); default stderr
}

local MODES = { ancestral = true, primed = true, continue = true, upsample = true }

-- A per-level list from 1 or L values (bottom first).
local function per_level(name, v, L)
  if type(v) == "number" then v = { v } end
  if #v == 1 then
    local out = {}
    for l = 1, L do out[l] = v[1] end
    return out
  end
  if #v ~= L then
    error(("--%s takes 1 value or one per level (%d, bottom first), got %d"):format(name, L, #v), 0)
  end
  return v
end

local function round_down(n, m) return (n // m) * m end

local function say(o, fmt, ...) if not o.quiet then print(fmt:format(...)) end end

-- The settings that must agree for --resume, as a canonical string.
local function settings_key(s)
  local keys = {}
  for k in pairs(s) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. core.json_encode(s[k]) end
  return table.concat(parts, ";")
end

local function write_level_outputs(o, st, l, fs)
  local plot = require "jukebox.plot"
  local audio = require("jukebox").audio
  local vq = st.vqvae
  local dir = ("%s/level_%d"):format(o.out, l)
  core.mkdir_p(dir)
  local files = {}
  local wavs = M.decode_level(vq, st.zs[l], l)
  for n, y in ipairs(wavs) do
    local path = ("%s/sample_%d.flac"):format(dir, n - 1)
    audio.save(path, y:clamp(-1, 1), vq.hp.sr)
    files[#files + 1] = path
  end
  if o.plots then
    local items, series = {}, {}
    local hop = vq.hop_lengths[l]
    local what = o.mode
    if fs.settings.prompt_samples > 0 then
      what = ("%s (prompt: the first %.2f s)"):format(o.mode, fs.settings.prompt_samples / vq.hp.sr)
    end
    for n, y in ipairs(wavs) do
      if y:numel() >= 1024 then items[#items + 1] = { name = ("sample %d, level %d"):format(n - 1, l), audio = y } end
      local c = st.zs[l]:narrow(1, n, 1):reshape({ -1 }):totable()
      local xs = {}
      for t = 1, #c do xs[t] = (t - 1) * hop / vq.hp.sr end
      series[n] = { name = ("sample %d"):format(n - 1), x = xs, y = c }
    end
    if #items > 0 then
      local p = dir .. "/spectrograms.png"
      plot.spectrograms(p, { items = items, rate = vq.hp.sr, title = ("Samples at level %d (hop %d), %s"):format(l,
        hop, what) })
      files[#files + 1] = p
    end
    local p = dir .. "/codes.png"
    plot.lines(p, { series = series, style = "points", xlabel = "time (s)", ylabel = "code index",
      title = ("Codes of level %d (hop %d), %s"):format(l, hop, what) })
    files[#files + 1] = p
  end
  local cp = M.save_codes(dir .. "/codes.safetensors", st.zs, fs)
  table.insert(files, 1, cp)
  return files
end

--- Runs a sampling schedule with outputs under o.out (see recipes/sample.lua):
-- returns {zs, levels = {[l] = {files...}}, settings, tokens = {[l] = n}, seconds = {[l] = s}}.
function M.run(o)
  o = options.merge("sample.run", M.defaults, o, { optional = { "vqvae", "priors" } })
  local models = require "jukebox.models"
  local json = require "jukebox.json"
  local audio = require("jukebox").audio
  if not MODES[o.mode] then
    error(("--mode must be ancestral, primed, continue or upsample, got '%s'"):format(tostring(o.mode)), 0)
  end
  if o.top_k > 0 and o.top_p > 0 then
    error(("--top-k (%d) and --top-p (%g) cannot both be set, as in the reference; choose one"):format(o.top_k,
      o.top_p), 0)
  end
  if math.type(o.n_samples) ~= "integer" or o.n_samples < 1 then error("--n-samples must be an integer >= 1", 0) end
  if math.type(o.batch) ~= "integer" or o.batch < 1 then error("--batch must be an integer >= 1", 0) end
  if o.threads then core.set_threads(o.threads) end

  -- Models.
  local vq = o.vqvae
  if type(vq) == "string" then
    if core.path_kind(vq) ~= "file" then error(("--vqvae '%s' does not exist"):format(vq), 0) end
    local m = models.load(vq)
    if m.kind ~= "vqvae" then error(("--vqvae '%s' is a %s checkpoint"):format(vq, m.kind), 0) end
    vq = m
  end
  if type(vq) ~= "table" or not vq.hop_lengths then error("--vqvae is required (a VQ-VAE checkpoint)", 0) end
  vq:eval()
  local L = vq.hp.levels
  local fp = codes_mod.fingerprint(vq)
  local priors, prior_names = {}, {}
  for l, p in pairs(o.priors or {}) do
    if math.type(l) ~= "integer" or l < 1 or l > L then
      error(("--prior level %s is not a level of the VQ-VAE (1..%d, 1 = finest)"):format(tostring(l), L), 0)
    end
    local name = type(p) == "string" and ("prior '%s'"):format(p) or ("the level %d prior"):format(l)
    if type(p) == "string" then
      if core.path_kind(p) ~= "file" then error(("%s does not exist"):format(name), 0) end
      local m = models.load(p)
      if m.kind ~= "prior" then error(("%s is a %s checkpoint, not a prior"):format(name, m.kind), 0) end
      prior_names[l] = p
      p = m
    end
    M.check_prior(vq, fp, p, l, name)
    p:eval()
    priors[l] = p
  end
  local temp = per_level("temp", o.temp, L)
  local hop_fraction = per_level("hop-fraction", o.hop_fraction or M.default_hop_fraction(L), L)
  local new_sampler, sampler_name = o.sampler, "custom"
  if new_sampler == require("jukebox.sampler_ref").new then sampler_name = "jukebox.sampler_ref" end
  if not new_sampler then new_sampler, sampler_name = M.default_sampler() end
  local sr, top_hop = vq.hp.sr, vq.hop_lengths[L]

  -- Which levels, how long, from which codes.
  local levels = {} -- sampled, top first
  local zs, sample_length, N = {}, nil, o.n_samples
  local given -- codes of continue/upsample
  if o.mode == "continue" or o.mode == "upsample" then
    if not o.codes then
      error(("--mode=%s needs --codes=FILE (codes.safetensors of an earlier run)"):format(o.mode), 0)
    end
    local meta
    given, meta = M.load_codes(o.codes, L)
    if meta.vqvae_fingerprint ~= fp then
      error(("--codes '%s' are codes of %s; --vqvae is %s"):format(o.codes, tostring(meta.vqvae_fingerprint), fp), 0)
    end
    N = meta.n_samples
  end
  local lowest = L + 1
  if o.mode == "upsample" then
    local top = given[L]:shape()[2]
    if top == 0 then error(("--codes '%s' has no top-level codes"):format(o.codes), 0) end
    sample_length = top * top_hop
    for l = L - 1, 1, -1 do
      if not priors[l] then break end
      levels[#levels + 1] = l
    end
    if #levels == 0 then error(("--mode=upsample needs a prior for level %d (an upsampler)"):format(L - 1), 0) end
    for l = 1, L do zs[l] = l == L and given[L] or core.zeros({ N, 0 }, { dtype = "int32" }) end
  else
    if not priors[L] then
      error(("--mode=%s needs a prior for the top level %d (--prior=%d:CKPT)"):format(o.mode, L, L), 0)
    end
    for l = L, 1, -1 do
      if not priors[l] then break end
      levels[#levels + 1] = l
    end
    sample_length = round_down(math.floor(o.seconds * sr + 0.5), top_hop)
    if sample_length < top_hop then
      error(("--seconds %g is shorter than one top-level token (%d samples at %d Hz)"):format(o.seconds, top_hop,
        sr), 0)
    end
    for l = 1, L do zs[l] = core.zeros({ N, 0 }, { dtype = "int32" }) end
    if o.mode == "continue" then
      local have = given[L]:shape()[2] * top_hop
      if sample_length <= have then
        error(("--seconds %g is not longer than the codes' %.3f s: nothing to continue"):format(o.seconds,
          have / sr), 0)
      end
      zs = given
    end
  end
  for l, _ in pairs(priors) do
    local keep = false
    for _, x in ipairs(levels) do keep = keep or x == l end
    if not keep then say(o, "note: the level %d prior is not used by --mode=%s", l, o.mode) end
  end
  lowest = levels[#levels]
  local total_length = o.total_seconds and math.floor(o.total_seconds * sr + 0.5) or sample_length
  if total_length < sample_length then
    error(("--total-seconds %g is shorter than the %.3f s sampled"):format(o.total_seconds, sample_length / sr), 0)
  end

  -- Primed: the prompt's codes at every level.
  local prompt_samples = 0
  if o.mode == "primed" then
    if not o.prompt then error("--mode=primed needs --prompt=AUDIO", 0) end
    if core.path_kind(o.prompt) ~= "file" then error(("--prompt '%s' does not exist"):format(o.prompt), 0) end
    local x = audio.load(o.prompt, { mono = true, rate = sr, seconds = o.prompt_seconds }):reshape({ -1 })
    prompt_samples = round_down(math.min(x:numel(), math.floor(o.prompt_seconds * sr + 0.5)), top_hop)
    if prompt_samples < top_hop then
      error(("--prompt '%s': %.4f s of prompt (%d samples), shorter than one top-level token (%d samples = %.4f s)")
        :format(o.prompt, math.min(x:numel(), o.prompt_seconds * sr) / sr,
          math.min(x:numel(), math.floor(o.prompt_seconds * sr + 0.5)), top_hop, top_hop / sr), 0)
    end
    if prompt_samples >= sample_length then
      error(("--prompt-seconds (%.3f s after rounding) must be shorter than --seconds (%.3f s)"):format(
        prompt_samples / sr, sample_length / sr), 0)
    end
    local pc = core.no_grad(function() return codec.encode(vq, x:narrow(1, 1, prompt_samples)) end)
    for l = 1, L do
      local c = pc[l]:narrow(1, 1, prompt_samples // vq.hop_lengths[l]):reshape({ 1, -1 })
      local copies = {}
      for i = 1, N do copies[i] = c end
      zs[l] = N == 1 and c:contiguous() or core.concat(copies, 1)
    end
  end

  -- Labels (offset 0; sample_level sets offset and sample_length per window).
  local labels = {}
  for _, l in ipairs(levels) do
    local p = priors[l]
    if p.y_emb then
      local C = require "jukebox.conditioners"
      local set = C.label_sets[p.hp.labels]
      local lists = p.label_lists or {}
      local lab = C.labels({ artists = lists.artists or { "unknown" }, genres = lists.genres or { "unknown" },
        style = set.normalise, G = p.hp.max_bow_genre_size or set.G, warn = o.warn or nil })
      local y = lab:y(o.artist, o.genre, total_length, 0, p.n_ctx * vq.hop_lengths[l])
      labels[l] = {}
      for i = 1, N do labels[l][i] = y end
    end
  end

  -- Settings, and what --resume must agree with.
  local settings = {
    mode = o.mode, vqvae = type(o.vqvae) == "string" and o.vqvae or "(model)", vqvae_fingerprint = fp,
    priors = {}, levels = levels, seconds = sample_length / sr, sample_length = sample_length,
    total_length = total_length, prompt = o.prompt or false, prompt_samples = prompt_samples,
    codes = o.codes or false, temp = temp, top_k = o.top_k, top_p = o.top_p, n_samples = N, batch = o.batch,
    seed = o.seed, artist = o.artist, genre = o.genre, hop_fraction = hop_fraction, sample_rate = sr,
    hop_lengths = vq.hop_lengths, sampler = sampler_name, chunk = o.chunk,
  }
  for _, l in ipairs(levels) do settings.priors[tostring(l)] = prior_names[l] or "(model)" end
  core.mkdir_p(o.out)
  local settings_path = o.out .. "/settings.json"
  local progress_path = o.out .. "/progress.safetensors"
  local key = settings_key(settings)
  if o.resume then
    if core.path_kind(progress_path) == "file" then
      local old = json.read(settings_path)
      local old_key = settings_key(old.settings or {})
      if old_key ~= key then
        local diff = {}
        for k, v in pairs(settings) do
          if core.json_encode(v) ~= core.json_encode(old.settings[k]) then diff[#diff + 1] = k end
        end
        table.sort(diff)
        error(("--resume: the settings differ from the run in '%s' (%s)"):format(o.out, table.concat(diff, ", ")), 0)
      end
      zs = M.load_codes(progress_path, L)
      say(o, "resuming from %s", progress_path)
    end
  elseif core.path_kind(progress_path) == "file" then
    error(("'%s' holds a run already: --resume continues it, or choose another --out"):format(o.out), 0)
  end
  local file_meta = { vqvae_fingerprint = fp, n_samples = N, levels = L, sample_rate = sr,
    hop_lengths = vq.hop_lengths, sample_length = sample_length, settings = settings }
  -- Under mpirun every rank samples its share of the batch groups and rank 0 alone
  -- writes; every rank has checked the folder before rank 0 writes to it.
  local rank, ranks = core.dist.rank(), core.dist.size()
  core.dist.barrier()
  if rank ~= 0 then o.quiet, o.progress = true, false end
  local root = rank == 0
  if root then json.write(settings_path, { settings = settings, sampler = sampler_name }) end
  if root and o.mode == "primed" then
    audio.save(o.out .. "/prompt.flac", core.no_grad(function()
      return audio.load(o.prompt, { mono = true, rate = sr, seconds = o.prompt_seconds }):reshape({ -1 })
        :narrow(1, 1, prompt_samples) end), sr)
  end

  -- The levels, top first.
  local st = { vqvae = vq, priors = priors, zs = zs, n_samples = N, sample_length = sample_length, labels = labels }
  local result = { zs = zs, levels = {}, settings = settings, tokens = {}, seconds = {}, sampler = sampler_name }
  local cli = require "jukebox.cli"
  core.defer_interrupts(true)
  local ok, err = pcall(function()
    for _, l in ipairs(levels) do
      local total = sample_length // vq.hop_lengths[l]
      local before = st.zs[l]:shape()[2]
      local level_dir_codes = ("%s/level_%d/codes.safetensors"):format(o.out, l)
      local todo = (total - before) * N
      local bar = cli.progress(todo, { label = ("level %d: "):format(l), silent = not o.progress,
        every = math.max(1, todo // (o.chunk * 20)) })
      local t0 = core.clock()
      local n = M.sample_level(st, l, {
        temp = temp, top_k = o.top_k, top_p = o.top_p, seed = o.seed, batch = o.batch, hop_fraction = hop_fraction,
        sampler = new_sampler, chunk = o.chunk, interrupted = core.interrupted, rank = rank, ranks = ranks,
        on_tokens = function(done)
          local dt = core.clock() - t0
          bar:update(done, { { "tokens/s", done / math.max(dt, 1e-9) } })
        end,
        on_window = function() if root then M.save_codes(progress_path, st.zs, file_meta) end end,
      })
      bar:finish()
      local dt = core.clock() - t0
      result.tokens[l], result.seconds[l] = n, dt
      if root and (n > 0 or core.path_kind(level_dir_codes) ~= "file") then
        if n > 0 then
          say(o, "level %d: sampled %d tokens in %.1f s (%.1f tokens/s, %s)", l, n, dt, n / math.max(dt, 1e-9),
            sampler_name)
        end
        result.levels[l] = write_level_outputs(o, st, l, file_meta)
        for _, f in ipairs(result.levels[l]) do say(o, "  wrote %s", f) end
      end
      if core.interrupted() then error("interrupted: continue with --resume", 0) end
    end
  end)
  core.defer_interrupts(false)
  if not ok then error(err, 0) end
  local final = o.out .. "/codes.safetensors"
  if root then M.save_codes(final, st.zs, file_meta) end
  result.codes = final
  result.lowest = lowest
  return result
end

return M
