--- moonbus.report: the QC report of a batch run as one HTML page.
--
--   local report = require "moonbus.report"
--   local f = assert(io.open("report.html", "w"))
--   f:write(report.html(batch))
--   f:close()
--
-- `batch` is the table the batch runner builds (title, manifest, generated,
-- moonbus, shard, summary, jobs; each job with id, line, input, output,
-- target, status, error, verdict, seconds, master, before, after, checks,
-- gr), and optionally `notes` (lines of advice shown under the header).
-- Any figure may be missing; NaN and infinities (the analyser's -inf
-- for levels of silence) count as missing too, so that the page agrees
-- with report.json, where JSON cannot carry them. In series (short-term
-- loudness, spectrum, gain reduction), a hole may be nil or false.
--
-- What the page promises, because people and tests rely on it:
-- * It is self-contained: no file, font, style sheet, script or image is
--   fetched from anywhere. A label mails it around and opens it offline.
-- * It reads without JavaScript. The table comes sorted failures first
--   (error, fail, warn, pass, then manifest order) from here; the small
--   inline script only adds sorting by a click on a column header.
-- * One row per job, `<tr id="row-ID" data-id="ID" data-verdict="...">`;
--   a figure's cell is `<td data-key="KEY" data-value="FIGURE">TEXT</td>`,
--   FIGURE exact (12 significant digits) and empty when missing, TEXT
--   rounded as in M.columns (2 decimals unless said, "-0.00" shown as
--   "0.00") or "–" when missing. The cell's class is "v-" and the verdict
--   of the check of the same name, if there is one.
-- * Per job, `<section id="job-ID" class="job">` in the same order, with
--   the checks and four `<svg class="plot" data-plot="NAME">` plots: wave,
--   loudness, gr, spectrum.
-- * Every text from the batch (file names come from users) is escaped.
--
-- Written for speed: a batch of 1000 jobs renders in about a second. The
-- page is assembled in tables joined once (table.concat), and plot
-- coordinates, millions of them, come from a cache of formatted numbers.

local M = {}

local floor, log, huge = math.floor, math.log, math.huge
local format, concat = string.format, table.concat
local max, min = math.max, math.min

---------------------------------------------------------------------------
-- Small helpers

local ESCAPES = {
  ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;",
}

--- Text made safe for HTML content and attribute values; nil gives "".
function M.escape(s)
  if s == nil then return "" end
  return (tostring(s):gsub("[&<>\"']", ESCAPES))
end
local esc = M.escape

--- v if it is a finite number, else nil: nil, false, NaN and +-inf are all
-- "no figure" on the page.
local function finite(v)
  if type(v) ~= "number" or v ~= v or v == huge or v == -huge then return nil end
  return v
end
M.finite = finite

local MISSING = "–" -- en dash: a figure that is not there

--- A figure as the table shows it: `digits` decimals (0: a rounded
-- integer), "–" when missing. "-0.00" becomes "0.00": a sign on a figure
-- that rounds to zero only draws the eye.
function M.format_figure(v, digits)
  v = finite(v)
  if not v then return MISSING end
  local s
  if digits == 0 then
    -- %.0f for figures beyond integers' range, where %d would raise.
    s = math.abs(v) < 2 ^ 53 and format("%d", floor(v + 0.5)) or format("%.0f", v)
  else
    s = format("%." .. (digits or 2) .. "f", v)
  end
  if s:match("^%-[0.]+$") then s = s:sub(2) end
  return s
end
local figure = M.format_figure

--- A figure for a data-value attribute: exact enough to sort and to
-- compare with report.json (12 significant digits), "" when missing.
local function exact(v)
  v = finite(v)
  if not v then return "" end
  if math.type(v) == "integer" then return format("%d", v) end
  return format("%.12g", v)
end

--- A figure for an axis label: no trailing zeros ("-14", "2.5").
local function tick(v)
  local s = format("%.1f", v)
  s = s:gsub("%.0$", "")
  if s == "-0" then s = "0" end
  return s
end

--- Seconds as m:ss, or m:ss.s when `fine` (ticks under a second apart).
-- Rounded before the split, so that 239.7 s reads 4:00, not 3:60.
local function mss(t, fine)
  local unit = fine and 10 or 1
  local n = floor(t * unit + 0.5)
  local m, s = n // (60 * unit), (n % (60 * unit)) / unit
  if fine then return format("%d:%04.1f", m, s) end
  return format("%d:%02d", m, s)
end

---------------------------------------------------------------------------
-- Verdicts and order

--- Severity, most urgent first: the default order of the table. A verdict
-- this page does not know sorts with the errors, as something to look at.
M.severity = { error = 1, fail = 2, warn = 3, pass = 4 }
M.verdicts = { "error", "fail", "warn", "pass" }

local function rank(verdict)
  return M.severity[verdict] or 1
end

--- A verdict as a CSS class name part: only known words, so that a user's
-- string can never reach a class attribute.
local function vclass(verdict)
  if M.severity[verdict] then return verdict end
  return "other"
end

--- The colour class of a check's figure: " v-pass" and so on; none for
-- a verdict this page does not know (a check that only informs).
local function check_class(verdict)
  return M.severity[verdict] and (" v-" .. verdict) or ""
end

--- The jobs in the report's default order: error, fail, warn, pass, then
-- manifest order (the order of `jobs`; table.sort is not stable, so the
-- position is part of the key).
function M.order(jobs)
  local keyed = {}
  for i, job in ipairs(jobs) do
    keyed[i] = { rank(job.verdict), i, job }
  end
  table.sort(keyed, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  local out = {}
  for i, k in ipairs(keyed) do out[i] = k[3] end
  return out
end

---------------------------------------------------------------------------
-- The table's columns

--- Left to right. `from` is where the figure lives in a job
-- ({ "after", "dc_db" } is job.after.dc_db), `digits` how many decimals
-- the cell shows (default 2), `unit` goes in the header. A figure's cell
-- takes the colour of the job's check named `key`, if the job has one.
M.columns = {
  { key = "verdict", label = "Verdict" },
  { key = "line", label = "Line", from = { "line" }, digits = 0,
    help = "line in the manifest" },
  { key = "output", label = "Output" },
  { key = "target", label = "Target" },
  { key = "integrated", label = "Integrated", unit = "LUFS", from = { "after", "integrated" },
    help = "integrated loudness of the master" },
  { key = "lra", label = "LRA", unit = "LU", from = { "after", "lra" },
    help = "loudness range" },
  { key = "true_peak", label = "True peak", unit = "dBTP", from = { "after", "true_peak" } },
  { key = "sample_peak", label = "Sample peak", unit = "dBFS", from = { "after", "sample_peak" } },
  { key = "plr", label = "PLR", unit = "dB", from = { "after", "plr" },
    help = "peak to loudness ratio: true peak minus integrated loudness" },
  { key = "clipped", label = "Clipped", unit = "samples", from = { "after", "clipped" }, digits = 0,
    help = "samples at full scale" },
  { key = "dc", label = "DC", unit = "dB", from = { "after", "dc_db" },
    help = "largest DC offset of a channel" },
  { key = "correlation", label = "Corr.", from = { "after", "correlation" }, digits = 3,
    help = "left/right correlation, -1 to 1" },
  { key = "mono_drop", label = "Mono drop", unit = "dB", from = { "after", "mono_drop" },
    help = "loudness of the mono fold-down minus the stereo loudness" },
  { key = "head_silence", label = "Head silence", unit = "s", from = { "after", "head_silence" } },
  { key = "tail_silence", label = "Tail silence", unit = "s", from = { "after", "tail_silence" } },
  { key = "rate", label = "Rate", unit = "Hz", from = { "after", "rate" }, digits = 0 },
  { key = "bits", label = "Bits", from = { "after", "bits" }, digits = 0 },
  { key = "gain", label = "Gain applied", unit = "dB", from = { "master", "gain" } },
  { key = "max_gr", label = "Max GR", unit = "dB", from = { "master", "max_gain_reduction" },
    help = "largest gain reduction of the limiter" },
  { key = "seconds", label = "Time", unit = "s", from = { "seconds" },
    help = "wall time of the job" },
}

local DIGITS = {} -- decimals by column key, also used for checks of that name
for _, c in ipairs(M.columns) do
  if c.from then DIGITS[c.key] = c.digits or 2 end
end

--- The figure of column `col` for `job` (nil when missing).
function M.figure(job, col)
  local v = job
  for _, k in ipairs(col.from) do
    if type(v) ~= "table" then return nil end
    v = v[k]
  end
  return finite(v)
end

---------------------------------------------------------------------------
-- Plots
--
-- Each plot is an inline SVG of W x H pixels; the data area is the inner
-- rectangle X0..X1, Y0..Y1 (left room for the level labels, bottom room
-- for the time or frequency labels).

local W, H = 560, 160
local X0, X1, Y0, Y1 = 46, W - 10, 10, H - 22
local PW, PH = X1 - X0, Y1 - Y0

-- Plot coordinates go out with one decimal (a tenth of a pixel is finer
-- than a screen or a printer shows). A page of 1000 jobs holds some 3
-- million of them and string.format for each would take over a second,
-- so each tenth-of-a-pixel value is formatted once and then reused; keys
-- are tenths of a pixel as integers.
local coord = setmetatable({}, { __index = function(t, k)
  local s = (k % 10 == 0) and format("%d", k // 10) or format("%.1f", k / 10)
  t[k] = s
  return s
end })

local function c10(v) return coord[floor(v * 10 + 0.5)] end

-- The same followed by "," (an x) and by " " (a y): a path is then the
-- plain concatenation of cached strings, with no new string per point.
local xcoord = setmetatable({}, { __index = function(t, k)
  local s = coord[k] .. ","
  t[k] = s
  return s
end })
local ycoord = setmetatable({}, { __index = function(t, k)
  local s = coord[k] .. " "
  t[k] = s
  return s
end })

--- The x pixels `xs` as "x," strings, the form the path builders take:
-- an x is formatted once even where a path passes it twice.
local function xstrings(xs, n)
  local out = {}
  for i = 1, n do out[i] = xcoord[floor(xs[i] * 10 + 0.5)] end
  return out
end

-- In the loops over series below, `x and x - x == 0` tests for a usable
-- value: x - x is 0 only for a finite number (NaN and inf give NaN), and
-- series hold numbers, nil or false. It is several times cheaper than
-- calling finite() or type() per value, which matters at 3000 values a job.

--- The length of a series: the values may have nil holes, where #values
-- may stop at any hole, so the caller's expected count (from the duration)
-- and a table.pack-style `n` field count too; positions past the data are
-- gaps.
local function length(values, expected)
  local n = #values
  if math.type(values.n) == "integer" and values.n > n then n = values.n end
  if expected and expected > n then n = expected end
  return n
end

--- A series reduced to at most `slots` points, each the largest usable
-- value of those it stands for (false where there is none): the loudest
-- moment and the deepest gain reduction must stay visible. Returns the
-- points and their count.
local function bucket_max(values, n, slots)
  local out = {}
  if n <= slots then
    for i = 1, n do
      local x = values[i]
      out[i] = (x and x - x == 0) and x or false
    end
    return out, n
  end
  for s = 1, slots do
    local m = false
    for i = floor((s - 1) * n / slots) + 1, floor(s * n / slots) do
      local x = values[i]
      if x and x - x == 0 and (not m or x > m) then m = x end
    end
    out[s] = m
  end
  return out, slots
end

--- Path data of a line through (x[i], v[i]), i = 1..n (x as from
-- xstrings), the values mapped
-- linearly from lo..hi (clipped) to the height of the data area. Where
-- v[i] is false the line breaks (a new "M" starts). nil without points.
local function line_path(x, v, n, lo, hi)
  local k = PH / (hi - lo)
  local out, j, pen = {}, 0, false
  for i = 1, n do
    local y = v[i]
    if y then
      if y < lo then y = lo elseif y > hi then y = hi end
      if not pen then j = j + 1; out[j] = "M"; pen = true end
      out[j + 1] = x[i]
      out[j + 2] = ycoord[floor((Y1 - (y - lo) * k) * 10 + 0.5)]
      j = j + 2
    else
      pen = false
    end
  end
  if j == 0 then return nil end
  return concat(out)
end

--- Path data of the closed area between two lines over the same x (as
-- from xstrings; the lines in pixels): along `top` left to right, back
-- along `bottom` right to left. A number as `bottom` is a horizontal line.
local function area_path(x, top, bottom, n)
  local out = { "M" }
  local j = 1
  for i = 1, n do
    out[j + 1] = x[i]
    out[j + 2] = ycoord[floor(top[i] * 10 + 0.5)]
    j = j + 2
  end
  if type(bottom) == "number" then
    local y = ycoord[floor(bottom * 10 + 0.5)]
    out[j + 1], out[j + 2], out[j + 3], out[j + 4] = x[n], y, x[1], y
    j = j + 4
  else
    for i = n, 1, -1 do
      out[j + 1] = x[i]
      out[j + 2] = ycoord[floor(bottom[i] * 10 + 0.5)]
      j = j + 2
    end
  end
  out[j + 1] = "Z"
  return concat(out)
end

--- x of n evenly spaced points (centred in their slots) covering `dur`
-- seconds of a time axis `span` seconds long, as from xstrings.
local function time_xs(n, dur, span)
  local out, dx = {}, PW * dur / span / n
  for i = 1, n do out[i] = xcoord[floor((X0 + (i - 0.5) * dx) * 10 + 0.5)] end
  return out
end

--- Seconds between time ticks: at most 6 intervals over `total`.
local TIME_STEPS = { 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600 }
local function time_step(total)
  for _, s in ipairs(TIME_STEPS) do
    if total / s <= 6 then return s end
  end
  return 3600 * math.ceil(total / 3600 / 6)
end

-- SVG pieces are appended to `b`, the page's list of strings.

--- Time ticks (m:ss) along the bottom for 0..total seconds.
local function time_axis(b, total)
  local step = time_step(total)
  local fine = step < 1
  local i = 0
  while i * step <= total + 1e-9 do
    local t = i * step
    local x = X0 + PW * t / total
    -- A label at the right edge ends there instead of spilling out.
    local edge = x > X1 - 12
    b[#b + 1] = format('<line class="tick" x1="%s" x2="%s" y1="%d" y2="%d"/><text class="xlab%s" x="%s" y="%d">%s</text>',
      c10(x), c10(x), Y1, Y1 + 4, edge and " end" or "", c10(edge and X1 + 2 or x), H - 6, mss(t, fine))
    i = i + 1
  end
end

local SVG_OPEN = '<svg class="plot%s" data-plot="%s" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">'
local FRAME = '<rect class="area" x="%d" y="%d" width="%d" height="%d"/>'

--- Open a plot: the svg element and the data area's frame. Returns the
-- mark svg_close needs.
local function svg_open(b, name, label)
  b[#b + 1] = format(SVG_OPEN, "", name, W, H, W, H, esc(label))
  b[#b + 1] = format(FRAME, X0, Y0, PW, PH)
  return #b
end

--- Close a plot opened at `mark`. Without data, the plot shrinks to a
-- strip saying "no data" (a failed job then takes little room) and what
-- was drawn goes (an empty grid with a target line looks like a reading);
-- with data, the time axis goes under it.
local function svg_close(b, mark, drawn, span)
  if not drawn then
    local name, label = b[mark - 1]:match('data%-plot="([^"]*)".-aria%-label="([^"]*)"')
    local h = 36
    b[mark - 1] = format(SVG_OPEN, " empty", name, W, h, W, h, label)
    b[mark] = format(FRAME, X0, 4, PW, h - 8)
    for i = #b, mark + 1, -1 do b[i] = nil end
    b[#b + 1] = format('<text class="nodata" x="%d" y="%d">no data</text>', X0 + PW // 2, h // 2 + 4)
  elseif span then
    time_axis(b, span)
  end
  b[#b + 1] = "</svg>"
end

--- A horizontal line at pixel y across the data area, labelled on the left.
local function hgrid(b, y, label, class)
  b[#b + 1] = format('<line class="%s" x1="%d" x2="%d" y1="%s" y2="%s"/><text class="ylab" x="%d" y="%s">%s</text>',
    class or "grid", X0, X1, c10(y), c10(y), X0 - 4, c10(y + 3.5), label)
end

--- A label in the data area's top right corner, or bottom right.
local function note(b, text, bottom)
  b[#b + 1] = format('<text class="note" x="%d" y="%d">%s</text>', X1 - 4, bottom and Y1 - 4 or Y0 + 11, text)
end

--- The series of a job, read defensively: each returns nil when absent.
local function analysis(job, which)
  local a = job[which]
  return type(a) == "table" and a or nil
end

local function timed(s)
  -- { interval = seconds, values = {...} } with a usable interval
  if type(s) ~= "table" or type(s.values) ~= "table" then return nil end
  local iv = finite(s.interval)
  if not iv or iv <= 0 then return nil end
  return s.values, iv
end

--- The time span the plots of a job share, so that the waveform, the
-- loudness and the gain reduction line up (seconds; nil if unknown).
local function job_span(job)
  local t = 0
  for _, which in ipairs({ "before", "after" }) do
    local a = analysis(job, which)
    if a then
      t = max(t, finite(a.duration) or 0)
      local v, iv = timed(a.short_term)
      if v then t = max(t, iv * length(v)) end
    end
  end
  local v, iv = timed(job.gr)
  if v then t = max(t, iv * length(v)) end
  return t > 0 and t or nil
end

--- Expected number of points of a series at `interval` over the job's
-- after (or before) duration: the length to trust when holes are nil.
local function expected(job, interval)
  local a = analysis(job, "after") or analysis(job, "before")
  local d = a and finite(a.duration)
  return d and floor(d / interval + 0.5) or nil
end

--- `wave`: min/max envelopes before (muted) and after (strong), the
-- ceiling as dashed lines at +-10^(ceiling/20), full scale as the frame.
local function plot_wave(b, job, span)
  local mark = svg_open(b, "wave", "Waveform before and after")
  local mid, half = Y0 + PH / 2, PH / 2
  hgrid(b, Y0, "+1", "scale")
  hgrid(b, mid, "0", "zero")
  hgrid(b, Y1, "-1", "scale")
  local drawn = false
  -- After first (it is usually the larger envelope), before over it and
  -- translucent: where the master is louder, the strong colour shows.
  for _, which in ipairs({ "after", "before" }) do
    local a = analysis(job, which)
    local w = a and a.wave
    if span and type(w) == "table" and type(w.min) == "table" and type(w.max) == "table" then
      local n = min(#w.min, #w.max)
      if n > 0 then
        local xs = time_xs(n, finite(a.duration) or span, span)
        local top, bot = {}, {}
        local wmax, wmin = w.max, w.min
        for i = 1, n do
          -- Float files can exceed full scale: clip to the frame. A hole
          -- draws as silence.
          local hi, lo = wmax[i], wmin[i]
          if not (hi and hi - hi == 0) then hi = 0 elseif hi > 1 then hi = 1 elseif hi < -1 then hi = -1 end
          if not (lo and lo - lo == 0) then lo = 0 elseif lo > 1 then lo = 1 elseif lo < -1 then lo = -1 end
          top[i] = mid - half * hi
          bot[i] = mid - half * lo
        end
        b[#b + 1] = format('<path class="wave %s" d="%s"/>', which, area_path(xs, top, bot, n))
        drawn = true
      end
    end
  end
  local ceiling = finite(type(job.target) == "table" and job.target.ceiling)
      or finite(type(job.master) == "table" and job.master.limiter_ceiling)
  if drawn and ceiling then
    local lin = min(1, 10 ^ (ceiling / 20))
    for _, s in ipairs({ 1, -1 }) do
      local y = mid - s * half * lin
      b[#b + 1] = format('<line class="ceiling" x1="%d" x2="%d" y1="%s" y2="%s"/>', X0, X1, c10(y), c10(y))
    end
    note(b, format("ceiling %s dBTP", tick(ceiling)))
  end
  svg_close(b, mark, drawn, span)
end

--- `loudness`: short-term loudness after (and before, lighter) against
-- the target line, over target-20..target+6 LUFS (clipped to it).
local function plot_loudness(b, job, span)
  local mark = svg_open(b, "loudness", "Short-term loudness before and after")
  local target = finite(type(job.target) == "table" and job.target.lufs)
  -- A target without a loudness figure (cd keeps the mix's loudness):
  -- centre on the master's integrated loudness instead.
  local after, before = analysis(job, "after"), analysis(job, "before")
  local centre = target or finite(after and after.integrated)
      or finite(before and before.integrated) or -14
  local hi, lo = centre + 6, centre - 20
  local function ypix(v) return Y1 - PH * (v - lo) / (hi - lo) end
  for d = 6, -18, -6 do hgrid(b, ypix(centre + d), tick(centre + d)) end
  b[#b + 1] = format('<text class="unit" x="%d" y="%d">LUFS</text>', X0 + 4, Y1 - 4)
  local drawn = false
  for _, which in ipairs({ "before", "after" }) do
    local a = analysis(job, which)
    local v, iv = timed(a and a.short_term)
    if v and span then
      local n = length(v, expected(job, iv))
      local dur = n * iv
      local pts, m = bucket_max(v, n, PW)
      local d = line_path(time_xs(m, dur, span), pts, m, lo, hi)
      if d then
        b[#b + 1] = format('<path class="line %s" d="%s"/>', which, d)
        drawn = true
      end
    end
  end
  if target then
    local y = ypix(target)
    b[#b + 1] = format('<line class="target" x1="%d" x2="%d" y1="%s" y2="%s"/>', X0, X1, c10(y), c10(y))
    note(b, format("target %s LUFS", tick(target)))
  end
  svg_close(b, mark, drawn, span)
end

--- `gr`: the limiter's gain reduction as an area hanging down from 0 dB.
local function plot_gr(b, job, span)
  local mark = svg_open(b, "gr", "Limiter gain reduction")
  local v, iv = timed(job.gr)
  local pts, n, dur = {}, 0, 0
  if v and span then
    local count = length(v, expected(job, iv))
    dur = count * iv
    pts, n = bucket_max(v, count, PW)
  end
  local deepest = 0
  for i = 1, n do
    local g = pts[i]
    if g and g > deepest then deepest = g end
  end
  -- Depth of the scale: the first of 1, 2, 3, 6, 12, 24, 48 dB at or below
  -- the deepest reduction, so that 0.5 dB looks small and 5 dB large.
  local depth = 48
  for _, d in ipairs({ 1, 2, 3, 6, 12, 24 }) do
    if deepest <= d then depth = d; break end
  end
  hgrid(b, Y0, "0", "zero")
  hgrid(b, Y0 + PH / 2, tick(-depth / 2))
  hgrid(b, Y1, tick(-depth))
  b[#b + 1] = format('<text class="unit" x="%d" y="%d">dB</text>', X0 + 4, Y1 - 4)
  if n > 0 then
    -- Reduction g dB is drawn g dB below the 0 dB line; a hole as none.
    local ys = {}
    local k = PH / depth
    for i = 1, n do
      local g = pts[i] or 0
      if g < 0 then g = 0 elseif g > depth then g = depth end
      ys[i] = Y0 + g * k
    end
    b[#b + 1] = format('<path class="gr" d="%s"/>', area_path(time_xs(n, dur, span), ys, Y0, n))
    note(b, format("max %s dB", figure(deepest, 2)), true)
  end
  svg_close(b, mark, n > 0, span)
end

--- `spectrum`: before and after on a log frequency axis (20 Hz..20 kHz).
local F_LO, F_HI = 20, 20000
local LOG_SPAN = log(F_HI / F_LO)
local function fpix(f) return X0 + PW * log(f / F_LO) / LOG_SPAN end

local function plot_spectrum(b, job)
  local mark = svg_open(b, "spectrum", "Spectrum before and after")
  local sets = {}
  local top, bottom = -huge, huge
  for _, which in ipairs({ "before", "after" }) do
    local a = analysis(job, which)
    local sp = a and a.spectrum
    if type(sp) == "table" and type(sp.freq) == "table" and type(sp.db) == "table" then
      local freq, db = sp.freq, sp.db
      local n = #freq
      local xs, v = {}, {}
      for i = 1, n do
        local f, d = freq[i], db[i]
        if f and f - f == 0 and f >= F_LO and f <= F_HI and d and d - d == 0 then
          xs[i], v[i] = fpix(f), d
          if d > top then top = d end
          if d < bottom then bottom = d end
        else
          xs[i], v[i] = 0, false -- no level, or off the axis: a gap
        end
      end
      sets[#sets + 1] = { which = which, x = xstrings(xs, n), v = v, n = n }
    end
  end
  if top == -huge then return svg_close(b, mark, false) end
  -- dB scale: from the multiple of 10 above the loudest band down to the
  -- quietest, at most 100 dB and at least 30 dB deep.
  top = math.ceil(top / 10) * 10
  bottom = max(floor(bottom / 10) * 10, top - 100)
  if top - bottom < 30 then bottom = top - 30 end
  local step = (top - bottom) > 60 and 20 or 10
  for v = top, bottom, -step do hgrid(b, Y1 - PH * (v - bottom) / (top - bottom), tick(v)) end
  b[#b + 1] = format('<text class="unit" x="%d" y="%d">dB</text>', X0 + 4, Y1 - 4)
  for _, f in ipairs({ 100, 1000, 10000 }) do
    local x = fpix(f)
    b[#b + 1] = format('<line class="grid" x1="%s" x2="%s" y1="%d" y2="%d"/><text class="xlab" x="%s" y="%d">%s</text>',
      c10(x), c10(x), Y0, Y1 + 4, c10(x), H - 6, f >= 1000 and (f // 1000) .. "k" or tostring(f))
  end
  b[#b + 1] = format('<text class="xlab" x="%d" y="%d">Hz</text>', X1 - 8, H - 6)
  for _, s in ipairs(sets) do
    local d = line_path(s.x, s.v, s.n, bottom, top)
    if d then b[#b + 1] = format('<path class="line %s" d="%s"/>', s.which, d) end
  end
  svg_close(b, mark, true)
end

---------------------------------------------------------------------------
-- Page parts

local function badge(verdict, text)
  return format('<span class="badge %s">%s</span>', vclass(verdict), esc(text or verdict or "?"))
end

--- "spotify -14 LUFS / -1 dBTP" from a job's target.
local function target_text(t)
  if type(t) ~= "table" then return "", "" end
  local parts = {}
  if finite(t.lufs) then parts[#parts + 1] = tick(t.lufs) .. " LUFS" end
  if finite(t.ceiling) then parts[#parts + 1] = tick(t.ceiling) .. " dBTP" end
  return esc(t.name or ""), concat(parts, " / ")
end

--- A check's value with its unit, rounded like the table's column of the
-- same name.
local function check_value(c)
  if type(c.value) == "string" then return esc(c.value) end -- e.g. a format name
  local s = figure(c.value, DIGITS[c.name] or 2)
  if s ~= MISSING and c.unit and c.unit ~= "" then s = s .. " " .. c.unit end
  return esc(s)
end

local function summary_counts(batch)
  local s = type(batch.summary) == "table" and batch.summary or nil
  local counts = { jobs = s and s.jobs or #batch.jobs }
  for _, v in ipairs(M.verdicts) do counts[v] = s and s[v] or 0 end
  if not s then
    for _, job in ipairs(batch.jobs) do
      local v = M.severity[job.verdict] and job.verdict or "error"
      counts[v] = counts[v] + 1
    end
  end
  return counts
end

local function header(b, batch)
  b[#b + 1] = format("<header><h1>%s</h1>", esc(batch.title or "moonbus batch report"))
  b[#b + 1] = '<dl class="meta">'
  local function item(k, v)
    if v ~= nil and v ~= "" then b[#b + 1] = format("<div><dt>%s</dt><dd>%s</dd></div>", k, esc(v)) end
  end
  item("Manifest", batch.manifest)
  item("Generated", batch.generated)
  item("moonbus", batch.moonbus)
  local shard = batch.shard
  if type(shard) == "table" and shard.index then
    item("Shard", format("%s of %s", tostring(shard.index), tostring(shard.count or "?")))
  end
  b[#b + 1] = "</dl>"
  -- notes: lines of advice for the whole run (an album's vinyl side order)
  if type(batch.notes) == "table" and #batch.notes > 0 then
    b[#b + 1] = '<ul class="notes">'
    for _, n in ipairs(batch.notes) do b[#b + 1] = format("<li>%s</li>", esc(n)) end
    b[#b + 1] = "</ul>"
  end
  local counts = summary_counts(batch)
  b[#b + 1] = format('<p class="summary"><span class="total">%s jobs</span>', esc(counts.jobs))
  for _, v in ipairs(M.verdicts) do
    local n = counts[v] or 0
    b[#b + 1] = format(' <span class="badge %s%s">%s %s</span>', v, n == 0 and " zero" or "", esc(n), v)
  end
  b[#b + 1] = "</p></header>"
end

local function table_head(b)
  b[#b + 1] = '<div class="tablewrap"><table id="jobs" class="jobs"><thead><tr>'
  for _, c in ipairs(M.columns) do
    b[#b + 1] = format('<th data-key="%s" data-type="%s"%s%s>%s%s</th>',
      c.key, (c.from or c.key == "verdict") and "num" or "text",
      c.from and ' class="num"' or "",
      c.help and format(' title="%s"', esc(c.help)) or "",
      esc(c.label), c.unit and format(" <small>%s</small>", esc(c.unit)) or "")
  end
  b[#b + 1] = "</tr></thead><tbody>"
end

local function table_row(b, job)
  local id = esc(job.id)
  local verdicts = {} -- check name -> verdict, to colour the figures
  if type(job.checks) == "table" then
    for _, c in ipairs(job.checks) do
      if type(c) == "table" and c.name then verdicts[c.name] = c.verdict end
    end
  end
  local v = job.verdict
  b[#b + 1] = format('<tr id="row-%s" data-id="%s" data-verdict="%s" class="%s">', id, id, esc(v), vclass(v))
  for _, c in ipairs(M.columns) do
    local key = c.key
    if c.from then
      local x = M.figure(job, c)
      b[#b + 1] = format('<td class="num%s" data-key="%s" data-value="%s">%s</td>',
        check_class(verdicts[key]), key, exact(x), figure(x, c.digits or 2))
    elseif key == "verdict" then
      -- data-sort: the severity, so that sorting this column groups the
      -- failures rather than ordering the words alphabetically.
      b[#b + 1] = format('<td data-key="verdict" data-sort="%d">%s</td>', rank(v), badge(v))
    elseif key == "output" then
      -- No cell spans the figure columns for a failed job (that would break
      -- sorting and the columns): its error is the cell's tooltip and a
      -- line under the name.
      local tip = job.error and ("error: " .. tostring(job.error))
          or (job.input and ("from " .. tostring(job.input))) or nil
      b[#b + 1] = format('<td class="out" data-key="output"%s><a href="#job-%s">%s</a>%s</td>',
        tip and format(' title="%s"', esc(tip)) or "", id, esc(job.output or job.input or job.id),
        job.error and format('<div class="err">%s</div>', esc(job.error)) or "")
    elseif key == "target" then
      local name, figs = target_text(job.target)
      b[#b + 1] = format('<td data-key="target"%s>%s</td>',
        figs ~= "" and format(' title="%s"', figs) or "", name or "")
    end
  end
  b[#b + 1] = "</tr>"
end

local function job_section(b, job)
  local id = esc(job.id)
  b[#b + 1] = format('<section id="job-%s" class="job %s"><h2>%s <span class="name">%s</span></h2>',
    id, vclass(job.verdict), badge(job.verdict), esc(job.output or job.input or job.id))

  -- What was done: the facts an engineer asks first.
  b[#b + 1] = '<dl class="facts">'
  local function fact(k, v)
    if v ~= nil and v ~= "" then b[#b + 1] = format("<div><dt>%s</dt><dd>%s</dd></div>", k, v) end
  end
  fact("Line", job.line and esc(job.line))
  fact("Input", job.input and esc(job.input))
  local name, figs = target_text(job.target)
  fact("Target", name and (name .. (figs ~= "" and " (" .. figs .. ")" or "")))
  local m = type(job.master) == "table" and job.master or {}
  fact("Gain", finite(m.gain) and (figure(m.gain, 2) .. " dB"))
  fact("Max GR", finite(m.max_gain_reduction) and (figure(m.max_gain_reduction, 2) .. " dB"))
  fact("Passes", m.passes and esc(("%d"):format(math.floor(m.passes + 0.5))))
  local a, bf = type(job.after) == "table" and job.after, type(job.before) == "table" and job.before
  if bf or a then
    local function fmt(x)
      if not x then return "–" end
      local d = finite(x.duration)
      return esc(x.format or "?") .. (finite(x.rate) and format(", %d Hz", floor(x.rate + 0.5)) or "")
          .. (d and (", " .. mss(d)) or "")
    end
    fact("Format", fmt(bf) .. " → " .. fmt(a))
  end
  fact("Time", finite(job.seconds) and (figure(job.seconds, 2) .. " s"))
  b[#b + 1] = "</dl>"

  if job.error then
    b[#b + 1] = format('<p class="error"><strong>Error:</strong> %s</p>', esc(job.error))
  end

  if type(job.checks) == "table" and #job.checks > 0 then
    b[#b + 1] = '<table class="checks"><thead><tr><th>Check</th><th>Value</th><th>Expected</th><th>Verdict</th></tr></thead><tbody>'
    for _, c in ipairs(job.checks) do
      if type(c) == "table" then
        b[#b + 1] = format('<tr><td>%s</td><td class="num%s">%s</td><td>%s</td><td>%s</td></tr>',
          esc(c.label or c.name), check_class(c.verdict), check_value(c), esc(c.expect), badge(c.verdict))
      end
    end
    b[#b + 1] = "</tbody></table>"
  end

  local span = job_span(job)
  b[#b + 1] = '<div class="plots">'
  b[#b + 1] = '<figure><figcaption>Waveform <span class="key before">before</span> <span class="key after">after</span></figcaption>'
  plot_wave(b, job, span)
  b[#b + 1] = '</figure><figure><figcaption>Short-term loudness <span class="key before">before</span> <span class="key after">after</span></figcaption>'
  plot_loudness(b, job, span)
  b[#b + 1] = '</figure><figure><figcaption>Limiter gain reduction</figcaption>'
  plot_gr(b, job, span)
  b[#b + 1] = '</figure><figure><figcaption>Spectrum <span class="key before">before</span> <span class="key after">after</span></figcaption>'
  plot_spectrum(b, job)
  b[#b + 1] = '</figure></div><p class="back"><a href="#jobs">back to the table</a></p></section>'
end

-- Plain CSS: the system's fonts, colours that survive printing, two plots
-- side by side where there is room. On screen, sections out of view are
-- not laid out until scrolled to (content-visibility): a 1000-job page
-- (30 MB of SVG) then shows in 3 s instead of 8. Printed on landscape
-- A4, where the 20 columns fit.
local CSS = [[
:root{--pass:#1a7f37;--warn:#b86e00;--fail:#cf222e;--error:#7d0a1a;--muted:#8c959f;--strong:#0b5cad;--line:#d0d7de;--text:#1f2328}
*{box-sizing:border-box}
body{margin:0 auto;padding:16px;max-width:1400px;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--text);background:#fff}
h1{font-size:22px;margin:0 0 8px}
h2{font-size:17px;margin:0 0 8px;display:flex;gap:8px;align-items:center;flex-wrap:wrap}
h2 .name{overflow-wrap:anywhere}
dl.meta,dl.facts{display:flex;flex-wrap:wrap;gap:4px 20px;margin:0 0 10px}
dl div{display:flex;gap:6px}
dt{color:#57606a}
dd{margin:0;overflow-wrap:anywhere}
.summary{display:flex;flex-wrap:wrap;gap:6px;align-items:center;margin:0 0 16px}
.total{font-weight:600;margin-right:6px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;background:var(--muted);white-space:nowrap;-webkit-print-color-adjust:exact;print-color-adjust:exact}
.badge.pass{background:var(--pass)}.badge.warn{background:#f0b400;color:#1f2328}.badge.fail{background:var(--fail)}.badge.error{background:var(--error)}
.badge.zero{opacity:.45}
.tablewrap{overflow:auto;max-height:75vh;border:1px solid var(--line);margin-bottom:24px}
table{border-collapse:collapse}
table.jobs{width:100%;font-size:12.5px}
.jobs th,.jobs td{padding:3px 5px;border-bottom:1px solid var(--line);white-space:nowrap;text-align:left}
.jobs th{position:sticky;top:0;background:#f6f8fa;z-index:1;vertical-align:bottom;font-weight:600;white-space:normal}
.jobs th small{display:block;font-weight:normal;color:#57606a}
.jobs th button{all:unset;cursor:pointer;display:block}
.jobs th button:focus-visible{outline:2px solid var(--strong)}
.jobs th[aria-sort=ascending] button::after{content:" ▲"}
.jobs th[aria-sort=descending] button::after{content:" ▼"}
.jobs tbody tr:hover{background:#f6f8fa}
.jobs tr.fail td:first-child,.jobs tr.error td:first-child,.jobs tr.other td:first-child{box-shadow:inset 3px 0 var(--fail)}
.jobs tr.warn td:first-child{box-shadow:inset 3px 0 #f0b400}
.num{text-align:right;font-variant-numeric:tabular-nums}
.jobs th.num{text-align:right}
td.out{max-width:17em;overflow:hidden;text-overflow:ellipsis}
td.out .err{color:var(--error);font-size:12px;overflow:hidden;text-overflow:ellipsis}
.v-pass{color:var(--pass)}
.v-warn{background:#fff3c4;color:#6b4000}
.v-fail,.v-error{background:#ffe0e0;color:#a40e26;font-weight:600}
section.job{border-top:2px solid var(--line);padding:14px 0 8px}
section.job.fail,section.job.error,section.job.other{border-top-color:var(--fail)}
section.job.warn{border-top-color:#f0b400}
p.error{background:#ffe0e0;color:#7d0a1a;padding:6px 10px;border-radius:4px;overflow-wrap:anywhere}
table.checks{font-size:13px;margin:0 0 10px}
.checks th,.checks td{padding:2px 10px 2px 0;border-bottom:1px solid var(--line);text-align:left}
.checks td.num{text-align:right}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,560px),1fr));gap:8px 16px}
figure{margin:0}
figcaption{font-size:12px;color:#57606a}
.key::before{content:"";display:inline-block;width:10px;height:10px;margin:0 3px 0 8px;vertical-align:-1px}
.key.before::before{background:var(--muted)}.key.after::before{background:var(--strong)}
svg.plot{display:block;width:100%;max-width:560px;height:auto;font-size:10px;font-family:inherit}
svg .area{fill:#fbfcfd;stroke:var(--line)}
svg .grid,svg .tick{stroke:#e3e7eb;stroke-width:1}
svg .tick{stroke:var(--muted)}
svg .scale{stroke:#c0c7cf}
svg .zero{stroke:#aeb6bf}
svg .ylab{text-anchor:end;fill:#57606a}
svg .xlab{text-anchor:middle;fill:#57606a}
svg .xlab.end{text-anchor:end}
svg .unit{fill:#57606a}
svg .note{text-anchor:end;fill:#3d444d;paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}
svg .nodata{text-anchor:middle;fill:var(--muted);font-size:13px}
svg .wave.after{fill:var(--strong);fill-opacity:.8}
svg .wave.before{fill:var(--muted);fill-opacity:.6}
svg .line{fill:none;stroke-width:1.5;stroke-linejoin:round}
svg .line.after{stroke:var(--strong)}
svg .line.before{stroke:var(--muted);stroke-width:1}
svg .gr{fill:var(--fail);fill-opacity:.55;stroke:var(--fail);stroke-width:.75}
svg .ceiling{stroke:var(--fail);stroke-dasharray:5 3}
svg .target{stroke:var(--pass);stroke-dasharray:5 3}
.back{font-size:12px;margin:4px 0 0}
a{color:var(--strong)}
@media screen{section.job{content-visibility:auto;contain-intrinsic-size:auto 800px}}
@page{size:A4 landscape;margin:10mm}
@media print{
body{max-width:none;padding:0;font-size:11px}
.hint{display:none}
.tablewrap{max-height:none;overflow:visible;border:0}
table.jobs{font-size:9px}
.jobs th,.jobs td{padding:1px 3px}
.jobs th{position:static}
td.out{max-width:14em}
.jobs .badge,td.out .err{font-size:8.5px}
.back{display:none}
section.job{break-inside:avoid-page}
figure{break-inside:avoid}
.plots{grid-template-columns:1fr 1fr}
.v-warn,.v-fail,.v-error,.jobs td,p.error{-webkit-print-color-adjust:exact;print-color-adjust:exact}
}
]]

-- Sorting by a click on a header: numbers by data-sort or data-value
-- (missing figures always last), text in natural order ("2" before "10");
-- a second click reverses; ties keep the default order. Buttons are added
-- here, so the page without JavaScript shows no controls that do nothing.
local JS = [[
(function () {
  "use strict";
  var table = document.getElementById("jobs");
  if (!table || !table.tHead || !table.tBodies.length) return;
  var body = table.tBodies[0];
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var home = new Map();
  Array.prototype.forEach.call(body.rows, function (row, i) { home.set(row, i); });
  var current = -1, dir = 1;

  function key(row, col, numeric) {
    var cell = row.cells[col];
    if (!cell) return null;
    var v = cell.getAttribute("data-sort");
    if (v === null) v = cell.getAttribute("data-value");
    if (numeric) {
      var x = (v === null || v === "") ? NaN : parseFloat(v);
      return isNaN(x) ? null : x;
    }
    return v !== null ? v : cell.textContent.trim();
  }

  function sortBy(col) {
    dir = (col === current) ? -dir : 1;
    current = col;
    var numeric = heads[col].getAttribute("data-type") === "num";
    var rows = Array.prototype.map.call(body.rows, function (row) {
      return { row: row, key: key(row, col, numeric), home: home.get(row) };
    });
    rows.sort(function (a, b) {
      if (a.key === null || b.key === null) {
        if (a.key === b.key) return a.home - b.home;
        return a.key === null ? 1 : -1;
      }
      var c = numeric ? (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)
                      : a.key.localeCompare(b.key, undefined, { numeric: true, sensitivity: "base" });
      return c !== 0 ? c * dir : a.home - b.home;
    });
    var frag = document.createDocumentFragment();
    rows.forEach(function (r) { frag.appendChild(r.row); });
    body.appendChild(frag);
    heads.forEach(function (th, i) {
      if (i === col) th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    });
  }

  heads.forEach(function (th, col) {
    var button = document.createElement("button");
    button.type = "button";
    while (th.firstChild) button.appendChild(th.firstChild);
    th.appendChild(button);
    button.addEventListener("click", function () { sortBy(col); });
  });
  table.setAttribute("data-sortable", "yes");
})();
]]

--- The complete HTML document for `batch`.
function M.html(batch)
  if type(batch) ~= "table" then
    error("report.html: batch must be a table, got " .. type(batch), 2)
  end
  if type(batch.jobs) ~= "table" then batch = setmetatable({ jobs = {} }, { __index = batch }) end
  local jobs = M.order(batch.jobs)
  local b = {
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    format("<title>%s</title>", esc(batch.title or "moonbus batch report")),
    "<style>", CSS, "</style></head><body>",
  }
  header(b, batch)
  b[#b + 1] = '<main><p class="hint">Failures first (error, fail, warn, pass, then manifest order). '
      .. 'Click a column header to sort, again to reverse.</p>'
  table_head(b)
  for _, job in ipairs(jobs) do table_row(b, job) end
  b[#b + 1] = "</tbody></table></div>"
  if #jobs == 0 then b[#b + 1] = "<p>No jobs.</p>" end
  for _, job in ipairs(jobs) do job_section(b, job) end
  b[#b + 1] = "</main><script>"
  b[#b + 1] = JS
  b[#b + 1] = "</script></body></html>\n"
  return concat(b)
end

return M
