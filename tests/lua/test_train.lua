-- Training runs on the tiny preset: the log, checkpoints, and exact resumption.
local H = require "helpers"
local train = require "jukebox.train"
local jbx_exe = H.shell_quote(H.jbx_exe())

local function tmpdir(name)
  local d = os.tmpname()
  os.remove(d)
  d = d .. "_" .. name
  return d
end

local function read_rows(path)
  local rows = {}
  for line in io.lines(path) do rows[#rows + 1] = line end
  return rows
end

-- The row without its time column (the only one allowed to differ).
local function without_time(line)
  local cells = {}
  for c in (line .. ","):gmatch("([^,]*),") do cells[#cells + 1] = c end
  table.remove(cells, 2)
  return table.concat(cells, ",")
end

local base = { data = "data/music", preset = "tiny", batch = 2, sample_length = 2048, log_every = 1,
               ckpt_every = 3, threads = 1, bandwidth_batches = 2, quiet = true, warmup = 2 }
local function opts(extra)
  local o = {}
  for k, v in pairs(base) do o[k] = v end
  for k, v in pairs(extra) do o[k] = v end
  return o
end

return {
  ["log.csv has a header and one row per logged step"] = function()
    local out = tmpdir("log")
    local r = train.run(opts({ out = out, steps = 4 }))
    local rows = read_rows(r.log)
    assert(rows[1]:find("^step,time,lr,loss,grad_norm,recons_loss_l1,commit_loss_l1,multispectral_loss_l1,usage_l1"),
      rows[1])
    assert(#rows == 5, "4 rows and a header, got " .. #rows)
    assert(rows[5]:match("^4,"), rows[5])
    assert(r.checkpoint:match("step_000004%.safetensors$"), r.checkpoint)
    os.execute("rm -rf " .. out)
  end,

  ["a run stopped after its last checkpoint resumes with the same losses"] = function()
    local a, b = tmpdir("full"), tmpdir("resumed")
    train.run(opts({ out = a, steps = 6 }))
    -- Run 4 steps, then lose the step-4 checkpoint as a kill right before it would.
    train.run(opts({ out = b, steps = 4 }))
    assert(os.remove(b .. "/step_000004.safetensors"))
    local r = train.run(opts({ out = b, steps = 6, resume = true }))
    assert(r.step == 6)
    local ra, rb = read_rows(a .. "/log.csv"), read_rows(b .. "/log.csv")
    assert(#ra == #rb, ("rows %d vs %d"):format(#ra, #rb))
    for i = 2, #ra do
      assert(without_time(ra[i]) == without_time(rb[i]), ("row %d differs:\n%s\n%s"):format(i, ra[i], rb[i]))
    end
    os.execute("rm -rf " .. a .. " " .. b)
  end,

  ["Ctrl-C saves a checkpoint and --resume continues"] = function()
    local out = tmpdir("sigint")
    local cmd = ("timeout --preserve-status -s INT 6 %s recipes/train_vqvae.lua --data=data/music --out=%s --preset=tiny "
      .. "--batch=2 --sample-length=2048 --steps=100000 --ckpt-every=100000 --log-every=1 --threads=1 "
      .. ">/dev/null 2>&1"):format(jbx_exe, out)
    local ok, how, code = os.execute(cmd)
    assert(not ok and code == 130, ("exit %s %s"):format(tostring(how), tostring(code)))
    local ckpt = require("jukebox.checkpoint").latest(out)
    assert(ckpt, "no checkpoint after Ctrl-C")
    local step = tonumber(ckpt:match("step_(%d+)"))
    assert(step and step >= 1, ckpt)
    local r = train.run(opts({ out = out, steps = step + 2, resume = true }))
    assert(r.step == step + 2)
    local rows = read_rows(out .. "/log.csv")
    assert(#rows == step + 3, ("%d rows for %d steps"):format(#rows - 1, step + 2))
    os.execute("rm -rf " .. out)
  end,

  ["unknown options are errors"] = function()
    local ok, err = pcall(train.run, { stepz = 3 })
    assert(not ok and err:find("train: unknown option 'stepz'", 1, true), err)
    local p = io.popen(jbx_exe .. " recipes/train_vqvae.lua --stepz=3 2>&1; echo rc=$?")
    local s = p:read("a")
    p:close()
    assert(s:find("unknown option --stepz", 1, true) and s:find("rc=2", 1, true), s)
  end,

  ["a folder with broken files trains after one warning naming them"] = function()
    -- data/music's clips (linked) plus an empty file, a text file named .wav and a truncated FLAC.
    local dir, out = tmpdir("broken_data"), tmpdir("broken_run")
    local q = H.shell_quote
    os.execute(("mkdir -p %s && ln -s %s/data/music/*.flac %s/ && cp tests/fixtures/audio/empty.flac "
      .. "tests/fixtures/audio/not_audio.wav tests/fixtures/audio/truncated.flac %s/"):format(q(dir),
      q(io.popen("pwd -P"):read("l")), q(dir), q(dir)))
    local cmd = ("%s recipes/train_vqvae.lua --data=%s --out=%s --preset=tiny --batch=2 --sample-length=2048 "
      .. "--steps=2 --threads=1 2>&1; echo rc=$?"):format(jbx_exe, q(dir), q(out))
    local p = io.popen(cmd)
    local s = p:read("a")
    p:close()
    assert(s:find("rc=0", 1, true), s)
    local warnings = {}
    for line in s:gmatch("[^\n]+") do
      if line:find("warning", 1, true) then warnings[#warnings + 1] = line end
    end
    assert(#warnings == 1, "one warning, got:\n" .. s)
    for _, name in ipairs({ "skipping 3 of 27 files", "empty.flac", "not_audio.wav", "truncated.flac" }) do
      assert(warnings[1]:find(name, 1, true), ("'%s' not in: %s"):format(name, warnings[1]))
    end
    assert(require("jukebox.checkpoint").latest(out), "a checkpoint")
    local p2 = io.popen((cmd:gsub("%-%-steps=2", "--steps=3 --strict")))
    s = p2:read("a")
    p2:close()
    assert(s:find("cannot be used (strict)", 1, true) and s:find("rc=1", 1, true), s)
    os.execute("rm -rf " .. q(dir) .. " " .. q(out))
  end,

  ["a checkpoint with the old data generator state is not resumed"] = function()
    local out = tmpdir("old_state")
    train.run(opts({ out = out, steps = 1 }))
    local checkpoint = require "jukebox.checkpoint"
    local path = checkpoint.latest(out)
    local ck = checkpoint.load(path)
    ck.meta.data_state = "1234567"
    checkpoint.save(path, { params = ck.params, state = ck.state, meta = ck.meta })
    local ok, err = pcall(train.run, opts({ out = out, steps = 2, resume = true }))
    assert(not ok and err:find("its data generator state '1234567' is from an older jukebox-c", 1, true), err)
    os.execute("rm -rf " .. out)
  end,

  ["an unknown task is a clear error"] = function()
    local ok, err = pcall(train.run, { task = "nosuch" })
    assert(not ok and err:find("train: unknown task 'nosuch'", 1, true), err)
  end,

  ["a missing data folder is a clear error"] = function()
    local ok, err = pcall(train.run, opts({ data = "/nonexistent/dir", out = tmpdir("x"), steps = 1 }))
    assert(not ok and err:find("data: '/nonexistent/dir' is missing", 1, true), err)
  end,
}
