--- moonbus.album: an album from its tracks. Sequencing (gaps, overlaps and
-- crossfades, fades, gain offsets), mastering with one chain in album
-- mode (the album meets the target, tracks keep their relative loudness)
-- or track mode (every track meets it), and the delivery files: a CD image
-- (44.1 kHz 16-bit, dithered) with its CUE sheet and cdrdao TOC, the track
-- files for digital release, and a QC report.
--
--   local album = require "moonbus.album"
--   local result = album.make(album.load("night-drive.lua"), { out = "release" })
--
-- The description (a Lua file returning a table):
--   title, performer, upc (UPC-A or EAN-13), target (a delivery target or
--   a LUFS figure; default spotify), lufs, ceiling (overrides), mode
--   ("album" or "track"), chain (a chain script, as moonbus master's), cd
--   (false: no CD image), vinyl ({ mono_below = Hz }), and tracks: a list
--   of { file, title, performer, isrc, gap (s of silence before), crossfade
--   (s, or { length, curve = "equal_power" | "linear" }: overlap with the
--   previous track), fade_in, fade_out (s), gain (dB) }.
--
-- Time line: every track starts on a CD frame (1/75 s: 588 samples at
-- 44.1 kHz, 640 at 48 kHz), so the CUE's indexes are exact and the same
-- layout serves the CD image and the digital masters at any usual rate.

local core = require "moonbus.core"
local master = require "moonbus.master"
local util = require "moonbus.util"

local M = {}

local FPS = 75 -- CD frames per second (IEC 60908)

local function fail(fmt, ...)
  error("album: " .. fmt:format(...), 0)
end

local album_keys = {
  title = true, performer = true, upc = true, target = true, lufs = true,
  ceiling = true, mode = true, chain = true, cd = true, vinyl = true,
  tracks = true, bits = true, rate = true, max_limiting = true,
  dir = true, path = true, -- set by M.load: where the file is
}
local track_keys = {
  file = true, title = true, performer = true, isrc = true, gap = true,
  crossfade = true, fade_in = true, fade_out = true, gain = true,
}
M.curves = { equal_power = true, linear = true }

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end

local function nonneg(x) return type(x) == "number" and x == x and x >= 0 and x < math.huge end

--- Load and check an album description file (`overrides`: keys that
-- replace the file's, from a command line). Returns the album table with
-- resolved paths and every track's length; raises one error naming the
-- first problem (the track by number and title).
function M.load(path, overrides)
  local chunk, err = loadfile(path, "t", {})
  if not chunk then fail("%s", err) end
  local ok, a = pcall(chunk)
  if not ok then fail("%s: %s", path, tostring(a)) end
  if type(a) ~= "table" then fail("%s must return a table (the album)", path) end
  a.dir = dirname(path)
  a.path = path
  -- the command line's settings win over the file's; a target given
  -- there replaces the file's loudness and ceiling too, unless they are
  -- given with it
  overrides = overrides or {}
  if overrides.target ~= nil then
    if overrides.lufs == nil then a.lufs = nil end
    if overrides.ceiling == nil then a.ceiling = nil end
  end
  for k, v in pairs(overrides) do a[k] = v end
  return M.check(a)
end

--- Check an album table (see the top of this file); fills in defaults,
-- lengths and rates. Errors name the track.
function M.check(a)
  local cd = require "moonbus.cdimage"
  local okk, e = pcall(util.check_options, "the album", a, album_keys)
  if not okk then fail("%s", e) end
  local dir = a.dir or "."
  for _, k in ipairs { "title", "performer" } do
    if a[k] ~= nil and type(a[k]) ~= "string" then fail("%s must be text, not a %s", k, type(a[k])) end
  end
  if a.cd ~= nil and type(a.cd) ~= "boolean" then fail("cd must be true or false, not %s", tostring(a.cd)) end
  local function resolve(p) return p:sub(1, 1) == "/" and p or (dir .. "/" .. p) end
  if a.upc ~= nil then
    local norm, why = cd.check_upc(tostring(a.upc))
    if not norm then fail("%s", why) end
    a.catalog = norm
  end
  a.mode = a.mode or "album"
  if a.mode ~= "album" and a.mode ~= "track" then
    fail("mode '%s': use \"album\" (the album meets the target) or \"track\" (each track does)", tostring(a.mode))
  end
  a.target = a.target or "spotify"
  local ok, s = pcall(master.resolve, { target = a.target, lufs = a.lufs, ceiling = a.ceiling,
    bits = a.bits, rate = a.rate })
  if not ok then
    -- master's messages name its command-line flags; here they are keys
    fail("%s", (tostring(s):gsub("^master: ", ""):gsub("%-%-([%a-]+)", function(k) return (k:gsub("%-", "_")) end)))
  end
  if s.lufs == nil then fail("give the album a loudness (target or lufs): the '%s' target keeps each mix's own", s.name) end
  a.settings = s
  if a.chain then
    a.chain_path = resolve(a.chain)
    if not core.stat(a.chain_path) then fail("cannot read the chain script '%s'", a.chain) end
  end
  if type(a.tracks) ~= "table" or #a.tracks == 0 then fail("the album has no tracks") end
  if #a.tracks > 99 then fail("%d tracks: a CD holds at most 99", #a.tracks) end
  for i, t in ipairs(a.tracks) do
    local name = ("track %d%s"):format(i, type(t) == "table" and t.title and (" ('%s')"):format(t.title) or "")
    if type(t) ~= "table" then fail("%s is a %s, not a table", name, type(t)) end
    local okt, et = pcall(util.check_options, name, t, track_keys)
    if not okt then fail("%s", et) end
    t.number, t.name = i, name
    t.trim = nil -- album mode's balance trims start afresh on every check
    if type(t.file) ~= "string" then fail("%s: no file", name) end
    for _, k in ipairs { "title", "performer" } do
      if t[k] ~= nil and type(t[k]) ~= "string" then fail("%s: %s must be text, not a %s", name, k, type(t[k])) end
    end
    t.path = resolve(t.file)
    local okm, m = pcall(core.measure, t.path)
    if not okm then fail("%s: %s", name, tostring(m)) end
    t.duration, t.rate, t.channels, t.loudness = m.duration, m.rate, m.channels, m.integrated
    t.silent = m.sample_peak == -math.huge -- digital silence: a spacer
    if t.channels > 2 then
      fail("%s: '%s' has %d channels; an album is stereo (mono tracks are played on both sides)",
        name, t.file, t.channels)
    end
    if t.isrc ~= nil then
      local norm, why = cd.check_isrc(tostring(t.isrc))
      if not norm then fail("%s: %s", name, why) end
      t.isrc = norm
    end
    for _, k in ipairs { "gap", "fade_in", "fade_out" } do
      if t[k] ~= nil and not nonneg(t[k]) then fail("%s: %s %s must be seconds >= 0", name, k, tostring(t[k])) end
    end
    t.gain = t.gain or 0
    if type(t.gain) ~= "number" or t.gain ~= t.gain or math.abs(t.gain) > 40 then
      fail("%s: gain %s must be dB between -40 and 40", name, tostring(t.gain))
    end
    if t.crossfade ~= nil then
      local x = type(t.crossfade) == "table" and t.crossfade or { length = t.crossfade }
      local okx, ex = pcall(util.check_options, name .. "'s crossfade", x, { length = true, curve = true })
      if not okx then fail("%s", ex) end
      if i == 1 then fail("%s: the first track cannot cross-fade (nothing before it)", name) end
      if not nonneg(x.length) or x.length == 0 then fail("%s: crossfade length must be seconds > 0", name) end
      x.curve = x.curve or "equal_power"
      if not M.curves[x.curve] then fail("%s: crossfade curve '%s' (equal_power or linear)", name, tostring(x.curve)) end
      if t.gap and t.gap > 0 then fail("%s: a gap and a crossfade exclude each other", name) end
      if t.fade_in and t.fade_in > 0 then
        fail("%s: a fade-in and a crossfade exclude each other (the crossfade is its fade-in)", name)
      end
      local prev = a.tracks[i - 1]
      if type(prev) == "table" and prev.fade_out and prev.fade_out > 0 then
        fail("%s: the crossfade is the fade-out of the track before it; remove that track's fade_out", name)
      end
      t.xfade = x
    end
  end
  -- overlaps must fit in the tracks they join; a crossfade's own track is
  -- named first (it is the one whose setting is too long)
  for i, t in ipairs(a.tracks) do
    local prev = a.tracks[i - 1]
    if t.xfade and t.xfade.length >= t.duration then
      fail("%s: the %.2f s crossfade is not shorter than the track (%.2f s)", t.name, t.xfade.length, t.duration)
    end
    if t.xfade and t.xfade.length >= prev.duration then
      fail("%s: the %.2f s crossfade is not shorter than the track before it (%.2f s)", t.name,
        t.xfade.length, prev.duration)
    end
  end
  for i, t in ipairs(a.tracks) do
    local nxt = a.tracks[i + 1]
    local x_in = t.xfade and t.xfade.length or 0
    local x_out = nxt and nxt.xfade and nxt.xfade.length or 0
    if x_in + x_out > t.duration then
      fail("%s: its crossfades (%.2f s in, %.2f s out) are longer than the track (%.2f s)",
        t.name, x_in, x_out, t.duration)
    end
  end
  return a
end

--- The time line in CD frames: per track `index0` (start of its gap, nil
-- without one), `index1` (its first sample), `stop` (frame after its
-- last sample, rounded up), and the album's `frames`. A gap counts from
-- the end of the previous track rounded up to a frame; a crossfade starts
-- the track that many seconds (to the nearest frame) before the previous
-- one ends. The first track's gap is silence at the head of the image.
function M.layout(a)
  local prev_end -- seconds
  local total = 0
  for i, t in ipairs(a.tracks) do
    if i == 1 then
      t.index1 = math.floor((t.gap or 0) * FPS + 0.5)
      t.index0 = t.index1 > 0 and 0 or nil
    elseif t.xfade then
      t.index1 = math.floor((prev_end - t.xfade.length) * FPS + 0.5)
      t.index0 = nil
      t.xfade.frames = math.ceil(prev_end * FPS - 1e-9) - t.index1
    else
      local after = math.ceil(prev_end * FPS - 1e-9)
      local gap = math.floor((t.gap or 0) * FPS + 0.5)
      t.index0 = gap > 0 and after or nil
      t.index1 = after + gap
    end
    t.start = t.index1 / FPS -- s
    prev_end = t.start + t.duration
    t.stop = math.ceil(prev_end * FPS - 1e-9)
    total = math.max(total, t.stop)
  end
  a.frames = total
  return a
end

-- ---- assembly -------------------------------------------------------------

-- Gain envelope of a fade in dB, as automation points from `t0` over `len`
-- seconds; `rising` for a fade-in. Equal power: sin/cos of a quarter turn
-- (the two sides' powers sum to 1, so uncorrelated material keeps its
-- level); linear: amplitude ramps (correlated material keeps its level).
-- 64 segments, linear in dB between them.
local function fade_points(points, t0, len, rising, curve, base)
  local n = 64
  for k = 0, n do
    local x = k / n
    local u = rising and x or 1 - x
    local g = curve == "linear" and u or math.sin(u * math.pi / 2)
    local db = g > 1e-6 and 20 * math.log(g, 10) or -120
    points[#points + 1] = { t0 + x * len, math.max(-120, db + base) }
  end
end

-- A fade as a function of time: dB at t (0 dB outside it), from the
-- points fade_points gives.
local function fade_fn(t0, len, rising, curve)
  local pts = {}
  fade_points(pts, t0, len, rising, curve, 0)
  return pts, function(t)
    if t <= pts[1][1] then return pts[1][2] end
    if t >= pts[#pts][1] then return pts[#pts][2] end
    local k = math.min(#pts - 1, math.floor((t - t0) / len * (#pts - 1)) + 1)
    local p, q = pts[k], pts[k + 1]
    return p[2] + (q[2] - p[2]) * (t - p[1]) / (q[1] - p[1])
  end
end

-- The envelope of track t (absolute seconds on the album's time line):
-- its gain, times its fade-in (or the crossfade in) and its fade-out (or
-- the next track's crossfade), added in dB where they meet on a short
-- track.
local function envelope(a, i)
  local t = a.tracks[i]
  local nxt = a.tracks[i + 1]
  local t0, t1 = t.start, t.start + t.duration
  local base = t.gain + (t.trim or 0) -- trim: album mode's balance correction
  local fades = {}
  if t.xfade then
    fades[#fades + 1] = { fade_fn(t0, t.xfade.frames / FPS, true, t.xfade.curve) }
  elseif t.fade_in and t.fade_in > 0 then
    fades[#fades + 1] = { fade_fn(t0, math.min(t.fade_in, t.duration), true, "equal_power") }
  end
  if nxt and nxt.xfade then
    local len = nxt.xfade.frames / FPS
    fades[#fades + 1] = { fade_fn(t1 - len, len, false, nxt.xfade.curve) }
  elseif t.fade_out and t.fade_out > 0 then
    local len = math.min(t.fade_out, t.duration)
    fades[#fades + 1] = { fade_fn(t1 - len, len, false, "equal_power") }
  end
  local times = { t0 }
  for _, f in ipairs(fades) do
    for _, p in ipairs(f[1]) do times[#times + 1] = p[1] end
  end
  table.sort(times)
  local out = {}
  for _, x in ipairs(times) do
    if #out == 0 or x > out[#out][1] then
      local db = base
      for _, f in ipairs(fades) do db = db + f[2](x) end
      out[#out + 1] = { x, math.max(-120, db) }
    end
  end
  return out
end

--- Render the sequence into `path` (32-bit float at `rate`): the tracks
-- placed on the time line with their fades and gains, summed. Options:
-- `which` (list of track numbers, default all), `alone` (one track, at
-- time 0, as long as itself: track mode's premaster), `vinyl_mono_below`
-- (Hz: the low end made mono) and `windows` (list of { path, from,
-- length } in seconds: more float files cut from the same render).
function M.assemble(a, path, rate, opts)
  opts = opts or {}
  local which = opts.which
  if not which then
    which = {}
    for i in ipairs(a.tracks) do which[i] = i end
  end
  local shift, duration = 0, a.frames / FPS
  if opts.alone then
    local t = a.tracks[which[1]]
    shift, duration = t.start, t.duration
  end
  local g = core.graph(rate, nil)
  local sum = g:add("gain", { name = "sum", gain = 0 })
  for _, i in ipairs(which) do
    local t = a.tracks[i]
    local src = g:add("input", { name = ("track%d"):format(i), path = t.path, start = t.start - shift })
    if t.channels == 1 then
      -- a mono track plays on both sides, at its own level
      local both = g:add("merge", { name = ("stereo%d"):format(i) })
      g:connect(src, both, "in")
      g:connect(src, both, "in2")
      src = both
    end
    local env = g:add("gain", { name = ("env%d"):format(i), gain = t.gain + (t.trim or 0) })
    local pts = envelope(a, i)
    for _, p in ipairs(pts) do p[1] = p[1] - shift end
    env:automate("gain", pts)
    g:chain(src, env, sum)
  end
  local last = sum
  if opts.vinyl_mono_below then
    last = g:chain(sum, g:add("width", { name = "vinyl", width = 1, mono_below = opts.vinyl_mono_below }))
  end
  g:connect(last, g:add("output", { path = path, bits = 32 }))
  for _, w in ipairs(opts.windows or {}) do
    g:connect(last, g:add("output", { path = w.path, bits = 32, from = w.from, length = w.length or 0 }))
  end
  g:render { progress = false, duration = duration }
  g:close()
end

-- ---- mastering and delivery -------------------------------------------------

--- The chain the tracks are mastered with: the album's `chain` script
-- (loaded as moonbus master loads one, with mb.master.CHAIN_ONLY) or
-- scripts/master.lua's.
function M.chain_of(a)
  if not a.chain_path then return master.default_chain end
  local f, err = loadfile(a.chain_path)
  if not f then fail("cannot load the chain: %s", err) end
  local okc, chain = pcall(f, master.CHAIN_ONLY)
  if not okc then fail("the chain script '%s': %s", a.chain, tostring(chain)) end
  if type(chain) ~= "function" then
    fail("the chain script '%s' must return its chain function when loaded with mb.master.CHAIN_ONLY", a.chain)
  end
  return chain
end

--- A track's file name: "NN Title.wav", with the characters file systems
-- or shells trip on replaced by "-".
function M.track_file(t)
  local title = t.title and t.title:gsub("[%c/\\:*?\"<>|]", "-"):gsub("^[%s.]+", "") or ""
  -- file names stop at 255 bytes: keep 200 of the title, cut between
  -- UTF-8 characters
  if #title > 200 then
    local cut = 200
    while cut > 0 and title:byte(cut + 1) and title:byte(cut + 1) >= 0x80 and title:byte(cut + 1) < 0xC0 do
      cut = cut - 1
    end
    title = title:sub(1, cut)
  end
  return title ~= "" and ("%02d %s.wav"):format(t.number, title) or ("%02d.wav"):format(t.number)
end

-- The CD image's description for moonbus.cdimage (file "album.wav").
local function cd_album(a)
  local tracks = {}
  for i, t in ipairs(a.tracks) do
    tracks[i] = { title = t.title, performer = t.performer, isrc = t.isrc,
      index0 = t.index0, index1 = t.index1 }
  end
  return { title = a.title, performer = a.performer, catalog = a.catalog,
    file = "album.wav", frames = a.frames, tracks = tracks }
end

-- Where a track's digital file lies on the time line (s): from its INDEX 01
-- to the next track's INDEX 01 (a gap ends the track before it, as
-- cuebreakpoints splits an image), the last to the end.
local function window(a, i)
  local t, nxt = a.tracks[i], a.tracks[i + 1]
  return t.index1 / FPS, nxt and (nxt.index1 - t.index1) / FPS or 0
end

-- The gaps as digital silence. The chain rings on after a track ends (a
-- high-pass filter's tail, a few hundred samples under 1 %); a gap must
-- hold nothing but zeros, as a plant's and a player's silence detection
-- expect. Per gap: a raised-cosine fade from the end of the track before
-- it to the gap's first frame (only the ringing is there), then zeros up
-- to the next INDEX 01; the same fade after the last track. A `lua` node
-- that touches only the blocks a gap crosses.
local function gap_gate(g, a, rate)
  local spf = rate / FPS
  local function at(frames) return math.floor(frames * spf + 0.5) end
  local function track_end(t) return math.floor(t.start * rate + 0.5) + math.floor(t.duration * rate + 0.5) end
  local regions = {} -- { fade from, zeros from, zeros to } in samples
  for i, t in ipairs(a.tracks) do
    if t.silent and not t.xfade and not (a.tracks[i + 1] and a.tracks[i + 1].xfade) then
      -- a spacer track of digital silence stays so: a gap of its own
      local prev, nxt = a.tracks[i - 1], a.tracks[i + 1]
      local zero = at(t.index0 or t.index1)
      regions[#regions + 1] = { prev and math.min(zero, track_end(prev)) or zero, zero,
        nxt and at(nxt.index0 or nxt.index1) or at(a.frames) }
    elseif t.index0 then
      local zero = at(t.index0)
      local prev = a.tracks[i - 1]
      regions[#regions + 1] = { prev and math.min(zero, track_end(prev)) or zero, zero, at(t.index1) }
    end
  end
  local last, stop = a.tracks[#a.tracks], at(a.frames)
  regions[#regions + 1] = { math.min(stop, track_end(last)), stop, stop }
  local cos, pi, max, min = math.cos, math.pi, math.max, math.min
  return g:add("lua", { name = "gaps", process = function(block)
    local p0 = math.floor(block.time * rate + 0.5)
    local p1 = p0 + block.frames
    for _, r in ipairs(regions) do
      local fade, zero, stop_at = r[1], r[2], r[3]
      if fade < p1 and stop_at > p0 then
        for c = 1, block.channels do
          local ch = block[c]
          for p = max(fade, p0), min(stop_at, p1) - 1 do
            ch[p - p0 + 1] = p >= zero and 0 or ch[p - p0 + 1] * (0.5 + 0.5 * cos(pi * (p - fade + 0.5) / (zero - fade)))
          end
        end
      end
    end
  end })
end

-- Render mastered material on the time line: `inputs` ({ path, start })
-- summed, the gaps made digital silence, through a true-peak limiter at
-- `ceiling` when one is given (a sum of overlaps or a resampled master
-- may peak higher than what was mastered), dithered to `bits` (silence
-- stays silence), into `outputs` ({ path, from, length }).
local function render_sequence(a, inputs, rate, bits, ceiling, outputs, duration)
  local g = core.graph(rate, nil)
  local last = g:add("gain", { name = "sum", gain = 0 })
  for i, x in ipairs(inputs) do
    g:connect(g:add("input", { name = ("master%d"):format(i), path = x.path, start = x.start or 0 }), last)
  end
  last = g:chain(last, gap_gate(g, a, rate))
  if ceiling then
    last = g:chain(last, g:add("limiter", { name = "limiter", ceiling = ceiling, release = 100, true_peak = true }))
  end
  if bits < 32 then last = g:chain(last, g:add("dither", { name = "dither", bits = bits, blank = true })) end
  for _, w in ipairs(outputs) do
    g:connect(last, g:add("output", { path = w.path, bits = bits, from = w.from or 0, length = w.length or 0 }))
  end
  g:render { progress = false, duration = duration }
  g:close()
end

--- Album mode's balance: at most this many masterings, until every
-- track's loudness moves within `balance_tolerance` LU of the mean move.
M.balance_rounds = 5
--- dB the mastering ceiling sits under the target's when the files are
-- dithered integers (see M.make).
M.dither_margin = 0.01
M.balance_tolerance = 0.05

local finite = util.finite

-- ---- vinyl -------------------------------------------------------------------

--- Vinyl house rules (dB), edit here. A lathe cuts the side signal as
-- vertical groove motion: side energy in the bass makes the groove too
-- deep or lifts the stylus, so mastering for vinyl makes the low end mono.
-- High-frequency energy at high level (sibilance, cymbals) asks more
-- stylus acceleration than a cutter head gives and distorts, worst near
-- the label where the groove runs slowest.
M.vinyl_limits = {
  lf_freq = 150,       -- Hz: "the low end"
  side_lf_warn = -15,  -- side below lf_freq within this of the mid's
  sib_lo = 5000, sib_hi = 10000, -- Hz: the sibilance band
  sib_warn = -6,       -- loudest 400 ms of the band vs the track's loudness
  side_minutes = 22,   -- a 12" side at 33 1/3 past this loses level
}

-- The vinyl figures of one file: loudness of the side and of the mid
-- below lf_freq (K-weighted, as the meter measures), and the loudest
-- 400 ms of the sibilance band.
local function vinyl_figures(path)
  local V = M.vinyl_limits
  local g = core.graph(nil, nil)
  local src = g:add("input", { path = path })
  local function lowpass() return g:add("eq", { bands = { { type = "lowpass", freq = V.lf_freq, slope = 24 } } }) end
  local meters = {}
  local info = core.measure(path)
  if info.channels == 2 then
    local ms = g:chain(src, g:add("ms_encode", {}))
    meters.mid = g:add("meter", { true_peak = false })
    meters.side = g:add("meter", { true_peak = false })
    g:chain(ms, g:add("channels", { first = 1 }), lowpass(), meters.mid)
    g:chain(ms, g:add("channels", { first = 2 }), lowpass(), meters.side)
  end
  meters.sib = g:add("meter", { true_peak = false })
  g:chain(src, g:add("eq", { bands = {
    { type = "highpass", freq = V.sib_lo, slope = 24 }, { type = "lowpass", freq = V.sib_hi, slope = 24 } } }),
    meters.sib)
  g:render { progress = false }
  local r = {}
  for k, m in pairs(meters) do r[k] = m:results() end
  g:close()
  return r
end

-- Add the vinyl checks to a track's record.
local function vinyl_checks(rec, path)
  local V = M.vinyl_limits
  local f = vinyl_figures(path)
  local side_lf
  if f.side then
    local s, m = f.side.integrated, f.mid.integrated
    side_lf = not finite(s) and -math.huge or (finite(m) and s - m or 0)
  end
  rec.checks[#rec.checks + 1] = { name = "vinyl_side_lf", label = ("Vinyl: side below %d Hz"):format(V.lf_freq),
    value = side_lf, unit = "dB", expect = ("< %g vs mid"):format(V.side_lf_warn),
    verdict = (side_lf == nil or side_lf < V.side_lf_warn) and "pass" or "warn" }
  local loud = rec.after and rec.after.integrated
  local sib = finite(f.sib.momentary_max) and finite(loud) and f.sib.momentary_max - loud or -math.huge
  rec.checks[#rec.checks + 1] = { name = "vinyl_sibilance", label = ("Vinyl: %g-%g kHz peaks"):format(
      V.sib_lo / 1000, V.sib_hi / 1000), value = sib, unit = "LU", expect = ("< %g vs track"):format(V.sib_warn),
    verdict = sib < V.sib_warn and "pass" or "warn" }
  rec.vinyl = { side_lf = side_lf, sibilance = sib }
  if rec.verdict == "pass" then
    for _, c in ipairs(rec.checks) do
      if c.verdict == "warn" then rec.verdict = "warn" end
    end
  end
end

-- Sides of the record: the track counts given, or two sides split where
-- the running time passes half. Per side its length, the order given and
-- the order suggested: louder, then more dynamic, tracks first (the
-- outer grooves run fastest and cut cleanest).
local function vinyl_sides(a, records)
  local counts = a.vinyl.sides
  local n = #a.tracks
  if not counts then
    local total, run = 0, 0
    for _, t in ipairs(a.tracks) do total = total + t.duration end
    local first = n
    for i, t in ipairs(a.tracks) do
      run = run + t.duration
      if run >= total / 2 then first = i; break end
    end
    if first == n and n > 1 then first = n - 1 end
    counts = n > 1 and { first, n - first } or { 1 }
  end
  local sides, notes, k = {}, {}, 0
  for si, c in ipairs(counts) do
    local side = { name = string.char(64 + si), tracks = {}, minutes = 0 }
    for _ = 1, c do
      k = k + 1
      side.tracks[#side.tracks + 1] = k
      side.minutes = side.minutes + a.tracks[k].duration / 60
    end
    local order = {}
    for i, x in ipairs(side.tracks) do order[i] = x end
    local function fig(x, key)
      local v = records[x].after and records[x].after[key]
      return type(v) == "number" and v == v and v > -math.huge and v or -math.huge
    end
    table.sort(order, function(p, q)
      local lp, lq = fig(p, "integrated"), fig(q, "integrated")
      if math.abs(lp - lq) > 0.5 then return lp > lq end
      local rp, rq = fig(p, "lra"), fig(q, "lra")
      if rp ~= rq then return rp > rq end
      return p < q
    end)
    side.suggested = order
    local same = true
    for i = 1, #order do same = same and order[i] == side.tracks[i] end
    if not same then
      local names = {}
      for i, x in ipairs(order) do names[i] = ("%d"):format(x) end
      notes[#notes + 1] = ("Vinyl side %s: louder, more dynamic tracks cut best on the outer grooves; consider the order %s."):format(
        side.name, table.concat(names, ", "))
    end
    if side.minutes > M.vinyl_limits.side_minutes then
      notes[#notes + 1] = ("Vinyl side %s runs %.1f min: past %g min a 12-inch side at 33 1/3 is cut quieter."):format(
        side.name, side.minutes, M.vinyl_limits.side_minutes)
    end
    sides[si] = side
  end
  return sides, notes
end

local function check_vinyl(a)
  local v = a.vinyl
  if v == nil or v == false then a.vinyl = nil; return end
  if v == true then v = {}; a.vinyl = v end
  local okk, e = pcall(util.check_options, "vinyl", v, { mono_below = true, sides = true })
  if not okk then fail("%s", e) end
  if v.mono_below ~= nil and not (type(v.mono_below) == "number" and v.mono_below >= 20 and v.mono_below <= 500) then
    fail("vinyl: mono_below %s must be Hz between 20 and 500", tostring(v.mono_below))
  end
  if v.sides ~= nil then
    local sum = 0
    if type(v.sides) ~= "table" or #v.sides == 0 then fail("vinyl: sides must list the tracks per side, e.g. { 5, 4 }") end
    for _, c in ipairs(v.sides) do
      if math.type(c) ~= "integer" or c < 1 then fail("vinyl: sides %s: give whole track counts >= 1", tostring(c)) end
      sum = sum + c
    end
    if sum ~= #a.tracks then fail("vinyl: sides hold %d tracks, the album has %d", sum, #a.tracks) end
  end
end

-- ---- the whole job ---------------------------------------------------------------

-- Remove what a killed run left in `dir`: our hidden work files
-- (".moonbus-album-PID-N.ext", and the sound writer's ".NAME.moonbus-PID-
-- N.tmp" of those) and work folders (".moonbus-album-work-PID"), only
-- when process PID is gone: a run working in the same folder keeps its
-- own. Nothing else is touched.
local function sweep(dir)
  for _, name in ipairs(core.listdir(dir) or {}) do
    local wpid = name:match("^%.moonbus%-album%-work%-(%d+)$")
    local fpid = name:match("^%.moonbus%-album%-(%d+)%-%d+%.%w+$")
      or name:match("^%.%.moonbus%-album%-(%d+)%-%d+%.%w+%.moonbus%-%d+%-%d+%.tmp$")
    if wpid and not core.alive(tonumber(wpid)) then
      local sub = dir .. "/" .. name
      for _, f in ipairs(core.listdir(sub) or {}) do os.remove(sub .. "/" .. f) end
      os.remove(sub)
    elseif fpid and not core.alive(tonumber(fpid)) then
      os.remove(dir .. "/" .. name)
    end
  end
end

-- A short hidden name beside `path` (a long title must not push the work
-- name past the file system's 255 bytes).
local hidden_count = 0
local function hidden(path)
  local dir, base = path:match("^(.*)/([^/]*)$")
  local ext = base:match("%.[^.]*$") or ""
  hidden_count = hidden_count + 1
  return ("%s/.moonbus-album-%d-%d%s"):format(dir, core.pid(), hidden_count, ext)
end

-- The outputs a previous run delivered into `out` (from its report), as
-- paths, so that a new run can remove those it does not deliver again.
local function previous_outputs(out)
  local rep = require("moonbus.batch").read_json(out .. "/qc/report.json")
  local list = {}
  if type(rep) == "table" and type(rep.delivered) == "table" then
    for _, rel in ipairs(rep.delivered) do
      if type(rel) == "string" and not rel:find("%.%.") and rel:sub(1, 1) ~= "/" then
        list[#list + 1] = out .. "/" .. rel
      end
    end
  end
  return list
end

--- Master and deliver the album `a` (from M.load). Options: out (folder,
-- default: the album file's name without .lua, beside it), mode ("album"
-- or "track", overrides the file's), log (function(line)). Writes
--   out/album.wav, album.cue, album.toc   the CD image (unless cd = false)
--   out/tracks/NN Title.wav               the digital release
--   out/qc/report.json, report.html       the QC report
-- Everything is rendered under hidden names and renamed into place only
-- when all of it is done: a failure leaves the folder as it was. Returns
-- a summary (the QC counts, `failures`, `files`, `records`).
function M.make(a, o)
  o = o or {}
  local function log(fmt, ...) if o.log then o.log(fmt:format(...)) end end
  if o.mode then
    if o.mode ~= "album" and o.mode ~= "track" then
      fail("mode '%s': use \"album\" or \"track\"", tostring(o.mode))
    end
    a.mode = o.mode
  end
  check_vinyl(a)
  for _, t in ipairs(a.tracks) do t.trim = nil end
  M.layout(a)
  local cd = require "moonbus.cdimage"
  local want_cd = a.cd ~= false
  -- the sheets first, with or without a CD: their rules (tracks of 4 s
  -- or more, 99 minutes, text) fail before any rendering, and keep the
  -- track files of a digital-only album apart too
  local sheet = cd_album(a)
  if not want_cd then
    -- no disc: CD-TEXT's rules (all titles or none) do not apply
    sheet.title, sheet.performer = nil, nil
    for _, t in ipairs(sheet.tracks) do t.title, t.performer = nil, nil end
  end
  local cue_text, toc_text = cd.cue(sheet), cd.toc(sheet)
  local s = a.settings
  local rate = s.rate or a.tracks[1].rate
  local bits = s.bits
  local chain = M.chain_of(a)
  local out = o.out or (a.path and a.path:gsub("%.lua$", "") ~= a.path and a.path:gsub("%.lua$", ""))
    or fail("give an output folder")
  if out == "" then fail("the output folder is an empty name") end
  out = out:gsub("(.)/+$", "%1")
  local tracks_dir = out .. "/tracks"

  -- what will be written, and where it waits until everything is done
  local files = {}
  local function plan_file(path) local f = { path = path, tmp = hidden(path) }; files[#files + 1] = f; return f end
  local digital = {}
  for i, t in ipairs(a.tracks) do
    digital[i] = plan_file(tracks_dir .. "/" .. M.track_file(t))
    local from, length = window(a, i)
    digital[i].from, digital[i].length = from, length
  end
  local image, cue_file, toc_file
  if want_cd then
    image = plan_file(out .. "/album.wav")
    cue_file, toc_file = plan_file(out .. "/album.cue"), plan_file(out .. "/album.toc")
  end
  local report_json, report_html = plan_file(out .. "/qc/report.json"), plan_file(out .. "/qc/report.html")
  for _, f in ipairs(files) do
    for _, t in ipairs(a.tracks) do
      if core.same_file(f.path, t.path) then fail("%s: its file '%s' would be overwritten by an output; choose another --out", t.name, t.file) end
    end
    local st = core.stat(f.path)
    if st and st.type ~= "file" then fail("cannot write '%s': something that is not a file is in its place", f.path) end
  end
  -- folders: made now, removed again if the run fails and they stay empty
  local made = {}
  for _, d in ipairs { out, tracks_dir, out .. "/qc" } do
    if not core.stat(d) then made[#made + 1] = d end
    local ok, err = core.mkdir(d)
    if not ok then fail("%s", err) end
  end
  sweep(out)
  sweep(tracks_dir)
  sweep(out .. "/qc")
  local stale = previous_outputs(out)

  local work = ("%s/.moonbus-album-work-%d"):format(out, core.pid())
  local ok0, err0 = core.mkdir(work)
  if not ok0 then fail("%s", err0) end
  local function cleanup()
    for _, f in ipairs(files) do os.remove(f.tmp) end
    for _, name in ipairs(core.listdir(work) or {}) do os.remove(work .. "/" .. name) end
    os.remove(work)
  end
  local function abandon(err)
    cleanup()
    for k = #made, 1, -1 do os.remove(made[k]) end -- only if empty
    error(err, 0)
  end

  local ok, result = pcall(function()
    local duration = a.frames / FPS
    local mono = a.vinyl and a.vinyl.mono_below
    -- Dither after the limiter adds up to 2 LSB to a peak: at 16 bits
    -- 0.0006 dB at -1 dBTP. Limit 0.01 dB lower, so that the integer
    -- files keep under the ceiling too.
    local ceiling = (bits < 32 or want_cd) and s.ceiling - M.dither_margin or s.ceiling
    local deliver = {
      target = s.name ~= "custom" and s.name or s.lufs, lufs = s.lufs, ceiling = ceiling,
      bits = 32, rate = rate, chain = chain, max_limiting = a.max_limiting, progress = false,
    }
    local function master_one(input, output, what)
      local d = {}
      for k, v in pairs(deliver) do d[k] = v end
      d.input, d.output = input, output
      d.trace = require("moonbus.batch").trace_step(core.measure(input).duration)
      d.log = function(line) log("%s: %s", what, line) end
      local okm, rep = pcall(master.deliver, d)
      if not okm then
        local msg = tostring(rep):gsub("^master: ", ""):gsub("'" .. work:gsub("%p", "%%%0") .. "/[^']*'", "its premaster")
        fail("%s: %s", what, msg)
      end
      return rep
    end
    local pre, masters, reports, inputs = {}, {}, {}, {}
    local overlaps = false
    for _, t in ipairs(a.tracks) do overlaps = overlaps or t.xfade ~= nil end
    local ceiling_cd
    if a.mode == "album" then
      -- the album as one programme: the chain's trim is solved for the
      -- whole, so every track moves by the same gain
      local premaster = work .. "/premaster.wav"
      local wins, mwins = {}, {}
      for i in ipairs(a.tracks) do
        pre[i] = ("%s/pre-%02d.wav"):format(work, i)
        local from, length = window(a, i)
        wins[i] = { path = pre[i], from = from, length = length }
        mwins[i] = { path = ("%s/mw-%02d.wav"):format(work, i), from = from, length = length }
      end
      -- The chain's dynamics work harder on the loud tracks, so one trim
      -- alone would narrow the album's loudness steps. Measure each
      -- track's change in the master and trim the tracks that moved more
      -- or less than the mean against it, until all move alike.
      local pre_loud, trims = {}, {}
      reports.pre_loud = pre_loud
      for round = 1, M.balance_rounds do
        log("assembling the sequence%s", round > 1 and (" (balance round %d)"):format(round) or "")
        M.assemble(a, premaster, rate, { vinyl_mono_below = mono, windows = round == 1 and wins or nil })
        if round == 1 then
          for i in ipairs(a.tracks) do pre_loud[i] = core.measure(pre[i]).integrated end
          reports.premaster_before = core.analyse(premaster)
        end
        log("mastering the album")
        reports.album = master_one(premaster, work .. "/master.wav", "the album")
        render_sequence(a, { { path = work .. "/master.wav" } }, rate, 32, nil, mwins, duration)
        local dev, sum, n = {}, 0, 0
        for i in ipairs(a.tracks) do
          local l = core.measure(mwins[i].path).integrated
          if finite(l) and finite(pre_loud[i]) then
            dev[i] = l - pre_loud[i]
            sum, n = sum + dev[i], n + 1
          end
        end
        local mean = n > 0 and sum / n or 0
        local worst = 0
        for i in pairs(dev) do worst = math.max(worst, math.abs(dev[i] - mean)) end
        reports.shift, reports.balance_error, reports.rounds = mean, worst, round
        log("balance: tracks move %+.2f dB, the farthest %.2f LU from that", mean, worst)
        if worst <= M.balance_tolerance or round == M.balance_rounds then break end
        for i, d in pairs(dev) do
          a.tracks[i].trim = (a.tracks[i].trim or 0) - (d - mean)
          trims[i] = a.tracks[i].trim
        end
      end
      inputs = { { path = work .. "/master.wav", start = 0 } }
      reports.premaster = premaster
      ceiling_cd = rate ~= cd.RATE and ceiling or nil
    else
      -- each track meets the target alone, its fades and gain included
      for i, t in ipairs(a.tracks) do
        pre[i] = ("%s/pre-%02d.wav"):format(work, i)
        log("mastering %s", t.name)
        M.assemble(a, pre[i], rate, { which = { i }, alone = true, vinyl_mono_below = mono })
        if finite(core.measure(pre[i]).integrated) then
          masters[i] = ("%s/master-%02d.wav"):format(work, i)
          reports[i] = master_one(pre[i], masters[i], t.name)
        else
          -- silence (a spacer track): nothing to master
          masters[i], reports[i] = pre[i], { gain = 0, max_gain_reduction = 0, passes = 0 }
        end
        inputs[i] = { path = masters[i], start = t.start }
      end
      -- the unmastered sequence too, as the CD image's "before" in QC
      reports.premaster = work .. "/premaster.wav"
      M.assemble(a, reports.premaster, rate, { vinyl_mono_below = mono })
      reports.premaster_before = core.analyse(reports.premaster)
      ceiling_cd = (overlaps or rate ~= cd.RATE) and ceiling or nil
    end
    local ceiling_digital = a.mode == "track" and overlaps and ceiling or nil
    local outs = {}
    for i, f in ipairs(digital) do outs[i] = { path = f.tmp, from = f.from, length = f.length } end
    if want_cd and rate == cd.RATE and bits == 16 then
      -- the digital tracks are the CD's: cut them from the image's render
      outs[#outs + 1] = { path = image.tmp }
      log("writing the CD image and the tracks")
      render_sequence(a, inputs, rate, bits, ceiling_cd, outs, duration)
    else
      log("writing the tracks")
      render_sequence(a, inputs, rate, bits, ceiling_digital, outs, duration)
      if want_cd then
        log("writing the CD image")
        render_sequence(a, inputs, cd.RATE, 16, ceiling_cd, { { path = image.tmp } }, duration)
      end
    end
    if want_cd then
      for _, x in ipairs { { cue_file, cue_text }, { toc_file, toc_text } } do
        local f = assert(io.open(x[1].tmp, "w"))
        f:write(x[2])
        f:close()
      end
    end
    return { pre = pre, reports = reports }
  end)
  if not ok then abandon(result) end

  -- QC of what is about to be delivered
  local batch = require "moonbus.batch"
  local function master_facts(rep)
    return { gain = rep.gain, max_gain_reduction = rep.max_gain_reduction,
      compressor_gain_reduction = rep.compressor_gain_reduction, passes = rep.passes,
      limiter_ceiling = rep.limiter_ceiling }
  end
  local records, notes_early = {}, {}
  local okq, qerr = pcall(function()
    local album_rep = result.reports.album
    local shift = result.reports.shift
    for i, t in ipairs(a.tracks) do
      log("checking %s", t.name)
      local before = core.analyse(result.pre[i])
      local after = core.analyse(digital[i].tmp)
      before.path, after.path = t.path, digital[i].path
      local rep = result.reports[i] or album_rep
      local target
      if not finite(before.integrated) then
        -- a silent (spacer) track: nothing to meet
        target = { name = "silence", lufs = nil, lufs_note = "silent track", ceiling = s.ceiling,
          bits = bits, rate = rate }
      elseif a.mode == "album" then
        -- each track keeps its place relative to the album
        target = { name = "album", lufs = before.integrated + shift, ceiling = s.ceiling, bits = bits, rate = rate }
      else
        target = { name = s.name == "custom" and ("%g LUFS"):format(s.lufs) or s.name, lufs = s.lufs,
          ceiling = s.ceiling, bits = bits, rate = rate }
      end
      local rec = { id = ("track-%02d"):format(i), line = i, input = t.file,
        output = "tracks/" .. M.track_file(t), title = t.title, isrc = t.isrc,
        status = "done", target = target, before = before, after = after }
      rec.checks, rec.verdict = batch.qc(after, before, target)
      target.lufs_note = nil
      rec.master = master_facts(rep)
      rec.master.balance_trim = t.trim
      local tr = rep.gr_trace
      if tr and a.mode == "album" then
        -- the album's gain reduction over this track's window
        local from, length = window(a, i)
        local first = math.floor(from / tr.interval) + 1
        local last = length > 0 and math.floor((from + length) / tr.interval) or #tr.values
        local v = {}
        for k = first, math.min(last, #tr.values) do v[#v + 1] = tr.values[k] end
        rec.gr = { interval = tr.interval, values = v }
      else
        rec.gr = tr
      end
      if a.vinyl then vinyl_checks(rec, digital[i].tmp) end
      records[i] = rec
    end
    if a.mode == "album" and result.reports.balance_error > M.balance_tolerance then
      notes_early[#notes_early + 1] = ("The tracks' loudness steps moved up to %.2f LU in mastering (balanced to %.2f LU at most after %d masterings): the chain's dynamics work very unevenly on this album."):format(
        result.reports.balance_error, M.balance_tolerance, result.reports.rounds)
    end
    if want_cd then
      log("checking the CD image")
      local after = core.analyse(image.tmp)
      local before = result.reports.premaster_before or {}
      before.path, after.path = nil, image.path
      local target = { name = "CD", lufs = a.mode == "album" and s.lufs or nil,
        lufs_note = "each track at its target", ceiling = s.ceiling, bits = 16, rate = cd.RATE }
      local rec = { id = "album", input = a.path and a.path:match("[^/]*$") or "album", output = "album.wav",
        status = "done", target = target, before = before, after = after }
      rec.checks, rec.verdict = batch.qc(after, before, target)
      target.lufs_note = nil
      if after.channels ~= 2 then
        rec.checks[#rec.checks + 1] = { name = "channels", label = "Channels", value = after.channels,
          unit = "", expect = "2", verdict = "fail" }
        rec.verdict = "fail"
      end
      if album_rep then
        rec.master = master_facts(album_rep)
        rec.gr = album_rep.gr_trace
      end
      records[#records + 1] = rec
    end
  end)
  if not okq then abandon(qerr) end

  local meta = { title = ("moonbus album: %s"):format(a.title or (a.path or "album")),
    manifest = a.path, mode = a.mode, delivered = {} }
  for _, f in ipairs(files) do meta.delivered[#meta.delivered + 1] = f.path:sub(#out + 2) end
  local notes = notes_early
  if a.vinyl then
    local sides, vnotes = vinyl_sides(a, records)
    meta.vinyl = { mono_below = a.vinyl.mono_below, sides = sides }
    for _, n in ipairs(vnotes) do notes[#notes + 1] = n end
  end
  if #notes > 0 then meta.notes = notes end
  local okw, summary = pcall(batch.write_records, meta, records, work .. "/report")
  if not okw then abandon(("album: %s"):format(tostring(summary):gsub("^batch: ", ""))) end
  assert(os.rename(work .. "/report.json", report_json.tmp))
  assert(os.rename(work .. "/report.html", report_html.tmp))

  -- deliver: everything is done, rename into place
  for _, f in ipairs(files) do
    local okr, why = os.rename(f.tmp, f.path)
    if not okr then abandon(("album: cannot write '%s': %s"):format(f.path, tostring(why))) end
  end
  -- what an earlier run delivered here and this one did not
  local now = {}
  for _, f in ipairs(files) do now[f.path] = true end
  for _, path in ipairs(stale) do
    if not now[path] then os.remove(path) end
  end
  cleanup()
  summary.html, summary.json = report_html.path, report_json.path
  summary.records, summary.notes, summary.out = records, notes, out
  summary.files = {}
  for i, f in ipairs(files) do summary.files[i] = f.path end
  return summary
end

return M
