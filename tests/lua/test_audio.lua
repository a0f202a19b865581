-- jbx.audio from Lua: load (with crops and options), info, save, resample, and the
-- error messages a user sees. Each test raises an error to fail.
local CLIP = "data/music/wesnoth_battle-epic_00.flac"
local CLIP_FRAMES = 330750
local FIX = "tests/fixtures/audio/"

local function audio_of(jbx)
  return jbx.audio or jbx.core.audio
end

local H = require "helpers"
local eq, shape_str, raises, max_abs_diff = H.assert_eq, H.shape_of, H.raises, H.max_abs_diff

local function tmp(ext)
  local base = os.tmpname() -- creates the file: keep only its unique name
  os.remove(base)
  return base .. ext
end

return {
  ["info gives rate, channels, frames, seconds, format, subtype"] = function(jbx)
    local i = audio_of(jbx).info(CLIP)
    eq(i.rate, 22050, "rate")
    eq(i.channels, 1, "channels")
    eq(i.frames, CLIP_FRAMES, "frames")
    eq(i.seconds, 15.0, "seconds")
    eq(i.format, "FLAC", "format")
    eq(i.subtype, "PCM_16", "subtype")
  end,

  ["load gives [1, n] and rate"] = function(jbx)
    local x, rate = audio_of(jbx).load(CLIP)
    eq(shape_str(x), "[1, 330750]", "shape")
    eq(rate, 22050, "rate")
    local rms = math.sqrt((x * x):mean():item())
    assert(rms > 0.01 and rms < 0.7, "rms " .. rms)
    assert(x:abs():max():item() <= 1.0, "peak above 1")
  end,

  ["a crop equals the same slice of a full load"] = function(jbx)
    local audio = audio_of(jbx)
    local full = audio.load(CLIP)
    local c = audio.load(CLIP, { offset = 100000, frames = 2205 })
    eq(shape_str(c), "[1, 2205]", "crop shape")
    eq(max_abs_diff(c, full:narrow(2, 100001, 2205)), 0, "crop vs slice")
    -- the same crop in seconds
    local s = audio.load(CLIP, { offset_seconds = 100000 / 22050, seconds = 0.1 })
    eq(shape_str(s), "[1, 2205]", "seconds crop shape")
    eq(max_abs_diff(s, c), 0, "seconds crop vs frames crop")
  end,

  ["load with rate resamples and mono keeps one channel"] = function(jbx)
    local x, rate = audio_of(jbx).load(CLIP, { rate = 16000, mono = true, frames = 22050 })
    eq(rate, 16000, "rate")
    eq(shape_str(x), "[1, 16000]", "shape")
  end,

  ["save and reload: wav within 24-bit, flac within 16-bit steps"] = function(jbx)
    local audio = audio_of(jbx)
    local x = audio.load(CLIP, { offset = 50000, frames = 4410 })
    for _, case in ipairs({ { ".wav", "WAV", "PCM_24", 2 / 2 ^ 23 }, { ".flac", "FLAC", "PCM_16", 2 / 2 ^ 15 } }) do
      local path = tmp(case[1])
      audio.save(path, x, 22050)
      local i = audio.info(path)
      eq(i.format, case[2], "format")
      eq(i.subtype, case[3], "subtype")
      local y, rate = audio.load(path)
      os.remove(path)
      eq(rate, 22050, "rate")
      eq(shape_str(y), "[1, 4410]", "shape")
      local d = max_abs_diff(x, y)
      assert(d <= case[4], ("%s round trip error %g"):format(case[1], d))
    end
  end,

  ["resample 22050 -> 16000 -> 22050 keeps the signal"] = function(jbx)
    local audio = audio_of(jbx)
    local x = audio.load(CLIP, { offset = 22050, frames = 22050 })
    local y = audio.resample(x, 22050, 16000)
    eq(shape_str(y), "[1, 16000]", "down shape")
    local z = audio.resample(y, 16000, 22050)
    eq(shape_str(z), "[1, 22050]", "up shape")
    -- Away from the edges only the content above 8 kHz (lost at 16 kHz) may differ.
    local inner = function(t) return t:narrow(2, 2001, 18050) end
    local err = math.sqrt(((inner(z) - inner(x)) ^ 2):mean():item())
    local rms = math.sqrt((inner(x) ^ 2):mean():item())
    assert(err < 0.1 * rms, ("round trip rms error %g of signal rms %g"):format(err, rms))
  end,

  ["errors name the file and the cause"] = function(jbx)
    local audio = audio_of(jbx)
    raises("audio.load: cannot open '" .. FIX .. "missing.flac': No such file or directory",
      audio.load, FIX .. "missing.flac")
    raises("audio.info: cannot open '" .. FIX .. "missing.flac': No such file or directory",
      audio.info, FIX .. "missing.flac")
    raises("audio.load: cannot open '" .. FIX .. "not_audio.wav': not an audio file",
      audio.load, FIX .. "not_audio.wav")
    raises("audio.load: '" .. FIX .. "truncated.flac' is truncated: read ",
      audio.load, FIX .. "truncated.flac")
    raises("audio.load: '" .. FIX .. "truncated.wav' is truncated: read 5501 of 11025 frames",
      audio.load, FIX .. "truncated.wav")
    raises("audio.load: offset 330750 is beyond the end of '" .. CLIP .. "' (330750 frames)",
      audio.load, CLIP, { offset = CLIP_FRAMES })
    raises("audio.load: offset_seconds", audio.load, CLIP, { offset_seconds = -1 })
    raises("beyond the end of '" .. CLIP .. "'", audio.load, CLIP, { offset_seconds = 20 })
    -- seconds options read the header first; the error still says audio.load
    raises("audio.load: cannot open 'missing.flac'", audio.load, "missing.flac", { seconds = 1 })
    raises("audio.load: give offset or offset_seconds, not both", audio.load, CLIP,
      { offset = 1, offset_seconds = 1 })
    raises("audio.load: give frames or seconds, not both", audio.load, CLIP,
      { frames = 1, seconds = 1 })
    raises("audio.load: seconds", audio.load, CLIP, { seconds = 0 })
    raises("audio.load: option 'mono' must be a boolean, got number", audio.load, CLIP, { mono = 1 })
    raises("audio.load: option 'rate' must be an integer in 0..768000, got -5", audio.load, CLIP, { rate = -5 })
    raises("audio.load: option 'offset' must be an integer, got 1.5", audio.load, CLIP, { offset = 1.5 })
    raises("audio.load: option 'seconds' must be a number, got string", audio.load, CLIP, { seconds = "1" })
    raises("unknown option 'sample_rate'", audio.load, CLIP, { sample_rate = 16000 })
    local x = audio.load(CLIP, { frames = 100 })
    raises("audio.save: unsupported extension '.mp4' of 'x.mp4' (use .wav or .flac)",
      audio.save, "x.mp4", x, 22050)
    raises("audio.save: argument 3 (rate) must be an integer in 1..768000, got 0", audio.save, tmp(".wav"), x, 0)
    raises("audio.resample: argument 3 (rate_out) must be an integer in 1..768000, got -1", audio.resample, x, 22050, -1)
    raises("the ratio must lie within 1/256..256", audio.resample, x, 100, 60000)
  end,
}
