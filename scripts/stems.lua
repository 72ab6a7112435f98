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
master.cli_options(p, "the stems'")
p:option("--mix", "also keep the summed stems (32-bit float) under this name")
local a = cli.parse(p, { ... })

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

local opts, out

local function run()
  -- Options checked and the report's file opened before any rendering.
  opts, out = master.cli_begin("stems", a)
  local s, label = stems_session()
  for _, path in ipairs { a.output, a.mix } do
    local writable, why = core.writable(path)
    if not writable then error("stems: " .. why, 0) end
    for _, st in ipairs(s.strips) do
      if st.file and core.same_file(st.file, path) then
        error(("stems: '%s' is one of the stems; choose another name"):format(path), 0)
      end
    end
  end
  local sum = master.temp_beside(a.output, "stems", "wav")
  local ok, report = pcall(function()
    mb.session.render(s, { mix = sum, stems = false, bits = 32, meters = false })
    opts.input, opts.output, opts.chain = sum, a.output, master.default_chain
    return master.deliver(opts)
  end)
  if ok and a.mix then
    local renamed, why = os.rename(sum, a.mix)
    if not renamed then ok, report = false, ("stems: cannot write '%s': %s"):format(a.mix, why) end
  end
  os.remove(sum)
  if not ok then error(report, 0) end
  -- The report names the stems, not the temporary sum.
  report.input = label
  report.stems = {}
  for _, st in ipairs(s.strips) do
    if st.kind == "track" then report.stems[#report.stems + 1] = st.file or st.name end
  end
  out.done(report)
end

local ok, err = pcall(run)
if not ok then
  if out then out.abort() end
  -- a message without a position is printed as it is
  if type(err) == "string" and not err:match("^[^:]+:%d+:") then error({ message = err }, 0) end
  error(err, 0)
end
