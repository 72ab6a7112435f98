#!/usr/bin/python3
"""Acceptance: core.analyse (the QC analyser, core/analyse.c) against
ffmpeg and numpy.

The task: "`core.analyse(path [, opts])` returns a table of QC figures
(loudness, peaks, RMS, clipping, DC, correlation, mono drop, silence at the
edges, format, waveform columns, short-term loudness, long-term spectrum),
each checked against an independent tool."

Files (written here with numpy/soundfile; "music" is pink noise from a
Voss-McCartney-style IIR pinking filter, its level swept by a slow sine so
the loudness range is a few LU, the two channels partly correlated, and a
DC offset added per channel):
  music48.wav  48 kHz PCM_24 stereo 25 s, DC +0.004 / -0.002
  music44.wav  44.1 kHz PCM_16 stereo 20 s, DC +0.001 / +0.003
  edges.wav    48 kHz PCM_24: 1.5 s head and 2 s tail of noise at about
               -75 dBFS (under the -60 dBFS silence threshold), music between
  clipped.wav  48 kHz PCM_16: music driven 3x into +-1 (runs of clipped
               samples, and single ones)
  overs.wav    48 kHz FLOAT: music peaking at 1.3 (overs above full scale)
  (the stereo files last 20 s or more: with fewer short-term values the
  loudness range's percentiles fall between ranks, where ffmpeg's histogram
  and the kernel's nearest rank (libebur128's) differ by a few tenths)
  anti.wav     48 kHz PCM_24: R = -L exactly (the mono sum is digital silence)
  near_anti.wav R = -0.8 L + a little independent noise
  uncorr.wav   independent equal-level noise in L and R (mono drop ~ -3 dB)
  mono.wav     44.1 kHz PCM_16 mono: a 3 kHz sine at 0.5 with 50 ms fades
  flac16.flac  48 kHz FLAC PCM_16 stereo music
  short.wav    50 ms of a 1 kHz sine at 0.5 (shorter than one FFT segment)
  long.wav     5 min 48 kHz stereo PCM_24 music (the speed check)

Checks:
  - ffmpeg ebur128 (peak=true, fine values through ametadata): integrated
    and LRA within 0.1 LU, true peak within 0.1 dB (4x oversampled both; at
    44.1 kHz ffmpeg resamples to 48 kHz first);
  - ffmpeg astats (printed summary): sample peak ("Peak level dB"), RMS
    ("RMS level dB", overall and per channel) and per-channel DC offset,
    as dB, within 0.1 dB;
  - mono_drop: ffmpeg ebur128 after pan=stereo|c0=0.5*c0+0.5*c1|c1=... minus
    the stereo reading, within 0.1 LU (for anti.wav: nil, the mono sum
    gated out, ffmpeg reading -70 LUFS or below); 0 +-0.1 for L = R and
    -3 +-0.3 for uncorrelated equal channels (the brief's figures);
  - short-term loudness every 100 ms against ffmpeg's lavfi.r128.S (from 3 s
    on: ffmpeg shows -120.7 before its first full window) within 0.1 LU;
    decimation (points) equal to the group maxima of the full list;
  - numpy on the same samples: correlation (sum LR / sqrt(sum L^2 sum R^2)),
    clipped count and runs (|x| >= 32767/32768), head/tail silence (|x| >
    0.001), DC means, per-channel RMS, waveform columns (min/max over
    [k N / C, (k+1) N / C), within 1e-4: the binding rounds to 4 decimals);
  - format/bits/float/rate/frames against soundfile's header reading;
  - spectrum: scipy.signal.welch with the same window (sin^2(pi(n+1/2)/N)),
    N, 50 % overlap and density scaling, summed over each band's bins and
    averaged over channels, within 0.05 dB on every band within 100 dB of
    the strongest (float FFT rounding shows below that); the 3 kHz sine's
    peak band contains 3 kHz and reads -9.03 dB (0.5^2 / 2) within 1.8 dB
    (-3.01 for full scale by the brief's calibration; a band narrower than
    the window's main lobe may hold only its centre bin, -1.76 dB);
  - errors: a missing file, a text file named .wav and an unknown option
    each exit 1 with one "moonbus:" line on stderr naming the file (the
    option);
  - speed: the 5-minute file's wall time (best of three, moonbus start-up
    subtracted) is noted, never asserted (speed belongs to bench/).
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import soundfile as sf
from scipy.signal import lfilter, welch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbtest as T  # noqa: E402

SANITIZED = bool(os.environ.get("MOONBUS_SANITIZED"))
CLIP = 32767 / 32768
SILENCE = 10 ** (-60 / 20)


# ---- signals ----------------------------------------------------------------

def pink(rng, n, ch):
    """Pink-ish noise (Paul Kellet's economy pinking filter, -3 dB/oct
    within 0.5 dB above 10 Hz), unit peak."""
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
    a = [1, -2.494956002, 2.017265875, -0.522189400]
    x = lfilter(b, a, rng.standard_normal((n, ch)), axis=0)
    return x / np.max(np.abs(x))


def music(rng, fs, seconds, dc=(0.0, 0.0), peak=0.6, corr=0.7):
    n = int(round(seconds * fs))
    x = pink(rng, n, 2)
    x[:, 1] = corr * x[:, 0] + (1 - corr) * x[:, 1]
    t = np.arange(n) / fs
    env = 1 + 0.7 * np.sin(2 * np.pi * t / 6.5)  # level sweep: a few LU of LRA
    x *= env[:, None]
    x *= peak / np.max(np.abs(x))
    return x + np.asarray(dc)[None, :]


def fades(x, fs, ms=50):
    k = int(fs * ms / 1000)
    r = 0.5 - 0.5 * np.cos(np.pi * np.arange(k) / k)
    x = x.copy()
    x[:k] *= r[:, None] if x.ndim == 2 else r
    x[-k:] *= (r[::-1])[:, None] if x.ndim == 2 else r[::-1]
    return x


def make_files(d):
    rng = np.random.default_rng(20261121)
    files = {}  # name -> (path, rate, subtype)

    def put(name, x, fs, subtype, fmt=None):
        p = os.path.join(d, name)
        sf.write(p, x, fs, subtype=subtype, format=fmt)
        files[name] = p

    put("music48.wav", music(rng, 48000, 25, dc=(0.004, -0.002)), 48000, "PCM_24")
    put("music44.wav", music(rng, 44100, 20, dc=(0.001, 0.003)), 44100, "PCM_16")
    fs = 48000
    head, tail = int(1.5 * fs), 2 * fs
    quiet = lambda n: 1.8e-4 * rng.standard_normal((n, 2)).clip(-3, 3)  # noqa: E731
    put("edges.wav", np.concatenate([quiet(head), music(rng, fs, 20), quiet(tail)]), fs,
        "PCM_24")
    put("clipped.wav", np.clip(3 * music(rng, 48000, 20, peak=0.9), -1, 1), 48000, "PCM_16")
    put("overs.wav", music(rng, 48000, 20, peak=1.3), 48000, "FLOAT")
    s = music(rng, 48000, 20)[:, 0]
    put("anti.wav", np.stack([s, -s], axis=1), 48000, "PCM_24")
    s2 = music(rng, 48000, 20)
    put("near_anti.wav", np.stack([s2[:, 0], -0.8 * s2[:, 0] + 0.05 * s2[:, 1]], axis=1) * 0.9,
        48000, "PCM_24")
    u = pink(rng, 20 * 48000, 2) * 0.4
    put("uncorr.wav", u, 48000, "PCM_24")
    put("same.wav", np.stack([u[:, 0], u[:, 0]], axis=1), 48000, "PCM_24")
    t = np.arange(5 * 44100) / 44100
    put("mono.wav", fades(0.5 * np.sin(2 * np.pi * 3000 * t), 44100), 44100, "PCM_16")
    put("flac16.flac", music(rng, 48000, 20), 48000, "PCM_16")
    t = np.arange(2400) / 48000
    put("short.wav", 0.5 * np.sin(2 * np.pi * 1000 * t), 48000, "PCM_24")
    return files


# ---- moonbus ------------------------------------------------------------------

LUA = r"""
local core = require "moonbus.core"
local cjson = require "cjson"
-- JSON has no infinities: -inf (a level of silence) and NaN become null
local function clean(v)
  if type(v) == "number" and (v ~= v or v == math.huge or v == -math.huge) then
    return cjson.null
  end
  if type(v) == "table" then
    local out = {}
    for k, x in pairs(v) do out[k] = clean(x) end
    return out
  end
  return v
end
local out = {}
for _, job in ipairs(JOBS) do
  local ok, res = pcall(core.analyse, job.path, job.opts)
  out[job.key] = ok and clean(res) or { error = tostring(res) }
end
io.write(cjson.encode(out))
"""


def lua_value(v):
    if isinstance(v, dict):
        return "{" + ", ".join("%s = %s" % (k, lua_value(x)) for k, x in v.items()) + "}"
    if isinstance(v, str):
        return T.lua_str(v)
    return repr(v)


def analyse(jobs):
    """jobs: {key: (path, opts or None)} -> {key: result dict}."""
    lines = ["JOBS = {"]
    for key, (path, opts) in jobs.items():
        lines.append("  { key = %s, path = %s, opts = %s }," % (
            T.lua_str(key), T.lua_str(path), lua_value(opts) if opts else "nil"))
    lines.append("}")
    rc, out, err = T.run_lua("\n".join(lines) + LUA)
    if not T.check(rc == 0, "moonbus run analysing %d files: exit %d %s" % (
            len(jobs), rc, err.strip()[-500:])):
        T.finish()
    res = json.loads(out)
    for k, v in res.items():
        T.check("error" not in v, "core.analyse(%s): %s" % (k, v.get("error", "ok")))
    return res


# ---- references -------------------------------------------------------------

def ffmpeg(path, af):
    p = subprocess.run(["ffmpeg", "-nostdin", "-nostats", "-hide_banner", "-i", path,
                        "-af", af, "-f", "null", "-"], capture_output=True, text=True)
    return p


def ff_r128(path, pre=""):
    """Last fine values of ebur128 (I, LRA, true peak dB) and the S series."""
    af = (pre + "," if pre else "") + \
        "ebur128=peak=true:metadata=1,ametadata=mode=print:file=-"
    p = ffmpeg(path, af)
    if p.returncode != 0:
        return None
    last, S = {}, []
    for line in p.stdout.splitlines():
        if line.startswith("lavfi.r128.") and "=" in line:
            k, v = line[len("lavfi.r128."):].split("=", 1)
            last[k] = float(v)
            if k == "S":
                S.append(float(v))
    tp = [v for k, v in last.items() if k.startswith("true_peaks_ch")]
    return {"I": last.get("I"), "LRA": last.get("LRA"),
            "TP": 20 * np.log10(max(tp)) if tp and max(tp) > 0 else -np.inf,
            "S": np.array(S)}


def ff_astats(path):
    """astats summary: per channel and overall dicts of the printed fields."""
    p = ffmpeg(path, "astats")
    if p.returncode != 0:
        return None
    sections, cur = [], None
    for line in p.stderr.splitlines():
        if "Parsed_astats" not in line:
            continue
        body = line.split("] ", 1)[1]
        if body.startswith("Channel:") or body.startswith("Overall"):
            cur = {}
            sections.append(cur)
            continue
        if cur is not None and ":" in body:
            k, v = body.split(":", 1)
            try:
                cur[k.strip()] = float(v.split("/")[0])
            except ValueError:
                pass
    return {"channels": sections[:-1], "overall": sections[-1]}


def runs_of_two(mask):
    """Runs of >= 2 consecutive True in a 1-D mask."""
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    starts = np.flatnonzero(np.diff(m) == 1)
    ends = np.flatnonzero(np.diff(m) == -1)
    return int(np.sum(ends - starts >= 2))


def hann_centred(n):
    return np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2


def ref_spectrum(x, fs, freq, nfft):
    """Band powers in dB as the analyser's comment defines them."""
    n = x.shape[0]
    if n < nfft:
        w = hann_centred(n)
        X = np.fft.rfft(x * w[:, None], nfft, axis=0)
        c = np.full(nfft // 2 + 1, 2.0)
        c[0] = c[-1] = 1
        P = np.mean(np.abs(X) ** 2, axis=1) * c / (nfft * np.sum(w ** 2))
    else:
        _, Pd = welch(x, fs, window=hann_centred(nfft), nperseg=nfft, noverlap=nfft // 2,
                      detrend=False, scaling="density", axis=0)
        P = np.mean(Pd, axis=1) * fs / nfft  # density * bin width = bin power
    df = fs / nfft
    r = (freq[-1] / freq[0]) ** (1 / (len(freq) - 1))
    out = []
    for f in freq:
        k0 = int(np.ceil(f / np.sqrt(r) / df))
        k1 = int(np.ceil(f * np.sqrt(r) / df)) - 1
        k1 = min(k1, len(P) - 1)
        if k1 < k0:
            k0 = k1 = min(int(round(f / df)), len(P) - 1)
        s = np.sum(P[k0:k1 + 1])
        out.append(10 * np.log10(s) if s > 0 else -np.inf)
    return np.array(out)


def num(v):
    return float("nan") if v is None else float(v)


def close(a, b, tol):
    a, b = num(a), num(b)
    if np.isinf(a) or np.isinf(b):
        return a == b
    return abs(a - b) <= tol


# ---- checks -----------------------------------------------------------------

def check_loudness(name, path, m, stereo):
    r = ff_r128(path)
    if not T.check(r is not None and r["I"] is not None, "%s: ffmpeg ebur128 ran" % name):
        return
    T.check(close(m["integrated"], r["I"], 0.1),
            "%s: integrated %.3f LUFS vs ffmpeg %.3f" % (name, num(m["integrated"]), r["I"]))
    T.check(close(m["lra"], r["LRA"], 0.1),
            "%s: LRA %.3f LU vs ffmpeg %.3f" % (name, num(m["lra"]), r["LRA"]))
    T.check(close(m["true_peak"], r["TP"], 0.1),
            "%s: true peak %.3f dBTP vs ffmpeg %.3f" % (name, num(m["true_peak"]), r["TP"]))
    T.check(close(m["plr"], num(m["true_peak"]) - num(m["integrated"]), 1e-9),
            "%s: plr %.3f = true peak - integrated" % (name, num(m["plr"])))
    if stereo:
        rm = ff_r128(path, "pan=stereo|c0=0.5*c0+0.5*c1|c1=0.5*c0+0.5*c1")
        want = rm["I"] - r["I"]
        T.check(close(m.get("mono_drop"), want, 0.1),
                "%s: mono drop %.3f dB vs ffmpeg (pan M,M) %.3f - %.3f = %.3f"
                % (name, num(m.get("mono_drop")), rm["I"], r["I"], want))
    return r


def check_astats(name, path, m, x):
    a = ff_astats(path)
    if not T.check(a is not None and len(a["channels"]) == x.shape[1],
                   "%s: ffmpeg astats ran" % name):
        return
    T.check(close(m["sample_peak"], a["overall"]["Peak level dB"], 0.1),
            "%s: sample peak %.4f dBFS vs astats %.4f" % (
                name, num(m["sample_peak"]), a["overall"]["Peak level dB"]))
    T.check(close(m["rms"], a["overall"]["RMS level dB"], 0.1),
            "%s: RMS %.4f dBFS vs astats %.4f" % (name, num(m["rms"]),
                                                 a["overall"]["RMS level dB"]))
    for c, s in enumerate(a["channels"]):
        T.check(close(m["rms_channels"][c], s["RMS level dB"], 0.1),
                "%s: ch%d RMS %.4f vs astats %.4f" % (name, c + 1, num(m["rms_channels"][c]),
                                                     s["RMS level dB"]))
        dc, ref = m["dc_channels"][c], s["DC offset"]
        T.check(close(T.db(dc), T.db(ref), 0.1) and np.sign(dc) == np.sign(ref),
                "%s: ch%d DC %+.6f (%.2f dB) vs astats %+.6f (%.2f dB)"
                % (name, c + 1, dc, T.db(dc), ref, T.db(ref)))
    worst = max(abs(s["DC offset"]) for s in a["channels"])
    T.check(close(m["dc_db"], T.db(worst), 0.1),
            "%s: dc_db %.3f vs astats' largest |DC| %.3f dB" % (name, num(m["dc_db"]),
                                                                  T.db(worst)))


def check_numpy(name, path, m, x, fs, columns):
    info = sf.info(path)
    n, ch = x.shape
    T.check(m["rate"] == fs and m["channels"] == ch and m["frames"] == n
            and abs(m["duration"] - n / fs) < 1e-9,
            "%s: rate %s, channels %s, frames %s, duration %.6f (file: %d, %d, %d)"
            % (name, m["rate"], m["channels"], m["frames"], m["duration"], fs, ch, n))
    bits = {"PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32, "DOUBLE": 64}[info.subtype]
    fmt = "%s %s" % (info.format, info.subtype)
    T.check(m["format"] == fmt and m.get("bits") == bits
            and m["float"] == (info.subtype in ("FLOAT", "DOUBLE")),
            "%s: format %r, bits %s, float %s (soundfile: %r)" % (
                name, m["format"], m.get("bits"), m["float"], fmt))
    # clipping
    clip = np.abs(x) >= CLIP
    runs = sum(runs_of_two(clip[:, c]) for c in range(ch))
    T.check(m["clipped"] == int(clip.sum()) and m["clip_runs"] == runs,
            "%s: clipped %d, runs %d (numpy %d, %d)" % (name, m["clipped"], m["clip_runs"],
                                                       int(clip.sum()), runs))
    # DC, RMS per channel
    mean = x.mean(axis=0)
    T.check(all(abs(m["dc_channels"][c] - mean[c]) < 1e-7 for c in range(ch))
            and abs(m["dc"] - np.max(np.abs(mean))) < 1e-7,
            "%s: DC %s vs numpy %s" % (name, ["%+.7f" % v for v in m["dc_channels"]],
                                      ["%+.7f" % v for v in mean]))
    rms = [T.rms_db(x[:, c]) for c in range(ch)]
    T.check(all(close(m["rms_channels"][c], rms[c], 1e-4) for c in range(ch))
            and close(m["rms"], T.rms_db(x), 1e-4),
            "%s: RMS %.5f %s vs numpy %.5f %s" % (
                name, num(m["rms"]), ["%.5f" % num(v) for v in m["rms_channels"]],
                T.rms_db(x), ["%.5f" % v for v in rms]))
    # correlation
    if ch >= 2:
        L, R = x[:, 0], x[:, 1]
        den = np.sqrt(np.sum(L * L) * np.sum(R * R))
        corr = np.sum(L * R) / den if den > 0 else None
        ok = (m.get("correlation") is None) if corr is None else \
            abs(num(m.get("correlation")) - corr) < 1e-6
        T.check(ok, "%s: correlation %s vs numpy %s" % (name, m.get("correlation"), corr))
    else:
        T.check(m.get("correlation") is None and m.get("mono_drop") is None,
                "%s (mono): correlation %s and mono_drop %s are nil"
                % (name, m.get("correlation"), m.get("mono_drop")))
    # silence at the edges
    loud = np.flatnonzero(np.any(np.abs(x) > SILENCE, axis=1))
    if len(loud):
        head, tail = loud[0] / fs, (n - 1 - loud[-1]) / fs
    else:
        head = tail = n / fs
    T.check(abs(m["head_silence"] - head) < 1e-9 and abs(m["tail_silence"] - tail) < 1e-9
            and m["silence_threshold"] == -60,
            "%s: head silence %.5f s, tail %.5f s (numpy %.5f, %.5f; threshold %s)"
            % (name, m["head_silence"], m["tail_silence"], head, tail, m["silence_threshold"]))
    # waveform columns
    wmin, wmax = np.array(m["wave"]["min"], float), np.array(m["wave"]["max"], float)
    rmin, rmax = np.zeros(columns), np.zeros(columns)
    for k in range(columns):
        a, b = k * n // columns, (k + 1) * n // columns
        if b > a:
            rmin[k], rmax[k] = x[a:b].min(), x[a:b].max()
    err = max(np.max(np.abs(wmin - rmin)), np.max(np.abs(wmax - rmax))) \
        if len(wmin) == columns and len(wmax) == columns else np.inf
    T.check(err <= 0.5e-4 + 1e-7,
            "%s: %d waveform columns (got %d/%d), largest difference %.2e (4-decimal rounding)"
            % (name, columns, len(wmin), len(wmax), err))


def check_spectrum(name, m, x, fs):
    sp = m["spectrum"]
    freq = np.array(sp["freq"], float)
    db = np.array([-np.inf if v is None else v for v in sp["db"]], float)
    nfft = 1 << int(round(np.log2(fs * 0.17)))
    hi = min(20000, 0.45 * fs)
    T.check(sp.get("fft_size") == nfft and abs(freq[0] - 20) < 1e-9
            and abs(freq[-1] - hi) < 1e-6 and np.allclose(np.diff(np.log(freq)),
                                                          np.log(hi / 20) / (len(freq) - 1)),
            "%s: spectrum %d points log-spaced %.1f .. %.1f Hz, FFT %s (expected %d, to %.1f)"
            % (name, len(freq), freq[0], freq[-1], sp.get("fft_size"), nfft, hi))
    ref = ref_spectrum(x, fs, freq, nfft)
    # bands within 100 dB of the strongest: the analyser's float FFT rounds
    # at about 1e-7 of the largest component (-140 dB in power), which shows
    # in the one-bin bands far down a pure sine's skirts
    fin = np.isfinite(ref) & (ref > np.max(ref) - 100)
    err = np.max(np.abs(db[fin] - ref[fin])) if fin.any() else 0
    worst = int(np.argmax(np.where(fin, np.abs(db - ref), -1)))
    T.check(err < 0.05,
            "%s: spectrum vs scipy welch (same window, band sums): %d bands within 100 dB "
            "of the top, largest difference %.4f dB (at %.0f Hz, %.1f dB)"
            % (name, int(fin.sum()), err, freq[worst], ref[worst]))
    return freq, db


def main():
    d = T.tmpdir()
    files = make_files(d)
    columns = {"music48.wav": 400, "music44.wav": 123, "edges.wav": 16}
    jobs = {k: (p, {"columns": columns[k]} if k in columns else None) for k, p in files.items()}
    jobs["music48_full"] = (files["music48.wav"], {"points": 1000000})
    jobs["music48_dec"] = (files["music48.wav"], {"points": 40, "bands": 64})
    res = analyse(jobs)
    data = {k: T.read(p) for k, p in files.items()}

    for name in files:
        m = res[name]
        if "error" in m:
            continue
        x, fs = data[name]
        print("-- %s" % name)
        check_numpy(name, files[name], m, x, fs, columns.get(name, 400))
        if name != "short.wav":
            check_loudness(name, files[name], m, x.shape[1] == 2 and name != "anti.wav")
            check_astats(name, files[name], m, x)
        check_spectrum(name, m, x, fs)

    # mono drop: the brief's figures and the antiphase case
    print("-- mono drop")
    T.check(close(res["same.wav"].get("mono_drop"), 0.0, 0.1),
            "L = R: mono drop %.3f dB (expected 0)" % num(res["same.wav"].get("mono_drop")))
    T.check(close(res["uncorr.wav"].get("mono_drop"), -3.0, 0.3),
            "uncorrelated equal channels: mono drop %.3f dB (expected about -3)"
            % num(res["uncorr.wav"].get("mono_drop")))
    ra = ff_r128(files["anti.wav"], "pan=stereo|c0=0.5*c0+0.5*c1|c1=0.5*c0+0.5*c1")
    T.check(res["anti.wav"].get("mono_drop") is None and ra["I"] <= -70,
            "R = -L: mono drop %s (-inf: the sum is gated out; ffmpeg reads %.1f LUFS)"
            % (res["anti.wav"].get("mono_drop"), ra["I"]))
    T.check(close(res["anti.wav"].get("correlation"), -1.0, 1e-9),
            "R = -L: correlation %s" % res["anti.wav"].get("correlation"))
    T.check(num(res["near_anti.wav"].get("mono_drop")) < -10,
            "R = -0.8 L: mono drop %.2f dB (well below 0)"
            % num(res["near_anti.wav"].get("mono_drop")))

    # the file with silent edges
    e = res["edges.wav"]
    T.check(abs(e["head_silence"] - 1.5) < 0.05 and abs(e["tail_silence"] - 2.0) < 0.05,
            "edges.wav: head %.4f s, tail %.4f s (about 1.5 and 2 s by construction)"
            % (e["head_silence"], e["tail_silence"]))

    # clipping found where it was made
    T.check(res["clipped.wav"]["clipped"] > 100 and res["clipped.wav"]["clip_runs"] > 10
            and res["overs.wav"]["clipped"] > 0 and res["music48.wav"]["clipped"] == 0,
            "clipped.wav: %d clipped samples in %d runs; overs.wav %d; music48.wav %d"
            % (res["clipped.wav"]["clipped"], res["clipped.wav"]["clip_runs"],
               res["overs.wav"]["clipped"], res["music48.wav"]["clipped"]))

    # the sine's band
    print("-- spectrum")
    sp = res["mono.wav"]["spectrum"]
    freq = np.array(sp["freq"])
    db = np.array([-np.inf if v is None else v for v in sp["db"]])
    i = int(np.argmax(db))
    r = (freq[-1] / freq[0]) ** (1 / (len(freq) - 1))
    lo, hi = freq[i] / np.sqrt(r), freq[i] * np.sqrt(r)
    want = T.db(0.5) - 3.0103
    T.check(lo <= 3000 < hi, "3 kHz sine: peak point %.1f Hz, band %.1f .. %.1f Hz"
            % (freq[i], lo, hi))
    T.check(want - 1.8 <= db[i] <= want + 0.1,
            "3 kHz sine at 0.5: band level %.3f dB (full-scale sine -3.01: expected %.2f, "
            "-1.76 at worst when the band holds only the lobe's centre bin)" % (db[i], want))
    sp = res["short.wav"]["spectrum"]
    freq = np.array(sp["freq"])
    db = np.array([-np.inf if v is None else v for v in sp["db"]])
    i = int(np.argmax(db))
    lo, hi = freq[i] / np.sqrt(r), freq[i] * np.sqrt(r)
    T.check(lo * 0.9 <= 1000 < hi * 1.1,
            "50 ms 1 kHz sine (zero-padded): peak point %.1f Hz (band %.1f .. %.1f)"
            % (freq[i], lo, hi))
    s = res["short.wav"]
    T.check(len(s["short_term"]["values"]) == 0 and s.get("integrated") is None
            and s.get("plr") is None and s["frames"] == 2400,
            "short.wav: no short-term values (%d), integrated %s, plr %s (shorter than "
            "100 ms of gating)" % (len(s["short_term"]["values"]), s.get("integrated"),
                                   s.get("plr")))

    # short-term series against ffmpeg, and the decimation
    print("-- short-term loudness")
    full = res["music48_full"]["short_term"]
    v = np.array([-np.inf if y is None else y for y in full["values"]])
    x, fs = data["music48.wav"]
    nsub = (10 * x.shape[0] + 9) // fs
    r = ff_r128(files["music48.wav"])
    S = r["S"]
    k = min(len(v), len(S))
    err = np.max(np.abs(v[30:k] - S[30:k])) if k > 30 else np.inf
    T.check(full["interval"] == 0.1 and len(v) == nsub and err <= 0.1,
            "short-term every 100 ms: %d values (expected %d), interval %s; vs ffmpeg "
            "lavfi.r128.S from 3 s on: largest difference %.4f LU"
            % (len(v), nsub, full["interval"], err))
    T.check(close(np.max(v), res["music48_full"]["short_term_max"], 1e-9),
            "max of the series %.4f = short_term_max %.4f"
            % (np.max(v), num(res["music48_full"]["short_term_max"])))
    dec = res["music48_dec"]["short_term"]
    g = -(-nsub // 40)
    want = [np.max(v[j:j + g]) for j in range(0, nsub, g)]
    got = [-np.inf if y is None else y for y in dec["values"]]
    T.check(len(got) == len(want) <= 40 and abs(dec["interval"] - g * 0.1) < 1e-12
            and np.allclose(got, want, atol=1e-12),
            "points = 40: %d values, interval %.1f s, each the max of %d sub-blocks"
            % (len(got), dec["interval"], g))
    T.check(len(res["music48_dec"]["spectrum"]["freq"]) == 64
            and len(res["music48.wav"]["spectrum"]["freq"]) == 120
            and len(res["music44.wav"]["wave"]["min"]) == 123
            and len(res["mono.wav"]["wave"]["max"]) == 400,
            "options: bands 64 / default 120, columns 123 / default 400")

    # errors
    print("-- errors")
    txt = os.path.join(d, "notes.wav")
    with open(txt, "w") as f:
        f.write("these are my mixing notes, not audio\n" * 20)
    missing = os.path.join(d, "missing.wav")
    for what, call, needle in [
            ("missing file", "core.analyse(%s)" % T.lua_str(missing), "missing.wav"),
            ("text file named .wav", "core.analyse(%s)" % T.lua_str(txt), "notes.wav"),
            ("unknown option", "core.analyse(%s, { colums = 100 })"
             % T.lua_str(files["mono.wav"]), "colums"),
            ("option out of range", "core.analyse(%s, { columns = 8 })"
             % T.lua_str(files["mono.wav"]), "columns")]:
        rc, out, err = T.run_lua("local core = require 'moonbus.core'\n" + call + "\n")
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        T.check(rc == 1 and len(lines) == 1 and lines[0].startswith("moonbus:")
                and needle in lines[0] and "analyse" in lines[0],
                "%s: exit %d, stderr %r" % (what, rc, err.strip()[:300]))

    # speed: 5 minutes of 48 kHz stereo 24-bit
    print("-- speed")
    rng = np.random.default_rng(5)
    long_path = os.path.join(d, "long.wav")
    sf.write(long_path, music(rng, 48000, 300, dc=(0.001, 0)), 48000, subtype="PCM_24")
    base = "local core = require 'moonbus.core'\n"
    script = base + "local a = core.analyse(%s)\nemit('I', a.integrated)\n" % T.lua_str(long_path)

    def wall(s):
        t0 = time.perf_counter()
        rc, out, err = T.run_lua(s)
        return time.perf_counter() - t0, rc, err

    best, idle = np.inf, np.inf
    for _ in range(3):
        t, rc, err = wall(script)
        if rc != 0:
            T.check(False, "long.wav: exit %d: %s" % (rc, err.strip()))
            break
        best = min(best, t)
        idle = min(idle, wall(base)[0])
    took = best - idle
    T.note("5 min 48 kHz stereo 24-bit analysed in %.3f s of wall time (start-up %.3f s "
           "subtracted)%s" % (took, idle, " (sanitizer build)" if SANITIZED else ""))
    T.finish()


if __name__ == "__main__":
    main()
