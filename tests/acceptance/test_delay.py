#!/usr/bin/python3
"""Acceptance: the delay (issue 4), rendered by moonbus, measured with numpy
and scipy.signal (windows only).

Definitions used below (the module's doc says the same): D = the delay in
frames; the output is (1 - mix) dry + mix wet; the wet signal's first
delayed copy arrives D frames after its input sample at the input's level,
and "echo n" is the n-th repeat after that copy, at (n + 1) D, level
feedback^n, filtered n times by the feedback path's filters. A note "N/D"
is N/D whole notes of 4 beats at `bpm` beats a minute ("." x 3/2, "t" x 2/3).

- integer delays are exact: mix 1, feedback 0, 250 ms and notes ("1/16t"
  at 120, "1/8." at 90, "3/16" at 100 bpm: 4000, 24000, 21600 frames)
  give the input shifted by exactly D frames, every other sample zero (the
  null is -inf dBFS; the limit -140 dBFS);
- echo levels: an impulse through 100 ms (4800 frames) at feedback 0.5 and
  0.9 gives echoes n = 0..10 at feedback^n within +-0.01 dB, nothing else;
  at 100.01 ms (4800.48 frames, interpolated) each echo's sum is
  feedback^n within 0.01 dB and its centroid within 0.01 frames of
  (n + 1) D (the cubic keeps DC and linear phase);
- mix law and the whole tail against the definition: stereo noise, 100 ms,
  feedback 0.5, mix 0.25: out = 0.75 x + 0.25 sum_n 0.5^n x(t - (n+1) D)
  (numpy, float64) within -120 dBFS; the render is the input plus the tail
  holds every wet sample above -120 dB of the input peak and ends where
  the documented tail does (repeats until feedback^n / (1 - feedback) <
  -120 dB); rendered 1 s past that, the output after the tail is exact
  zeros;
- feedback 0.99 is stable: 30 s after a 0.5 s noise burst (100 ms delay,
  with and without the filters, ping-pong too): no NaN/Inf, peak below the
  bound sum of the overlapping copies (6 x input peak), the 1 s RMS falls
  every second, at 20 log10(0.99) per 100 ms = -0.873 dB/s +-0.02 (plain);
  feedback 1 is refused;
- glide: a -6 dBFS 1 kHz sine, mix 1, time 250 -> 350 ms at t = 1 s (set
  by a g:every callback: the host ramps 10 ms, and by automate(): a jump)
  and 250 -> 351.3 ms (a jump to 351.3 ms would land 0.3 cycle off):
  * click: the largest sample step |y[n] - y[n-1]| over 0.95 .. 1.6 s
    exceeds the clean sine's (2 A sin(pi f / fs)) by less than -20 dBFS;
  * splatter: Blackman-Harris windows of 2048 frames every 256 over
    0.95 .. 1.6 s: nothing above 5 kHz within 60 dB of a clean sine's peak
    in the same window;
  * after it settles, the output is the input delayed by exactly 16800
    frames (the glide lands exactly);
  * the measures see clicks: a numpy model of a hard read-pointer jump to
    351.3 ms, and moonbus with glide 0 (the host's 10 ms ramp alone), fail
    both;
- feedback filters: an impulse through 500 ms, feedback 0.8, highpass 200 Hz
  and lowpass 4 kHz: echo n's spectrum (its 24000-frame slot) equals
  (0.8 Hhp Hlp)^n (Audio EQ Cookbook 2nd-order sections, Q = 1/sqrt 2,
  computed here) within 0.1 dB where that is above -40 dB, n = 1..5;
- ping-pong: stereo impulse (and mono in: stereo out): echo n on the left
  for even n, on the right for odd n, at 0.7^n, the other side exactly 0;
  a left-only impulse enters at half level (the mid);
- mono and 3-channel inputs are delayed channel by channel, exactly;
- renders with blocks 64, 1000 and 4096 are bit-identical (ping-pong with
  filters and automated time, a note with automated bpm, feedback and mix
  changed from a callback, bursts with silent gaps);
- no NaN/Inf/subnormal on silence, 1e-30, DC, a full-scale square and a
  burst then silence, at feedback 0.99 with filters and ping-pong;
- bad values (note strings, negative/zero time, feedback 1 and 1.5, mix 2,
  highpass out of range or too high for the rate, ping-pong on 3 channels,
  a note longer than 10 s) are errors naming the parameter and value.
"""
import os
import sys
from fractions import Fraction

import numpy as np
from scipy.signal import windows

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mbtest as T  # noqa: E402

FS = 48000
TINY = np.finfo(np.float32).tiny


def write(d, name, x):
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    T.write(os.path.join(d, name), x, FS)


def read(d, name):
    y, fs = T.read_raw32(os.path.join(d, name))
    assert fs == FS
    return y.astype(np.float64)


def opts(o):
    parts = []
    for k, v in o.items():
        if isinstance(v, bool):
            parts.append("%s = %s" % (k, "true" if v else "false"))
        elif isinstance(v, str):
            parts.append("%s = %s" % (k, T.lua_str(v)))
        else:
            parts.append("%s = %r" % (k, v))
    return "{ " + ", ".join(parts) + " }"


def render(d, cases, inp="in.wav", block=4096, render_opts="", extra=""):
    """cases: list of (output name, delay options); one graph per case."""
    lines = []
    for name, o in cases:
        lines.append('do local g = mb.graph{ rate = %d, block = %d }\n'
                     'local src = g:add("input", { path = %s })\n'
                     'local d = g:add("delay", %s)\n'
                     '%s\n'
                     'g:chain(src, d, g:add("output", { path = %s, bits = 32 }))\n'
                     'g:render{ %s } end'
                     % (FS, block, T.lua_str(inp), opts(o), extra, T.lua_str(name),
                        render_opts))
    return T.render("\n".join(lines), cwd=d)


def note_frames(note, bpm):
    n, dd = note.rstrip(".t").split("/")
    f = Fraction(int(n), int(dd)) * 4 * Fraction(60) / Fraction(bpm) * FS
    if note.endswith("t"):
        f *= Fraction(2, 3)
    elif note.endswith("."):
        f *= Fraction(3, 2)
    return f


def noise(rng, n, nch, db=-12):
    return (rng.standard_normal((n, nch)) * 10 ** (db / 20)).clip(-1, 1).astype(np.float32)


# ---- exactness -------------------------------------------------------------

def integer_exact(d, rng):
    x = noise(rng, FS, 2).astype(np.float64)
    write(d, "in.wav", x)
    cases = [("ms250", dict(time=250), Fraction(250 * FS, 1000)),
             ("n16t", dict(note="1/16t", bpm=120), note_frames("1/16t", 120)),
             ("n8d", dict(note="1/8.", bpm=90), note_frames("1/8.", 90)),
             ("n316", dict(note="3/16", bpm=100), note_frames("3/16", 100))]
    render(d, [(n + ".wav", dict(o, feedback=0, mix=1)) for n, o, _ in cases])
    for name, o, frames in cases:
        assert frames.denominator == 1
        D = int(frames)
        y = read(d, name + ".wav")
        ok = y.shape[0] >= D + len(x)
        want = np.zeros_like(y)
        if ok:
            want[D:D + len(x)] = x
        null = T.peak_db(y - want) if ok else np.inf
        T.check(ok and np.array_equal(y, want) and null < -140,
                "%s: output = input shifted by exactly %d frames (%.1f ms), "
                "every other sample 0: null %s dBFS (limit -140), %d frames out"
                % (name, D, D / FS * 1000, null, y.shape[0]))


def echo_levels(d):
    x = np.zeros(int(1.5 * FS))
    t0 = 4800
    x[t0] = 1.0
    write(d, "imp.wav", x)
    fbs = (0.5, 0.9)
    render(d, [("e%g.wav" % f, dict(time=100, feedback=f, mix=1)) for f in fbs] +
           [("f%g.wav" % f, dict(time=100.01, feedback=f, mix=1)) for f in fbs],
           inp="imp.wav", render_opts="duration = 1.5")
    D = 4800
    for f in fbs:
        y = read(d, "e%g.wav" % f)[:, 0]
        errs, stray = [], y.copy()
        for n in range(11):
            k = t0 + (n + 1) * D
            errs.append(20 * np.log10(abs(y[k]) / f ** n) if y[k] != 0 else np.inf)
        stray[t0 + D::D] = 0  # every echo slot (n > 10 too)
        T.check(max(abs(e) for e in errs) <= 0.01 and not np.any(stray),
                "feedback %g, 100 ms: echoes 0..10 at feedback^n, errors %s dB "
                "(+-0.01), %d other non-zero samples"
                % (f, " ".join("%.4f" % e for e in errs), np.count_nonzero(stray)))
        # fractional: 100.01 ms = 4800.48 frames
        Df = 100.01 * FS / 1000
        y = read(d, "f%g.wav" % f)[:, 0]
        worst_l, worst_c = 0.0, 0.0
        for n in range(11):
            c = t0 + (n + 1) * Df
            lo, hi = int(c) - 20 - 3 * n, int(c) + 20 + 3 * n
            seg = y[lo:hi]
            s = seg.sum()
            worst_l = max(worst_l, abs(20 * np.log10(s / f ** n)))
            cen = (np.arange(lo, hi) * seg).sum() / s
            worst_c = max(worst_c, abs(cen - c))
        T.check(worst_l <= 0.01 and worst_c <= 0.01,
                "feedback %g, 100.01 ms (%.2f frames, interpolated): echo sums "
                "at feedback^n within %.5f dB (0.01), centroids within %.5f "
                "frames (0.01)" % (f, Df, worst_l, worst_c))


def model(x, D, fb, reps):
    """sum_n fb^n x(t - (n + 1) D), float64."""
    y = np.zeros((len(x) + (reps + 2) * D,) + x.shape[1:])
    for n in range(reps + 1):
        s = (n + 1) * D
        y[s:s + len(x)] += fb ** n * x
    return y


def mix_and_tail(d, rng):
    x = noise(rng, FS, 2, db=-6).astype(np.float64)
    write(d, "in.wav", x)
    D, fb, mix = 4800, 0.5, 0.25
    long_s = 5.0  # input 1 s + tail (22 slots of 100 ms = 2.2 s) + > 1 s
    render(d, [("mix.wav", dict(time=100, feedback=fb, mix=mix))])
    render(d, [("long.wav", dict(time=100, feedback=fb, mix=mix))],
           render_opts="duration = %g" % long_s)
    y = read(d, "mix.wav")
    wet = model(x, D, fb, 40)
    want = np.zeros((max(len(y), len(wet)), 2))
    want[:len(x)] += (1 - mix) * x
    want[:len(wet)] += mix * wet
    null = T.peak_db(y - want[:len(y)])
    T.check(null < -120, "mix 0.25, feedback 0.5: out = 0.75 dry + 0.25 "
            "sum 0.5^n x(t - (n+1) D): null %.1f dBFS (limit -120)" % null)
    # the tail, as documented: until the repeats are below -120 dB of the
    # input peak, allowing for overlapping repeats adding up to 1 / (1 -
    # feedback) of it: n_doc repeats, the least n with fb^n / (1 - fb) <
    # 1e-6; the render must hold every wet sample above -120 dB of the
    # input peak and end within a few frames per repeat of n_doc + 1 slots
    peak = np.max(np.abs(x))
    env = np.max(np.abs(wet), axis=1)
    need = np.nonzero(env > peak * 1e-6)[0][-1] + 1
    n_doc = next(n for n in range(1000) if fb ** n / (1 - fb) < 1e-6)
    most = len(x) + (n_doc + 1) * (D + 2) + 4
    T.check(need <= len(y) <= most,
            "render length %d frames: wet above -120 dB of the input peak "
            "ends at %d; the documented tail (%d repeats) ends at %d"
            % (len(y), need, n_doc, most))
    late = T.peak_db(y[-D:]) - T.peak_db(x)
    T.check(late < -120, "the last delay time of the tail: %.1f dB re the "
            "input peak (< -120)" % late)
    z = read(d, "long.wav")
    after = z[len(y):]
    T.check(len(z) == int(long_s * FS) and len(after) > FS and not np.any(after),
            "rendered %.1f s (%.2f s past the tail): all %d samples after the "
            "tail are exactly 0" % (len(z) / FS, len(after) / FS, after.size))
    T.check(np.array_equal(z[:len(y)], y), "the longer render matches up to "
            "the tail")


def stability(d, rng):
    n = int(0.5 * FS)
    x = np.zeros((n, 2))
    x[:] = noise(rng, n, 2, db=-6)
    write(d, "burst.wav", x)
    cases = [("s.wav", dict(time=100, feedback=0.99, mix=1)),
             ("sf.wav", dict(time=100, feedback=0.99, mix=1, highpass=100,
                             lowpass=5000)),
             ("sp.wav", dict(time=100, feedback=0.99, mix=1, pingpong=True,
                             highpass=30))]
    render(d, cases, inp="burst.wav", render_opts="duration = 30")
    pk = np.max(np.abs(x))
    for name, o in cases:
        y = read(d, name)
        finite = np.all(np.isfinite(y))
        bound = 6 * pk
        rms = [T.rms_db(y[k * FS:(k + 1) * FS]) for k in range(1, 30)]
        falling = all(b < a for a, b in zip(rms, rms[1:]))
        T.check(finite and len(y) == 30 * FS and np.max(np.abs(y)) <= bound and falling,
                "%s: 30 s at feedback 0.99: finite %s, peak %.2f (bound %.2f), "
                "1 s RMS falls every second: %s (%.1f -> %.1f dBFS)"
                % (opts(o), finite, np.max(np.abs(y)), bound, falling, rms[0], rms[-1]))
        if name == "s.wav":
            slope = np.polyfit(np.arange(1, 30) + 0.5, rms, 1)[0]
            want = 20 * np.log10(0.99) * 10
            T.check(abs(slope - want) < 0.02, "decay %.4f dB/s (feedback 0.99 "
                    "every 100 ms: %.4f +-0.02)" % (slope, want))


# ---- glide -----------------------------------------------------------------

A, F0 = 0.5, 1000.0


def glide_measures(y, t=1.0):
    """(step excess over the clean sine in dBFS, worst > 5 kHz in dBc).
    Step: the largest |y[n] - y[n-1]| over t - 0.05 .. t + 0.6 s minus a
    clean sine's, 2 A sin(pi f / fs). Splatter: Blackman-Harris windows of
    2048 frames hopped by 256 over the same span (a short window keeps a
    click near some window's centre), the largest bin above 5 kHz relative
    to a clean sine's peak bin in the same window."""
    a, b = int((t - 0.05) * FS), int((t + 0.6) * FS)
    step = np.max(np.abs(np.diff(y[a:b])))
    clean = 2 * A * np.sin(np.pi * F0 / FS)
    excess = step - clean
    excess_db = 20 * np.log10(excess) if excess > 0 else -np.inf
    N = 2048
    w = windows.blackmanharris(N)
    ref = A * w.sum() / 2
    fr = np.fft.rfftfreq(N, 1 / FS)
    starts = np.arange(a, b - N, 256)
    frames = np.stack([y[k:k + N] * w for k in starts])
    spec = np.abs(np.fft.rfft(frames, axis=1))[:, fr > 5000]
    hf = 20 * np.log10(np.max(spec) / ref + 1e-30)
    return excess_db, hf


def glide(d):
    n = 3 * FS
    tt = np.arange(n) / FS
    x = A * np.sin(2 * np.pi * F0 * tt)
    write(d, "sine.wav", x)
    every = ('g:every(0.5, function(t) if t > 0.99 and t < 1.01 then '
             'd.time = %s end end)')
    auto = 'd:automate("time", { {0, 250}, {1, 250}, {1, %s} })'
    cases = [("ev350.wav", every % 350, 350), ("au350.wav", auto % 350, 350),
             ("ev351.wav", every % 351.3, 351.3), ("au351.wav", auto % 351.3, 351.3)]
    for name, extra, _ in cases:
        render(d, [(name, dict(time=250, feedback=0, mix=1))], inp="sine.wav",
               extra=extra)
    render(d, [("g0.wav", dict(time=250, feedback=0, mix=1, glide=0))],
           inp="sine.wav", extra=every % 351.3)
    xf = read(d, "sine.wav")[:, 0]
    for name, _, to in cases:
        y = read(d, name)[:, 0]
        ex, hf = glide_measures(y)
        T.check(ex < -20 and hf < -60,
                "%s (250 -> %g ms): largest step exceeds the clean sine's by "
                "%.1f dBFS (< -20), above 5 kHz %.1f dBc (< -60)" % (name, to, ex, hf))
        if to == 350:
            D = 16800
            seg = slice(int(1.8 * FS), len(xf))
            same = np.array_equal(y[seg], xf[seg.start - D:seg.stop - D])
            T.check(same, "%s: from 1.8 s the output is the input delayed by "
                    "exactly %d frames" % (name, D))
    # the measures see a click: a hard jump of the read pointer (numpy)...
    dl = np.where(tt < 1.0, 0.250, 0.3513)
    hard = np.where(tt >= dl, A * np.sin(2 * np.pi * F0 * (tt - dl)), 0)
    ex, hf = glide_measures(hard)
    T.check(ex > -20 and hf > -60, "detector: a hard jump to 351.3 ms would "
            "show a step %.1f dBFS over the sine's and %.1f dBc above 5 kHz "
            "(both fail)" % (ex, hf))
    # ... and the host's 10 ms ramp without the glide (pitch x -8)
    ex, hf = glide_measures(read(d, "g0.wav")[:, 0])
    T.check(ex > -20 and hf > -60, "detector: glide 0 (10 ms ramp of 101.3 ms) "
            "shows %.1f dBFS and %.1f dBc (both fail)" % (ex, hf))


# ---- filters and ping-pong --------------------------------------------------

def rbj(kind, f0, fs, q=1 / np.sqrt(2)):
    """Audio EQ Cookbook low/high-pass, normalised (b, a)."""
    w0 = 2 * np.pi * f0 / fs
    al = np.sin(w0) / (2 * q)
    c = np.cos(w0)
    if kind == "lp":
        b = [(1 - c) / 2, 1 - c, (1 - c) / 2]
    else:
        b = [(1 + c) / 2, -(1 + c), (1 + c) / 2]
    a = [1 + al, -2 * c, 1 - al]
    return np.array(b) / a[0], np.array(a) / a[0]


def freqz(b, a, f, fs):
    z = np.exp(-2j * np.pi * f / fs)
    return (b[0] + b[1] * z + b[2] * z * z) / (a[0] + a[1] * z + a[2] * z * z)


def feedback_filters(d):
    D, fb = 24000, 0.8
    x = np.zeros(FS)
    x[0] = 1.0
    write(d, "imp.wav", x)
    render(d, [("filt.wav", dict(time=500, feedback=fb, mix=1, highpass=200,
                                 lowpass=4000))],
           inp="imp.wav", render_opts="duration = 4")
    y = read(d, "filt.wav")[:, 0]
    f = np.fft.rfftfreq(D, 1 / FS)
    H = fb * freqz(*rbj("hp", 200, FS), f, FS) * freqz(*rbj("lp", 4000, FS), f, FS)
    first = y[D:2 * D]
    T.check(first[0] == 1 and not np.any(first[1:]), "the first copy is the "
            "impulse itself (unfiltered)")
    for n in range(1, 6):
        seg = y[(n + 1) * D:(n + 2) * D]
        got = np.fft.rfft(seg)
        want = H ** n
        sel = (np.abs(want) > 10 ** (-40 / 20)) & (f > 0)
        err = np.max(np.abs(20 * np.log10(np.abs(got[sel]) / np.abs(want[sel]))))
        perr = np.max(np.abs(np.angle(got[sel] / want[sel])))
        T.check(err < 0.1, "echo %d: |spectrum| = |0.8 Hhp(200) Hlp(4000)|^%d "
                "within %.4f dB (0.1) over %.0f..%.0f Hz (phase within %.4f rad)"
                % (n, n, err, f[sel][0], f[sel][-1], perr))


def pingpong(d):
    D, fb = 4800, 0.7
    x = np.zeros((FS, 2))
    x[0] = 1.0
    write(d, "st.wav", x)
    write(d, "mono.wav", x[:, 0])
    xl = x.copy()
    xl[:, 1] = 0
    write(d, "left.wav", xl)
    for inp, name, lvl in (("st.wav", "pp_st.wav", 1.0), ("mono.wav", "pp_mono.wav", 1.0),
                           ("left.wav", "pp_left.wav", 0.5)):
        render(d, [(name, dict(time=100, feedback=fb, mix=1, pingpong=True))],
               inp=inp, render_opts="duration = 1.3")
        y = read(d, name)
        ok = y.shape[1] == 2
        worst, stray = 0.0, 0
        if ok:
            rest = y.copy()
            for n in range(len(y) // D):
                k = (n + 1) * D
                if k >= len(y):
                    break
                side = n % 2
                if n <= 10:
                    worst = max(worst, abs(20 * np.log10(abs(y[k, side]) / (lvl * fb ** n))))
                stray += y[k, 1 - side] != 0
                rest[k, side] = 0
            stray += np.count_nonzero(rest)
        T.check(ok and worst < 0.01 and stray == 0,
                "ping-pong from %s: %d channels out, echo n on %s, levels %g x "
                "0.7^n within %.4f dB, %d stray samples"
                % (inp, y.shape[1], "L for even n, R for odd", lvl, worst, stray))


def channel_counts(d, rng):
    for nch in (1, 3):
        x = noise(rng, FS // 2, nch).astype(np.float64)
        write(d, "c%d.wav" % nch, x)
        render(d, [("oc%d.wav" % nch, dict(time=10, feedback=0, mix=1))],
               inp="c%d.wav" % nch)
        y = read(d, "oc%d.wav" % nch)
        want = np.zeros_like(y)
        want[480:480 + len(x)] = x
        T.check(y.shape[1] == nch and np.array_equal(y, want),
                "%d channel(s): each delayed by exactly 480 frames" % nch)


# ---- block sizes, hostile input, errors --------------------------------------

BLOCK_SCRIPT = r"""
for _, block in ipairs{ 64, 1000, 4096 } do
  local g = mb.graph{ rate = 48000, block = block }
  local src = g:add("input", { path = "bursts.wav" })
  local a = g:add("delay", { time = 120.5, feedback = 0.6, mix = 0.5,
                             pingpong = true, highpass = 150, lowpass = 6000 })
  a:automate("time", { {0, 120.5}, {0.4, 80.25}, {0.9, 80.25}, {0.9, 200},
                       {1.3, 33.3, "exponential"} })
  local b = g:add("delay", { note = "1/16t", bpm = 120, feedback = 0.7, mix = 0.4,
                             glide = 30 })
  b:automate("bpm", { {0, 120}, {0.7, 97}, {1.2, 140, "hold"} })
  g:every(0.3, function(t)
    if t > 0.5 and t < 0.7 then a.feedback = 0.9; b.mix = 0.8 end
    if t > 1.1 and t < 1.3 then a.mix = 1; b.feedback = 0 end
  end)
  g:connect(src, a)
  g:connect(src, b)
  g:connect(a, g:add("output", { path = "ba" .. block .. ".wav", bits = 32 }))
  g:connect(b, g:add("output", { path = "bb" .. block .. ".wav", bits = 32 }))
  g:render{ tail = 1 }
end
"""


def blocks(d, rng):
    n = 2 * FS
    x = noise(rng, n, 2, db=-10)
    gate = ((np.arange(n) // 7000) % 3 != 2) & (np.arange(n) < int(1.6 * FS))
    x = x * gate[:, None]
    write(d, "bursts.wav", x)
    T.render(BLOCK_SCRIPT, cwd=d, what="block-size renders")
    for k in ("ba", "bb"):
        ys = [T.read_raw32(os.path.join(d, "%s%d.wav" % (k, b)))[0] for b in (64, 1000, 4096)]
        same = all(y.shape == ys[0].shape and np.array_equal(y.view(np.uint32), ys[0].view(np.uint32))
                   for y in ys[1:])
        T.check(same and np.max(np.abs(ys[0])) > 0.01,
                "%s: blocks 64, 1000 and 4096 render bit-identically (%d frames)"
                % ("ping-pong, filters, automated time" if k == "ba"
                   else "note 1/16t, automated bpm", len(ys[0])))


def hostile(d, rng):
    n = FS
    sq = np.where((np.arange(n) // 24) % 2 == 0, 1.0, -1.0)
    burst = np.zeros(4 * FS)
    burst[:2400] = rng.standard_normal(2400) * 0.5
    sigs = {"silence": np.zeros(n), "1e-30": np.full(n, 1e-30), "dc": np.full(n, 0.5),
            "square": sq, "burst": burst.clip(-1, 1)}
    for name, s in sigs.items():
        write(d, name + ".wav", np.stack([s, s], 1))
    o = dict(time=7.77, feedback=0.99, mix=0.5, highpass=20, lowpass=18000)
    cases = []
    for name in sigs:
        for pp in (False, True):
            cases.append(("h_%s_%d.wav" % (name, pp), name + ".wav", dict(o, pingpong=pp)))
    for out, inp, oo in cases:
        render(d, [(out, oo)], inp=inp, render_opts="tail = 3")
    bad = []
    for out, _, _ in cases:
        y = T.read_raw32(os.path.join(d, out))[0]
        nn = int(np.count_nonzero(~np.isfinite(y)))
        sub = int(np.count_nonzero((np.abs(y) < TINY) & (y != 0)))
        if nn or sub:
            bad.append("%s: %d NaN/Inf, %d subnormal" % (out, nn, sub))
    T.check(not bad, "no NaN/Inf/subnormal on %s at feedback 0.99 with "
            "filters, ping-pong on and off%s" % (", ".join(sigs), "" if not bad else
                                                 ": " + "; ".join(bad)))


def errors(d):
    write(d, "in.wav", np.zeros((100, 2)))
    write(d, "in3.wav", np.zeros((100, 3)))
    bad = [("note", "1/0"), ("note", "abc"), ("note", "1/4x"), ("note", "quarter"),
           ("time", -5), ("time", 0), ("feedback", 1.0), ("feedback", 1.5),
           ("mix", 2), ("highpass", 30000), ("lowpass", -1), ("glide", -1)]
    for p, v in bad:
        script = ('local g = mb.graph{ rate = %d }\n'
                  'local c = g:add("delay", { %s = %s })\n'
                  'g:chain(g:add("input", { path = "in.wav" }), c, '
                  'g:add("output", { path = "o.wav" }))\n'
                  'g:render()\n' % (FS, p, T.lua_str(v) if isinstance(v, str) else repr(v)))
        rc, out, err = T.run_lua(script, cwd=d)
        vs = v if isinstance(v, str) else "%g" % v
        T.check(rc != 0 and p in err and vs in err,
                "delay %s = %r rejected naming it and the value: %s" % (p, v, err.strip()[-220:]))
    others = [
        ('{ lowpass = 21000 }', 44100, "in.wav", "lowpass", "too high"),
        ('{ note = "1/1", bpm = 20 }', FS, "in.wav", "note", "10000"),
        ('{ pingpong = true }', FS, "in3.wav", "pingpong", "3 channels"),
    ]
    for o, rate, inp, p, what in others:
        script = ('local g = mb.graph{ rate = %d }\n'
                  'local c = g:add("delay", %s)\n'
                  'g:chain(g:add("input", { path = "%s" }), c, '
                  'g:add("output", { path = "o.wav" }))\n'
                  'g:render()\n' % (rate, o, inp))
        rc, out, err = T.run_lua(script, cwd=d)
        T.check(rc != 0 and p in err and what in err,
                "delay %s at %d Hz on %s rejected: %s" % (o, rate, inp, err.strip()[-220:]))


def main():
    if not T.require_modules("delay"):
        T.finish()
    rng = np.random.default_rng(44)
    integer_exact(T.tmpdir(), rng)
    echo_levels(T.tmpdir())
    mix_and_tail(T.tmpdir(), rng)
    stability(T.tmpdir(), rng)
    glide(T.tmpdir())
    feedback_filters(T.tmpdir())
    pingpong(T.tmpdir())
    channel_counts(T.tmpdir(), rng)
    blocks(T.tmpdir(), rng)
    hostile(T.tmpdir(), rng)
    errors(T.tmpdir())
    T.finish()


if __name__ == "__main__":
    main()
