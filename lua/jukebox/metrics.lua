--- Evaluation of a trained VQ-VAE over a whole folder: codebook usage per level and
-- reconstruction fidelity per level. All statistics are accumulated over every clip
-- (not one batch).
local core = require "jukebox.core"
local codec = require "jukebox.codec"
local data = require "jukebox.data"
local losses = require "jukebox.losses"

local metrics = {}

--- Statistics of a code histogram (Lua array of counts) and its codebook k [K, D].
function metrics.codebook_stats(counts, k)
  local total, used, sorted = 0, 0, {}
  for i, c in ipairs(counts) do
    total = total + c
    if c > 0 then used = used + 1 end
    sorted[i] = c
  end
  table.sort(sorted, function(a, b) return a > b end)
  local entropy, top10 = 0, 0
  for i, c in ipairs(sorted) do
    if c > 0 then
      local p = c / total
      entropy = entropy - p * math.log(p, 2)
    end
    if i <= 10 then top10 = top10 + c end
  end
  local K = #counts
  local s = {
    codes = K, used = used, usage = used / K, dead = K - used, entropy_bits = entropy,
    perplexity = 2 ^ entropy, top10_share = total > 0 and top10 / total or 0, total = total,
  }
  if k then s.nearest_code_distance = metrics.nearest_code_distance(k) end
  return s
end

--- Mean Euclidean distance from each code to its nearest other code.
function metrics.nearest_code_distance(k)
  return core.no_grad(function()
    local K = k:shape()[1]
    local sq = (k * k):sum(2, true)                          -- [K, 1]
    local d2 = sq + sq:transpose(1, 2) - core.matmul(k, k:transpose(1, 2)) * 2
    -- Mask the diagonal with a large value so a code is not its own neighbour.
    local big = core.full({ K, K }, 1e30)
    local idx = core.arange(0, K, 1)
    local diag = idx:reshape({ K, 1 }):eq(idx:reshape({ 1, K }))
    local masked = core.where(diag, big, d2:clamp(0, math.huge))
    return masked:min(2):sqrt():mean():item()
  end)
end

-- Per-clip fidelity of reconstruction y against x (both [T]).
local function fidelity(x, y)
  local x3, y3 = x:reshape({ 1, 1, -1 }), y:reshape({ 1, 1, -1 })
  local err = y - x
  local sig, noise = (x * x):sum():item(), (err * err):sum():item()
  local sc = losses.spectral_convergence(x3, y3):item()
  return {
    l1 = err:abs():mean():item(),
    l2 = (err * err):mean():item(),
    snr_db = 10 * math.log(math.max(sig, 1e-20) / math.max(noise, 1e-20), 10),
    spectral_convergence = sc,
    multispectral = losses.multispectral(x3, y3):item(),
  }
end

local FIDELITY_KEYS = { "l1", "l2", "snr_db", "spectral_convergence", "multispectral" }
metrics.fidelity_keys = FIDELITY_KEYS

--- Evaluates `model` on every audio file of `dir` (up to max_seconds of audio in all).
-- Returns {levels = {{codebook stats..., fidelity means...}, ...}, clips =, seconds =}.
-- opts: max_seconds, progress(i, n, path), keep (function(path, x, recons, codes)
-- called per clip, e.g. to keep one clip for plots).
function metrics.evaluate(model, dir, opts)
  opts = opts or {}
  local files = data.scan(dir)
  local rate = model.hp.sr
  local L = model.hp.levels
  local counts, sums = {}, {}
  for l = 1, L do
    counts[l] = {}
    for i = 1, model.hp.l_bins do counts[l][i] = 0 end
    sums[l] = {}
    for _, key in ipairs(FIDELITY_KEYS) do sums[l][key] = 0 end
  end
  local seconds, clips = 0, 0
  local budget = opts.max_seconds and opts.max_seconds > 0 and opts.max_seconds or math.huge
  model:eval()
  for i, f in ipairs(files) do
    if seconds >= budget then break end
    local load = { rate = rate, mono = true }
    if seconds + f.seconds > budget then load.seconds = budget - seconds end
    local x = core.audio.load(f.path, load):reshape({ -1 })
    local n = x:numel()
    local codes = codec.encode(model, x)
    local recons = {}
    for l = 1, L do
      local cl = counts[l]
      for _, c in ipairs(codes[l]:totable()) do cl[c + 1] = cl[c + 1] + 1 end
      recons[l] = codec.decode(model, codes[l], l):narrow(1, 1, n)
      local fid = fidelity(x, recons[l])
      for _, key in ipairs(FIDELITY_KEYS) do sums[l][key] = sums[l][key] + fid[key] end
    end
    if opts.keep then opts.keep(f.path, x, recons, codes) end
    clips = clips + 1
    seconds = seconds + n / rate
    if opts.progress then opts.progress(i, #files, f.path) end
    collectgarbage("step", 0)
  end
  if clips == 0 then error(("eval: no clip evaluated from '%s'"):format(dir), 2) end
  local levels = {}
  for l = 1, L do
    local s = metrics.codebook_stats(counts[l], model.bottleneck[l].k)
    for _, key in ipairs(FIDELITY_KEYS) do s[key] = sums[l][key] / clips end
    s.spectral_convergence_db = 20 * math.log(math.max(s.spectral_convergence, 1e-12), 10)
    s.hop_length = model.hop_lengths[l]
    s.counts = counts[l]
    levels[l] = s
  end
  return { levels = levels, clips = clips, seconds = seconds }
end

--- Columns of the printed table: key, header, format.
metrics.table_columns = {
  { "hop_length", "hop", "%d" },
  { "used", "used", "%d" },
  { "usage", "usage", "%.3f" },
  { "dead", "dead", "%d" },
  { "entropy_bits", "H(bits)", "%.2f" },
  { "perplexity", "perplex", "%.1f" },
  { "top10_share", "top10", "%.3f" },
  { "nearest_code_distance", "nn-dist", "%.3g" },
  { "l1", "L1", "%.4f" },
  { "l2", "L2", "%.5f" },
  { "snr_db", "SNR(dB)", "%.2f" },
  { "spectral_convergence", "SC", "%.3f" },
  { "spectral_convergence_db", "SC(dB)", "%.2f" },
  { "multispectral", "multispec", "%.3f" },
}

--- A plain-text table: one row per (checkpoint, level), one column per metric.
function metrics.format_table(results)
  local head = { ("%-14s %5s"):format("checkpoint", "level") }
  for _, c in ipairs(metrics.table_columns) do head[#head + 1] = ("%9s"):format(c[2]) end
  local lines = { table.concat(head, " ") }
  for _, r in ipairs(results) do
    for l, s in ipairs(r.levels) do
      local row = { ("%-14s %5d"):format(r.name:sub(1, 14), l) }
      for _, c in ipairs(metrics.table_columns) do row[#row + 1] = ("%9s"):format(c[3]:format(s[c[1]])) end
      lines[#lines + 1] = table.concat(row, " ")
    end
  end
  return table.concat(lines, "\n")
end

return metrics
