--- moonbus demo [OUT.wav]
-- Renders a short mix that moonbus synthesises itself (no input files):
-- a pulsing bass, a panned chord, gated hats; then a mix bus that shows the
-- two ideas users prototype most: mid/side processing (tighter mid, wider
-- and cleaner side) and parallel processing (a bright, driven copy blended
-- under the dry bus, latency-aligned). Prints the render figures and the
-- loudness report of the file it wrote.
local mb = require "moonbus"
local cli = require "moonbus.cli"

local p = cli.parser("demo", "Render the built-in demo mix.")
p:argument("out", "file to write"):args("?"):default("moonbus-demo.wav")
p:option("--seconds", "length of the mix"):convert(tonumber):default(16)
local a = cli.parse(p, { ... })

local g = mb.graph { rate = 48000 }
local secs = a.seconds
local beat = 60 / 120 -- 120 BPM

-- Bass: a 55 Hz sine pumped on every beat (linear in dB: an exponential decay).
local bass = g:add("tone", { name = "bass", wave = "sine", freq = 55, level = -9,
  duration = secs, channels = 1, fade = 20 })
local pump = g:add("gain", { name = "bass pump" })
local pts = {}
for t = 0, secs - beat, beat do
  pts[#pts + 1] = { t, 0 }
  pts[#pts + 1] = { t + beat * 0.9, -30, "linear" }
end
pump:automate("gain", pts)
local bass_pan = g:add("pan", { pan = 0, law = "-3" })
g:chain(bass, pump, bass_pan)

-- Chord: A major, each voice placed in the stereo field.
local chord = g:add("gain", { name = "chord bus", gain = -4 })
for i, v in ipairs { { 220, -0.6 }, { 277.18, 0.1 }, { 329.63, 0.6 }, { 440, -0.2 } } do
  local t = g:add("tone", { name = "voice " .. i, wave = "sine", freq = v[1],
    level = -18, duration = secs, channels = 1, fade = 300 })
  g:chain(t, g:add("pan", { pan = v[2] }), chord)
end

-- Hats: pink noise, high-passed, gated on the off-beats.
local noise = g:add("tone", { name = "hats", wave = "pink", level = -20,
  duration = secs, channels = 2, seed = 7 })
local hat_eq = g:add("eq", { bands = { { type = "highpass", freq = 7000, slope = 24 } } })
local gate = g:add("gain", { name = "hat gate" })
local gp = {}
for t = beat / 2, secs - beat, beat do
  gp[#gp + 1] = { t, -60, "linear" }
  gp[#gp + 1] = { t + 0.005, 0 }
  gp[#gp + 1] = { t + 0.12, -60, "hold" }
end
gate:automate("gain", gp)
g:chain(noise, hat_eq, gate)

-- Mix bus: everything sums into one node's input.
local mix = g:add("gain", { name = "mix bus", gain = 0 })
g:connect(bass_pan, mix)
g:connect(chord, mix)
g:connect(gate, mix)

-- Mid/side: trim low mids in the mid, clean and widen the side.
local ms_out = mb.ms.process(g, mix, {
  name = "ms",
  mid = { g:add("eq", { bands = { { type = "bell", freq = 300, gain = -2, q = 1 } } }) },
  side = { g:add("eq", { bands = { { type = "highpass", freq = 150 },
                                   { type = "highshelf", freq = 8000, gain = 2 } } }),
           g:add("gain", { gain = 2 }) },
})

-- Parallel: a bright, pushed copy blended in at 35 %.
local bus = mb.parallel.blend(g, ms_out, {
  g:add("eq", { bands = { { type = "lowshelf", freq = 120, gain = 4 },
                          { type = "highshelf", freq = 6000, gain = 6 } } }),
  g:add("gain", { gain = 3 }),
}, { mix = 0.35, name = "parallel" })

local width = g:add("width", { width = 1.2, mono_below = 120 })
local meter = g:add("meter")
local out = g:add("output", { path = a.out, bits = 24 })
g:chain(bus, width, meter, out)

local stats = g:render()
io.write(("rendered %s: %.1f s of audio in %.2f s (%.0fx real time), %d nodes\n")
  :format(a.out, stats.seconds, stats.wall, stats.realtime, #stats.outputs > 0 and
    (function() local n = 0 for _ in g:nodes() do n = n + 1 end return n end)() or 0))
local m = mb.measure(a.out)
io.write("loudness report (measured from the file):\n")
cli.print_table({ "", "value" }, {
  { "integrated", cli.db(m.integrated) .. " LUFS" },
  { "loudness range", cli.db(m.lra) .. " LU" },
  { "true peak", cli.db(m.true_peak) .. " dBTP" },
  { "sample peak", cli.db(m.sample_peak) .. " dBFS" },
  { "max short-term", cli.db(m.short_term_max) .. " LUFS" },
  { "stereo correlation", ("%.2f"):format(meter.correlation) },
  { "duration", ("%.2f s"):format(m.duration) },
})
