-- An example mixing session: a plain Lua table that a mix engineer edits.
-- Render it with
--
--   moonbus run scripts/mixdown.lua song.lua --mix mix.wav --stems stems
--
-- File paths are relative to this file. Levels and gains in dB, pan -1
-- (left) .. 1 (right), automation points { seconds, value [, curve] }.
-- The file runs in a sandbox: plain data, arithmetic and loops (no io, no
-- os, no require).

local bpm = 96
local bar = 4 * 60 / bpm -- seconds

return {
  rate = 48000, -- optional: else the first track's rate
  law = -3,     -- pan law of the console (0, -3, -4.5 or -6 dB at centre)

  tracks = {
    { name = "kick", file = "audio/kick.wav", bus = "drums", gain = -1,
      inserts = {
        { "eq", { bands = { { type = "highpass", freq = 30, slope = 24 },
                            { type = "bell", freq = 350, gain = -3, q = 1.5 } } } },
      } },
    { name = "snare", file = "audio/snare.wav", bus = "drums", pan = 0.05,
      sends = { { to = "room", level = -12 } } },
    { name = "overheads", file = "audio/overheads.wav", bus = "drums", gain = -4,
      inserts = { { "eq", { bands = { { type = "highpass", freq = 200 } } } } } },
    { name = "bass", file = "audio/bass.wav", bus = "music", gain = -2,
      inserts = { { "compressor", { threshold = -22, ratio = 4, attack = 10, release = 120 } } } },
    { name = "guitar", file = "audio/guitar.wav", bus = "music", pan = -0.6,
      sends = { { to = "room", level = -15 } } },
    -- the same part played twice, panned opposite; this one is out of
    -- polarity at the microphone
    { name = "guitar dbl", file = "audio/guitar2.wav", bus = "music", pan = 0.6, gain = -2,
      polarity = true },
    { name = "vocal", file = "audio/vocal.wav", gain = 0,
      inserts = {
        { "eq", { bands = { { type = "highpass", freq = 90 },
                            { type = "bell", freq = 3000, gain = 2, q = 1 } } } },
        { "compressor", { threshold = -20, ratio = 3, attack = 5, release = 80, knee = 6 } },
      },
      sends = { { to = "room", level = -14 },
                { to = "slap", level = -18, pre = true } },
      automation = {
        -- a ride: down 2 dB in the second verse, back up for the chorus
        gain = { { 8 * bar, 0 }, { 8 * bar + 1, -2 }, { 16 * bar - 1, -2 }, { 16 * bar, 0 } },
        -- more echo on the last line
        ["send:slap"] = { { 0, -18 }, { 20 * bar, -18 }, { 20 * bar + 0.5, -9 } },
      } },
  },

  buses = {
    { name = "drums", inserts = { { "compressor", { threshold = -18, ratio = 2.5, attack = 20,
      release = 150 } } } },
    { name = "music", gain = -1, width = 1.1 },
  },

  returns = {
    { name = "room", inserts = {
        { "eq", { bands = { { type = "highpass", freq = 250 } } } },
        { "reverb", { rt60 = 1.4, predelay = 25, mix = 1 } },
      } },
    { name = "slap", gain = -3, inserts = {
        { "delay", { note = "1/8", bpm = bpm, feedback = 0.2, mix = 1 } },
      } },
  },

  -- the master bus: keep it light (mastering comes after: moonbus master)
  master = { inserts = { { "eq", { bands = { { type = "highpass", freq = 20 } } } } } },

  -- a stem per route into the master: drums, music, room, slap and
  -- "direct" (the vocal); or a list: stems = { "drums", "vocal" }
  stems = true,
  output = { mix = "mix.wav", stems = "stems", bits = 24 },
}
