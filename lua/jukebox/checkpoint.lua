--- Checkpoints as safetensors files: tensors by name, everything else as JSON in the
-- metadata. Layout:
--   tensors          params and state under the names the caller gives (state names
--                    such as "adam.m.<param>" or codebook buffers are kept as given)
--   __metadata__     format = "pt" (what PyTorch tools expect),
--                    jukebox = JSON of `meta` (hyperparameters, step, RNG state ...),
--                    jukebox_state = JSON array of the state tensor names
-- Files are written atomically (temp file, fsync, rename), so a crash never leaves a
-- half-written checkpoint under the final name.
local core = require "jukebox.core"
local options = require "jukebox.options"

local checkpoint = {}

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

local function shape_str(s) return "[" .. table.concat(s, ", ") .. "]" end

local function same_shape(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return true
end

local function check_tensor_table(t, what, fn)
  if t == nil then return {} end
  if type(t) ~= "table" then
    error(("%s: %s must be a table name -> tensor, got %s"):format(fn, what, type(t)), 3)
  end
  for k, v in pairs(t) do
    if type(k) ~= "string" then
      error(("%s: %s keys must be tensor names (strings), got %s %s"):format(fn, what, type(k), tostring(k)), 3)
    end
    if not core.is_tensor(v) then
      error(("%s: %s.%s must be a tensor, got %s"):format(fn, what, k, type(v)), 3)
    end
  end
  return t
end

--- checkpoint.save(path, {params = {name = tensor}, state = {name = tensor}, meta = table})
-- `meta` is any JSON-encodable table (no NaN/inf, no functions or tensors).
function checkpoint.save(path, spec)
  local fn = "checkpoint.save"
  if type(path) ~= "string" then error(fn .. ": path must be a string", 2) end
  if type(spec) ~= "table" then error(fn .. ": second argument must be {params =, state =, meta =}", 2) end
  options.merge(fn, {}, spec, { optional = { "params", "state", "meta" }, what = "field" })
  local params = check_tensor_table(spec.params, "params", fn)
  local state = check_tensor_table(spec.state, "state", fn)
  local all, state_names = {}, {}
  for name, t in pairs(params) do all[name] = t end
  for _, name in ipairs(sorted_keys(state)) do
    if all[name] then
      error(("%s: '%s' is in both params and state"):format(fn, name), 2)
    end
    all[name] = state[name]
    state_names[#state_names + 1] = name
  end
  local ok, meta_json = pcall(core.json_encode, spec.meta or {})
  if not ok then error(("%s %s: meta: %s"):format(fn, path, meta_json), 2) end
  core.safetensors_save(path, all, {
    format = "pt",
    jukebox = meta_json,
    jukebox_state = core.json_encode(state_names),
  })
  return path
end

-- The state names a checkpoint recorded (a set), from its metadata.
local function state_set(metadata)
  local set = {}
  if metadata.jukebox_state then
    local ok, names = pcall(core.json_decode, metadata.jukebox_state)
    if ok and type(names) == "table" then
      for _, n in ipairs(names) do set[n] = true end
    end
  end
  return set
end

local function decode_meta(path, metadata)
  if not metadata.jukebox then return {} end
  local ok, meta = pcall(core.json_decode, metadata.jukebox)
  if not ok then error(("checkpoint %s: metadata 'jukebox' is not valid JSON: %s"):format(path, meta), 3) end
  return meta
end

--- checkpoint.load(path) -> {tensors = {name = tensor} (all), params = {...}, state = {...},
--   meta = table (the saved meta, {} when absent), metadata = {raw string metadata}}
function checkpoint.load(path)
  local tensors, metadata = core.safetensors_load(path)
  local is_state = state_set(metadata)
  local params, state = {}, {}
  for name, t in pairs(tensors) do
    if is_state[name] then state[name] = t else params[name] = t end
  end
  return { tensors = tensors, params = params, state = state, meta = decode_meta(path, metadata),
           metadata = metadata }
end

-- Checks tensor `t` (destination) against (shape, dtype) from a checkpoint.
local function check_match(path, name, shape, dtype, t, level)
  local want = t:shape()
  if not same_shape(shape, want) then
    error(("checkpoint %s: %s has shape %s, model expects %s"):format(path, name, shape_str(shape),
      shape_str(want)), level + 1)
  end
  if dtype ~= t.dtype then
    error(("checkpoint %s: %s has dtype %s, model expects %s"):format(path, name, dtype, t.dtype), level + 1)
  end
end

--- checkpoint.load_into(path, params[, opts]): reads the file's tensors into `params`
-- (name -> tensor). Every expected name must be present with the same shape and dtype,
-- and the file may hold no other params (its recorded state tensors are skipped; pass
-- opts.strict = false to allow extra names). Nothing is written unless everything
-- matches. Returns the checkpoint's meta table.
function checkpoint.load_into(path, params, opts)
  opts = options.merge("checkpoint.load_into", { strict = true }, opts)
  params = check_tensor_table(params, "params", "checkpoint.load_into")
  local info, metadata = core.safetensors_info(path)
  local is_state = state_set(metadata)
  for _, name in ipairs(sorted_keys(params)) do
    local i = info[name]
    if not i then
      error(("checkpoint %s: missing %s (the model expects it)"):format(path, name), 2)
    end
    check_match(path, name, i.shape, i.loads_as, params[name], 2)
  end
  if opts.strict ~= false then
    for _, name in ipairs(sorted_keys(info)) do
      if not params[name] and not is_state[name] then
        error(("checkpoint %s: unexpected tensor %s (the model has no parameter of that name)"):format(path, name),
          2)
      end
    end
  end
  core.safetensors_read_into(path, params)
  return decode_meta(path, metadata)
end

--- checkpoint.copy_into(path, tensors, named): copies tensors[name] into named[name] for
-- every name of `named` (tensors as checkpoint.load gives them; extra ones are ignored).
-- All names, shapes and dtypes are checked before anything is copied. `path` only
-- names the file in errors.
function checkpoint.copy_into(path, tensors, named)
  for _, name in ipairs(sorted_keys(named)) do
    local src = tensors[name]
    if not src then error(("checkpoint %s: missing %s (the model expects it)"):format(path, name), 2) end
    check_match(path, name, src:shape(), src.dtype, named[name], 2)
  end
  for name, dst in pairs(named) do dst:copy_(tensors[name]) end
end

--- checkpoint.latest(dir) -> path of the checkpoint with the highest step in dir
-- (files named step_<number>.safetensors), or nil when there is none.
function checkpoint.latest(dir)
  local ok, names = pcall(core.list_dir, dir)
  if not ok then return nil end
  local best, best_step
  for _, name in ipairs(names) do
    local s = name:match("^step_(%d+)%.safetensors$")
    local step = s and tonumber(s)
    if step and (not best_step or step > best_step) then best, best_step = name, step end
  end
  if not best then return nil end
  return (dir:sub(-1) == "/" and dir or dir .. "/") .. best, best_step
end

return checkpoint
