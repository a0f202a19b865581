--- Training data: seeded random fixed-length crops from a folder of audio files,
-- mixed to mono at a chosen rate and batched into [batch, 1, length]. Each crop is
-- decoded from disk when it is drawn (a seek and a short read), so a large folder
-- costs memory only for its file list. A user's folder will hold a few broken files:
-- they are skipped with one warning, unless `strict`.
local core = require "jukebox.core"
local options = require "jukebox.options"

local data = {}

local AUDIO_EXT = { wav = true, flac = true, ogg = true, aiff = true, aif = true, mp3 = true }

-- How many skipped files a warning names before "and N more".
local NAMED_IN_WARNING = 3

-- Opens a file as the loader will read it: its header, and its last frame, since a
-- truncated FLAC has a whole header (libsndfile reports every frame) and fails only
-- when a crop reaches the missing part. Returns the info, or nil and why not.
local function probe(path)
  local ok, info = pcall(core.audio.info, path)
  if not ok then return nil, info end
  if info.frames == 0 then return nil, "no audio frames" end
  if not pcall(core.audio.load, path, { offset = info.frames - 1, frames = 1 }) then
    return nil, ("truncated or corrupt: the header says %d frames, the last cannot be read"):format(info.frames)
  end
  return info
end

-- "audio.load: 'x/y.flac' is truncated: ..." -> "is truncated: ...": the warning names the file once.
local function reason(path, err)
  err = tostring(err):gsub("^[%w_.]+: ", "")
  local quoted = "'" .. path .. "'"
  local at = err:find(quoted, 1, true)
  if at then err = (err:sub(1, at - 1) .. err:sub(at + #quoted)):gsub("^%s+", ""):gsub("%s+", " "):gsub(" :", ":") end
  return err
end

--- One line on stderr for the files a folder gave that cannot be used:
-- "data: skipping 3 of 27 files in 'dir' that cannot be used: a.wav (why), ... and 1 more"
function data.warn_skipped(dir, skipped, total)
  if #skipped == 0 then return end
  local names = {}
  for i = 1, math.min(#skipped, NAMED_IN_WARNING) do
    local s = skipped[i]
    local name = s.path:sub(1, #dir + 1) == dir .. "/" and s.path:sub(#dir + 2) or s.path
    names[i] = ("%s (%s)"):format(name, s.reason)
  end
  local more = #skipped > NAMED_IN_WARNING and (" and %d more"):format(#skipped - NAMED_IN_WARNING) or ""
  io.stderr:write(("data: warning: skipping %d of %d files in '%s' that cannot be used: %s%s\n"):format(
    #skipped, total, dir, table.concat(names, ", "), more))
end

--- data.scan(dir[, {strict = false, quiet = false}]) -> files, skipped: the audio files
-- of a folder (sorted, recursive), each {path, rate, frames, seconds}, and the ones that
-- cannot be read, each {path, reason}. Hidden entries (names starting with ".", such as
-- macOS "._x.wav" companions) are ignored. Unreadable files are skipped with one warning
-- on stderr (none when quiet); strict makes the first one an error. It is an error when
-- no readable audio file remains.
function data.scan(dir, opts)
  opts = options.merge("data.scan", { strict = false, quiet = false }, opts)
  local kind = core.path_kind(dir)
  if kind ~= "dir" then
    error(("data: '%s' %s"):format(dir, kind and "is not a folder" or "is missing"), 2)
  end
  local files, skipped = {}, {}
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
        local info, err = probe(path)
        if info then
          files[#files + 1] = { path = path, rate = info.rate, frames = info.frames, seconds = info.seconds }
        elseif opts.strict then
          error(("data: '%s' cannot be used (strict): %s"):format(path, reason(path, err)), 2)
        else
          skipped[#skipped + 1] = { path = path, reason = reason(path, err) }
        end
      end
    end
  end
  walk(dir)
  if #files == 0 and #skipped == 0 then
    error(("data: no audio files (wav, flac, ogg, aiff, mp3) in '%s'"):format(dir), 2)
  end
  if #files == 0 then
    error(("data: none of the %d audio files in '%s' can be read (first: %s: %s)"):format(
      #skipped, dir, skipped[1].path, skipped[1].reason), 2)
  end
  if not opts.quiet then data.warn_skipped(dir, skipped, #files + #skipped) end
  return files, skipped
end

local Loader = {}
Loader.__index = Loader

local loader_defaults = { batch = 4, length = 16384, rate = 22050, seed = 0, strict = false, quiet = false,
                          rank = 0, ranks = 1 }

--- data.loader{dir=, batch=4, length=16384, rate=22050, seed=0, strict=false, quiet=false, files=nil,
-- rank=0, ranks=1}
-- Crops come from the core generator (core.rng(seed)); files shorter than one crop and
-- unreadable files are skipped with one warning (strict: an error). With `ranks`
-- processes (data-parallel training), each batch is this rank's `batch` crops of a
-- global batch of batch x ranks: every rank draws the whole global sequence (the
-- generator stays the same everywhere) and reads only its own crops, so N processes
-- see exactly the crops one process with the global batch sees.
function data.loader(opts)
  local o = options.merge("data.loader", loader_defaults, opts, { optional = { "dir", "files" } })
  if not o.files and not o.dir then error("data.loader: needs dir (or files)", 2) end
  local function int(k, min)
    local i = math.tointeger(o[k])
    if not i or i < min then
      error(("data.loader: %s must be an integer%s, got %s"):format(k, min > 0 and " >= 1" or "", tostring(o[k])), 3)
    end
    return i
  end
  local self = setmetatable({
    batch = int("batch", 1),
    length = int("length", 1),
    rate = int("rate", 1),
    rng = core.rng(int("seed", math.mininteger)),
    ranks = int("ranks", 1),
  }, Loader)
  self.rank = int("rank", 0)
  if self.rank >= self.ranks then
    error(("data.loader: rank %d is not below ranks %d"):format(self.rank, self.ranks), 2)
  end
  local files, skipped = o.files, {}
  if not files then files, skipped = data.scan(o.dir, { strict = o.strict, quiet = true }) end
  -- Files shorter than one crop cannot give a crop.
  local usable = {}
  for _, f in ipairs(files) do
    -- In integers: frames / f.rate >= length / rate, without rounding at the edge.
    if f.frames * self.rate >= self.length * f.rate then
      usable[#usable + 1] = f
    elseif o.strict then
      error(("data.loader: '%s' is shorter than one crop of %d samples (strict)"):format(f.path, self.length), 2)
    else
      skipped[#skipped + 1] = { path = f.path, reason = ("shorter than one crop: %.2f s"):format(f.seconds) }
    end
  end
  if #usable == 0 then
    error(("data.loader: no file is at least %d samples (%.2f s) long at %d Hz"):format(
      self.length, self.length / self.rate, self.rate), 2)
  end
  if o.dir and not o.quiet then data.warn_skipped(o.dir, skipped, #usable + #skipped) end
  self.skipped = #skipped
  self.files = usable
  return self
end

-- The next crop's file, offset and frames to read, drawn from the generator.
function Loader:draw()
  local f = self.files[self.rng:below(#self.files) + 1]
  -- Frames needed at the file's rate (a few more to cover resampling edges).
  local need = math.ceil(self.length * f.rate / self.rate) + (f.rate ~= self.rate and 64 or 0)
  need = math.min(need, f.frames)
  return f, self.rng:below(f.frames - need + 1), need
end

-- The crop [1, length] that draw() chose.
function Loader:read(f, offset, need)
  local x = core.audio.load(f.path, { offset = offset, frames = need, mono = true,
    rate = self.rate ~= f.rate and self.rate or nil })
  local got = x:shape()[2]
  -- Resampling a file only just long enough can come out a sample or two short.
  if got < self.length then x = core.concat({ x, core.zeros({ 1, self.length - got }) }, 2) end
  return x:narrow(2, 1, self.length)
end

--- One crop [1, length] of a random file at a random offset.
function Loader:crop() return self:read(self:draw()) end

--- The next batch [batch, 1, length]: with several ranks, this rank's part of the global batch.
function Loader:next()
  local crops, first = {}, self.rank * self.batch
  for i = 0, self.batch * self.ranks - 1 do
    local f, offset, need = self:draw()
    if i >= first and i < first + self.batch then
      crops[#crops + 1] = self:read(f, offset, need):reshape({ 1, 1, self.length })
    end
  end
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

--- The generator state (64 hex digits, as core.rng's) for checkpoints, and its restore.
function Loader:get_state() return self.rng:state() end
function Loader:set_state(s) self.rng:set_state(s) end

return data
