#!/usr/bin/python3
"""Acceptance: the expander (downward expander and gate), rendered by
moonbus and measured with numpy.

- curve within +-0.5 dB of the expander curve written out below (slope
  ratio - 1 below the threshold, quadratic soft knee, floor at -range):
  1 kHz tones held 0.3 s per level, -80..-10 dBFS; rising levels follow the
  closed curve (threshold T), falling levels the open one (T - hysteresis)
  until the level drops below T - hysteresis, where the gate closes. The
  gain is the least-squares amplitude of out over in, last 50 ms of each
  level;
- chatter: a 1 kHz tone whose level wobbles around the threshold by +-1 dB
  (3 Hz) toggles the gate at most twice a second with the default
  hysteresis and hold; with both at 0 the same measurement counts many
  toggles (so it can see them). Gate state per 5 ms from out/in: open when
  the gain is above -1.5 dB, closed below -4.5 dB (closed is -9 dB here);
- hold and release: after a tone stops (drops 40 dB) the gain stays within
  0.1 dB of 0 for `hold` ms (+-1 ms), then reaches 1 - 1/e of its change
  `release` ms later (+-10 %); opening takes `attack` (+-10 %);
- max_gain_reduction equals the curve's deepest reduction;
- renders with blocks 64, 1000 and 4096 are identical;
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


def curve(x, t, r, w, rng):
    """Downward expander: gain change in dB for level x (soft knee as in
    Giannoulis et al. 2012, mirrored below the threshold)."""
    x = np.asarray(x, dtype=float)
    over = x - t
    g = np.where(2 * over > w, 0.0, (r - 1) * over)
    if w > 0:
        knee = np.abs(2 * over) <= w
        g = np.where(knee, -(r - 1) * (over - w / 2) ** 2 / (2 * w), g)
    return np.maximum(g, -rng)


def tone(f, n, amp=1.0):
    return amp * np.sin(2 * np.pi * f * np.arange(n) / FS)


def fit_amp(y, f):
    n = np.arange(len(y))
    a = np.stack([np.sin(2 * np.pi * f * n / FS), np.cos(2 * np.pi * f * n / FS),
                  np.ones(len(y))], 1)
    c, *_ = np.linalg.lstsq(a, y, rcond=None)
    return float(np.hypot(c[0], c[1]))


def write(d, name, x):
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    T.write(os.path.join(d, name), x, FS)


def lua_opts(o):
    parts = []
    for k, v in o.items():
        if isinstance(v, str):
            parts.append("%s = %s" % (k, T.lua_str(v)))
        else:
            parts.append("%s = %r" % (k, v))
    return "{ " + ", ".join(parts) + " }"


def render(d, cases, block=1000, extra=""):
    lines = ['local g = mb.graph{ rate = %d, block = %d }' % (FS, block),
             'local src = g:add("input", { path = "in.wav" })', "local ex = {}"]
    for i, (name, o) in enumerate(cases):
        lines.append('local e = g:add("expander", %s)' % lua_opts(o))
        lines.append('g:connect(src, e)')
        lines.append('g:connect(e, g:add("output", { path = %s, bits = 32 }))'
                     % T.lua_str(name))
        lines.append("ex[%d] = e" % (i + 1))
    lines.append(extra)
    lines.append("emit('latency', g:latency())")
    lines.append("g:render()")
    lines.append("for i, e in ipairs(ex) do emit('mgr' .. i, "
                 "e:results().max_gain_reduction) end")
    return T.render("\n".join(lines), cwd=d)


def read(d, name):
    y, fs = T.read(os.path.join(d, name))
    assert fs == FS
    return y[:, 0]


def static_curve(d):
    cases = [  # threshold, ratio, knee, range, hysteresis
        (-40, 2, 0, 40, 0), (-40, 4, 6, 30, 0), (-30, 1.5, 0, 60, 0),
        (-40, 3, 0, 24, 3), (-50, 10, 0, 40, 6),
    ]
    # half-dB offsets: no level sits exactly on a threshold, where the
    # state would hang on the last bit of rounding
    up = np.arange(-79.5, -9.9, 2.0)
    levels = np.concatenate([up, up[::-1]])
    hold = int(0.3 * FS)
    x = np.concatenate([tone(1000, hold, 10 ** (l / 20)) for l in levels])
    write(d, "in.wav", np.stack([x, x], 1))
    opts = [dict(threshold=t, ratio=r, knee=w, range=rg, hysteresis=h,
                 attack=1, release=30, hold=5)
            for t, r, w, rg, h in cases]
    vals = render(d, [("e%d.wav" % i, o) for i, o in enumerate(opts)])
    T.check(vals["latency"] == 0, "no latency")
    for i, (t, r, w, rg, h) in enumerate(cases):
        y = read(d, "e%d.wav" % i)
        worst = 0.0
        is_open = False
        for k, l in enumerate(levels):
            # the hysteresis state as documented: opens at T, closes below
            # T - hysteresis
            if l >= t:
                is_open = True
            elif l < t - h:
                is_open = False
            want = float(curve(l, t - (h if is_open else 0), r, w, rg))
            seg = slice((k + 1) * hold - FS // 20, (k + 1) * hold)
            got = 20 * np.log10(fit_amp(y[seg], 1000) / fit_amp(x[seg], 1000))
            worst = max(worst, abs(got - want))
        T.check(worst <= 0.5, "expander T=%g R=%g knee=%g range=%g hyst=%g: "
                "worst error %.3f dB, -79.5..-11.5 dBFS up and down (<= 0.5)"
                % (t, r, w, rg, h, worst))
        deepest = -float(np.min(curve(levels, t, r, w, rg)))
        T.check(abs(vals["mgr%d" % (i + 1)] - deepest) < 0.5,
                "max_gain_reduction %.3f dB (deepest on the curve %.3f)"
                % (vals["mgr%d" % (i + 1)], deepest))


def gate_toggles(y, x, t):
    """Open/closed per 5 ms window from out/in, with a dead band; count
    changes of state."""
    w = FS // 200
    state, toggles = None, 0
    for s in range(0, len(x) - w, w):
        g = 20 * np.log10(fit_amp(y[s:s + w], 1000) / fit_amp(x[s:s + w], 1000))
        new = True if g > -1.5 else False if g < -4.5 else state
        if state is not None and new != state:
            toggles += 1
        state = new
    return toggles


def chatter(d):
    n = 4 * FS
    secs = n / FS
    tt = np.arange(n) / FS
    t = -40.0
    lvl = t + 1.0 * np.sin(2 * np.pi * 3 * tt)  # +-1 dB around the threshold
    x = 10 ** (lvl / 20) * np.sin(2 * np.pi * 1000 * tt)
    write(d, "in.wav", np.stack([x, x], 1))
    render(d, [("def.wav", dict(threshold=t, ratio=10, range=40)),
               ("raw.wav", dict(threshold=t, ratio=10, range=40, hysteresis=0,
                                hold=0))])
    n_def = gate_toggles(read(d, "def.wav"), x, t)
    n_raw = gate_toggles(read(d, "raw.wav"), x, t)
    T.check(n_def / secs <= 2, "level at threshold +-1 dB, default hysteresis "
            "and hold: %d toggles in %g s (<= 2 per second)" % (n_def, secs))
    T.check(n_raw / secs > 4, "with hysteresis 0 and hold 0 the same tone "
            "chatters: %d toggles in %g s (the measurement sees toggles)"
            % (n_raw, secs))


def timing(d):
    # 2 s of the quiet level first: the gate starts open (and holding) and
    # must have closed before the tone comes
    a, b, e = 2 * FS, 3 * FS, int(4.5 * FS)
    env = np.full(e, 10 ** (-70 / 20))
    env[a:b] = 10 ** (-20 / 20)
    x = tone(1000, e) * env
    write(d, "in.wav", np.stack([x, x], 1))
    cases = [(2, 100, 20), (10, 300, 50), (1, 50, 0)]
    opts = [dict(threshold=-40, ratio=2, range=20, attack=at, release=rl,
                 hold=hd, hysteresis=0) for at, rl, hd in cases]
    render(d, [("t%d.wav" % i, o) for i, o in enumerate(opts)])
    for i, (at, rl, hd) in enumerate(cases):
        y = read(d, "t%d.wav" % i)
        ok = np.abs(x) > 0.5 * env
        g = np.full(e, np.nan)
        g[ok] = 20 * np.log10(np.abs(y[ok] / x[ok]))
        # opening: from -20 dB (range) to 0
        closed = np.nanmedian(g[a - FS // 20:a])
        T.check(abs(closed + 20) < 0.1, "closed at %.3f dB (range 20)" % closed)
        idx = np.where(g[a:b] >= (1 - E1) * closed)[0]
        t_att = idx[0] / FS * 1000 if len(idx) else np.inf
        T.check(abs(t_att / at - 1) <= 0.10 or abs(t_att - at) <= 0.25,
                "attack %g ms: measured %.3f ms (+-10 %%)" % (at, t_att))
        # closing: stays open for `hold`, then release toward -20 dB; the
        # first 0.01 dB of the release takes release * ln(20/19.99) (0.15 ms
        # at 300 ms), inside the tolerance
        seg = g[b:]
        moved = np.where(seg < -0.01)[0]
        t_hold = moved[0] / FS * 1000 if len(moved) else np.inf
        T.check(abs(t_hold - hd) <= 1.0, "hold %g ms: gain left 0 dB after "
                "%.3f ms (+-1)" % (hd, t_hold))
        idx = np.where(seg <= E1 * -20)[0]
        t_rel = idx[0] / FS * 1000 - hd if len(idx) else np.inf
        T.check(abs(t_rel / rl - 1) <= 0.10, "release %g ms after the hold: "
                "measured %.3f ms (+-10 %%)" % (rl, t_rel))


def blocks(d):
    n = 3 * FS
    rng = np.random.default_rng(5)
    env = np.where((np.arange(n) // 7000) % 3 == 1, 0.3, 0.003)
    x = np.stack([tone(200, n) * env + 0.001 * rng.standard_normal(n),
                  tone(1500, n) * env[::-1]], 1)
    write(d, "in.wav", x)
    opts = dict(threshold=-35, ratio=4, range=30, link=0.5, detector="rms",
                rms_window=5)
    extra = ('ex[1]:automate("threshold", { {0, -35}, {2, -25} })\n'
             'ex[1]:automate("hold", { {0, 10}, {1.5, 0} })')
    outs = []
    for b in (64, 1000, 4096):
        render(d, [("b%d.wav" % b, opts)], block=b, extra=extra)
        outs.append(T.read_raw32(os.path.join(d, "b%d.wav" % b))[0])
    T.check(all(np.array_equal(outs[0], o) for o in outs[1:]),
            "renders with blocks 64, 1000, 4096 are identical")
    T.check(np.max(np.abs(outs[0] - x)) > 1e-3, "the block test expands")


def errors(d):
    write(d, "in.wav", np.zeros((100, 2)))
    bad = [("ratio", 0.9), ("threshold", 1), ("range", 0), ("attack", -2),
           ("release", 0.5), ("hold", -1), ("hysteresis", -1), ("link", 2),
           ("detector", "loud")]
    for p, v in bad:
        script = ('local g = mb.graph{ rate = %d }\n'
                  'local e = g:add("expander", { %s = %s })\n'
                  'g:connect(g:add("input", { path = "in.wav" }), e)\n'
                  'g:connect(e, g:add("output", { path = "o.wav" }))\n'
                  'g:render()\n' % (FS, p, T.lua_str(v) if isinstance(v, str) else repr(v)))
        rc, out, err = T.run_lua(script, cwd=d)
        T.check(rc != 0 and p in err, "expander %s = %r rejected with a "
                "message naming it: %s" % (p, v, err.strip()[-200:]))


def main():
    if not T.require_modules("expander"):
        T.finish()
    for f in (static_curve, chatter, timing, blocks, errors):
        f(T.tmpdir())
    T.finish()


if __name__ == "__main__":
    main()
