-- The jukebox module: `local jbx = require "jukebox"`.
-- Tensor functions come from the C core (jbx.tensor, jbx.randn, jbx.matmul, ...; dims are
-- 1-based, see lua/bind/l_tensor.c); the Lua rooms (jbx.nn, jbx.vqvae, jbx.optim, ...) load
-- on first use, so `require "jukebox"` stays cheap and a room's error shows where it is used.
local core = require "jukebox.core"
require "jukebox.tensor" -- methods written in Lua

-- Rooms written in Lua, loaded lazily from lua/jukebox/<name>.lua.
local lazy = {
  nn = true, vqvae = true, optim = true, data = true, metrics = true, plot = true,
  checkpoint = true, cli = true, json = true, losses = true, codec = true, train = true,
  evaluate = true, notebook = true, models = true, options = true, conditioners = true, codes = true,
  labels = true, transformer = true, prior = true, sampler = true,
}

local jbx = {}
for k, v in pairs(core) do
  if not lazy[k] then jbx[k] = v end
end
jbx.core = core
jbx.version = core.version
jbx.audio = core.audio
if jbx.audio == nil then lazy.audio = true end

return setmetatable(jbx, {
  __index = function(t, k)
    if lazy[k] then
      local m = require("jukebox." .. k)
      rawset(t, k, m)
      return m
    end
  end,
})
