"""Live playback under a real JACK server (dummy driver, no sound card),
recorded sample-exactly by a separate JACK client (jackfix.Recorder) and
compared with the offline render of the same graph by numpy.

  - the same graph played live at periods 256 and 64 nulls against the
    offline render (below -120 dBFS) over 22 s: no sample missing or
    repeated; an automation ramp and step land where the offline render
    puts them;
  - a parameter set from Lua while playing reaches the audio within two
    periods of the frame its callback ran for;
  - the audio callback neither allocates nor locks (LD_PRELOAD guard that
    aborts the process) while parameters change, meters are read and the
    graph is edited and swapped twice;
  - xruns are reported in the run's summary (never asserted zero);
  - the server killed mid-run: one clear error within a few seconds, no
    output left behind; SIGINT stops cleanly and keeps what was recorded;
  - no server, a wrong device, a wrong rate or channel count: one
    `moonbus:` line and exit 1.
"""
import os
import re
import signal
import subprocess
import time

import numpy as np

import jackfix as jf
import mbtest as T

RATE = 48000
SECONDS = 22
d = T.tmpdir()
IN = os.path.join(d, "in.wav")
SINE = os.path.join(d, "sine.wav")

rng = np.random.default_rng(5)
t = np.arange(SECONDS * RATE) / RATE
x = np.stack([0.12 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * 220 * t + 0.3),
              0.12 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * 330 * t + 0.7)], 1)
# One second of silence first: the recorder connects to our ports while
# it plays (exact zeros through the chain), so it misses nothing.
x[:RATE] = 0
T.write(IN, x, RATE)
sine = 0.5 * np.sin(2 * np.pi * 1000 * t[:8 * RATE, None] + np.array([0.5, 0.9]))
sine[:RATE] = 0
T.write(SINE, sine, RATE)

SERVER = "mbtest-%d" % os.getpid()
PORTS = ["moonbus:out_0", "moonbus:out_1"]

# A mastering-like chain with automation: a linear ramp 6-8 s and a step
# at 12 s on the gain, a ceiling ramp on the limiter.
CHAIN = r"""
local sink, out = arg[1], arg[2]
local g = mb.graph{ rate = 48000 }
local src = g:add("input", { path = %s })
local eq = g:add("eq", { bands = { { type = "highpass", freq = 30 },
  { type = "bell", freq = 300, gain = -2, q = 1 },
  { type = "highshelf", freq = 10000, gain = 2 } } })
local comp = g:add("compressor", { threshold = -18, ratio = 2, attack = 10, release = 150 })
local gn = g:add("gain", { gain = 0 })
local lim = g:add("limiter", { ceiling = -1 })
gn:automate("gain", { {6, 0}, {8, -6}, {12, -6, "hold"}, {12, 3} })
lim:automate("ceiling", { {0, -1}, {20, -3} })
g:chain(src, eq, comp, gn, lim)
local s
if sink == "file" then
  g:connect(lim, g:add("output", { path = out, bits = 32 }))
  s = g:render()
else
  g:connect(lim, g:add("device_out", {}))
  s = g:render()   -- `moonbus live`: plays
  emit("xruns", s.xruns)
  emit("block", s.block)
  emit("underruns", s.underruns)
end
emit("latency", s.latency)
""" % T.lua_str(IN)

# A parameter set from a control callback at 5 s.
PARAM = r"""
local sink, out, change = arg[1], arg[2], arg[3] == "1"
local g = mb.graph{}   -- the rate comes from the file, live as offline
local src = g:add("input", { path = %s })
local gn = g:add("gain", { gain = 0 })
g:chain(src, gn)
g:every(5, function(t) if change and t == 5 then gn.gain = -20 end end)
if sink == "file" then
  g:connect(gn, g:add("output", { path = out, bits = 32 }))
  g:render()
else
  g:connect(gn, g:add("device_out", {}))
  local s = g:render()
  emit("block", s.block)
end
""" % T.lua_str(SINE)


def script(name, text):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(T.PRELUDE + text)
    return path


chain_lua = script("chain.lua", CHAIN)
param_lua = script("param.lua", PARAM)


def moonbus(args, env, timeout=120):
    p = subprocess.run([T.MOONBUS] + args, env=env, capture_output=True,
                       text=True, timeout=timeout, cwd=d)
    return p.returncode, p.stdout, p.stderr


def offline(lua, out, *extra):
    rc, so, se = moonbus(["run", lua, "file", out] + list(extra), os.environ)
    T.check(rc == 0, "offline render of %s: exit %d %s" % (os.path.basename(lua), rc, se.strip()[-300:]))
    return T.read(out)[0], T.parse_emitted(so)


def live(jack, lua, *extra, timeout=120):
    """Play `lua` live (`moonbus live`: its g:render() plays) while a
    separate client records our ports. The recorder exists first, so it is
    a device of its own: playing into it connects before the first frame
    and nothing can be missed."""
    rec = jf.Recorder(PORTS, os.path.join(d, "rec.wav"))
    rc, so, se = moonbus(["live", "--device", "jackfix_rec", lua, "device", "-"] + list(extra),
                         jack.env, timeout)
    time.sleep(0.2)
    y, _ = rec.stop()
    return rc, so, se, y.astype(np.float64)


def summary_line(se):
    m = re.search(r"moonbus: played ([\d.]+) s on (.*?) \((\d+)-frame buffers.*?\): "
                  r"(\d+) xruns, (\d+) frames of late file input", se)
    return m


ref, ref_v = offline(chain_lua, os.path.join(d, "ref.wav"))
T.check(ref.shape[0] == SECONDS * RATE, "offline render is %d frames" % ref.shape[0])

for period in (256, 64):
    with jf.Jack(rate=RATE, period=period, name=SERVER) as j:
        rc, so, se, y = live(j, chain_lua)
    v = T.parse_emitted(so)
    T.check(rc == 0, "period %d: live exit %d %s" % (period, rc, se.strip()[-300:]))
    if rc != 0:
        continue
    m = summary_line(se)
    T.check(m is not None, "period %d: the summary reports xruns: %s" % (period, se.strip()[-200:]))
    if m:
        T.note("period %d: %s xruns, %s late input frames, %s-frame buffers (jackd saw %d xruns)"
               % (period, m.group(4), m.group(5), m.group(3), j.xruns))
    T.check(v.get("block") == period, "period %d: callbacks got %s frames" % (period, v.get("block")))
    T.check(v.get("latency") == ref_v.get("latency"),
            "period %d: reported latency %s = offline %s" % (period, v.get("latency"), ref_v.get("latency")))
    # Aligned on the first sound (the signal's first second is silence),
    # live output is the offline render delayed by the reported latency.
    r0 = jf.first_nonzero(y) - jf.first_nonzero(ref)
    T.check(r0 > 0, "period %d: recording began before the sound" % period)
    seg = y[r0:r0 + ref.shape[0]]
    T.check(seg.shape[0] == ref.shape[0],
            "period %d: recorded %d frames of signal (want %d)" % (period, seg.shape[0], ref.shape[0]))
    if seg.shape[0] == ref.shape[0]:
        err = np.abs(seg - ref).max()
        T.check(T.db(err) < -120, "period %d: live vs offline over %d s: null %.1f dBFS"
                % (period, SECONDS, T.db(err)))
        # the automation step at 12 s: where the offline render has it
        step = 12 * RATE
        jump_off = np.abs(np.diff(ref[step - 200:step + 200, 0])).argmax()
        jump_live = np.abs(np.diff(seg[step - 200:step + 200, 0])).argmax()
        T.check(jump_off == jump_live, "period %d: automation step at frame %d live, %d offline"
                % (period, step - 200 + jump_live, step - 200 + jump_off))
    tail = y[r0 + ref.shape[0]:]
    T.check(tail.size == 0 or np.abs(tail).max() < 1e-3,
            "period %d: after the signal only the limiter's release tail" % period)

# A parameter change from Lua reaches the audio within two periods.
base, _ = offline(param_lua, os.path.join(d, "p0.wav"), "0")
moved, _ = offline(param_lua, os.path.join(d, "p1.wav"), "1")
at_off = int(np.nonzero(np.abs(moved - base).max(1) > 1e-6)[0][0])
T.check(at_off == 5 * RATE, "offline: the change lands at frame %d" % at_off)
for period in (256, 64):
    with jf.Jack(rate=RATE, period=period, name=SERVER) as j:
        rc, so, se, y = live(j, param_lua, "1")
    T.check(rc == 0, "param, period %d: exit %d %s" % (period, rc, se.strip()[-300:]))
    r0 = jf.first_nonzero(y) - jf.first_nonzero(base)
    seg = y[r0:r0 + base.shape[0]]
    if rc != 0 or seg.shape[0] != base.shape[0]:
        continue
    at = int(np.nonzero(np.abs(seg - base).max(1) > 1e-6)[0][0])
    T.check(at_off <= at <= at_off + 2 * period,
            "period %d: set at 5 s, heard at frame %d, %d frames (%.2f periods) after the "
            "offline render" % (period, at, at - at_off, (at - at_off) / period))
    before = np.abs(seg[:at] - base[:at]).max()
    T.check(before == 0, "period %d: before the change the stream is bit-exact" % period)

# A/B audition: the original, level-matched, against the chain. The
# chain raises the level by 6 dB and brightens; switches at 4 s.
NOISE = os.path.join(d, "noise.wav")
nz = 0.1 * rng.standard_normal((9 * RATE, 2))
nz[:RATE] = 0
T.write(NOISE, nz, RATE)
AB = r"""
local s = mb.audition{ input = %s, start = "a", at = { {4, "b"} },
  chain = function(g, src)
    return g:chain(src, g:add("gain", { gain = 6 }),
      g:add("eq", { bands = { { type = "highshelf", freq = 4000, gain = 3 } } }))
  end }
emit("a_gain", s.a_gain)
""" % T.lua_str(NOISE)
ab_lua = script("ab.lua", AB)
with jf.Jack(rate=RATE, period=256, name=SERVER) as j:
    rc, so, se, y = live(j, ab_lua)
T.check(rc == 0, "audition: exit %d %s" % (rc, se.strip()[-300:]))
if rc == 0:
    r0 = jf.first_nonzero(y)  # the noise begins at 1 s of the file
    parts = {}
    for side, (t0, t1) in (("a", (0.3, 2.8)), ("b", (3.3, 7.8))):
        path = os.path.join(d, "ab_%s.wav" % side)
        T.write(path, y[r0 + int(t0 * RATE):r0 + int(t1 * RATE)], RATE)
        parts[side] = T.ffmpeg_r128(path)["I"]
    gap = parts["b"] - parts["a"]
    T.check(abs(gap) <= 0.2, "audition: A %.2f LUFS, B %.2f LUFS (ffmpeg): %.2f LU apart, "
            "the original played %+.2f dB" % (parts["a"], parts["b"], gap,
                                              T.parse_emitted(so).get("a_gain", 0)))

# The audio callback never allocates nor locks: a guard preloaded into the
# process aborts it if it does (not under ASan, which must come first).
GUARD = r"""
local g = mb.graph{ rate = 48000 }
local src = g:add("input", { path = %s })
local eq = g:add("eq", { bands = { { type = "bell", freq = 1000, gain = 2, q = 1 } } })
local comp = g:add("compressor", { threshold = -20, ratio = 3 })
local m = g:add("meter", {})
local lim = g:add("limiter", { ceiling = -1 })
local out = g:add("device_out", {})
g:chain(src, eq, comp, m, lim, out)
comp:automate("threshold", { {0, -20}, {3, -30} })
local extra, reads = nil, 0
g:every(0.05, function(t)
  eq.gain1 = -3 + 6 * math.sin(t)       -- parameter changes
  lim.ceiling = -1 - t / 10
  if m.integrated then reads = reads + 1 end   -- meter reads
  local _ = comp.max_gain_reduction
  if t == 1 then                          -- graph swap 1: insert a node
    extra = g:add("saturate", { drive = 6 })
    g:disconnect(comp, m); g:connect(comp, extra); g:connect(extra, m)
  elseif t == 2 then                      -- graph swap 2: take it out
    g:remove(extra); g:connect(comp, m)
  end
end)
local s = g:play{ duration = 3 }
emit("swaps", s.swaps)
emit("reads", reads)
emit("callbacks", s.callbacks)
""" % T.lua_str(IN)
guard_lua = script("guard.lua", GUARD)
if os.environ.get("MOONBUS_SANITIZED"):
    T.note("allocation guard skipped under AddressSanitizer (it owns malloc)")
elif not os.environ.get("RTGUARD"):
    T.check(False, "RTGUARD (the guard library) is not set")
else:
    # the guard itself can fail: an allocation inside it aborts
    probe = subprocess.run(["/usr/bin/python3", "-c",
                            "import ctypes; g = ctypes.CDLL(None).moonbus_rt_guard; "
                            "g(1); x = [0] * 100000"],
                           env=dict(os.environ, LD_PRELOAD=os.environ["RTGUARD"]),
                           capture_output=True, text=True)
    T.check(probe.returncode == -signal.SIGABRT and "rtguard: " in probe.stderr,
            "the guard aborts an allocation made inside it (exit %d, %r)"
            % (probe.returncode, probe.stderr.strip()[-120:]))
    report = os.path.join(d, "guard.txt")
    with jf.Jack(rate=RATE, period=64, name=SERVER) as j:
        env = dict(j.env, LD_PRELOAD=os.environ["RTGUARD"], RTGUARD_REPORT=report)
        rc, so, se = moonbus(["live", guard_lua], env)
    v = T.parse_emitted(so)
    T.check(rc == 0, "guarded run: exit %d (a trip aborts) %s" % (rc, se.strip()[-400:]))
    guarded = int(open(report).read()) if os.path.exists(report) else 0
    T.check(guarded > 1000, "the guard watched %d callbacks" % guarded)
    T.check(v.get("swaps") == 2, "two graph swaps while guarded (%s)" % v.get("swaps"))
    T.check((v.get("reads") or 0) > 50, "meter read %s times while playing" % v.get("reads"))

# The server disappears mid-run: one clear error within a few seconds, and
# no output file left.
DEATH = r"""
local g = mb.graph{ rate = 48000 }
local t = g:add("tone", { freq = 440, duration = 60 })
g:connect(t, g:add("output", { path = "dead.wav" }))
g:connect(t, g:add("device_out", {}))
g:play{}
"""
death_lua = script("death.lua", DEATH)
with jf.Jack(rate=RATE, period=256, name=SERVER) as j:
    p = subprocess.Popen([T.MOONBUS, "run", death_lua], env=j.env, cwd=d,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    alive = p.poll() is None
    j.kill()
    t_kill = time.time()
    try:
        so, se = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        so, se = p.communicate()
    waited = time.time() - t_kill
T.check(alive, "playing before the kill")
lines = [l for l in se.strip().splitlines() if l]
T.check(p.returncode == 1, "server killed: exit %s" % p.returncode)
T.check(waited < 8, "server killed: exited %.1f s later" % waited)
T.check(len(lines) == 1 and lines[0].startswith("moonbus: "),
        "server killed: one error line: %r" % se.strip()[-300:])
T.check(not any("dead.wav" in f for f in os.listdir(d)),
        "server killed: no output or temporary file left (%s)" % sorted(os.listdir(d)))

# SIGINT: a clean stop that keeps what was played.
ENDLESS = r"""
local g = mb.graph{ rate = 48000 }
local t = g:add("tone", { freq = 440 })
g:connect(t, g:add("output", { path = "kept.wav", bits = 24 }))
g:connect(t, g:add("device_out", {}))
local s = g:play{}
emit("interrupted", tostring(s.interrupted))
emit("seconds", s.seconds)
"""
endless_lua = script("endless.lua", ENDLESS)
with jf.Jack(rate=RATE, period=256, name=SERVER) as j:
    p = subprocess.Popen([T.MOONBUS, "run", endless_lua], env=j.env, cwd=d,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    p.send_signal(signal.SIGINT)
    try:
        so, se = p.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        so, se = p.communicate()
v = T.parse_emitted(so)
T.check(p.returncode == 0, "SIGINT: exit %s %s" % (p.returncode, se.strip()[-200:]))
T.check(v.get("interrupted") == "true", "SIGINT: stats.interrupted")
kept = os.path.join(d, "kept.wav")
if os.path.exists(kept):
    k, _ = T.read(kept)
    T.check(abs(k.shape[0] / RATE - v.get("seconds", -1)) < 0.01 and k.shape[0] > 0.5 * RATE,
            "SIGINT: the recording keeps the %.2f s played (%d frames)" % (v.get("seconds", -1), k.shape[0]))
else:
    T.check(False, "SIGINT: the recording was kept")

# Bad devices: one line, exit 1.
BAD = r"""
local g = mb.graph{ rate = %s }
local t = g:add("tone", { freq = 440, duration = 1 })
g:connect(t, g:add("device_out", %s))
g:play{}
"""


def bad(name, rate, opts, want, env):
    path = script("bad_%s.lua" % name, BAD % (rate, opts))
    rc, so, se = moonbus(["run", path], env, timeout=30)
    lines = [l for l in se.strip().splitlines() if l]
    T.check(rc == 1 and len(lines) == 1 and lines[0].startswith("moonbus: ")
            and re.search(want, lines[0]) is not None,
            "%s: exit %d, %r" % (name, rc, se.strip()[-300:]))


no_server = dict(os.environ, JACK_NO_START_SERVER="1", JACK_DEFAULT_SERVER="mb-none-%d" % os.getpid())
bad("no device", 48000, "{}", r"no audio output device", no_server)
with jf.Jack(rate=RATE, period=256, name=SERVER) as j:
    bad("wrong name", 48000, '{ device = "nope" }', r"no audio output device named 'nope'", j.env)
    bad("wrong number", 48000, '{ device = "7" }', r"no audio device number 7", j.env)
    bad("wrong rate", 44100, "{}", r"44100 Hz", j.env)
    bad("too many channels", 48000, "{ channels = 4 }", r"4 channels.*2 output channels", j.env)
    # live input: the dummy driver's capture ports (silence) through a
    # chain to the output for one second, with its duration honoured
    duplex = script("duplex.lua", r"""
local g = mb.graph{ rate = 48000 }
local src = g:add("device_in", {})
local s = g:chain(src, g:add("gain", { gain = -3 }), g:add("device_out", {}))
local st = g:play{ duration = 1 }
emit("seconds", st.seconds)
emit("channels", src.channels)
""")
    rc, so, se = moonbus(["run", duplex], j.env)
    v = T.parse_emitted(so)
    T.check(rc == 0 and v.get("seconds") == 1.0,
            "device_in to device_out for duration 1: exit %d, %s s %s" % (rc, v.get("seconds"), se.strip()[-200:]))
    # a control callback failing while playing: one line, nothing written
    failing = script("failing.lua", r"""
local g = mb.graph{}
local s = g:add("input", { path = %s })
g:connect(s, g:add("output", { path = "failed.wav" }))
g:every(1, function(t) if t == 1 then error("boom") end end)
g:play{}
""" % T.lua_str(SINE))
    rc, so, se = moonbus(["run", failing], j.env, timeout=30)
    lines = [l for l in se.strip().splitlines() if l]
    T.check(rc == 1 and len(lines) == 1 and "boom" in lines[0],
            "callback error while playing: exit %d, %r" % (rc, se.strip()[-200:]))
    T.check(not any("failed.wav" in f for f in os.listdir(d)),
            "callback error while playing: no output or temporary file left")
    rc, so, se = moonbus(["live", "--devices"], j.env)
    T.check(rc == 0 and "JACK" in so and "system" in so, "live --devices lists JACK's system: %r" % so)

T.finish()
