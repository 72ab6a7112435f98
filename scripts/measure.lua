--- moonbus measure FILE... [--json]
-- Loudness (ITU-R BS.1770-4 / EBU R128: integrated, LRA, max momentary and
-- short-term), true and sample peak, duration, rate and channels per file.
local mb = require "moonbus"
local cli = require "moonbus.cli"

local p = cli.parser("measure", "Loudness, peaks and duration per file.")
p:argument("files", "sound files to measure"):args("+")
p:flag("--json", "print a JSON list instead of a table")
local a = cli.parse(p, { ... })

local results = {}
for _, path in ipairs(a.files) do
  results[#results + 1] = mb.measure(path)
end

if a.json then
  local out = {}
  for i, m in ipairs(results) do
    out[i] = {
      path = m.path, integrated = cli.finite(m.integrated), lra = cli.finite(m.lra),
      true_peak = cli.finite(m.true_peak), sample_peak = cli.finite(m.sample_peak),
      momentary_max = cli.finite(m.momentary_max),
      short_term_max = cli.finite(m.short_term_max),
      duration = m.duration, rate = m.rate, channels = m.channels,
    }
  end
  io.write(cli.json(out), "\n")
else
  local rows = {}
  for _, m in ipairs(results) do
    rows[#rows + 1] = { m.path, cli.db(m.integrated), cli.db(m.lra),
      cli.db(m.true_peak), cli.db(m.sample_peak), ("%.3f"):format(m.duration),
      tostring(m.rate), tostring(m.channels) }
  end
  cli.print_table({ "file", "LUFS", "LRA LU", "dBTP", "dBFS", "seconds", "Hz",
    "ch" }, rows)
end
