-- jukebox.sampler: the KV-cached forward in C against Prior:forward (the training path)
-- for every attention type alone (0, 1, 2, 3), attn_order 2 mixing them, a labelled
-- prior (start and timing from labels), an upsampler (x_cond from the level above) and an
-- untied, res-scaled upsampler (no second x_cond): token by token (s:step) and primed in
-- chunks (s:prime); a seed's codes twice and on 1 and 2 threads; top_k = 1 and a tiny
-- top_p follow the argmax; the errors a user sees; Ctrl-C stops a long s:sample.
local H = require "helpers"
local P = require "jukebox.prior"
local sampler = require "jukebox.sampler"
local eq, yes = H.assert_eq, H.assert_true

local TOL = 1e-5 -- max |cached - Prior:forward| relative to the logits' scale

-- max |a - b| / max |b|
local function rel(a, b) return (a - b):abs():max():item() / math.max(b:abs():max():item(), 1e-30) end

-- int32 tensors a and b hold the same codes
local function same(jbx, a, b)
  return H.max_abs_diff(jbx.tensor(a, { dtype = "float32" }), jbx.tensor(b, { dtype = "float32" })) == 0
end

local codes_of = H.random_codes

-- Larger weights than the defaults (init_scale 8), so attention visibly shapes the logits.
local function small(preset, over)
  local hp = { bins = 13, n_ctx = 24, blocks = 3, width = 16, depth = 3, heads = 2, init_scale = 8,
               cond_width = 4, cond_depth = 1, cond_down_t = 1 }
  for k, v in pairs(over or {}) do hp[k] = v end
  return P.new(preset, hp)
end

-- Logits of every position fed one token at a time, [B, T, bins].
local function stepped(jbx, m, batch, x_cond, y_cond)
  local codes = batch.codes
  local B, T = codes:shape()[1], codes:shape()[2]
  local s = sampler.new(m, { batch = B, chunk_size = 1 })
  s:set_conditioning(x_cond, y_cond)
  local rows = {}
  for t = 1, T do
    rows[t] = s:step(codes:narrow(2, t, 1):contiguous())
    eq(s.position, t, "position after a step")
  end
  return jbx.cat(rows, 2)
end

-- Cached logits (stepped, and primed in chunks of 5 over two calls) against Prior:forward.
local function check_prior(jbx, m, batch, what)
  local ref = m:forward(batch).logits
  local T = batch.codes:shape()[2]
  local x_cond, y_cond = sampler.conditioning(m, batch, T)
  local e1 = rel(stepped(jbx, m, batch, x_cond, y_cond), ref)
  yes(e1 <= TOL, ("%s: stepped logits differ from Prior:forward by %g"):format(what, e1))
  local s = sampler.new(m, { batch = batch.codes:shape()[1], chunk_size = 5 })
  s:set_conditioning(x_cond, y_cond)
  local a = s:prime(batch.codes:narrow(2, 1, 7):contiguous())
  local b = s:prime(batch.codes:narrow(2, 8, T - 7):contiguous())
  local e2 = rel(jbx.cat({ a, b }, 2), ref)
  yes(e2 <= TOL, ("%s: primed logits differ from Prior:forward by %g"):format(what, e2))
  eq(s.position, T)
  return math.max(e1, e2)
end

-- Every layer of m uses attention type f.
local function set_func(m, f)
  for _, l in ipairs(m.prior.transformer._attn_mods.items) do
    l.attn_func = f
    l.attn.attn_func = f
  end
end

return {
  ["every attention type alone: cached logits equal Prior:forward's"] = function(jbx)
    for f = 0, 3 do
      local m = small(nil, { attn_order = 0 })
      set_func(m, f)
      check_prior(jbx, m, { codes = codes_of(jbx, 2, 24, 13, f + 1) }, "attn_func " .. f)
    end
  end,

  ["attn_order 2 (row, column, previous block), a labelled prior, upsamplers"] = function(jbx)
    check_prior(jbx, small("tiny_prior", { depth = 6 }), { codes = codes_of(jbx, 2, 24, 13, 1) }, "tiny_prior")
    local lab = small("tiny_labelled_prior", { y_bins = { 4, 4 }, t_bins = 8, min_duration = 1 })
    local labels = jbx.from_ints({ 44100 * 30, 44100 * 2, 44100, 2, 1, 44100 * 90, 0, 44100, 3, -1 }, { 2, 5 })
    check_prior(jbx, lab, { codes = codes_of(jbx, 2, 24, 13, 2), labels = labels }, "labelled")
    local up = small("tiny_upsampler")
    check_prior(jbx, up, { codes = codes_of(jbx, 2, 24, 13, 3), upper = codes_of(jbx, 2, 12, 13, 4) }, "upsampler")
    local untied = small("tiny_upsampler", { merged_decoder = true, res_scale = true })
    check_prior(jbx, untied, { codes = codes_of(jbx, 1, 24, 13, 5), upper = codes_of(jbx, 1, 12, 13, 6) },
      "untied upsampler with res_scale")
  end,

  ["a seed gives the same codes twice and on 1 and 2 threads; top_k 1 and tiny top_p are argmax"] = function(jbx)
    local m = small("tiny_prior", { init_scale = 2 })
    local threads = jbx.num_threads()
    local function run(seed, opts)
      local s = sampler.new(m, { batch = 3, seed = seed, chunk_size = 4 })
      s:prime(codes_of(jbx, 3, 5, 13, 7))
      local c = s:sample(19, opts)
      eq(s.position, 24)
      return c
    end
    jbx.set_threads(1)
    local a = run(5)
    jbx.set_threads(2)
    local b, c, d = run(5), run(5), run(6)
    jbx.set_threads(threads)
    yes(same(jbx, a, b), "1 and 2 threads")
    yes(same(jbx, b, c), "twice")
    yes(not same(jbx, b, d), "another seed")
    eq(b:shape()[1] .. "x" .. b:shape()[2], "3x19")
    -- greedy: each code is the argmax of the logits a stepped twin gives at its position
    local g = run(1, { top_k = 1, temp = 0.5 })
    yes(same(jbx, g, run(2, { top_p = 1e-9 })), "top_p tiny = top_k 1")
    local twin = sampler.new(m, { batch = 3 })
    twin:prime(codes_of(jbx, 3, 5, 13, 7))
    for t = 1, 19 do
      local col = g:narrow(2, t, 1):contiguous()
      local lg = twin:step(col)
      yes(same(jbx, lg:argmax(3):view({ 3, 1 }), col), "argmax at " .. t)
    end
    -- want_logits false: prime returns nothing; reset(seed) replays a seed
    local q = sampler.new(m, { batch = 3, seed = 5, chunk_size = 4, want_logits = false })
    eq(q:prime(codes_of(jbx, 3, 5, 13, 7)), nil, "no logits")
    eq(q.position, 5)
    yes(same(jbx, q:sample(19), b), "want_logits does not change the codes")
    q:reset(5)
    q:prime(codes_of(jbx, 3, 5, 13, 7))
    yes(same(jbx, q:sample(19), b), "reset(seed) replays the seed")
    -- top_k 2: only the two best codes ever come out
    local s = sampler.new(m, { batch = 1, seed = 3, top_k = 2 })
    local t2 = sampler.new(m, { batch = 1 })
    s:step(jbx.from_ints({ 0 }, { 1, 1 }))
    t2:step(jbx.from_ints({ 0 }, { 1, 1 }))
    local lg = t2:step(jbx.from_ints({ 0 }, { 1, 1 })) -- position 1's logits (its token does not matter)
    local first = s:sample(1)
    local order = lg:view({ 13 }):totable()
    local best = {}
    for j = 1, 13 do best[j] = j - 1 end
    table.sort(best, function(x, y) return order[x + 1] > order[y + 1] end)
    yes(first:item() == best[1] or first:item() == best[2], "top_k 2 draws one of the two best")
  end,

  ["errors: filters, temperature, codes, batch, n_ctx, conditioning"] = function(jbx)
    local m = small("tiny_prior")
    H.raises("sampler: top_k (3) and top_p (0.5) cannot both be set", sampler.new, m, { top_k = 3, top_p = 0.5 })
    local s = sampler.new(m, { batch = 2 })
    H.raises("sampler: top_k (3) and top_p (0.5) cannot both be set", function() return s:sample(2, { top_k = 3, top_p = 0.5 }) end)
    H.raises("sampler: temp must be > 0, got 0 (for greedy decoding use top_k = 1)", function() return s:sample(2, { temp = 0 }) end)
    H.raises("sampler:sample: unknown option 'topk' (known: temp, top_k, top_p)", function() return s:sample(2, { topk = 1 }) end)
    H.raises("sampler.new: unknown option 'batchsize'", sampler.new, m, { batchsize = 2 })
    H.raises("sampler: expected a jukebox.prior Prior module", sampler.new, {}, {})
    H.raises("sampler: code 13 at [2, 3] is out of range [0, 13) (bins)",
      function() return s:prime(jbx.from_ints({ 0, 1, 2, 3, 4, 13 }, { 2, 3 })) end)
    eq(s.position, 0, "a bad call changes nothing")
    H.raises("sampler: codes are int32 [3, 2], expected int32 [2, n] with n >= 1",
      function() return s:prime(codes_of(jbx, 3, 2, 13, 1)) end)
    H.raises("sampler:prime: codes must be an int32 tensor [2, t0], got float32 [2, 2]",
      function() return s:prime(jbx.zeros({ 2, 2 })) end)
    H.raises("sampler:step: codes must be an int32 tensor [2, 1], got int32 [2, 2]",
      function() return s:step(codes_of(jbx, 2, 2, 13, 1)) end)
    s:prime(codes_of(jbx, 2, 20, 13, 1))
    H.raises("sampler: positions 20 to 24 exceed n_ctx 24 (reset for a new window)", function() return s:sample(5) end)
    eq(s:sample(4):shape()[2], 4)
    s:reset()
    eq(s.position, 0, "reset")
    H.raises("sampler:sample: n must be an integer >= 1, got 0", function() return s:sample(0) end)
    local up = small("tiny_upsampler")
    local su = sampler.new(up, { batch = 1 })
    H.raises("sampler: this prior is conditioned per position: set_conditioning with x_cond [1, T, 16] first",
      function() return su:sample(1) end)
    H.raises("sampler: x_cond is float32 [2, 24, 16], expected float32 [1, T, 16]",
      function() return su:set_conditioning(jbx.zeros({ 2, 24, 16 })) end)
    local lab = small("tiny_labelled_prior", { y_bins = { 4, 4 }, t_bins = 8, min_duration = 1 })
    local sl = sampler.new(lab, { batch = 1 })
    sl:set_conditioning(jbx.zeros({ 1, 24, 16 }))
    H.raises("sampler: this prior starts from its labels: set_conditioning with y_cond [1, 1, 16] first",
      function() return sl:sample(1) end)
    H.raises("sampler: layer 1: attn_func 7 (prime, lyrics) has no KV cache yet", function()
      local mm = small(nil, { attn_order = 0 })
      set_func(mm, 7)
      return sampler.new(mm)
    end)
  end,

  ["Ctrl-C stops a long sample between tokens, the state consistent"] = function(jbx)
    if not os.execute("command -v timeout >/dev/null 2>&1") then return end
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
io.stdout:setvbuf("no")
package.path = "tests/lua/?.lua;" .. package.path
local P = require "jukebox.prior"
local sampler = require "jukebox.sampler"
local m = P.new(nil, { bins = 64, n_ctx = 100000, width = 32, depth = 4, heads = 1 })
local s = sampler.new(m, { batch = 1 })
print("ready")
local ok, e = pcall(function() return s:sample(100000) end)
print(ok, ((tostring(e):gsub("^.-interrupted", "interrupted")):match("^[^(]*"):gsub("%d+", "N")))
local p = s.partial
print(s.position > 0 and s.position < 100000, p ~= nil and p:shape()[2] == s.position)
]])
    f:close()
    local h = io.popen(("timeout -s INT 3 %s %s 2>&1"):format(H.shell_quote(H.jbx_exe()), H.shell_quote(script)))
    local out = h:read("a")
    h:close()
    os.remove(script)
    eq(out, "ready\nfalse\tinterrupted: sampler: stopped by Ctrl-C at position N \ntrue\ttrue\n")
  end,
}
