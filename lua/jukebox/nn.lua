--- Neural-network modules: small Lua objects whose hot loops are C ops.
-- A module holds parameters (leaf tensors with requires_grad) and children; its
-- parameter names follow PyTorch's dotted naming so checkpoints map onto the
-- reference model's state dicts.
local core = require "jukebox.core"

local nn = {}

local Module = {}
Module.__index = Module
nn.Module = Module

--- Makes a class that inherits from `parent` (default Module).
function nn.class(name, parent)
  local cls = setmetatable({}, { __index = parent or Module })
  cls.__index = cls
  cls.__name = name
  cls.new = function(...)
    local self = setmetatable({ _params = {}, _children = {}, training = true }, cls)
    self:init(...)
    return self
  end
  return cls
end

function Module:init() end

--- Registers a parameter tensor under `name` (order is kept).
function Module:param(name, t)
  t.requires_grad = true
  self._params[#self._params + 1] = { name = name, tensor = t }
  self[name] = t
  return t
end

--- Registers a child module under `name`.
function Module:child(name, m)
  self._children[#self._children + 1] = { name = name, module = m }
  return m
end

--- Ordered list of {name = "a.b.weight", tensor = t}.
function Module:named_parameters(prefix, out)
  out = out or {}
  prefix = prefix or ""
  for _, p in ipairs(self._params) do out[#out + 1] = { name = prefix .. p.name, tensor = p.tensor } end
  for _, c in ipairs(self._children) do c.module:named_parameters(prefix .. c.name .. ".", out) end
  return out
end

function Module:parameters()
  local out = {}
  for i, p in ipairs(self:named_parameters()) do out[i] = p.tensor end
  return out
end

--- Number of scalar parameters.
function Module:num_parameters()
  local n = 0
  for _, p in ipairs(self:named_parameters()) do n = n + p.tensor:numel() end
  return n
end

function Module:zero_grad()
  for _, p in ipairs(self:named_parameters()) do p.tensor.grad = nil end
end

function Module:train(on)
  if on == nil then on = true end
  self.training = on
  for _, c in ipairs(self._children) do c.module:train(on) end
  return self
end

function Module:eval() return self:train(false) end

function Module:__call(...) return self:forward(...) end

-- A uniform init in [-bound, bound] from a seeded stream, as PyTorch's default
-- (kaiming_uniform with a = sqrt(5) gives bound = 1 / sqrt(fan_in)).
-- `seeds` is a function giving the next seed (nn.seeder), so a model built from one
-- seed is the same on every machine.
local function uniform(shape, bound, seeds)
  local u = core.rand(shape, { seed = seeds and seeds() or nil })
  return (u * (2 * bound) - bound):detach()
end
nn.uniform = uniform

--- A stream of seeds for parameter init: nn.seeder(1)() -> 1000003, ...
function nn.seeder(seed)
  local n = 0
  return function()
    n = n + 1
    return seed * 1000003 + n
  end
end

--- Conv1d(in, out, kernel, {stride=1, padding=0, dilation=1, bias=true, seeds=})
local Conv1d = nn.class("Conv1d")
nn.Conv1d = Conv1d
function Conv1d:init(cin, cout, k, opts)
  opts = opts or {}
  self.stride, self.padding, self.dilation = opts.stride or 1, opts.padding or 0, opts.dilation or 1
  local bound = 1 / math.sqrt(cin * k)
  self:param("weight", uniform({ cout, cin, k }, bound, opts.seeds))
  if opts.bias ~= false then self:param("bias", uniform({ cout }, bound, opts.seeds)) end
end
-- When nn.flops is a table, convolutions add their forward multiply-adds x 2 to
-- nn.flops.forward (the benchmark's FLOP count); nil costs nothing.
nn.flops = nil

function Conv1d:forward(x)
  if nn.flops then
    local s = x:shape()
    local lout = (s[3] + 2 * self.padding - self.dilation * (self.weight:size(3) - 1) - 1) // self.stride + 1
    nn.flops.forward = nn.flops.forward + 2 * s[1] * self.weight:numel() * lout
  end
  return core.conv1d(x, self.weight, self.bias,
    { stride = self.stride, padding = self.padding, dilation = self.dilation })
end

--- ConvTranspose1d(in, out, kernel, {stride=1, padding=0, output_padding=0, bias=true, seeds=})
local ConvTranspose1d = nn.class("ConvTranspose1d")
nn.ConvTranspose1d = ConvTranspose1d
function ConvTranspose1d:init(cin, cout, k, opts)
  opts = opts or {}
  self.stride, self.padding, self.output_padding = opts.stride or 1, opts.padding or 0, opts.output_padding or 0
  -- PyTorch computes fan_in from weight dim 1 (out channels) for transposed convs.
  local bound = 1 / math.sqrt(cout * k)
  self:param("weight", uniform({ cin, cout, k }, bound, opts.seeds))
  if opts.bias ~= false then self:param("bias", uniform({ cout }, bound, opts.seeds)) end
end
function ConvTranspose1d:forward(x)
  if nn.flops then
    local s = x:shape()
    nn.flops.forward = nn.flops.forward + 2 * s[1] * self.weight:numel() * s[3]
  end
  return core.conv_transpose1d(x, self.weight, self.bias,
    { stride = self.stride, padding = self.padding, output_padding = self.output_padding })
end

--- Sequential(m1, m2, ...): children named "0", "1", ... as in PyTorch.
local Sequential = nn.class("Sequential")
nn.Sequential = Sequential
function Sequential:init(...)
  self.layers = {}
  for i, m in ipairs({ ... }) do self:add(m) end
end
function Sequential:add(m)
  self.layers[#self.layers + 1] = m
  self:child(tostring(#self.layers - 1), m)
  return m
end
function Sequential:forward(x)
  for _, m in ipairs(self.layers) do x = m:forward(x) end
  return x
end

--- ReLU as a module, so Sequential indices match the reference's.
local ReLU = nn.class("ReLU")
nn.ReLU = ReLU
function ReLU:forward(x) return x:relu() end

--- Functional forms, PyTorch-like: jbx.nn.functional.conv1d(x, w, b, {stride=...})
nn.functional = {
  conv1d = core.conv1d,
  conv_transpose1d = core.conv_transpose1d,
  relu = function(x) return x:relu() end,
  gelu = function(x) return x:gelu() end,
  softmax = function(x, dim) return x:softmax(dim) end,
  log_softmax = function(x, dim) return x:log_softmax(dim) end,
  layer_norm = core.layer_norm,
  embedding = core.embedding,
}

return nn
