-- The evaluation recipes end to end on a tiny checkpoint (trained here for 3 steps on
-- short generated clips): eval_vqvae (one and two checkpoints), reconstruct,
-- plot_recon; and their error paths: one clear line on stderr, non-zero exit.
local H = require "helpers"
local eq, yes = H.assert_eq, H.assert_true

local T = {}

local exe = H.jbx_exe()

local q = H.shell_quote

-- Runs `jbx recipes/<name>.lua args...`; returns stdout, stderr, exit code.
local recipe = H.recipe

-- One fixture per test run: short clips and a tiny checkpoint with its log.csv.
local fixture
local function setup(jbx)
  if fixture then return fixture end
  local train = require "jukebox.train"
  local root = os.tmpname() .. "_recipes"
  local clips = root .. "/clips"
  jbx.core.mkdir_p(clips)
  for i, f in ipairs({ 220, 330 }) do
    local t = {}
    for s = 1, 11025 do t[s] = 0.4 * math.sin(2 * math.pi * f * (s - 1) / 22050) + 0.05 * math.sin(s * 0.37) end
    jbx.audio.save(("%s/clip_%d.wav"):format(clips, i), jbx.tensor({ t }), 22050)
  end
  local r = train.run({ data = clips, out = root .. "/run", preset = "tiny", steps = 3, batch = 2,
    sample_length = 2048, log_every = 1, ckpt_every = 3, threads = 1, quiet = true, bandwidth_batches = 2 })
  fixture = { root = root, clips = clips, ckpt = r.checkpoint, clip = clips .. "/clip_1.wav" }
  return fixture
end

-- An error: exit code, and the first stderr line is "<recipe>: <message>".
local function expect_error(name, args, code, text)
  local _, e, c = recipe(name, args)
  eq(c, code, name .. " exit code (stderr: " .. e .. ")")
  local first = e:match("^[^\n]*")
  yes(first:find(name .. ": ", 1, true) == 1, "first line names the recipe: " .. e)
  yes(first:find(text, 1, true), ("expected '%s' in: %s"):format(text, first))
  yes(not e:find("stack traceback", 1, true), "no traceback: " .. e)
end

function T.eval_one_checkpoint(jbx)
  local fx = setup(jbx)
  local json = require "jukebox.json"
  local out = fx.root .. "/eval"
  local o, e, c = recipe("eval_vqvae", { "--ckpt=" .. fx.ckpt, "--data=" .. fx.clips, "--out=" .. out, "--segment=4096" })
  eq(c, 0, "eval_vqvae: " .. e)
  yes(o:find("SC(dB)", 1, true) and o:find("evaluated 2 clip(s)", 1, true), o)
  local doc = json.read(out .. "/metrics.json")
  eq(#doc.checkpoints, 1)
  local ck = doc.checkpoints[1]
  eq(ck.step, 3); eq(ck.clips, 2); eq(#ck.levels, 2); eq(#ck.per_clip, 2)
  for l, lv in ipairs(ck.levels) do
    for _, key in ipairs({ "spectral_convergence", "spectral_convergence_db", "usage", "perplexity", "used", "dead",
                           "entropy_bits", "top10_share", "nearest_code_distance", "l1", "l2", "snr_db",
                           "multispectral", "hop_length" }) do
      yes(lv[key] ~= nil, ("metrics.json level %d has %s"):format(l, key))
    end
    eq(lv.level, l)
  end
  for _, f in ipairs({ "metrics.txt", "code_counts.csv", "waveforms.png", "spectrograms.png", "code_usage.png",
                       "training_curves.png" }) do
    eq(jbx.core.path_kind(out .. "/" .. f), "file", f)
  end
  -- code_counts.csv: header plus one row per (level, code).
  local rows = 0
  for _ in io.lines(out .. "/code_counts.csv") do rows = rows + 1 end
  eq(rows, 1 + 2 * 16)
end

function T.eval_two_checkpoints_no_plots(jbx)
  local fx = setup(jbx)
  local json = require "jukebox.json"
  local out = fx.root .. "/eval2"
  local o, e, c = recipe("eval_vqvae", { "--ckpt=" .. fx.ckpt, "--ckpt=" .. fx.ckpt, "--data=" .. fx.clips,
    "--out=" .. out, "--no-plots", "--max-seconds=0.25" })
  eq(c, 0, "eval_vqvae: " .. e)
  local doc = json.read(out .. "/metrics.json")
  eq(#doc.checkpoints, 2)
  eq(doc.checkpoints[1].levels[1].perplexity, doc.checkpoints[2].levels[1].perplexity, "same checkpoint, same numbers")
  eq(doc.checkpoints[1].clips, 1)
  eq(jbx.core.path_kind(out .. "/waveforms.png"), nil, "no plots")
  local lines = 0
  for _ in o:gmatch("\n") do lines = lines + 1 end
  yes(lines >= 5, "a table row per checkpoint and level")
end

function T.eval_errors(jbx)
  local fx = setup(jbx)
  local out = fx.root .. "/eval_err"
  expect_error("eval_vqvae", { "--data=" .. fx.clips }, 2, "--ckpt is required")
  expect_error("eval_vqvae", { "--ckpt=/nonexistent/x.safetensors", "--data=" .. fx.clips, "--out=" .. out }, 1,
    "checkpoint '/nonexistent/x.safetensors' does not exist")
  expect_error("eval_vqvae", { "--ckpt=" .. fx.ckpt, "--data=/nonexistent_jbx", "--out=" .. out }, 1,
    "data folder '/nonexistent_jbx' does not exist")
  expect_error("eval_vqvae", { "--ckpt=" .. fx.clip, "--data=" .. fx.clips, "--out=" .. out }, 1,
    "not a safetensors file")
  expect_error("eval_vqvae", { "--ckpt=" .. fx.ckpt, "--bogus=1" }, 2, "unknown option --bogus")
  -- gnuplot missing: fails at once, naming the package; --no-plots still works.
  local _, e, c = recipe("eval_vqvae", { "--ckpt=" .. fx.ckpt, "--data=" .. fx.clips, "--out=" .. out },
    "PATH=/nonexistent_jbx")
  eq(c, 1)
  yes(e:find("gnuplot-nox", 1, true) and e:find("--plots=false", 1, true), e)
  local _, e2, c2 = recipe("eval_vqvae", { "--ckpt=" .. fx.ckpt, "--data=" .. fx.clips, "--out=" .. out,
    "--plots=false", "--max-seconds=0.2" }, "PATH=/nonexistent_jbx")
  eq(c2, 0, e2)
end

function T.reconstruct(jbx)
  local fx = setup(jbx)
  local out = fx.root .. "/recon"
  local o, e, c = recipe("reconstruct", { "--ckpt=" .. fx.ckpt, "--input=" .. fx.clip, "--out=" .. out,
    "--chunk=1000" })
  eq(c, 0, "reconstruct: " .. e)
  yes(o:find("level 2: 2757 codes (hop 4)", 1, true), o) -- 11025 samples padded to 11028
  local codes = jbx.core.safetensors_load(out .. "/codes.safetensors")
  H.assert_shape(codes.codes_l1, { 5514 })
  for l = 1, 2 do
    local info = jbx.audio.info(("%s/recon_l%d.flac"):format(out, l))
    eq(info.frames, 11025, "the reconstruction has the input's length")
  end
  expect_error("reconstruct", { "--input=" .. fx.clip }, 2, "--ckpt is required")
  expect_error("reconstruct", { "--ckpt=" .. fx.ckpt }, 2, "--input is required")
  expect_error("reconstruct", { "--ckpt=" .. fx.ckpt, "--input=/nonexistent.wav", "--out=" .. out }, 1,
    "input '/nonexistent.wav' does not exist")
  expect_error("reconstruct", { "--ckpt=/nonexistent.safetensors", "--input=" .. fx.clip, "--out=" .. out }, 1,
    "checkpoint '/nonexistent.safetensors' does not exist")
  expect_error("reconstruct", { "--ckpt=" .. fx.ckpt, "--input=" .. fx.root .. "/run/log.csv", "--out=" .. out }, 1,
    "audio.info: cannot open")
  expect_error("reconstruct", { "--ckpt=" .. fx.ckpt, "--input=" .. fx.clip, "--chunk=0" }, 1,
    "--chunk must be at least 1")
end

function T.plot_recon(jbx)
  local fx = setup(jbx)
  local out = fx.root .. "/plots"
  local o, e, c = recipe("plot_recon", { "--ckpt=" .. fx.ckpt, "--input=" .. fx.clip, "--out=" .. out,
    "--from=0.2", "--seconds=0.5" })
  eq(c, 0, "plot_recon: " .. e)
  yes(o:find("waveforms.png", 1, true) and o:find("spectrograms.png", 1, true), o)
  eq(jbx.core.path_kind(out .. "/spectrograms.png"), "file")
  expect_error("plot_recon", { "--input=" .. fx.clip }, 2, "--ckpt is required")
  expect_error("plot_recon", { "--ckpt=" .. fx.ckpt, "--input=/nonexistent.flac", "--out=" .. out }, 1,
    "input '/nonexistent.flac' does not exist")
end

-- Inference loads a model through jukebox.models: the trainer is never loaded.
function T.inference_without_the_trainer(jbx)
  local fx = setup(jbx)
  local code = ("local m = require('jukebox.models').load(%q); m:eval(); "
    .. "require('jukebox.codec').reconstruct(m, require('jukebox').zeros({512})); "
    .. "for _, r in ipairs({'evaluate', 'metrics', 'plot'}) do require('jukebox.' .. r) end; "
    .. "assert(m.kind == 'vqvae', m.kind); "
    .. "io.write(package.loaded['jukebox.train'] and 'trainer loaded' or 'no trainer')"):format(fx.ckpt)
  local p = assert(io.popen(q(exe) .. " -e " .. q(code) .. " 2>&1"))
  local out = p:read("a")
  p:close()
  eq(out, "no trainer")
  H.assert_error(function() require("jukebox.models").load(fx.root .. "/run/log.csv") end, "log.csv")
end

-- Tests run in name order: this one last, removing the fixture.
function T.zz_cleanup(jbx)
  if fixture then os.execute("rm -rf " .. q(fixture.root)) end
  fixture = nil
end

return T
