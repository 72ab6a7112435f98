"""`moonbus album` (scripts/album.lua, lua/moonbus/album.lua M.make): the
CD image, its CUE sheet and TOC, the digital track files and the QC
report, measured with tools that are not moonbus (cuetools, shntool,
cdrdao, ffmpeg's ebur128, numpy).

Runs (sources made here with T.music, 8-15 s each):

 A. album mode, digital 44100/16 (so the track files come from the same
    render as album.wav), target spotify (-14 LUFS, -1 dBTP), 4 tracks at
    -30, -24, -20, -26 dBFS RMS (well apart, none clipping), gaps of 2 s
    before track 1, 1.31 s (98.25 -> 98 frames) before track 2, none
    before track 3 and 0.8 s (60 frames) before track 4, a title with
    / : ? < * | > in it.
    1. cueprint reads the album and track titles, performers and ISRCs
       (ISO 3901: upper case, no hyphens) back; the CUE names FILE
       "album.wav" WAVE and CATALOG 0036000291452 (the UPC-A as 13
       digits); INDEX 00 exactly for the tracks with a gap; cuebreakpoints
       gives the INDEX 01 of tracks 2..4; cdrdao show-toc reads the TOC
       (catalog, PREGAP, START, END of every track, ISRCs).
    2. Every INDEX 01 is where the spec's time line puts it (frames of 588
       samples; a gap starts at the frame after the previous track's end,
       rounded up; gaps to the nearest frame); in album.wav each track's
       first non-zero sample is at its INDEX 01 * 588 and the runs of
       digital silence between tracks measure the requested gaps to the
       frame.
    3. shnsplit at the CUE's INDEX 01s (-f album.cue) and at cuebreakpoints'
       points gives back DIR/tracks/NN Title.wav sample for sample.
    4. ffmpeg: track_i - track_1 integrated loudness within 0.2 LU of the
       sources' differences; album.wav within ±0.2 LU of -14; true peaks
       <= ceiling + 0.1.
 B. track mode (`--mode track --lufs -16 --ceiling -2` on the command line,
    default DIR beside the album file), 48 kHz sources, digital 48000/24:
    every track file within ±0.2 LU of -16 (ffmpeg), every file's true
    peak <= -1.9 dBTP; track files are 24-bit 48 kHz, from INDEX 01 to the
    next INDEX 01 (640-sample frames at 48 kHz).
 C. vinyl, album mode, default bits (24) and rate (the first track's):
    plain music (T.music low-passed at 4 kHz, its side high-passed
    at 300 Hz: a mono low end, as vinyl mixes have),, a track with out-of-phase 50 Hz bass, a track
    with loud 5-10 kHz bursts. Without mono_below the bass track's
    vinyl_side_lf warns, the others pass; the bursts warn vinyl_sibilance
    (a track with nothing above 5 kHz passes it); with mono_below = 150 the
    side below 100 Hz in the track file is >= 20 dB down from the source's
    (after the mastering gain, measured on the mid) and vinyl_side_lf
    passes; report.json vinyl.sides follows sides = { 2, 1 }.
 D. bad inputs, each in its own DIR: a wrong-shape ISRC, a UPC with a
    wrong check digit, a missing track file, a crossfade longer than a
    track: exit 1, one stderr line "moonbus: album: ..." naming the track,
    nothing written.

Every happy run: exit 0, report.json with one job per track (track-NN)
plus "album", every check {name, label, value, unit, expect, verdict}, no
check failing, before/after figures; the album job's integrated loudness
agrees with ffmpeg's within 0.2 LU.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile as sf
from scipy.signal import butter, sosfilt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbtest as T  # noqa: E402

FPS = 75                    # CD frames per second (IEC 60908)
CD = 44100
SPF = CD // FPS             # samples per frame at 44.1 kHz: 588
TOL_LU = 0.2                # the spec's loudness tolerance
TP_TOL = 0.1                # dB over the ceiling (ffmpeg true peak)
BAD_CHARS = '/\\:*?"<>|'


def sh(cmd, cwd, stdin=None):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, input=stdin)
    return p.returncode, p.stdout, p.stderr


def safe_name(title):
    return "".join("-" if (c in BAD_CHARS or ord(c) < 32 or ord(c) == 127) else c for c in title)


def frames_of(seconds):
    """A gap in seconds to the nearest frame (no halves used here)."""
    return int(np.floor(seconds * FPS + 0.5))


def make_music(path, seconds, level, fs, seed):
    """T.music, with a seed whose first and last samples are clearly non-zero
    (so a track's first and last samples mark its place in the image)."""
    for s in range(seed, seed + 50):
        T.music(path, seconds, level_db=level, fs=fs, seed=s)
        x, _ = T.read(path)
        edge = min(np.min(np.abs(x[0])), np.min(np.abs(x[-1])))
        if edge > 0.1 * 10 ** (level / 20):
            return x
    raise RuntimeError("no seed with non-silent edges")


def layout(lengths, gaps, spf):
    """The spec's time line in frames from the source lengths (samples at a
    rate with `spf` samples per frame): per track index0 (None without a
    gap), index1, end (sample after its audio); the image's frames."""
    rows = []
    for i, (n, g) in enumerate(zip(lengths, gaps)):
        gf = frames_of(g or 0)
        if i == 0:
            i1 = gf
            i0 = 0 if gf > 0 else None
        else:
            after = -(-rows[-1]["end"] // spf)   # ceil: the frame after the previous end
            i0 = after if gf > 0 else None
            i1 = after + gf
        rows.append(dict(index0=i0, index1=i1, end=i1 * spf + n, gap=gf, gap_s=g or 0))
    return rows, -(-rows[-1]["end"] // spf)


def bp_frames(s):
    """cuebreakpoints' m:ss.ff (ff in CD frames) to frames."""
    m, rest = s.split(":")
    sec, f = rest.split(".")
    return (int(m) * 60 + int(sec)) * FPS + int(f)


def msf_frames(s):
    m, sec, f = (int(v) for v in s.split(":"))
    return (m * 60 + sec) * FPS + f


def parse_cue(text):
    """Album-level and per-track fields of a CUE sheet (INDEX in frames)."""
    album, tracks, cur = {}, [], None
    for line in text.splitlines():
        w = line.strip()
        m = re.match(r'^(\w+)\s+(.*)$', w)
        if not m:
            continue
        key, rest = m.group(1).upper(), m.group(2)
        if key == "TRACK":
            cur = {"number": int(rest.split()[0]), "type": rest.split()[1]}
            tracks.append(cur)
            continue
        tgt = cur if cur is not None else album
        if key == "INDEX":
            n, pos = rest.split()
            tgt["index%02d" % int(n)] = msf_frames(pos)
        else:
            tgt[key] = rest.strip().strip('"') if key != "FILE" else rest
    return album, tracks


def load_report(d):
    path = os.path.join(d, "qc", "report.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        T.check(False, "%s: %s" % (path, e))
        return None


def check_run(what, res, n_tracks):
    """Exit 0, and report.json: one job per track + album, the checks'
    shape, no check failing; returns (report, jobs by id)."""
    rc, out, err, secs, d = res
    T.note("%s: moonbus album exit %d in %.1f s" % (what, rc, secs))
    rep = load_report(d) if os.path.isdir(os.path.join(d, "qc")) else None
    failing = []
    if rep:
        for j in rep.get("jobs", []):
            failing += ["%s %s=%s (%s)" % (j.get("id"), c.get("name"), c.get("value"), c.get("expect"))
                        for c in j.get("checks", []) if c.get("verdict") == "fail"]
    T.check(rc == 0, "%s: exit %d%s%s" % (what, rc, "" if rc == 0 else ": " + err.strip()[-600:],
                                           "; failing QC checks: %s" % failing if failing else ""))
    T.check(os.path.isfile(os.path.join(d, "qc", "report.html")) and
            open(os.path.join(d, "qc", "report.html"), errors="replace").read(4096).lstrip().lower()
            .startswith(("<!doctype html", "<html")),
            "%s: qc/report.html is an HTML page" % what)
    if not rep:
        T.check(False, "%s: qc/report.json missing" % what)
        return None, {}
    jobs = {j.get("id"): j for j in rep.get("jobs", [])}
    want = ["track-%02d" % (i + 1) for i in range(n_tracks)] + ["album"]
    T.check(isinstance(rep.get("summary"), dict) and sorted(jobs) == sorted(want)
            and len(rep.get("jobs", [])) == len(want),
            "%s: report.json has a summary and jobs %s (expected %s)" % (what, sorted(jobs), sorted(want)))
    shape = []
    for jid, j in jobs.items():
        if j.get("verdict") not in ("pass", "warn", "fail", "error"):
            shape.append("%s verdict %r" % (jid, j.get("verdict")))
        checks = j.get("checks")
        if not isinstance(checks, list) or not checks:
            shape.append("%s has no checks" % jid)
            continue
        for c in checks:
            miss = [k for k in ("name", "label", "value", "unit", "expect", "verdict") if k not in c]
            # a JSON null value may be dropped by the writer; the other keys must be there
            miss = [k for k in miss if k != "value"]
            if miss or c.get("verdict") not in ("pass", "warn", "fail"):
                shape.append("%s check %s: missing %s / verdict %r" % (jid, c.get("name"), miss, c.get("verdict")))
        for side in ("before", "after"):
            fig = j.get(side)
            if not isinstance(fig, dict) or not all(k in fig for k in ("integrated", "true_peak", "lra")):
                shape.append("%s.%s lacks integrated/true_peak/lra" % (jid, side))
    T.check(not shape, "%s: every job has a verdict, checks {name, label, value, unit, expect, verdict} and "
            "before/after figures%s" % (what, ": " + "; ".join(shape[:6]) if shape else ""))
    T.check(not failing, "%s: no QC check fails%s" % (what, ": %s" % failing if failing else ""))
    hidden = [os.path.relpath(os.path.join(root, f), d) for root, dirs, files in os.walk(d)
              for f in files + dirs if f.startswith(".")]
    T.check(not hidden, "%s: no hidden work files left in DIR: %s" % (what, hidden or "none"))
    return rep, jobs


def report_vs_ffmpeg(what, jobs, album_wav):
    r = T.ffmpeg_r128(album_wav)
    a = (jobs.get("album") or {}).get("after") or {}
    got = a.get("integrated")
    T.check(r and isinstance(got, (int, float)) and abs(got - r["I"]) <= TOL_LU,
            "%s: report's album integrated %s LUFS, ffmpeg %s (±%.1f)"
            % (what, "%.2f" % got if isinstance(got, (int, float)) else got, r and "%.2f" % r["I"], TOL_LU))


def album_lua(d, name, text):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def run_album(args, cwd, outdir):
    import time
    t0 = time.time()
    rc, out, err = T.run(["album"] + args, cwd=cwd)
    return rc, out, err, time.time() - t0, outdir


def check_cdimage(what, d, rows, frames, meta, tracks_meta, catalog):
    """The CD image: format, CUE (cueprint, cuebreakpoints, own parse), TOC
    (cdrdao show-toc). rows/frames: the expected layout at 44.1 kHz."""
    img_path = os.path.join(d, "album.wav")
    if not T.check(os.path.isfile(img_path), "%s: album.wav written" % what):
        return None
    info = sf.info(img_path)
    img, _ = sf.read(img_path, dtype="int16", always_2d=True)
    T.check(info.samplerate == CD and info.subtype == "PCM_16" and info.channels == 2
            and len(img) == frames * SPF,
            "%s: album.wav %d Hz %s %d ch, %d samples = %.2f frames (expected %d Hz PCM_16, %d frames)"
            % (what, info.samplerate, info.subtype, info.channels, len(img), len(img) / SPF, CD, frames))
    cue_path = os.path.join(d, "album.cue")
    if not T.check(os.path.isfile(cue_path), "%s: album.cue written" % what):
        return img
    cue = open(cue_path).read()
    for line in cue.splitlines():
        T.note("cue| " + line)
    album, ctracks = parse_cue(cue)
    T.check(album.get("FILE") == '"album.wav" WAVE', "%s: CUE FILE %r" % (what, album.get("FILE")))
    T.check(album.get("CATALOG") == catalog, "%s: CUE CATALOG %s (expected %s)" % (what, album.get("CATALOG"), catalog))
    got = [(t.get("index00"), t.get("index01")) for t in ctracks]
    want = [(r["index0"], r["index1"]) for r in rows]
    T.check(got == want, "%s: CUE (INDEX 00, INDEX 01) in frames %s, expected %s" % (what, got, want))

    rc, out, err = sh(["cueprint", "-d", "%T\\t%P\\t%N\\n", "-t", "%n\\t%t\\t%p\\t%i\\n", "album.cue"], d)
    lines = out.splitlines()
    T.check(rc == 0 and lines and lines[0] == "%s\t%s\t%d" % (meta[0], meta[1], len(rows)),
            "%s: cueprint album %r (rc %d %s)" % (what, lines[0] if lines else None, rc, err.strip()))
    for k, (title, perf, isrc) in enumerate(tracks_meta):
        want_l = "%d\t%s\t%s\t%s" % (k + 1, title, perf, isrc)
        got_l = lines[k + 1] if k + 1 < len(lines) else None
        T.check(got_l == want_l, "%s: cueprint track %d %r, expected %r" % (what, k + 1, got_l, want_l))
    rc, out, err = sh(["cuebreakpoints", "album.cue"], d)
    got = [bp_frames(s) for s in out.split()] if rc == 0 else None
    T.check(got == [r["index1"] for r in rows[1:]],
            "%s: cuebreakpoints %s, expected INDEX 01 of tracks 2.. %s (rc %d)"
            % (what, got, [r["index1"] for r in rows[1:]], rc))

    toc_path = os.path.join(d, "album.toc")
    if T.check(os.path.isfile(toc_path), "%s: album.toc written" % what):
        rc, out, err = sh(["cdrdao", "show-toc", "album.toc"], d)
        T.check(rc == 0, "%s: cdrdao show-toc exit %d%s" % (what, rc, "" if rc == 0 else ": " + err.strip()[-300:]))
        m = re.search(r"CATALOG NUMBER:\s*(\d+)", out)
        T.check(m and m.group(1) == catalog, "%s: cdrdao catalog %s, expected %s" % (what, m and m.group(1), catalog))
        blocks = re.split(r"^TRACK\s+", out, flags=re.M)[1:]
        T.check(len(blocks) == len(rows), "%s: cdrdao: %d tracks, expected %d" % (what, len(blocks), len(rows)))
        for k, b in enumerate(blocks[:len(rows)]):
            def field(name):
                mm = re.search(r"^\s*%s\s+\S+\(\s*(\d+)\)" % name, b, flags=re.M)
                return int(mm.group(1)) if mm else None
            mi = re.search(r"^\s*ISRC\s+(.+)$", b, flags=re.M)
            isrc = mi.group(1).replace(" ", "") if mi else ""
            nxt = rows[k + 1] if k + 1 < len(rows) else None
            end = (nxt["index0"] if nxt["index0"] is not None else nxt["index1"]) if nxt else frames
            got = (field("PREGAP") or 0, field("START"), field("END"), isrc)
            want = (rows[k]["index1"] - (rows[k]["index0"] if rows[k]["index0"] is not None else rows[k]["index1"]),
                    rows[k]["index1"], end, tracks_meta[k][2])
            T.check(got == want, "%s: cdrdao track %d (pregap, start, end, ISRC) %s, expected %s"
                    % (what, k + 1, got, want))
        rc, out, err = sh(["cdrdao", "toc-info", "album.toc"], d)
        m = re.search(r"(\d+) tracks, length ([\d:]+), (\d+) blocks", out)
        T.check(rc == 0 and m and int(m.group(1)) == len(rows) and int(m.group(3)) == frames,
                "%s: cdrdao toc-info %s (rc %d), expected %d tracks, %d blocks"
                % (what, m and m.group(0), rc, len(rows), frames))
    return img


def check_placement(what, img, rows):
    """In album.wav, per track: its audio starts at its INDEX 01 (the first
    sample above 4 LSB, well over any dither, is at INDEX 01 * 588) and the
    previous track's audio ends where its source does (its last sample above
    4 LSB in the same frame as the expected end); the gap before it is a run
    of digital silence from the frame after the previous track's end,
    rounded up, to INDEX 01: the requested gap to the frame."""
    loud = np.any(np.abs(img.astype(np.int32)) > 4, axis=1)
    nz = np.any(img != 0, axis=1)
    for k, r in enumerate(rows):
        s = r["index1"] * SPF
        e = rows[k - 1]["end"] if k > 0 else 0
        gap_from = -(-e // SPF) * SPF           # frame after the previous end, rounded up
        lo, hi = max(0, e - SPF), min(len(img), s + SPF)
        idx = np.nonzero(loud[lo:hi])[0] + lo
        if k == 0:
            la, on = 0, (int(idx[0]) if len(idx) else None)
        else:
            # the quiet stretch: the widest step between loud samples in the window
            steps = np.diff(idx) if len(idx) > 1 else np.array([0])
            j = int(np.argmax(steps)) if len(idx) > 1 else 0
            la, on = (int(idx[j]) + 1, int(idx[j + 1])) if len(idx) > 1 else (None, None)
        where = "track 1's pregap" if k == 0 else "after track %d" % k
        if k > 0 and (la is None or on - la < 2):
            la = on = None
        if k > 0 and r["gap"] == 0:
            # no gap: the partial frame after the previous track is all there
            # is between them; the placement shows in the CUE and the split
            T.note("%s: track %d follows track %d without a gap (quiet stretch %s..%s, expected end %d, "
                   "INDEX 01 at %d)" % (what, k + 1, k, la, on, e, s))
            continue
        T.check(on == s, "%s: track %d's audio starts at sample %s = frame %s (INDEX 01 %d)"
                % (what, k + 1, on, "%.2f" % (on / SPF) if on is not None else "-", r["index1"]))
        if k > 0:
            T.check(la is not None and -(-la // SPF) * SPF == gap_from,
                    "%s: track %d's audio (above 4 LSB) ends at sample %s, %s samples after its source's end "
                    "(%d): %s frame %d, where the gap starts"
                    % (what, k, la, la - e if la is not None else "-", e,
                       "within" if la is not None and la <= gap_from else "past", gap_from // SPF))
        # digital silence: the run of zero samples that ends at INDEX 01
        b = s
        a = b
        while a > 0 and not nz[a - 1]:
            a -= 1
        run_from = -(-a // SPF) * SPF
        meas = (b - run_from) / SPF
        gap_nz = int(np.count_nonzero(nz[gap_from:s]))
        T.check(meas == r["gap"] and run_from == gap_from and gap_nz == 0,
                "%s: %s: the gap of %d frames (%.2f s requested) is digital silence: %d non-zero samples "
                "in frames %d..%d; the silent run before INDEX 01 measures %.2f frames from frame %d"
                % (what, where, r["gap"], r["gap_s"], gap_nz,
                   gap_from // SPF, r["index1"], meas, run_from // SPF))


def check_split(what, d, img, rows, frames, names):
    """shnsplit at the CUE's INDEX 01s and at cuebreakpoints' points =
    DIR/tracks/NN Title.wav, sample for sample."""
    tracks = []
    for n in names:
        p = os.path.join(d, "tracks", n)
        tracks.append(sf.read(p, dtype="int16", always_2d=True)[0] if os.path.isfile(p) else None)
    for sub, cmd, bps in (("cue", ["shnsplit", "-q", "-f", "album.cue", "-o", "wav", "-d", "split-cue", "album.wav"], False),
                          ("bp", ["shnsplit", "-q", "-o", "wav", "-d", "split-bp", "album.wav"], True)):
        sd = os.path.join(d, "split-" + sub)
        os.mkdir(sd)
        stdin = sh(["cuebreakpoints", "album.cue"], d)[1] if bps else None
        rc, out, err = sh(cmd, d, stdin=stdin)
        pieces = sorted(n for n in os.listdir(sd) if n.endswith(".wav"))
        T.check(rc == 0, "%s: shnsplit (%s) exit %d %s, %d pieces" % (what, sub, rc, err.strip()[-200:], len(pieces)))
        if sub == "cue":   # piece 00 is track 1's pregap
            pieces = pieces[1:] if rows[0]["index1"] > 0 else pieces
            skip = [0] * len(rows)
        else:              # piece 1 starts at 0, with track 1's pregap
            skip = [rows[0]["index1"] * SPF] + [0] * (len(rows) - 1)
        T.check(len(pieces) == len(rows), "%s: shnsplit (%s): %d track pieces %s" % (what, sub, len(pieces), pieces))
        for k, (p, t) in enumerate(zip(pieces, tracks)):
            y = sf.read(os.path.join(sd, p), dtype="int16", always_2d=True)[0][skip[k]:]
            same = t is not None and y.shape == t.shape and np.array_equal(y, t)
            diff = ""
            if not same and t is not None:
                m = min(len(y), len(t))
                dif = np.nonzero(np.any(y[:m] != t[:m], axis=1))[0]
                diff = " (%d vs %d samples, %d differ in the common part, first at %s)" % (
                    len(y), len(t), len(dif), dif[0] if len(dif) else "-")
            T.check(same, "%s: shnsplit (%s) piece %s = tracks/%s sample for sample%s"
                    % (what, sub, p, names[k], diff))


def main():
    for tool, pkg in (("cueprint", "cuetools"), ("shnsplit", "shntool"), ("cdrdao", "cdrdao"),
                      ("ffmpeg", "ffmpeg")):
        if not T.check(shutil.which(tool) is not None, "%s is installed (Debian package %s)" % (tool, pkg)):
            T.finish()
    d = T.tmpdir()

    # ---- sources ---------------------------------------------------------
    # A: album mode at 44.1 kHz
    A_TR = [  # file, title, performer (None: album's), isrc as given, gap, level, seconds
        ("a1.wav", "One", None, "GB-XXX-26-00001", 2, -30, 9.37),
        ("a2.wav", "Left/Right: Who? <*|>", "Guest Star", "gbxxx2600002", 1.31, -24, 10.51),
        ("a3.wav", "Three", None, None, None, -20, 8.77),
        ("a4.wav", "Four", None, "US-S1Z-26-00104", 0.8, -26, 9.9),
    ]
    A_src = []
    for k, (f, title, perf, isrc, gap, lv, secs) in enumerate(A_TR):
        A_src.append(make_music(os.path.join(d, f), secs, lv, CD, 10 * k + 1))

    def lua_tracks(trs):
        out = []
        for f, title, perf, isrc, gap, *rest in trs:
            fields = ["file = %s" % T.lua_str(f), "title = %s" % T.lua_str(title)]
            if perf:
                fields.append("performer = %s" % T.lua_str(perf))
            if isrc:
                fields.append("isrc = %s" % T.lua_str(isrc))
            if gap:
                fields.append("gap = %s" % gap)
            out.append("    { %s }," % ", ".join(fields))
        return "\n".join(out)

    A_LUA = ('return { title = "Night Drive", performer = "The Band", upc = "036000291452",\n'
             '  target = "spotify", mode = "album", bits = 16, rate = 44100,\n'
             '  tracks = {\n%s\n  } }\n' % lua_tracks(A_TR))
    album_lua(d, "night.lua", A_LUA)
    A_out = os.path.join(d, "out-a")

    # B: track mode at 48 kHz (command-line mode, loudness and ceiling)
    B_TR = [("b1.wav", "Alpha", None, None, None, -30, 9.13),
            ("b2.wav", "Beta", None, None, 1, -20, 10.4),
            ("b3.wav", "Gamma", None, None, 0.5, -25, 8.6)]
    B_src = []
    for k, (f, title, perf, isrc, gap, lv, secs) in enumerate(B_TR):
        B_src.append(make_music(os.path.join(d, f), secs, lv, 48000, 10 * k + 5))
    B_LUA = ('return { title = "Tracks", performer = "The Band", target = "spotify", bits = 24,\n'
             '  tracks = {\n%s\n  } }\n' % lua_tracks(B_TR))
    album_lua(d, "trackmode.lua", B_LUA)
    B_out = os.path.join(d, "trackmode")   # the default DIR: the album file's stem, beside it
    B_LUFS, B_CEIL = -16.0, -2.0

    # C: vinyl (44.1 kHz sources, default bits and rate)
    lp = butter(4, 4000 / (CD / 2), output="sos")

    hp_side = butter(4, 300 / (CD / 2), "high", output="sos")

    def dark(path, secs, seed, level=-26):
        """T.music made a plain vinyl-ready mix: nothing above 5 kHz (4 kHz
        low-pass) and a mono low end (its side high-passed at 300 Hz; T.music
        itself has partly uncorrelated noise down to 60 Hz, a side only ~5 dB
        under the mid in the bass, which a vinyl check rightly flags)."""
        x = make_music(path, secs, level, CD, seed)
        y = sosfilt(lp, x, axis=0)
        mid, side = (y[:, 0] + y[:, 1]) / 2, sosfilt(hp_side, (y[:, 0] - y[:, 1]) / 2)
        y = np.stack([mid + side, mid - side], axis=1)
        return y * (10 ** (level / 20) / np.sqrt(np.mean(y ** 2)))

    c1 = dark(os.path.join(d, "v1.wav"), 10, 31)
    T.write(os.path.join(d, "v1.wav"), c1, CD, subtype="PCM_24")
    c2 = dark(os.path.join(d, "v2.wav"), 10, 41)
    t = np.arange(len(c2)) / CD
    bass = 10 ** (-6 / 20) * np.sqrt(np.mean(c2 ** 2)) * np.sqrt(2) * np.sin(2 * np.pi * 50 * t)
    c2[:, 0] += bass   # L = +50 Hz sine, R = -50 Hz sine (music RMS - 6 dB)
    c2[:, 1] -= bass
    T.write(os.path.join(d, "v2.wav"), c2, CD, subtype="PCM_24")
    c3 = dark(os.path.join(d, "v3.wav"), 10, 51)
    rng = np.random.default_rng(5)
    hf = sosfilt(butter(4, [5000 / (CD / 2), 10000 / (CD / 2)], "band", output="sos"),
                 rng.standard_normal(len(c3)))
    t = np.arange(len(c3)) / CD
    ph = t % 0.8
    gate = np.where(ph < 0.2, np.sin(np.pi * np.clip(ph / 0.2, 0, 1)) ** 0.25, 0.0)  # 200 ms bursts every 0.8 s
    on = gate > 0.5
    burst = hf * gate
    burst *= np.sqrt(np.mean(c3 ** 2)) / np.sqrt(np.mean(burst[on] ** 2))  # ~0 dB re the music, in a burst
    c3 += burst[:, None]
    T.write(os.path.join(d, "v3.wav"), c3, CD, subtype="PCM_24")
    T.note("vinyl sources: bass track side/mid %.1f dB, bursts %.1f dB re the music in a burst" % (
        T.rms_db((c2[:, 0] - c2[:, 1]) / 2) - T.rms_db((c2[:, 0] + c2[:, 1]) / 2),
        T.rms_db(burst[on]) - T.rms_db(c3 - burst[:, None])))
    C_TR = [("v1.wav", "Plain", None, None, None), ("v2.wav", "Bass", None, None, None),
            ("v3.wav", "Hiss", None, None, None)]
    C_LUA = ('return { title = "Wax", performer = "The Band", target = "spotify",\n'
             '  vinyl = { %s sides = { 2, 1 } },\n'
             '  tracks = {\n%s\n  } }\n')
    album_lua(d, "vinyl1.lua", C_LUA % ("", lua_tracks(C_TR)))
    album_lua(d, "vinyl2.lua", C_LUA % ("mono_below = 150,", lua_tracks(C_TR)))
    C1_out, C2_out = os.path.join(d, "vinyl1"), os.path.join(d, "vinyl2")

    # ---- the runs (two at a time: 2 cores) -------------------------------
    with ThreadPoolExecutor(2) as ex:
        fa = ex.submit(run_album, ["night.lua", "--out", A_out, "-q"], d, A_out)
        fb = ex.submit(run_album, ["trackmode.lua", "--mode", "track", "--lufs", str(B_LUFS),
                                   "--ceiling", str(B_CEIL), "-q"], d, B_out)
        fc1 = ex.submit(run_album, ["vinyl1.lua", "-q"], d, C1_out)
        fc2 = ex.submit(run_album, ["vinyl2.lua", "-q"], d, C2_out)
        resA, resB, resC1, resC2 = fa.result(), fb.result(), fc1.result(), fc2.result()

    # ---- A: album mode, 44.1/16 ------------------------------------------
    T.note("== A: album mode, digital 44100/16")
    repA, jobsA = check_run("A", resA, len(A_TR))
    rowsA, framesA = layout([len(x) for x in A_src], [tr[4] for tr in A_TR], SPF)
    namesA = ["%02d %s.wav" % (k + 1, safe_name(tr[1])) for k, tr in enumerate(A_TR)]
    got_names = sorted(os.listdir(os.path.join(A_out, "tracks"))) if os.path.isdir(os.path.join(A_out, "tracks")) else []
    T.check(got_names == sorted(namesA), "A: track files %s, expected %s" % (got_names, sorted(namesA)))
    tm = [(tr[1], tr[2] or "The Band", (tr[3] or "").upper().replace("-", "")) for tr in A_TR]
    img = check_cdimage("A", A_out, rowsA, framesA, ("Night Drive", "The Band"), tm, "0036000291452")
    if img is not None:
        check_placement("A", img, rowsA)
        for k, n in enumerate(namesA):
            p = os.path.join(A_out, "tracks", n)
            if os.path.isfile(p):
                i = sf.info(p)
                nxt = rowsA[k + 1]["index1"] if k + 1 < len(rowsA) else framesA
                want = (nxt - rowsA[k]["index1"]) * SPF
                T.check(i.samplerate == CD and i.subtype == "PCM_16" and i.frames == want,
                        "A: tracks/%s %d Hz %s, %d samples (INDEX 01 to the next: %d)"
                        % (n, i.samplerate, i.subtype, i.frames, want))
        if all(os.path.isfile(os.path.join(A_out, "tracks", n)) for n in namesA):
            check_split("A", A_out, img, rowsA, framesA, namesA)
        src_I = [T.ffmpeg_r128(os.path.join(d, tr[0]))["I"] for tr in A_TR]
        trk = [T.ffmpeg_r128(os.path.join(A_out, "tracks", n)) for n in namesA]
        for k in range(1, len(A_TR)):
            if trk[k] and trk[0]:
                ds, dt = src_I[k] - src_I[0], trk[k]["I"] - trk[0]["I"]
                T.check(abs(dt - ds) <= TOL_LU,
                        "A: track %d - track 1: %+.2f LU in the files, %+.2f LU in the sources (diff %+.2f, ±%.1f)"
                        % (k + 1, dt, ds, dt - ds, TOL_LU))
        for k, r in enumerate(trk):
            T.note("A: track %d: source %.2f LUFS -> file %.2f LUFS, TP %.2f dBTP"
                   % (k + 1, src_I[k], r["I"] if r else float("nan"), r["TP"] if r else float("nan")))
        ra = T.ffmpeg_r128(os.path.join(A_out, "album.wav"))
        T.check(ra and abs(ra["I"] + 14) <= TOL_LU,
                "A: album.wav integrated %.2f LUFS (target -14 ±%.1f), LRA %.1f" % (ra["I"], TOL_LU, ra["LRA"]))
        peaks = [("album.wav", ra["TP"])] + [(n, r["TP"]) for n, r in zip(namesA, trk) if r]
        T.check(all(p <= -1 + TP_TOL for _, p in peaks),
                "A: true peaks <= -0.9 dBTP (ceiling -1 + 0.1): %s" % ", ".join("%s %.2f" % q for q in peaks))
        if jobsA:
            report_vs_ffmpeg("A", jobsA, os.path.join(A_out, "album.wav"))

    # ---- B: track mode, 48/24 ----------------------------------------------
    T.note("== B: track mode, digital 48000/24, --lufs %g --ceiling %g, default DIR" % (B_LUFS, B_CEIL))
    repB, jobsB = check_run("B", resB, len(B_TR))
    rowsB48, framesB48 = layout([len(x) for x in B_src], [tr[4] for tr in B_TR], 640)
    namesB = ["%02d %s.wav" % (k + 1, safe_name(tr[1])) for k, tr in enumerate(B_TR)]
    peaks = []
    for k, n in enumerate(namesB):
        p = os.path.join(B_out, "tracks", n)
        if not T.check(os.path.isfile(p), "B: tracks/%s written" % n):
            continue
        i = sf.info(p)
        nxt = rowsB48[k + 1]["index1"] if k + 1 < len(rowsB48) else None
        want = [(nxt - rowsB48[k]["index1"]) * 640] if nxt is not None else \
            [len(B_src[k]), (framesB48 - rowsB48[k]["index1"]) * 640]
        T.check(i.samplerate == 48000 and i.subtype == "PCM_24" and i.frames in want,
                "B: tracks/%s %d Hz %s, %d samples (expected 48000 PCM_24, %s)" % (n, i.samplerate, i.subtype, i.frames,
                                                                                     " or ".join(map(str, want))))
        r = T.ffmpeg_r128(p)
        T.check(r and abs(r["I"] - B_LUFS) <= TOL_LU,
                "B: tracks/%s integrated %.2f LUFS (target %g ±%.1f; source %.2f)"
                % (n, r["I"], B_LUFS, TOL_LU, T.ffmpeg_r128(os.path.join(d, B_TR[k][0]))["I"]))
        peaks.append((n, r["TP"]))
    if os.path.isfile(os.path.join(B_out, "album.wav")):
        rowsB, framesB = layout([int(round(len(x) * CD / 48000)) for x in B_src], [tr[4] for tr in B_TR], SPF)
        info = sf.info(os.path.join(B_out, "album.wav"))
        T.check(info.samplerate == CD and info.subtype == "PCM_16" and info.frames % SPF == 0,
                "B: album.wav %d Hz %s, %d samples = %.2f frames" % (info.samplerate, info.subtype, info.frames,
                                                                     info.frames / SPF))
        _, ct = parse_cue(open(os.path.join(B_out, "album.cue")).read()) if os.path.isfile(
            os.path.join(B_out, "album.cue")) else ({}, [])
        got = [t.get("index01") for t in ct]
        T.check(got == [r["index1"] for r in rowsB48],
                "B: CUE INDEX 01 %s, expected %s" % (got, [r["index1"] for r in rowsB48]))
        rb = T.ffmpeg_r128(os.path.join(B_out, "album.wav"))
        peaks.append(("album.wav", rb["TP"]))
        T.note("B: album.wav %.2f LUFS" % rb["I"])
        if jobsB:
            report_vs_ffmpeg("B", jobsB, os.path.join(B_out, "album.wav"))
    else:
        T.check(False, "B: album.wav written")
    T.check(peaks and all(p <= B_CEIL + TP_TOL for _, p in peaks),
            "B: true peaks <= %.1f dBTP (ceiling %g + 0.1): %s" % (B_CEIL + TP_TOL, B_CEIL,
                                                                ", ".join("%s %.2f" % q for q in peaks)))

    # ---- C: vinyl --------------------------------------------------------------
    T.note("== C: vinyl")
    rep1, jobs1 = check_run("C1 (vinyl)", resC1, 3)
    rep2, jobs2 = check_run("C2 (vinyl, mono_below 150)", resC2, 3)

    def vcheck(jobs, k, name):
        for c in (jobs.get("track-%02d" % k) or {}).get("checks", []):
            if c.get("name") == name:
                return c
        return {}

    for jobs, what in ((jobs1, "C1"), (jobs2, "C2")):
        for k in (1, 2, 3):
            for name in ("vinyl_side_lf", "vinyl_sibilance"):
                c = vcheck(jobs, k, name)
                T.note("%s track %d %s: %s %s (%s) -> %s" % (what, k, name, c.get("value"), c.get("unit"),
                                                            c.get("expect"), c.get("verdict")))
                T.check(c.get("verdict") in ("pass", "warn"),
                        "%s track %d has a %s check, verdict pass or warn: %r" % (what, k, name, c.get("verdict")))
    T.check(vcheck(jobs1, 2, "vinyl_side_lf").get("verdict") == "warn",
            "C1: out-of-phase 50 Hz bass, no mono_below: vinyl_side_lf warns (%s)"
            % vcheck(jobs1, 2, "vinyl_side_lf").get("verdict"))
    T.check(all(vcheck(jobs1, k, "vinyl_side_lf").get("verdict") == "pass" for k in (1, 3)),
            "C1: plain music tracks 1 and 3: vinyl_side_lf passes (%s, %s)"
            % (vcheck(jobs1, 1, "vinyl_side_lf").get("verdict"), vcheck(jobs1, 3, "vinyl_side_lf").get("verdict")))
    T.check(vcheck(jobs1, 3, "vinyl_sibilance").get("verdict") == "warn",
            "C1: 5-10 kHz bursts at ~0 dB re the music: vinyl_sibilance warns (%s)"
            % vcheck(jobs1, 3, "vinyl_sibilance").get("verdict"))
    T.check(vcheck(jobs1, 1, "vinyl_sibilance").get("verdict") == "pass",
            "C1: music with nothing above 5 kHz (4 kHz low-pass): vinyl_sibilance passes (%s)"
            % vcheck(jobs1, 1, "vinyl_sibilance").get("verdict"))
    T.check(vcheck(jobs2, 2, "vinyl_side_lf").get("verdict") == "pass",
            "C2: the bass track with mono_below = 150: vinyl_side_lf passes (%s)"
            % vcheck(jobs2, 2, "vinyl_side_lf").get("verdict"))

    def bands(x, fs):
        """Mean power of the side below 100 Hz and of the mid 200-4000 Hz."""
        side, mid = (x[:, 0] - x[:, 1]) / 2, (x[:, 0] + x[:, 1]) / 2
        f = np.fft.rfftfreq(len(x), 1 / fs)
        S, M = np.abs(np.fft.rfft(side)) ** 2, np.abs(np.fft.rfft(mid)) ** 2
        n2 = float(len(x)) ** 2
        return (10 * np.log10(np.sum(S[(f > 0) & (f < 100)]) / n2),
                10 * np.log10(np.sum(M[(f >= 200) & (f <= 4000)]) / n2))

    src_s, src_m = bands(c2, CD)
    for out_dir, what in ((C1_out, "C1"), (C2_out, "C2")):
        p = os.path.join(out_dir, "tracks", "02 Bass.wav")
        if not T.check(os.path.isfile(p), "%s: tracks/02 Bass.wav written" % what):
            continue
        i = sf.info(p)
        T.check(i.samplerate == CD and i.subtype == "PCM_24",
                "%s: default digital format: %d Hz %s (the first track's rate, 24-bit)" % (what, i.samplerate, i.subtype))
        y, fs = T.read(p)
        s, m = bands(y, fs)
        gain = m - src_m
        red = src_s - (s - gain)
        T.note("%s: bass track side < 100 Hz %.1f dB (source %.1f), mid 200-4000 Hz gain %+.2f dB: "
               "side bass down %.1f dB relative" % (what, s, src_s, gain, red))
        if what == "C2":
            T.check(red >= 20, "C2: mono_below = 150: side below 100 Hz %.1f dB down from the source's "
                    "(after the %+.2f dB mastering gain; >= 20)" % (red, gain))
    for rep, what in ((rep1, "C1"), (rep2, "C2")):
        sides = ((rep or {}).get("vinyl") or {}).get("sides")
        ok = isinstance(sides, list) and len(sides) == 2
        if ok:
            T.note("%s: vinyl.sides %s" % (what, json.dumps(sides)))
            durs = [len(x) / CD for x in (c1, c2, c3)]
            wantm = [(durs[0] + durs[1]) / 60, durs[2] / 60]
            for sd, name, trs, mins in zip(sides, ("A", "B"), ([1, 2], [3]), wantm):
                sug = sd.get("suggested")
                ok = ok and sd.get("name") == name and sd.get("tracks") == trs \
                    and isinstance(sd.get("minutes"), (int, float)) and abs(sd["minutes"] - mins) <= 0.05 \
                    and isinstance(sug, list) and all(isinstance(v, int) and 1 <= v <= 3 for v in sug)
        T.check(ok, "%s: report.json vinyl.sides = A [1, 2] (%.2f min), B [3] (%.2f min), with suggested "
                "track numbers: %s" % (what, (len(c1) + len(c2)) / CD / 60, len(c3) / CD / 60,
                                      json.dumps(sides)[:400]))

    # ---- D: bad inputs -----------------------------------------------------------
    T.note("== D: bad inputs")
    bads = [
        ("bad_isrc", A_LUA.replace("GB-XXX-26-00001", "GB-XX-26-00001"), ["track 1 ('One')", "ISRC"]),
        ("bad_upc", A_LUA.replace("036000291452", "036000291453"), ["UPC", "check digit"]),
        ("missing_file", A_LUA.replace('"a3.wav"', '"gone.wav"'), ["track 3 ('Three')", "gone.wav"]),
        ("long_crossfade", A_LUA.replace('title = "Three"', 'title = "Three", crossfade = 9.5'),
         ["track 3 ('Three')", "crossfade"]),
    ]

    def run_bad(item):
        name, text, _ = item
        album_lua(d, name + ".lua", text)
        return run_album([name + ".lua", "-q"], d, os.path.join(d, name))

    with ThreadPoolExecutor(2) as ex:
        results = list(ex.map(run_bad, bads))
    for (name, text, expect), (rc, out, err, secs, od) in zip(bads, results):
        lines = err.strip().splitlines()
        written = []
        if os.path.isdir(od):
            for root, dirs, files in os.walk(od):
                written += [os.path.relpath(os.path.join(root, f), od) for f in files + [x for x in dirs if x.startswith(".")]]
        T.check(rc == 1 and len(lines) == 1 and lines[0].startswith("moonbus: album: ")
                and all(e in lines[0] for e in expect),
                "%s: exit %d, one stderr line naming %s: %r" % (name, rc, expect, err.strip()[:300]))
        T.check(not os.path.exists(os.path.join(od, "album.wav")) and not written,
                "%s: nothing written in %s/: %s" % (name, os.path.basename(od), written or "no files"))

    # ---- E: a failure while rendering (the limiting budget) -------------------
    # Into A's delivered folder: every file stays as it was (same inode,
    # mtime and size), no hidden work file is left; into a new folder: the
    # folder is not left behind.
    T.note("== E: failure while rendering")
    def snapshot(top):
        snap = {}
        for root, dirs, files in os.walk(top):
            for f in files + [x for x in dirs if x.startswith(".")]:
                st = os.stat(os.path.join(root, f))
                snap[os.path.relpath(os.path.join(root, f), top)] = (st.st_ino, st.st_mtime_ns, st.st_size)
        return snap
    E_LUA = A_LUA.replace('target = "spotify",', 'lufs = -4, max_limiting = 0.5,')
    album_lua(d, "loud.lua", E_LUA)
    before = snapshot(A_out)
    for what, od in (("into the delivered folder", A_out), ("into a new folder", os.path.join(d, "out-e"))):
        rc, out, err, secs, _ = run_album(["loud.lua", "--out", od, "-q"], d, od)
        lines = err.strip().splitlines()
        T.check(rc == 1 and len(lines) == 1 and lines[0].startswith("moonbus: album: ") and "limiting" in lines[0],
                "E %s: exit %d, one error line naming the limiting: %r" % (what, rc, err.strip()[:300]))
    after = snapshot(A_out)
    T.check(after == before and len(before) >= 9, "E: the delivered folder is unchanged (%d files, same inode, "
            "mtime and size; added %s, changed %s)" % (len(before), sorted(set(after) - set(before)),
                                                      sorted(k for k in before if after.get(k) != before[k])))
    T.check(not os.path.exists(os.path.join(d, "out-e")), "E: the new folder is not left behind")

    # ---- F: mono and silent tracks, --target over the file's lufs, re-runs ------
    # A mono track plays on both sides of the stereo image (L == R, and
    # the image is stereo); a spacer track of digital silence stays digital
    # silence; --target replaces the file's lufs; a second run delivering
    # fewer tracks into the same folder leaves only its own files.
    T.note("== F: mono, silence, --target, re-run")
    f1 = make_music(os.path.join(d, "f1.wav"), 6, -24, CD, 71)
    mono = make_music(os.path.join(d, "f2s.wav"), 6.5, -24, CD, 72)[:, 0]
    sf.write(os.path.join(d, "f2.wav"), mono, CD, subtype="PCM_24")
    sf.write(os.path.join(d, "f3.wav"), np.zeros((int(4.5 * CD), 2)), CD, subtype="PCM_16")
    make_music(os.path.join(d, "f4.wav"), 6, -22, CD, 74)
    F_LUA = ('return { title = "Mixed", performer = "B", lufs = -18, rate = 44100, bits = 16,\n'
             '  tracks = { { file = "f1.wav", title = "Stereo" }, { file = "f2.wav", title = "Mono", gap = 1 },\n'
             '    { file = "f3.wav", title = "Spacer" }, { file = "f4.wav", title = "After" } } }\n')
    album_lua(d, "mixed.lua", F_LUA)
    F_out = os.path.join(d, "out-f")
    rc, out, err, secs, _ = run_album(["mixed.lua", "--out", F_out, "--target", "-12", "-q"], d, F_out)
    T.check(rc == 0, "F: exit %d %s" % (rc, err.strip()[:300]))
    img, fs = sf.read(os.path.join(F_out, "album.wav"), dtype="int16", always_2d=True)
    T.check(img.shape[1] == 2, "F: album.wav has %d channels (2)" % img.shape[1])
    cue = open(os.path.join(F_out, "album.cue")).read()
    idx = [msf_frames(m) for m in re.findall(r"INDEX 01 (\d\d:\d\d:\d\d)", cue)]
    seg = img[idx[1] * 588:idx[1] * 588 + len(mono)]
    # the same signal on both sides, but for each side's own dither
    # (independent TPDF of +-1 LSB: the sides differ by at most 2 LSB)
    dmax = int(np.max(np.abs(seg[:, 0].astype(int) - seg[:, 1].astype(int))))
    T.check(dmax <= 2 and np.max(np.abs(seg)) > 1000,
            "F: the mono track is the same on both sides: at most %d LSB apart (<= 2, the dither)" % dmax)
    spacer = img[idx[2] * 588:idx[3] * 588]
    T.check(len(spacer) > 0 and np.count_nonzero(spacer) == 0,
            "F: the spacer track is digital silence (%d non-zero of %d samples)" % (np.count_nonzero(spacer), spacer.size))
    r = T.ffmpeg_r128(os.path.join(F_out, "album.wav"))
    T.check(r and abs(r["I"] + 12) <= 0.2, "F: --target -12 replaces the file's lufs -18: album.wav %.2f LUFS" % (
        r["I"] if r else float("nan")))
    album_lua(d, "mixed2.lua", F_LUA.replace(',\n    { file = "f3.wav", title = "Spacer" }, { file = "f4.wav", title = "After" }', ''))
    rc, out, err, secs, _ = run_album(["mixed2.lua", "--out", F_out, "-q"], d, F_out)
    left = sorted(os.listdir(os.path.join(F_out, "tracks")))
    T.check(rc == 0 and left == ["01 Stereo.wav", "02 Mono.wav"],
            "F: after a 2-track re-run, tracks/ holds %s (exit %d)" % (left, rc))
    T.finish()


if __name__ == "__main__":
    main()
