-- Evaluates a prior checkpoint (recipes/train_prior.lua) on the held-out codes, the files
-- the trainer holds out: bits per token overall and by position within the context (a
-- table, printed, and a plot), the training curve of the checkpoint folder's log.csv, and
-- the attention map of one layer and head over the first positions of a held-out window.
--   build/jbx recipes/eval_prior.lua --ckpt=runs/prior/step_000300.safetensors --codes=runs/codes --out=runs/eval_prior
-- Writes OUT/metrics.json, OUT/bits_by_position.csv and PNGs: loss.png, bits_by_position.png,
-- attention_lL_hH.png. Layers and heads count from 0 (_attn_mods.<layer> in the state dict).
local jbx = require "jukebox"
local cli = require "jukebox.cli"
local json = require "jukebox.json"
local pe = require "jukebox.prior_eval"

local spec = {
  { "ckpt", nil, "prior checkpoint to evaluate", required = true },
  { "codes", "", "codes folder (default: the one the checkpoint was trained on)" },
  { "level", nil, "level of the codes (default: the one the prior was trained on; 0 = the top)", type = "number" },
  { "out", "runs/eval_prior", "output folder" },
  { "windows", 64, "at most this many held-out windows (n_ctx tokens each)" },
  { "buckets", 8, "position ranges in the table and plot" },
  { "layer", 0, "layer of the attention map (0 .. depth-1)" },
  { "head", 0, "head of the attention map (0 .. heads-1)" },
  { "positions", 256, "the attention map covers the first this many positions (at most n_ctx)" },
  { "window", 1, "held-out window of the attention map (1 = the first)" },
  { "plots", true, "write PNG plots (needs gnuplot)" },
  { "threads", 2, "threads for BLAS and OpenMP" },
}
local usage = "usage: jbx recipes/eval_prior.lua --ckpt=FILE [--codes=DIR] [--out=DIR] [--layer=L --head=H] [options]"

cli.run("eval_prior", spec, usage, function(opts)
  local core = jbx.core
  core.set_threads(opts.threads)
  local t0 = core.clock()
  local model, meta = pe.load(opts.ckpt)
  local codes = opts.codes
  if codes == "" then
    codes = type(meta.train) == "table" and meta.train.codes
    if type(codes) ~= "string" then error("the checkpoint records no codes folder: give --codes=DIR", 0) end
  end
  local level = opts.level and math.tointeger(opts.level)
  if opts.level and not level then error(("--level must be an integer, got %s"):format(tostring(opts.level)), 0) end
  for _, k in ipairs({ "windows", "buckets", "positions", "window" }) do
    if math.type(opts[k]) ~= "integer" or opts[k] < 1 then
      error(("--%s must be an integer >= 1, got %s"):format(k, tostring(opts[k])), 0)
    end
  end
  pe.check_layer(model, opts.layer, opts.head) -- before any work
  local ds, lvl = pe.heldout(model, codes, level)
  local hp = model.hp
  local r = pe.bits_by_position(model, codes, { level = lvl, windows = opts.windows, buckets = opts.buckets })
  if not r then error(("no held-out file of '%s' holds a window of %d tokens"):format(codes, hp.n_ctx), 0) end

  print(("prior %s (%s, step %s): width %d, depth %d, heads %d, n_ctx %d, attn_order %d"):format(opts.ckpt,
    hp.preset, tostring(meta.step), hp.width, hp.depth, hp.heads, hp.n_ctx, hp.attn_order))
  print(("held-out codes: '%s' level %d (hop %d), %d file(s); %d window(s) of %d tokens"):format(codes, lvl,
    ds.hop, #ds.files, r.windows, hp.n_ctx))
  print(("held-out bits per token: %.4f (unigram entropy of the held-out codes: %.4f bits)"):format(r.bits,
    r.entropy))
  print("")
  print(("%-13s %10s"):format("positions", "bits/token"))
  for _, b in ipairs(r.buckets) do print(("%5d .. %-5d %10.4f"):format(b.from, b.to, b.bits)) end

  core.mkdir_p(opts.out)
  local rows = { "position,bits" }
  for i, v in ipairs(r.per_position) do rows[#rows + 1] = ("%d,%.6g"):format(i - 1, v) end
  core.fsync_write(opts.out .. "/bits_by_position.csv", table.concat(rows, "\n") .. "\n")
  local batch = pe.heldout_batch(model, ds, opts.window)
  local a = pe.attention_map(model, batch, { layer = opts.layer, head = opts.head, positions = opts.positions })
  local outside = 0
  for i, s in ipairs(a.row_sums) do -- 1 but for the first block under the previous-block pattern (0)
    if not (a.attn_func == 3 and i <= a.block_ctx) then outside = math.max(outside, math.abs(1 - s)) end
  end
  print(("attention map: layer %d, head %d (%s), %d positions of held-out window %d"):format(a.layer, a.head,
    pe.pattern_names[a.attn_func], a.positions, opts.window))

  local log_path = (opts.ckpt:match("^(.*)/[^/]*$") or ".") .. "/log.csv"
  local log = pe.read_log(log_path)
  local plots = {}
  if opts.plots then
    if log then
      plots[#plots + 1] = pe.plot_loss(opts.out .. "/loss.png", { { name = "train (log.csv)", log = log } }, {
        heldout = { { name = ("held-out at step %s"):format(tostring(meta.step)), step = meta.step or 0, bits = r.bits } },
        lines = { { name = "unigram entropy (held-out)", bits = r.entropy } },
        title = "Bits per token: " .. opts.ckpt })
    end
    plots[#plots + 1] = pe.plot_positions(opts.out .. "/bits_by_position.png", { { name = "held-out", r = r } },
      { lines = { { name = "unigram entropy (held-out)", bits = r.entropy } } })
    plots[#plots + 1] = pe.plot_maps(opts.out .. ("/attention_l%d_h%d.png"):format(a.layer, a.head), { a },
      { columns = 1 })
  end
  local doc = {
    checkpoint = opts.ckpt, step = meta.step, hparams = hp, codes = codes, level = lvl, windows = r.windows,
    tokens = r.tokens, bits = r.bits, unigram_entropy = r.entropy, buckets = r.buckets,
    per_position = r.per_position, log = log and log_path or false,
    attention = { layer = a.layer, head = a.head, attn_func = a.attn_func, block_ctx = a.block_ctx,
      positions = a.positions, window = opts.window, max_row_sum_error = outside },
  }
  json.write(opts.out .. "/metrics.json", doc)
  if not log then print(("no training curve: %s"):format(select(2, pe.read_log(log_path)))) end
  print(("evaluated in %.1f s; metrics: %s"):format(core.clock() - t0, opts.out .. "/metrics.json"))
  for _, p in ipairs(plots) do print("plot: " .. p) end
end)
