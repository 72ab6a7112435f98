"""The time line: an input's `start` (the file begins that many seconds
into the graph's time line, rounded to the nearest frame, with silence
before it) and an output's `from`/`length` window (the building blocks of
album sequencing and of cutting an album image into tracks).

Checked with numpy against the files themselves: sample-exact sums of two
inputs, one placed at a fractional start, at several block sizes and with
the two-stage pipeline forced on and off; the render's length is the later
input's end; a resampled input (44.1 kHz into a 48 kHz graph) keeps its
offset; a negative start is refused.
"""
import os

import numpy as np

import mbtest as T

d = T.tmpdir()
rng = np.random.default_rng(7)
a = 0.3 * rng.standard_normal((48000, 2))
b = 0.3 * rng.standard_normal((30011, 2))
T.write(os.path.join(d, "a.wav"), a, 48000)
T.write(os.path.join(d, "b.wav"), b, 48000)
a, _ = T.read(os.path.join(d, "a.wav"))  # as stored (float32)
b, _ = T.read(os.path.join(d, "b.wav"))

start = 0.7531  # s: 36148.8 frames, rounds to 36149
off = int(round(start * 48000))
ref = np.zeros((off + len(b), 2))
ref[:len(a)] += a
ref[off:] += b

for block in (16, 37, 512, 4096):
    for pipe in ("off", "always"):
        os.environ["MOONBUS_PIPELINE"] = pipe
        T.render('''
local g = mb.graph{ rate = 48000, block = %d }
local o = g:add("output", { path = "out.wav", bits = 32 })
g:connect(g:add("input", { path = "a.wav" }), o)
g:connect(g:add("input", { path = "b.wav", start = %r }), o)
g:render()
''' % (block, start), cwd=d)
        y, _ = T.read(os.path.join(d, "out.wav"))
        same = y.shape == ref.shape and np.array_equal(y.astype(np.float32), ref.astype(np.float32))
        T.check(same, "block %d, pipeline %s: %d frames (expected %d), exact: %s" % (
            block, pipe, len(y), len(ref), same))
os.environ.pop("MOONBUS_PIPELINE")

# a 44.1 kHz file placed at 1 s in a 48 kHz graph: silent for exactly
# 48000 frames, then the resampled file (its first sound lands there)
c = np.zeros((44100, 2))
c[0] = 0.5  # an impulse at the file's first frame
T.write(os.path.join(d, "c.wav"), c, 44100)
T.render('''
local g = mb.graph{ rate = 48000 }
g:connect(g:add("input", { path = "c.wav", start = 1 }), g:add("output", { path = "c48.wav", bits = 32 }))
g:render()
''', cwd=d)
y, _ = T.read(os.path.join(d, "c48.wav"))
peak = int(np.argmax(np.abs(y[:, 0])))
T.check(np.all(y[:48000 - 64] == 0) and abs(peak - 48000) <= 1 and len(y) == 48000 + 48000,
        "resampled input at start 1 s: silent before, impulse at frame %d (48000), %d frames" % (
            peak, len(y)))

# outputs with windows cut one render into pieces: together they are the
# signal, sample for sample, whatever the block size and latency before them
for block in (16, 37, 4096):
    T.render('''
local g = mb.graph{ rate = 48000, block = %d }
local src = g:add("input", { path = "b.wav", start = %r })
local lim = g:add("limiter", { ceiling = -40 })  -- latency before the cuts
g:connect(src, lim)
g:connect(lim, g:add("output", { path = "whole.wav", bits = 32 }))
local cuts = { 0, 0.25, 0.5731, 1.1 }
for k, t in ipairs(cuts) do
  local len = cuts[k + 1] and cuts[k + 1] - t or 0
  g:connect(lim, g:add("output", { path = ("piece%%d.wav"):format(k), bits = 32, from = t, length = len }))
end
g:render()
''' % (block, start), cwd=d)
    whole, _ = T.read(os.path.join(d, "whole.wav"))
    pieces = [T.read(os.path.join(d, "piece%d.wav" % k))[0] for k in range(1, 5)]
    bounds = [int(round(t * 48000)) for t in (0, 0.25, 0.5731, 1.1)] + [len(whole)]
    ok = all(len(p) == bounds[k + 1] - bounds[k] and np.array_equal(p, whole[bounds[k]:bounds[k + 1]])
             for k, p in enumerate(pieces))
    T.check(ok, "block %d: 4 windows of a %d-frame render are its frames %s exactly (lengths %s)" % (
        block, len(whole), bounds, [len(p) for p in pieces]))

rc, out, err = T.run_lua('''
local g = mb.graph{ rate = 48000 }
g:add("input", { path = "a.wav", start = -1 })
''', cwd=d)
T.check(rc == 1 and "start" in err and err.count("\n") == 1, "negative start refused: %r" % err.strip())
T.finish()
