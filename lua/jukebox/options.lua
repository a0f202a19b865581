--- Option tables, the one way the Lua modules read them: documented defaults, and an
-- unknown key is an error that names the function and the keys it knows, e.g.
--   data.loader: unknown option 'lenght' (known: batch, dir, files, length, rate, seed, strict)
local options = {}

local function known_names(defaults, optional)
  local names = {}
  for k in pairs(defaults) do names[#names + 1] = tostring(k) end
  for _, k in ipairs(optional or {}) do
    if defaults[k] == nil then names[#names + 1] = k end
  end
  table.sort(names)
  return names
end

--- options.merge(fn, defaults, given[, how]) -> a new table: `defaults` overridden by
-- `given` (nil or a table; `defaults` and `given` are not modified).
-- how.optional: keys known without a default (they stay nil unless given);
-- how.what: the word in the error ("option", "hyperparameter", "field");
-- how.level: the error level as for error(), counted from the caller of merge
-- (default 2: the error points at whoever called the function that called merge).
function options.merge(fn, defaults, given, how)
  how = how or {}
  if given ~= nil and type(given) ~= "table" then
    error(("%s: options must be a table, got %s"):format(fn, type(given)), (how.level or 2) + 1)
  end
  local out = {}
  for k, v in pairs(defaults) do out[k] = v end
  local optional
  for k, v in pairs(given or {}) do
    if defaults[k] == nil then
      if not optional then
        optional = {}
        for _, name in ipairs(how.optional or {}) do optional[name] = true end
      end
      if not optional[k] then
        error(("%s: unknown %s '%s' (known: %s)"):format(fn, how.what or "option", tostring(k),
          table.concat(known_names(defaults, how.optional), ", ")), (how.level or 2) + 1)
      end
    end
    out[k] = v
  end
  return out
end

--- options.choose(fn, what, choices, name[, level]) -> choices[name], or the error
-- "fn: unknown WHAT 'name' (known: a, b, c)" for presets, label sets, model kinds ...
-- level as options.merge's how.level.
function options.choose(fn, what, choices, name, level)
  local v = choices[name]
  if v == nil then
    error(("%s: unknown %s '%s' (known: %s)"):format(fn, what, tostring(name),
      table.concat(known_names(choices), ", ")), (level or 2) + 1)
  end
  return v
end

return options
