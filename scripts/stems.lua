--- moonbus run scripts/stems.lua STEM... -o OUT.wav --target NAME|LUFS
--        [--lufs L] [--ceiling C] [--bits 16|24|32] [--rate HZ]
--        [--codec mp3,opus] [--max-limiting DB] [--mix SUM.wav]
--        [--json FILE] [--quiet] [--verbose]
--
-- Stem mastering: the stems are summed (each through its own processing),
-- then the sum is mastered for delivery exactly as `moonbus master` does
-- (the same chain, solved trim, verification and report).
--
-- STEM... is either a list of sound files (summed at unity; a mono stem
-- is centred at unity on both sides), or one stems file: a session file
-- (see docs/lua-api.md "Mixing sessions") whose tracks are the stems, each
-- with its own gain, pan and inserts:
--
--   return {
--     tracks = {
--       { name = "drums",  file = "drums.wav",  inserts = { { "compressor", { threshold = -18 } } } },
--       { name = "bass",   file = "bass.wav",   gain = -1 },
--       { name = "music",  file = "music.wav" },
--       { name = "vocals", file = "vocals.wav", inserts = { { "eq", { bands = {
--           { type = "bell", freq = 3000, gain = 1.5, q = 1 } } } } } },
--     },
--   }
--
-- The sum is rendered once to a 32-bit float file (a hidden file beside
-- OUT, always removed; --mix keeps it under that name), then
-- mastered from it: the stems' processing runs once, however many passes
-- the loudness solver needs.
local mb = require "moonbus"
local core = require "moonbus.core"
local cli = require "moonbus.cli"
local master = mb.master

local p = cli.parser("stems", "Sum stems (each with its own processing) and master the sum for delivery.")
p:argument("stems", "the stems (sound files), or one stems file (.lua)"):args("+")
p:option("-o --output", "the master to write (.wav, .aif, .flac)"):count(1)
p:option("--target", "spotify, apple, youtube, tidal, ebu, cd, or a LUFS figure")
p:option("--lufs", "integrated loudness to deliver (LUFS); overrides the target's"):convert(tonumber)
p:option("--ceiling", "true-peak ceiling (dBTP); overrides the target's"):convert(tonumber)
p:option("--bits", "16, 24 (dithered PCM) or 32 (float); default 24, cd 16"):convert(tonumber)
p:option("--rate", "sample rate of the master (Hz); default the stems', cd 44100"):convert(tonumber)
p:option("--codec", "also check the decoded true peak of these encodes: mp3, opus, vorbis (comma-separated)")
p:option("--max-limiting", ("largest limiter gain reduction accepted (dB, default %g)"):format(master.max_limiting))
  :convert(tonumber)
p:option("--mix", "also keep the summed stems (32-bit float) under this name")
p:option("--json", "also write the report as JSON to this file")
p:flag("-q --quiet", "print nothing on success")
p:flag("-v --verbose", "print each render pass on stderr")
local a = cli.parse(p, { ... })

if not a.target and not a.lufs then
  cli.usage_error("stems: give --target (" .. table.concat(master.target_names, ", ") .. ") or --lufs")
end
if a.target and not master.targets[a.target] and not tonumber(a.target) then
  local hint = mb.suggest(a.target, master.target_names)
  cli.usage_error(("stems: unknown target '%s' (one of %s, or a LUFS figure)%s"):format(a.target,
    table.concat(master.target_names, ", "), hint and ("; did you mean '%s'?"):format(hint) or ""))
end

local function base(path)
  return path:match("([^/]*)$")
end

-- The stems as a session: a stems file as written, or one track per file.
local function stems_session()
  if #a.stems == 1 and a.stems[1]:match("%.lua$") then
    return mb.session.load(a.stems[1]), a.stems[1]
  end
  local tracks, used = {}, {}
  for _, f in ipairs(a.stems) do
    if f:match("%.lua$") then
      cli.usage_error("stems: give sound files, or one stems file (.lua) alone")
    end
    local fh = io.open(f, "rb")
    if not fh then error(("stems: cannot open '%s'"):format(f), 0) end
    fh:close()
    local name = base(f):gsub("%.[^.]*$", "")
    if name == "" then name = "stem" end
    local n, k = name, 1
    while used[n] do k = k + 1; n = ("%s_%d"):format(name, k) end
    used[n] = true
    -- law 0: a mono stem reaches both sides at unity (dual mono)
    tracks[#tracks + 1] = { name = n, file = f, law = 0 }
  end
  local label = #a.stems == 1 and a.stems[1] or ("%d stems"):format(#a.stems)
  return mb.session.check({ tracks = tracks }), label
end

local function temp_beside(path)
  local dir, b = path:match("^(.*/)([^/]*)$")
  if not dir then dir, b = "", path end
  return ("%s.%s.moonbus-stems-%x%x.wav"):format(dir, b, os.time(), math.random(0, 0xffffff))
end

local function run()
  local s, label = stems_session()
  for _, out in ipairs { a.output, a.mix } do
    local writable, why = core.writable(out)
    if not writable then error("stems: " .. why, 0) end
    for _, st in ipairs(s.strips) do
      if st.file and core.same_file(st.file, out) then
        error(("stems: '%s' is one of the stems; choose another name"):format(out), 0)
      end
    end
  end
  local codec
  if a.codec then
    codec = {}
    for c in a.codec:gmatch("[^,%s]+") do codec[#codec + 1] = c:lower() end
  end
  -- Open the report's file first: a bad path fails before any rendering.
  local json_tmp, json_file
  if a.json then
    json_tmp = a.json .. ".moonbus-tmp"
    local err
    json_file, err = io.open(json_tmp, "w")
    if not json_file then error("stems: cannot write '" .. a.json .. "': " .. tostring(err), 0) end
  end
  local sum = temp_beside(a.output)
  local ok, report = pcall(function()
    mb.session.render(s, { mix = sum, stems = false, bits = 32, meters = false })
    local r = master.deliver {
      input = sum, output = a.output, target = a.target, lufs = a.lufs,
      ceiling = a.ceiling, bits = a.bits, rate = a.rate, codec = codec,
      max_limiting = a.max_limiting, chain = master.default_chain,
      log = a.verbose and function(line) io.stderr:write("moonbus: stems: ", line, "\n") end or nil,
    }
    return r
  end)
  if ok and a.mix then
    local renamed, why = os.rename(sum, a.mix)
    if not renamed then ok, report = false, ("stems: cannot write '%s': %s"):format(a.mix, why) end
  end
  os.remove(sum)
  if not ok then
    if json_file then json_file:close(); os.remove(json_tmp) end
    error(report, 0)
  end
  -- The report names the stems, not the temporary sum.
  report.input = label
  report.stems = {}
  for _, st in ipairs(s.strips) do
    if st.kind == "track" then report.stems[#report.stems + 1] = st.file or st.name end
  end
  if json_file then
    json_file:write(cli.json(master.json_table(report)), "\n")
    json_file:close()
    assert(os.rename(json_tmp, a.json))
  end
  if not a.quiet then io.write(master.format(report)) end
end

local ok, err = pcall(run)
if not ok then
  -- a message without a position is printed as it is
  if type(err) == "string" and not err:match("^[^:]+:%d+:") then error({ message = err }, 0) end
  error(err, 0)
end
