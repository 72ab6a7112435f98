#!/usr/bin/python3
"""Acceptance: latency compensation.

The issue: "blend at mix 0 nulls against the dry input below -140 dBFS;
mix 0.5 with a wet path of latency L is flat within +-0.05 dB. Two parallel
paths of different latency summed by the graph: flat within +-0.05 dB.
Output aligned to input: cross-correlation lag 0."

A wet path of latency L is a `lua` node that delays its input by L frames
(a ring buffer kept across blocks) and declares latency = L. Blocks are
256 frames, and L takes the values 1, 37 and 1000 (longer than a block).
Inputs are 48 kHz float WAVs written here with soundfile: white noise
(-10 dBFS RMS, seeded) for the nulls and the lag, a unit impulse at frame
4000 for the magnitude responses. Outputs are 32-bit float WAVs. Measured
here:
  - blend mix 0: peak |out - in| < -140 dBFS (in fact exactly 0 expected);
  - blend mix 0.5 (out = 0.5 dry + 0.5 wet by the module's documented linear
    law, so 0 dB when aligned): |FFT(out)/FFT(in)| within +-0.05 dB of 0 dB
    at every bin 20 Hz .. 20 kHz (a one-frame misalignment is -11.7 dB at
    20 kHz);
  - two paths, latency 10 (gain 1) and 300 (gain 0.5), summed at one input:
    within +-0.05 dB of 20 log10(1.5) at every bin 20 Hz .. 20 kHz;
  - input -> delay L -> output and input -> delay L1 -> delay L2 -> output:
    the lag of the peak of scipy.signal.correlate(out, in) is 0, the output
    has the input's length, and g:latency() and render's stats.latency equal
    the path's latency.
"""
import os
import sys

import numpy as np
from scipy import signal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbtest as T  # noqa: E402

FS = 48000
NULL_DB = -140.0
FLAT = 0.05
LATS = [1, 37, 1000]
N = 16384
IMP_AT = 4000

LUA_DELAY = r"""
-- g:latency() before the render (an error is reported, not raised)
local function latency_of(g)
  local ok, v = pcall(g.latency, g)
  if ok then return v end
  return "error: " .. tostring(v)
end
-- a lua node delaying by L frames (per channel ring buffers), output * scale
local function delay(g, L, scale, name)
  scale = scale or 1
  local bufs, pos = {}, 1
  return g:add("lua", { latency = L, name = name, process = function(b)
    local p = pos
    for c = 1, b.channels do
      local buf = bufs[c]
      if not buf then
        buf = {}
        for i = 1, L do buf[i] = 0 end
        bufs[c] = buf
      end
      local ch = b[c]
      p = pos
      for i = 1, b.frames do
        local x = ch[i]
        ch[i] = buf[p] * scale
        buf[p] = x
        p = p + 1
        if p > L then p = 1 end
      end
    end
    pos = p
  end })
end
"""


def blend_script(L):
    return LUA_DELAY + r"""
for _, case in ipairs{ {0, "noise.wav", "mix0_%(L)d.wav"},
                       {0.5, "impulse.wav", "mix05_%(L)d.wav"} } do
  local g = mb.graph{ rate = 48000, block = 256 }
  local src = g:add("input", { path = case[2] })
  local b = mb.parallel.blend(g, src, { delay(g, %(L)d) }, { mix = case[1] })
  g:chain(b, g:add("output", { path = case[3], bits = 32 }))
  emit("glat_" .. case[1], latency_of(g))
  local st = g:render{}
  emit("slat_" .. case[1], st.latency)
end
""" % {"L": L}


SUM_SCRIPT = LUA_DELAY + r"""
local g = mb.graph{ rate = 48000, block = 256 }
local src = g:add("input", { path = "impulse.wav" })
local sum = g:add("gain", { gain = 0 })
g:connect(g:chain(src, delay(g, 10, 1, "a")), sum)
g:connect(g:chain(src, delay(g, 300, 0.5, "b")), sum)
g:chain(sum, g:add("output", { path = "sum.wav", bits = 32 }))
emit("glat", latency_of(g))
emit("slat", g:render{}.latency)
"""

SERIES_SCRIPT = LUA_DELAY + r"""
for _, case in ipairs{ {%(lats)s}, {100, 1000} } do
  local g = mb.graph{ rate = 48000, block = 256 }
  local nodes = { g:add("input", { path = "noise.wav" }) }
  local total, tag = 0, ""
  for _, L in ipairs(case) do
    nodes[#nodes + 1] = delay(g, L)
    total, tag = total + L, tag .. "_" .. L
  end
  nodes[#nodes + 1] = g:add("output", { path = "series" .. tag .. ".wav", bits = 32 })
  g:chain(table.unpack(nodes))
  emit("glat" .. tag, latency_of(g))
  emit("slat" .. tag, g:render{}.latency)
  emit("total" .. tag, total)
end
"""


def response_db(y, x):
    """|FFT(y)/FFT(x)| in dB at the bins 20 Hz .. 20 kHz, and their freqs."""
    n = max(len(x), len(y))
    Y = np.fft.rfft(y, n)
    X = np.fft.rfft(x, n)
    f = np.fft.rfftfreq(n, 1 / FS)
    sel = (f >= 20) & (f <= 20000)
    return T.db(Y[sel] / X[sel]), f[sel]


def lag_of(y, x):
    c = signal.correlate(y, x, mode="full", method="fft")
    return int(np.argmax(np.abs(c))) - (len(x) - 1)


def main():
    T.require_modules("input", "output", "blend", "gain", "lua")
    d = T.tmpdir()
    rng = np.random.default_rng(1234)
    noise = (rng.standard_normal(N) * 10 ** (-10 / 20)).clip(-0.99, 0.99).astype(np.float32)
    imp = np.zeros(N, np.float32)
    imp[IMP_AT] = 1.0
    T.write(os.path.join(d, "noise.wav"), noise, FS)
    T.write(os.path.join(d, "impulse.wav"), imp, FS)
    noise = noise.astype(np.float64)
    imp = imp.astype(np.float64)

    for L in LATS:
        v = T.render(blend_script(L), cwd=d, what="blend L=%d" % L)
        y, fs = T.read(os.path.join(d, "mix0_%d.wav" % L))
        y = y[:, 0]
        T.check(len(y) == N, "blend L=%d mix 0: output %d frames (input %d)" % (L, len(y), N))
        m = min(len(y), N)
        pk = T.peak_db(y[:m] - noise[:m])
        T.check(pk < NULL_DB, "blend L=%d mix 0: null against dry input %.1f dBFS (limit %.0f)"
                % (L, pk, NULL_DB))
        y, fs = T.read(os.path.join(d, "mix05_%d.wav" % L))
        y = y[:, 0]
        T.check(len(y) == N, "blend L=%d mix 0.5: output %d frames (input %d)" % (L, len(y), N))
        h, f = response_db(y, imp)
        k = int(np.argmax(np.abs(h)))
        T.check(np.max(np.abs(h)) <= FLAT,
                "blend L=%d mix 0.5: response %.4f .. %+.4f dB, 20 Hz-20 kHz (limit +-%.2f; "
                "worst at %.0f Hz)" % (L, h.min(), h.max(), FLAT, f[k]))
        for key in ("glat_0", "slat_0", "glat_0.5", "slat_0.5"):
            T.check(v.get(key) == L, "blend L=%d mix %s: %s = %s (expected %d)" % (
                L, key.split("_")[1], "g:latency() before render" if key.startswith("g")
                else "stats.latency", v.get(key), L))

    v = T.render(SUM_SCRIPT, cwd=d, what="two paths")
    y, fs = T.read(os.path.join(d, "sum.wav"))
    y = y[:, 0]
    T.check(len(y) == N, "two paths (10, 300): output %d frames (input %d)" % (len(y), N))
    h, f = response_db(y, imp)
    target = 20 * np.log10(1.5)
    dev = h - target
    k = int(np.argmax(np.abs(dev)))
    T.check(np.max(np.abs(dev)) <= FLAT,
            "two paths (latency 10 x1, 300 x0.5): response %.4f .. %.4f dB vs %.4f "
            "(limit +-%.2f; worst at %.0f Hz)" % (h.min(), h.max(), target, FLAT, f[k]))
    T.check(v.get("glat") == 300 and v.get("slat") == 300,
            "two paths: g:latency() %s, stats.latency %s (expected 300)" % (v.get("glat"), v.get("slat")))

    v = T.render(SERIES_SCRIPT % {"lats": ", ".join(str(L) for L in LATS)}, cwd=d, what="series")
    for case in (LATS, [100, 1000]):
        tag = "".join("_%d" % L for L in case)
        total = sum(case)
        y, fs = T.read(os.path.join(d, "series%s.wav" % tag))
        y = y[:, 0]
        lag = lag_of(y, noise)
        T.check(lag == 0, "series delays %s (latency %d): cross-correlation lag %d (expected 0)"
                % (case, total, lag))
        T.check(len(y) == N, "series delays %s: output %d frames (input %d)" % (case, len(y), N))
        m = min(len(y), N)
        pk = T.peak_db(y[:m] - noise[:m])
        T.check(pk < NULL_DB, "series delays %s: output nulls against input: %.1f dBFS"
                % (case, pk))
        T.check(v.get("glat" + tag) == total and v.get("slat" + tag) == total,
                "series delays %s: g:latency() %s, stats.latency %s (expected %d)"
                % (case, v.get("glat" + tag), v.get("slat" + tag), total))
    T.finish()


if __name__ == "__main__":
    main()
