-- data.lua: folder scan, seeded crops (determinism, shapes, state save/restore),
-- short files skipped, clear errors.
local H = require "helpers"
local close, eq, yes = H.assert_close, H.assert_eq, H.assert_true

local T = {}

local function tmpdir(tag)
  local d = os.tmpname() .. "_" .. tag
  require("jukebox.core").mkdir_p(d)
  return d
end

-- A folder of two good files and the three broken fixtures (empty, text named .wav,
-- truncated FLAC whose header is whole).
local function broken_folder(jbx)
  local d = tmpdir("broken")
  jbx.audio.save(d .. "/good1.wav", jbx.randn({ 1, 3000 }) * 0.1, 22050)
  jbx.audio.save(d .. "/good2.flac", jbx.randn({ 1, 3000 }) * 0.1, 22050)
  os.execute(("cp tests/fixtures/audio/empty.flac tests/fixtures/audio/not_audio.wav "
    .. "tests/fixtures/audio/truncated.flac '%s'/"):format(d))
  return d
end

-- Runs fn with io.stderr replaced by a buffer; returns what it wrote.
local function stderr_of(fn)
  local real, got = io.stderr, {}
  io.stderr = { write = function(self, ...) for _, s in ipairs({ ... }) do got[#got + 1] = tostring(s) end return self end,
                flush = function() end }
  local ok, err = pcall(fn)
  io.stderr = real
  if not ok then error(err, 0) end
  return table.concat(got)
end

local function rm(d) os.execute("rm -rf '" .. d .. "'") end

-- A ramp: each sample tells its own position, so a crop tells where it came from.
local function ramp(jbx, n, scale)
  local t = {}
  for i = 1, n do t[i] = (i - 1) * scale end
  return jbx.tensor({ t })
end

local function folder(jbx)
  local d = tmpdir("data")
  jbx.audio.save(d .. "/a.wav", ramp(jbx, 6000, 1e-4), 22050)
  jbx.core.mkdir_p(d .. "/sub")
  jbx.audio.save(d .. "/sub/b.flac", ramp(jbx, 9000, -1e-4), 22050)
  jbx.audio.save(d .. "/short.wav", ramp(jbx, 100, 1e-3), 22050)
  local f = assert(io.open(d .. "/notes.txt", "w"))
  f:write("not audio\n")
  f:close()
  f = assert(io.open(d .. "/._a.wav", "w")) -- a macOS companion file: hidden, ignored
  f:write("junk")
  f:close()
  return d
end

function T.scan_recursive_sorted(jbx)
  local data = require "jukebox.data"
  local d = folder(jbx)
  local files = data.scan(d)
  rm(d)
  eq(#files, 3, "a.wav, short.wav, sub/b.flac; no text or hidden files")
  yes(files[1].path:match("/a%.wav$")); yes(files[2].path:match("/short%.wav$")); yes(files[3].path:match("/sub/b%.flac$"))
  eq(files[3].frames, 9000); eq(files[3].rate, 22050); close(files[1].seconds, 6000 / 22050, 1e-9)
end

function T.scan_errors(jbx)
  local data = require "jukebox.data"
  H.assert_error(function() data.scan("/nonexistent_jbx_dir") end, "data: '/nonexistent_jbx_dir' is missing")
  local d = tmpdir("noaudio")
  local f = assert(io.open(d .. "/readme.txt", "w"))
  f:write("x")
  f:close()
  H.assert_error(function() data.scan(d) end, "no audio files")
  H.assert_error(function() data.scan(d .. "/readme.txt") end, "is not a folder")
  H.assert_error(function() data.loader({ dir = d, length = 64 }) end, "no audio files")
  rm(d)
end

function T.loader_shapes_and_determinism(jbx)
  local data = require "jukebox.data"
  local d = folder(jbx)
  local a = data.loader({ dir = d, batch = 3, length = 512, seed = 7 })
  local b = data.loader({ dir = d, batch = 3, length = 512, seed = 7 })
  local c = data.loader({ dir = d, batch = 3, length = 512, seed = 8 })
  eq(a.skipped, 1, "short.wav (100 samples) is skipped")
  eq(#a.files, 2)
  local xa, xb, xc = a:next(), b:next(), c:next()
  H.assert_shape(xa, { 3, 1, 512 })
  close(xa, xb, 0, "same seed, same crops")
  yes(not xa:allclose(xc), "another seed, other crops")
  -- Each crop is a contiguous piece of a ramp: consecutive samples differ by one step.
  local t = xa:totable()
  for i = 1, 3 do
    local row = t[i][1]
    local step = row[2] - row[1]
    yes(math.abs(math.abs(step) - 1e-4) < 2e-5, "a crop is contiguous")
    close(row[512] - row[1], 511 * step, 1e-2)
  end
  local n = 0
  for x in a:batches(2) do
    n = n + 1
    H.assert_shape(x, { 3, 1, 512 })
  end
  eq(n, 2)
  rm(d)
end

function T.loader_state_restores_crops(jbx)
  local data = require "jukebox.data"
  local d = folder(jbx)
  local a = data.loader({ dir = d, batch = 2, length = 256, seed = 11 })
  a:next()
  local st = a:get_state()
  yes(type(st) == "string" and #st == 64, "the state is the core generator's, 64 hex digits")
  local x1, x2 = a:next(), a:next()
  -- A new loader (as after a resume) continues with the same crops.
  local b = data.loader({ dir = d, batch = 2, length = 256, seed = 999 })
  b:set_state(st)
  close(b:next(), x1, 0); close(b:next(), x2, 0)
  a:set_state(st)
  close(a:next(), x1, 0)
  rm(d)
end

function T.loader_resamples(jbx)
  local data = require "jukebox.data"
  local d = tmpdir("rate")
  jbx.audio.save(d .. "/lo.wav", jbx.randn({ 1, 4000 }) * 0.1, 16000)
  -- 4000 samples at 16 kHz = 5512.5 samples at 22050: enough for a 5500 crop, not 5600.
  local l = data.loader({ dir = d, batch = 2, length = 5500, rate = 22050, seed = 1 })
  H.assert_shape(l:next(), { 2, 1, 5500 })
  H.assert_error(function() data.loader({ dir = d, length = 5600 }) end, "no file is at least 5600 samples")
  rm(d)
end

function T.loader_option_errors(jbx)
  local data = require "jukebox.data"
  H.assert_error(function() data.loader({ dir = "data", lenght = 5 }) end, "unknown option 'lenght'")
  H.assert_error(function() data.loader({ batch = 2 }) end, "needs dir")
  H.assert_error(function() data.loader({ dir = "data", batch = 0 }) end, "batch must be an integer >= 1")
  H.assert_error(function() data.loader({ dir = "data", length = 1.5 }) end, "length must be an integer >= 1")
end

function T.broken_files_skipped_with_one_warning(jbx)
  local data = require "jukebox.data"
  local d = broken_folder(jbx)
  local files, skipped
  local warning = stderr_of(function() files, skipped = data.scan(d) end)
  eq(#files, 2, "the two good files")
  eq(#skipped, 3, "empty, not audio, truncated")
  local _, lines = warning:gsub("\n", "")
  eq(lines, 1, "one warning line: " .. warning)
  for _, part in ipairs({ "skipping 3 of 5 files", "empty.flac (", "not_audio.wav (", "truncated.flac (",
                          "the file is empty", "truncated" }) do
    yes(warning:find(part, 1, true), ("the warning names '%s': %s"):format(part, warning))
  end
  -- The loader adds files shorter than a crop to the same single warning.
  warning = stderr_of(function() data.loader({ dir = d, batch = 2, length = 2048, seed = 1 }):next() end)
  _, lines = warning:gsub("\n", "")
  eq(lines, 1, "one warning line: " .. warning)
  yes(warning:find("skipping 3 of 5 files", 1, true), warning)
  warning = stderr_of(function()
    H.assert_error(function() data.loader({ dir = d, length = 4096 }) end, "no file is at least 4096 samples")
  end)
  eq(warning, "", "no usable file: the error says so, no warning first")
  rm(d)
end

function T.broken_files_errors(jbx)
  local data = require "jukebox.data"
  local d = broken_folder(jbx)
  H.assert_error(function() data.scan(d, { strict = true }) end, "cannot be used (strict): ")
  H.assert_error(function() data.loader({ dir = d, length = 64, strict = true }) end, "empty.flac' cannot be used (strict)")
  eq(stderr_of(function() data.scan(d, { quiet = true }) end), "", "quiet")
  os.remove(d .. "/good1.wav")
  os.remove(d .. "/good2.flac")
  H.assert_error(function() data.scan(d) end, "none of the 3 audio files")
  H.assert_error(function() data.loader({ dir = d }) end, "none of the 3 audio files")
  rm(d)
end

return T
