#!/usr/bin/python3
"""Acceptance: the render pipeline gives the samples of a one-thread
render, bit for bit.

core/graph.c may run a long render as a pipeline on two threads: the
schedule cut in three parts where the measured node costs balance (head,
middle, tail); the calling thread runs the head on each new block and
hands it to a worker for the middle, then runs the tail on the blocks the
worker has finished, with up to 8 blocks in flight (each in its own
buffer set) and file I/O moved onto those threads on a machine of fewer
than 4 cores. MOONBUS_PIPELINE=off renders on one thread; =always cuts
after the first block and keeps the pipeline, whatever it measures, so
even short renders cross the cuts; =cuts:C1,C2 forces the cuts.

Graphs (each rendered off, always, and with the default measuring mode,
at blocks 64 and 4096; every output file compared as stored bytes'
float32 samples, numpy):
  chain     input -> eq -> compressor -> limiter (latency) -> dither ->
            output, and a meter whose results must match too;
  parallel  two paths of different latency (limiter vs dry) summed into
            a blend, plus a second output tapped mid-chain (several
            sinks, connection delays crossing the cut);
  control   automation on a gain, and g:every callbacks that set a
            parameter at exact frames (the pipeline drains for them);
  lua       a `lua` node in the middle (its Lua state stays on the
            calling thread: it is never in the worker's part);
Then, at block 64, every pair of cuts of every graph (cuts:C1,C2; a pair
whose middle holds the `lua` node falls back to the measured cuts): the
same bits again.
Then on one core (the test's affinity narrowed to one CPU, as taskset or
Slurm would): core.cpus() says 1 and the measuring mode's renders give the
same bits (no pipeline, file I/O on the render thread).
Then a pipelined render of an hour of noise interrupted by SIGINT: exit 1, one "interrupted"
line, no output file left.
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbtest as T  # noqa: E402

FS = 48000
d = T.tmpdir()
rng = np.random.default_rng(11)
n = FS * 6
t = np.arange(n) / FS
x = 0.3 * rng.standard_normal((n, 2))
x[:, 0] += 0.5 * np.sin(2 * np.pi * 220 * t)
x[FS * 2:FS * 2 + 400] *= 4  # a burst for the limiter
x = np.clip(x, -1, 1)
T.write(os.path.join(d, "in.wav"), x, FS)

GRAPHS = {
    "chain": """
local src = g:add("input", { path = "in.wav" })
local eq = g:add("eq", { bands = { { type = "highpass", freq = 30 },
  { type = "bell", freq = 300, gain = -2, q = 1 } } })
local comp = g:add("compressor", { threshold = -18, ratio = 2 })
local lim = g:add("limiter", { ceiling = -1, gain = 6 })
local m = g:add("meter")
g:chain(src, eq, comp, lim, g:add("dither", { bits = 16 }), m,
  g:add("output", { path = OUT .. "a.wav", bits = 32 }))
g:render{ progress = false }
local r = m:results()
emit("integrated", r.integrated)
emit("true_peak", r.true_peak)
""",
    "parallel": """
local src = g:add("input", { path = "in.wav" })
local eq = g:add("eq", { bands = { { type = "lowshelf", freq = 100, gain = 3 } } })
g:chain(src, eq)
local lim = g:add("limiter", { ceiling = -3, lookahead = 5 })
local bl = g:add("blend", { mix = 0.4 })
g:connect(eq, bl, "dry")
g:chain(eq, lim, g:add("saturate", { drive = 6 }))
g:connect(lim, bl, "wet")
g:chain(bl, g:add("width", { width = 1.3 }),
  g:add("output", { path = OUT .. "a.wav", bits = 32 }))
g:connect(eq, g:add("output", { path = OUT .. "b.wav", bits = 32 }))
g:render{ progress = false }
""",
    "control": """
local src = g:add("input", { path = "in.wav" })
local gn = g:add("gain")
gn:automate("gain", { { 0, 0 }, { 2, -12 }, { 4, 3, "hold" }, { 5, -3 } })
local eq = g:add("eq", { bands = { { type = "bell", freq = 1000, gain = 0, q = 2 } } })
local k = 0
g:every(0.25, function(tt) k = k + 1; eq.gain1 = (k % 5) - 2 end)
g:chain(src, gn, eq, g:add("compressor", { threshold = -20 }),
  g:add("output", { path = OUT .. "a.wav", bits = 32 }))
g:render{ progress = false }
emit("callbacks", k)
""",
    "lua": """
local src = g:add("input", { path = "in.wav" })
local eq = g:add("eq", { bands = { { type = "highshelf", freq = 5000, gain = 4 } } })
local fx = g:add("lua", { channels = 2, process = function(b)
  for c = 1, b.channels do local ch = b[c]
    for i = 1, b.frames do ch[i] = ch[i] * 0.5 end end end })
g:chain(src, eq, fx, g:add("limiter", { ceiling = -2 }),
  g:add("output", { path = OUT .. "a.wav", bits = 32 }))
g:render{ progress = false }
""",
}


def render(name, mode, block):
    os.environ["MOONBUS_PIPELINE"] = mode
    out = "%s_%s_%d_" % (name, mode, block)
    vals = T.render('local OUT = "%s"\nlocal g = mb.graph{ block = %d }\n%s'
                    % (out, block, GRAPHS[name]), cwd=d,
                    what="%s %s block %d" % (name, mode, block))
    files = {}
    for f in ("a.wav", "b.wav"):
        p = os.path.join(d, out + f)
        if os.path.exists(p):
            files[f] = T.read_raw32(p)[0]
    return vals, files


for name in GRAPHS:
    for block in (64, 4096):
        ref_vals, ref = render(name, "off", block)
        T.check(len(ref) >= 1, "%s: the one-thread render wrote its outputs" % name)
        for mode in ("always", "auto"):
            vals, got = render(name, mode, block)
            T.check(sorted(got) == sorted(ref),
                    "%s block %d %s: same output files %s" % (name, block, mode, sorted(got)))
            for f in ref:
                if f not in got:
                    continue
                a, b = ref[f], got[f]
                same = a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))
                diff = "identical" if same else (
                    "shape %s vs %s" % (a.shape, b.shape) if a.shape != b.shape
                    else "max diff %.3g" % np.max(np.abs(a - b)))
                T.check(same, "%s block %d %s: %s bit-identical to one thread (%s)"
                        % (name, block, mode, f, diff))
            T.check(vals == ref_vals, "%s block %d %s: results %s == %s"
                    % (name, block, mode, vals, ref_vals))

# ---- every pair of cuts ----------------------------------------------------
# nodes in each graph (the schedule's length)
NODES = {"chain": 7, "parallel": 8, "control": 5, "lua": 5}
for name, nn in NODES.items():
    ref_vals, ref = render(name, "off", 64)
    bad = []
    for c1 in range(1, nn):
        for c2 in range(c1 + 1, nn + 1):
            mode = "cuts:%d,%d" % (c1, c2)
            vals, got = render(name, mode, 64)
            for f in ref:
                a, b = ref[f], got.get(f)
                if b is None or a.shape != b.shape or not np.array_equal(a.view(np.uint32), b.view(np.uint32)):
                    bad.append("%s %s" % (mode, f))
            if vals != ref_vals:
                bad.append("%s results" % mode)
    T.check(not bad, "%s: every pair of cuts gives the one-thread bits (%d pairs)%s"
            % (name, nn * (nn - 1) // 2, ": " + ", ".join(bad) if bad else ""))
os.environ.pop("MOONBUS_PIPELINE", None)

# ---- one core: renders count the affinity mask, not the machine -----------
allowed = os.sched_getaffinity(0)
os.sched_setaffinity(0, {min(allowed)})  # inherited by moonbus
try:
    cpus = T.render('emit("cpus", require("moonbus.core").cpus())', what="core.cpus on one core")
    T.check(cpus.get("cpus") == 1, "one core: core.cpus() reads the affinity mask (got %s of %d online)"
            % (cpus.get("cpus"), os.cpu_count()))
    for name in ("chain", "parallel"):
        ref_vals, ref = render(name, "off", 4096)
        vals, got = render(name, "auto", 4096)
        same = sorted(got) == sorted(ref) and all(
            ref[f].shape == got[f].shape and np.array_equal(ref[f].view(np.uint32), got[f].view(np.uint32))
            for f in ref if f in got)
        T.check(same and vals == ref_vals, "one core: %s renders the one-thread bits" % name)
finally:
    os.sched_setaffinity(0, allowed)
    os.environ.pop("MOONBUS_PIPELINE", None)

# ---- SIGINT while the pipeline runs ---------------------------------------
script = os.path.join(d, "long.lua")
with open(script, "w") as f:
    f.write('local g = mb.graph{ block = 256 }\n'
            'g:chain(g:add("tone", { wave = "white", level = -20, duration = 3600, channels = 2 }), '
            'g:add("eq", { phase = "linear", bands = { { type = "bell", freq = 200, gain = 3 } } }), '
            'g:add("limiter", {}), g:add("output", { path = "long_out.wav" }))\n'
            'g:render{ progress = false }\n')
env = dict(os.environ, MOONBUS_PIPELINE="always")
p = subprocess.Popen([T.MOONBUS, "run", script], cwd=d, env=env,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
time.sleep(1.0)
p.send_signal(signal.SIGINT)
try:
    _, err = p.communicate(timeout=30)
    T.check(p.returncode == 1, "SIGINT: exit 1 (got %d)" % p.returncode)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    T.check(len(lines) == 1 and lines[0].startswith("moonbus:") and "interrupted" in lines[0],
            "SIGINT: one 'moonbus: ... interrupted' line: %r" % err[-300:])
except subprocess.TimeoutExpired:
    p.kill()
    T.check(False, "SIGINT: moonbus stopped within 30 s")
left = [f for f in os.listdir(d) if f.startswith("long_out") or ".moonbus" in f]
T.check(not left, "SIGINT: no output or temp file left: %s" % left)

T.finish()
