--- Neural-network modules: small Lua objects whose hot loops are C ops.
-- A module holds parameters (leaf tensors with requires_grad) and children; its
-- parameter names follow PyTorch's dotted naming so checkpoints map onto the
-- reference model's state dicts.
local core = require "jukebox.core"
local options = require "jukebox.options"

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
  opts = options.merge("nn.Conv1d", { stride = 1, padding = 0, dilation = 1, bias = true }, opts,
    { optional = { "seeds" } })
  self.stride, self.padding, self.dilation = opts.stride, opts.padding, opts.dilation
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
  opts = options.merge("nn.ConvTranspose1d", { stride = 1, padding = 0, output_padding = 0, bias = true }, opts,
    { optional = { "seeds" } })
  self.stride, self.padding, self.output_padding = opts.stride, opts.padding, opts.output_padding
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

--- ModuleList: children named "0", "1", ... as in PyTorch; no forward of its own.
local ModuleList = nn.class("ModuleList")
nn.ModuleList = ModuleList
function ModuleList:init(...)
  self.items = {}
  for _, m in ipairs({ ... }) do self:add(m) end
end
function ModuleList:add(m)
  self.items[#self.items + 1] = m
  self:child(tostring(#self.items - 1), m)
  return m
end

--- Sequential(m1, m2, ...): children named "0", "1", ... as in PyTorch.
-- A ModuleList that runs its items in turn; `layers` is its `items`.
local Sequential = nn.class("Sequential", nn.ModuleList)
nn.Sequential = Sequential
function Sequential:init(...)
  nn.ModuleList.init(self, ...)
  self.layers = self.items
end
function Sequential:forward(x)
  for _, m in ipairs(self.layers) do x = m:forward(x) end
  return x
end

--- Linear(n_in, n_out, {zero_out=false, init_scale=1, seeds=}): the reference Jukebox's
-- dense layer (transformer/ops.py `Conv1D`): y = x @ w + b over the last dim, any leading
-- dims; w [n_in, n_out] ~ N(0, (0.02 init_scale)^2) (zeros with zero_out), b [n_out] zeros.
local Linear = nn.class("Linear")
nn.Linear = Linear
function Linear:init(n_in, n_out, opts)
  opts = options.merge("nn.Linear", { zero_out = false, init_scale = 1 }, opts, { optional = { "seeds" } })
  self.n_in, self.n_out = n_in, n_out
  local w = opts.zero_out and core.zeros({ n_in, n_out })
    or (core.randn({ n_in, n_out }, { seed = opts.seeds and opts.seeds() or nil }) * (0.02 * opts.init_scale)):detach()
  self:param("w", w)
  self:param("b", core.zeros({ n_out }))
end
function Linear:forward(x)
  local s = x:shape()
  if s[#s] ~= self.n_in then
    error(("nn.Linear: input [%s] must end in %d features"):format(table.concat(s, ", "), self.n_in), 2)
  end
  if nn.flops then nn.flops.forward = nn.flops.forward + 2 * (x:numel() // self.n_in) * self.w:numel() end
  -- One sgemm over all leading dims at once with the bias fused, as the reference's addmm.
  return core.linear(x, self.w, self.b)
end

--- LayerNorm(d, {eps=1e-5}): over the last dim, weight [d] ones and bias [d] zeros.
local LayerNorm = nn.class("LayerNorm")
nn.LayerNorm = LayerNorm
function LayerNorm:init(d, opts)
  opts = options.merge("nn.LayerNorm", { eps = 1e-5 }, opts)
  self.eps = opts.eps
  self:param("weight", core.ones({ d }))
  self:param("bias", core.zeros({ d }))
end
function LayerNorm:forward(x) return core.layer_norm(x, self.weight, self.bias, self.eps) end

--- Embedding(n, d, {init_scale=1, seeds=}): weight [n, d] ~ N(0, (0.02 init_scale)^2), as
-- the reference initialises its embeddings; forward takes int32 ids of any shape -> [..., d].
local Embedding = nn.class("Embedding")
nn.Embedding = Embedding
function Embedding:init(n, d, opts)
  opts = options.merge("nn.Embedding", { init_scale = 1 }, opts, { optional = { "seeds" } })
  self:param("weight", (core.randn({ n, d }, { seed = opts.seeds and opts.seeds() or nil })
    * (0.02 * opts.init_scale)):detach())
end
function Embedding:forward(ids) return core.embedding(self.weight, ids) end

--- Dropout(p, {seed=0}): the identity at p = 0 and in eval mode; in training each
-- element is kept with probability 1 - p and scaled by 1 / (1 - p). Masks come from
-- the module's own core generator (self.rng), so a seeded run repeats them.
local Dropout = nn.class("Dropout")
nn.Dropout = Dropout
function Dropout:init(p, opts)
  opts = options.merge("nn.Dropout", { seed = 0 }, opts)
  if type(p) ~= "number" or p < 0 or p >= 1 then
    error(("nn.Dropout: p must be a number in [0, 1), got %s"):format(tostring(p)), 3)
  end
  self.p = p
  self.rng = core.rng(opts.seed)
end
function Dropout:forward(x)
  if self.p == 0 or not self.training then return x end
  local keep = core.rand(x:shape(), { seed = self.rng:below(1 << 31) }):gt(self.p)
  return x * (keep * (1 / (1 - self.p)))
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
