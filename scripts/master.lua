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

-- mb.master.default_chain (stems mastering, the demo) loads this file for
-- its chain alone.
if ... == master.CHAIN_ONLY then return chain end

local p = cli.parser("master", "Master a mix to a delivery target's loudness and true-peak ceiling.")
p:argument("input", "the mix to master")
p:argument("output", "the master to write (.wav, .aif, .flac; 16/24-bit or float)")
master.cli_options(p, "the mix's")
local a = cli.parse(p, { ... })

local opts, out = master.cli_begin("master", a)
opts.input, opts.output, opts.chain = a.input, a.output, chain
local ok, report = pcall(master.deliver, opts)
if not ok then
  out.abort()
  error(report, 0)
end
out.done(report)
