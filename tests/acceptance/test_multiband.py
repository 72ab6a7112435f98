#!/usr/bin/python3
"""Acceptance: the multiband compressor, measured outside moonbus.

The issue: "multiband: 2 to 5 bands with Linkwitz-Riley 4th-order
crossovers (with all-pass compensation so the bands sum flat), per-band
compressor parameters, per-band bypass and solo, and a mid/side mode."

Reference filters are built here with scipy from the definition, not from
the C: a Linkwitz-Riley 4 low (high) side at fc is scipy.signal.butter(2,
fc) low (high) twice; the all-pass of a crossover is low + high, i.e.
(a2 + a1 z^-1 + z^-2)/(1 + a1 z^-1 + a2 z^-2) with a1, a2 the denominator
scipy's butter(2, fc) gives. Band i (1-based) of crossovers f1 < ... < fn
is high(f1) ... high(f_{i-1}) low(f_i) allpass(f_{i+1}) ... allpass(f_n),
the last band high(f1) ... high(fn); the sum of the bands is the product
of the all-passes.

Checks (48 kHz, 32-bit float files written and read with soundfile):
 - every band at unity (ratio 1, threshold 0 dB; and separately with every
   band bypassed): the impulse response's magnitude is flat within
   +-0.01 dB from 20 Hz to 20 kHz (numpy FFT), for 1 to 4 crossovers,
   including octave spacing 250/500/1000/2000 and 100/200, and equals the
   product of the all-passes (so the phase is the expected all-pass); in
   mode "ms" an impulse on L comes back on L the same and R stays silent;
 - each band soloed: -6.02 +-0.05 dB at its crossovers (decade spacing
   100/1000/10000, where the other crossovers add < 0.001 dB; DFT at the
   exact frequency), and the soloed output nulls against scipy's sosfilt
   of the input through the reference band filter (below -110 dBFS), also
   for octave spacing; two soloed bands give their sum;
 - per-band compression: a 1 kHz tone at -12 dBFS peak in band 2 of
   100/10000 with threshold2 -30, ratio2 4, hard knee, makeup2 +6 comes
   out 13.5 - 6 = 7.5 dB lower (the compressor curve (1 - 1/ratio)(L - T),
   +-0.2 dB), a 20 Hz tone in band 1 (ratio 1) is unchanged (+-0.05 dB),
   results max_gain_reduction2 13.5 +-0.2, bands 1 and 3 0; the same with
   detector "rms" (a sine reads its peak level, AES17; +-0.3 dB);
   bypass2 = true passes the tone at 0 +-0.01 dB and reports 0;
 - mode "ms": L = M + S, R = M - S with M a 500 Hz tone at -30 dBFS (below
   threshold -20) and S a 1 kHz tone at -6 dBFS: M comes out unchanged
   (+-0.05 dB) and S reduced by the curve's 10.5 dB (+-0.3); in stereo
   mode the same input reduces M too (by more than 5 dB);
 - renders with automation (makeup, threshold, bypass, solo) are
   identical for block sizes 64, 1000 and 4096, in both modes;
 - no NaN/Inf/subnormal on silence, 1e-30, a burst then silence, DC and a
   full-scale square with heavy settings;
 - bad values (crossovers not increasing, too high for the rate, too low,
   five of them, out of order, ratio below 1, ms on mono) give errors that
   name the parameter.
"""
import os
import sys

import numpy as np
from scipy import signal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbtest as T  # noqa: E402

FS = 48000
UNITY = ", ".join("threshold%d = 0, ratio%d = 1" % (i, i) for i in range(1, 6))
BYPASS = ", ".join("bypass%d = true, threshold%d = -60, ratio%d = 20, makeup%d = 12"
                   % (i, i, i, i) for i in range(1, 6))

# --- reference filters (scipy) ----------------------------------------------


def lr4(fc, kind):
    s = signal.butter(2, fc, btype=kind, fs=FS, output="sos")
    return np.vstack([s, s])


def allpass(fc):
    s = signal.butter(2, fc, btype="low", fs=FS, output="sos")
    a1, a2 = s[0, 4], s[0, 5]
    return np.array([[a2, a1, 1.0, 1.0, a1, a2]])


def band_sos(fcs, b):
    """Reference band b (0-based) of crossovers fcs."""
    secs = [lr4(f, "high") for f in fcs[:b]]
    if b < len(fcs):
        secs.append(lr4(fcs[b], "low"))
        secs += [allpass(f) for f in fcs[b + 1:]]
    return np.vstack(secs)


def sum_response(fcs, f):
    h = np.ones(len(f), dtype=complex)
    for fc in fcs:
        _, hh = signal.sosfreqz(allpass(fc), worN=f, fs=FS)
        h *= hh
    return h


def dft_at(x, f):
    n = np.arange(len(x))
    return np.sum(x * np.exp(-2j * np.pi * f * n / FS))


def tone_amp(x, f):
    """Amplitude of the f Hz component of x (whole periods in x)."""
    return 2 * abs(dft_at(x, f)) / len(x)


def lua_list(v):
    return "{" + ", ".join("%r" % x for x in v) + "}"


# --- the Lua side --------------------------------------------------------------

PRELUDE = r"""
local R = 48000
local function run(src, out, opts, block, automate)
  local g = mb.graph{ rate = R, block = block or 4096 }
  local s = g:add("input", { path = src })
  local m = g:add("multiband", opts)
  local o = g:add("output", { path = out, bits = 32 })
  g:chain(s, m, o)
  if automate then automate(m) end
  g:render()
  return m:results()
end
local function emit_results(tag, r)
  for k, v in pairs(r) do emit(tag .. "." .. k, v) end
end
local function try(tag, f)
  local ok, e = pcall(f)
  emit("err." .. tag, ok and "none" or tostring(e))
end
"""


def main():
    T.require_modules("input", "output", "multiband")
    d = T.tmpdir()
    rng = np.random.default_rng(31)

    # -- input signals ------------------------------------------------------
    imp = np.zeros((FS, 1))
    imp[0] = 1.0
    T.write(os.path.join(d, "imp.wav"), imp.astype(np.float32), FS)
    imp2 = np.zeros((FS, 2))
    imp2[0, 0] = 1.0
    T.write(os.path.join(d, "imp2.wav"), imp2.astype(np.float32), FS)
    noise = (rng.standard_normal((FS, 2)) * 10 ** (-12 / 20)).clip(-1, 1).astype(np.float32)
    T.write(os.path.join(d, "noise.wav"), noise, FS)
    t = np.arange(2 * FS) / FS
    a12 = 10 ** (-12 / 20)
    two = a12 * np.sin(2 * np.pi * 1000 * t) + a12 * np.sin(2 * np.pi * 20 * t)
    T.write(os.path.join(d, "two.wav"), np.stack([two, two], 1).astype(np.float32), FS)
    mid = 10 ** (-30 / 20) * np.sin(2 * np.pi * 500 * t)
    side = 10 ** (-6 / 20) * np.sin(2 * np.pi * 1000 * t)
    T.write(os.path.join(d, "ms.wav"), np.stack([mid + side, mid - side], 1).astype(np.float32), FS)
    # programme-like: noise with a slow envelope and bursts, 3 s
    n3 = 3 * FS
    env = 10 ** ((-30 + 24 * (0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * np.arange(n3) / FS))) / 20)
    prog = rng.standard_normal((n3, 2)) * env[:, None]
    prog[FS:FS + 2400] *= 6
    prog = signal.lfilter([1, 0.6], [1, -0.3], prog, axis=0).clip(-1, 1).astype(np.float32)
    T.write(os.path.join(d, "prog.wav"), prog, FS)
    nh = FS // 2
    sq = np.where((np.arange(nh) // 24) % 2 == 0, 1.0, -1.0)
    burst = np.zeros((6 * FS, 2))
    burst[:2400] = rng.standard_normal((2400, 2)) * 0.5
    hyg = {"silence": np.zeros((nh, 2)), "tiny": np.full((nh, 2), 1e-30),
           "burst": burst.clip(-1, 1), "dc": np.full((nh, 2), 0.5),
           "square": np.stack([sq, sq], 1)}
    for k, v in hyg.items():
        T.write(os.path.join(d, "h_%s.wav" % k), v.astype(np.float32), FS)

    # -- renders ----------------------------------------------------------
    flat_cases = [[1000], [200, 2000], [100, 200], [250, 500, 1000, 2000],
                  [100, 1000, 10000], [30, 300, 3000, 15000]]
    solo_cases = [[100, 1000, 10000], [250, 500, 1000, 2000]]
    lines = [PRELUDE]
    for i, fc in enumerate(flat_cases):
        lines.append('run("imp.wav", "flat%d.wav", { crossovers = %s, %s })' % (i, lua_list(fc), UNITY))
        lines.append('run("imp.wav", "byp%d.wav", { crossovers = %s, %s })' % (i, lua_list(fc), BYPASS))
    lines.append('run("imp2.wav", "flatms.wav", { crossovers = {250, 500, 1000, 2000}, mode = "ms", '
                 '%s })' % UNITY)
    for i, fc in enumerate(solo_cases):
        for b in range(len(fc) + 1):
            lines.append('run("imp.wav", "soloimp%d_%d.wav", { crossovers = %s, %s, solo%d = true })'
                         % (i, b, lua_list(fc), UNITY, b + 1))
            lines.append('run("noise.wav", "solo%d_%d.wav", { crossovers = %s, %s, solo%d = true })'
                         % (i, b, lua_list(fc), UNITY, b + 1))
    lines.append('run("noise.wav", "solo13.wav", { crossovers = {100, 1000, 10000}, %s, '
                 'solo1 = true, solo3 = true })' % UNITY)
    comp = ("crossovers = {100, 10000}, threshold1 = 0, ratio1 = 1, threshold3 = 0, ratio3 = 1, "
            "threshold2 = -30, ratio2 = 4, knee2 = 0, attack2 = 5, release2 = 100, makeup2 = 6")
    lines.append('emit_results("comp", run("two.wav", "comp.wav", { %s }))' % comp)
    lines.append('emit_results("compbyp", run("two.wav", "compbyp.wav", { %s, bypass2 = true }))' % comp)
    lines.append('emit_results("comprms", run("two.wav", "comprms.wav", { %s, detector = "rms", '
                 'rms_window = 20 }))' % comp)
    msopt = ", ".join("threshold%d = -20, ratio%d = 4, knee%d = 0" % (i, i, i) for i in range(1, 4))
    lines.append('emit_results("ms", run("ms.wav", "ms_ms.wav", { crossovers = {100, 10000}, '
                 'mode = "ms", %s }))' % msopt)
    lines.append('emit_results("st", run("ms.wav", "ms_st.wav", { crossovers = {100, 10000}, '
                 'mode = "stereo", link = 1, %s }))' % msopt)
    # block sizes, with automation
    auto = r"""function(m)
  m:automate("makeup2", { {0, 0}, {1.5, 6}, {2.5, -3} })
  m:automate("threshold1", { {0, -30}, {2, -10} })
  m:automate("bypass3", { {0, 0, "hold"}, {0.8, 1, "hold"}, {1.9, 0, "hold"} })
  m:automate("solo4", { {0, 0, "hold"}, {1.2, 1, "hold"}, {1.6, 0, "hold"} })
  m:automate("release2", { {0, 50}, {3, 400} })
end"""
    lines.append("local auto = " + auto)
    bopt = ("crossovers = {120, 600, 3000, 9000}, threshold2 = -30, ratio2 = 3, "
            "threshold3 = -24, ratio3 = 6, knee3 = 0, attack3 = 1, threshold5 = -35, ratio5 = 10, "
            "makeup5 = 4")
    for mode in ("stereo", "ms"):
        for blk in (64, 1000, 4096):
            lines.append('emit_results("blk_%s_%d", run("prog.wav", "blk_%s_%d.wav", '
                         '{ %s, mode = "%s", link = 0.5 }, %d, auto))'
                         % (mode, blk, mode, blk, bopt, mode, blk))
    heavy = ("crossovers = {20, 200, 2000, 20000}, " +
             ", ".join("threshold%d = -60, ratio%d = 20, makeup%d = 24, attack%d = 0, release%d = 1"
                       % (i, i, i, i, i) for i in range(1, 6)))
    for k in hyg:
        for mode in ("stereo", "ms"):
            lines.append('run("h_%s.wav", "ho_%s_%s.wav", { %s, mode = "%s" })' % (k, k, mode, heavy, mode))
    # bad values
    bad = {
        "decreasing": '{ crossovers = {2000, 200} }',
        "equal": '{ crossovers = {200, 200} }',
        "too_high": '{ crossovers = {200, 22000} }',
        "too_low": '{ crossovers = {5, 200} }',
        "five": '{ crossovers = {100, 200, 400, 800, 1600} }',
        "gap": '{ crossover3 = 5000 }',
        "ratio": '{ crossovers = {200}, ratio1 = 0.5 }',
        "mode": '{ mode = "lcr" }',
        "word": '{ crossovers = {"low"} }',
    }
    for k, opts in bad.items():
        lines.append('try("%s", function() run("noise.wav", "bad.wav", %s) end)' % (k, opts))
    lines.append('try("ms_mono", function() run("imp.wav", "bad.wav", { mode = "ms" }) end)')
    lines.append('try("good", function() run("noise.wav", "good.wav", { crossovers = {200, 2000} }) end)')
    vals = T.render("\n".join(lines), cwd=d, what="multiband renders")

    def rd(name):
        return T.read(os.path.join(d, name))[0]

    # -- flat sum -----------------------------------------------------------
    n = FS
    f = np.fft.rfftfreq(n, 1 / FS)
    sel = (f >= 20) & (f <= 20000)
    for i, fc in enumerate(flat_cases):
        ref = sum_response(fc, f[sel])
        for tag, what in (("flat", "unity"), ("byp", "all bypassed")):
            h = np.fft.rfft(rd("%s%d.wav" % (tag, i))[:, 0])[sel]
            dev = np.max(np.abs(20 * np.log10(np.abs(h))))
            cerr = np.max(np.abs(h - ref))
            T.check(dev <= 0.01, "%s, crossovers %s: magnitude flat within %.2g dB (limit 0.01) "
                    "20 Hz..20 kHz" % (what, fc, dev))
            T.check(cerr < 1e-4, "%s, crossovers %s: response is the product of the LR4 "
                    "all-passes (max |H - H_ap| %.2g)" % (what, fc, cerr))
    # mid/side at unity: an impulse on L only comes back on L, R stays silent
    y = rd("flatms.wav")
    fc = [250, 500, 1000, 2000]
    h = np.fft.rfft(y[:, 0])[sel]
    dev = np.max(np.abs(20 * np.log10(np.abs(h))))
    cerr = np.max(np.abs(h - sum_response(fc, f[sel])))
    T.check(dev <= 0.01 and cerr < 1e-4, "mode ms, unity, crossovers %s: L flat within %.2g dB, "
            "max |H - H_ap| %.2g" % (fc, dev, cerr))
    T.check(T.peak_db(y[:, 1]) < -120, "mode ms, unity: R of an impulse on L peaks at %.1f dBFS"
            % T.peak_db(y[:, 1]))
    # -- solo: -6.02 dB at crossovers, null against scipy ----------------------
    for i, fc in enumerate(solo_cases):
        for b in range(len(fc) + 1):
            h = rd("soloimp%d_%d.wav" % (i, b))[:, 0]
            y = rd("solo%d_%d.wav" % (i, b))
            ref = signal.sosfilt(band_sos(fc, b), noise.astype(np.float64), axis=0)
            res = T.peak_db(y - ref)
            T.check(res < -110, "solo%d, crossovers %s: output nulls against scipy's band %d "
                    "filter: residual %.1f dBFS (limit -110)" % (b + 1, fc, b + 1, res))
            if i == 0:  # decade spacing: -6.02 dB at each of the band's crossovers
                for j in (b - 1, b):
                    if 0 <= j < len(fc):
                        lv = 20 * np.log10(abs(dft_at(h, fc[j])))
                        T.check(abs(lv + 6.02) <= 0.05, "band %d of %s at crossover %g Hz: "
                                "%.3f dB (want -6.02 +-0.05)" % (b + 1, fc, fc[j], lv))
    y = rd("solo13.wav")
    fc = solo_cases[0]
    ref = signal.sosfilt(band_sos(fc, 0), noise.astype(np.float64), axis=0) + \
        signal.sosfilt(band_sos(fc, 2), noise.astype(np.float64), axis=0)
    res = T.peak_db(y - ref)
    T.check(res < -110, "solo1 + solo3: output is band 1 + band 3 (residual %.1f dBFS)" % res)

    # -- per-band compression, makeup, bypass, results ----------------------------
    x = rd("two.wav")[FS:, 0]
    y = rd("comp.wav")[FS:, 0]
    yb = rd("compbyp.wav")[FS:, 0]
    want = -(1 - 1 / 4) * (-12 + 30) + 6
    g1k = 20 * np.log10(tone_amp(y, 1000) / tone_amp(x, 1000))
    g20 = 20 * np.log10(tone_amp(y, 20) / tone_amp(x, 20))
    T.check(abs(g1k - want) <= 0.2, "band 2 (threshold -30, ratio 4, makeup +6): 1 kHz tone "
            "at -12 dBFS changes %.3f dB (curve: %.2f +-0.2)" % (g1k, want))
    T.check(abs(g20) <= 0.05, "band 1 (ratio 1): 20 Hz tone changes %.4f dB (+-0.05)" % g20)
    gr2 = vals.get("comp.max_gain_reduction2", float("nan"))
    T.check(abs(gr2 - 13.5) <= 0.2, "results: max_gain_reduction2 %.3f dB (13.5 +-0.2)" % gr2)
    T.check(vals.get("comp.max_gain_reduction1") == 0 and vals.get("comp.max_gain_reduction3") == 0,
            "results: bands 1 and 3 (ratio 1) report 0: %r, %r"
            % (vals.get("comp.max_gain_reduction1"), vals.get("comp.max_gain_reduction3")))
    T.check(vals.get("comp.max_gain_reduction") == gr2 and "comp.max_gain_reduction4" not in vals,
            "results: max_gain_reduction %r is the largest band's; no band 4 in a 3-band split"
            % vals.get("comp.max_gain_reduction"))
    # the rms detector reads a sine's peak level (AES17), so the same curve
    yr = rd("comprms.wav")[FS:, 0]
    gr_ = 20 * np.log10(tone_amp(yr, 1000) / tone_amp(x, 1000))
    T.check(abs(gr_ - want) <= 0.3, "detector rms: 1 kHz tone changes %.3f dB (curve: %.2f +-0.3)"
            % (gr_, want))
    gb = 20 * np.log10(tone_amp(yb, 1000) / tone_amp(x, 1000))
    T.check(abs(gb) <= 0.01, "bypass2: 1 kHz tone passes at %.4f dB (no compression, no "
            "makeup; +-0.01)" % gb)
    T.check(vals.get("compbyp.max_gain_reduction2") == 0,
            "bypass2: band 2 reports no reduction (%r)" % vals.get("compbyp.max_gain_reduction2"))

    # -- mid/side ------------------------------------------------------------
    def ms_gains(name):
        y = rd(name)[FS:]
        m_out, s_out = (y[:, 0] + y[:, 1]) / 2, (y[:, 0] - y[:, 1]) / 2
        return (20 * np.log10(tone_amp(m_out, 500) / tone_amp(mid[FS:], 500)),
                20 * np.log10(tone_amp(s_out, 1000) / tone_amp(side[FS:], 1000)))
    gm, gs = ms_gains("ms_ms.wav")
    want = -(1 - 1 / 4) * (-6 + 20)
    T.check(abs(gm) <= 0.05, "mode ms: quiet mid (-30 dBFS, threshold -20) unchanged: %.4f dB" % gm)
    T.check(abs(gs - want) <= 0.3, "mode ms: loud side (-6 dBFS) reduced %.2f dB (curve %.1f +-0.3)"
            % (gs, want))
    gm, gs = ms_gains("ms_st.wav")
    T.check(gm < -5, "mode stereo, same input: the mid is reduced too (%.2f dB, side %.2f dB)"
            % (gm, gs))

    # -- block sizes -----------------------------------------------------------
    for mode in ("stereo", "ms"):
        y64, y1000, y4096 = (T.read_raw32(os.path.join(d, "blk_%s_%d.wav" % (mode, b)))[0]
                             for b in (64, 1000, 4096))
        same = np.array_equal(y64, y4096) and np.array_equal(y1000, y4096)
        diff = max(np.max(np.abs(y64 - y4096)), np.max(np.abs(y1000 - y4096)))
        T.check(same, "mode %s with automation: blocks 64/1000/4096 identical (max diff %.3g, "
                "peak %.1f dBFS)" % (mode, diff, T.peak_db(y4096)))
        r = [vals.get("blk_%s_%d.max_gain_reduction" % (mode, b)) for b in (64, 1000, 4096)]
        T.check(r[0] == r[1] == r[2] and r[0] > 1, "mode %s: max_gain_reduction the same "
                "for every block size: %r" % (mode, r))

    # -- numeric hygiene -----------------------------------------------------------
    tiny = np.finfo(np.float32).tiny
    for k in hyg:
        for mode in ("stereo", "ms"):
            y = T.read_raw32(os.path.join(d, "ho_%s_%s.wav" % (k, mode)))[0]
            bad = int(np.sum(~np.isfinite(y)) + np.sum((np.abs(y) < tiny) & (y != 0)))
            T.check(bad == 0 and y.shape[0] == hyg[k].shape[0], "%s (%s, heavy settings): %d "
                    "NaN/Inf/subnormal of %d samples" % (k, mode, bad, y.size))

    # -- bad values ------------------------------------------------------------
    expect = {
        "decreasing": ["crossover2", "200", "above crossover1"],
        "equal": ["crossover2", "200", "above crossover1"],
        "too_high": ["crossover2", "22000", "21600"],
        "too_low": ["crossover1", "5", "10"],
        "five": ["crossovers", "5", "4"],
        "gap": ["crossover3", "5000", "crossover1"],
        "ratio": ["ratio1", "0.5"],
        "mode": ["mode", "lcr", "ms"],
        "word": ["crossovers"],
        "ms_mono": ["ms", "stereo", "1 channel"],
    }
    for k, words in expect.items():
        e = str(vals.get("err." + k, "(not run)"))
        T.check(e != "none" and all(w in e for w in words),
                "bad value %s: error names %s: %s" % (k, words, e))
    T.check(vals.get("err.good") == "none", "crossovers {200, 2000} accepted: %s"
            % vals.get("err.good"))
    T.finish()


if __name__ == "__main__":
    main()
