"""moonbus.cdimage: CUE sheet, cdrdao TOC and the ISRC / UPC validators,
read back by independent tools (cuetools, shntool, cdrdao) against a
synthetic CD image made here with numpy.

The image: 44.1 kHz 16-bit stereo, 4 tracks of distinct tones over noise
(6.01, 12, 5.03 and 8.16 s of audio), with gaps of 2 s before track 1 (its
pregap, at the image start), 2 s before track 2, none before track 3 and
113 frames (1.5 s rounded to a whole frame: 112.5 is not one) before
track 4. Gaps hold quiet noise of their own, not silence, so a split one
sample off cannot match. Expected values come from this layout (frames of
588 samples, IEC 60908) and from the standards, never from the module:

 1. cueprint shows the album and track titles and performers and the
    ISRCs (given in display form, lower case; expected upper case without
    hyphens, ISO 3901); cueconvert's TOC and cdrdao show the catalog (a
    UPC-A given as 12 digits, expected with a leading 0 as 13).
 2. cuebreakpoints: default (gaps appended to the previous track) gives the
    INDEX 01 of tracks 2..4; --prepend-gaps the start of each section
    (INDEX 00, or INDEX 01 without a gap); --split-gaps both, and track 1's
    INDEX 01.
 3. shnsplit -f album.cue (splits at every INDEX 01, so track 1's pregap
    is piece 00), and shnsplit fed cuebreakpoints --prepend-gaps and
    --split-gaps: every piece equals its slice of the numpy image, sample
    for sample.
 4. cdrdao show-toc accepts the TOC; its PREGAP, START and END per track,
    ISRCs and catalog match the layout; toc-info and toc-size count the
    image's frames; cueprint reads the TOC's CD-TEXT back.
 5. The Red Book's 4 s minimum as cdrdao applies it (from INDEX 01): a
    track of exactly 300 frames is accepted by M.toc and by cdrdao
    toc-info; 299 frames is refused by the module, naming the track, and a
    TOC of that layout written here is refused by cdrdao too.
 6. Validators: ISRCs and UPC/EANs, good and bad (the reason names the
    shape, or the check digit computed here with the GS1 mod-10 rule).
 7. Layout errors name the track: overlapping indexes, INDEX 00 after
    INDEX 01, a gap before track 1 that does not start at 0, 100 tracks, a
    double quote in a title, an unknown key; msf() refuses 100:00:00.
"""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbtest as T  # noqa: E402

FS = 44100
FPS = 75                # CD frames per second (IEC 60908)
SPF = FS // FPS         # samples per frame: 588

# (title, performer or None for the album's, ISRC as given or None,
#  gap before the track in frames, audio length in frames)
TRACKS = [
    ("Intro", None, "gb-aye-26-00001", 150, 451),
    ("Night Drive", "The Moonbus Band feat. Vox", "GBAYE2600002", 150, 900),
    ("Tunnel", None, None, 0, 377),
    ("Dawn", None, "US-S1Z-26-00104", 113, 612),
]
ALBUM_TITLE = "Night Drive"
ALBUM_PERFORMER = "The Moonbus Band"
UPC_A = "036000291452"   # GS1's example UPC-A


def gs1_check(payload):
    """GS1 mod-10 check digit of a digit string (without its check digit):
    weights 3, 1, 3, ... from the right."""
    s = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(payload)))
    return (10 - s % 10) % 10


def isrc_norm(s):
    return s.upper().replace("-", "")


def layout():
    """Frames of each track's section start, INDEX 00 (None without a gap),
    INDEX 01 and stop, and the image length."""
    pos = 0
    rows = []
    for title, perf, isrc, gap, audio in TRACKS:
        start = pos
        index0 = start if gap > 0 else None
        index1 = start + gap
        stop = index1 + audio
        rows.append(dict(title=title, performer=perf or ALBUM_PERFORMER,
                         isrc=isrc_norm(isrc) if isrc else "",
                         start=start, index0=index0, index1=index1, stop=stop,
                         gap=gap))
        pos = stop
    return rows, pos


def make_image(rows, frames):
    """Distinct tones over noise per track, quiet noise of its own in each
    gap; int16 stereo."""
    rng = np.random.default_rng(7)
    n = frames * SPF
    x = np.zeros((n, 2))
    t = np.arange(n) / FS
    for k, r in enumerate(rows):
        a, b = r["index1"] * SPF, r["stop"] * SPF
        f = 220.0 * (k + 2)
        x[a:b, 0] = 0.3 * np.sin(2 * np.pi * f * t[a:b])
        x[a:b, 1] = 0.3 * np.sin(2 * np.pi * 1.5 * f * t[a:b])
        x[a:b] += 0.05 * rng.standard_normal((b - a, 2))
        g0 = r["start"] * SPF
        if a > g0:
            x[g0:a] = 0.01 * rng.standard_normal((a - g0, 2))
    return np.round(x * 32767).astype(np.int16)


def lua_album(rows, frames, catalog=UPC_A, tracks=None):
    """The album table as Lua source (titles are plain ASCII here)."""
    out = ["{", "  title = %s, performer = %s," % (T.lua_str(ALBUM_TITLE), T.lua_str(ALBUM_PERFORMER))]
    if catalog:
        out.append("  catalog = %s," % T.lua_str(catalog))
    out.append('  file = "album.wav", frames = %d,' % frames)
    out.append("  tracks = {")
    for (title, perf, isrc, gap, audio), r in zip(tracks or TRACKS, rows):
        f = ["title = %s" % T.lua_str(title)]
        if perf:
            f.append("performer = %s" % T.lua_str(perf))
        if isrc:
            f.append("isrc = %s" % T.lua_str(isrc))
        if r["index0"] is not None:
            f.append("index0 = %d" % r["index0"])
        f.append("index1 = %d" % r["index1"])
        out.append("    { %s }," % ", ".join(f))
    out.append("  },")
    out.append("}")
    return "\n".join(out)


WRITE = r"""
local cd = require "moonbus.cdimage"
local album = %s
for name, text in pairs { ["album.cue"] = cd.cue(album), ["album.toc"] = cd.toc(album) } do
  local f = assert(io.open(name, "w"))
  f:write(text)
  f:close()
end
emit("frame", cd.FRAME)
emit("fps", cd.FPS)
"""


def run(cmd, cwd, stdin=None):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, input=stdin)
    return p.returncode, p.stdout, p.stderr


def msf_frames(s):
    m, sec, f = (int(v) for v in s.split(":"))
    return (m * 60 + sec) * FPS + f


def bp_frames(s):
    """cuebreakpoints' m:ss.ff (ff in CD frames) to frames."""
    m, rest = s.split(":")
    sec, f = rest.split(".")
    return (int(m) * 60 + int(sec)) * FPS + int(f)


def check_pieces(d, img, spans, what):
    """Every split-trackNN.wav in d equals its [a, b) frame span of img."""
    names = sorted(n for n in os.listdir(d) if n.endswith(".wav"))
    T.check(len(names) == len(spans), "%s: %d pieces (%s), expected %d"
            % (what, len(names), " ".join(names), len(spans)))
    for name, (a, b) in zip(names, spans):
        y, fs = sf.read(os.path.join(d, name), dtype="int16", always_2d=True)
        want = img[a * SPF:b * SPF]
        same = y.shape == want.shape and np.array_equal(y, want)
        T.check(same and fs == FS, "%s: %s is frames %d..%d (%d samples), sample-exact: %s"
                % (what, name, a, b, len(y), "yes" if same else
                   "no (got %d samples, expected %d)" % (len(y), len(want))))


def main():
    for tool, pkg in (("cueprint", "cuetools"), ("shnsplit", "shntool"), ("cdrdao", "cdrdao")):
        if not T.check(shutil.which(tool) is not None, "%s is installed (Debian package %s)" % (tool, pkg)):
            T.finish()

    rows, frames = layout()
    img = make_image(rows, frames)
    d = T.tmpdir()
    sf.write(os.path.join(d, "album.wav"), img, FS, subtype="PCM_16")
    vals = T.render(WRITE % lua_album(rows, frames), cwd=d, what="cue/toc writers")
    T.check(vals.get("frame") == SPF and vals.get("fps") == FPS,
            "FRAME = %s, FPS = %s (44100 / 75 = 588, IEC 60908)" % (vals.get("frame"), vals.get("fps")))
    cue = os.path.join(d, "album.cue")
    for line in open(cue).read().splitlines():
        T.note("cue| " + line)

    # 1. cueprint and the catalog
    rc, out, err = run(["cueprint", "-d", "%T\\t%P\\t%N\\n", "-t", "%n\\t%t\\t%p\\t%i\\n", "album.cue"], d)
    lines = out.splitlines()
    T.check(rc == 0 and lines and lines[0] == "%s\t%s\t%d" % (ALBUM_TITLE, ALBUM_PERFORMER, len(rows)),
            "cueprint: album %r (rc %d, %s)" % (lines[0] if lines else None, rc, err.strip()))
    for k, r in enumerate(rows):
        want = "%d\t%s\t%s\t%s" % (k + 1, r["title"], r["performer"], r["isrc"])
        got = lines[k + 1] if k + 1 < len(lines) else None
        T.check(got == want, "cueprint: track %d %r, expected %r" % (k + 1, got, want))
    catalog = "0" + UPC_A
    rc, out, err = run(["cueconvert", "album.cue"], d)
    T.check(rc == 0 and 'CATALOG "%s"' % catalog in out and "CATALOG " + catalog not in out,
            "cueconvert reads CATALOG %s from the CUE sheet (rc %d)" % (catalog, rc))

    # 2. cuebreakpoints
    modes = {
        "default": [r["index1"] for r in rows[1:]],
        "--prepend-gaps": [r["start"] for r in rows[1:]],
        "--split-gaps": sorted(set([rows[0]["index1"]] + [r["start"] for r in rows[1:]]
                                   + [r["index1"] for r in rows[1:]])),
    }
    for mode, want in modes.items():
        args = ["cuebreakpoints"] + ([mode] if mode != "default" else []) + ["album.cue"]
        rc, out, err = run(args, d)
        got = [bp_frames(s) for s in out.split()]
        T.check(rc == 0 and [g * SPF for g in got] == [w * SPF for w in want],
                "cuebreakpoints %s: samples %s, expected %s" % (mode, [g * SPF for g in got],
                                                              [w * SPF for w in want]))

    # 3. shnsplit: the CUE itself (every INDEX 01 is a split), and
    # cuebreakpoints' prepend and split modes piped in.
    for sub, cmd, bps in (
            ("cue", ["shnsplit", "-q", "-f", "album.cue", "-o", "wav", "-d", "cue", "album.wav"], None),
            ("prepend", ["shnsplit", "-q", "-o", "wav", "-d", "prepend", "album.wav"], "--prepend-gaps"),
            ("split", ["shnsplit", "-q", "-o", "wav", "-d", "split", "album.wav"], "--split-gaps")):
        os.mkdir(os.path.join(d, sub))
        stdin = run(["cuebreakpoints", bps, "album.cue"], d)[1] if bps else None
        rc, out, err = run(cmd, d, stdin=stdin)
        T.check(rc == 0, "shnsplit (%s) exit %d%s" % (sub, rc, "" if rc == 0 else ": " + err.strip()[-300:]))
        if sub == "cue":
            cuts = [0] + [r["index1"] for r in rows] + [frames]
        elif sub == "prepend":
            cuts = [r["start"] for r in rows] + [frames]
        else:
            cuts = [0] + modes["--split-gaps"] + [frames]
        check_pieces(os.path.join(d, sub), img, list(zip(cuts[:-1], cuts[1:])), "shnsplit " + sub)

    # 4. cdrdao reads the TOC
    rc, out, err = run(["cdrdao", "show-toc", "album.toc"], d)
    T.check(rc == 0, "cdrdao show-toc exit %d%s" % (rc, "" if rc == 0 else ": " + err.strip()[-300:]))
    m = re.search(r"CATALOG NUMBER:\s*(\d+)", out)
    T.check(m and m.group(1) == catalog, "cdrdao catalog %s, expected %s" % (m and m.group(1), catalog))
    blocks = re.split(r"^TRACK\s+", out, flags=re.M)[1:]
    T.check(len(blocks) == len(rows), "cdrdao: %d tracks, expected %d" % (len(blocks), len(rows)))
    for k, (b, r) in enumerate(zip(blocks, rows)):
        def field(name):
            mm = re.search(r"^\s*%s\s+\S+\(\s*(\d+)\)" % name, b, flags=re.M)
            return int(mm.group(1)) if mm else None
        mi = re.search(r"^\s*ISRC\s+(.+)$", b, flags=re.M)
        isrc = mi.group(1).replace(" ", "") if mi else ""
        got = (field("PREGAP") or 0, field("START"), field("END"), isrc)
        want = (r["gap"], r["index1"], r["stop"], r["isrc"])
        T.check(got == want, "cdrdao track %d: pregap, start, end (frames), ISRC %s, expected %s"
                % (k + 1, got, want))
    rc, out, err = run(["cdrdao", "toc-info", "album.toc"], d)
    m = re.search(r"(\d+) tracks, length ([\d:]+), (\d+) blocks", out)
    T.check(rc == 0 and m and int(m.group(1)) == len(rows) and int(m.group(3)) == frames
            and msf_frames(m.group(2)) == frames,
            "cdrdao toc-info: %s (rc %d), expected %d tracks, %d blocks"
            % (m and m.group(0), rc, len(rows), frames))
    rc, out, err = run(["cdrdao", "toc-size", "album.toc"], d)
    T.check(rc == 0 and out.split() and int(out.split()[-1]) == frames,
            "cdrdao toc-size %s, expected %d blocks" % (out.strip(), frames))
    rc, out, err = run(["cueprint", "-d", "%T\\t%P\\n", "-t", "%t\\t%p\\t%i\\n", "album.toc"], d)
    want = "\n".join(["%s\t%s" % (ALBUM_TITLE, ALBUM_PERFORMER)]
                     + ["%s\t%s\t%s" % (r["title"], r["performer"], r["isrc"]) for r in rows])
    T.check(rc == 0 and out.strip("\n") == want,
            "cueprint reads the TOC's CD-TEXT and ISRCs back (rc %d)%s"
            % (rc, "" if out.strip("\n") == want else ": got %r" % out))

    # 5. The 4 s minimum, as cdrdao counts it (INDEX 01 to the track's end)
    for audio, ok in ((300, True), (299, False)):
        tr = [("One", None, None, 0, 400), ("Short", None, None, 150, audio), ("Three", None, None, 0, 400)]
        pos, rs = 0, []
        for title, perf, isrc, gap, n in tr:
            rs.append(dict(index0=pos if gap else None, index1=pos + gap, start=pos, stop=pos + gap + n))
            pos += gap + n
        dd = T.tmpdir()
        sf.write(os.path.join(dd, "album.wav"), np.zeros((pos * SPF, 2), np.int16), FS, subtype="PCM_16")
        script = ("local ok, e = pcall(function() return require('moonbus.cdimage').toc(%s) end)\n"
                  "if ok then local f = assert(io.open('album.toc', 'w')); f:write(e); f:close() "
                  "else emit('err', e) end\n" % lua_album(rs, pos, tracks=tr))
        v = T.render(script, cwd=dd, what="4 s minimum")
        if ok:
            rc, out, err = run(["cdrdao", "toc-info", "album.toc"], dd)
            T.check("err" not in v and rc == 0,
                    "track of 300 frames from INDEX 01: M.toc accepts (%s), cdrdao toc-info exit %d"
                    % (v.get("err", "ok"), rc))
        else:
            e = str(v.get("err"))
            T.check("track 2 'Short'" in e and "299" in e, "299 frames refused naming the track: %s" % e)
            # The same layout written here by hand: cdrdao refuses it too.
            toc = ["CD_DA"]
            for r in rs:
                toc += ["TRACK AUDIO", 'AUDIOFILE "album.wav" %d %d' % (r["start"] * SPF, (r["stop"] - r["start"]) * SPF)]
                if r["index1"] > r["start"]:
                    toc.append("START %02d:%02d:%02d" % ((r["index1"] - r["start"]) // (60 * FPS),
                                                         (r["index1"] - r["start"]) // FPS % 60,
                                                         (r["index1"] - r["start"]) % FPS))
            with open(os.path.join(dd, "hand.toc"), "w") as f:
                f.write("\n".join(toc) + "\n")
            rc, out, err = run(["cdrdao", "toc-info", "hand.toc"], dd)
            T.check(rc != 0 and "Track 2: Length is shorter than 4 seconds" in err,
                    "cdrdao toc-info refuses the same 299-frame track: exit %d, %s"
                    % (rc, [l for l in err.splitlines() if "shorter" in l]))

    # 6. Validators
    isrcs = [("GBAYE2600001", True), ("gb-aye-26-00001", True), ("US-S1Z-99-00104", True),
             ("QMABC0912345", True), ("gbaye2600001", True),
             ("GBAYE260001", False), ("GBAYE26000012", False), ("G1AYE2600001", False),
             ("1BAYE2600001", False), ("GBA-YE-26-00001", False), ("GB-AYE-2600001", False),
             ("GB-AYE-26-0000-1", False), ("GBAY_2600001", False), ("GBAYE2A00001", False),
             ("GBAYE26A0001", False), ("", False)]
    upcs = [(UPC_A, "0" + UPC_A), ("4006381333931", "4006381333931"),
            ("036000291453", None), ("036000291442", None), ("4006381333932", None),
            ("4106381333931", None), ("03600029145", None), ("40063813339310", None),
            ("03600029145X", None), ("", None)]
    script = ["local cd = require 'moonbus.cdimage'"]
    for k, (s, _) in enumerate(isrcs):
        script.append("do local v, why = cd.check_isrc(%s); emit('isrc%d', 'v:' .. tostring(v)); emit('isrcwhy%d', tostring(why)) end"
                      % (T.lua_str(s), k, k))
    for k, (s, _) in enumerate(upcs):
        script.append("do local v, why = cd.check_upc(%s); emit('upc%d', 'v:' .. tostring(v)); emit('upcwhy%d', tostring(why)) end"
                      % (T.lua_str(s), k, k))
    v = T.render("\n".join(script), what="validators")
    for k, (s, good) in enumerate(isrcs):
        got, why = str(v.get("isrc%d" % k))[2:], v.get("isrcwhy%d" % k)
        if good:
            T.check(got == isrc_norm(s), "check_isrc(%r) = %s, expected %s" % (s, got, isrc_norm(s)))
        else:
            T.check(got == "nil" and "CC-XXX-YY-NNNNN" in str(why),
                    "check_isrc(%r) refused: %s" % (s, why))
    for k, (s, want) in enumerate(upcs):
        got, why = str(v.get("upc%d" % k))[2:], str(v.get("upcwhy%d" % k))
        if want:
            T.check(got == want, "check_upc(%r) = %s, expected %s" % (s, got, want))
        elif s.isdigit() and len(s) in (12, 13):
            exp = gs1_check(s[:-1])
            T.check(got == "nil" and ("expected %d" % exp) in why,
                    "check_upc(%r) refused naming check digit %d: %s" % (s, exp, why))
        else:
            T.check(got == "nil" and "12" in why and "13" in why,
                    "check_upc(%r) refused naming 12/13 digits: %s" % (s, why))

    # 7. Layout errors name the track, and msf()
    base = [dict(t=t, i0=None, i1=None) for t in ("A", "B", "C")]
    def alb(tracks, extra=""):
        ts = ",\n".join("{ title = %s%s%s%s }" % (
            T.lua_str(t["t"]), ", index0 = %s" % t["i0"] if t.get("i0") is not None else "",
            ", index1 = %s" % t["i1"], t.get("x", "")) for t in tracks)
        return ('{ title = "X", performer = "P", file = "album.wav", frames = %d, tracks = { %s }%s }'
                % (tracks[-1]["i1"] + 600, ts, extra))
    ok3 = [dict(t="A", i1=0), dict(t="B", i1=600), dict(t="C", i0=1100, i1=1200)]
    cases = [
        ("overlap", [dict(t="A", i1=0), dict(t="B", i1=600), dict(t="C", i0=500, i1=1200)],
         "track 3 'C'"),
        ("index0 after index1", [dict(t="A", i1=0), dict(t="B", i0=700, i1=600), dict(t="C", i1=1200)],
         "track 2 'B'"),
        ("not increasing", [dict(t="A", i1=0), dict(t="B", i1=900), dict(t="C", i1=900)],
         "track 3 'C'"),
        ("short first track", [dict(t="A", i0=0, i1=150), dict(t="B", i1=449), dict(t="C", i1=1200)],
         "track 1 'A'"),
        ("gap before track 1 not at 0", [dict(t="A", i0=10, i1=150), dict(t="B", i1=600), dict(t="C", i1=1200)],
         "track 1 'A'"),
        ("quote in a title", [dict(t="A", i1=0), dict(t='B "live"', i1=600), dict(t="C", i1=1200)],
         "track 2"),
        ("unknown key", [dict(t="A", i1=0), dict(t="B", i1=600, x=", index_0 = 500"), dict(t="C", i1=1200)],
         "track 2 'B'"),
        ("fractional frame", [dict(t="A", i1=0), dict(t="B", i1=600.5), dict(t="C", i1=1200)],
         "track 2 'B'"),
    ]
    script = ["local cd = require 'moonbus.cdimage'",
              "do local ok, e = pcall(cd.cue, %s); emit('ok3', tostring(ok) .. ' ' .. tostring(e)) end" % alb(ok3)]
    for k, (what, tr, _) in enumerate(cases):
        script.append("do local ok, e = pcall(cd.cue, %s); emit('case%d', ok and 'accepted' or e) end"
                      % (alb(tr), k))
    many = ", ".join("{ title = 'T%d', index1 = %d }" % (i + 1, i * 300) for i in range(100))
    script.append("do local ok, e = pcall(cd.toc, { file = 'a.wav', frames = 30000, tracks = { %s } }); "
                  "emit('many', ok and 'accepted' or e) end" % many)
    for k, fr in enumerate((0, 4501, 449999, 450000, -1)):
        script.append("do local ok, e = pcall(cd.msf, %d); emit('msf%d', ok and e or ('error: ' .. e)) end" % (fr, k))
    v = T.render("\n".join(script), what="layout errors")
    T.check(str(v.get("ok3", "")).startswith("true"), "a good 3-track layout is accepted: %s"
            % str(v.get("ok3"))[:60].replace("\n", " | "))
    for k, (what, tr, name) in enumerate(cases):
        e = str(v.get("case%d" % k))
        T.check(e.startswith("album: ") and name in e, "%s: error names %s: %s" % (what, name, e))
    e = str(v.get("many"))
    T.check("100 tracks" in e and "99" in e, "100 tracks refused: %s" % e)
    for k, fr in enumerate((0, 4501, 449999, 450000, -1)):
        got = str(v.get("msf%d" % k))
        if 0 <= fr <= (99 * 60 + 59) * FPS + 74:
            want = "%02d:%02d:%02d" % (fr // (60 * FPS), fr // FPS % 60, fr % FPS)
            T.check(got == want, "msf(%d) = %s, expected %s" % (fr, got, want))
        else:
            T.check(got.startswith("error: "), "msf(%d) refused: %s" % (fr, got))
    T.finish()


if __name__ == "__main__":
    main()
