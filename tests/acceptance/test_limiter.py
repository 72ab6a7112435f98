#!/usr/bin/python3
"""Acceptance: the limiter and its true-peak detector, measured outside
moonbus (ffmpeg's ebur128 true-peak meter, numpy/scipy).

The issue: "limiter: look-ahead true-peak limiter (oversampled peak
detection), ceiling in dBTP, release, latency reported exactly; an option
for sample-peak mode." Measured here, on 32-bit float WAVs written with
soundfile and rendered with `mb.graph` at 44.1, 48 and 96 kHz:

  1. 12 dB of drive (`gain = 12`) into ceilings -1, -0.3 and -2 dBTP on a
     synthetic programme (kick, saw bass, noise snare, hats of noise
     high-passed at 6 kHz, pad: content up to Nyquist) and on the same
     programme band-limited (8th-order Butterworth low-pass at 0.4 fs, zero
     phase), and into -1 dBTP on a "hot square" at fs/4 whose samples sit
     45 degrees off the crests (+a, +a, -a, -a: a sine of amplitude a sqrt 2
     peaking between samples) and an fs/4 tone whose crests fall 1/8 sample
     after a sample: ffmpeg's true peak (ebur128=peak=true, largest
     per-frame metadata value, 0.001 linear steps; the summary's 0.1 dB
     figure is printed too) is at most the ceiling + 0.1 dB. So is the x16
     reference below, except on the full-band programme, where it counts
     content near Nyquist that meters (ffmpeg's, ours) roll off: printed;
  2. the detector alone: with the ceiling at -40 dBTP every peak is
     reduced, and the largest reduction is exactly the input's true peak
     minus the ceiling (module doc), so ceiling + max_gain_reduction is
     the detector's reading. Against the x16 reference: within 0.05 dB on
     band-limited signals and sines up to 0.41 fs, 0.2 dB on full-band ones
     (whose energy near Nyquist every interpolator treats differently);
     against ffmpeg within 0.2 dB and never 0.05 dB below it (at 96 kHz
     ffmpeg reads a 2x grid and misses crests of content above 20 kHz, so
     only the second holds there);
  3. latency: g:latency() and the render's stats equal the documented
     round(lookahead fs / 1000) (halves up) + 2 D, D = 18 frames below
     192 kHz in true-peak mode and 0 in sample-peak mode; a programme at
     -23 dBFS (no limiting) comes out bit-exact and aligned with the input
     (the graph removes the latency), and the cross-correlation of a limited
     render with its input peaks at lag 0;
  4. sample-peak mode (true_peak = false): numpy's max |sample| never
     exceeds 10^(ceiling/20) (the true peak may, printed);
  5. gain curve around one peak (a sample of 2.0 on DC 0.1, sample-peak
     mode, so out / in is the gain): it starts falling exactly `lookahead`
     ms before the peak, falls monotonically with no step larger than the
     S-curve's steepest, (1 - g_min) / max(k1, k2) with k1 + k2 = L + 2,
     reaches ceiling / 2.0 at the peak, holds `hold` ms, then 1 - gain
     decays with the time constant `release` (fitted slope within 1 %,
     level after one release time 1/e within 0.002); max_gain_reduction and
     gain_reduction_mean equal the gain curve's figures;
  6. steady sines: below the ceiling bit-exact; 7 dB over it at 1 kHz the
     settled output is a clean sine (THD+N below -100 dB); at 40 Hz the
     gain follows the waveform (distortion), and hold = 15 ms lowers the
     THD+N by at least 20 dB;
  7. renders with ceiling and gain automation are identical for block
     sizes 64, 1000 and 4096; bad values are refused with the parameter
     named; no NaN, Inf or subnormal in the output of silence, 1e-30, DC,
     a full-scale square or a burst then silence, pushed 24 dB;
  8. ffmpeg's alimiter (limit=-1dB, 12 dB in) on the same programme leaves
     true peaks above -1 dBTP (printed: it limits sample peaks); ours is
     asserted.
"""
import os
import re
import subprocess
import sys

import numpy as np
from scipy import signal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbtest as T  # noqa: E402

RATES = [44100, 48000, 96000]
CEILINGS = [-1.0, -0.3, -2.0]
TP_TOL = 0.1  # dB over the ceiling, ffmpeg and x16


def D_of(fs):
    """The detector's delay in frames (module doc): 4x below 192 kHz."""
    return 18 if fs < 192000 else 16


# ---- measuring (not moonbus) --------------------------------------------

def ffmpeg_tp(path):
    """(fine, summary): ffmpeg ebur128 true peak in dBTP, the largest
    per-frame metadata value (0.001 linear steps) and the summary line's
    0.1 dB figure."""
    p = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-i", path, "-af",
         "ebur128=peak=true:metadata=1,ametadata=mode=print:file=-",
         "-f", "null", "-"], capture_output=True, text=True)
    vals = [float(v) for v in
            re.findall(r"lavfi\.r128\.true_peak=([-+\d.e]+)", p.stdout)]
    summ = re.findall(r"True peak:\s*\n\s*Peak:\s*([-+\d.inf]+) dBFS", p.stderr)
    fine = 20 * np.log10(max(vals)) if vals and max(vals) > 0 else -np.inf
    return fine, float(summ[-1]) if summ else float("nan")


# x16 reference: the signal interpolated at 16 points per sample interval
# by a Kaiser-windowed sinc (beta 12) reaching 64 samples either side, each
# phase normalised to unity gain at DC; far longer than any meter's filter,
# so content up to near Nyquist is interpolated nearly ideally. To keep it
# fast it is evaluated only on the intervals whose quick 4x reading (scipy's
# default resample_poly x4) is within 2 dB of that reading's maximum. The
# same filter through scipy.signal.resample_poly(x, 16, 1, window=...)
# reads the same to 1e-5 dB, 50 times slower.
X16_HW = 64


def _x16_kernel():
    t = np.arange(1, 16)[:, None] / 16 - np.arange(-X16_HW + 1, X16_HW + 1)[None, :]
    w = np.i0(12 * np.sqrt(np.clip(1 - (t / X16_HW) ** 2, 0, None))) / np.i0(12)
    k = np.sinc(t) * w
    return k / k.sum(axis=1, keepdims=True)


X16 = _x16_kernel()


def x16_tp(x):
    """True peak (dBTP) of x (frames x channels) by the x16 reference."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    n = len(x)
    best = float(np.max(np.abs(x))) if x.size else 0.0
    offs = np.arange(-X16_HW + 1, X16_HW + 1)
    for c in range(x.shape[1]):
        if c and np.array_equal(x[:, c], x[:, 0]):
            continue
        quick = np.abs(signal.resample_poly(x[:, c], 4, 1)[:4 * n]).reshape(n, 4).max(1)
        cand = np.nonzero(quick >= quick.max() * 10 ** (-2 / 20))[0]
        xp = np.concatenate([np.zeros(X16_HW), x[:, c], np.zeros(X16_HW + 1)])
        for k in range(0, len(cand), 8192):
            j = cand[k:k + 8192]
            win = xp[j[:, None] + X16_HW + offs[None, :]]
            best = max(best, float(np.max(np.abs(win @ X16.T))))
    return -np.inf if best == 0 else 20 * np.log10(best)


def thdn_db(y, fs, f0):
    """THD+N of a steady sine: everything but the fundamental (least
    squares fit of f0's sine and cosine), relative to it, in dB."""
    t = np.arange(len(y)) / fs
    A = np.stack([np.sin(2 * np.pi * f0 * t), np.cos(2 * np.pi * f0 * t)], 1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    fit = A @ coef
    return T.rms_db(y - fit) - T.rms_db(fit)


# ---- signals ------------------------------------------------------------

def programme(fs, secs, seed=7):
    """Stereo: kick (swept sine), saw bass (harmonics below 0.45 fs), noise
    snare and hats (full band), pad; peaks near -3 dBFS."""
    rng = np.random.default_rng(seed)
    n = int(fs * secs)
    t = np.arange(n) / fs
    tb = t % 0.5
    kick = np.exp(-tb * 18) * np.sin(2 * np.pi * (45 * tb + 2 * (1 - np.exp(-tb * 30))))
    bass = np.zeros(n)
    for k in range(1, 40):
        if 55 * k < 0.45 * fs:
            bass += np.sin(2 * np.pi * 55 * k * t) / k
    ts = (t + 0.5) % 1.0
    snare = rng.standard_normal(n) * np.exp(-ts * 25)
    th = t % 0.125
    hp = signal.butter(2, 6000, "highpass", fs=fs, output="sos")
    hats = signal.sosfilt(hp, rng.standard_normal(n)) * np.exp(-th * 90)
    out = np.zeros((n, 2))
    for c in range(2):
        pad = sum(np.sin(2 * np.pi * f * t + c * i) for i, f in
                  enumerate((220.0, 277.18, 329.63)))
        out[:, c] = (0.45 * kick + 0.12 * bass + 0.18 * snare +
                     0.08 * hats * (1 + 0.3 * c) + 0.04 * pad)
    return out * (10 ** (-3 / 20) / np.max(np.abs(out)))


def bandlimited(x, fs):
    sos = signal.butter(8, 0.4 * fs, fs=fs, output="sos")
    y = signal.sosfiltfilt(sos, x, axis=0)
    return y * (10 ** (-3 / 20) / np.max(np.abs(y)))


def fade(n, fs, secs=0.05):
    """Raised-cosine fade in and out: abrupt onsets ring in any meter."""
    k = int(fs * secs)
    w = np.ones(n)
    r = 0.5 - 0.5 * np.cos(np.pi * np.arange(k) / k)
    w[:k] = r
    w[n - k:] = r[::-1]
    return w


def fs4_square(fs, secs=2.0, a=0.5):
    """+a, +a, -a, -a: the sine a sqrt 2 sin(pi n / 2 + pi / 4), crests
    exactly between samples."""
    n = int(fs * secs)
    x = a * np.where((np.arange(n) // 2) % 2 == 0, 1.0, -1.0) * fade(n, fs)
    return np.stack([x, x], 1)


def fs4_tone(fs, secs=2.0, a=0.7, off=0.125):
    """fs/4 sine with its crests `off` samples after a sample."""
    n = int(fs * secs)
    k = np.arange(n)
    x = a * np.cos(np.pi / 2 * (k - off)) * fade(n, fs)
    return np.stack([x, x], 1)


# ---- rendering ----------------------------------------------------------

def lua_opts(opts):
    parts = []
    for k, v in opts.items():
        if isinstance(v, bool):
            parts.append("%s = %s" % (k, "true" if v else "false"))
        else:
            parts.append("%s = %r" % (k, v))
    return "{ " + ", ".join(parts) + " }"


def render_many(d, jobs, block=None):
    """jobs: list of (in_path, out_path, limiter options). One moonbus run;
    returns per job (latency, max_gain_reduction, gain_reduction_mean)."""
    lines = []
    for i, (src, dst, opts) in enumerate(jobs):
        lines.append(
            "do local g = mb.graph{%s}\n"
            " local s = g:add('input', {path = %s})\n"
            " local l = g:add('limiter', %s)\n"
            " g:chain(s, l, g:add('output', {path = %s, bits = 32}))\n"
            " local st = g:render{progress = false}\n"
            " emit('lat%d', g:latency()); emit('slat%d', st.latency)\n"
            " emit('mgr%d', l.max_gain_reduction)\n"
            " emit('mean%d', l.gain_reduction_mean) end\n"
            % ("block = %d" % block if block else "", T.lua_str(src),
               lua_opts(opts), T.lua_str(dst), i, i, i, i))
    v = T.render("".join(lines), cwd=d)
    return [(v["lat%d" % i], v["slat%d" % i], v["mgr%d" % i], v["mean%d" % i])
            for i in range(len(jobs))]


def write(d, name, x, fs):
    p = os.path.join(d, name)
    T.write(p, x.astype(np.float32), fs)
    return p


# ---- 1. true peak against the ceiling ------------------------------------

def test_ceilings(d):
    jobs, meta = [], []
    for fs in RATES:
        prog = programme(fs, 4.0)
        sigs = {"programme": prog, "band-limited": bandlimited(prog, fs),
                "fs/4 square": fs4_square(fs), "fs/4 tone 1/8": fs4_tone(fs)}
        for si, (name, x) in enumerate(sigs.items()):
            src = write(d, "in_%d_%d.wav" % (fs, si), x, fs)
            # every ceiling for the programmes, -1 for the test tones
            for c in CEILINGS if si < 2 else CEILINGS[:1]:
                dst = os.path.join(d, "tp_%d_%d_%g.wav" % (fs, si, c))
                jobs.append((src, dst, {"ceiling": c, "gain": 12}))
                meta.append((fs, name, c, dst))
    res = render_many(d, jobs)
    worst_ff = -1e9
    for (fs, name, c, dst), (lat, slat, mgr, mean) in zip(meta, res):
        y, _ = T.read(dst)
        ff, summ = ffmpeg_tp(dst)
        xr = x16_tp(y)
        worst_ff = max(worst_ff, ff - c)
        # the x16 reference counts content up to Nyquist fully; meters (and
        # the limiter's detector) roll off above 20 kHz, so it is held to
        # the ceiling only for signals that have no such content
        full_band = name == "programme"
        T.check(ff <= c + TP_TOL and (full_band or xr <= c + TP_TOL),
                "%s, %d Hz, ceiling %+.1f, +12 dB: ffmpeg true peak %.3f dBTP "
                "(summary %.1f), x16 %.3f, sample peak %.3f; reduction max "
                "%.1f mean %.1f dB" % (name, fs, c, ff, summ, xr, T.peak_db(y),
                                       mgr, mean))
        T.check(ff >= c - 0.5, "%s, %d Hz: limited to the ceiling, not far "
                "below (ffmpeg %.3f)" % (name, fs, ff))
    T.note("largest ffmpeg true peak over the ceiling: %+.3f dB" % worst_ff)


# ---- 2. the detector alone ----------------------------------------------

def test_detector(d):
    jobs, meta = [], []
    rng = np.random.default_rng(3)
    for fs in RATES:
        prog = programme(fs, 4.0)
        n = int(fs * 2)
        t = np.arange(n) / fs
        sigs = [("programme", prog, 0.2), ("band-limited", bandlimited(prog, fs), 0.05),
                ("fs/4 square", fs4_square(fs), 0.05),
                ("noise", rng.standard_normal((n, 2)) * 0.1, 0.2)]
        for f0, ph in ((997.0, 0.3), (0.3 * fs, 1.1), (0.41 * fs, 0.2), (fs / 4, 0.6)):
            x = 0.5 * np.sin(2 * np.pi * f0 * t + ph) * fade(n, fs)
            sigs.append(("%.0f Hz sine" % f0, np.stack([x, x], 1), 0.05))
        for name, x, tol in sigs:
            src = write(d, "det_%d_%d.wav" % (fs, len(jobs)), x, fs)
            dst = os.path.join(d, "det_out_%d.wav" % len(jobs))
            jobs.append((src, dst, {"ceiling": -40}))
            meta.append((fs, name, tol, src))
    res = render_many(d, jobs)
    for (fs, name, tol, src), (lat, slat, mgr, mean) in zip(meta, res):
        x, _ = T.read(src)
        ours = -40 + mgr
        ref = x16_tp(x)
        ff, summ = ffmpeg_tp(src)
        # ffmpeg reads a 192 kHz grid: 2x at 96 kHz, where it misses
        # crests of content above 20 kHz; ours must not read below it
        ffok = ours >= ff - 0.05 and (fs >= 96000 or ours <= ff + 0.2)
        T.check(abs(ours - ref) <= tol and ffok,
                "detector on %s at %d Hz: %.3f dBTP; x16 %.3f (tol %.2f), "
                "ffmpeg %.3f (summary %.1f), sample peak %.3f"
                % (name, fs, ours, ref, tol, ff, summ, T.peak_db(x)))


# ---- 3. latency and alignment, 4. sample-peak mode ------------------------

def test_latency_and_sample_peak(d):
    jobs, meta = [], []
    for fs in RATES:
        quiet = programme(fs, 3.0) * 0.1  # -23 dBFS peaks
        hot = programme(fs, 3.0)
        qp, hp = write(d, "q_%d.wav" % fs, quiet, fs), write(d, "h_%d.wav" % fs, hot, fs)
        for tp, la in ((True, 3.0), (False, 3.0), (True, 1.5), (False, 5.0)):
            dst = os.path.join(d, "lat_%d_%d_%g.wav" % (fs, tp, la))
            jobs.append((qp, dst, {"true_peak": tp, "lookahead": la}))
            meta.append(("quiet", fs, tp, la, qp, dst, None))
        for c in CEILINGS:
            dst = os.path.join(d, "sp_%d_%g.wav" % (fs, c))
            jobs.append((hp, dst, {"true_peak": False, "ceiling": c, "gain": 12}))
            meta.append(("sample", fs, False, 3.0, hp, dst, c))
        dst = os.path.join(d, "hot_%d.wav" % fs)
        jobs.append((hp, dst, {"gain": 12}))
        meta.append(("hot", fs, True, 3.0, hp, dst, -1.0))
    res = render_many(d, jobs)
    for (kind, fs, tp, la, src, dst, c), (lat, slat, mgr, mean) in zip(meta, res):
        x, _ = T.read_raw32(src)
        y, _ = T.read_raw32(dst)
        want = int(np.floor(la * fs / 1000 + 0.5)) + (2 * D_of(fs) if tp else 0)
        if kind == "quiet":
            T.check(lat == want and slat == want,
                    "%d Hz, true_peak %s, lookahead %g ms: g:latency() %d, "
                    "render stats %d, documented %d" % (fs, tp, la, lat, slat, want))
            T.check(y.shape == x.shape and np.array_equal(x, y),
                    "%d Hz, true_peak %s: a -23 dBFS programme comes out "
                    "bit-exact and aligned (%d of %d samples differ)"
                    % (fs, tp, np.count_nonzero(x != y) if y.shape == x.shape else -1, x.size))
        elif kind == "sample":
            lim = 10 ** (c / 20)
            ff, _ = ffmpeg_tp(dst)
            T.check(float(np.max(np.abs(y))) <= lim,
                    "sample-peak mode, %d Hz, ceiling %+.1f: max |sample| "
                    "%.9f <= %.9f (true peak %.3f dBTP, let through)"
                    % (fs, c, np.max(np.abs(y)), lim, ff))
        else:
            # alignment under limiting: the cross-correlation of output and
            # input (driven 12 dB) peaks at lag 0
            a, b = y[:, 0].astype(float), x[:, 0].astype(float)
            cc = signal.correlate(a, b, mode="full", method="fft")
            lag = int(np.argmax(cc)) - (len(b) - 1)
            T.check(lag == 0, "%d Hz, limiting %.1f dB at most: cross-"
                    "correlation lag %d" % (fs, mgr, lag))


# ---- 5. the gain curve --------------------------------------------------

def test_gain_curve(d):
    fs = 48000
    n, P = fs * 2, 20000
    x = np.full((n, 1), 0.1)
    x[P, 0] = 2.0
    src = write(d, "spike.wav", x, fs)
    cases = [(3.0, 50.0, 0.0), (1.5, 20.0, 0.0), (5.0, 200.0, 10.0)]
    jobs = []
    for i, (la, rel, hold) in enumerate(cases):
        jobs.append((src, os.path.join(d, "spike_%d.wav" % i),
                     {"true_peak": False, "lookahead": la, "release": rel,
                      "hold": hold, "ceiling": -1}))
    res = render_many(d, jobs)
    C = 10 ** (-1 / 20)
    x, _ = T.read(src)  # as stored (float32 0.1)
    for i, ((la, rel, hold), (lat, slat, mgr, mean)) in enumerate(zip(cases, res)):
        y, _ = T.read(os.path.join(d, "spike_%d.wav" % i))
        g = y[:, 0] / x[:, 0]
        L, H = round(la * fs / 1000), round(hold * fs / 1000)
        gmin = C / 2.0
        first = int(np.argmax(g < 1))
        T.check(first == P - L, "lookahead %g ms: the gain starts falling %d "
                "frames before the peak (expected %d)" % (la, P - first, L))
        att = g[first - 1:P + 1]
        steps = -np.diff(att)
        k = max((L + 2) // 2, L + 2 - (L + 2) // 2)
        T.check(np.all(steps >= -1e-7) and steps.max() <= (1 - gmin) / k * 1.0001,
                "attack over %d frames: monotone, largest step %.3g of the "
                "gain (bound %.3g: no step)" % (L, steps.max(), (1 - gmin) / k))
        T.check(abs(g[P] - gmin) < 2e-6 and y[P, 0] <= np.float32(C),
                "gain at the peak %.7f, expected ceiling / 2 = %.7f; peak out "
                "%.8f" % (g[P], gmin, y[P, 0]))
        T.check(np.all(np.abs(g[P:P + H + 1] - gmin) < 2e-6),
                "hold %g ms: the gain stays at its lowest %d frames" % (hold, H))
        tau = rel * fs / 1000
        r0 = P + H
        t1, t2 = int(0.5 * tau), int(3 * tau)
        slope = (np.log(1 - g[r0 + t2]) - np.log(1 - g[r0 + t1])) / (t2 - t1)
        lvl = (1 - g[r0 + int(round(tau))]) / (1 - gmin)
        T.check(abs(-1 / slope / tau - 1) < 0.01 and abs(lvl - np.exp(-1)) < 0.002,
                "release %g ms: fitted time constant %.2f ms, reduction after "
                "one release time %.4f of its peak (1/e = %.4f)"
                % (rel, -1 / slope / fs * 1000, lvl, np.exp(-1)))
        T.check(abs(mgr + 20 * np.log10(gmin)) < 1e-4,
                "max_gain_reduction %.5f dB, gain curve %.5f dB" % (mgr, -20 * np.log10(gmin)))
        gm = -np.mean(20 * np.log10(g))
        T.check(abs(mean - gm) < 1e-4,
                "gain_reduction_mean %.6f dB, gain curve %.6f dB" % (mean, gm))


# ---- 6. steady sines ----------------------------------------------------

def test_sines(d):
    fs = 48000
    n = fs * 3
    t = np.arange(n) / fs
    lo = 0.5 * np.sin(2 * np.pi * 1000 * t)
    hi = 2.0 * np.sin(2 * np.pi * 1000 * t) * np.minimum(1, t / 0.01)
    bass = 2.0 * np.sin(2 * np.pi * 40 * t) * np.minimum(1, t / 0.05)
    paths = [write(d, name, np.stack([s, s], 1), fs)
             for name, s in (("lo.wav", lo), ("hi.wav", hi), ("bass.wav", bass))]
    jobs = [(paths[0], os.path.join(d, "lo_out.wav"), {}),
            (paths[1], os.path.join(d, "hi_out.wav"), {}),
            (paths[2], os.path.join(d, "bass_out.wav"), {}),
            (paths[2], os.path.join(d, "bass_hold.wav"), {"hold": 15})]
    render_many(d, jobs)
    x, _ = T.read_raw32(paths[0])
    y, _ = T.read_raw32(jobs[0][1])
    T.check(np.array_equal(x, y), "1 kHz at -6 dBFS (below the ceiling): "
            "output bit-exact")
    y, _ = T.read(jobs[1][1])
    seg = y[fs:, 0]
    th = thdn_db(seg, fs, 1000)
    ff, _ = ffmpeg_tp(jobs[1][1])
    T.check(th < -100, "1 kHz 7 dB over the ceiling: THD+N %.1f dB once "
            "settled, true peak %.3f dBTP" % (th, ff))
    y0, _ = T.read(jobs[2][1])
    y1, _ = T.read(jobs[3][1])
    t0, t1 = thdn_db(y0[fs:, 0], fs, 40), thdn_db(y1[fs:, 0], fs, 40)
    T.check(t1 < t0 - 20, "40 Hz 7 dB over: THD+N %.1f dB, with hold 15 ms "
            "%.1f dB" % (t0, t1))


# ---- 7. block sizes, bad values, finite output --------------------------

def test_blocks_bad_finite(d):
    fs = 44100
    src = write(d, "blk.wav", programme(fs, 3.0), fs)
    script = ""
    for b in (64, 1000, 4096):
        script += (
            "do local g = mb.graph{block = %d}\n"
            " local s = g:add('input', {path = %s})\n"
            " local l = g:add('limiter', {gain = 6, ceiling = -1, release = 40})\n"
            " l:automate('ceiling', {{0.5, -1}, {1.5, -3}, {2, -3, 'hold'}, {2, -0.5}})\n"
            " l:automate('gain', {{0, 6}, {1, 14, 'exponential'}, {2.5, 3}})\n"
            " g:chain(s, l, g:add('output', {path = 'blk_%d.wav', bits = 32}))\n"
            " g:render{progress = false} end\n" % (b, T.lua_str(src), b))
    T.render(script, cwd=d)
    ref, _ = T.read_raw32(os.path.join(d, "blk_64.wav"))
    for b in (1000, 4096):
        y, _ = T.read_raw32(os.path.join(d, "blk_%d.wav" % b))
        T.check(np.array_equal(ref, y), "automated render with block %d "
                "identical to block 64 (%d samples differ)"
                % (b, np.count_nonzero(ref != y) if ref.shape == y.shape else -1))
    ff, _ = ffmpeg_tp(os.path.join(d, "blk_64.wav"))
    T.check(ff <= -0.5 + TP_TOL,
            "automated ceiling (highest -0.5): true peak %.3f dBTP" % ff)

    bad = [("ceiling = 1", "ceiling"), ("ceiling = -50", "ceiling"),
           ("lookahead = 0.1", "lookahead"), ("lookahead = 50", "lookahead"),
           ("release = 0", "release"), ("gain = 40", "gain"),
           ("link = 2", "link"), ("hold = -1", "hold"),
           ("true_peak = 'yes'", "true_peak"), ("ceilling = -1", "ceiling")]
    for opt, name in bad:
        rc, out, err = T.run_lua("local g = mb.graph{}\n"
                                 "g:add('limiter', {%s})\n" % opt, cwd=d)
        T.check(rc != 0 and name in err, "bad value %s refused naming %s: %s"
                % (opt, name, err.strip().splitlines()[-1] if err.strip() else "(no message)"))

    n = fs * 2
    k = np.arange(n)
    sigs = {"silence": np.zeros(n), "1e-30": np.full(n, 1e-30),
            "DC": np.full(n, 0.9), "square": np.where((k // 50) % 2, 1.0, -1.0),
            "burst": np.where(k < fs // 4, np.random.default_rng(5).uniform(-1, 1, n), 0.0)}
    jobs = []
    for name, s in sigs.items():
        p = write(d, "fin_%s.wav" % name, np.stack([s, s], 1), fs)
        for tp in (True, False):
            jobs.append((p, os.path.join(d, "fin_%s_%d.wav" % (name, tp)),
                         {"gain": 24, "true_peak": tp}))
    render_many(d, jobs)
    for (src, dst, o) in jobs:
        y, _ = T.read_raw32(dst)
        sub = np.count_nonzero((y != 0) & (np.abs(y) < np.finfo(np.float32).tiny))
        T.check(np.all(np.isfinite(y)) and sub == 0 and np.max(np.abs(y)) <= 10 ** (-1 / 20),
                "%s pushed 24 dB (true_peak %s): finite, %d subnormal, peak %.2f dBFS"
                % (os.path.basename(src), o["true_peak"], sub, T.peak_db(y)))


# ---- 8. ffmpeg's alimiter on the same programme ---------------------------

def test_alimiter(d):
    fs = 48000
    src = write(d, "peer.wav", programme(fs, 6.0), fs)
    ours = os.path.join(d, "peer_ours.wav")
    theirs = os.path.join(d, "peer_alimiter.wav")
    render_many(d, [(src, ours, {"gain": 12, "ceiling": -1})])
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
                    "-y", "-i", src, "-af",
                    "alimiter=level_in=3.981:limit=-1dB:attack=5:release=50:"
                    "level=0:latency=1", "-c:a", "pcm_f32le", theirs], check=True)
    fo, so = ffmpeg_tp(ours)
    ft, st = ffmpeg_tp(theirs)
    yt, _ = T.read(theirs)
    T.note("ffmpeg alimiter limit=-1dB, 12 dB in: true peak %.3f dBTP (summary "
           "%.1f), sample peak %.3f dBFS: it limits sample peaks"
           % (ft, st, T.peak_db(yt)))
    T.check(fo <= -1 + TP_TOL, "ours on the same programme: %.3f dBTP (summary %.1f)"
            % (fo, so))


def main():
    if not T.require_modules("limiter"):
        T.finish()
    d = T.tmpdir()
    test_detector(d)
    test_ceilings(d)
    test_latency_and_sample_peak(d)
    test_gain_curve(d)
    test_sines(d)
    test_blocks_bad_finite(d)
    test_alimiter(d)
    T.finish()


if __name__ == "__main__":
    main()
