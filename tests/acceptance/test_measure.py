#!/usr/bin/python3
"""Acceptance: `moonbus measure` against EBU Tech 3341/3342 and ffmpeg.

The issue: "`moonbus measure` on the EBU Tech 3341 cases 1 to 5
(synthesised from their published descriptions) within +-0.1 LU of the
expected values, and within 0.1 LU of ffmpeg's ebur128 on the same files."

Files (48 kHz stereo 24-bit WAV written here with soundfile; a 1 kHz sine
in both channels, phase-continuous, "X dBFS" meaning amplitude 10^(X/20), a
full-scale sine being 0 dBFS, as in Tech 3341):
  EBU Tech 3341 (2016), minimum requirements, integrated loudness:
    case 1: -23 dBFS 20 s                                  -> -23.0 LUFS
    case 2: -33 dBFS 20 s                                  -> -33.0 LUFS
    case 3: -36 10 s, -23 60 s, -36 10 s                   -> -23.0 LUFS
    case 4: -72 10 s, -36 10 s, -23 60 s, -36 10 s, -72 10 s -> -23.0 LUFS
    case 5: -26 20 s, -20 20.1 s, -26 20 s                 -> -23.0 LUFS
  EBU Tech 3342 (loudness range), +-1 LU:
    case 1: -20 20 s, -30 20 s -> 10 LU; case 2: -20, -15 -> 5 LU;
    case 3: -40, -20 -> 20 LU
  True peak: a 12 kHz (fs/4) sine, amplitude 0.5 (-6.02 dBTP), phase 45
    degrees so the samples read 3.01 dB low (sample peak -9.03 dBFS), 50 ms
    fades, 3 s: true peak -6.02 dBTP within +0.2/-0.4 dB (Tech 3341's
    true-peak tolerance), sample peak equal to numpy's within 0.01 dB.
All files are measured in one `moonbus measure --json` call; ffmpeg
(`ebur128=peak=true+sample:metadata=1` through `ametadata=mode=print`, the
last lavfi.r128.I / LRA / true_peak values: I and LRA to 0.001, true peak
linear to 0.001) measures the same files. Checks: integrated within 0.1 LU
of the expected value and of ffmpeg; LRA within 1 LU of the expected value
and 0.1 LU of ffmpeg; true and sample peaks as above (and case 1's true
peak within 0.1 dB of ffmpeg's); durations, rates and channels right.
Then mb.measure(path, { true_peak = false }) on case 5: integrated and LRA
within 0.1 of ffmpeg, no true peak; a misspelt option, a non-boolean and a
non-table each fail with one `moonbus:` line naming the problem.
"""
import json
import os
import subprocess
import sys

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbtest as T  # noqa: E402

FS = 48000
CASES_I = {
    "3341_case1": ([(-23, 20)], -23.0),
    "3341_case2": ([(-33, 20)], -33.0),
    "3341_case3": ([(-36, 10), (-23, 60), (-36, 10)], -23.0),
    "3341_case4": ([(-72, 10), (-36, 10), (-23, 60), (-36, 10), (-72, 10)], -23.0),
    "3341_case5": ([(-26, 20), (-20, 20.1), (-26, 20)], -23.0),
}
CASES_LRA = {
    "3342_case1": ([(-20, 20), (-30, 20)], 10.0),
    "3342_case2": ([(-20, 20), (-15, 20)], 5.0),
    "3342_case3": ([(-40, 20), (-20, 20)], 20.0),
}
TOL_I = 0.1
TOL_FF = 0.1
TOL_LRA = 1.0


def steps(segments):
    amp = np.concatenate([np.full(int(round(dur * FS)), 10 ** (lev / 20)) for lev, dur in segments])
    t = np.arange(len(amp)) / FS
    x = amp * np.sin(2 * np.pi * 1000 * t)
    return np.stack([x, x], axis=1)


def tp_signal():
    n = 3 * FS
    t = np.arange(n) / FS
    x = 0.5 * np.sin(2 * np.pi * 12000 * t + np.pi / 4)
    k = int(0.05 * FS)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(k) / k)
    x[:k] *= ramp
    x[-k:] *= ramp[::-1]
    return np.stack([x, x], axis=1)


def ffmpeg_start(path):
    return subprocess.Popen(
        ["ffmpeg", "-nostats", "-hide_banner", "-i", path, "-af",
         "ebur128=peak=true+sample:metadata=1,ametadata=mode=print:file=-",
         "-f", "null", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ffmpeg_finish(p):
    out, err = p.communicate()
    last = {}
    for line in out.splitlines():
        if line.startswith("lavfi.r128.") and "=" in line:
            k, v = line[len("lavfi.r128."):].split("=", 1)
            last[k] = float(v)
    return last if p.returncode == 0 else None


def moonbus_measure(paths):
    """`moonbus measure --json` results by file name; falls back to
    mb.measure() (recording the CLI failure) so the figures still show."""
    rc, out, err = T.run(["measure", "--json"] + paths)
    res = None
    if rc == 0:
        try:
            res = json.loads(out)
        except ValueError as e:
            err = "not JSON (%s): %r" % (e, out[:200])
    T.check(res is not None, "`moonbus measure --json` on %d files: exit %d%s" % (
        len(paths), rc, "" if res is not None else ": " + err.strip()))
    if res is None:
        script = "local cjson = require 'cjson'\nlocal out = {}\n"
        for p in paths:
            script += ("do local m = mb.measure(%s); out[#out+1] = { path = %s, integrated = m.integrated, "
                       "lra = m.lra, true_peak = m.true_peak, sample_peak = m.sample_peak, "
                       "duration = m.duration, rate = m.rate, channels = m.channels } end\n"
                       % (T.lua_str(p), T.lua_str(p)))
        script += "io.write(cjson.encode(out))\n"
        rc, out, err = T.run_lua(script)
        if rc != 0:
            T.check(False, "mb.measure fallback: %s" % err.strip())
            T.finish()
        T.note("(figures below from mb.measure() in `moonbus run`, the CLI having failed)")
        res = json.loads(out)
    return {os.path.basename(r["path"]): r for r in res}


def main():
    d = T.tmpdir()
    files = {}
    for name, (segs, _) in list(CASES_I.items()) + list(CASES_LRA.items()):
        files[name] = steps(segs)
    files["tp_12k"] = tp_signal()
    paths = []
    for name, x in files.items():
        p = os.path.join(d, name + ".wav")
        sf.write(p, x, FS, subtype="PCM_24")
        paths.append(p)
    ffp = {os.path.basename(p): ffmpeg_start(p) for p in paths}
    mb = moonbus_measure(paths)
    ff = {k: ffmpeg_finish(p) for k, p in ffp.items()}
    for k, v in ff.items():
        T.check(v is not None and "I" in v, "ffmpeg ebur128 measured %s" % k)
    if any(v is None for v in ff.values()):
        T.finish()

    for name, (segs, expect) in CASES_I.items():
        f = name + ".wav"
        m, r = mb.get(f), ff[f]
        if not T.check(m is not None, "%s measured" % name):
            continue
        i = m.get("integrated")
        i = float("nan") if i is None else i
        T.check(abs(i - expect) <= TOL_I,
                "%s: integrated %.3f LUFS, expected %.1f +-%.1f" % (name, i, expect, TOL_I))
        T.check(abs(i - r["I"]) <= TOL_FF,
                "%s: integrated %.3f vs ffmpeg %.3f LUFS: difference %+.3f LU (limit %.1f)"
                % (name, i, r["I"], i - r["I"], TOL_FF))
        dur = sum(s for _, s in segs)
        T.check(abs(m.get("duration", -1) - dur) < 1e-6 and m.get("rate") == FS
                and m.get("channels") == 2,
                "%s: duration %.4f s (expected %.4f), rate %s, channels %s" % (
                    name, m.get("duration", -1), dur, m.get("rate"), m.get("channels")))

    for name, (segs, expect) in CASES_LRA.items():
        f = name + ".wav"
        m, r = mb.get(f), ff[f]
        if not T.check(m is not None, "%s measured" % name):
            continue
        lra = m.get("lra")
        lra = float("nan") if lra is None else lra
        T.check(abs(lra - expect) <= TOL_LRA,
                "%s: LRA %.3f LU, expected %.0f +-%.0f" % (name, lra, expect, TOL_LRA))
        T.check(abs(lra - r["LRA"]) <= TOL_FF,
                "%s: LRA %.3f vs ffmpeg %.3f LU: difference %+.3f (limit %.1f)"
                % (name, lra, r["LRA"], lra - r["LRA"], TOL_FF))

    # peaks
    x = files["tp_12k"]
    m, r = mb.get("tp_12k.wav"), ff["tp_12k.wav"]
    q = sf.read(os.path.join(d, "tp_12k.wav"), always_2d=True)[0]  # as stored (24-bit)
    sp = T.peak_db(q)
    tp_expect = 20 * np.log10(0.5)
    if T.check(m is not None, "tp_12k measured"):
        tp = m.get("true_peak")
        tp = float("nan") if tp is None else tp
        fftp = 20 * np.log10(r["true_peak"])
        T.check(tp_expect - 0.4 <= tp <= tp_expect + 0.2,
                "12 kHz sine at 0.5, 45 deg: true peak %.3f dBTP, expected %.2f +0.2/-0.4 "
                "(ffmpeg %.3f)" % (tp, tp_expect, fftp))
        T.check(abs(m.get("sample_peak", 0) - sp) <= 0.01,
                "12 kHz sine: sample peak %.4f dBFS vs numpy %.4f" % (m.get("sample_peak", 0), sp))
    m, r = mb.get("3341_case1.wav"), ff["3341_case1.wav"]
    if m is not None:
        tp = m.get("true_peak")
        tp = float("nan") if tp is None else tp
        fftp = 20 * np.log10(r["true_peak"])
        T.check(abs(tp - (-23)) <= 0.1 and abs(tp - fftp) <= 0.1,
                "3341 case 1: true peak %.3f dBTP (expected -23.0; ffmpeg %.3f)" % (tp, fftp))

    # mb.measure(path, { true_peak = false }): the same loudness, no true
    # peak; a wrong option is one error line naming it.
    v = T.render('local m = mb.measure("3341_case5.wav", { true_peak = false })\n'
                 'emit("I", m.integrated); emit("LRA", m.lra); emit("SP", m.sample_peak)\n'
                 'emit("has_tp", m.true_peak ~= nil and 1 or 0)', cwd=d, what="measure without true peak")
    r = ff["3341_case5.wav"]
    T.check(v.get("has_tp") == 0 and abs(v["I"] - r["I"]) <= TOL_FF and abs(v["LRA"] - r["LRA"]) <= TOL_FF,
            "measure{true_peak=false}: %.3f LUFS, LRA %.3f (ffmpeg %.3f, %.3f), no true peak"
            % (v["I"], v["LRA"], r["I"], r["LRA"]))
    for opt, want in (("{ truepeak = false }", "did you mean 'true_peak'"),
                      ("{ true_peak = 0 }", "true_peak must be true or false"),
                      ('"fast"', "options must be a table")):
        rc, out, err = T.run_lua('mb.measure("3341_case1.wav", %s)' % opt, cwd=d)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        T.check(rc != 0 and len(lines) == 1 and lines[0].startswith("moonbus:") and want in lines[0],
                "measure(path, %s): exit %d, one line %r" % (opt, rc, err.strip()[:200]))
    T.finish()


if __name__ == "__main__":
    main()
