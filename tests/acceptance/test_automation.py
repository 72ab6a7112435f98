#!/usr/bin/python3
"""Acceptance: automation envelopes land on their values.

The issue: "A gain envelope from -60 dB to 0 dB over 1 s meets its expected
level at ten checkpoints within 0.1 dB."

A 997 Hz sine (amplitude 0.5, 1.5 s, 48 kHz float WAV written here with
soundfile) goes through three gain nodes, each automated, to three 32-bit
float outputs (one render). The level is measured as the sample ratio
out[n] / in[n] (taken where |in[n]| > 0.25, so float rounding is negligible),
i.e. the gain actually applied at frame n, and compared with the envelope's
definition at time n / 48000:

  linear:      {0, -60, "linear"}, {1, 0}       -> -60 + 60 t dB (t <= 1),
               0 dB after; ten checkpoints t = 0.1 .. 1.0 (the usable frame
               nearest each), and every usable frame of 0..1.5 s.
  exponential: {0, -40, "exponential"}, {1, -10} -> -40 * (10/40)^t dB
               (a constant ratio between the values per unit time), ten
               checkpoints, and every frame.
  hold:        {0, -12, "hold"}, {0.5, -3, "hold"}, {1, -20}
               -> -12 dB before 0.5 s, -3 dB from 0.5 s to 1 s, -20 dB
               after. The design smooths jumps that would click, so frames
               within 1 ms of a point's time are not compared; everything
               else must be exact to 0.1 dB (reported: where the step
               actually happens).
All within 0.1 dB; also the polarity stays positive.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbtest as T  # noqa: E402

FS = 48000
DUR = 1.5
TOL = 0.1  # dB
CHECK_T = [0.1 * k for k in range(1, 11)]

SCRIPT = r"""
local g = mb.graph{ rate = 48000, block = 512 }
local src = g:add("input", { path = "in.wav" })
local function branch(name, pts)
  local gn = g:add("gain", { gain = 0, name = name })
  gn:automate("gain", pts)
  g:chain(src, gn, g:add("output", { path = name .. ".wav", bits = 32 }))
end
branch("lin", { {0, -60, "linear"}, {1, 0} })
branch("exp", { {0, -40, "exponential"}, {1, -10} })
branch("hold", { {0, -12, "hold"}, {0.5, -3, "hold"}, {1, -20} })
local st = g:render{}
emit("frames", st.frames)
"""


def expected_lin(t):
    return np.where(t <= 1, -60 + 60 * np.minimum(t, 1), 0.0)


def expected_exp(t):
    return np.where(t <= 1, -40 * (10 / 40) ** np.minimum(t, 1), -10.0)


def expected_hold(t):
    return np.where(t < 0.5, -12.0, np.where(t < 1.0, -3.0, -20.0))


def main():
    T.require_modules("input", "gain", "output")
    d = T.tmpdir()
    n = int(DUR * FS)
    t = np.arange(n) / FS
    x = 0.5 * np.sin(2 * np.pi * 997 * t)
    T.write(os.path.join(d, "in.wav"), x.astype(np.float32), FS, subtype="FLOAT")
    x = T.read(os.path.join(d, "in.wav"))[0][:, 0]
    T.render(SCRIPT, cwd=d)

    usable = np.abs(x) > 0.25
    for name, expf in (("lin", expected_lin), ("exp", expected_exp),
                       ("hold", expected_hold)):
        y, fs = T.read(os.path.join(d, name + ".wav"))
        y = y[:, 0]
        T.check(fs == FS and len(y) == n,
                "%s: output %d frames at %d Hz (input %d at %d)" % (name, len(y), fs, n, FS))
        m = min(len(y), n)
        idx = np.nonzero(usable[:m])[0]
        ratio = y[idx] / x[idx]
        T.check(np.all(ratio > 0), "%s: polarity kept (min ratio %.3g)" % (name, ratio.min()))
        lev = T.db(ratio)
        exp = expf(idx / FS)
        if name != "hold":
            worst = []
            for tc in CHECK_T:
                k = int(np.argmin(np.abs(idx - tc * FS)))
                e = lev[k] - exp[k]
                worst.append(abs(e))
                T.check(abs(e) <= TOL,
                        "%s: at t=%.2f s (frame %d) level %.3f dB, expected %.3f, error %+.4f dB"
                        % (name, tc, idx[k], lev[k], exp[k], e))
            err = np.abs(lev - exp)
            k = int(np.argmax(err))
            T.check(err[k] <= TOL,
                    "%s: every frame 0..%.1f s within %.1f dB: worst %.4f dB at %.4f s "
                    "(level %.3f, expected %.3f)" % (name, DUR, TOL, err[k], idx[k] / FS,
                                                   lev[k], exp[k]))
        else:
            tt = idx / FS
            away = (np.abs(tt - 0.5) > 0.001) & (np.abs(tt - 1.0) > 0.001)
            err = np.abs(lev - exp)
            for lo, hi, v in ((0, 0.5, -12), (0.5, 1.0, -3), (1.0, DUR, -20)):
                sel = away & (tt >= lo) & (tt < hi)
                k = np.argmax(err[sel])
                T.check(err[sel][k] <= TOL,
                        "hold: %.1f..%.1f s holds %g dB: worst error %.4f dB at %.4f s"
                        % (lo, hi, v, err[sel][k], tt[sel][k]))
            # where the steps actually happen (for the record)
            for p, a, b in ((0.5, -12, -3), (1.0, -3, -20)):
                near = np.abs(tt - p) <= 0.002
                moving = near & (np.abs(lev - a) > 0.01) & (np.abs(lev - b) > 0.01)
                if moving.any():
                    T.note("hold: step %g -> %g dB at %.1f s moves between %.5f and %.5f s"
                           % (a, b, p, tt[moving].min(), tt[moving].max()))
                else:
                    T.note("hold: step %g -> %g dB at %.1f s is instantaneous" % (a, b, p))
    T.finish()


if __name__ == "__main__":
    main()
