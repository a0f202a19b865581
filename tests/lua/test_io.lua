-- Files from Lua: JSON encode/decode, atomic text writes, safetensors through the
-- binding, and checkpoints (save, load, load_into, copy_into, latest) with the error
-- messages a user sees. Each test raises an error to fail.
local H = require "helpers"

local FIX = "tests/fixtures/io/"

-- A fresh empty directory; the test removes what it wrote.
local function tmpdir(core)
  local base = os.tmpname()
  os.remove(base)
  core.mkdir_p(base)
  return base
end

local function rmdir(core, dir)
  for _, name in ipairs(core.list_dir(dir)) do os.remove(dir .. "/" .. name) end
  os.remove(dir)
end

local function deep_eq(a, b, path)
  path = path or "value"
  if type(a) ~= type(b) then error(("%s: %s vs %s"):format(path, type(a), type(b)), 2) end
  if type(a) == "table" then
    for k, v in pairs(a) do deep_eq(v, b[k], path .. "." .. tostring(k)) end
    for k in pairs(b) do
      if a[k] == nil then error(("%s.%s: missing"):format(path, tostring(k)), 2) end
    end
  elseif a ~= b or math.type(a) ~= math.type(b) then
    error(("%s: %s (%s) vs %s (%s)"):format(path, tostring(a), math.type(a) or type(a), tostring(b),
      math.type(b) or type(b)), 2)
  end
end

local function read_file(path) return assert(H.read_file(path)) end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

return {
  -- ---------------------------------------------------------------- JSON
  ["json round trip keeps structure and number types"] = function(jbx)
    local core = jbx.core
    local v = {
      step = 300, lr = 3e-4, big = 9007199254740993, neg = -7, half = 0.5, three = 3.0,
      name = "vq \"small\"\n\ttab \1 é", flag = true, off = false,
      levels = { 1, 2, { 3, 4 } }, empty = {}, nested = { a = { b = { c = "d" } } },
      ["key with spaces"] = 1, ["1"] = "string one",
    }
    for _, indent in ipairs({ false, true }) do
      local s = core.json_encode(v, { indent = indent })
      local back = core.json_decode(s)
      deep_eq(back, v)
      H.assert_eq(math.type(back.big), "integer", "big integer")
      H.assert_eq(math.type(back.three), "float", "3.0 stays a float")
    end
  end,

  ["json encodes exactly: sorted keys, arrays, {} and indent"] = function(jbx)
    local core = jbx.core
    H.assert_eq(core.json_encode({ b = 1, a = { 1, 2.5, "x" }, c = {} }), '{"a":[1,2.5,"x"],"b":1,"c":{}}')
    H.assert_eq(core.json_encode({}), "{}")
    H.assert_eq(core.json_encode({ [1] = "a", [3] = "c" }), '{"1":"a","3":"c"}') -- not a sequence
    H.assert_eq(core.json_encode({ 1, 2, x = 3 }), '{"1":1,"2":2,"x":3}')
    H.assert_eq(core.json_encode(2.0), "2.0")
    H.assert_eq(core.json_encode(0.1), "0.1")
    H.assert_eq(core.json_encode(1 / 3), "0.3333333333333333")
    H.assert_eq(core.json_encode("a\"b\\c\n\0"), '"a\\"b\\\\c\\n\\u0000"')
    H.assert_eq(core.json_encode({ core.json_null, 1 }), "[null,1]")
    H.assert_eq(core.json_encode({ a = 1, b = { 2, 3 }, c = {} }, { indent = true }),
      '{\n  "a": 1,\n  "b": [\n    2,\n    3\n  ],\n  "c": {}\n}')
    -- the layout pass reads strings as strings: brackets, commas and colons inside stay put
    H.assert_eq(core.json_encode({ { k = "a,{b}:[c]\"" } }, { indent = true }),
      '[\n  {\n    "k": "a,{b}:[c]\\""\n  }\n]')
  end,

  ["json decode: null, unicode, duplicates"] = function(jbx)
    local core = jbx.core
    local v = core.json_decode(' [null, "\\u00e9\\n", {"a": 1, "a": 2}, true] ')
    H.assert_eq(v[1], core.json_null, "null")
    H.assert_eq(v[2], "é\n", "unicode escape")
    H.assert_eq(v[3].a, 2, "last duplicate wins")
    H.assert_eq(v[4], true)
    H.assert_eq(core.json_decode("42"), 42)
    H.assert_eq(math.type(core.json_decode("42")), "integer")
    H.assert_eq(jbx.json.decode('{"x": [1]}').x[1], 1, "jbx.json re-export")
  end,

  ["json_encode errors name the key path"] = function(jbx)
    local core = jbx.core
    H.assert_error(function() core.json_encode({ history = { { loss = 0 / 0 } } }) end,
      "json_encode: value.history[1].loss is nan; JSON has no NaN or infinity")
    H.assert_error(function() core.json_encode({ ["a b"] = { 1, math.huge } }) end,
      'json_encode: value["a b"][2] is inf')
    H.assert_error(function() core.json_encode(-math.huge) end, "json_encode: value is -inf")
    H.assert_error(function() core.json_encode({ f = print }) end, "json_encode: value.f is a function")
    H.assert_error(function() core.json_encode({ t = jbx.zeros({ 2 }) }) end,
      "json_encode: value.t is a tensor; JSON holds tables, strings, numbers and booleans (use t:totable()")
    H.assert_error(function() core.json_encode({ m = { [true] = 1 } }) end,
      "json_encode: value.m has a key of type boolean (JSON object keys are strings)")
    H.assert_error(function() core.json_encode({ [1] = 1, ["1"] = 2, x = 0 }) end,
      'json_encode: value has two keys that both become "1"')
    local loop = {}
    loop.self = loop
    H.assert_error(function() core.json_encode(loop) end, "levels deep (a table that contains itself?)")
    H.assert_error(function() core.json_encode({}, { indnet = true }) end, "unknown option 'indnet'")
    H.assert_error(function() core.json_encode({}, { indent = 2 }) end, "option 'indent' must be a boolean")
  end,

  ["json_decode errors name the position"] = function(jbx)
    local core = jbx.core
    H.assert_error(function() core.json_decode('{"a": [1, 2,]}') end,
      "json_decode: invalid JSON at line 1, column 13 (byte 12): near ']}'")
    H.assert_error(function() core.json_decode('{\n  "a": 1,\n  "b": tru\n}') end,
      "json_decode: invalid JSON at line 3, column 8")
    H.assert_error(function() core.json_decode('{"a": 1} x') end,
      "json_decode: text after the JSON value at line 1, column 10 (byte 9): near 'x'")
    H.assert_error(function() core.json_decode('{"a": ') end, "unexpected end of input")
    H.assert_error(function() core.json_decode("") end,
      "json_decode: invalid JSON at line 1, column 1 (byte 0): unexpected end of input")
  end,

  ["fsync_write writes atomically and reports failures"] = function(jbx)
    local core = jbx.core
    local dir = tmpdir(core)
    local path = dir .. "/metrics.json"
    core.fsync_write(path, "old")
    core.fsync_write(path, core.json_encode({ a = 1 }, { indent = true }))
    H.assert_eq(read_file(path), '{\n  "a": 1\n}')
    jbx.json.write(path, { b = { 1, 2 } })
    H.assert_eq(jbx.json.read(path).b[2], 2, "json.write/read")
    H.assert_eq(#core.list_dir(dir), 1, "only the file, no temp files")
    H.assert_error(function() core.fsync_write(dir .. "/no/such/dir/m.json", "x") end,
      "fsync_write: cannot write " .. dir .. "/no/such/dir/m.json")
    H.assert_error(function() core.fsync_write(dir .. "/no/m.json", "x") end, "No such file or directory")
    rmdir(core, dir)
  end,

  -- ---------------------------------------------------------------- safetensors
  ["safetensors save/load/info round trip"] = function(jbx)
    local core = jbx.core
    local dir = tmpdir(core)
    local path = dir .. "/t.safetensors"
    local w = jbx.tensor({ { 1, -2, 3 }, { 4.5, 0, -1e-3 } })
    local codes = jbx.tensor({ 7, -1, 2147483647 }, { dtype = "int32" })
    local s = jbx.tensor(2.5)
    core.safetensors_save(path, { ["enc.weight"] = w, codes = codes, scale = s, wt = w:transpose(1, 2) },
      { note = "hello", json = '{"a":1}' })
    local t, meta = core.safetensors_load(path)
    H.assert_close(t["enc.weight"], w, 0)
    H.assert_close(t.wt, w:transpose(1, 2), 0)
    H.assert_eq(t.codes.dtype, "int32")
    H.assert_eq(t.codes:totable()[3], 2147483647)
    H.assert_eq(t.scale:dim(), 0, "0-dim")
    H.assert_eq(t.scale:item(), 2.5)
    deep_eq(meta, { note = "hello", json = '{"a":1}' })
    local info, meta2 = core.safetensors_info(path)
    deep_eq(info, {
      ["enc.weight"] = { dtype = "F32", loads_as = "float32", shape = { 2, 3 } },
      wt = { dtype = "F32", loads_as = "float32", shape = { 3, 2 } },
      codes = { dtype = "I32", loads_as = "int32", shape = { 3 } },
      scale = { dtype = "F32", loads_as = "float32", shape = {} },
    })
    H.assert_eq(meta2.note, "hello")
    -- No metadata: an empty table.
    core.safetensors_save(path, { x = w })
    local _, m3 = core.safetensors_load(path)
    H.assert_eq(next(m3), nil, "no metadata")
    H.assert_eq(#core.list_dir(dir), 1, "temp files left")
    rmdir(core, dir)
  end,

  ["safetensors reads the hand-written reference file"] = function(jbx)
    local t, meta = jbx.core.safetensors_load(FIX .. "reference.safetensors")
    H.assert_close(t["encoder.0.weight"], { { -1, -0.5, 0 }, { 0.5, 1, 1.5 } }, 0)
    H.assert_close(t.half, { { 1, -2.5 }, { 65504, 6.1035156e-05 } }, 1e-7)
    H.assert_eq(t.long.dtype, "int32")
    H.assert_eq(meta.format, "pt")
    H.assert_eq(jbx.core.json_decode(meta.jukebox).step, 300)
  end,

  ["safetensors errors"] = function(jbx)
    local core = jbx.core
    local dir = tmpdir(core)
    local x = jbx.zeros({ 2 })
    H.assert_error(function() core.safetensors_load(FIX .. "truncated.safetensors") end,
      "truncated.safetensors: file is 3 bytes, too short for a safetensors file")
    H.assert_error(function() core.safetensors_info(FIX .. "bad_json.safetensors") end,
      "bad_json.safetensors: header is not valid JSON")
    H.assert_error(function() core.safetensors_load(dir .. "/none.safetensors") end,
      "cannot open " .. dir .. "/none.safetensors: No such file or directory")
    H.assert_error(function() core.safetensors_save(dir .. "/a.safetensors", { x = x }, { step = 3 }) end,
      "safetensors_save: metadata value for 'step' must be a string, got number")
    H.assert_error(function() core.safetensors_save(dir .. "/a.safetensors", { x = x }, { [1] = "a" }) end,
      "safetensors_save: metadata keys must be strings")
    H.assert_error(function() core.safetensors_save(dir .. "/a.safetensors", { x, x }) end,
      "safetensors_save: argument 2 (tensors) must name its tensors (string keys), got a number key")
    H.assert_error(function() core.safetensors_save(dir .. "/a.safetensors", { x = 3 }) end,
      "safetensors_save: argument 2 (tensors): value for 'x' must be a tensor, got number")
    H.assert_error(function() core.safetensors_save(dir .. "/no/a.safetensors", { x = x }) end,
      dir .. "/no/a.safetensors")
    core.safetensors_save(dir .. "/a.safetensors", { x = x })
    local wrong = jbx.zeros({ 3 })
    H.assert_error(function() core.safetensors_read_into(dir .. "/a.safetensors", { x = wrong }) end,
      "a.safetensors: x has shape [2], destination has [3]")
    H.assert_error(function() core.safetensors_read_into(dir .. "/a.safetensors", { y = wrong }) end,
      "a.safetensors: no tensor named 'y'")
    H.assert_eq(#core.list_dir(dir), 1, "failed saves left files")
    rmdir(core, dir)
  end,

  -- ---------------------------------------------------------------- checkpoints
  ["checkpoint save/load keeps params, state and meta"] = function(jbx)
    local core, ck = jbx.core, jbx.checkpoint
    local dir = tmpdir(core)
    local path = dir .. "/step_000010.safetensors"
    local params = { ["encoder.0.weight"] = jbx.randn({ 4, 1, 3 }), ["encoder.0.bias"] = jbx.zeros({ 4 }) }
    local state = { ["adam.m.encoder.0.weight"] = jbx.ones({ 4, 1, 3 }),
                    ["bottleneck.level_blocks.0.k"] = jbx.randn({ 8, 2 }) }
    local meta = { step = 10, hparams = { levels = 2, widths = { 32, 64 }, preset = "tiny" },
                   rng = "12345678901234567", elapsed = 1.25 }
    ck.save(path, { params = params, state = state, meta = meta })
    local c = ck.load(path)
    deep_eq(c.meta, meta)
    H.assert_close(c.tensors["encoder.0.weight"], params["encoder.0.weight"], 0)
    H.assert_close(c.state["bottleneck.level_blocks.0.k"], state["bottleneck.level_blocks.0.k"], 0)
    H.assert_true(c.params["encoder.0.bias"] and not c.params["adam.m.encoder.0.weight"], "params split")
    H.assert_true(c.state["adam.m.encoder.0.weight"] and not c.state["encoder.0.bias"], "state split")
    H.assert_eq(c.metadata.format, "pt")
    -- The file is plain safetensors that other tools read.
    H.assert_eq(core.safetensors_info(path)["encoder.0.weight"].dtype, "F32")
    H.assert_error(function() ck.save(path, { params = params, meta = { loss = 0 / 0 } }) end,
      "meta: json_encode: value.loss is nan")
    H.assert_error(function() ck.save(path, { params = params, state = { ["encoder.0.bias"] = jbx.zeros({ 4 }) } }) end,
      "checkpoint.save: 'encoder.0.bias' is in both params and state")
    H.assert_error(function() ck.save(path, { parms = params }) end, "unknown field 'parms'")
    H.assert_error(function() ck.save(path, { params = { w = 1 } }) end, "params.w must be a tensor, got number")
    rmdir(core, dir)
  end,

  ["checkpoint load_into checks names, shapes and dtypes"] = function(jbx)
    local core, ck = jbx.core, jbx.checkpoint
    local dir = tmpdir(core)
    local path = dir .. "/x.safetensors"
    local w = jbx.randn({ 32, 1, 4 })
    local codes = jbx.tensor({ 1, 2 }, { dtype = "int32" })
    ck.save(path, { params = { ["encoder.0.weight"] = w, ["encoder.0.bias"] = jbx.ones({ 32 }), codes = codes },
                    state = { ["adam.m.encoder.0.weight"] = jbx.zeros({ 32, 1, 4 }) }, meta = { step = 7 } })
    -- Success: values copied in, state tensors skipped, meta returned.
    local model = { ["encoder.0.weight"] = jbx.zeros({ 32, 1, 4 }, { requires_grad = true }),
                    ["encoder.0.bias"] = jbx.zeros({ 32 }), codes = jbx.tensor({ 0, 0 }, { dtype = "int32" }) }
    local meta = ck.load_into(path, model)
    H.assert_eq(meta.step, 7)
    H.assert_close(model["encoder.0.weight"], w, 0)
    H.assert_close(model["encoder.0.bias"], jbx.ones({ 32 }), 0)
    H.assert_eq(model.codes:totable()[2], 2)
    -- A strided destination works too.
    local base = jbx.zeros({ 4, 1, 32 })
    local strided = { ["encoder.0.weight"] = base:transpose(1, 3), ["encoder.0.bias"] = jbx.zeros({ 32 }),
                      codes = jbx.tensor({ 0, 0 }, { dtype = "int32" }) }
    ck.load_into(path, strided)
    H.assert_close(strided["encoder.0.weight"], w, 0)

    -- Wrong shape: named, nothing written.
    local bad = { ["encoder.0.weight"] = jbx.zeros({ 64, 1, 4 }), ["encoder.0.bias"] = jbx.zeros({ 32 }),
                  codes = jbx.tensor({ 0, 0 }, { dtype = "int32" }) }
    H.assert_error(function() ck.load_into(path, bad) end,
      "checkpoint " .. path .. ": encoder.0.weight has shape [32, 1, 4], model expects [64, 1, 4]")
    H.assert_eq(bad["encoder.0.bias"]:sum():item(), 0, "nothing copied on error")
    -- Wrong dtype.
    H.assert_error(function()
      ck.load_into(path, { ["encoder.0.weight"] = jbx.zeros({ 32, 1, 4 }), ["encoder.0.bias"] = jbx.zeros({ 32 }),
                           codes = jbx.zeros({ 2 }) })
    end, "checkpoint " .. path .. ": codes has dtype int32, model expects float32")
    -- Missing and unexpected names.
    H.assert_error(function()
      ck.load_into(path, { ["encoder.0.weight"] = jbx.zeros({ 32, 1, 4 }), ["encoder.0.bias"] = jbx.zeros({ 32 }),
                           codes = codes, ["decoder.0.weight"] = jbx.zeros({ 1 }) })
    end, "checkpoint " .. path .. ": missing decoder.0.weight (the model expects it)")
    H.assert_error(function()
      ck.load_into(path, { ["encoder.0.weight"] = jbx.zeros({ 32, 1, 4 }), codes = codes })
    end, "checkpoint " .. path .. ": unexpected tensor encoder.0.bias (the model has no parameter of that name)")
    ck.load_into(path, { codes = jbx.tensor({ 0, 0 }, { dtype = "int32" }) }, { strict = false })
    H.assert_error(function() ck.load_into(path, {}, { strcit = false }) end, "unknown option 'strcit'")
    -- A corrupt file surfaces the reader's message.
    H.assert_error(function() ck.load_into(FIX .. "truncated.safetensors", {}) end,
      "truncated.safetensors: file is 3 bytes")
    rmdir(core, dir)
  end,

  ["checkpoint copy_into checks before copying"] = function(jbx)
    local core, ck = jbx.core, jbx.checkpoint
    local dir = tmpdir(core)
    local path = dir .. "/c.safetensors"
    ck.save(path, { params = { a = jbx.ones({ 2, 3 }) }, state = { ["adam.m.a"] = jbx.ones({ 2, 3 }) } })
    local c = ck.load(path)
    local dst = { a = jbx.zeros({ 2, 3 }) }
    ck.copy_into(path, c.tensors, dst)
    H.assert_eq(dst.a:sum():item(), 6)
    H.assert_error(function() ck.copy_into(path, c.tensors, { a = jbx.zeros({ 3, 2 }) }) end,
      "checkpoint " .. path .. ": a has shape [2, 3], model expects [3, 2]")
    H.assert_error(function() ck.copy_into(path, c.tensors, { b = jbx.zeros({ 1 }) }) end,
      "checkpoint " .. path .. ": missing b")
    rmdir(core, dir)
  end,

  ["checkpoint latest picks the highest step"] = function(jbx)
    local core, ck = jbx.core, jbx.checkpoint
    local dir = tmpdir(core)
    H.assert_eq(ck.latest(dir), nil, "empty dir")
    H.assert_eq(ck.latest(dir .. "/missing"), nil, "missing dir")
    local x = { params = { x = jbx.zeros({ 1 }) } }
    for _, name in ipairs({ "step_000100.safetensors", "step_000300.safetensors", "step_000020.safetensors",
                            "step_1000.json", "best.safetensors" }) do
      if name:match("safetensors$") then ck.save(dir .. "/" .. name, x) else core.fsync_write(dir .. "/" .. name, "{}") end
    end
    local p, step = ck.latest(dir)
    H.assert_eq(p, dir .. "/step_000300.safetensors")
    H.assert_eq(step, 300)
    H.assert_eq(ck.latest(dir .. "/"), dir .. "/step_000300.safetensors", "trailing slash")
    H.assert_true(exists(p))
    rmdir(core, dir)
  end,
}
