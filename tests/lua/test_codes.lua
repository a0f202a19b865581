-- Codes as data: recipes/encode_codes.lua on three bundled clips with a tiny VQ-VAE
-- (files, metadata, shapes, equality with codec.encode, resumption, labels from a CSV and
-- the unknown fallback), jukebox.labels (CSV parsing, errors naming the row, the shipped
-- data/labels.csv), jukebox.codes (windows paired between levels, the held-out split,
-- unigram entropy, every error).
local H = require "helpers"
local eq, yes = H.assert_eq, H.assert_true

local T = {}

local exe = H.jbx_exe()
local q = H.shell_quote

local CLIPS = { "wesnoth_love_theme_00.flac", "supertux_theme_00.flac", "sonicpi_loop_tabla_00.flac" }

local slurp, write = H.read_file, H.write_file

-- Runs `jbx recipes/encode_codes.lua args...`; returns stdout, stderr, exit code.
local function encode(args) return H.recipe("encode_codes", args) end

-- An error of the recipe: exit code 1 or 2 and one line "encode_codes: <message>"
-- (after the data folder's warning, if any).
local function expect_error(args, text, code)
  local _, e, c = encode(args)
  eq(c, code or 1, "exit code (stderr: " .. e .. ")")
  local line = e:match("^(encode_codes: [^\n]*)") or e:match("\n(encode_codes: [^\n]*)")
  yes(line, "a line names the recipe: " .. e)
  yes(line:find(text, 1, true), ("expected '%s' in: %s"):format(text, line))
  yes(not e:find("stack traceback", 1, true), "no traceback: " .. e)
end

-- One fixture per run: a data folder (two clips at the top, one in a subfolder, one
-- broken file), two tiny VQ-VAEs (3 steps; the second trained with another seed), a
-- labels.csv naming two of the three clips, and the codes of the first VQ-VAE.
local fixture
local function setup(jbx)
  if fixture then return fixture end
  local train = require "jukebox.train"
  local root = os.tmpname() .. "_codes"
  local data = root .. "/data"
  jbx.core.mkdir_p(data .. "/sub")
  os.execute(("cp data/music/%s data/music/%s %s/ && cp data/music/%s %s/sub/ && cp tests/fixtures/audio/empty.flac %s/")
    :format(CLIPS[1], CLIPS[2], q(data), CLIPS[3], q(data), q(data)))
  local function vq(name, seed)
    return train.run({ data = data, out = root .. "/" .. name, preset = "tiny", steps = 3, batch = 2, seed = seed,
      sample_length = 2048, log_every = 1, ckpt_every = 3, threads = 1, quiet = true, bandwidth_batches = 2 })
  end
  local run = vq("vq", 0)
  local ckpt, other, trained = run.checkpoint, vq("vq_other", 1).checkpoint, run.model
  local csv = root .. "/labels.csv"
  write(csv, 'file,artist,genre\n' .. CLIPS[1] .. ',wesnoth,orchestral\n"sub/' .. CLIPS[3]
    .. '","sonic ""pi""",percussion\n')
  local out = root .. "/codes"
  local o, e, c = encode({ "--vqvae=" .. ckpt, "--data=" .. data, "--out=" .. out, "--labels=" .. csv })
  fixture = { root = root, data = data, ckpt = ckpt, other = other, trained = trained, csv = csv, out = out,
              stdout = o, stderr = e, code = c }
  return fixture
end

local function out_path(fx, rel) return fx.out .. "/" .. rel .. ".codes.safetensors" end

function T.encode_writes_codes_per_file_with_metadata(jbx)
  local fx = setup(jbx)
  local codes = require "jukebox.codes"
  eq(fx.code, 0, "encode_codes: " .. fx.stderr)
  yes(fx.stderr:find("skipping 1 of 4 files", 1, true) and fx.stderr:find("empty.flac", 1, true),
    "the broken file is skipped with one warning: " .. fx.stderr)
  yes(fx.stdout:find("encoded 3 file(s)", 1, true), fx.stdout)
  yes(fx.stderr:find("files/s", 1, true) and fx.stderr:find("audio s/s", 1, true), "progress: " .. fx.stderr)
  local fp = codes.fingerprint(fx.ckpt)
  yes(fp:match("^vqvae%-%x+$"), fp)
  eq(#codes.list(fx.out), 3)
  for _, rel in ipairs({ CLIPS[1], CLIPS[2], "sub/" .. CLIPS[3] }) do
    local path = out_path(fx, rel)
    local m = assert(codes.info(path))
    local info = jbx.audio.info(fx.data .. "/" .. rel)
    eq(m.format, codes.FORMAT)
    eq(m.file, rel)
    eq(m.source, fx.data .. "/" .. rel)
    eq(m.samples, info.frames)
    H.assert_close(m.seconds, info.frames / 22050, 1e-6)
    eq(m.sample_rate, 22050)
    eq(m.levels, 2)
    eq(table.concat(m.hop_lengths, ","), "2,4")
    eq(m.l_bins, 16)
    eq(m.vqvae, fx.ckpt)
    eq(m.vqvae_step, "3")
    eq(m.vqvae_fingerprint, fp)
    -- tokens = samples / hop, the samples padded to the top hop (4).
    local padded = (info.frames + 3) // 4 * 4
    eq(m.padded_samples, padded)
    local tensors = jbx.core.safetensors_load(path)
    for l, hop in ipairs({ 2, 4 }) do
      local c = tensors["codes_l" .. l]
      eq(c.dtype, "int32")
      H.assert_shape(c, { padded // hop })
      eq(m.tokens[l], padded // hop)
      yes(c:float():min():item() >= 0 and c:float():max():item() < 16, "codes in 0..l_bins-1")
    end
  end
end

function T.encode_matches_codec_encode(jbx)
  local fx = setup(jbx)
  local models, codec = require "jukebox.models", require "jukebox.codec"
  local model = models.load(fx.ckpt)
  model:eval()
  local x = jbx.audio.load(fx.data .. "/" .. CLIPS[1], { rate = 22050, mono = true })
  local want = codec.encode(model, x)
  local got = jbx.core.safetensors_load(out_path(fx, CLIPS[1]))
  for l = 1, 2 do
    eq(H.max_abs_diff(got["codes_l" .. l]:float(), want[l]:float()), 0, "level " .. l)
  end
end

function T.labels_from_csv_and_unknown_fallback(jbx)
  local fx = setup(jbx)
  local codes = require "jukebox.codes"
  local a = assert(codes.info(out_path(fx, CLIPS[1])))
  eq(a.artist, "wesnoth"); eq(a.genre, "orchestral"); eq(a.labelled, true); eq(a.lyrics, nil)
  local b = assert(codes.info(out_path(fx, "sub/" .. CLIPS[3])))
  eq(b.artist, 'sonic "pi"'); eq(b.genre, "percussion")
  local c = assert(codes.info(out_path(fx, CLIPS[2])))
  eq(c.artist, "unknown"); eq(c.genre, "unknown"); eq(c.labelled, false)
  yes(fx.stdout:find("(2 labelled)", 1, true), fx.stdout)
  -- index.csv, readable by labels.parse_csv.
  local rows = require("jukebox.labels").parse_csv(slurp(fx.out .. "/index.csv"), "index.csv")
  eq(table.concat(rows[1], ","), "file,artist,genre,lyrics,seconds,samples,tokens_l1,tokens_l2")
  eq(#rows, 4)
  eq(rows[2][1], "sub/" .. CLIPS[3]); eq(rows[2][2], 'sonic "pi"'); eq(rows[2][5], "10.000"); eq(rows[2][8], "55125")
end

function T.resume_skips_encoded_files(jbx)
  local fx = setup(jbx)
  local out = fx.root .. "/codes_resume"
  local args = { "--vqvae=" .. fx.ckpt, "--data=" .. fx.data, "--out=" .. out, "--labels=" .. fx.csv }
  local _, e, c = encode(args)
  eq(c, 0, e)
  local before = slurp(out_path({ out = out }, CLIPS[2]))
  -- Everything present: all skipped, nothing rewritten.
  local o2, e2, c2 = encode(args)
  eq(c2, 0, e2)
  yes(o2:find("skipping 3 file(s) already encoded", 1, true), o2)
  yes(o2:find("nothing left to encode", 1, true), o2)
  eq(slurp(out_path({ out = out }, CLIPS[2])) == before, true, "untouched")
  -- One file gone, one not a codes file (as a copy cut short would be): both encoded again.
  os.remove(out_path({ out = out }, CLIPS[2]))
  write(out_path({ out = out }, CLIPS[1]), "not a safetensors file")
  local o3, e3, c3 = encode(args)
  eq(c3, 0, e3)
  yes(o3:find("skipping 1 file(s)", 1, true) and o3:find("encoded 2 file(s)", 1, true), o3)
  eq(slurp(out_path({ out = out }, CLIPS[2])) == before, true, "the same codes again")
  -- Labels changed: files are re-labelled in place, codes kept.
  local o4, e4, c4 = encode({ "--vqvae=" .. fx.ckpt, "--data=" .. fx.data, "--out=" .. out })
  eq(c4, 0, e4)
  yes(o4:find("re-labelling 2", 1, true), o4)
  local codes = require "jukebox.codes"
  local m = assert(codes.info(out_path({ out = out }, CLIPS[1])))
  eq(m.artist, "unknown"); eq(m.labelled, false)
  local t = jbx.core.safetensors_load(out_path({ out = out }, CLIPS[1]))
  local ref = jbx.core.safetensors_load(out_path(fx, CLIPS[1]))
  eq(H.max_abs_diff(t.codes_l1:float(), ref.codes_l1:float()), 0)
end

function T.recipe_errors(jbx)
  local fx = setup(jbx)
  local base = { "--vqvae=" .. fx.ckpt, "--data=" .. fx.data }
  -- Codes of another VQ-VAE in --out.
  expect_error({ "--vqvae=" .. fx.other, "--data=" .. fx.data, "--out=" .. fx.out }, "holds codes of another VQ-VAE")
  expect_error({ "--data=" .. fx.data, "--out=x" }, "--vqvae is required", 2)
  expect_error({ "--vqvae=" .. fx.ckpt, "--data=" .. fx.data, "--out=x", "--lables=a.csv" }, "did you mean --labels", 2)
  expect_error({ "--vqvae=" .. fx.root .. "/none.safetensors", "--data=" .. fx.data, "--out=x" }, "does not exist")
  expect_error({ "--vqvae=" .. fx.ckpt, "--data=" .. fx.root .. "/nodata", "--out=x" }, "is missing")
  -- A labels row naming a file that is not in the folder: the row is named.
  local bad = fx.root .. "/bad_labels.csv"
  write(bad, "file,artist,genre\n" .. CLIPS[1] .. ",a,b\nnot_here.flac,a,b\n")
  expect_error({ base[1], base[2], "--out=" .. fx.root .. "/x", "--labels=" .. bad },
    bad .. ":3: 'not_here.flac' is not in the data folder")
  expect_error({ base[1], base[2], "--out=" .. fx.root .. "/x", "--labels=" .. fx.root .. "/nolabels.csv" },
    "labels file")
  local o = encode({ "--help" })
  yes(o:find("--labels", 1, true) and o:find("--vqvae", 1, true), o)
end

-- ------------------------------------------------------------------ labels

function T.labels_csv_parsing(jbx)
  local labels = require "jukebox.labels"
  local rows = labels.parse_csv('a,b,c\r\n"x, y","say ""hi""",\n\n"multi\nline",2,3\n', "t.csv")
  eq(#rows, 3)
  eq(rows[2][1], "x, y"); eq(rows[2][2], 'say "hi"'); eq(rows[2][3], "")
  eq(rows[3][1], "multi\nline"); eq(rows[3].line, 4)
  H.raises("t.csv:1: a quoted field is not closed", labels.parse_csv, '"abc', "t.csv")
  H.raises("t.csv:2: a quote inside an unquoted field", labels.parse_csv, 'a\nb"c\n', "t.csv")
  H.raises("t.csv:1: text after a closing quote", labels.parse_csv, '"a"b\n', "t.csv")
  eq(labels.normalise_path("./a//b/./c.flac"), "a/b/c.flac")
  local u = labels.of(nil, "x.flac")
  eq(u.artist, "unknown"); eq(u.genre, "unknown"); eq(u.labelled, false)
end

function T.labels_read_errors(jbx)
  local fx = setup(jbx)
  local labels = require "jukebox.labels"
  local p = fx.root .. "/l.csv"
  local function with(text) write(p, text); return function() return labels.read(p, fx.data) end end
  H.assert_error(with("file,artist,genre,mood\n"), "unknown column 'mood'")
  H.assert_error(with("file,artist\n"), "no 'genre' column")
  H.assert_error(with(""), "is empty")
  H.assert_error(with("file,artist,genre\n" .. CLIPS[1] .. ",a\n"), p .. ":2: 2 fields, the header has 3")
  H.assert_error(with("file,artist,genre\n" .. CLIPS[1] .. ",a,b\n./" .. CLIPS[1] .. ",c,d\n"),
    p .. ":3: '" .. CLIPS[1] .. "' is already labelled on line 2")
  H.assert_error(with("file,artist,genre,lyrics\n" .. CLIPS[1] .. ",a,b,words.txt\n"),
    p .. ":2: lyrics file 'words.txt' is not in the data folder")
  -- Columns in any order, an empty name is unknown, lyrics relative to the data folder.
  write(fx.data .. "/sub/words.txt", "la la\n")
  local m = with("genre,lyrics,file,artist\n,sub/words.txt,sub/" .. CLIPS[3] .. ",tabla\n")()
  local row = m["sub/" .. CLIPS[3]]
  eq(row.artist, "tabla"); eq(row.genre, "unknown"); eq(row.lyrics, "sub/words.txt")
  os.remove(fx.data .. "/sub/words.txt")
end

-- The shipped data/labels.csv: every bundled clip, artist = the file's project prefix,
-- genre = the manifest's.
function T.shipped_labels_csv(jbx)
  local labels = require "jukebox.labels"
  local map = labels.read("data/labels.csv", "data")
  local manifest = labels.parse_csv(slurp("data/manifest.csv"), "manifest")
  local n, artists = 0, {}
  for _ in pairs(map) do n = n + 1 end
  eq(n, #manifest - 1)
  eq(#jbx.core.list_dir("data/music"), n)
  for i = 2, #manifest do
    local row = map["music/" .. manifest[i][1]]
    yes(row, manifest[i][1] .. " is labelled")
    eq(row.genre, manifest[i][9], manifest[i][1])
    eq(row.artist, manifest[i][1]:match("^([^_]+)_"), manifest[i][1])
    artists[row.artist] = true
  end
  local k = 0
  for _ in pairs(artists) do k = k + 1 end
  eq(k, 9, "one artist per source package")
end

-- ------------------------------------------------------------------ codes.lua

function T.unigram_entropy_of_known_sequences(jbx)
  local codes = require "jukebox.codes"
  H.assert_close(codes.unigram_entropy({ 0, 0, 1, 1 }), 1, 1e-12)
  H.assert_close(codes.unigram_entropy({ 0, 1, 2, 3, 0, 1, 2, 3 }), 2, 1e-12)
  H.assert_close(codes.unigram_entropy({ 5, 5, 5 }), 0, 1e-12)
  -- p = (1/2, 1/4, 1/4): 1.5 bits; from an int32 tensor.
  H.assert_close(codes.unigram_entropy(jbx.tensor({ 7, 7, 3, 9 }, { dtype = "int32" })), 1.5, 1e-12)
  eq(codes.unigram_entropy({}), 0)
end

function T.dataset_entropy_matches_counts(jbx)
  local fx = setup(jbx)
  local codes = require "jukebox.codes"
  local ds = codes.open(fx.out, { level = 2, n_ctx = 64 })
  local all = {}
  for _, f in ipairs(ds.files) do
    for _, v in ipairs(jbx.core.safetensors_load(f.path).codes_l2:totable()) do all[#all + 1] = v end
  end
  H.assert_close(ds:entropy(), codes.unigram_entropy(all), 1e-12)
  yes(ds:entropy() > 0 and ds:entropy() <= 4, "at most log2(16) bits")
end

function T.open_lists_files_tokens_and_labels(jbx)
  local fx = setup(jbx)
  local codes = require "jukebox.codes"
  local ds = codes.open(fx.out, { level = 1, n_ctx = 256, vqvae_fingerprint = codes.fingerprint(fx.ckpt) })
  eq(#ds.files, 3); eq(ds.levels, 2); eq(ds.hop, 2); eq(ds.ratio, 2); eq(ds.upper_ctx, 128)
  eq(ds.sample_rate, 22050); eq(ds.l_bins, 16)
  local by = {}
  for _, f in ipairs(ds.files) do by[f.name] = f end
  eq(by[CLIPS[1]].artist, "wesnoth"); eq(by[CLIPS[2]].genre, "unknown")
  eq(by["sub/" .. CLIPS[3]].tokens, (220500 + 3) // 4 * 4 // 2)
  local names = ds:label_names()
  eq(table.concat(names.artists, ","), 'sonic "pi",unknown,wesnoth')
end

-- Window [s, s + n_ctx) at level 1 pairs with [s * hop_1 / hop_2, ...) at level 2.
function T.windows_pair_levels(jbx)
  local fx = setup(jbx)
  local codes = require "jukebox.codes"
  local ds = codes.open(fx.out, { level = 1, n_ctx = 256 })
  local rng = jbx.core.rng(3)
  for _ = 1, 20 do
    local w = ds:window(rng)
    local t = jbx.core.safetensors_load(w.file.path)
    eq(w.start % 2, 0)
    H.assert_shape(w.codes, { 256 })
    H.assert_shape(w.upper, { 128 })
    eq(H.max_abs_diff(w.codes:float(), t.codes_l1:narrow(1, w.start + 1, 256):float()), 0)
    eq(H.max_abs_diff(w.upper:float(), t.codes_l2:narrow(1, w.start // 2 + 1, 128):float()), 0)
    eq(w.offset, w.start * 2); eq(w.length, 512); eq(w.total_length, w.file.samples)
    yes(w.start + 256 <= w.file.tokens)
    eq(w.artist, w.file.artist)
  end
  -- The top level has no level above.
  local top = codes.open(fx.out, { level = 2, n_ctx = 100 })
  local w = top:window(rng)
  eq(w.upper, nil); eq(w.offset, w.start * 4)
  -- Batches; the sequence is a function of the rng state.
  local r1 = jbx.core.rng(9)
  ds:window(r1)
  local state = r1:state()
  local b1 = ds:batch(r1, 3)
  H.assert_shape(b1.codes, { 3, 256 }); H.assert_shape(b1.upper, { 3, 128 })
  local b2 = ds:batch(jbx.core.rng(state), 3)
  eq(H.max_abs_diff(b1.codes:float(), b2.codes:float()), 0)
  for i = 1, 3 do eq(b1.windows[i].start, b2.windows[i].start) end
  -- Non-overlapping windows cover each file once.
  local n = 0
  for _ in top:windows() do n = n + 1 end
  local want = 0
  for _, f in ipairs(top.files) do want = want + f.tokens // 100 end
  eq(n, want)
end

function T.held_out_split(jbx)
  local fx = setup(jbx)
  local codes = require "jukebox.codes"
  local tr = codes.open(fx.out, { level = 2, n_ctx = 64, split = "train", eval_fraction = 0.3 })
  local ev = codes.open(fx.out, { level = 2, n_ctx = 64, split = "eval", eval_fraction = 0.3 })
  eq(#tr.files, 2); eq(#ev.files, 1)
  for _, f in ipairs(tr.files) do yes(f.name ~= ev.files[1].name and not f.held_out) end
  yes(ev.files[1].held_out)
  -- Deterministic, and by name only.
  local again = codes.open(fx.out, { level = 1, n_ctx = 64, split = "eval", eval_fraction = 0.3 })
  eq(again.files[1].name, ev.files[1].name)
  eq(#codes.open(fx.out, { level = 2, n_ctx = 64, split = "eval", eval_fraction = 0.5 }).files, 2)
  eq(#codes.open(fx.out, { level = 2, n_ctx = 64, split = "train", eval_fraction = 0 }).files, 3)
end

function T.open_errors(jbx)
  local fx = setup(jbx)
  local codes = require "jukebox.codes"
  H.raises("level 3 does not exist: the codes in '" .. fx.out .. "' have levels 1..2",
    codes.open, fx.out, { level = 3, n_ctx = 8 })
  H.raises("level 0 does not exist", codes.open, fx.out, { level = 0, n_ctx = 8 })
  local other = codes.fingerprint(fx.other)
  yes(other ~= codes.fingerprint(fx.ckpt), "another VQ-VAE has another fingerprint")
  -- The model in memory (hyperparameters not round-tripped through JSON) has its checkpoint's.
  eq(codes.fingerprint(fx.trained), codes.fingerprint(fx.ckpt))
  H.raises("codes.fingerprint: expects a VQ-VAE", codes.fingerprint, {})
  H.raises("come from another VQ-VAE", codes.open, fx.out, { level = 1, n_ctx = 8, vqvae_fingerprint = other })
  local empty = fx.root .. "/empty_codes"
  jbx.core.mkdir_p(empty)
  H.raises("no codes files (*.codes.safetensors) in '" .. empty .. "'", codes.open, empty, { level = 1, n_ctx = 8 })
  H.raises("is missing", codes.open, fx.root .. "/none", { level = 1, n_ctx = 8 })
  H.raises("must be a multiple of 2", codes.open, fx.out, { level = 1, n_ctx = 7 })
  H.raises("no file in", codes.open, fx.out, { level = 2, n_ctx = 10 ^ 6 })
  H.raises("level must be an integer", codes.open, fx.out, { n_ctx = 8 })
  H.raises("n_ctx must be an integer", codes.open, fx.out, { level = 1 })
  H.raises("unknown", codes.open, fx.out, { level = 1, n_ctx = 8, nctx = 3 })
  H.raises("cache must be an integer >= 0", codes.open, fx.out, { level = 1, n_ctx = 8, cache = -1 })
  H.raises('split must be "all", "train" or "eval"', codes.open, fx.out, { level = 1, n_ctx = 8, split = "test" })
  -- A folder mixing two VQ-VAEs.
  local mixed = fx.root .. "/mixed"
  local o, e, c = encode({ "--vqvae=" .. fx.other, "--data=" .. fx.data .. "/sub", "--out=" .. mixed })
  eq(c, 0, o .. e)
  os.execute(("cp %s %s/"):format(q(out_path(fx, CLIPS[1])), q(mixed)))
  H.raises("mixes codes of two VQ-VAEs", codes.open, mixed, { level = 1, n_ctx = 8 })
  -- A damaged codes file is named.
  local broken = fx.root .. "/broken_codes"
  jbx.core.mkdir_p(broken)
  write(broken .. "/x.flac.codes.safetensors", "junk")
  H.raises("'" .. broken .. "/x.flac.codes.safetensors' cannot be read", codes.open, broken, { level = 1, n_ctx = 8 })
end

-- Data parallelism: rank r of N gets windows r*n+1 .. (r+1)*n of the global batch of n*N,
-- and every rank's generator follows the global sequence.
function T.batch_parts_of_ranks_make_the_global_batch(jbx)
  local fx = setup(jbx)
  local codes = require "jukebox.codes"
  local ds = codes.open(fx.out, { level = 1, n_ctx = 64 })
  local g, r0, r1 = jbx.core.rng(5), jbx.core.rng(5), jbx.core.rng(5)
  for step = 1, 3 do
    local whole = ds:batch(g, 4)
    local a, b = ds:batch(r0, 2, 0, 2), ds:batch(r1, 2, 1, 2)
    H.assert_close(a.codes:totable(), whole.codes:narrow(1, 1, 2):totable(), 0, "rank 0, batch " .. step)
    H.assert_close(b.codes:totable(), whole.codes:narrow(1, 3, 2):totable(), 0, "rank 1, batch " .. step)
    eq(b.windows[1].offset, whole.windows[3].offset)
  end
  eq(r0:state(), g:state())
  eq(r1:state(), g:state())
end

return T
