--- moonbus master IN OUT [--target NAME|LUFS] [--lufs L] [--ceiling C]
--                        [--bits 16|24|32] [--rate HZ] [--codec mp3,opus]
--                        [--max-limiting DB] [--json FILE] [--quiet]
--
-- Masters a mix for delivery: the chain below, with its input trim solved
-- so that the written file measures the target's integrated loudness and
-- its true peak stays under the ceiling. Prints a before/after report.
--
-- This script is also the template for your own chain: copy it, edit
-- `chain`, and run it with `moonbus run my-master.lua IN OUT --target ...`.
-- The solving, verification, codec check and report are in
-- lua/moonbus/master.lua.
local mb = require "moonbus"
local master = mb.master
local cli = require "moonbus.cli"

--- The mastering chain. `s` holds the solved trim (s.gain, dB) and the
-- delivery figures (s.lufs, s.ceiling, s.bits, s.rate). Return the last
-- node, and the nodes whose gain reduction the report shows.
local function chain(g, src, s)
  -- Trim: the one thing the solver moves. It sits first so that every
  -- stage after it sees the programme at delivery level, whatever level
  -- the mix came in at.
  local trim = g:add("gain", { name = "trim", gain = s.gain })
  -- Gentle high-pass: rumble and DC only (12 dB/oct at 20 Hz). Add your
  -- tonal moves here: { type = "bell", freq = 300, gain = -1, q = 1 }, ...
  local eq = g:add("eq", { name = "eq", bands = {
    { type = "highpass", freq = 20, slope = 12 },
  } })
  -- Glue: a slow, low-ratio RMS compressor whose threshold follows the
  -- target, so it does the same 1-2 dB of work on loud passages at any
  -- delivery loudness.
  local glue = g:add("compressor", { name = "glue", threshold = s.lufs + 4,
    ratio = 1.5, knee = 6, attack = 30, release = 250, detector = "rms",
    link = 1 })
  -- True-peak limiter at the delivery rate (the graph runs at s.rate).
  local lim = g:add("limiter", { name = "limiter", ceiling = s.ceiling,
    release = 100, true_peak = true })
  local last = g:chain(src, trim, eq, glue, lim)
  -- Dither last, when the file is integer PCM.
  if s.bits < 32 then
    last = g:chain(last, g:add("dither", { name = "dither", bits = s.bits }))
  end
  return last, { limiter = lim, compressor = glue }
end

local p = cli.parser("master", "Master a mix to a delivery target's loudness and true-peak ceiling.")
p:argument("input", "the mix to master")
p:argument("output", "the master to write (.wav, .aif, .flac; 16/24-bit or float)")
p:option("--target", "spotify, apple, youtube, tidal, ebu, cd, or a LUFS figure")
p:option("--lufs", "integrated loudness to deliver (LUFS); overrides the target's"):convert(tonumber)
p:option("--ceiling", "true-peak ceiling (dBTP); overrides the target's"):convert(tonumber)
p:option("--bits", "16, 24 (dithered PCM) or 32 (float); default 24, cd 16"):convert(tonumber)
p:option("--rate", "sample rate of the master (Hz); default the mix's, cd 44100"):convert(tonumber)
p:option("--codec", "also check the decoded true peak of these encodes: mp3, opus, vorbis (comma-separated)")
p:option("--max-limiting", ("largest limiter gain reduction accepted (dB, default %g)"):format(master.max_limiting))
  :convert(tonumber)
p:option("--json", "also write the report as JSON to this file")
p:flag("-q --quiet", "print nothing on success")
p:flag("-v --verbose", "print each render pass on stderr")
local a = cli.parse(p, { ... })

if not a.target and not a.lufs then
  cli.usage_error("master: give --target (" .. table.concat(master.target_names, ", ") .. ") or --lufs")
end
if a.target and not master.targets[a.target] and not tonumber(a.target) then
  local hint = mb.suggest(a.target, master.target_names)
  cli.usage_error(("master: unknown target '%s' (one of %s, or a LUFS figure)%s"):format(a.target,
    table.concat(master.target_names, ", "), hint and ("; did you mean '%s'?"):format(hint) or ""))
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
  if not json_file then error("master: cannot write '" .. a.json .. "': " .. tostring(err), 0) end
end

local ok, report = pcall(master.deliver, {
  input = a.input, output = a.output, target = a.target, lufs = a.lufs,
  ceiling = a.ceiling, bits = a.bits, rate = a.rate, codec = codec,
  max_limiting = a.max_limiting, chain = chain,
  log = a.verbose and function(line) io.stderr:write("moonbus: master: ", line, "\n") end or nil,
})
if not ok then
  if json_file then json_file:close(); os.remove(json_tmp) end
  error(report, 0)
end
if json_file then
  json_file:write(cli.json(master.json_table(report)), "\n")
  json_file:close()
  assert(os.rename(json_tmp, a.json))
end
if not a.quiet then io.write(master.format(report)) end
