--- moonbus album ALBUM.lua [--out DIR] [--mode album|track] [--target T]
--                         [--lufs L] [--ceiling C] [--max-limiting DB]
--                         [--quiet] [--verbose]
--
-- Masters an album with one chain and delivers it: the CD image (44.1 kHz
-- 16-bit, dithered) with its CUE sheet and cdrdao TOC, the track files for
-- digital release, and a QC report (JSON and HTML). ALBUM.lua is a Lua
-- file returning the album's description (docs/album.md). The work is in
-- lua/moonbus/album.lua.
local album = require "moonbus.album"
local cli = require "moonbus.cli"
local master = require "moonbus.master"

local p = cli.parser("album", "Master an album and write its CD image, CUE/TOC, track files and QC report.")
p:argument("album", "the album description (a Lua file returning a table; see docs/album.md)")
p:option("--out", "output folder (default: the album file's name without .lua, beside it)")
p:option("--mode", "album: the album meets the target, tracks keep their relative loudness; track: each track meets it")
  :choices({ "album", "track" })
p:option("--target", "overrides the file's: spotify, apple, youtube, tidal, ebu, or a LUFS figure")
p:option("--lufs", "integrated loudness (LUFS); overrides the file's"):convert(tonumber)
p:option("--ceiling", "true-peak ceiling (dBTP); overrides the file's"):convert(tonumber)
p:option("--max-limiting", "largest limiter gain reduction accepted (dB); overrides the file's"):convert(tonumber)
p:flag("-q --quiet", "print only problems and the summary")
p:flag("-v --verbose", "print each step and render pass on stderr")
local a = cli.parse(p, { ... })

if a.target and not master.targets[a.target] and not tonumber(a.target) then
  local hint = require("moonbus.core").suggest(a.target, master.target_names)
  cli.usage_error(("album: unknown target '%s' (one of %s, or a LUFS figure)%s"):format(a.target,
    table.concat(master.target_names, ", "), hint and ("; did you mean '%s'?"):format(hint) or ""))
end
local overrides = { target = a.target and (tonumber(a.target) or a.target), lufs = a.lufs,
  ceiling = a.ceiling, mode = a.mode, max_limiting = a.max_limiting }
local log = a.verbose and function(line) io.stderr:write("moonbus: album: ", line, "\n") end or nil
local alb = album.load(a.album, overrides)
local s = album.make(alb, { out = a.out, log = log })

local function fig(x, f) return cli.db(x, f or "%.1f") end
if not a.quiet then
  local rows = {}
  for _, r in ipairs(s.records) do
    local t = alb.tracks[r.line]
    local worst = {}
    for _, c in ipairs(r.checks) do
      if c.verdict ~= "pass" then worst[#worst + 1] = c.name end
    end
    rows[#rows + 1] = { r.output, t and require("moonbus.cdimage").msf(t.index1) or "",
      t and ("%.1f"):format(t.duration) or ("%.1f"):format(alb.frames / 75),
      fig(r.before and r.before.integrated), fig(r.after.integrated), fig(r.after.true_peak, "%.2f"),
      fig(r.after.lra), r.verdict .. (#worst > 0 and (" (" .. table.concat(worst, ", ") .. ")") or "") }
  end
  cli.print_table({ "file", "start", "s", "LUFS in", "LUFS out", "dBTP", "LRA", "QC" }, rows)
end
for _, n in ipairs(s.notes or {}) do io.write("note: ", n, "\n") end
io.write(("album (%s mode): %d files in %s: %d pass, %d warn, %d fail\nreport: %s\n"):format(alb.mode,
  #s.files, s.out, s.pass, s.warn, s.fail, s.html))
if s.fail + s.error > 0 then
  error(("album: %d of %d QC records failed (see the report)"):format(s.fail + s.error, s.jobs), 0)
end
