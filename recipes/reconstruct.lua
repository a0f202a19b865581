-- Encodes a whole audio file with a trained VQ-VAE (in chunks, any length) and
-- decodes each level's codes back to audio.
--   build/jbx recipes/reconstruct.lua --ckpt=runs/small/step_000300.safetensors \
--       --input=data/music/x.flac --out=runs/recon
-- Writes OUT/codes.safetensors (int32 codes_l1.., one per level), OUT/input.flac and
-- OUT/recon_l<level>.flac.
local jbx = require "jukebox"
local cli = require "jukebox.cli"
local codec = require "jukebox.codec"
local models = require "jukebox.models"

local spec = {
  { "ckpt", nil, "checkpoint (.safetensors) written by train_vqvae.lua", type = "string", required = true },
  { "input", nil, "audio file to reconstruct", type = "string", required = true },
  { "out", "runs/recon", "output folder" },
  { "seconds", 0, "only the first N seconds (0: whole file)" },
  { "chunk", nil, ("samples per chunk (default: %d, or 4 margins if more)"):format(codec.defaults.chunk),
    type = "number" },
  { "margin", nil, "context samples on each side of a chunk (default: the receptive field)", type = "number" },
  { "threads", 2, "threads for BLAS and OpenMP" },
}
local usage = "usage: jbx recipes/reconstruct.lua --ckpt=FILE --input=AUDIO --out=DIR [options]"

cli.run("reconstruct", spec, usage, function(opts)
  if opts.chunk and opts.chunk < 1 then error("--chunk must be at least 1", 0) end
  if opts.margin and opts.margin < 0 then error("--margin must not be negative", 0) end
  cli.check_file(opts.ckpt, "checkpoint")
  cli.check_file(opts.input, "input")
  jbx.core.set_threads(opts.threads)
  jbx.audio.info(opts.input) -- a clear error for an unreadable file
  local model = models.load(opts.ckpt)
  model:eval()
  local rate = model.hp.sr
  local load_opts = { rate = rate, mono = true }
  if opts.seconds > 0 then load_opts.seconds = opts.seconds end
  local x = jbx.audio.load(opts.input, load_opts)
  local n = x:numel()
  if n == 0 then error(("'%s' holds no audio"):format(opts.input), 0) end
  jbx.core.mkdir_p(opts.out)
  jbx.audio.save(opts.out .. "/input.flac", x, rate)

  local t0 = jbx.core.clock()
  local bar = cli.progress(n, { label = "encode " })
  local copts = { chunk = opts.chunk, margin = opts.margin }
  local codes = codec.encode(model, x, { chunk = opts.chunk, margin = opts.margin,
    progress = function(done, total) bar.total = total; bar:update(done) end })
  bar:finish()
  local named = {}
  for l, c in ipairs(codes) do named["codes_l" .. l] = c end
  jbx.core.safetensors_save(opts.out .. "/codes.safetensors", named,
    { hop_lengths = table.concat(model.hop_lengths, ","), sample_rate = tostring(rate), samples = tostring(n) })
  print(("encoded %.2f s of %s in %.2f s"):format(n / rate, opts.input, jbx.core.clock() - t0))
  for l, c in ipairs(codes) do
    local t1 = jbx.core.clock()
    local y = codec.decode(model, c, l, copts):narrow(1, 1, n)
    local path = ("%s/recon_l%d.flac"):format(opts.out, l)
    jbx.audio.save(path, y:clamp(-1, 1), rate)
    print(("level %d: %d codes (hop %d) -> %s (%.2f s)"):format(l, c:numel(), model.hop_lengths[l], path,
      jbx.core.clock() - t1))
  end
  print("codes: " .. opts.out .. "/codes.safetensors")
end)
