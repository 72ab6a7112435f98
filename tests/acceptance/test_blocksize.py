#!/usr/bin/python3
"""Acceptance: results do not depend on the block size.

The issue: "The same graph rendered with blocks of 64, 1000 and 4096 frames
nulls below -120 dBFS."

The graph (one Lua script builds it three times, once per block size):
pink noise + an exponential sweep (stereo) summed into a 3-band eq whose
bell frequency is automated (exponential 300 Hz -> 5 kHz, then held), a gain
with a linear/exponential/hold envelope, width 1.4 with mono_below 150, a
parallel blend (mix 0.4) whose wet path is a Lua node that delays by 37
frames, declares latency = 37 and shapes the signal (x - x^3/3), a meter and
a 32-bit float output. A g:every(0.25) callback changes the width to 0.6 at
t = 0.5 s exactly (frame 24000: not a multiple of 4096, so a callback applied
at a block boundary instead of at its frame shows up). The three renders are
compared with numpy: length equal, peak |difference| < -120 dBFS.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbtest as T  # noqa: E402

BLOCKS = [64, 1000, 4096]
NULL_DB = -120.0
DUR = 2.5

SCRIPT = r"""
local DUR = %(dur)s
local function build(block, path, no_callback)
  local g = mb.graph{ rate = 48000, block = block }
  local pink = g:add("tone", { wave = "pink", level = -18, duration = DUR,
                                channels = 2, seed = 7, name = "pink" })
  local sweep = g:add("tone", { wave = "sweep", freq = 20, freq_end = 20000,
                                 level = -12, duration = DUR, channels = 2,
                                 name = "sweep" })
  local eq = g:add("eq", { name = "eq", bands = {
    { type = "lowshelf", freq = 120, gain = 4, q = 0.7 },
    { type = "bell", freq = 1000, gain = -6, q = 1.4 },
    { type = "highshelf", freq = 9000, gain = 3, q = 0.7 } } })
  g:connect(pink, eq)
  g:connect(sweep, eq)
  eq:automate("freq2", { {0, 300, "exponential"}, {1.7, 5000, "hold"},
                         {2.1, 2000} })
  local gn = g:add("gain", { gain = -6, name = "gain" })
  gn:automate("gain", { {0, -20, "linear"}, {0.8, -1, "exponential"},
                        {1.3, -9, "hold"}, {1.9, -3} })
  local wd = g:add("width", { width = 1.4, mono_below = 150, name = "width" })
  g:chain(eq, gn, wd)
  -- the wet path: a 37-frame delay with a soft cubic, latency declared
  local L = 37
  local bufs, pos = { {}, {} }, 1
  for c = 1, 2 do for i = 1, L do bufs[c][i] = 0 end end
  local shaper = g:add("lua", { channels = 2, latency = L, name = "shaper",
    process = function(b)
      local n = b.frames
      local p
      for c = 1, b.channels do
        local buf, ch = bufs[c], b[c]
        p = pos
        for i = 1, n do
          local x = ch[i]
          local y = buf[p]
          buf[p] = x
          ch[i] = y - y * y * y / 3
          p = p + 1
          if p > L then p = 1 end
        end
      end
      pos = p
    end })
  local bl = mb.parallel.blend(g, wd, { shaper }, { mix = 0.4, name = "blend" })
  local m = g:add("meter", { name = "meter" })
  local out = g:add("output", { path = path, bits = 32 })
  g:chain(bl, m, out)
  if not no_callback then
    g:every(0.25, function(t)
      if math.abs(t - 0.5) < 1e-9 then wd.width = 0.6 end
    end)
  end
  local st = g:render{}
  emit("frames_" .. block, st.frames)
  emit("latency_" .. block, st.latency)
  emit("outframes_" .. block, st.outputs[1].frames)
end
%(builds)s
"""


def main():
    T.require_modules("tone", "eq", "gain", "width", "blend", "meter", "lua")
    d = T.tmpdir()
    builds = "\n".join('build(%d, "out%d.wav")' % (b, b) for b in BLOCKS)
    builds += '\nbuild(1000, "nocb.wav", true)'
    vals = T.render(SCRIPT % {"dur": DUR, "builds": builds}, cwd=d)
    outs = {}
    for b in BLOCKS:
        x, fs = T.read(os.path.join(d, "out%d.wav" % b))
        outs[b] = x
        T.note("block %4d: %d frames x %d ch at %d Hz, peak %.2f dBFS, "
               "graph latency %s" % (b, x.shape[0], x.shape[1], fs, T.peak_db(x),
                                     vals.get("latency_%d" % b)))
    ref = outs[BLOCKS[0]]
    T.check(ref.shape[0] >= int(DUR * 48000) and ref.shape[1] == 2,
            "output is stereo and at least %.1f s long (%d frames)" % (DUR, ref.shape[0]))
    T.check(T.peak_db(ref) > -30, "output is not trivial: peak %.2f dBFS" % T.peak_db(ref))
    # the callback is really there: without it the render is the same up to
    # frame 24000 (t = 0.5 s) and different after it
    nocb, _ = T.read(os.path.join(d, "nocb.wav"))
    n = min(len(nocb), len(ref))
    dif = np.max(np.abs(nocb[:n] - ref[:n]), axis=1)
    changed = np.nonzero(dif > 0)[0]
    first = int(changed[0]) if len(changed) else -1
    T.check(first == 24000 and T.peak_db(dif) > -40,
            "the width change from g:every at 0.5 s starts at frame %d (expected 24000); "
            "it changes the output by up to %.1f dBFS" % (first, T.peak_db(dif)))
    for b in BLOCKS[1:]:
        x = outs[b]
        same_len = x.shape == ref.shape
        T.check(same_len, "block %d vs 64: same shape %s vs %s" % (b, x.shape, ref.shape))
        n = min(len(x), len(ref))
        diff = x[:n] - ref[:n]
        pk = T.peak_db(diff)
        where = int(np.argmax(np.max(np.abs(diff), axis=1))) if pk > -np.inf else -1
        T.check(pk < NULL_DB,
                "block %d vs 64: null peak %.1f dBFS (limit %.0f)%s" % (
                    b, pk, NULL_DB,
                    "" if pk < NULL_DB else ", first worst at frame %d (%.4f s)" % (where, where / 48000)))
    T.finish()


if __name__ == "__main__":
    main()
