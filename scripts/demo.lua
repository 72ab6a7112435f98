--- moonbus demo [OUT.wav] [--bars N]
-- A short song that moonbus synthesises, mixes and masters by itself (no
-- input files): 8 bars at 120 BPM of kick, snare, hats, bass, chords and
-- a lead line. The tracks are tone generators shaped by automation; they
-- are mixed as a session (lua/moonbus/session.lua): drum and music buses,
-- a reverb and an echo fed by sends, fader, pan and send automation; the
-- mix and its stems are written in one pass, then the mix is mastered to
-- -14 LUFS with a -1 dBTP ceiling (the chain of `moonbus master`) and the
-- loudness report is printed.
--
-- Writes OUT.wav (the master), OUT-mix.wav (the mix, 24-bit) and
-- OUT-stems/ (drums, music, verb, echo: they sum to the mix).
local mb = require "moonbus"
local cli = require "moonbus.cli"

local p = cli.parser("demo", "Synthesise, mix and master the built-in demo song.")
p:argument("out", "the master to write (the mix and stems go beside it)"):args("?")
  :default("moonbus-demo.wav")
p:option("--bars", "length of the song in bars of 4/4 at 120 BPM"):convert(tonumber):default(8)
local a = cli.parse(p, { ... })
if not (a.bars and a.bars >= 1 and a.bars <= 64 and a.bars == math.floor(a.bars)) then
  cli.usage_error("demo: --bars must be a whole number from 1 to 64")
end

local BPM = 120
local beat = 60 / BPM
local bars = a.bars
local secs = bars * 4 * beat

local base, ext = a.out:match("^(.*)(%.[^./]+)$")
if not base then base, ext = a.out, ".wav" end
local mix_path = base .. "-mix" .. ext
local stems_dir = base .. "-stems"

-- Notes (Hz). Am - F - C - G, twice.
local roots = { 55.00, 43.65, 65.41, 49.00 }
local chords = {
  { 220.00, 261.63, 329.63 }, { 174.61, 220.00, 261.63 },
  { 196.00, 261.63, 329.63 }, { 196.00, 246.94, 293.66 },
}
-- A minor pentatonic line: { beat within the bar, note, length in beats }
local A4, C5, D5, E5, G5 = 440.00, 523.25, 587.33, 659.26, 783.99
local phrases = {
  { { 0, E5, 1 }, { 1, D5, 0.5 }, { 1.5, C5, 0.5 }, { 2, A4, 1.5 } },
  { { 0, C5, 1 }, { 1, A4, 0.5 }, { 1.5, C5, 0.5 }, { 2, D5, 1 }, { 3, C5, 0.5 } },
  { { 0, E5, 0.5 }, { 0.5, G5, 0.5 }, { 1, E5, 1 }, { 2, D5, 0.5 }, { 2.5, C5, 1 } },
  { { 0, D5, 1.5 }, { 1.5, E5, 0.5 }, { 2, D5, 1 }, { 3, G5, 0.5 } },
}

-- A note's gain envelope: a 5 ms attack, a decay to `sustain` dB, and a
-- 20 ms release that ends in silence (linear in dB: exponential decays).
local function note_env(pts, t, len, sustain)
  pts[#pts + 1] = { t, -90 }
  pts[#pts + 1] = { t + 0.005, 0 }
  pts[#pts + 1] = { t + math.max(0.01, len - 0.02), sustain }
  pts[#pts + 1] = { t + len, -90 }
end

-- A tone whose loudness follows `env` (and whose pitch follows `freq`
-- when given): the shape of every instrument here.
local function voice(g, name, o, env, freq)
  local t = g:add("tone", { name = name, wave = o.wave or "sine", freq = o.freq or 440,
    level = o.level, duration = secs, channels = o.channels or 1, seed = o.seed })
  if freq then t:automate("freq", freq) end
  local v = g:add("gain", { name = name .. " env", gain = -90 })
  v:automate("gain", env)
  return g:chain(t, v)
end

local function kick(g)
  local env, freq = {}, {}
  for b = 0, bars * 4 - 1 do
    local t = b * beat
    note_env(env, t, 0.42, -40)
    -- the pitch falls fast from 150 Hz to 48 Hz: the click and the body
    freq[#freq + 1] = { t, 150, "exponential" }
    freq[#freq + 1] = { t + 0.07, 48, "hold" }
  end
  return voice(g, "kick osc", { level = -3, freq = 48 }, env, freq)
end

local function snare(g)
  local env = {}
  for b = 1, bars * 4 - 1, 2 do note_env(env, b * beat, 0.22, -35) end
  local n = voice(g, "snare noise", { wave = "white", level = -12, seed = 3 }, env)
  return g:chain(n, g:add("eq", { name = "snare tone", bands = {
    { type = "highpass", freq = 180, slope = 12 },
    { type = "bell", freq = 220, gain = 5, q = 2 },
    { type = "lowpass", freq = 9000 } } }))
end

local function hats(g)
  local env = {}
  for e = 0, bars * 8 - 1 do
    -- louder on the off-beats
    note_env(env, e * beat / 2, 0.06, e % 2 == 1 and -30 or -38)
  end
  local n = voice(g, "hat noise", { wave = "white", level = -13, seed = 9 }, env)
  return g:chain(n, g:add("eq", { name = "hat tone", bands = {
    { type = "highpass", freq = 7000, slope = 24 } } }))
end

local function bass(g)
  local env, freq = {}, {}
  for bar = 0, bars - 1 do
    local r = roots[bar % 4 + 1]
    for e = 0, 7 do
      local t = (bar * 4 + e / 2) * beat
      note_env(env, t, beat / 2 - 0.01, -8)
      freq[#freq + 1] = { t, e % 4 == 3 and r * 2 or r, "hold" }
    end
  end
  return voice(g, "bass osc", { level = -8, freq = roots[1] }, env, freq)
end

local function chord_track(g)
  local sum = g:add("gain", { name = "chord voices" })
  for v = 1, 3 do
    local env, freq = {}, {}
    for bar = 0, bars - 1 do
      local t = bar * 4 * beat
      -- a slow swell per bar
      env[#env + 1] = { t, -40 }
      env[#env + 1] = { t + 0.25, 0 }
      env[#env + 1] = { t + 4 * beat - 0.05, -6 }
      env[#env + 1] = { t + 4 * beat, -40 }
      freq[#freq + 1] = { t, chords[bar % 4 + 1][v], "hold" }
    end
    g:connect(voice(g, "chord " .. v, { level = -22, freq = chords[1][v] }, env, freq), sum)
  end
  return sum
end

local function lead(g)
  local env, freq = { { 0, -90 } }, { { 0, A4, "hold" } }
  -- the line enters in the third bar
  for bar = 2, bars - 1 do
    for _, n in ipairs(phrases[bar % 4 + 1]) do
      local t = (bar * 4 + n[1]) * beat
      note_env(env, t, n[3] * beat - 0.02, -9)
      freq[#freq + 1] = { t, n[2], "hold" }
    end
  end
  return voice(g, "lead osc", { level = -14, freq = A4 }, env, freq)
end

local half = secs / 2
local session = {
  rate = 48000,
  tracks = {
    { name = "kick", source = kick, bus = "drums", gain = -2 },
    { name = "snare", source = snare, bus = "drums", pan = 0.05, sends = { { to = "verb", level = -14 } } },
    -- the hats drift from left to right and back
    { name = "hats", source = hats, bus = "drums", gain = -2,
      automation = { pan = { { 0, -0.4 }, { half, 0.4 }, { secs, -0.4 } } } },
    { name = "bass", source = bass, bus = "music", gain = -9,
      inserts = { { "saturate", { drive = 9, curve = "tube", mix = 0.6 } },
                  { "eq", { bands = { { type = "lowpass", freq = 900 } } } } } },
    -- the chords' reverb send opens up in the second half
    { name = "chords", source = chord_track, bus = "music", pan = -0.25, law = -3,
      sends = { { to = "verb", level = -12 } },
      automation = { ["send:verb"] = { { 0, -30 }, { half - 2, -30 }, { half, -6 } } } },
    -- the lead: echo and reverb sends, and a fader ride up for the last two bars
    { name = "lead", source = lead, bus = "music", pan = 0.2,
      inserts = { { "saturate", { drive = 6, curve = "tanh", mix = 0.4 } } },
      sends = { { to = "echo", level = -10 }, { to = "verb", level = -16 } },
      automation = { gain = { { 0, -1 }, { secs - 8 * beat, -1 }, { secs - 7 * beat, 1.5 } } } },
  },
  buses = {
    { name = "drums", gain = -4, inserts = { { "compressor", { threshold = -16, ratio = 3, attack = 10,
      release = 120, knee = 6 } } } },
    { name = "music", gain = -3, inserts = { { "eq", { bands = { { type = "highpass", freq = 35 },
      { type = "bell", freq = 400, gain = -1.5, q = 1 } } } } } },
  },
  returns = {
    { name = "verb", inserts = { { "reverb", { rt60 = 1.6, predelay = 20, mix = 1 } } } },
    { name = "echo", inserts = { { "delay", { note = "1/8.", bpm = BPM, feedback = 0.35, mix = 1,
      pingpong = true } } }, gain = -3 },
  },
  stems = true,
}

local stats, mixrep = mb.session.render(session, { mix = mix_path, stems = stems_dir, tail = 4 })
io.write(("mix: %d tracks, 2 buses, 2 returns -> %s and %s/\n"):format(#session.tracks, mix_path,
  stems_dir))
io.write(mb.session.format(mixrep), "\n")

-- Spotify's figures (-14 LUFS), with the ceiling 0.1 dB under its -1 dBTP:
-- other meters (ffmpeg's ebur128) read the hats' noise near Nyquist up to
-- 0.1 dB above our true-peak meter, and the demo should pass them all.
local rep = mb.master.deliver { input = mix_path, output = a.out, target = "spotify",
  ceiling = -1.1, chain = mb.master.default_chain }
io.write(mb.master.format(rep), "\n")

local m = mb.measure(a.out)
io.write(("loudness report of %s (measured from the file):\n"):format(a.out))
cli.print_table({ "", "value" }, {
  { "integrated", cli.db(m.integrated) .. " LUFS" },
  { "loudness range", cli.db(m.lra) .. " LU" },
  { "true peak", cli.db(m.true_peak) .. " dBTP" },
  { "sample peak", cli.db(m.sample_peak) .. " dBFS" },
  { "max short-term", cli.db(m.short_term_max) .. " LUFS" },
  { "duration", ("%.2f s"):format(m.duration) },
})
