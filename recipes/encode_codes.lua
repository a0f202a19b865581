-- Encodes every usable audio file of a folder with a trained VQ-VAE to its codes at
-- every level: the data a prior trains on (read back with jukebox.codes).
--   build/jbx recipes/encode_codes.lua --vqvae=runs/small/step_000300.safetensors \
--       --data=data --out=runs/codes [--labels=data/labels.csv]
-- Writes OUT/<file>.codes.safetensors per audio file (its path relative to --data, so
-- OUT/music/x.flac.codes.safetensors for data/music/x.flac): int32 codes_l1 ... codes_lL
-- (1-D, 0-based ids) and metadata: the file, its duration in seconds and samples, the
-- sample rate, hop lengths, the VQ-VAE (path, step and fingerprint) and the labels
-- (artist, genre, lyrics) from --labels (files it does not name are "unknown"). Every
-- file is written atomically, so a run stopped at any point continues where it was:
-- files already encoded by the same VQ-VAE are skipped (re-labelled in place when the
-- labels changed); codes of another VQ-VAE in OUT are an error. OUT/index.csv lists
-- every codes file (file, artist, genre, lyrics, seconds, samples, tokens per level).
local jbx = require "jukebox"
local cli = require "jukebox.cli"
local codec = require "jukebox.codec"
local models = require "jukebox.models"
local data = require "jukebox.data"
local codes = require "jukebox.codes"
local labels = require "jukebox.labels"

local spec = {
  { "vqvae", nil, "VQ-VAE checkpoint (.safetensors) written by train_vqvae.lua", type = "string", required = true },
  { "data", nil, "folder of audio files (searched recursively; unreadable files are skipped with a warning)",
    type = "string", required = true },
  { "out", nil, "output folder for the codes", type = "string", required = true },
  { "labels", nil, "CSV file,artist,genre[,lyrics] (paths relative to --data); without it every label is unknown",
    type = "string" },
  { "chunk", nil, ("samples per encoding chunk (default: %d, or 4 margins if more)"):format(codec.defaults.chunk),
    type = "number" },
  { "strict", false, "an unreadable audio file is an error instead of a warning" },
  { "threads", 2, "threads for BLAS and OpenMP" },
}
local usage = "usage: jbx recipes/encode_codes.lua --vqvae=CKPT --data=DIR --out=CODES [--labels=labels.csv] [options]"

-- "data/music/x.flac" relative to "data" -> "music/x.flac".
local function relative(path, dir)
  local prefix = dir:sub(-1) == "/" and dir or dir .. "/"
  if path:sub(1, #prefix) == prefix then return path:sub(#prefix + 1) end
  return path
end

local function dirname(path) return path:match("^(.*)/[^/]*$") end

-- What a file's labels look like in its metadata (lyrics absent when none).
local function label_meta(lab)
  return { artist = lab.artist, genre = lab.genre, lyrics = lab.lyrics or "", labelled = tostring(lab.labelled) }
end

-- A CSV field, quoted when it needs to be.
local function csv_field(v)
  v = tostring(v)
  if v:find('[,"\r\n]') then return '"' .. v:gsub('"', '""') .. '"' end
  return v
end

-- OUT/index.csv: one row per codes file of the folder (file, artist, genre, lyrics,
-- seconds, samples, tokens per level), from their headers.
local function write_index(out, levels)
  local head = { "file", "artist", "genre", "lyrics", "seconds", "samples" }
  for l = 1, levels do head[#head + 1] = "tokens_l" .. l end
  local lines = { table.concat(head, ",") }
  for _, p in ipairs(codes.list(out)) do
    local m = codes.info(p)
    if m then
      local row = { m.file, m.artist, m.genre, m.lyrics or "", ("%.3f"):format(m.seconds), m.samples }
      for l = 1, levels do row[#row + 1] = m.tokens[l] or "" end
      for i, v in ipairs(row) do row[i] = csv_field(v) end
      lines[#lines + 1] = table.concat(row, ",")
    end
  end
  jbx.core.fsync_write(out .. "/index.csv", table.concat(lines, "\n") .. "\n")
end

cli.run("encode_codes", spec, usage, function(opts)
  if opts.chunk and opts.chunk < 1 then error("--chunk must be at least 1", 0) end
  cli.check_file(opts.vqvae, "checkpoint")
  jbx.core.set_threads(opts.threads)
  local data_dir = opts.data:gsub("/+$", "")
  if data_dir == "" then data_dir = "/" end
  if jbx.core.path_kind(data_dir) ~= "dir" then
    error(("data folder '%s' %s"):format(data_dir, jbx.core.path_kind(data_dir) and "is not a folder" or "is missing"), 0)
  end
  -- The quick checks first (labels, checkpoint), then the scan that opens every file.
  local label_map = opts.labels and labels.read(cli.check_file(opts.labels, "labels file"), data_dir)

  local model, _, ck_meta = models.load(opts.vqvae)
  if model.kind ~= "vqvae" then
    error(("'%s' is a %s checkpoint, not a VQ-VAE"):format(opts.vqvae, tostring(model.kind)), 0)
  end
  model:eval()
  local rate, hops = model.hp.sr, model.hop_lengths
  local fingerprint = codes.fingerprint(model)
  local files = data.scan(data_dir, { strict = opts.strict })
  local common = {
    data_dir = data_dir, sample_rate = rate, levels = #hops, hop_lengths = table.concat(hops, ","),
    l_bins = model.hp.l_bins, vqvae = opts.vqvae, vqvae_step = ck_meta.step or "", vqvae_fingerprint = fingerprint,
    vqvae_hparams = jbx.core.json_encode(model.hp),
  }
  jbx.core.mkdir_p(opts.out)

  -- A codes folder holds the codes of one VQ-VAE.
  for _, p in ipairs(codes.list(opts.out)) do
    local m = codes.info(p)
    if m and m.vqvae_fingerprint ~= fingerprint then
      error(("'%s' holds codes of another VQ-VAE (%s, from %s; this one is %s): choose another --out")
        :format(p, tostring(m.vqvae_fingerprint), tostring(m.vqvae), fingerprint), 0)
    end
  end

  -- Which files are done (a complete codes file of the same source length); their
  -- labels may need a rewrite. Anything else (absent, unreadable) is encoded.
  local todo, relabel, done_before = {}, {}, 0
  for _, f in ipairs(files) do
    local rel = relative(f.path, data_dir)
    local job = { file = f, rel = rel, out = opts.out .. "/" .. codes.output_name(rel),
                  labels = label_meta(labels.of(label_map, rel)) }
    local m = codes.info(job.out)
    if m and m.source_frames == f.frames and m.source_rate == f.rate then
      done_before = done_before + 1
      local was = { artist = m.artist, genre = m.genre, lyrics = m.lyrics or "", labelled = tostring(m.labelled) }
      for k, v in pairs(job.labels) do
        if was[k] ~= v then
          relabel[#relabel + 1] = job
          break
        end
      end
    else
      todo[#todo + 1] = job
    end
  end
  local n_labelled = 0
  for _, f in ipairs(files) do
    if labels.of(label_map, relative(f.path, data_dir)).labelled then n_labelled = n_labelled + 1 end
  end
  print(("encode_codes: %d file(s) in '%s' (%d labelled), VQ-VAE %s (%s, hops %s)"):format(#files, data_dir,
    n_labelled, opts.vqvae, fingerprint, table.concat(hops, ", ")))
  if done_before > 0 then
    print(("skipping %d file(s) already encoded in '%s'%s"):format(done_before, opts.out,
      #relabel > 0 and (" (re-labelling %d)"):format(#relabel) or ""))
  end

  for _, job in ipairs(relabel) do
    local tensors, md = jbx.core.safetensors_load(job.out)
    local levels = {}
    for l = 1, #hops do levels[l] = tensors["codes_l" .. l] end
    for k, v in pairs(job.labels) do md[k] = v end
    md.format = nil
    codes.save(job.out, levels, md)
  end

  local t0 = jbx.core.clock()
  local bar = cli.progress(#todo, { label = "encode " })
  local audio_seconds, written = 0, 0
  for i, job in ipairs(todo) do
    local f = job.file
    local ok, err = pcall(function()
      local x = jbx.audio.load(f.path, { rate = rate, mono = true })
      local n = x:numel()
      if n == 0 then error(("'%s' holds no audio"):format(f.path), 0) end
      local levels, padded = codec.encode(model, x, { chunk = opts.chunk })
      local meta = {
        file = job.rel, source = f.path, samples = n, seconds = ("%.6f"):format(n / rate), padded_samples = padded,
        source_rate = f.rate, source_frames = f.frames,
      }
      for k, v in pairs(common) do meta[k] = v end
      for k, v in pairs(job.labels) do meta[k] = v end
      local d = dirname(job.out)
      if d then jbx.core.mkdir_p(d) end
      codes.save(job.out, levels, meta)
      audio_seconds = audio_seconds + n / rate
    end)
    if not ok then
      if tostring(err):match("interrupted") then
        bar:finish()
        error(("interrupted after %d of %d file(s): run the same command again to continue"):format(written,
          #todo), 0)
      end
      error(("%s: %s"):format(f.path, cli.message(err)), 0)
    end
    written = written + 1
    local dt = math.max(jbx.core.clock() - t0, 1e-9)
    bar:update(i, { { "files/s", written / dt }, { "audio s/s", audio_seconds / dt } })
  end
  bar:finish()
  write_index(opts.out, #hops)
  if #todo == 0 then
    print(("nothing left to encode; codes in '%s'"):format(opts.out))
    return
  end
  local dt = jbx.core.clock() - t0
  print(("encoded %d file(s), %.1f s of audio, in %.2f s (%.3g audio s/s); codes in '%s'"):format(written,
    audio_seconds, dt, audio_seconds / math.max(dt, 1e-9), opts.out))
end)
