-- Lua-side sugar on tensors: methods that compose the C ops. Loaded by jukebox/init.lua;
-- it adds to core.tensor_methods, so every tensor gains these methods.
local core = require "jukebox.core"
local M = core.tensor_methods

-- Comparisons missing from the core, as float 0/1 masks like gt/lt/eq.
function M.ge(a, b) return 1 - core.lt(a, b) end
function M.le(a, b) return 1 - core.gt(a, b) end
function M.ne(a, b) return 1 - core.eq(a, b) end

function M.square(t) return t * t end
M.tolist = M.totable

-- True when every |a - b| <= atol + rtol * |b| (shapes broadcast).
function M.allclose(a, b, rtol, atol)
  rtol, atol = rtol or 1e-5, atol or 1e-8
  if type(b) == "number" then b = core.tensor(b) end
  local ok = core.no_grad(function()
    local lim = core.abs(b) * rtol + atol
    return core.gt(core.abs(a - b), lim):sum():item() == 0
  end)
  return ok
end

-- The smallest and largest value of an int32 tensor (codes), as Lua integers.
function M.int_range(t)
  local f = core.tensor(t, { dtype = "float32" })
  return math.tointeger(f:min():item()), math.tointeger(f:max():item())
end

return {ge = M.ge, le = M.le, ne = M.ne, square = M.square, allclose = M.allclose, int_range = M.int_range}
