#!/usr/bin/python3
"""Acceptance: the compressor, rendered by moonbus and measured with numpy.

The issue's figures and how each is measured here (never with moonbus's
own measuring):

- static curve within +-0.5 dB of the soft-knee curve (Giannoulis,
  Massberg, Reiss, JAES 2012, eq. 4, written out below from the paper) for
  several thresholds, ratios and knees, levels -60..0 dBFS: 1 kHz tones
  held 0.3 s per level (rising, so each step only attacks), gain = the
  least-squares amplitude of the output over the input's in the last
  50 ms. A sine's level is its peak in dBFS (AES17), for both detectors;
- attack and release time constants within +-10 %: a 1 kHz tone steps
  from below the threshold to 24 dB above it and back; the gain in dB is
  out/in at every sample where |in| is above half its amplitude, and the
  time from the step to 1 - 1/e of the gain's final change is compared
  with `attack` / `release`;
- full stereo link: left loud (1 kHz), right quiet (440 Hz), different
  signals; out/in per channel at samples where both inputs are large:
  gains equal within 0.01 dB (and with link 0 they differ, so the
  measurement can see a difference);
- below threshold THD+N <= -120 dB: 1 kHz sines below the knee; the
  fundamental (and DC) is removed by a least-squares fit, residual power
  over fundamental power;
- sidechain: a quiet tone keyed by a loud noise burst on "sidechain" is
  reduced by the curve at the key's level, and untouched without the key;
- sidechain high-pass: 40 Hz bass pulses pump a steady 1 kHz tone; with
  `sc_highpass` = 150 Hz the 1 kHz envelope's swing is a fraction of it;
- mix 0 returns the input bit-exact even with look-ahead (outputs are
  latency-aligned); mix 0.5 is the average of dry and mix 1;
- look-ahead: g:latency() is round(lookahead rate/1000) frames, and with
  attack 0 the reduction starts exactly that many frames before a step
  in the aligned output;
- detector: rms reads a sine at its peak (AES17), a square 3.01 dB higher;
  peak reads both at their peak;
- auto makeup: the documented half of the curve's reduction at 0 dBFS;
- results: max_gain_reduction equals the curve's largest reduction;
- a makeup change during a render ramps (no one-sample jump);
- renders with blocks of 64, 1000 and 4096 frames are identical;
- bad values are errors naming the parameter.
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mbtest as T  # noqa: E402

FS = 48000
E1 = 1 - 1 / np.e


def curve(x, t, r, w):
    """Giannoulis et al. 2012, eq. 4: gain change in dB for level x."""
    x = np.asarray(x, dtype=float)
    over = x - t
    g = np.where(2 * over < -w, 0.0, (1 / r - 1) * over)
    if w > 0:
        knee = np.abs(2 * over) <= w
        g = np.where(knee, (1 / r - 1) * (over + w / 2) ** 2 / (2 * w), g)
    return g


def tone(f, n, amp=1.0, phase=0.0):
    return amp * np.sin(2 * np.pi * f * np.arange(n) / FS + phase)


def fit_amp(y, f):
    """Least-squares amplitude of a sine at f in y (with DC)."""
    n = np.arange(len(y))
    a = np.stack([np.sin(2 * np.pi * f * n / FS), np.cos(2 * np.pi * f * n / FS),
                  np.ones(len(y))], 1)
    c, *_ = np.linalg.lstsq(a, y, rcond=None)
    return float(np.hypot(c[0], c[1])), a @ c


def write(d, name, x):
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    T.write(os.path.join(d, name), x, FS)


def lua_opts(o):
    parts = []
    for k, v in o.items():
        if isinstance(v, bool):
            parts.append("%s = %s" % (k, "true" if v else "false"))
        elif isinstance(v, str):
            parts.append("%s = %s" % (k, T.lua_str(v)))
        else:
            parts.append("%s = %r" % (k, v))
    return "{ " + ", ".join(parts) + " }"


def render(d, cases, block=1000, key=None, extra=""):
    """cases: list of (output name, compressor options). One graph: in.wav
    (and key.wav on "sidechain" when key) into one compressor per case.
    Returns emitted values (latency, max_gain_reduction<i>)."""
    lines = ['local g = mb.graph{ rate = %d, block = %d }' % (FS, block),
             'local src = g:add("input", { path = "in.wav" })']
    if key:
        lines.append('local key = g:add("input", { path = "key.wav" })')
    lines.append("local comps = {}")
    for i, (name, o) in enumerate(cases):
        lines.append('local c = g:add("compressor", %s)' % lua_opts(o))
        lines.append('g:connect(src, c)')
        if key:
            lines.append('g:connect(key, c, "sidechain")')
        lines.append('g:connect(c, g:add("output", { path = %s, bits = 32 }))'
                     % T.lua_str(name))
        lines.append("comps[%d] = c" % (i + 1))
    lines.append(extra)
    lines.append("emit('latency', g:latency())")
    lines.append("g:render()")
    lines.append("for i, c in ipairs(comps) do emit('mgr' .. i, "
                 "c:results().max_gain_reduction) end")
    return T.render("\n".join(lines), cwd=d)


def read(d, name):
    y, fs = T.read(os.path.join(d, name))
    assert fs == FS
    return y


def gain_db(y, x, frac=0.5):
    """Per-sample gain out/in in dB where |x| > frac * max|x| (NaN elsewhere),
    for a piecewise-steady tone x (threshold per 10 ms stretch)."""
    g = np.full(len(x), np.nan)
    blk = FS // 100
    for s in range(0, len(x), blk):
        xs = x[s:s + blk]
        m = np.max(np.abs(xs)) if len(xs) else 0
        if m == 0:
            continue
        ok = np.abs(xs) > frac * m
        g[s:s + blk][ok] = 20 * np.log10(np.abs(y[s:s + blk][ok] / xs[ok]))
    return g


def static_curve(d):
    cases = [  # threshold, ratio, knee, detector
        (-18, 2, 6, "peak"), (-30, 4, 0, "peak"), (-10, 8, 12, "peak"),
        (-40, 1.5, 3, "peak"), (-24, 3, 10, "rms"),
    ]
    levels = np.arange(-60, 0.1, 2.0)
    hold = int(0.3 * FS)
    x = np.concatenate([tone(1000, hold, 10 ** (l / 20)) for l in levels])
    write(d, "in.wav", np.stack([x, x], 1))
    opts = [dict(threshold=t, ratio=r, knee=w, detector=det, attack=5,
                 release=50, rms_window=10)
            for t, r, w, det in cases]
    vals = render(d, [("c%d.wav" % i, o) for i, o in enumerate(opts)])
    for i, (t, r, w, det) in enumerate(cases):
        y = read(d, "c%d.wav" % i)
        worst = 0.0
        for k, l in enumerate(levels):
            seg = slice((k + 1) * hold - FS // 20, (k + 1) * hold)
            got = 20 * np.log10(fit_amp(y[seg, 0], 1000)[0] /
                                fit_amp(x[seg], 1000)[0])
            err = got - float(curve(l, t, r, w))
            worst = max(worst, abs(err))
        T.check(worst <= 0.5, "curve T=%g R=%g knee=%g %s: worst error %.3f dB "
                "over -60..0 dBFS (<= 0.5)" % (t, r, w, det, worst))
        expect = -float(curve(levels[-1], t, r, w))
        T.check(abs(vals["mgr%d" % (i + 1)] - expect) < 0.5,
                "max_gain_reduction %.3f dB, curve's largest %.3f dB"
                % (vals["mgr%d" % (i + 1)], expect))


def time_constants(d):
    lo, hi = 10 ** (-40 / 20), 10 ** (-6 / 20)  # T = -30: below, 24 dB above
    a, b, e = int(0.5 * FS), int(1.5 * FS), int(3.5 * FS)
    env = np.full(e, lo)
    env[a:b] = hi
    x = tone(1000, e) * env
    write(d, "in.wav", np.stack([x, x], 1))
    cases = [(10, 150), (30, 400), (2, 40)]
    opts = [dict(threshold=-30, ratio=4, knee=0, attack=at, release=rl)
            for at, rl in cases]
    render(d, [("t%d.wav" % i, o) for i, o in enumerate(opts)])
    final = float(curve(-6, -30, 4, 0))  # -18 dB
    for i, (at, rl) in enumerate(cases):
        y = read(d, "t%d.wav" % i)[:, 0]
        g = gain_db(y, x)
        # attack: from 0 dB to `final`; first sample at or beyond 1 - 1/e
        seg = g[a:b]
        steady = np.nanmedian(seg[-FS // 10:])
        T.check(abs(steady - final) < 0.5, "attack case %d: settles at %.3f dB "
                "(curve %.3f)" % (i, steady, final))
        idx = np.where(seg <= E1 * steady)[0]
        t_att = idx[0] / FS * 1000 if len(idx) else np.inf
        T.check(abs(t_att / at - 1) <= 0.10, "attack %g ms: measured %.3f ms "
                "(+-10 %%)" % (at, t_att))
        seg = g[b:]
        start = np.nanmedian(g[b - FS // 20:b])
        idx = np.where(seg >= (1 - E1) * start)[0]
        t_rel = idx[0] / FS * 1000 if len(idx) else np.inf
        T.check(abs(t_rel / rl - 1) <= 0.10, "release %g ms: measured %.3f ms "
                "(+-10 %%)" % (rl, t_rel))


def stereo_link(d):
    n = 2 * FS
    xl = tone(1000, n, 10 ** (-6 / 20))
    xr = tone(440, n, 10 ** (-40 / 20), 0.3)
    write(d, "in.wav", np.stack([xl, xr], 1))
    render(d, [("l1.wav", dict(link=1, threshold=-30, ratio=4)),
               ("l0.wav", dict(link=0, threshold=-30, ratio=4))])
    for name, link in (("l1.wav", 1), ("l0.wav", 0)):
        y = read(d, name)
        ok = (np.abs(xl) > 0.3 * np.max(np.abs(xl))) & \
             (np.abs(xr) > 0.3 * np.max(np.abs(xr)))
        ok[: FS // 2] = False  # after settling
        gl = 20 * np.log10(np.abs(y[ok, 0] / xl[ok]))
        gr = 20 * np.log10(np.abs(y[ok, 1] / xr[ok]))
        diff = float(np.max(np.abs(gl - gr)))
        if link == 1:
            T.check(diff <= 0.01, "link 1: |gain L - gain R| up to %.5f dB "
                    "(<= 0.01)" % diff)
            T.check(np.median(gr) < -10, "link 1: quiet right channel reduced "
                    "like the left (%.2f dB)" % np.median(gr))
        else:
            T.check(diff > 10, "link 0: channels independent (differ by %.2f "
                    "dB)" % diff)


def thd(d):
    levels = [(-60, -18, 6), (-30, -18, 6), (-21.5, -18, 6), (-18.5, -18, 0)]
    n = 2 * FS
    for i, (l, t, w) in enumerate(levels):
        x = tone(1000, n, 10 ** (l / 20))
        write(d, "in.wav", np.stack([x, x], 1))
        render(d, [("thd.wav", dict(threshold=t, knee=w, ratio=4))])
        y = read(d, "thd.wav")[FS // 2:, 0]
        amp, fit = fit_amp(y, 1000)
        res = y - fit
        r = 10 * np.log10(np.mean(res ** 2) / (amp ** 2 / 2) + 1e-300)
        T.check(r <= -120, "THD+N of a %g dBFS 1 kHz sine (threshold %g, knee "
                "%g): %.1f dB (<= -120)" % (l, t, w, r))


def sidechain(d):
    n = 3 * FS
    x = tone(1000, n, 10 ** (-30 / 20))
    rng = np.random.default_rng(1)
    k = np.zeros(n)
    # a square key at -6 dBFS (constant |k|: a clean static level)
    a, b = FS, 2 * FS
    k[a:b] = 10 ** (-6 / 20) * np.sign(np.sin(2 * np.pi * 217 * np.arange(b - a) / FS) + 1e-9)
    write(d, "in.wav", np.stack([x, x], 1))
    write(d, "key.wav", k)
    render(d, [("sc.wav", dict(threshold=-20, ratio=4, knee=0, attack=1,
                               release=50))], key=True)
    y = read(d, "sc.wav")[:, 0]
    g = gain_db(y, x)
    during = np.nanmedian(g[a + FS // 4:b])
    before = np.nanmax(np.abs(g[FS // 4:a]))
    after = np.nanmax(np.abs(g[b + FS // 2:]))
    expect = float(curve(-6, -20, 4, 0))
    T.check(abs(during - expect) < 0.5, "sidechain key at -6 dBFS: gain %.3f "
            "dB on a -30 dBFS tone (curve %.3f)" % (during, expect))
    T.check(before < 1e-6 and after < 1e-3, "no key: gain %.2g / %.2g dB"
            % (before, after))
    _ = rng


def sc_highpass(d):
    n = 4 * FS
    t = np.arange(n) / FS
    bass = 10 ** (-3 / 20) * np.sin(2 * np.pi * 40 * t) * ((t % 0.5) < 0.25)
    mid = 10 ** (-30 / 20) * np.sin(2 * np.pi * 1000 * t)
    x = bass + mid
    write(d, "in.wav", np.stack([x, x], 1))
    render(d, [("hp0.wav", dict(threshold=-20, ratio=4, knee=0)),
               ("hp1.wav", dict(threshold=-20, ratio=4, knee=0,
                                sc_highpass=150))])
    swings = []
    for name in ("hp0.wav", "hp1.wav"):
        y = read(d, name)[:, 0]
        # 1 kHz envelope: least-squares amplitude over 10 ms windows (the
        # 40 Hz bass is orthogonal enough over whole cycles: 10 ms = 0.4
        # cycles, so remove it first with a 10 ms fit including 40 Hz)
        env = []
        w = FS // 100
        for s in range(FS, n - w, w):
            seg = y[s:s + w]
            m = np.arange(s, s + w)
            a = np.stack([np.sin(2 * np.pi * 1000 * m / FS),
                          np.cos(2 * np.pi * 1000 * m / FS),
                          np.sin(2 * np.pi * 40 * m / FS),
                          np.cos(2 * np.pi * 40 * m / FS), np.ones(w)], 1)
            c, *_ = np.linalg.lstsq(a, seg, rcond=None)
            env.append(20 * np.log10(np.hypot(c[0], c[1]) / 10 ** (-30 / 20)))
        env = np.array(env)
        swings.append(float(np.max(env) - np.min(env)))
    T.check(swings[0] > 6, "without sc_highpass the bass pumps the 1 kHz tone "
            "by %.2f dB (> 6, or the test proves nothing)" % swings[0])
    T.check(swings[1] < swings[0] / 4, "sc_highpass 150 Hz: pumping %.2f dB "
            "(< a quarter of %.2f dB)" % (swings[1], swings[0]))


def mix_and_lookahead(d):
    n = 2 * FS
    rng = np.random.default_rng(7)
    x = 0.5 * rng.standard_normal((n, 2)) * np.repeat(
        (np.arange(n) // 7000 % 2)[:, None] * 0.9 + 0.1, 2, 1)
    x = np.clip(x, -1, 1)
    write(d, "in.wav", x)
    common = dict(threshold=-30, ratio=8, attack=1, release=50, lookahead=5)
    vals = render(d, [("m0.wav", dict(common, mix=0)),
                      ("m1.wav", dict(common, mix=1)),
                      ("mh.wav", dict(common, mix=0.5))])
    xin, _ = T.read_raw32(os.path.join(d, "in.wav"))
    y0, _ = T.read_raw32(os.path.join(d, "m0.wav"))
    T.check(y0.shape == xin.shape and np.array_equal(y0, xin),
            "mix 0 with lookahead 5 ms: output bit-exact to the input")
    y1 = read(d, "m1.wav")
    yh = read(d, "mh.wav")
    x64 = xin.astype(np.float64)
    err = np.max(np.abs(yh - (0.5 * x64 + 0.5 * y1)))
    T.check(err < 1e-6, "mix 0.5 = (dry + mix 1) / 2: error %.2g" % err)
    T.check(np.max(np.abs(y1 - x64)) > 0.1, "mix 1 does compress")
    T.check(vals["latency"] == 240, "g:latency() %g frames for lookahead 5 ms "
            "at 48 kHz (240)" % vals["latency"])

    # measured delay: a step at a waveform peak; attack 0
    n = FS
    s = FS // 2 + 12  # a peak of the 1 kHz sine (quarter period = 12)
    x = tone(1000, n) * np.where(np.arange(n) < s, 10 ** (-50 / 20), 10 ** (-6 / 20))
    write(d, "in.wav", np.stack([x, x], 1))
    for la in (0, 5, 2.5):
        vals = render(d, [("la.wav", dict(threshold=-20, ratio=4, knee=0,
                                          attack=0, lookahead=la))])
        y = read(d, "la.wav")[:, 0]
        big = np.abs(x) > 1e-4
        red = np.where(big & (np.abs(y) < np.abs(x) * 10 ** (-0.5 / 20)))[0]
        delay = s - red[0] if len(red) else None
        want = round(la * FS / 1000)
        T.check(vals["latency"] == want, "lookahead %g ms: latency %g frames "
                "(%d)" % (la, vals["latency"], want))
        # the sample before a reduced one at s - want may be a zero crossing;
        # the first reduced sample is within the quarter period before it
        T.check(delay is not None and want <= delay <= want + 1,
                "lookahead %g ms: reduction starts %s frames before the step "
                "(latency %d)" % (la, delay, want))


def detectors(d):
    n = 2 * FS
    t = np.arange(n)
    amp = 10 ** (-6 / 20)
    sine = amp * np.sin(2 * np.pi * 1000 * t / FS)
    square = amp * np.where((t // 24) % 2 == 0, 1.0, -1.0)
    for name, x in (("sine", sine), ("square", square)):
        write(d, "in.wav", np.stack([x, x], 1))
        render(d, [("pk.wav", dict(threshold=-30, ratio=4, knee=0,
                                   detector="peak")),
                   ("rm.wav", dict(threshold=-30, ratio=4, knee=0,
                                   detector="rms", rms_window=20))])
        seg = slice(FS, n)
        for det in ("pk", "rm"):
            y = read(d, det + ".wav")[seg, 0]
            if name == "sine":
                got = 20 * np.log10(fit_amp(y, 1000)[0] / amp)
                lvl = -6.0  # AES17: a sine reads its peak in both
            else:
                got = 20 * np.log10(np.mean(np.abs(y)) / amp)
                lvl = -6.0 if det == "pk" else -6.0 + 10 * np.log10(2)
            want = float(curve(lvl, -30, 4, 0))
            T.check(abs(got - want) < 0.1, "%s, %s detector: gain %.3f dB, "
                    "expected %.3f (level %.2f dBFS)" % (name, det, got, want, lvl))


def auto_makeup(d):
    n = FS
    x = tone(1000, n, 10 ** (-10 / 20))
    write(d, "in.wav", np.stack([x, x], 1))
    render(d, [("am.wav", dict(threshold=-18, ratio=2, knee=6, auto_makeup=True,
                               makeup=1))])
    y = read(d, "am.wav")[FS // 2:, 0]
    got = 20 * np.log10(fit_amp(y, 1000)[0] / 10 ** (-10 / 20))
    want = float(curve(-10, -18, 2, 6)) + 1 - 0.5 * float(curve(0, -18, 2, 6))
    T.check(abs(got - want) < 0.05, "auto makeup: gain %.3f dB, expected %.3f "
            "(curve + makeup + half the reduction at 0 dBFS)" % (got, want))


def no_click(d):
    n = FS
    x = tone(1000, n, 10 ** (-40 / 20))
    write(d, "in.wav", np.stack([x, x], 1))
    render(d, [("mk.wav", dict(makeup=0))],
           extra="g:every(0.5, function(t) if t > 0 then comps[1].makeup = 12 end end)")
    y = read(d, "mk.wav")[:, 0]
    g = gain_db(y, x)
    k = FS // 2
    jump = np.nanmax(np.abs(np.diff(g[k - 100:k + 1000])))
    T.check(abs(np.nanmedian(g[-FS // 10:]) - 12) < 0.01, "makeup reaches 12 dB")
    T.check(jump < 0.1, "makeup 0 -> 12 dB during a render: largest step %.3f "
            "dB per sample (ramped)" % jump)


def blocks(d):
    n = 3 * FS
    rng = np.random.default_rng(3)
    x = np.stack([tone(110, n, 0.5) + 0.1 * rng.standard_normal(n),
                  tone(3000, n, 0.3)], 1) * \
        np.repeat(((np.arange(n) // 9000) % 3 == 1)[:, None] * 0.95 + 0.05, 2, 1)
    write(d, "in.wav", x)
    write(d, "key.wav", tone(60, n, 0.8) * ((np.arange(n) // 5000) % 2))
    opts = dict(threshold=-24, ratio=4, lookahead=3, sc_highpass=80, mix=0.7,
                detector="rms", link=0.6)
    extra = ('comps[1]:automate("makeup", { {0, 0}, {1.5, 6}, {2, -3} })\n'
             'comps[1]:automate("threshold", { {0, -24}, {2.5, -10} })\n'
             'comps[1]:automate("mix", { {0, 0.7}, {1, 0.2}, {2.9, 1} })')
    outs = []
    for b in (64, 1000, 4096):
        render(d, [("b%d.wav" % b, opts)], block=b, key=True, extra=extra)
        outs.append(T.read_raw32(os.path.join(d, "b%d.wav" % b))[0])
    T.check(all(np.array_equal(outs[0], o) for o in outs[1:]),
            "renders with blocks 64, 1000, 4096 are identical")
    T.check(np.max(np.abs(outs[0] - x)) > 0.05, "the block test compresses")


def errors(d):
    write(d, "in.wav", np.zeros((100, 2)))
    bad = [("ratio", 0.5), ("threshold", 3), ("attack", -1), ("release", 0),
           ("link", 1.5), ("mix", 2), ("lookahead", 50), ("knee", -1),
           ("rms_window", 0), ("sc_highpass", 30000), ("detector", "avg")]
    for p, v in bad:
        script = ('local g = mb.graph{ rate = %d }\n'
                  'local c = g:add("compressor", { %s = %s })\n'
                  'g:connect(g:add("input", { path = "in.wav" }), c)\n'
                  'g:connect(c, g:add("output", { path = "o.wav" }))\n'
                  'g:render()\n' % (FS, p, T.lua_str(v) if isinstance(v, str) else repr(v)))
        rc, out, err = T.run_lua(script, cwd=d)
        T.check(rc != 0 and p in err, "compressor %s = %r rejected with a "
                "message naming it: %s" % (p, v, err.strip()[-200:]))
    # sidechain with 3 channels on a stereo compressor
    write(d, "k3.wav", np.zeros((100, 3)))
    script = ('local g = mb.graph{ rate = %d }\n'
              'local c = g:add("compressor", {})\n'
              'g:connect(g:add("input", { path = "in.wav" }), c)\n'
              'g:connect(g:add("input", { path = "k3.wav" }), c, "sidechain")\n'
              'g:connect(c, g:add("output", { path = "o.wav" }))\n'
              'g:render()\n' % FS)
    rc, out, err = T.run_lua(script, cwd=d)
    T.check(rc != 0 and "sidechain" in err, "3-channel sidechain on stereo "
            "rejected: %s" % err.strip()[-200:])


def main():
    if not T.require_modules("compressor"):
        T.finish()
    for f in (static_curve, time_constants, stereo_link, thd, sidechain,
              sc_highpass, mix_and_lookahead, detectors, auto_makeup, no_click,
              blocks, errors):
        f(T.tmpdir())
    T.finish()


if __name__ == "__main__":
    main()
