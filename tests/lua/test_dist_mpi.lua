-- Data-parallel training under mpirun, against one process: run by its own ctest entry
-- (mpi_dist: `jbx tests/lua/run.lua test_dist_mpi`; the main runner leaves *_mpi.lua
-- files out). Two ranks of one thread with --batch=2 each must train what one process
-- with --batch=4 trains: every logged loss within 1e-5 relative, the final codebooks
-- within 1e-5, and the two ranks' models bit-identical; likewise a prior, and
-- sample.lua with its samples shared out over the ranks gives the same codes. Then the
-- failure paths: Ctrl-C on mpirun gives one checkpoint, a rank killed with SIGKILL
-- ends the job (non-zero, naming the rank) and --resume continues with the losses of an
-- uninterrupted run.
local H = require "helpers"

local REL = 1e-5
local MPIRUN = os.getenv("JBX_MPIRUN") or "mpirun"
local LAUNCH = ("OMP_NUM_THREADS=1 %s -np 2 --oversubscribe --allow-run-as-root "):format(MPIRUN)

-- The tiny VQ-VAE with more codes than it uses at first, so restarts happen.
local VQ_ARGS = { "--data=data", "--preset=tiny", "--sample_length=2048", "--l_bins=64", "--log_every=1",
                  "--threads=1", "--seed=3" }

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  return d
end

local function args_of(list, extra)
  local parts = {}
  for _, a in ipairs(list) do parts[#parts + 1] = H.shell_quote(a) end
  for _, a in ipairs(extra or {}) do parts[#parts + 1] = H.shell_quote(a) end
  return table.concat(parts, " ")
end

-- jbx SCRIPT args, one process or two ranks; returns stdout, stderr, exit code.
local function jbx_run(ranks, script, args)
  local exe = H.shell_quote(H.jbx_exe())
  return H.run(("%s%s %s %s"):format(ranks == 2 and LAUNCH or "OMP_NUM_THREADS=1 ", exe, script, args))
end

-- log.csv as {columns = {...}, rows = {[step] = {col = number}}}.
local function read_log(path)
  local text = assert(H.read_file(path), "no " .. path)
  local cols, rows = nil, {}
  for line in text:gmatch("[^\n]+") do
    local cells = {}
    for c in (line .. ","):gmatch("([^,]*),") do cells[#cells + 1] = c end
    if not cols then
      cols = cells
    else
      local r = {}
      for i, c in ipairs(cols) do r[c] = tonumber(cells[i]) end
      rows[r.step] = r
    end
  end
  return { columns = cols, rows = rows }
end

-- Every loss-like column (not time, lr, speeds) of every row of b matches a within rel;
-- returns the largest relative difference seen.
local function compare_logs(a, b, steps, what)
  local worst = 0
  for s = steps[1], steps[2] do
    local ra, rb = a.rows[s], b.rows[s]
    if not (ra and rb) then error(("%s: step %d missing (%s, %s)"):format(what, s, tostring(ra), tostring(rb)), 2) end
    for _, c in ipairs(a.columns) do
      if c ~= "time" and c ~= "tokens_per_s" and ra[c] then
        local x, y = ra[c], rb[c]
        local d = math.abs(x - y) / math.max(math.abs(x), math.abs(y), 1e-30)
        if x == y then d = 0 end
        worst = math.max(worst, d)
        if not (d <= REL) then
          error(("%s: step %d column %s: %.9g vs %.9g (%.3g relative)"):format(what, s, c, x, y, d), 2)
        end
      end
    end
  end
  return worst
end

-- OUT/losses.txt (train_ranks.lua): every step's loss at full precision; the largest
-- relative difference of a against b, which must be within REL.
local function compare_losses(a, b, n, what)
  local la, lb = {}, {}
  for l in (H.read_file(a .. "/losses.txt") or ""):gmatch("[^\n]+") do la[#la + 1] = tonumber(l) end
  for l in (H.read_file(b .. "/losses.txt") or ""):gmatch("[^\n]+") do lb[#lb + 1] = tonumber(l) end
  H.assert_eq(#la, n, what .. ": steps in " .. a)
  H.assert_eq(#lb, n, what .. ": steps in " .. b)
  local worst = 0
  for i = 1, n do
    local d = math.abs(la[i] - lb[i]) / math.max(math.abs(la[i]), 1e-30)
    worst = math.max(worst, d)
    if not (d <= REL) then error(("%s: step %d loss %.9g vs %.9g (%.3g relative)"):format(what, i, la[i], lb[i], d), 2) end
  end
  return worst
end

local function load(path) return (assert(require("jukebox.core").safetensors_load(path))) end

local function sleep(s) os.execute("sleep " .. s) end

-- Waits up to `limit` seconds for test() to be true; returns the seconds it took, or nil.
local function wait_for(test, limit)
  local t0 = require("jukebox.core").clock()
  while not test() do
    if require("jukebox.core").clock() - t0 > limit then return nil end
    sleep(0.05)
  end
  return require("jukebox.core").clock() - t0
end

local function exists(path) return require("jukebox.core").path_kind(path) ~= nil end

-- Starts `jbx script args` on two ranks in the background: {pid = mpirun's, code = file
-- its exit status goes to, err = its stderr file}.
local function start_ranks(script, args)
  local job = { code = os.tmpname(), err = os.tmpname(), shell = os.tmpname() }
  os.remove(job.code)
  os.execute(("( %s%s %s %s >/dev/null 2>%s; echo $? >%s ) & echo $! >%s"):format(LAUNCH,
    H.shell_quote(H.jbx_exe()), script, args, job.err, job.code, job.shell))
  local shell = H.read_file(job.shell):match("%d+")
  assert(wait_for(function()
    job.pid = H.run("pgrep -P " .. shell .. " -x " .. MPIRUN:match("[^/]+$")):match("%d+")
    return job.pid ~= nil
  end, 10), "mpirun did not start")
  return job
end

-- The job's exit status once it ended (within `limit` seconds), and the seconds it took.
local function finish(job, limit)
  local took = wait_for(function() return (H.read_file(job.code) or ""):match("%d+") ~= nil end, limit)
  if not took then
    os.execute("kill -9 " .. job.pid)
    error(("mpirun still running after %d s"):format(limit), 2)
  end
  return tonumber(H.read_file(job.code):match("%d+")), took, H.read_file(job.err) or ""
end

return {
  ["Ctrl-C on mpirun stops both ranks after the same step with one checkpoint"] = function(jbx)
    local out = tmpdir()
    local job = start_ranks("recipes/train_vqvae.lua", args_of(VQ_ARGS, { "--out=" .. out, "--batch=2",
      "--steps=100000", "--ckpt_every=10" }))
    H.assert_true(wait_for(function() return exists(out .. "/step_000020.safetensors") end, 60),
      "the run reached step 20")
    os.execute("kill -INT " .. job.pid)
    local code, _, err = finish(job, 60)
    H.assert_true(code ~= 0, "mpirun exits non-zero after Ctrl-C")
    local saved = err:match("interrupted: saved ([^;]+);")
    H.assert_true(saved ~= nil, "rank 0 says where it saved: " .. err)
    local _, n_said = err:gsub("interrupted: saved", "")
    H.assert_eq(n_said, 1, "one rank reports")
    local step = tonumber(saved:match("step_(%d+)"))
    local rows = read_log(out .. "/log.csv").rows
    local last = 0
    for s in pairs(rows) do last = math.max(last, s) end
    H.assert_eq(step, last, "the checkpoint is of the last logged step")
    H.assert_eq(require("jukebox.checkpoint").latest(out), saved, "and the newest one")
    local model = require("jukebox.models").load(saved)
    H.assert_true(model ~= nil, "it loads")
  end,

  ["a rank killed with SIGKILL ends the job naming it, and --resume continues as an uninterrupted run"] = function(jbx)
    local out = tmpdir()
    local job = start_ranks("tests/lua/mpi/train_ranks.lua", args_of(VQ_ARGS, { "--out=" .. out, "--batch=2",
      "--steps=100000", "--ckpt_every=10", "--keep=100" }))
    H.assert_true(wait_for(function() return exists(out .. "/step_000020.safetensors") end, 60),
      "the run reached step 20")
    os.execute("kill -9 $(cat " .. out .. "/pid_1)")
    local code, took, err = finish(job, 60)
    H.assert_true(code ~= 0, "mpirun exits non-zero")
    H.assert_true(took < 60, "within 60 s")
    H.assert_true(err:find("rank 1", 1, true) ~= nil, "mpirun names the dead rank: " .. err)
    -- Continue for 20 more steps from the newest checkpoint, on two ranks again.
    local ckpt = require("jukebox.checkpoint").latest(out)
    local from = tonumber(ckpt:match("step_(%d+)"))
    local _, rerr, rcode = jbx_run(2, "tests/lua/mpi/train_ranks.lua", args_of(VQ_ARGS, { "--out=" .. out,
      "--batch=2", "--steps=" .. from + 20, "--ckpt_every=10", "--keep=100", "--resume=true" }))
    H.assert_eq(rcode, 0, "resumed: " .. rerr)
    local ref = tmpdir()
    local _, ferr, fcode = jbx_run(1, "tests/lua/mpi/train_ranks.lua", args_of(VQ_ARGS, { "--out=" .. ref,
      "--batch=4", "--steps=" .. from + 20 }))
    H.assert_eq(fcode, 0, "uninterrupted: " .. ferr)
    compare_logs(read_log(ref .. "/log.csv"), read_log(out .. "/log.csv"), { 1, from + 20 }, "resumed log.csv")
    -- The resumed run's full-precision losses are its 20 steps: the reference's last 20.
    local la, lb = {}, {}
    for l in H.read_file(ref .. "/losses.txt"):gmatch("[^\n]+") do la[#la + 1] = tonumber(l) end
    for l in H.read_file(out .. "/losses.txt"):gmatch("[^\n]+") do lb[#lb + 1] = tonumber(l) end
    H.assert_eq(#lb, 20, "the resumed run trained 20 steps")
    for i = 1, 20 do
      local a, b = la[from + i], lb[i]
      H.assert_true(math.abs(a - b) <= REL * math.abs(a), ("step %d: %.9g vs %.9g"):format(from + i, a, b))
    end
  end,

  ["2 ranks x batch 2 train the VQ-VAE as 1 process x batch 4, and the ranks end bit-identical"] = function(jbx)
    local one, two = tmpdir(), tmpdir()
    local _, err, code = jbx_run(1, "tests/lua/mpi/train_ranks.lua", args_of(VQ_ARGS, { "--out=" .. one, "--batch=4",
      "--steps=30" }))
    H.assert_eq(code, 0, "one process: " .. err)
    _, err, code = jbx_run(2, "tests/lua/mpi/train_ranks.lua", args_of(VQ_ARGS, { "--out=" .. two, "--batch=2",
      "--steps=30" }))
    H.assert_eq(code, 0, "two ranks: " .. err)
    local worst = compare_logs(read_log(one .. "/log.csv"), read_log(two .. "/log.csv"), { 1, 30 }, "log.csv")
    local worst_loss = compare_losses(one, two, 30, "VQ-VAE")
    -- usage below l_bins: a code fell below the threshold and was restarted from the batch.
    local restarts = 0
    for _, r in pairs(read_log(two .. "/log.csv").rows) do
      if r.usage_l1 < 64 or r.usage_l2 < 64 then restarts = restarts + 1 end
    end
    H.assert_true(restarts > 0, "some steps restart codes, so restarts across ranks are tested")
    local single, r0, r1 = load(one .. "/rank_0.safetensors"), load(two .. "/rank_0.safetensors"),
      load(two .. "/rank_1.safetensors")
    local worst_k, names = 0, 0
    for name, t in pairs(r0) do
      names = names + 1
      H.assert_eq(H.max_abs_diff(t, r1[name]), 0, "rank 0 and rank 1 differ in " .. name)
      if name:match("%.k$") then
        local scale = math.max(t:abs():max():item(), 1e-30)
        local d = H.max_abs_diff(t, single[name]) / scale
        worst_k = math.max(worst_k, d)
        H.assert_true(d <= REL, ("codebook %s: %.3g of its scale from one process's"):format(name, d))
      end
    end
    H.assert_true(names > 10, "the ranks wrote their models")
    local meta0 = select(2, require("jukebox.core").safetensors_load(two .. "/rank_0.safetensors"))
    local meta1 = select(2, require("jukebox.core").safetensors_load(two .. "/rank_1.safetensors"))
    H.assert_eq(meta0.jukebox, meta1.jukebox, "the ranks' bandwidths and codebook generators")
    io.stderr:write(("  [mpi] VQ-VAE, 30 steps: loss at most %.3g relative from one process's (log.csv's "
      .. "6-digit cells: %.3g), codebooks %.3g of their scale\n"):format(worst_loss, worst, worst_k))
  end,

  ["2 ranks train a prior as 1 process with the global batch, and sample as 1 process"] = function(jbx)
    local vq = tmpdir()
    local _, err, code = jbx_run(1, "recipes/train_vqvae.lua", args_of(VQ_ARGS, { "--out=" .. vq, "--batch=4",
      "--steps=10" }))
    H.assert_eq(code, 0, "VQ-VAE: " .. err)
    local codes = tmpdir()
    _, err, code = jbx_run(1, "recipes/encode_codes.lua", args_of({ "--vqvae=" .. vq .. "/step_000010.safetensors",
      "--data=data", "--out=" .. codes, "--threads=1" }))
    H.assert_eq(code, 0, "codes: " .. err)
    local common = { "--task=prior", "--codes=" .. codes, "--level=0", "--preset=tiny_prior", "--steps=10",
                     "--log_every=1", "--threads=1" }
    -- A prior small enough for seconds: n_ctx 64, width 32, depth 2.
    for _, a in ipairs({ "--n_ctx=64", "--width=32", "--depth=2", "--blocks=8" }) do common[#common + 1] = a end
    local one, two = tmpdir(), tmpdir()
    _, err, code = jbx_run(1, "tests/lua/mpi/train_ranks.lua", args_of(common, { "--out=" .. one, "--batch=4" }))
    H.assert_eq(code, 0, "one process: " .. err)
    _, err, code = jbx_run(2, "tests/lua/mpi/train_ranks.lua", args_of(common, { "--out=" .. two, "--batch=2" }))
    H.assert_eq(code, 0, "two ranks: " .. err)
    local worst = compare_logs(read_log(one .. "/log.csv"), read_log(two .. "/log.csv"), { 1, 10 }, "prior log.csv")
    local worst_loss = compare_losses(one, two, 10, "prior")
    local r0, r1 = load(two .. "/rank_0.safetensors"), load(two .. "/rank_1.safetensors")
    for name, t in pairs(r0) do H.assert_eq(H.max_abs_diff(t, r1[name]), 0, "ranks differ in " .. name) end
    io.stderr:write(("  [mpi] prior, 10 steps: loss at most %.3g relative from one process's (log.csv: %.3g)\n")
      :format(worst_loss, worst))
    -- sample.lua on two ranks shares out the batch groups: the same codes, byte for byte.
    local function sample_args(dir)
      return args_of({ "--vqvae=" .. vq .. "/step_000010.safetensors", "--prior=" .. one .. "/step_000010.safetensors",
        "--seconds=0.5", "--n-samples=3", "--batch=1", "--plots=false", "--threads=1", "--out=" .. dir })
    end
    local s1, s2 = tmpdir(), tmpdir()
    _, err, code = jbx_run(1, "recipes/sample.lua", sample_args(s1))
    H.assert_eq(code, 0, "sampling, one process: " .. err)
    local out2
    out2, err, code = jbx_run(2, "recipes/sample.lua", sample_args(s2))
    H.assert_eq(code, 0, "sampling, two ranks: " .. err)
    local _, n_done = out2:gsub("done in", "")
    H.assert_eq(n_done, 1, "rank 0 alone reports")
    local c1, c2 = H.read_file(s1 .. "/codes.safetensors"), H.read_file(s2 .. "/codes.safetensors")
    H.assert_true(c1 and c1 == c2, "the same codes from one process and two ranks")
    H.assert_true(H.read_file(s2 .. "/level_2/sample_2.flac") ~= nil, "rank 0 wrote every sample's audio")
  end,
}
