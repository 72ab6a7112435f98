"""Album sequencing (lua/moonbus/album.lua, first half of issue 7): the
CD-frame time line, gaps, crossfades and the assembled sequence, measured
with numpy on the files.

- every track starts on a CD frame (1/75 s); a gap measures what was asked
  to the frame; gap samples are digital silence;
- a track without fades is its file, sample for sample, at its place;
  a gain offset scales it;
- an equal-power crossfade of two uncorrelated noises keeps the level
  within ±0.5 dB through the overlap;
- a bad ISRC, a bad UPC check digit, a missing file and a crossfade
  longer than a track each give one error naming the track.
"""
import os

import numpy as np

import mbtest as T

d = T.tmpdir()
fs = 48000
rng = np.random.default_rng(11)


def noise(secs):
    return 0.1 * rng.standard_normal((int(secs * fs), 2))


files = {"n1.wav": noise(6.3), "n2.wav": noise(7.01), "n3.wav": noise(5.5), "n4.wav": noise(6)}
for name, x in files.items():
    T.write(os.path.join(d, name), x, fs)
    files[name], _ = T.read(os.path.join(d, name))

ALBUM = '''return { title = "Seq", performer = "Band", upc = "036000291452",
  tracks = {
    { file = "n1.wav", title = "One", isrc = "GB-XXX-26-00001", gap = 2 },
    { file = "n2.wav", title = "Two", gap = 1.5 },
    { file = "n3.wav", title = "Three", crossfade = { length = 2, curve = "equal_power" } },
    { file = "n4.wav", title = "Four", gain = -6, gap = 0.7 },
  } }
'''
with open(os.path.join(d, "album.lua"), "w") as f:
    f.write(ALBUM)
v = T.render('''
local album = require "moonbus.album"
local a = album.layout(album.load("album.lua"))
for i, t in ipairs(a.tracks) do
  emit("i0_" .. i, t.index0 or -1); emit("i1_" .. i, t.index1)
end
emit("frames", a.frames)
album.assemble(a, "seq.wav", 48000)
''', cwd=d)
y, _ = T.read(os.path.join(d, "seq.wav"))
F = fs // 75  # samples per CD frame at 48 kHz
i1 = [int(v["i1_%d" % k]) for k in range(1, 5)]
i0 = [int(v["i0_%d" % k]) for k in range(1, 5)]
T.check(len(y) == int(v["frames"]) * F, "sequence is %d samples = %d CD frames" % (len(y), v["frames"]))

lens = [len(files[n]) for n in ("n1.wav", "n2.wav", "n3.wav", "n4.wav")]
end1 = i1[0] * F + lens[0]
gap2 = i1[1] * F - int(np.ceil(end1 / F)) * F
T.check(i1[0] == 150 and i0[0] == 0, "track 1 after a 2 s gap: INDEX 01 at frame %d" % i1[0])
T.check(gap2 == 113 * F, "gap before track 2: %d frames (1.5 s = 112.5, to the frame: 113)" % (gap2 // F))
T.check(np.all(y[:i1[0] * F] == 0) and np.all(y[end1:i1[1] * F] == 0),
        "gaps are digital silence (%d + %d samples)" % (i1[0] * F, i1[1] * F - end1))
s1 = y[i1[0] * F:i1[0] * F + lens[0]]
T.check(np.array_equal(s1.astype(np.float32), files["n1.wav"].astype(np.float32)),
        "track 1 is its file, sample for sample, at frame %d" % i1[0])
end3 = i1[2] * F + lens[2]
gap4 = int(np.floor(0.7 * 75 + 0.5))  # to the nearest frame, halves up
T.check(i1[3] == int(np.ceil(end3 / F)) + gap4, "track 4 after a 0.7 s gap (%d frames) at frame %d" % (gap4, i1[3]))
s4 = y[i1[3] * F:i1[3] * F + lens[3]]
g = np.sum(s4 * files["n4.wav"]) / np.sum(files["n4.wav"] ** 2)
T.check(abs(20 * np.log10(g) + 6) < 0.01 and np.max(np.abs(s4 - g * files["n4.wav"])) < 1e-6,
        "track 4's gain offset: %.3f dB (-6)" % (20 * np.log10(g)))

# the crossfade: track 3 starts 2 s (to the frame) before track 2 ends
end2 = i1[1] * F + lens[1]
xs = i1[2] * F
T.check(abs((end2 - xs) / fs - 2) <= 0.5 / 75, "crossfade of %.4f s (2 s to the frame)" % ((end2 - xs) / fs))
win = fs // 20  # 50 ms
ref = 10 * np.log10(np.mean(files["n2.wav"][:fs] ** 2))
levels = []
for a in range(xs - fs // 2, end2 + fs // 2 - win, win // 2):
    levels.append(10 * np.log10(np.mean(y[a:a + win] ** 2)) - ref)
T.check(max(abs(l) for l in levels) <= 0.5,
        "equal-power crossfade of uncorrelated noise: level %+.2f .. %+.2f dB through the overlap (±0.5)" % (
            min(levels), max(levels)))


def bad(name, album, expect):
    with open(os.path.join(d, "bad.lua"), "w") as f:
        f.write(album)
    rc, out, err = T.run_lua('local album = require "moonbus.album"\n'
                             'album.assemble(album.layout(album.load("bad.lua")), "badseq.wav", 48000)\n', cwd=d)
    lines = err.strip().splitlines()
    T.check(rc == 1 and len(lines) == 1 and all(e in lines[0] for e in expect)
            and not os.path.exists(os.path.join(d, "badseq.wav")),
            "%s: one error naming %s: %r" % (name, expect, err.strip()))


bad("bad ISRC", ALBUM.replace("GB-XXX-26-00001", "GB-XX-26-00001"), ["track 1", "One", "ISRC"])
bad("bad UPC check digit", ALBUM.replace("036000291452", "036000291453"), ["UPC", "check digit"])
bad("missing file", ALBUM.replace('"n3.wav"', '"gone.wav"'), ["track 3", "Three", "gone.wav"])
bad("crossfade longer than a track", ALBUM.replace("length = 2,", "length = 9,"), ["track 3", "Three", "crossfade"])
T.finish()
