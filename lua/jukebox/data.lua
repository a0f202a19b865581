--- Training data: seeded random fixed-length crops from a folder of audio files,
-- mixed to mono at a chosen rate and batched into [batch, 1, length]. Each crop is
-- decoded from disk when it is drawn (a seek and a short read), so a large folder
-- costs memory only for its file list.
local core = require "jukebox.core"

local data = {}

local AUDIO_EXT = { wav = true, flac = true, ogg = true, aiff = true, aif = true, mp3 = true }

--- Audio files of a folder (sorted, recursive), each with its info. Hidden entries
-- (names starting with ".", such as macOS "._x.wav" companions) are ignored.
function data.scan(dir)
  local kind = core.path_kind(dir)
  if kind ~= "dir" then
    error(("data: '%s' %s"):format(dir, kind and "is not a folder" or "is missing"), 2)
  end
  local files = {}
  local function walk(d)
    for _, name in ipairs(core.list_dir(d)) do
      local path = d .. "/" .. name
      local k = core.path_kind(path)
      local ext = name:match("%.([%w]+)$")
      if name:sub(1, 1) == "." then
        -- hidden: skipped
      elseif k == "dir" then
        walk(path)
      elseif k == "file" and ext and AUDIO_EXT[ext:lower()] then
        local info = core.audio.info(path)
        files[#files + 1] = { path = path, rate = info.rate, frames = info.frames, seconds = info.seconds }
      end
    end
  end
  walk(dir)
  if #files == 0 then error(("data: no audio files (wav, flac, ogg, aiff, mp3) in '%s'"):format(dir), 2) end
  return files
end

-- A 64-bit generator in pure Lua (splitmix64): its whole state is one integer, so a
-- checkpoint can store it and a resumed run draws the same crops.
local function splitmix(state)
  state = state + 0x9E3779B97F4A7C15
  local z = state
  z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * 0x94D049BB133111EB
  return state, z ~ (z >> 31)
end

local Loader = {}
Loader.__index = Loader

--- data.loader{dir=, batch=, length=, rate=22050, seed=0, files=nil}
function data.loader(opts)
  local known = { dir = true, batch = true, length = true, rate = true, seed = true, files = true }
  for k in pairs(opts) do
    if not known[k] then error(("data.loader: unknown option '%s'"):format(k), 2) end
  end
  if not opts.files and not opts.dir then error("data.loader: needs dir (or files)", 2) end
  local function int(k, default, min)
    local v = opts[k]
    if v == nil then return default end
    local i = math.tointeger(v)
    if not i or i < min then
      error(("data.loader: %s must be an integer%s, got %s"):format(k, min > 0 and " >= 1" or "", tostring(v)), 3)
    end
    return i
  end
  local self = setmetatable({
    batch = int("batch", 4, 1),
    length = int("length", 16384, 1),
    rate = int("rate", 22050, 1),
    state = int("seed", 0, math.mininteger),
  }, Loader)
  self.files = opts.files or data.scan(opts.dir)
  -- Files shorter than one crop cannot give a crop; skip them, but not silently.
  local usable = {}
  for _, f in ipairs(self.files) do
    -- In integers: frames / f.rate >= length / rate, without rounding at the edge.
    if f.frames * self.rate >= self.length * f.rate then usable[#usable + 1] = f end
  end
  if #usable == 0 then
    error(("data.loader: no file is at least %d samples (%.2f s) long at %d Hz"):format(
      self.length, self.length / self.rate, self.rate), 2)
  end
  self.skipped = #self.files - #usable
  self.files = usable
  return self
end

-- Uniform integer in [0, n).
function Loader:below(n)
  local r
  self.state, r = splitmix(self.state)
  return (r >> 11) % n
end

--- One crop [1, length] of a random file at a random offset.
function Loader:crop()
  local f = self.files[self:below(#self.files) + 1]
  -- Frames needed at the file's rate (a few more to cover resampling edges).
  local need = math.ceil(self.length * f.rate / self.rate) + (f.rate ~= self.rate and 64 or 0)
  need = math.min(need, f.frames)
  local offset = self:below(f.frames - need + 1)
  local x = core.audio.load(f.path, { offset = offset, frames = need, mono = true,
    rate = self.rate ~= f.rate and self.rate or nil })
  local got = x:shape()[2]
  -- Resampling a file only just long enough can come out a sample or two short.
  if got < self.length then x = core.concat({ x, core.zeros({ 1, self.length - got }) }, 2) end
  return x:narrow(2, 1, self.length)
end

--- The next batch [batch, 1, length].
function Loader:next()
  local crops = {}
  for i = 1, self.batch do crops[i] = self:crop():reshape({ 1, 1, self.length }) end
  return core.concat(crops, 1)
end

--- Iterator form: for x in loader:batches(n) do ... end
function Loader:batches(n)
  local i = 0
  return function()
    i = i + 1
    if not n or i <= n then return self:next() end
  end
end

--- The generator state (an integer) for checkpoints, and its restore.
function Loader:get_state() return self.state end
function Loader:set_state(s) self.state = s end

return data
