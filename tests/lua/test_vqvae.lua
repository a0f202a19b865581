-- The VQ-VAE modules on the tiny preset: shapes, names, losses, gradients, codebooks.
local vqvae = require "jukebox.vqvae"
local nn = require "jukebox.nn"
local losses = require "jukebox.losses"

local function expect_error(fn, part)
  local ok, err = pcall(fn)
  assert(not ok, "expected an error containing: " .. part)
  assert(tostring(err):find(part, 1, true), ("error '%s' lacks '%s'"):format(tostring(err), part))
end

local function audio(jbx, n, seed)
  return (jbx.randn({ 2, 1, n }, { seed = seed or 1 }) * 0.1):detach()
end

return {
  ["presets have the reference's hop lengths"] = function()
    assert(table.concat(vqvae.hop_lengths(vqvae.config("jukebox")), ",") == "8,32,128")
    assert(table.concat(vqvae.hop_lengths(vqvae.config("small")), ",") == "8,32,128")
    local hp = vqvae.config("jukebox")
    assert(hp.width == 32 and hp.depth == 4 and hp.emb_width == 64 and hp.l_bins == 2048)
    assert(hp.mu == 0.99 and hp.commit == 0.02 and hp.multispectral == 1 and hp.loss_fn == "lmix")
  end,

  ["unknown preset and hyperparameter are errors"] = function()
    expect_error(function() vqvae.config("huge") end, "vqvae: unknown preset 'huge' (known: jukebox, jukebox_44k, small, tiny)")
    expect_error(function() vqvae.config("tiny", { widht = 3 }) end, "vqvae: unknown hyperparameter 'widht'")
    expect_error(function() vqvae.config("tiny", { downs_t = { 1, 1, 1 } }) end, "downs_t has 3 entries, levels is 2")
  end,

  ["parameter names follow the reference state dict"] = function()
    local m = vqvae.new("jukebox")
    local names = {}
    for _, p in ipairs(m:named_parameters()) do names[p.name] = p.tensor:shape() end
    -- bottom level: width 64 (multiplier 2), first conv audio -> width, kernel 4
    local w = names["encoders.0.level_blocks.0.model.0.0.weight"]
    assert(w and w[1] == 64 and w[2] == 1 and w[3] == 4, "first encoder conv")
    assert(names["encoders.0.level_blocks.0.model.0.1.model.7.model.3.weight"], "depth 8 resnet at level 1")
    assert(names["decoders.2.out.weight"], "decoder out conv")
    assert(names["decoders.0.level_blocks.0.model.3.1.weight"][2] == 64, "last transposed conv to emb_width")
  end,

  ["forward gives per-level reconstructions, codes and a finite loss"] = function(jbx)
    local m = vqvae.new("tiny", { seed = 1 })
    local x = audio(jbx, 2048)
    local out = m:forward(x)
    assert(#out.levels == 2)
    for l, lv in ipairs(out.levels) do
      local s = lv.recon:shape()
      assert(s[1] == 2 and s[2] == 1 and s[3] == 2048, "recon shape")
      local c = lv.codes:shape()
      assert(c[1] == 2 and c[2] == 2048 // m.hop_lengths[l], "codes shape")
      for _, k in ipairs({ "recons_loss", "commit_loss", "multispectral_loss", "usage", "used_curr",
                           "entropy", "dk", "fit", "pn" }) do
        assert(type(lv.metrics[k]) == "number", "metric " .. k)
      end
    end
    local loss = out.loss:item()
    assert(loss == loss and loss > 0, "loss finite")
    out.loss:backward()
    for _, p in ipairs(m:named_parameters()) do assert(p.tensor.grad, "grad of " .. p.name) end
  end,

  ["spectral and log-mel terms join the loss when weighted"] = function(jbx)
    local x = audio(jbx, 2048, 4)
    local base = vqvae.new("tiny", { seed = 1 }):forward(x)
    assert(base.levels[1].metrics.mel_loss == nil and base.levels[1].metrics.spectral_loss == nil)
    local out = vqvae.new("tiny", { seed = 1, mel = 1, spectral = 1 }):forward(x)
    local m = out.levels[1].metrics
    assert(m.mel_loss > 0 and m.spectral_loss > 0, "terms logged")
    local extra = 0
    for _, lv in ipairs(out.levels) do extra = extra + lv.metrics.mel_loss + lv.metrics.spectral_loss end
    assert(math.abs(out.loss:item() - base.loss:item() - extra) <= 1e-3 * out.loss:item(), "terms added")
    out.loss:backward()
  end,

  ["input that is not [N, 1, T*hop] is an error"] = function(jbx)
    local m = vqvae.new("tiny")
    expect_error(function() m:forward(jbx.zeros({ 2, 2048 })) end, "vqvae: input [2, 2048] must be [batch, 1, length]")
    expect_error(function() m:forward(jbx.zeros({ 1, 1, 2047 })) end, "not a multiple of the top hop length 4")
  end,

  ["the loss falls over a few Adam steps on one batch"] = function(jbx)
    local optim = require "jukebox.optim"
    local m = vqvae.new("tiny", { seed = 2 })
    local opt = optim.adam(m:named_parameters(), { lr = 3e-3, warmup = 0 })
    local x = audio(jbx, 2048, 5)
    local first, last
    for i = 1, 15 do
      local out = m:forward(x)
      out.loss:backward()
      opt:step_update()
      opt:zero_grad()
      if i == 1 then first = out.loss:item() end
      last = out.loss:item()
    end
    assert(last < first, ("loss %g -> %g"):format(first, last))
  end,

  ["encode then decode round-trips shapes, and codes are in range"] = function(jbx)
    local m = vqvae.new("tiny", { seed = 3 })
    m:forward(audio(jbx, 2048)) -- initialises the codebooks from data
    m:eval()
    local codes = m:encode(audio(jbx, 2048, 9))
    for l, c in ipairs(codes) do
      local t = c:totable()
      for _, row in ipairs(t) do
        for _, v in ipairs(row) do assert(v >= 0 and v < m.hp.l_bins, "code range") end
      end
      local y = m:decode(c, l)
      assert(y:shape()[3] == 2048, "decoded length")
    end
  end,

  ["a residual block's gradient matches finite differences"] = function(jbx)
    -- Whole-module check: d sum(block(x) * g) / d x, numerically vs backward.
    local m = vqvae.new("tiny", { seed = 4 })
    local block = m.encoders.items[1].level_blocks.items[1]
    local x = jbx.randn({ 1, 1, 16 }, { seed = 6, requires_grad = true })
    local g = jbx.randn({ 1, 4, 8 }, { seed = 7 })
    local loss = (block:forward(x) * g):sum()
    loss:backward()
    local analytic = x.grad:totable()[1][1]
    local eps = 1e-2
    local base = x:detach():totable()[1][1]
    for i = 1, 16, 3 do
      local function f(delta)
        local v = {}
        for j = 1, 16 do v[j] = base[j] end
        v[i] = v[i] + delta
        return jbx.no_grad(function() return (block:forward(jbx.tensor({ { v } })) * g):sum():item() end)
      end
      local numeric = (f(eps) - f(-eps)) / (2 * eps)
      assert(math.abs(numeric - analytic[i]) <= 2e-2 * math.max(1, math.abs(numeric)),
        ("elem %d: numeric %g analytic %g"):format(i, numeric, analytic[i]))
    end
  end,

  ["spectral losses: zero for a perfect copy, one for silence"] = function(jbx)
    local x = audio(jbx, 4096, 8)
    local zero = jbx.zeros({ 2, 1, 4096 })
    local function near(t, v, tol) return math.abs(t:max():item() - v) <= tol and math.abs(t:min():item() - v) <= tol end
    assert(near(losses.spectral_convergence(x, x), 0, 1e-6), "SC(x, x) = 0")
    assert(near(losses.spectral_convergence(x, zero), 1, 1e-6), "SC(x, 0) = 1")
    assert(near(losses.spectral_convergence_db(x, zero), 0, 1e-4), "0 dB for silence")
    assert(near(losses.spectral_convergence(zero, x), 0, 0), "silent targets are masked out")
    assert(near(losses.multispectral(x, x), 0, 1e-6), "multispectral(x, x) = 0")
    assert(near(losses.log_magnitude(x, x), 0, 1e-6), "log-magnitude(x, x) = 0")
    local ms = losses.multispectral(x, zero)
    local expect = 0
    for _, r in ipairs(losses.multispec) do expect = expect + losses.spec(x, r):reshape({ 2, -1 }):norm(2) end
    assert((ms - expect / 3):abs():max():item() <= 1e-3 * ms:max():item(), "mean of the three resolutions")
    assert(losses.multiscale_mel(x, x):item() == 0, "mel(x, x) = 0")
  end,

  ["reconstruction losses match their definitions"] = function(jbx)
    local x = jbx.tensor({ { { 0, 0, 0, 0 } } })
    local y = jbx.tensor({ { { 1, -2, 0, 0 } } })
    local hp = { loss_fn = "l1", linf_k = 2, lmix_l1 = 0, lmix_l2 = 1, lmix_linf = 0.02 }
    assert(math.abs(losses.reconstruction(hp, x, y):item() - 0.75) < 1e-6)
    hp.loss_fn = "l2"
    assert(math.abs(losses.reconstruction(hp, x, y):item() - 1.25) < 1e-6)
    hp.loss_fn = "linf" -- mean of the top-2 squared errors: (4 + 1) / 2
    assert(math.abs(losses.reconstruction(hp, x, y):item() - 2.5) < 1e-6)
    hp.loss_fn = "lmix"
    assert(math.abs(losses.reconstruction(hp, x, y):item() - (1.25 + 0.02 * 2.5)) < 1e-6)
    hp.loss_fn = "l3"
    expect_error(function() losses.reconstruction(hp, x, y) end, "losses: unknown loss_fn 'l3'")
  end,
}
