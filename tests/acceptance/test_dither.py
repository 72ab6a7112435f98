#!/usr/bin/python3
"""Acceptance: the dither module, rendered with moonbus and measured with
numpy/scipy/soundfile.

The issue: "TPDF at the target bit depth (16, 20, 24), and noise-shaped
curves at 44.1 and 48 kHz; other rates fall back to TPDF and say so."
Figures checked (the error is output file minus input, in LSB of the
target depth; inputs are float32 WAVs written here, so the input the module
saw is known exactly):

 1. TPDF, 16 bits, 48 kHz, on silence, a -90 dBFS and a -60 dBFS sine:
    error variance 0.25 +-0.01 LSB^2 (TPDF of +-1 LSB peak, 1/6, plus
    rounding, 1/12); |mean| < 0.01 LSB; correlation with the input under
    0.01 (the error does not depend on the signal).
 2. A -90 dBFS 1 kHz sine (20 s): averaged spectrum of the 16-bit output
    (Welch, Hann, 32768 points), every harmonic 2..10 kHz no more than 6 dB
    above the median floor within +-300 Hz of it. Control: numpy's plain
    rounding of the same input (no dither) must fail this check, so the
    check can fail.
 3. Every shaped curve at 44.1 and 48 kHz on -20 dBFS programme noise: the
    error's mean density over 2-5 kHz at least 15 dB under the flat TPDF
    render's; and the error spectrum within 1 dB of 0.25 |E(f)|^2 in
    third-octave bands from 50 Hz to 0.45 fs, where E(z) = 1 - sum c_k z^-k
    is computed here: at 44.1 kHz from the published coefficients
    (Wannamaker 1992 3- and 9-tap F-weighted; Lipshitz, Wannamaker &
    Vanderkooy 1991 5-tap E-weighted), at 48 kHz from this file's own fit
    of the same curve (scipy's Toeplitz solver; the module documents the
    method).
 4. A -0.1 dBFS 1 kHz sine and random programme peaking at -0.1 dBFS,
    every shape, 44.1 and 48 kHz: max |out| < 32767/32768, no sample
    clipped (module result and file writer), and |error| <= 1.5 (1 +
    sum |c_k|) LSB, the bound of the error feedback.
 5. 96 kHz (and 88.2 kHz) with shape "f-weighted": results report
    fallback_tpdf = 1 and shape_used = 0 (tpdf); the error is flat (octave
    bands 100 Hz .. 40 kHz within 0.5 dB of 0.25 LSB^2 white) with variance
    0.25 +-0.01.
 6. 20 and 24 bits: variance 0.25 +-0.01 of their own LSB on a -60 dBFS
    sine and on silence; every output sample exactly on the grid (float
    file: value * 2^(bits-1) integral; 24-bit WAV: 20-bit codes have their
    low 4 bits clear).
 7. Renders repeat bit for bit; block sizes 64, 1000 and 4096 give
    identical files (stereo, tpdf and f-weighted); another seed gives
    uncorrelated noise; stereo channels get independent noise.
 8. Bad values (bits 12, bits 18, an unknown shape, seed -1) are rejected
    naming the parameter and value; hostile input (silence, 1e-40, DC,
    full-scale square, over-full-scale square, a burst then silence) gives
    no NaN, Inf or subnormal, stays on the 16-bit grid and within
    [-1, 32767/32768].
"""
import os
import sys

import numpy as np
import soundfile as sf
from scipy import signal
from scipy.linalg import solve_toeplitz

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbtest as T  # noqa: E402

# Published 44.1 kHz error-feedback coefficients c_k, E(z) = 1 - sum c_k z^-k
PUB = {
    "light": [1.623, -0.982, 0.109],
    "e-weighted": [2.033, -2.165, 1.959, -1.590, 0.6149],
    "f-weighted": [2.412, -3.370, 3.937, -4.174, 3.353, -2.205, 1.281, -0.569, 0.0847],
}
SHAPES = list(PUB)


def resp_pow(c, f, fs):
    """|E(f)|^2 for E(z) = 1 - sum c_k z^-k."""
    a = np.r_[1.0, -np.asarray(c, dtype=float)]
    z = np.exp(-2j * np.pi * np.outer(np.asarray(f, dtype=float) / fs, np.arange(len(a))))
    return np.abs(z @ a) ** 2


def fit(c44, fs, grid=4096):
    """The documented refit: order-N linear prediction of a process whose
    spectrum is 1 / |E44(f)|^2 (f held at 22.05 kHz above it), on a
    midpoint grid over 0..fs/2."""
    f = (np.arange(grid) + 0.5) / grid * fs / 2
    w = 1 / resp_pow(c44, np.minimum(f, 22050), 44100)
    n = len(c44)
    r = np.array([np.mean(w * np.cos(2 * np.pi * f / fs * k)) for k in range(n + 1)])
    return solve_toeplitz(r[:-1], r[1:])


def curve(shape, fs):
    return np.array(PUB[shape]) if fs == 44100 else fit(PUB[shape], fs)


def err_lsb(x, y, bits):
    return (y - x) * 2.0 ** (bits - 1)


def psd(e, fs, n=4096):
    f, p = signal.welch(e, fs=fs, window="hann", nperseg=n, scaling="density")
    return f, p


def band_mean(f, p, lo, hi):
    m = (f >= lo) & (f <= hi)
    return float(np.mean(p[m]))


def db10(x):
    return 10 * np.log10(x)


def main():
    d = T.tmpdir()
    rng = np.random.default_rng(20240601)
    inputs = {}

    def put(name, x, fs):
        x = np.asarray(x, dtype=np.float32)
        T.write(os.path.join(d, name + ".wav"), x, fs)
        inputs[name] = x.astype(np.float64)

    def sine(db, f, secs, fs):
        t = np.arange(int(secs * fs)) / fs
        return 10 ** (db / 20) * np.sin(2 * np.pi * f * t)

    def programme(secs, fs, rms_db=None, peak_db=None, ch=1):
        # noise with a falling spectrum (one-pole low-pass at 2 kHz plus
        # some white), like music
        n = int(secs * fs)
        w = rng.standard_normal((n, ch))
        b, a = signal.butter(1, 2000, fs=fs)
        x = signal.lfilter(b, a, w, axis=0) + 0.2 * w
        if rms_db is not None:
            x *= 10 ** (rms_db / 20) / np.sqrt(np.mean(x ** 2))
            x = np.clip(x, -0.5, 0.5)
        else:
            x *= 10 ** (peak_db / 20) / np.max(np.abs(x))
        return x if ch > 1 else x[:, 0]

    put("sil48", np.zeros(480000), 48000)
    put("s90_48", sine(-90, 1000, 20, 48000), 48000)
    put("s60_48", sine(-60, 997, 10, 48000), 48000)
    for fs in (44100, 48000):
        put("prog%d" % fs, programme(10, fs, rms_db=-20), fs)
        put("top_sine%d" % fs, sine(-0.1, 1000, 3, fs), fs)
        put("top_prog%d" % fs, programme(3, fs, peak_db=-0.1), fs)
    put("prog96000", programme(5, 96000, rms_db=-20), 96000)
    put("prog88200", programme(2, 88200, rms_db=-20), 88200)
    put("st48", programme(4, 48000, rms_db=-20, ch=2), 48000)
    put("silst48", np.zeros((480000, 2)), 48000)
    # hostile: silence, 1e-40 (subnormal), DC, full-scale square, square
    # at +6 dBFS, a burst then silence; 0.25 s each at 48 kHz
    q = 12000
    sq = np.where((np.arange(q) // 24) % 2 == 0, 1.0, -1.0)
    hostile = np.concatenate([np.zeros(q), np.full(q, 1e-40), np.full(q, 0.5), sq, 2 * sq,
                              0.5 * rng.standard_normal(q // 10), np.zeros(q)])
    put("hostile", np.clip(hostile, -2, 2), 48000)
    # blank: programme, exact silence on both channels, silence on the
    # right channel only, programme again (0.5 s each, stereo)
    h = 24000
    pr = programme(2, 48000, rms_db=-30, ch=2)
    one_side = pr[2 * h:3 * h].copy()
    one_side[:, 1] = 0
    put("blank_in", np.concatenate([pr[:h], np.zeros((h, 2)), one_side, pr[3 * h:4 * h]]), 48000)

    # ---- the renders: (tag, input, rate, dither options, file bits, block)
    cases = [
        ("tpdf_sil", "sil48", 48000, 'bits = 16', 16, 4096),
        ("tpdf_s90", "s90_48", 48000, 'bits = 16', 16, 4096),
        ("tpdf_s60", "s60_48", 48000, 'bits = 16', 16, 4096),
        ("b20_s60", "s60_48", 48000, 'bits = 20', 32, 4096),
        ("b24_s60", "s60_48", 48000, 'bits = 24', 32, 4096),
        ("b20_sil", "sil48", 48000, 'bits = 20', 32, 4096),
        ("b24_sil", "sil48", 48000, 'bits = 24', 32, 4096),
        ("b20_w24", "s60_48", 48000, 'bits = 20', 24, 4096),
        ("b24_w24", "s60_48", 48000, 'bits = 24', 24, 4096),
        ("fb96", "prog96000", 96000, 'bits = 16, shape = "f-weighted"', 16, 4096),
        ("fb88", "prog88200", 88200, 'bits = 16, shape = "light"', 16, 4096),
        ("rep1", "st48", 48000, 'shape = "f-weighted"', 16, 4096),
        ("rep2", "st48", 48000, 'shape = "f-weighted"', 16, 4096),
        ("seed1", "st48", 48000, 'shape = "f-weighted", seed = 1', 16, 4096),
        ("stsil", "silst48", 48000, 'bits = 16', 16, 4096),
        ("hostile_tpdf", "hostile", 48000, 'bits = 16', 32, 1000),
        ("hostile_f", "hostile", 48000, 'bits = 16, shape = "f-weighted"', 32, 1000),
        ("blank_tpdf", "blank_in", 48000, 'bits = 16, blank = true', 16, 1000),
        ("blank_f", "blank_in", 48000, 'bits = 16, shape = "f-weighted", blank = true', 16, 1000),
        ("noblank", "blank_in", 48000, 'bits = 16', 16, 1000),
    ]
    for sh in ["tpdf"] + SHAPES:
        for blk in (64, 1000):
            cases.append(("blk%d_%s" % (blk, sh), "st48", 48000, 'shape = "%s"' % sh, 16, blk))
        cases.append(("blk4096_%s" % sh, "st48", 48000, 'shape = "%s"' % sh, 16, 4096))
    for fs in (44100, 48000):
        for sh in ["tpdf"] + SHAPES:
            opt = 'bits = 16, shape = "%s"' % sh
            cases.append(("prog_%s_%d" % (sh, fs), "prog%d" % fs, fs, opt, 16, 4096))
            cases.append(("tops_%s_%d" % (sh, fs), "top_sine%d" % fs, fs, opt, 16, 4096))
            cases.append(("topp_%s_%d" % (sh, fs), "top_prog%d" % fs, fs, opt, 16, 4096))

    lua = [r"""
local function run(tag, inp, rate, opts, obits, block)
  local g = mb.graph{ rate = rate, block = block }
  local s = g:add("input", { path = inp .. ".wav" })
  local dn = g:add("dither", opts)
  g:chain(s, dn, g:add("output", { path = tag .. ".wav", bits = obits }))
  local st = g:render{ progress = false }
  emit(tag .. ".clipped", dn.clipped)
  emit(tag .. ".fallback", dn.fallback_tpdf)
  emit(tag .. ".shape_used", dn.shape_used)
  emit(tag .. ".wclipped", st.outputs[1].clipped)
  emit(tag .. ".blanked", dn.blanked)
end
local function bad(tag, opts)
  local ok, e = pcall(function()
    local g = mb.graph{ rate = 48000 }
    local s = g:add("input", { path = "sil48.wav" })
    g:chain(s, g:add("dither", opts), g:add("output", { path = "bad.wav" }))
    g:render{ progress = false }
  end)
  emit("bad." .. tag, ok and "accepted" or tostring(e))
end
bad("bits12", { bits = 12 })
bad("bits18", { bits = 18 })
bad("shape", { shape = "super-shaped" })
bad("seed", { seed = -1 })
"""]
    for tag, inp, fs, opt, obits, blk in cases:
        lua.append('run(%s, %s, %d, { %s }, %d, %d)' % (T.lua_str(tag), T.lua_str(inp), fs, opt,
                                                         obits, blk))
    vals = T.render("\n".join(lua), cwd=d, what="dither renders")

    def out(tag):
        return T.read(os.path.join(d, tag + ".wav"))[0]

    def out1(tag):
        return out(tag)[:, 0]

    # 1. TPDF statistics at 16 bits
    for tag, inp in (("tpdf_sil", "sil48"), ("tpdf_s90", "s90_48"), ("tpdf_s60", "s60_48")):
        x = inputs[inp]
        e = err_lsb(x, out1(tag), 16)
        v, m = float(np.var(e)), float(np.mean(e))
        T.check(abs(v - 0.25) <= 0.01, "%s: error variance %.4f LSB^2 (0.25 +-0.01)" % (tag, v))
        T.check(abs(m) < 0.01, "%s: error mean %+.4f LSB (|m| < 0.01)" % (tag, m))
        if np.any(x):
            r = float(np.corrcoef(e, x)[0, 1])
            T.check(abs(r) < 0.01, "%s: error-input correlation %+.4f (< 0.01)" % (tag, r))
        T.check(vals.get(tag + ".clipped") == 0 and vals.get(tag + ".fallback") == 0,
                "%s: results clipped %s, fallback_tpdf %s" % (
                    tag, vals.get(tag + ".clipped"), vals.get(tag + ".fallback")))

    # 2. harmonics of a -90 dBFS tone
    def worst_harmonic(y):
        f, p = signal.welch(y, fs=48000, window="hann", nperseg=32768, scaling="density")
        df = f[1]
        worst = -np.inf
        for k in range(2, 11):
            i = int(round(k * 1000 / df))
            h = np.max(p[i - 2:i + 3])
            near = (np.abs(f - k * 1000) <= 300) & (np.abs(np.arange(len(f)) - i) > 10)
            worst = max(worst, db10(h / np.median(p[near])))
        return worst

    y90 = out1("tpdf_s90")
    w = worst_harmonic(y90)
    T.check(w <= 6, "-90 dBFS 1 kHz: highest harmonic 2-10 kHz %.1f dB above the floor (<= 6)" % w)
    # control: plain rounding (no dither) plus independent white noise of
    # the same 0.25 LSB^2, i.e. the same floor with the undithered
    # quantiser's distortion on top
    xq = np.round(inputs["s90_48"] * 32768) + rng.normal(0, 0.5, len(y90))
    ctrl = worst_harmonic(xq / 32768)
    T.check(ctrl > 6, "control, undithered rounding + same noise floor: harmonic %.1f dB above "
            "the floor (> 6: the check can fail)" % ctrl)

    # 3. shaped spectra
    for fs in (44100, 48000):
        x = inputs["prog%d" % fs]
        f, pt = psd(err_lsb(x, out1("prog_tpdf_%d" % fs), 16), fs)
        flat = band_mean(f, pt, 2000, 5000)
        T.check(abs(db10(flat / (0.25 / (fs / 2)))) < 0.3,
                "%d Hz tpdf: 2-5 kHz error density %.2f dB re 0.25 LSB^2 white" % (
                    fs, db10(flat / (0.25 / (fs / 2)))))
        for sh in SHAPES:
            tag = "prog_%s_%d" % (sh, fs)
            f, ps = psd(err_lsb(x, out1(tag), 16), fs)
            drop = db10(band_mean(f, ps, 2000, 5000) / flat)
            T.check(drop <= -15, "%s at %d Hz: 2-5 kHz error %.1f dB re flat TPDF (<= -15)" % (
                sh, fs, drop))
            T.check(vals.get(tag + ".shape_used") == SHAPES.index(sh) + 1 and
                    vals.get(tag + ".fallback") == 0, "%s at %d: shape_used %s, fallback %s" % (
                        sh, fs, vals.get(tag + ".shape_used"), vals.get(tag + ".fallback")))
            c = curve(sh, fs)
            worst, at = 0.0, 0.0
            fc = 50.0
            while fc * 2 ** (1 / 6) < 0.45 * fs:
                lo, hi = fc * 2 ** (-1 / 6), fc * 2 ** (1 / 6)
                m = (f >= lo) & (f <= hi)
                if np.any(m):
                    want = np.mean(0.25 * resp_pow(c, f[m], fs) / (fs / 2))
                    dev = db10(np.mean(ps[m]) / want)
                    if abs(dev) > abs(worst):
                        worst, at = dev, fc
                fc *= 2 ** (1 / 3)
            T.check(abs(worst) <= 1.0, "%s at %d Hz: error spectrum within %.2f dB of 0.25|E|^2 "
                    "(worst at %.0f Hz; <= 1 dB)" % (sh, fs, worst, at))

    # 4. near full scale
    for fs in (44100, 48000):
        for sh in ["tpdf"] + SHAPES:
            bound = 1.5 * (1 + (np.sum(np.abs(curve(sh, fs))) if sh != "tpdf" else 0))
            for kind in ("tops", "topp"):
                tag = "%s_%s_%d" % (kind, sh, fs)
                x = inputs[("top_sine%d" if kind == "tops" else "top_prog%d") % fs]
                y = out1(tag)
                e = err_lsb(x, y, 16)
                T.check(np.max(np.abs(y)) < 32767 / 32768 and np.min(y) > -1 and
                        vals.get(tag + ".clipped") == 0 and vals.get(tag + ".wclipped") == 0,
                        "%s: peak %.6f (< 32767/32768), clipped %s/%s" % (
                            tag, np.max(np.abs(y)), vals.get(tag + ".clipped"),
                            vals.get(tag + ".wclipped")))
                T.check(np.max(np.abs(e)) <= bound, "%s: |error| <= %.1f LSB (bound %.1f)" % (
                    tag, np.max(np.abs(e)), bound))

    # 5. fallback at other rates
    for tag, fs, inp in (("fb96", 96000, "prog96000"), ("fb88", 88200, "prog88200")):
        T.check(vals.get(tag + ".fallback") == 1 and vals.get(tag + ".shape_used") == 0,
                "%s: results fallback_tpdf %s, shape_used %s (1, 0)" % (
                    tag, vals.get(tag + ".fallback"), vals.get(tag + ".shape_used")))
        e = err_lsb(inputs[inp], out1(tag), 16)
        T.check(abs(np.var(e) - 0.25) <= 0.01, "%s: variance %.4f (0.25 +-0.01)" % (tag, np.var(e)))
        f, p = psd(e, fs)
        worst, fc = 0.0, 100.0
        while fc * 2 ** 0.5 < 0.45 * fs:
            dev = db10(band_mean(f, p, fc / 2 ** 0.5, fc * 2 ** 0.5) / (0.25 / (fs / 2)))
            worst = dev if abs(dev) > abs(worst) else worst
            fc *= 2
        T.check(abs(worst) <= 0.5, "%s: flat, octave bands within %.2f dB of 0.25 LSB^2 white "
                "(<= 0.5)" % (tag, worst))

    # 6. 20 and 24 bits
    for bits in (20, 24):
        for src in ("s60", "sil"):
            tag = "b%d_%s" % (bits, src)
            x = inputs["s60_48" if src == "s60" else "sil48"]
            y = T.read_raw32(os.path.join(d, tag + ".wav"))[0][:, 0].astype(np.float64)
            q = y * 2.0 ** (bits - 1)
            e = err_lsb(x, y, bits)
            T.check(np.all(q == np.round(q)), "%s: every sample on the 2^-%d grid" % (tag, bits - 1))
            T.check(abs(np.var(e) - 0.25) <= 0.01 and abs(np.mean(e)) < 0.01,
                    "%s: variance %.4f, mean %+.4f LSB%d" % (tag, np.var(e), np.mean(e), bits))
        yi, _ = sf.read(os.path.join(d, "b%d_w24.wav" % bits), dtype="int32", always_2d=True)
        low = (yi[:, 0] >> 8) % (1 << (24 - bits))
        T.check(np.all(low == 0) and np.any(yi != 0),
                "%d bits in a 24-bit WAV: %d codes off the grid" % (bits, int(np.sum(low != 0))))

    # 7. repeatable, block sizes, seeds, channels
    def raw(tag):
        with open(os.path.join(d, tag + ".wav"), "rb") as fh:
            return fh.read()
    T.check(raw("rep1") == raw("rep2"), "two renders of the same script are identical files")
    for sh in ["tpdf"] + SHAPES:
        a = out("blk64_%s" % sh)
        same = all(np.array_equal(a, out("blk%d_%s" % (b, sh))) for b in (1000, 4096))
        T.check(same, "%s: blocks 64, 1000, 4096 give identical output" % sh)
    x = inputs["st48"]
    e0 = err_lsb(x, out("rep1"), 16)
    e1 = err_lsb(x, out("seed1"), 16)
    r = float(np.corrcoef(e0[:, 0], e1[:, 0])[0, 1])
    T.check(abs(r) < 0.02, "seed 0 vs seed 1: error correlation %+.4f (< 0.02)" % r)
    s = out("stsil")
    r = float(np.corrcoef(s[:, 0], s[:, 1])[0, 1])
    T.check(abs(r) < 0.01, "stereo channels' dither correlation %+.4f (< 0.01)" % r)

    # 8. bad values and hostile input
    for tag, words in (("bits12", ("bits", "12")), ("bits18", ("bits", "18", "16, 20 or 24")),
                       ("shape", ("shape", "super-shaped")), ("seed", ("seed", "-1"))):
        msg = str(vals.get("bad." + tag))
        T.check(msg != "accepted" and all(w in msg for w in words),
                "bad %s rejected: %s" % (tag, msg))
    for tag in ("hostile_tpdf", "hostile_f"):
        y = T.read_raw32(os.path.join(d, tag + ".wav"))[0][:, 0]
        tiny = np.finfo(np.float32).tiny
        bad = (~np.isfinite(y)) | ((y != 0) & (np.abs(y) < tiny))
        q = y.astype(np.float64) * 32768
        T.check(not np.any(bad), "%s: %d NaN/Inf/subnormal samples" % (tag, int(np.sum(bad))))
        T.check(np.all(q == np.round(q)) and np.max(y) <= 32767 / 32768 and np.min(y) >= -1,
                "%s: on the 16-bit grid, within [-1, 32767/32768] (max %.6f, min %.6f)" % (
                    tag, np.max(y), np.min(y)))
        over = int(np.sum(np.abs(inputs["hostile"]) > 1))
        T.check(vals.get(tag + ".clipped") >= over, "%s: %s samples reported clipped (input has "
                "%d beyond full scale)" % (tag, vals.get(tag + ".clipped"), over))

    # 9. blank: digital silence in, digital silence out; everything else
    # dithered as without it
    x = inputs["blank_in"]
    h = 24000
    silent = np.all(x == 0, axis=1)
    for tag in ("blank_tpdf", "blank_f"):
        y = out(tag)
        T.check(np.all(y[silent] == 0), "%s: %d frames of silence in, %d non-zero samples out (0)" % (
            tag, int(np.sum(silent)), int(np.count_nonzero(y[silent]))))
        T.check(vals.get(tag + ".blanked") == int(np.sum(silent)), "%s: blanked %s frames (%d silent)" % (
            tag, vals.get(tag + ".blanked"), int(np.sum(silent))))
        right = y[2 * h:3 * h, 1]
        # TPDF of +-1 LSB rounds a zero to a non-zero code when |d| > 1/2:
        # a quarter of the samples (more with shaping)
        T.check(np.count_nonzero(right) > h // 5, "%s: a channel silent beside a sounding one is "
                "dithered (%d of %d samples non-zero, expected >= 1/4)" % (tag, np.count_nonzero(right), h))
    e = err_lsb(x[:h, 0], out("blank_tpdf")[:h, 0], 16)
    v = float(np.var(e))
    T.check(abs(v - 0.25) <= 0.02, "blank_tpdf: error variance over programme %.4f LSB^2 (0.25 +-0.02)" % v)
    same = np.array_equal(out("blank_tpdf")[~silent], out("noblank")[~silent])
    T.check(same, "blank changes nothing outside the silence (tpdf, sample for sample)")
    n0 = int(np.count_nonzero(out("noblank")[silent]))
    T.check(n0 > 0, "control: without blank the silence is dithered (%d non-zero samples)" % n0)

    T.finish()


if __name__ == "__main__":
    main()
