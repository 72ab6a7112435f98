"""`moonbus master`: loudness delivery measured by ffmpeg.

Programmes (synthesised here, 20 s, 48 kHz stereo, 32-bit float):
  quiet       a mix (PLR 13 dB) at -28 LUFS, peaks at -15 dBFS;
  loud        the same mix driven through tanh to -7.3 LUFS, sample peaks
              at -0.1 dBFS, true peak at 0 dBTP;
  quiet_start 7 s of a quiet intro (30 dB down) before the mix, -16 LUFS in
              all (gating keeps most of the intro out of the figure).
For every target (spotify, apple, youtube, tidal, ebu) and programme,
`moonbus master IN OUT --target T --json R` must write a file whose
integrated loudness, as ffmpeg's ebur128 reads it, is within +-0.2 LU of
the target and whose true peak (ebur128 peak=true) and sample peak are at
most the ceiling + 0.1 dB. The JSON report's "after" figures must agree
with ffmpeg within 0.2 LU / 0.2 dB, its "before" figures with ffmpeg's
reading of the input.

Also: `--codec mp3` keeps the decoded MP3 (our encode, and ffmpeg's
libmp3lame encode of the master) under the ceiling + 0.1 dB; the cd target
writes 44.1 kHz 16-bit, -0.3 dBTP, keeping the mix's loudness; `--rate`
resamples before the limiter (we measure the overs that resampling after a
limiter brings back and show ours do not); a target that needs more than
the limiting budget fails with one line and writes nothing; bad arguments
give one `moonbus:` line and exit 2 (usage) or 1 (runtime), leaving no
file. ffmpeg's two-pass loudnorm is run on the loud programme and its miss
printed beside ours (a peer failure the issue names).
"""
import glob
import json
import os
import subprocess
import sys

import numpy as np
from scipy import signal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbtest as T  # noqa: E402

FS = 48000
SECS = 20
TARGETS = {"spotify": (-14, -1), "apple": (-16, -1), "youtube": (-13, -1),
           "tidal": (-14, -1), "ebu": (-23, -1)}


def mix(fs, secs, seed=1, kick_level=0.45):
    """A small arrangement: kick, bass, pad, hats, snare (stereo)."""
    rng = np.random.default_rng(seed)
    n = int(fs * secs)
    t = np.arange(n) / fs
    out = np.zeros((n, 2))
    beat = 0.5
    for k in range(int(secs / beat)):
        i = int(k * beat * fs)
        m = min(n - i, int(0.4 * fs))
        tt = np.arange(m) / fs
        kick = np.sin(2 * np.pi * (50 * tt + 60 * (1 - np.exp(-tt * 30)) / 30)) * np.exp(-tt * 9)
        out[i:i + m] += kick_level * kick[:, None]
        if k % 2 == 1:
            sn = rng.standard_normal(m) * np.exp(-tt * 25) * 0.12
            out[i:i + m, 0] += sn
            out[i:i + m, 1] += 0.8 * sn
        h = int((k * beat + beat / 2) * fs)
        if h < n:
            mh = min(n - h, int(0.05 * fs))
            hat = rng.standard_normal(mh) * np.exp(-np.arange(mh) / fs * 80) * 0.15
            out[h:h + mh, 0] += 0.6 * hat
            out[h:h + mh, 1] += hat
    bass = signal.sawtooth(2 * np.pi * 55 * t) * 0.3
    b, a = signal.butter(2, 300 / (fs / 2))
    out += signal.lfilter(b, a, bass)[:, None]
    pad = rng.standard_normal((n, 2)) * 0.08
    b, a = signal.butter(2, [400 / (fs / 2), 3000 / (fs / 2)], "band")
    out += signal.lfilter(b, a, pad, axis=0)
    return out


def programme(kind, fs=FS, secs=SECS):
    x = mix(fs, secs)
    if kind == "quiet":
        return x / np.max(np.abs(x)) * 10 ** (-15 / 20)
    if kind == "loud":
        y = np.tanh(3.0 * x / np.max(np.abs(x)))
        # band-limit so the tanh's overs become inter-sample peaks
        b, a = signal.butter(4, 16000 / (fs / 2))
        y = signal.lfilter(b, a, y, axis=0)
        return y / np.max(np.abs(y)) * 10 ** (-0.1 / 20)
    if kind == "quiet_start":
        y = x / np.max(np.abs(x)) * 10 ** (-3 / 20)
        intro = int(7 * fs)
        y[:intro] *= 10 ** (-30 / 20)
        return y
    raise ValueError(kind)


def master(d, src, out, *args):
    rep = out + ".json"
    rc, so, se = T.run(["master", src, out, "--json", rep] + list(args), cwd=d)
    r = None
    if rc == 0 and os.path.exists(rep):
        with open(rep) as f:
            r = json.load(f)
    return rc, so, se, r


def leftovers(d):
    return [p for p in glob.glob(os.path.join(d, ".*")) if "moonbus" in p]


def main():
    T.require_modules("compressor", "limiter", "dither", "meter", "eq", "gain")
    d = T.tmpdir()
    srcs = {}
    for kind in ("quiet", "loud", "quiet_start"):
        p = os.path.join(d, kind + ".wav")
        T.write(p, programme(kind), FS)
        srcs[kind] = p
        m = T.ffmpeg_r128(p)
        T.note("%s programme: %.2f LUFS, LRA %.1f LU, true peak %.2f dBTP" % (kind, m["I"], m["LRA"], m["TP"]))

    # Every target on every programme.
    for tname, (lufs, ceil) in TARGETS.items():
        for kind, src in srcs.items():
            out = os.path.join(d, "%s_%s.wav" % (kind, tname))
            rc, so, se, r = master(d, src, out, "--target", tname)
            if not T.check(rc == 0 and r is not None, "master %s --target %s: exit %d %s" % (
                    kind, tname, rc, se.strip()[:300])):
                continue
            m = T.ffmpeg_r128(out)
            T.check(abs(m["I"] - lufs) <= 0.2, "%s/%s: ffmpeg integrated %.2f LUFS (target %g +-0.2)"
                    % (kind, tname, m["I"], lufs))
            T.check(m["TP"] <= ceil + 0.1 and m["SP"] <= ceil + 0.1,
                    "%s/%s: ffmpeg true peak %.2f dBTP, sample peak %.2f dBFS (ceiling %g + 0.1)"
                    % (kind, tname, m["TP"], m["SP"], ceil))
            a = r["after"]
            T.check(abs(a["integrated"] - m["I"]) <= 0.2 and abs(a["true_peak"] - m["TP"]) <= 0.3,
                    "%s/%s: report after %.2f LUFS / %.2f dBTP vs ffmpeg %.2f / %.2f"
                    % (kind, tname, a["integrated"], a["true_peak"], m["I"], m["TP"]))
            x, fs = T.read(out)
            T.check(fs == FS and x.shape == (SECS * FS, 2),
                    "%s/%s: %d Hz, %d frames (input's rate and length)" % (kind, tname, fs, x.shape[0]))
            mi = T.ffmpeg_r128(src)
            b = r["before"]
            T.check(abs(b["integrated"] - mi["I"]) <= 0.2 and abs(b["true_peak"] - mi["TP"]) <= 0.3,
                    "%s/%s: report before %.2f LUFS / %.2f dBTP vs ffmpeg %.2f / %.2f"
                    % (kind, tname, b["integrated"], b["true_peak"], mi["I"], mi["TP"]))
            T.check(abs(r["gain"] - (lufs - mi["I"])) < 12 and "max_gain_reduction" in r
                    and abs(b["plr"] - (b["true_peak"] - b["integrated"])) < 1e-6,
                    "%s/%s: gain %+.2f dB, limiter %.2f dB, passes %d" % (
                        kind, tname, r["gain"], r["max_gain_reduction"], r["passes"]))
            for k in ("integrated", "lra", "true_peak", "sample_peak", "plr"):
                if k not in a or k not in b:
                    T.check(False, "%s/%s: report lacks %s" % (kind, tname, k))

    # Default bit depth 24, dithered: the values sit on the 24-bit grid.
    x, _ = T.read(os.path.join(d, "loud_spotify.wav"))
    q = x * 2 ** 23
    T.check(np.max(np.abs(q - np.round(q))) < 1e-6, "default output is 24-bit PCM")

    # --codec mp3: our encode and ffmpeg's (libmp3lame) stay under the ceiling.
    for tname in ("spotify", "apple"):
        lufs, ceil = TARGETS[tname]
        out = os.path.join(d, "codec_%s.wav" % tname)
        rc, so, se, r = master(d, srcs["loud"], out, "--target", tname, "--codec", "mp3")
        if not T.check(rc == 0 and r is not None, "--codec mp3 %s: exit %d %s" % (tname, rc, se.strip()[:300])):
            continue
        c = r["codecs"][0] if r["codecs"] else {}
        T.check(c.get("codec") == "mp3" and c.get("true_peak", 99) <= ceil,
                "report: decoded mp3 true peak %s dBTP (ceiling %g), limiter at %.2f dBTP"
                % (c.get("true_peak"), ceil, r["limiter_ceiling"]))
        m = T.ffmpeg_r128(out)
        T.check(abs(m["I"] - lufs) <= 0.2 and m["TP"] <= ceil + 0.1,
                "--codec mp3 %s master: %.2f LUFS, %.2f dBTP" % (tname, m["I"], m["TP"]))
        for how, args in (("libsndfile (LAME VBR default)", None),
                          ("ffmpeg libmp3lame 320k", ["-b:a", "320k"]),
                          ("ffmpeg libmp3lame VBR q2", ["-q:a", "2"])):
            mp3 = os.path.join(d, "codec_%s_%d.mp3" % (tname, len(how)))
            if args is None:
                import soundfile as sf
                y, fs = sf.read(out)
                sf.write(mp3, y, fs, format="MP3")
            else:
                subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", out, "-c:a", "libmp3lame"]
                               + args + [mp3], check=True)
            mm = T.ffmpeg_r128(mp3)
            T.check(mm["TP"] <= ceil + 0.1, "%s: decoded MP3 (%s) true peak %.2f dBTP (ceiling %g + 0.1)"
                    % (tname, how, mm["TP"], ceil))

    # cd: 44.1 kHz 16-bit, -0.3 dBTP, the mix's loudness kept.
    out = os.path.join(d, "cd.wav")
    rc, so, se, r = master(d, srcs["quiet_start"], out, "--target", "cd")
    if T.check(rc == 0 and r is not None, "--target cd: exit %d %s" % (rc, se.strip()[:300])):
        import soundfile as sf
        info = sf.info(out)
        mi, m = T.ffmpeg_r128(srcs["quiet_start"]), T.ffmpeg_r128(out)
        T.check(info.samplerate == 44100 and info.subtype == "PCM_16",
                "cd: %d Hz %s" % (info.samplerate, info.subtype))
        T.check(abs(m["I"] - mi["I"]) <= 0.2 and m["TP"] <= -0.3 + 0.1,
                "cd: %.2f LUFS (mix %.2f), %.2f dBTP (ceiling -0.3)" % (m["I"], mi["I"], m["TP"]))
        T.check(abs(info.frames - SECS * 44100) <= 1, "cd: %d frames" % info.frames)

    # --rate 44100 with the limiter working (quiet programme to youtube):
    # the graph runs at 44.1 kHz, so the limiter sees the final samples.
    out = os.path.join(d, "r441.wav")
    rc, so, se, r = master(d, srcs["quiet"], out, "--target", "youtube", "--rate", "44100")
    if T.check(rc == 0 and r is not None, "--rate 44100: exit %d %s" % (rc, se.strip()[:300])):
        m = T.ffmpeg_r128(out)
        T.check(m["TP"] <= -0.9 and abs(m["I"] + 13) <= 0.2 and r["max_gain_reduction"] > 1,
                "--rate 44100: %.2f LUFS, true peak %.2f dBTP, limiter %.1f dB" % (
                    m["I"], m["TP"], r["max_gain_reduction"]))
        # the wrong order, for comparison: limit at 48 kHz, resample after
        wrong = os.path.join(d, "wrong.wav")
        T.render("""
local g = mb.graph{}
g:chain(g:add("input", {path = %s}), g:add("gain", {gain = %f}),
        g:add("limiter", {ceiling = -1}), g:add("output", {path = %s, rate = 44100, bits = 32}))
g:render()
""" % (T.lua_str(srcs["quiet"]), r["gain"], T.lua_str(wrong)), cwd=d)
        mw = T.ffmpeg_r128(wrong)
        T.note("limiting at 48 kHz then resampling to 44.1 kHz reads %.2f dBTP (ceiling -1); "
               "moonbus master --rate 44100: %.2f dBTP" % (mw["TP"], m["TP"]))

    # The limiting budget: a spiky programme (noise at -30 dBFS, clicks at
    # 0.9 four times a second) pushed to -9 LUFS needs about 18 dB of
    # limiting; the run must say so and write nothing.
    rng = np.random.default_rng(5)
    n = 10 * FS
    spiky = rng.standard_normal((n, 2)) * 0.03
    for k in range(0, n, FS // 4):
        spiky[k:k + 50] += 0.9
    sp = os.path.join(d, "spiky.wav")
    T.write(sp, spiky, FS)
    out = os.path.join(d, "spiky_out.wav")
    before = set(os.listdir(d))
    rc, so, se, r = master(d, sp, out, "--lufs", "-9")  # "-9" after an option: a value
    lines = [l for l in se.splitlines() if l.strip()]
    T.check(rc == 1 and len(lines) == 1 and lines[0].startswith("moonbus: ") and "limiting" in lines[0]
            and not os.path.exists(out) and set(os.listdir(d)) == before,
            "too much limiting refused: exit %d, %r, nothing written" % (rc, se.strip()[:300]))
    rc, so, se, r = master(d, sp, out, "--lufs", "-9", "--max-limiting", "30")
    if T.check(rc == 0 and os.path.exists(out), "--max-limiting 30 allows it: exit %d %s" % (rc, se.strip()[:200])):
        m = T.ffmpeg_r128(out)
        T.check(abs(m["I"] + 9) <= 0.2 and m["TP"] <= -0.9 and r["max_gain_reduction"] > 6,
                "spiky at -9 LUFS: %.2f LUFS, %.2f dBTP, limiter %.1f dB" % (m["I"], m["TP"], r["max_gain_reduction"]))

    # Bad arguments: one line, the right exit status, no file.
    src = srcs["quiet"]
    bad = [
        (["master", src, "o.wav", "--target", "spotfy"], 2, "spotify"),
        (["master", src, "o.wav"], 2, "--target"),
        (["master", src, "o.wav", "--lufs", "5"], 1, "--lufs"),
        (["master", src, "o.wav", "--target", "ebu", "--ceiling", "3"], 1, "--ceiling"),
        (["master", src, "o.wav", "--target", "ebu", "--bits", "20"], 1, "--bits"),
        (["master", src, "o.wav", "--target", "ebu", "--rate", "1000"], 1, "--rate"),
        (["master", src, "o.wav", "--target", "ebu", "--codec", "mp4"], 1, "mp4"),
        (["master", src, src, "--target", "ebu"], 1, "input"),
        (["master", os.path.join(d, "missing.wav"), "o.wav", "--target", "ebu"], 1, "missing.wav"),
        (["master", src, os.path.join(d, "no", "o.wav"), "--target", "ebu"], 1, "o.wav"),
        (["master", src, "o.mp4", "--target", "ebu"], 1, ".mp4"),
    ]
    silent = os.path.join(d, "silent.wav")
    T.write(silent, np.zeros((FS, 2)), FS)
    bad.append((["master", silent, "o.wav", "--target", "ebu"], 1, "silent"))
    with open(src, "rb") as f:
        src_bytes = f.read()
    for args, want, word in bad:
        before = set(os.listdir(d))
        rc, so, se = T.run(args, cwd=d)
        lines = [l for l in se.splitlines() if l.strip()]
        T.check(rc == want and len(lines) == 1 and lines[0].startswith("moonbus: ") and word in lines[0]
                and set(os.listdir(d)) == before,
                "%s: exit %d (want %d), %r" % (" ".join(a.replace(d + "/", "") for a in args[3:]) or args[1],
                                               rc, want, se.strip()[:200]))
    with open(src, "rb") as f:
        T.check(f.read() == src_bytes, "the input is untouched")
    T.check(not leftovers(d), "no temporary files left: %s" % leftovers(d))

    # The peer: ffmpeg's two-pass loudnorm on the loud programme.
    p1 = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-i", srcs["loud"], "-af",
                         "loudnorm=I=-14:TP=-1:LRA=20:print_format=json", "-f", "null", "-"],
                        capture_output=True, text=True)
    try:
        j = json.loads(p1.stderr[p1.stderr.rindex("{"):])
        ln = os.path.join(d, "loudnorm.wav")
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", srcs["loud"], "-af",
                        "loudnorm=I=-14:TP=-1:LRA=20:measured_I=%s:measured_TP=%s:measured_LRA=%s:"
                        "measured_thresh=%s:offset=%s:linear=true" % (
                            j["input_i"], j["input_tp"], j["input_lra"], j["input_thresh"],
                            j["target_offset"]), "-ar", "48000", ln], check=True)
        m = T.ffmpeg_r128(ln)
        ours = T.ffmpeg_r128(os.path.join(d, "loud_spotify.wav"))
        T.note("ffmpeg loudnorm two-pass (-14 LUFS, -1 dBTP): %.2f LUFS, %.2f dBTP; "
               "moonbus master: %.2f LUFS, %.2f dBTP" % (m["I"], m["TP"], ours["I"], ours["TP"]))
    except (ValueError, KeyError, subprocess.CalledProcessError) as e:
        T.note("ffmpeg loudnorm comparison skipped: %s" % e)

    # A first pass that lands: it was a probe (nothing written, no output
    # true peak), so it is rendered again for real: 2 passes, on target.
    tone = os.path.join(d, "tone.wav")
    t = np.arange(10 * FS) / FS
    T.write(tone, np.repeat((0.05 * np.sin(2 * np.pi * 1000 * t))[:, None], 2, axis=1), FS)
    lt = round(T.ffmpeg_r128(tone)["I"], 1)
    out = os.path.join(d, "tone_m.wav")
    rc, so, se, r = master(d, tone, out, "--lufs", str(lt))
    if T.check(rc == 0 and r is not None, "tone at its own loudness: exit %d %s" % (rc, se.strip()[:200])):
        m = T.ffmpeg_r128(out)
        T.check(r["passes"] == 2 and abs(m["I"] - lt) <= 0.2 and m["TP"] <= -1 + 0.1,
                "tone at %.1f LUFS: landing probe rendered again (passes %d), ffmpeg %.2f LUFS %.2f dBTP"
                % (lt, r["passes"], m["I"], m["TP"]))
    T.finish()


if __name__ == "__main__":
    main()
