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

--- Load and check an album description file. Returns the album table with
-- resolved paths and every track's length; raises one error naming the
-- first problem (the track by number and title).
function M.load(path)
  local chunk, err = loadfile(path, "t", {})
  if not chunk then fail("%s", err) end
  local ok, a = pcall(chunk)
  if not ok then fail("%s: %s", path, tostring(a)) end
  if type(a) ~= "table" then fail("%s must return a table (the album)", path) end
  a.dir = dirname(path)
  a.path = path
  return M.check(a)
end

--- Check an album table (see the top of this file); fills in defaults,
-- lengths and rates. Errors name the track.
function M.check(a)
  local cd = require "moonbus.cdimage"
  local okk, e = pcall(util.check_options, "the album", a, album_keys)
  if not okk then fail("%s", e) end
  local dir = a.dir or "."
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
  if not ok then fail("%s", tostring(s):gsub("^master: ", "")) end
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
    if type(t.file) ~= "string" then fail("%s: no file", name) end
    t.path = resolve(t.file)
    local okm, m = pcall(core.measure, t.path)
    if not okm then fail("%s: %s", name, tostring(m)) end
    t.duration, t.rate, t.channels, t.loudness = m.duration, m.rate, m.channels, m.integrated
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
      if i == 1 then fail("%s: the first track cannot cross-fade (nothing before it)", name) end
      if not nonneg(x.length) or x.length == 0 then fail("%s: crossfade length must be seconds > 0", name) end
      x.curve = x.curve or "equal_power"
      if not M.curves[x.curve] then fail("%s: crossfade curve '%s' (equal_power or linear)", name, tostring(x.curve)) end
      if t.gap and t.gap > 0 then fail("%s: a gap and a crossfade exclude each other", name) end
      t.xfade = x
    end
  end
  -- overlaps must fit in the tracks they join; a crossfade's own track is
  -- named first (it is the one whose setting is too long)
  for i, t in ipairs(a.tracks) do
    local prev = a.tracks[i - 1]
    if t.xfade and t.xfade.length > t.duration then
      fail("%s: the %.2f s crossfade is longer than the track (%.2f s)", t.name, t.xfade.length, t.duration)
    end
    if t.xfade and t.xfade.length > prev.duration then
      fail("%s: the %.2f s crossfade is longer than the track before it (%.2f s)", t.name,
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

-- The envelope of track t (absolute seconds on the album's time line).
local function envelope(a, i)
  local t = a.tracks[i]
  local nxt = a.tracks[i + 1]
  local pts = {}
  local t0, t1 = t.start, t.start + t.duration
  if t.xfade then
    fade_points(pts, t0, t.xfade.frames / FPS, true, t.xfade.curve, t.gain)
  elseif t.fade_in and t.fade_in > 0 then
    fade_points(pts, t0, math.min(t.fade_in, t.duration), true, "equal_power", t.gain)
  else
    pts[#pts + 1] = { t0, t.gain }
  end
  if nxt and nxt.xfade then
    local len = nxt.xfade.frames / FPS
    pts[#pts + 1] = { t1 - len, t.gain }
    fade_points(pts, t1 - len, len, false, nxt.xfade.curve, t.gain)
  elseif t.fade_out and t.fade_out > 0 then
    local len = math.min(t.fade_out, t.duration)
    pts[#pts + 1] = { t1 - len, t.gain }
    fade_points(pts, t1 - len, len, false, "equal_power", t.gain)
  end
  -- keep times increasing (a fade-in meeting a fade-out on a short track)
  local out = {}
  for _, p in ipairs(pts) do
    if #out == 0 or p[1] >= out[#out][1] then out[#out + 1] = p end
  end
  return out
end

--- Render the sequence: tracks `which` (a list of indexes, default all)
-- placed on the time line with their fades and gains, summed, into `path`
-- (32-bit float at `rate`). `alone` renders each track at time 0 instead
-- (track mode's premasters): then `path` is a function(i) giving the file.
function M.assemble(a, path, rate, opts)
  opts = opts or {}
  local g = core.graph(rate, nil)
  local sum = g:add("gain", { name = "sum", gain = 0 })
  for i, t in ipairs(a.tracks) do
    local src = g:add("input", { name = ("track%d"):format(i), path = t.path, start = t.start })
    local env = g:add("gain", { name = ("env%d"):format(i), gain = t.gain })
    env:automate("gain", envelope(a, i))
    g:chain(src, env, sum)
  end
  local last = sum
  if opts.vinyl_mono_below then
    last = g:chain(sum, g:add("width", { name = "vinyl", width = 1, mono_below = opts.vinyl_mono_below }))
  end
  g:connect(last, g:add("output", { path = path, bits = 32 }))
  g:render { progress = false, duration = a.frames / FPS }
  g:close()
end

-- ---- mastering and delivery -------------------------------------------------

-- The chain the tracks are mastered with (mastering comes next: see
-- NOTES.md, session 5).
function M.chain_of(a)
  if not a.chain_path then return master.default_chain end
  local f, err = loadfile(a.chain_path)
  if not f then fail("cannot load the chain: %s", err) end
  local chain = f(master.CHAIN_ONLY)
  if type(chain) ~= "function" then
    fail("the chain script '%s' must return its chain function when loaded with mb.master.CHAIN_ONLY", a.chain)
  end
  return chain
end

return M
