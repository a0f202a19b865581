-- jukebox.sample (windowed schedules, modes, resume), jukebox.sampler_ref (the slow
-- reference sampler against the prior's forward) and recipes/sample.lua (files, errors).
-- Tiny models are built here, not trained: a 2-level VQ-VAE (hops 8 and 32, 16 codes)
-- and priors of n_ctx 16, so every level longer than 16 tokens is windowed.
local H = require "helpers"
local yes = H.assert_true

-- assert_eq, lists compared element by element.
local function eq(a, b, msg)
  if type(a) == "table" and type(b) == "table" then
    local function str(t)
      local p = {}
      for i, v in ipairs(t) do p[i] = tostring(v) end
      return "{" .. table.concat(p, ", ") .. "}"
    end
    return H.assert_eq(str(a), str(b), msg)
  end
  return H.assert_eq(a, b, msg)
end

local T = {}

local fixture
local function setup(jbx)
  if fixture then return fixture end
  local vqvae = require "jukebox.vqvae"
  local prior = require "jukebox.prior"
  local codes = require "jukebox.codes"
  local checkpoint = require "jukebox.checkpoint"
  local fx = { root = os.tmpname() .. "_sample" }
  jbx.core.mkdir_p(fx.root)
  fx.vq = vqvae.new("tiny", { downs_t = { 3, 2 } })
  fx.vq:eval()
  fx.fp = codes.fingerprint(fx.vq)
  local base = { bins = 16, n_ctx = 16, width = 16, depth = 2, heads = 1, attn_order = 2, blocks = 4 }
  local function P(over, info)
    local hp = {}
    for k, v in pairs(base) do hp[k] = v end
    for k, v in pairs(over) do hp[k] = v end
    local p = prior.new(nil, hp)
    p.data_info = info
    p:eval()
    return p
  end
  fx.top = P({ seed = 1 }, { level = 2, fingerprint = fx.fp })
  fx.up = P({ seed = 2, x_cond = true, cond_bins = 16, cond_down_t = 2, cond_stride_t = 2, cond_width = 8,
    cond_depth = 1 }, { level = 1, fingerprint = fx.fp })
  fx.labelled = P({ seed = 3, labels = "small_labelled", y_bins = { 4, 4 }, t_bins = 8, max_bow_genre_size = 1,
    min_duration = 0.05, max_duration = 10.0, sr = 22050 }, { level = 2, fingerprint = fx.fp })
  fx.labelled.label_lists = { artists = { "unknown", "wesnoth" }, genres = { "unknown", "orchestral" } }
  fx.P = P
  -- On disk, for the recipe.
  local mk = require "jukebox.models.vqvae"
  local pk = require "jukebox.models.prior"
  fx.vq_path = fx.root .. "/vq.safetensors"
  checkpoint.save(fx.vq_path, { params = mk.tensors(fx.vq), meta = mk.meta(fx.vq) })
  fx.top_path, fx.up_path = fx.root .. "/top.safetensors", fx.root .. "/up.safetensors"
  checkpoint.save(fx.top_path, { params = pk.tensors(fx.top), meta = pk.meta(fx.top) })
  checkpoint.save(fx.up_path, { params = pk.tensors(fx.up), meta = pk.meta(fx.up) })
  fx.n = 0
  fixture = fx
  return fx
end

local function out_dir(fx, name)
  fx.n = fx.n + 1
  return ("%s/%s_%d"):format(fx.root, name, fx.n)
end

-- A run of both levels: 0.1 s = 68 top tokens (windows of 16, hop 2) and 272 bottom
-- tokens (hop 8), 3 samples in batches of 2.
local function run(jbx, fx, over)
  local o = { vqvae = fx.vq, priors = { [2] = fx.top, [1] = fx.up }, seconds = 0.1, n_samples = 3, batch = 2,
    out = out_dir(fx, "run"), quiet = true, progress = false, plots = false,
    prompt = "data/music/wesnoth_love_theme_00.flac", prompt_seconds = 0.03 }
  for k, v in pairs(over or {}) do o[k] = v end
  return require("jukebox.sample").run(o), o.out
end

local function same(a, b, msg)
  eq(H.shape_of(a), H.shape_of(b), msg)
  yes(H.max_abs_diff(a:float(), b:float()) == 0, msg .. ": codes differ")
end

-- ------------------------------------------------------------------ windows

function T.get_starts_as_the_reference()
  local S = require "jukebox.sample"
  -- range(0, total - n_ctx + hop, hop), the last start snapped to total - n_ctx.
  eq(S.get_starts(16, 16, 8), { 0 })
  eq(S.get_starts(20, 16, 8), { 0, 4 })
  eq(S.get_starts(40, 16, 8), { 0, 8, 16, 24 })
  eq(S.get_starts(41, 16, 8), { 0, 8, 16, 24, 25 })
  eq(S.get_starts(68, 16, 2)[1], 0)
  eq(#S.get_starts(68, 16, 2), 27)
  eq(S.get_starts(68, 16, 2)[27], 52)
  -- The top level of the reference: 8192 tokens of context, hop 1024.
  local st = S.get_starts(3 * 8192, 8192, 1024)
  eq(#st, 17)
  eq(st[2] - st[1], 1024)
  eq(S.default_hop_fraction(3), { 0.5, 0.5, 0.125 })
  -- Every window, level and batch group draws from its own generator.
  local seen = {}
  for l = 1, 3 do
    for w = 1, 20 do
      for g = 1, 3 do
        local s = S.window_seed(0, l, w, g)
        yes(not seen[s], "seeds repeat")
        seen[s] = true
      end
    end
  end
  yes(S.window_seed(0, 1, 1, 1) ~= S.window_seed(1, 1, 1, 1), "the run's seed changes every window's")
end

function T.plan_covers_every_token_once()
  local S = require "jukebox.sample"
  for _, c in ipairs({ { 68, 16, 2, 0 }, { 68, 16, 8, 0 }, { 41, 16, 8, 0 }, { 41, 16, 8, 5 }, { 41, 16, 8, 30 },
                       { 10, 16, 8, 0 }, { 10, 16, 8, 3 }, { 16, 16, 4, 0 } }) do
    local total, n_ctx, hop, have = table.unpack(c)
    local w = S.plan(total, n_ctx, hop, have)
    local at = have
    for _, x in ipairs(w) do
      eq(x.start + x.primed, at, "window primes everything already there")
      yes(x.primed >= 0 and x.new > 0 and x.stop - x.start <= n_ctx, "window fits n_ctx")
      eq(x.stop, at + x.new)
      at = x.stop
    end
    eq(at, total, ("plan %d/%d/%d/%d ends at total"):format(total, n_ctx, hop, have))
  end
  -- A level shorter than n_ctx: one partial window; a done level: none.
  eq(#S.plan(10, 16, 8, 0), 1)
  eq(#S.plan(10, 16, 8, 10), 0)
  -- Window indices count the done windows too (the seeds depend on them).
  local w = S.plan(40, 16, 8, 24)
  eq(w[1].index, 3)
  H.assert_error(function() S.plan(40, 16, 0, 0) end, "hop")
end

-- ------------------------------------------------------------------ sampler_ref

-- A sampler (the interface of jukebox.sampler) against the prior's full forward: prime's
-- and step's logits (the forward at the fed positions), top_k 1 = the argmax, the seed
-- decides the draws.
local function check_sampler(jbx, fx, R, name)
  local p = fx.up
  local codes = jbx.from_ints({ { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0 },
                                { 0, 15, 1, 14, 2, 13, 3, 12, 4, 11, 5, 10, 6, 9, 7, 8 } })
  local upper = jbx.from_ints({ { 3, 1, 4, 1 }, { 5, 9, 2, 6 } })
  local full = jbx.no_grad(function() return p:forward({ codes = codes, upper = upper }).logits end)
  local xc, yc = jbx.no_grad(function() return p:conditioning({ upper = upper }, 16) end)
  local s = R.new(p, { batch = 2 })
  s:set_conditioning(xc, yc)
  -- prime 5 tokens (not a multiple of block_ctx 4): their logits = forward positions 1..5
  local lg = s:prime(codes:narrow(2, 1, 5):contiguous())
  eq(s.position, 5)
  H.assert_close(lg, full:narrow(2, 1, 5), 1e-4, name .. ": prime")
  local st = s:step(codes:narrow(2, 6, 1):contiguous())
  H.assert_close(st, full:narrow(2, 6, 1), 1e-4, name .. ": step")
  -- sample draws from the same distributions: with top_k = 1 it is the argmax.
  local new = s:sample(3, { top_k = 1 })
  eq(s.position, 9)
  H.assert_shape(new, { 2, 3 })
  local s2 = R.new(p, { batch = 2 })
  s2:set_conditioning(xc, yc)
  s2:prime(codes:narrow(2, 1, 6):contiguous())
  local lg2 = s2:step(new:narrow(2, 1, 1):contiguous())
  yes(lg2 ~= nil)
  local am = full:narrow(2, 7, 1):reshape({ 2, 16 }):argmax(2):reshape({ -1 }):totable()
  eq(new:narrow(2, 1, 1):reshape({ -1 }):totable(), am, name .. ": top_k 1 draws the argmax")
  -- The seed decides the draws.
  local function draws(seed)
    local r = R.new(p, { batch = 2, seed = seed })
    r:set_conditioning(xc, yc)
    return r:sample(16):reshape({ -1 }):totable()
  end
  eq(draws(5), draws(5))
  yes(H.max_abs_diff(jbx.tensor(draws(5)), jbx.tensor(draws(6))) > 0, name .. ": another seed, other codes")
  return s
end

function T.sampler_ref_matches_the_forward()
  local jbx = require "jukebox"
  local fx = setup(jbx)
  local R = require "jukebox.sampler_ref"
  local s = check_sampler(jbx, fx, R, "sampler_ref")
  local p = fx.up
  H.assert_error(function() R.new(p, { top_k = 2, top_p = 0.9 }) end, "cannot both be set")
  H.assert_error(function() s:sample(8) end, "pass n_ctx")
  H.assert_error(function() R.new(p, { temp = 0 }) end, "temp")
  H.assert_error(function() R.new(fx.up, {}):set_conditioning(nil, nil) end, "needs x_cond")
  -- The KV-cache sampler, once it is built, passes the same checks.
  local ok, fast = pcall(require, "jukebox.sampler")
  if ok then check_sampler(jbx, fx, fast, "jukebox.sampler") end
end

function T.sampler_ref_filters()
  local R = require "jukebox.sampler_ref"
  local row = { 1, 5, 3, 4, 2 }
  R.filter(row, 2, 0)
  eq(row, { -math.huge, 5, -math.huge, 4, -math.huge })
  -- top-p: probabilities of {0, log 2, log 5} are 1/8, 2/8, 5/8: p = 0.6 keeps only the
  -- first (0.625 > 0.6 before the second); p = 0.7 keeps two.
  local a = { 0, math.log(2), math.log(5) }
  R.filter(a, 0, 0.6)
  eq(a[1], -math.huge)
  eq(a[2], -math.huge)
  local b = { 0, math.log(2), math.log(5) }
  R.filter(b, 0, 0.7)
  eq(b[1], -math.huge)
  yes(b[2] > -math.huge and b[3] > -math.huge)
  eq(R.draw({ 0, -math.huge, 0 }, 0.75), 2)
  eq(R.draw({ 0, -math.huge, 0 }, 0.25), 0)
end

-- ------------------------------------------------------------------ schedules

-- A windowed run longer than n_ctx: every window is primed with exactly the codes the
-- level holds at its positions, the upsampler's slice is the level above's
-- [start / 4, stop / 4), and the labels' offset is start * hop.
function T.windows_prime_with_the_codes_they_overlap()
  local jbx = require "jukebox"
  local fx = setup(jbx)
  local R = require "jukebox.sampler_ref"
  local log = {}
  local function recording(prior, o)
    local s = R.new(prior, o)
    local prime = s.prime
    function s:prime(c)
      log[#log + 1] = { prior = prior, primed = c }
      return prime(self, c)
    end
    return s
  end
  local up_log, y_log = {}, {}
  local cond = fx.up.conditioning
  fx.up.conditioning = function(self, batch, t)
    up_log[#up_log + 1] = batch.upper
    return cond(self, batch, t)
  end
  local lcond = fx.labelled.conditioning
  fx.labelled.conditioning = function(self, batch, t)
    y_log[#y_log + 1] = batch.labels
    return lcond(self, batch, t)
  end
  local ok, r = pcall(run, jbx, fx, { priors = { [2] = fx.labelled, [1] = fx.up }, sampler = recording,
    n_samples = 2, batch = 2, artist = "wesnoth", genre = "orchestral", total_seconds = 0.5 })
  fx.up.conditioning, fx.labelled.conditioning = cond, lcond
  if not ok then error(r, 0) end
  local S = require "jukebox.sample"
  local z2, z1 = r.zs[2], r.zs[1]
  eq(H.shape_of(z2), "[2, 68]")
  eq(H.shape_of(z1), "[2, 272]")
  -- Top: windows every 2 tokens (0.125 x 16); bottom: every 8.
  local w2, w1 = S.plan(68, 16, 2, 0), S.plan(272, 16, 8, 0)
  eq(#log, (#w2 - 1) + (#w1 - 1), "every window but the first is primed")
  -- The primed codes of each window equal the final codes at its positions.
  local k2, k1 = 0, 0
  for _, e in ipairs(log) do
    local is_top = e.prior == fx.labelled
    local ws, z
    if is_top then k2 = k2 + 1; ws, z = w2, z2 else k1 = k1 + 1; ws, z = w1, z1 end
    local w = ws[(is_top and k2 or k1) + 1]
    eq(e.primed:shape()[2], w.primed)
    same(e.primed, z:narrow(2, w.start + 1, w.primed), ("level %d window %d primed context"):format(
      is_top and 2 or 1, w.index))
  end
  -- Upper slices and label offsets.
  eq(#up_log, #w1)
  for k, w in ipairs(w1) do same(up_log[k], z2:narrow(2, w.start // 4 + 1, 4), "upper slice " .. k) end
  eq(#y_log, #w2)
  for k, w in ipairs(w2) do
    eq(y_log[k][1][2], w.start * 32, "offset of window " .. k)
    eq(y_log[k][1][3], 16 * 32, "sample_length of window " .. k)
    eq(y_log[k][1][1], 11025, "total_length (0.5 s)")
    eq(y_log[k][1][4], 1, "artist id")
  end
end

function T.same_seed_same_codes()
  local jbx = require "jukebox"
  local fx = setup(jbx)
  local a = run(jbx, fx, { seed = 7 })
  local b = run(jbx, fx, { seed = 7 })
  local c = run(jbx, fx, { seed = 8 })
  same(a.zs[2], b.zs[2], "top")
  same(a.zs[1], b.zs[1], "bottom")
  yes(H.max_abs_diff(a.zs[1]:float(), c.zs[1]:float()) > 0, "another seed gives other codes")
end

-- A run that dies in the middle of a window (as under kill -9: the progress file holds
-- the codes up to the last finished window) and resumes gives the uninterrupted codes.
function T.resume_gives_the_uninterrupted_codes()
  local jbx = require "jukebox"
  local fx = setup(jbx)
  local R = require "jukebox.sampler_ref"
  local whole = run(jbx, fx, { seed = 3 })
  for _, die_after in ipairs({ 20, 95 }) do -- in the top level; in the bottom level
    local calls, kill = 0, true
    local function dying(prior, o)
      local s = R.new(prior, o)
      local sample = s.sample
      function s:sample(n, oo)
        calls = calls + 1
        if kill and calls > die_after then error("killed", 0) end
        return sample(self, n, oo)
      end
      return s
    end
    local dir = out_dir(fx, "resume")
    local ok, err = pcall(run, jbx, fx, { seed = 3, out = dir, sampler = dying })
    yes(not ok and err == "killed", "the run dies: " .. tostring(err))
    local S = require "jukebox.sample"
    local part = S.load_codes(dir .. "/progress.safetensors", 2)
    yes(part[2]:shape()[2] + part[1]:shape()[2] < 68 + 272, "stopped part-way")
    H.assert_error(function() run(jbx, fx, { seed = 3, out = dir }) end, "holds a run already")
    kill = false
    H.assert_error(function() run(jbx, fx, { seed = 4, out = dir, resume = true, sampler = dying }) end,
      "settings differ from the run in '" .. dir .. "' (seed)")
    H.assert_error(function() run(jbx, fx, { seed = 3, out = dir, resume = true }) end, "(sampler)")
    local r = run(jbx, fx, { seed = 3, out = dir, resume = true, sampler = dying })
    same(r.zs[2], whole.zs[2], "resumed top level")
    same(r.zs[1], whole.zs[1], "resumed bottom level")
  end
end

function T.each_mode_writes_audio()
  local jbx = require "jukebox"
  local fx = setup(jbx)
  local function flac_ok(dir, level, samples)
    for n = 0, samples - 1 do
      local p = ("%s/level_%d/sample_%d.flac"):format(dir, level, n)
      eq(jbx.core.path_kind(p), "file", p)
      local info = jbx.audio.info(p)
      yes(math.abs(info.frames - 2176) <= 0, ("%s: %d frames, expected 2176"):format(p, info.frames))
    end
  end
  local a, da = run(jbx, fx, { mode = "ancestral", plots = true })
  flac_ok(da, 2, 3)
  flac_ok(da, 1, 3)
  for _, f in ipairs({ "codes.png", "spectrograms.png", "codes.safetensors" }) do
    eq(jbx.core.path_kind(da .. "/level_1/" .. f), "file", f)
  end
  eq(jbx.core.path_kind(da .. "/settings.json"), "file")
  -- primed: the prompt's codes (0.03 s = 640 samples: 20 top tokens, 80 bottom) kept.
  local p, dp = run(jbx, fx, { mode = "primed" })
  flac_ok(dp, 1, 3)
  eq(jbx.core.path_kind(dp .. "/prompt.flac"), "file")
  local codec = require "jukebox.codec"
  local x = jbx.audio.load("data/music/wesnoth_love_theme_00.flac", { mono = true, rate = 22050, seconds = 0.03 })
  local pc = codec.encode(fx.vq, x:reshape({ -1 }):narrow(1, 1, 640))
  for n = 1, 3 do
    same(p.zs[2]:narrow(1, n, 1):narrow(2, 1, 20), pc[2]:narrow(1, 1, 20):reshape({ 1, 20 }), "prompt top")
    same(p.zs[1]:narrow(1, n, 1):narrow(2, 1, 80), pc[1]:narrow(1, 1, 80):reshape({ 1, 80 }), "prompt bottom")
  end
  -- continue: the codes of a shorter run, extended; what they held stays.
  local s, ds = run(jbx, fx, { mode = "ancestral", seconds = 0.05 })
  local c, dc = run(jbx, fx, { mode = "continue", codes = ds .. "/codes.safetensors" })
  flac_ok(dc, 1, 3)
  same(c.zs[2]:narrow(2, 1, 34), s.zs[2], "continue keeps the top codes")
  same(c.zs[1]:narrow(2, 1, 136), s.zs[1], "continue keeps the bottom codes")
  -- upsample: the top codes of a run, the bottom level sampled anew.
  local u, du = run(jbx, fx, { mode = "upsample", codes = da .. "/level_2/codes.safetensors", seed = 11 })
  flac_ok(du, 1, 3)
  same(u.zs[2], a.zs[2], "upsample keeps the top codes")
  eq(jbx.core.path_kind(du .. "/level_2"), nil, "the top level is not sampled again")
end

-- ------------------------------------------------------------------ errors

function T.bad_input_errors()
  local jbx = require "jukebox"
  local fx = setup(jbx)
  -- A prior of another VQ-VAE: other bins, or the same bins and another fingerprint.
  local other = fx.P({ bins = 8, seed = 5 }, { level = 2, fingerprint = fx.fp })
  H.assert_error(function() run(jbx, fx, { priors = { [2] = other } }) end,
    "has 8 bins but the VQ-VAE has 16 codes: it was trained on another VQ-VAE")
  local foreign = fx.P({ seed = 5 }, { level = 2, fingerprint = "vqvae-0123456789abcdef" })
  H.assert_error(function() run(jbx, fx, { priors = { [2] = foreign } }) end,
    "was trained on codes of vqvae-0123456789abcdef; --vqvae is vqvae-")
  local plain = fx.P({ seed = 5 }, { level = 1, fingerprint = fx.fp })
  H.assert_error(function() run(jbx, fx, { priors = { [2] = fx.top, [1] = plain } }) end, "must be an upsampler")
  H.assert_error(function() run(jbx, fx, { priors = { [1] = fx.top } }) end, "models level 2, not level 1")
  H.assert_error(function() run(jbx, fx, { priors = { [1] = fx.up } }) end, "needs a prior for the top level 2")
  -- A prompt shorter than one top-level token (32 samples = 1.45 ms).
  H.assert_error(function() run(jbx, fx, { mode = "primed", prompt_seconds = 0.001 }) end,
    "shorter than one top-level token (32 samples")
  H.assert_error(function() run(jbx, fx, { mode = "primed", prompt_seconds = 0.2 }) end,
    "must be shorter than --seconds")
  H.assert_error(function() run(jbx, fx, { top_k = 5, top_p = 0.9 }) end, "cannot both be set")
  H.assert_error(function() run(jbx, fx, { mode = "continue" }) end, "needs --codes")
  H.assert_error(function() run(jbx, fx, { temp = { 1, 2, 3 } }) end, "one per level")
  -- An unknown artist or genre is a warning and id 0 (conditioners.labels' documented
  -- behaviour, as training labels unknown names), not an error.
  local warned = {}
  local r = run(jbx, fx, { priors = { [2] = fx.labelled }, artist = "Nobody", genre = "orchestral",
    seconds = 0.02, total_seconds = 0.5, warn = function(m) warned[#warned + 1] = m end })
  eq(#warned, 1)
  yes(warned[1]:find("artist 'Nobody'", 1, true) and warned[1]:find("using id 0", 1, true), warned[1])
  eq(H.shape_of(r.zs[2]), "[3, 13]")
end

-- ------------------------------------------------------------------ the recipe

local function expect_error(args, text)
  local _, e, c = H.recipe("sample", args)
  eq(c, 1, "exit code (stderr: " .. e .. ")")
  local line = e:match("^(sample: [^\n]*)\n$")
  yes(line, "one line naming the recipe: " .. e)
  yes(line:find(text, 1, true), ("expected '%s' in: %s"):format(text, line))
end

function T.recipe_runs_and_errors()
  local jbx = require "jukebox"
  local fx = setup(jbx)
  local o, e, c = H.recipe("sample", { "--help" })
  eq(c, 0)
  yes(o:find("--prompt-seconds", 1, true) and o:find("--top-p", 1, true), o)
  local dir = out_dir(fx, "recipe")
  o, e, c = H.recipe("sample", { "--vqvae=" .. fx.vq_path, "--prior=2:" .. fx.top_path, "--prior=" .. fx.up_path,
    "--seconds=0.05", "--n-samples=2", "--temp=1,0.9", "--out=" .. dir, "--no-plots" })
  eq(c, 0, "exit code: " .. e)
  yes(o:find("level_1/sample_*.flac", 1, true), o)
  eq(jbx.core.path_kind(dir .. "/level_1/sample_1.flac"), "file")
  eq(jbx.core.path_kind(dir .. "/level_2/sample_1.flac"), "file")
  local settings = require("jukebox.json").read(dir .. "/settings.json").settings
  eq(settings.temp, { 1, 0.9 })
  eq(settings.n_samples, 2)
  expect_error({ "--vqvae=" .. fx.vq_path, "--prior=2:" .. fx.top_path, "--top-k=3", "--top-p=0.5",
    "--out=" .. out_dir(fx, "e") }, "cannot both be set")
  -- A prior trained on another VQ-VAE.
  local vqvae = require "jukebox.vqvae"
  local checkpoint = require "jukebox.checkpoint"
  local mk = require "jukebox.models.vqvae"
  local vq2 = vqvae.new("tiny", { downs_t = { 3, 2 }, seed = 9 })
  local p2 = fx.root .. "/vq2.safetensors"
  checkpoint.save(p2, { params = mk.tensors(vq2), meta = mk.meta(vq2) })
  expect_error({ "--vqvae=" .. p2, "--prior=2:" .. fx.top_path, "--out=" .. out_dir(fx, "e") },
    "was trained on codes of " .. fx.fp)
  expect_error({ "--vqvae=" .. fx.vq_path, "--prior=2:" .. fx.top_path, "--mode=primed",
    "--prompt=data/music/wesnoth_love_theme_00.flac", "--prompt-seconds=0.001", "--out=" .. out_dir(fx, "e") },
    "shorter than one top-level token")
end

return T
