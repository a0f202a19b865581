-- tools/convert_jukebox.py's output: reference-named checkpoints made with PyTorch and
-- converted (tools/fixtures/convert.py: a tiny VQ-VAE, a float16 tied prior, an upsampler
-- and a labelled prior) load with models.load and give PyTorch's losses on the same
-- inputs; the jukebox_44k preset; errors for bad files. With /usr/bin/python3 and torch
-- present the converter also runs end to end (skipped with a message otherwise).
local H = require "helpers"
local models = require "jukebox.models"
local vqvae = require "jukebox.vqvae"
local checkpoint = require "jukebox.checkpoint"
local eq, yes = H.assert_eq, H.assert_true

local DIR = "tests/fixtures/convert/"
local fixture
local function fix()
  fixture = fixture or H.read_fixture(DIR .. "convert.fix")
  return fixture
end

local function tensor_of(core, name)
  local a = fix()[name]
  if a.dtype == "i32" then return core.from_ints(a.data, a.shape) end
  return core.tensor(a.data):reshape(a.shape)
end

-- |ours - torch| / |torch| <= 1e-4
local function close(ours, want, what)
  local r = math.abs(ours - want) / math.max(math.abs(want), 1e-30)
  yes(r <= 1e-4, ("%s: %.9g, PyTorch %.9g (relative error %.2e)"):format(what, ours, want, r))
end

local function prior_loss(core, file, batch)
  local m = models.load(DIR .. file)
  eq(m.kind, "prior")
  return m, core.no_grad(function() return m:forward(batch).loss:item() end)
end

local T = {}

function T.jukebox_44k_preset_is_the_reference_vqvae_at_44k()
  local hp = vqvae.config("jukebox_44k")
  eq(hp.sr, 44100)
  eq(table.concat(vqvae.hop_lengths(hp), ","), "8,32,128")
  local ref = vqvae.config("jukebox")
  for k, v in pairs(ref) do
    if k ~= "sr" and k ~= "preset" and type(v) ~= "table" then eq(hp[k], v, k) end
  end
  local m = vqvae.new("jukebox_44k")
  eq(table.concat(m.hop_lengths, ","), "8,32,128")
  eq(m.hp.sr, 44100)
end

function T.converted_vqvae_gives_pytorchs_loss(jbx)
  local m, _, meta = models.load(DIR .. "vqvae.safetensors")
  eq(m.kind, "vqvae")
  -- Hyperparameters: the structure from the shapes, sr and the normalisers from hps.
  eq(m.hp.preset, "jukebox_44k")
  eq(m.hp.sr, 44100)
  eq(table.concat(m.hp.multipliers, ","), "2,1")
  eq(table.concat(m.hop_lengths, ","), "4,8")
  eq(m.bandwidth.spec, 30.0)
  yes(m.bottleneck[1].initialised and m.bottleneck[2].initialised, "codebooks count as initialised")
  eq(meta.bottleneck[1].rng, nil)
  m:train(false)
  local x = tensor_of(jbx, "vq_x")
  local out = jbx.no_grad(function() return m:forward(x) end)
  close(out.loss:item(), fix().vq_loss.data[1], "loss")
  for l = 1, 2 do
    local got = out.levels[l].metrics
    close(got.recons_loss, fix().vq_recons.data[l], "level " .. l .. " reconstruction loss")
    close(got.commit_loss, fix().vq_commit.data[l], "level " .. l .. " commit loss")
    close(got.multispectral_loss, fix().vq_multispec.data[l], "level " .. l .. " multispectral loss")
    eq(H.max_abs_diff(jbx.tensor(out.levels[l].codes, { dtype = "float32" }),
      jbx.tensor(tensor_of(jbx, "vq_codes_l" .. l), { dtype = "float32" })), 0, "level " .. l .. " codes")
  end
end

function T.converted_priors_give_pytorchs_loss(jbx)
  local m, loss = prior_loss(jbx, "prior.safetensors", { codes = tensor_of(jbx, "prior_codes") })
  close(loss, fix().prior_loss.data[1], "float16 tied prior")
  eq(m.hp.merged_decoder, false)
  eq(m.prior.x_out, nil) -- tied: the reference's second copy was dropped
  local up
  up, loss = prior_loss(jbx, "upsampler.safetensors",
    { codes = tensor_of(jbx, "up_codes"), upper = tensor_of(jbx, "up_upper") })
  close(loss, fix().up_loss.data[1], "upsampler")
  eq(up.hp.cond_c_res, 1)
  eq(up.hp.cond_res_scale, true)
  local lab
  lab, loss = prior_loss(jbx, "labelled.safetensors",
    { codes = tensor_of(jbx, "lab_codes"), labels = tensor_of(jbx, "lab_y") })
  close(loss, fix().lab_loss.data[1], "labelled prior (untied)")
  eq(lab.hp.merged_decoder, true)
  eq(lab.hp.max_bow_genre_size, 3)
end

-- A converted file re-saved without one tensor, or with another model kind's format.
function T.bad_files_give_one_line_errors(jbx)
  local ck = checkpoint.load(DIR .. "vqvae.safetensors")
  local dir = os.tmpname() .. "_convert"
  jbx.core.mkdir_p(dir)
  local params = {}
  for k, v in pairs(ck.tensors) do params[k] = v end
  params["decoders.1.out.bias"] = nil
  checkpoint.save(dir .. "/missing.safetensors", { params = params, meta = ck.meta })
  H.raises("missing decoders.1.out.bias (the model expects it)", models.load, dir .. "/missing.safetensors")
  local meta = {}
  for k, v in pairs(ck.meta) do meta[k] = v end
  meta.format = "jukebox-c prior 1"
  checkpoint.save(dir .. "/kind.safetensors", { params = ck.tensors, meta = meta })
  H.raises("prior: unknown preset 'jukebox_44k'", models.load, dir .. "/kind.safetensors")
  H.write_file(dir .. "/junk.safetensors", "not a checkpoint")
  local ok, err = pcall(models.load, dir .. "/junk.safetensors")
  yes(not ok and not tostring(err):find("\n"), "one line: " .. tostring(err))
  os.execute("rm -rf " .. H.shell_quote(dir))
end

-- End to end when PyTorch is here: the fixture's reference checkpoints made again and
-- converted by the tool's command line (its main, in one Python process: importing torch
-- costs seconds) into the same tensors, and its errors (the priors' conversion is the
-- fixture's, made by the same function).
function T.converter_end_to_end_when_torch_is_here(jbx)
  local _, _, code = H.run("/usr/bin/python3 -c 'import torch'")
  if code ~= 0 then
    io.write("     (skipped: /usr/bin/python3 with torch is not installed; the committed fixtures were tested)\n")
    return
  end
  local dir = os.tmpname() .. "_convert_e2e"
  jbx.core.mkdir_p(dir)
  local script = ([[
import contextlib, io, sys, torch
sys.path.insert(0, 'tools/fixtures')
sys.path.insert(0, 'tools')
import convert as C, convert_jukebox
d = %s
g = torch.Generator().manual_seed(20261129)
C.make_vqvae(g, d)
C.make_prior(g, d)
ck = torch.load(d + '/vqvae.pth.tar')
ck['model']['module.encoders.0.extra'] = torch.zeros(2)
torch.save(ck, d + '/extra.pth.tar')
for argv in (['vqvae', d + '/vqvae.pth.tar', d + '/v.safetensors'],
             ['prior', d + '/prior_level_2.pth.tar', d + '/p.safetensors'],
             ['vqvae', d + '/extra.pth.tar', d + '/x.safetensors']):
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = convert_jukebox.main(argv)
    print(rc, err.getvalue().strip())
]]):format(string.format("%q", dir))
  -- The tool loads what it wrote with the jbx under test.
  local out, err, c = H.run("JBX_EXE=" .. H.shell_quote(H.jbx_exe()) .. " /usr/bin/python3 -", script)
  eq(c, 0, "the Python side failed: " .. err)
  local lines = {}
  for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
  eq(lines[1], "0 ")
  local mine, want = checkpoint.load(dir .. "/v.safetensors"), checkpoint.load(DIR .. "vqvae.safetensors")
  for name, t in pairs(want.tensors) do eq(H.max_abs_diff(mine.tensors[name], t), 0, name) end
  eq(mine.metadata.jukebox, want.metadata.jukebox)
  eq(lines[2], "1 convert_jukebox: the checkpoint has no hps for heads, attn_order, blocks: give them with "
    .. "--set KEY=VALUE (or --preset)")
  eq(lines[3], "1 convert_jukebox: unmapped keys (our model has no such tensor): encoders.0.extra")
  os.execute("rm -rf " .. H.shell_quote(dir))
end

return T
