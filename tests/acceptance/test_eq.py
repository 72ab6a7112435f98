#!/usr/bin/python3
"""Acceptance: the eq module's magnitude response, measured outside moonbus.

The issue: "every band type within 0.05 dB of its analytic (RBJ cookbook)
magnitude from 20 Hz to 20 kHz at 44.1, 48, 96 and 192 kHz, including a
30 Hz +6 dB Q 2 bell at 192 kHz; 12 dB/oct high/low-pass at -3.01 +-0.05 dB
at the corner."

For each rate, one Lua script renders a unit impulse (tone, wave="impulse")
through a one-band eq per case into a 32-bit float WAV, plus the impulse
alone. Here the transfer function is H = FFT(out) / FFT(impulse), read at
the FFT bins nearest 300 log-spaced frequencies 20 Hz..20 kHz and compared
with the analytic magnitude at exactly those bin frequencies, computed from
the formulas below (written from the cookbook and scipy, not from the C):

  bell, lowshelf, highshelf, notch, bandpass, and high/low-pass at
  12 dB/oct: Audio EQ Cookbook coefficients, scipy.signal.freqz;
  high/low-pass at 6, 18..48 dB/oct: scipy.signal.butter of order slope/6
  (bilinear transform prewarped at the corner);
  tilt: the analog prototype H(s) = (a s + 1)/(s + a), a = 10^(gain/40),
  at s = j tan(pi f/fs)/tan(pi f0/fs) (bilinear transform prewarped at f0).

Points where the analytic response is below -90 dB are not compared: the
float32 file's rounding noise (about -150 dB) would be within 0.05 dB's
reach there. Corners are evaluated exactly at the corner frequency (a
direct DFT sum).

Environment: MOONBUS (the executable; default build/moonbus beside this
tree), MOONBUS_SRC (the source tree).
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import soundfile as sf
from scipy import signal

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("MOONBUS_SRC", os.path.normpath(os.path.join(HERE, "..", "..")))
MOONBUS = os.environ.get("MOONBUS", os.path.join(SRC, "build", "moonbus"))

RATES = [44100, 48000, 96000, 192000]
TOL = 0.05  # dB
FLOOR = -90.0  # dB: below it the float file's rounding noise matters
DURATION = 3.0  # s of impulse response: every case has decayed by far

# (type, freq, gain, q, slope)
CASES = [
    ("bell", 1000, 6, 1, 12),
    ("bell", 100, -12, 4, 12),
    ("bell", 10000, 12, 0.5, 12),
    ("bell", 30, 6, 2, 12),  # the 30 Hz +6 dB Q 2 bell
    ("bell", 5000, -20, 10, 12),
    ("lowshelf", 100, 6, 0.7071, 12),
    ("lowshelf", 1000, -9, 1.5, 12),
    ("highshelf", 10000, 4, 0.7071, 12),
    ("highshelf", 3000, -10, 0.5, 12),
    ("notch", 1000, 0, 4, 12),
    ("bandpass", 2000, 0, 2, 12),
    ("bandpass", 200, 0, 0.5, 12),
    ("tilt", 500, 6, 1, 12),
    ("tilt", 3000, -8, 1, 12),
    ("highpass", 1000, 0, 2, 12),
    ("lowpass", 5000, 0, 0.5, 12),
] + [("highpass", 80, 0, 0.7071, s) for s in range(6, 49, 6)] + [
    ("lowpass", 5000, 0, 0.7071, s) for s in range(6, 49, 6)
]


def cookbook(kind, fs, f0, gain, q):
    """Audio EQ Cookbook (R. Bristow-Johnson) coefficients b, a."""
    w0 = 2 * np.pi * f0 / fs
    cw, sw = np.cos(w0), np.sin(w0)
    al = sw / (2 * q)
    A = 10 ** (gain / 40)
    sA = 2 * np.sqrt(A) * al
    if kind == "bell":
        b = [1 + al * A, -2 * cw, 1 - al * A]
        a = [1 + al / A, -2 * cw, 1 - al / A]
    elif kind == "lowshelf":
        b = [A * ((A + 1) - (A - 1) * cw + sA), 2 * A * ((A - 1) - (A + 1) * cw),
             A * ((A + 1) - (A - 1) * cw - sA)]
        a = [(A + 1) + (A - 1) * cw + sA, -2 * ((A - 1) + (A + 1) * cw),
             (A + 1) + (A - 1) * cw - sA]
    elif kind == "highshelf":
        b = [A * ((A + 1) + (A - 1) * cw + sA), -2 * A * ((A - 1) + (A + 1) * cw),
             A * ((A + 1) + (A - 1) * cw - sA)]
        a = [(A + 1) - (A - 1) * cw + sA, 2 * ((A - 1) - (A + 1) * cw),
             (A + 1) - (A - 1) * cw - sA]
    elif kind == "highpass":
        b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2]
        a = [1 + al, -2 * cw, 1 - al]
    elif kind == "lowpass":
        b = [(1 - cw) / 2, 1 - cw, (1 - cw) / 2]
        a = [1 + al, -2 * cw, 1 - al]
    elif kind == "notch":
        b = [1, -2 * cw, 1]
        a = [1 + al, -2 * cw, 1 - al]
    elif kind == "bandpass":  # constant 0 dB peak gain
        b = [al, 0, -al]
        a = [1 + al, -2 * cw, 1 - al]
    else:
        raise ValueError(kind)
    return np.array(b), np.array(a)


def analytic_db(case, fs, f):
    kind, f0, gain, q, slope = case
    f = np.asarray(f, dtype=float)
    if kind == "tilt":
        a = 10 ** (gain / 40)
        s = 1j * np.tan(np.pi * f / fs) / np.tan(np.pi * f0 / fs)
        return 20 * np.log10(np.abs((a * s + 1) / (s + a)))
    if kind in ("highpass", "lowpass") and slope != 12:
        sos = signal.butter(slope // 6, f0, btype=kind, fs=fs, output="sos")
        _, h = signal.sosfreqz(sos, worN=f, fs=fs)
    else:
        b, a = cookbook(kind, fs, f0, gain, q)
        _, h = signal.freqz(b, a, worN=f, fs=fs)
    return 20 * np.log10(np.abs(h))


def lua_cases():
    rows = []
    for kind, f0, gain, q, slope in CASES:
        rows.append('  {type="%s", freq=%r, gain=%r, q=%r, slope=%d},'
                    % (kind, f0, gain, q, slope))
    return "\n".join(rows)


SCRIPT = r"""
local mb = require "moonbus"
local dir, R, dur = arg[1], tonumber(arg[2]), tonumber(arg[3])
local cases = {
%s
}
local function run(band, path)
  local g = mb.graph{ rate = R }
  local s = g:add("tone", { wave = "impulse", level = 0, duration = dur,
                            channels = 1 })
  local o = g:add("output", { path = path, bits = 32 })
  if band then
    local e = g:add("eq", { bands = { band } })
    g:chain(s, e, o)
  else
    g:chain(s, o)
  end
  g:render()
end
run(nil, dir .. "/ref.wav")
for i, band in ipairs(cases) do
  run(band, string.format("%%s/case%%02d.wav", dir, i))
end
"""


def dft_at(x, fs, f):
    n = np.arange(len(x))
    return np.sum(x * np.exp(-2j * np.pi * f * n / fs))


def label(case):
    kind, f0, gain, q, slope = case
    if kind in ("highpass", "lowpass"):
        return "%s %g Hz %d dB/oct q %g" % (kind, f0, slope, q)
    if kind in ("notch", "bandpass"):
        return "%s %g Hz q %g" % (kind, f0, q)
    if kind == "tilt":
        return "tilt %g Hz %+g dB" % (f0, gain)
    return "%s %g Hz %+g dB q %g" % (kind, f0, gain, q)


def main():
    if not os.access(MOONBUS, os.X_OK):
        print("moonbus: executable not found at %s (set MOONBUS)" % MOONBUS)
        return 1
    freqs = np.geomspace(20, 20000, 300)
    worst = {}  # label -> {rate: err}
    corners = []  # (label, rate, dB)
    failures = []
    with tempfile.TemporaryDirectory(prefix="mb_eq_") as tmp:
        script = os.path.join(tmp, "eq.lua")
        with open(script, "w") as fh:
            fh.write(SCRIPT % lua_cases())
        for fs in RATES:
            d = os.path.join(tmp, str(fs))
            os.mkdir(d)
            p = subprocess.run([MOONBUS, "run", script, d, str(fs), str(DURATION)],
                               capture_output=True, text=True)
            if p.returncode != 0:
                print("moonbus run failed at %d Hz (exit %d):\n%s%s"
                      % (fs, p.returncode, p.stdout, p.stderr))
                return 1
            x, xr = sf.read(os.path.join(d, "ref.wav"), dtype="float64")
            assert xr == fs, "ref.wav rate %d, expected %d" % (xr, fs)
            if np.count_nonzero(x) != 1:
                failures.append("%d Hz: the impulse has %d non-zero samples"
                                % (fs, np.count_nonzero(x)))
            for i, case in enumerate(CASES):
                y, yr = sf.read(os.path.join(d, "case%02d.wav" % (i + 1)),
                                dtype="float64")
                assert yr == fs
                if not np.all(np.isfinite(y)):
                    failures.append("%s at %d Hz: non-finite samples" % (label(case), fs))
                    continue
                # The response must have decayed within the file.
                if np.max(np.abs(y[-len(y) // 100:])) > 1e-7:
                    failures.append("%s at %d Hz: impulse response has not decayed"
                                    % (label(case), fs))
                nfft = 1 << int(np.ceil(np.log2(max(len(x), len(y)))))
                H = np.fft.rfft(y, nfft) / np.fft.rfft(x, nfft)
                k = np.unique(np.round(freqs * nfft / fs).astype(int))
                fk = k * fs / nfft
                ref = analytic_db(case, fs, fk)
                meas = 20 * np.log10(np.maximum(np.abs(H[k]), 1e-30))
                use = ref >= FLOOR
                err = np.abs(meas[use] - ref[use])
                e = float(np.max(err))
                worst.setdefault(label(case), {})[fs] = e
                if e > TOL:
                    j = int(np.argmax(err))
                    failures.append("%s at %d Hz: %.4f dB off at %.1f Hz"
                                    % (label(case), fs, e, fk[use][j]))
                kind, f0, _, q, slope = case
                if kind in ("highpass", "lowpass") and (slope != 12 or abs(q - 0.7071) < 1e-9):
                    c = 20 * np.log10(abs(dft_at(y, fs, f0) / dft_at(x, fs, f0)))
                    corners.append((label(case), fs, c))
                    if abs(c + 3.0103) > TOL:
                        failures.append("%s at %d Hz: corner at %.4f dB"
                                        % (label(case), fs, c))

    print("eq magnitude: worst |measured - analytic| in dB, 20 Hz..20 kHz "
          "(points above %g dB)" % FLOOR)
    print("%-36s" % "band" + "".join("%12s" % ("%g kHz" % (r / 1000)) for r in RATES))
    for lab, per in worst.items():
        print("%-36s" % lab + "".join("%12.2e" % per.get(r, np.nan) for r in RATES))
    print("\ncorners (12 dB/oct with q 0.7071, and Butterworth slopes): "
          "-3.0103 dB expected")
    cw = {}
    for lab, fs, c in corners:
        cw.setdefault(lab, {})[fs] = c
    for lab, per in cw.items():
        print("%-36s" % lab + "".join("%12.4f" % per.get(r, np.nan) for r in RATES))
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        return 1
    print("\nall within %g dB" % TOL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
