#!/usr/bin/python3
"""Acceptance: the command-line contract (DESIGN.md, "CLI contract").

  moonbus run SCRIPT.lua [ARGS...] | measure FILE... [--json] |
  modules [KIND] [--json] | demo [OUT] | --help | --version

Exit 0 on success, 1 on a runtime error, 2 on a usage error; every error is
one line on stderr starting "moonbus:"; a script error shows the script's
file and line. Loudness figures are checked against ffmpeg's ebur128 filter
(not against moonbus's own measuring). Long renders show progress on a
terminal and stay quiet when stderr is not one; a clipped integer output
prints a one-line warning.

Environment: MOONBUS (the executable), MOONBUS_SRC (the source tree).
"""
import json
import os
import pty
import re
import select
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbtest as T  # noqa: E402

check = T.check
PRELUDE_LINES = T.PRELUDE.count("\n")


def one_line(err):
    lines = err.split("\n")
    return err.endswith("\n") and len(lines) == 2 and lines[0].startswith("moonbus: ")


def expect_error(what, args, code, names=(), suggest=None, cwd=None):
    rc, out, err = T.run(args, cwd=cwd)
    check(rc == code, "%s: exit status %d (got %d)" % (what, code, rc))
    check(one_line(err), "%s: one 'moonbus: ' line on stderr: %r" % (what, err[:400]))
    missing = [n for n in names if n not in err]
    check(not missing, "%s: message names %s: %r" % (what, list(names), err[:400]))
    if suggest:
        hint = "did you mean '%s'" % suggest
        check(hint in err, "%s: suggests %r: %r" % (what, hint, err[:400]))
    return rc, out, err


def ffmpeg_loudness(path):
    """(integrated LUFS with 3 decimals, true peak dBTP, LRA) from ffmpeg."""
    p = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-i", path, "-af",
         "ebur128=peak=true:metadata=1,ametadata=mode=print:key=lavfi.r128.I:file=-",
         "-f", "null", "-"], capture_output=True, text=True)
    vals = re.findall(r"lavfi\.r128\.I=(-?[\d.]+|-inf)", p.stdout)
    integ = float(vals[-1]) if vals else None
    tp = re.search(r"True peak:\s*\n\s*Peak:\s*(-?[\d.]+|-inf)", p.stderr)
    lra = re.search(r"LRA:\s*(-?[\d.]+)", p.stderr)
    summ = re.search(r"Integrated loudness:\s*\n\s*I:\s*(-?[\d.]+)", p.stderr)
    if integ is not None and summ:
        # the last per-frame figure is the programme's integrated loudness
        assert abs(integ - float(summ.group(1))) <= 0.051, (integ, summ.group(1))
    return (integ, float(tp.group(1)) if tp else None,
            float(lra.group(1)) if lra else None)


# ---- --help, --version, usage errors --------------------------------------

rc, out, err = T.run(["--help"])
check(rc == 0, "--help: exit 0 (got %d)" % rc)
check("usage" in out.lower() and all(c in out for c in ("run", "measure", "modules", "demo")),
      "--help: usage on stdout naming run, measure, modules, demo: %r" % out[:300])
check(err == "", "--help: nothing on stderr: %r" % err[:200])

rc, out, err = T.run(["--version"])
check(rc == 0, "--version: exit 0 (got %d)" % rc)
check(re.fullmatch(r"moonbus \d+\.\d+\.\d+\S*\n", out) is not None,
      "--version: 'moonbus X.Y.Z' on stdout: %r" % out)
check(err == "", "--version: nothing on stderr: %r" % err[:200])

rc, out, err = T.run([])
check(rc == 2, "no arguments: exit 2 (got %d)" % rc)
check(err.startswith("moonbus") or "usage" in err.lower(),
      "no arguments: usage or a moonbus: line on stderr: %r" % err[:200])
check(out == "", "no arguments: nothing on stdout: %r" % out[:200])

expect_error("unknown command 'mesure'", ["mesure", "x.wav"], 2, ["mesure"], suggest="measure")
expect_error("unknown command 'frobnicate'", ["frobnicate"], 2, ["frobnicate"])
expect_error("run without a script", ["run"], 2)
expect_error("run a missing script", ["run", "no-such-script.lua"], 1, ["no-such-script.lua"])
expect_error("measure without files", ["measure"], 2)
expect_error("measure with a bad flag", ["measure", "--jsn", "x.wav"], 2, ["--jsn"])
expect_error("modules with a bad flag", ["modules", "--jason"], 2, ["--jason"])
expect_error("modules with two kinds", ["modules", "eq", "gain"], 2)

for cmd in ("measure", "modules", "demo"):
    rc, out, err = T.run([cmd, "--help"])
    check(rc == 0 and "usage" in out.lower() and err == "",
          "%s --help: exit 0 with usage on stdout (rc %d, out %r, err %r)"
          % (cmd, rc, out[:120], err[:200]))

# ---- measure ------------------------------------------------------------------

d = T.tmpdir()
rate = 48000
rng = np.random.default_rng(1)
n = 12 * rate
noise = rng.standard_normal((n, 2))
noise *= 10 ** (-22 / 20)  # about -22 dBFS RMS
env = np.where(np.arange(n) < 6 * rate, 1.0, 10 ** (-8 / 20))[:, None]  # a quieter half: LRA > 0
tone = 0.3 * np.sin(2 * np.pi * 997 * np.arange(n) / rate)[:, None]
x = (noise + tone) * env
mfile = os.path.join(d, "measure me.wav")
T.write(mfile, x, rate, subtype="PCM_24")
quiet = os.path.join(d, "quiet.flac")
T.write(quiet, x[: 4 * rate] * 0.1, rate, subtype="PCM_16")

rc, out, err = T.run(["measure", mfile, "--json"])
check(rc == 0, "measure --json: exit 0 (got %d, %r)" % (rc, err[:300]))
try:
    res = json.loads(out)
except ValueError:
    res = None
check(isinstance(res, list) and len(res) == 1,
      "measure --json: a JSON list of one result: %r" % out[:300])
if isinstance(res, list) and res:
    m = res[0]
    keys = ["path", "integrated", "lra", "true_peak", "sample_peak", "duration", "rate", "channels"]
    check(all(k in m for k in keys), "measure --json: keys %s present: %s" % (keys, sorted(m)))
    fi, ftp, flra = ffmpeg_loudness(mfile)
    if "integrated" in m and fi is not None:
        check(abs(m["integrated"] - fi) <= 0.1,
              "measure: integrated %.3f LUFS vs ffmpeg %.3f (within 0.1 LU)" % (m["integrated"], fi))
    if "true_peak" in m:
        # reference: 32x band-limited interpolation (scipy); BS.1770's 4x
        # interpolator may read a little low, ffmpeg's reads a little high
        from scipy import signal
        ref = 20 * np.log10(np.max(np.abs(signal.resample_poly(
            T.read(mfile)[0], 32, 1, axis=0, window=("kaiser", 10)))))
        check(abs(m["true_peak"] - ref) <= 0.3,
              "measure: true peak %.2f dBTP vs %.2f (32x oversampled; ffmpeg %s) within 0.3 dB"
              % (m["true_peak"], ref, ftp))
    if "lra" in m and flra is not None:
        check(abs(m["lra"] - flra) <= 0.5,
              "measure: LRA %.2f LU vs ffmpeg %.1f (within 0.5 LU)" % (m["lra"], flra))
    sp = 20 * np.log10(np.max(np.abs(T.read(mfile)[0])))
    if "sample_peak" in m:
        check(abs(m["sample_peak"] - sp) <= 0.01,
              "measure: sample peak %.3f dBFS vs numpy %.3f" % (m["sample_peak"], sp))
    check(m.get("path") == mfile, "measure: path %r" % m.get("path"))
    check(abs(m.get("duration", 0) - 12.0) < 1e-6, "measure: duration %r s (12)" % m.get("duration"))
    check(m.get("rate") == 48000 and m.get("channels") == 2,
          "measure: rate %r, channels %r" % (m.get("rate"), m.get("channels")))

rc, out, err = T.run(["measure", mfile, quiet, "--json"])
try:
    res = json.loads(out)
except ValueError:
    res = None
check(rc == 0 and isinstance(res, list) and len(res) == 2 and res[1].get("path") == quiet,
      "measure two files --json: two results in order (rc %d, %r)" % (rc, out[:300]))
if isinstance(res, list) and len(res) == 2:
    qi = ffmpeg_loudness(quiet)[0]
    check(abs(res[1].get("integrated", 0) - qi) <= 0.1,
          "measure: FLAC integrated %r vs ffmpeg %.3f" % (res[1].get("integrated"), qi))

rc, out, err = T.run(["measure", mfile])
check(rc == 0 and mfile in out and err == "",
      "measure (table): exit 0, names the file (rc %d, %r, err %r)" % (rc, out[:300], err[:200]))

expect_error("measure a missing file", ["measure", os.path.join(d, "gone.wav")], 1, ["gone.wav"])
with open(os.path.join(d, "text.wav"), "w") as f:
    f.write("not audio\n" * 50)
expect_error("measure a file that is not audio", ["measure", os.path.join(d, "text.wav")], 1,
             ["text.wav"])

# ---- modules ------------------------------------------------------------------

rc, out, err = T.run(["modules"])
check(rc == 0 and err == "", "modules: exit 0 (rc %d, err %r)" % (rc, err[:200]))
text_names = [l.split()[0] for l in out.splitlines() if l.strip()]

rc, out, err = T.run(["modules", "--json"])
check(rc == 0, "modules --json: exit 0 (rc %d, err %r)" % (rc, err[:200]))
try:
    mods = json.loads(out)
except ValueError:
    mods = None
check(isinstance(mods, list) and mods, "modules --json: a JSON list: %r" % out[:200])
mods = mods if isinstance(mods, list) else []
by_name = {m.get("name"): m for m in mods if isinstance(m, dict)}
check(sorted(by_name) == sorted(text_names),
      "modules --json lists the same modules as the text listing: %s vs %s"
      % (sorted(by_name), sorted(text_names)))
bad = [m.get("name") for m in mods
       if not isinstance(m.get("params"), list)
       or not all(isinstance(p, dict) and "name" in p and "type" in p for p in m["params"])]
check(not bad, "modules --json: every module has a params list of {name, type, ...}: bad %s" % bad)
bad = [m.get("name") for m in mods
       if not (isinstance(m.get("inputs"), list) and all(isinstance(i, str) for i in m["inputs"]))]
check(not bad, "modules --json: every module has an inputs list (maybe empty): bad %s" % bad)
# the modules the brief and DESIGN.md name, and what the Lua library and the
# demo build with
required = {
    "input": ["path"], "output": ["path", "bits", "rate"],
    "tone": ["wave", "freq", "level", "duration", "channels"], "gain": ["gain", "invert"],
    "eq": ["type1", "freq1", "gain1", "q1"], "pan": ["pan", "law"],
    "width": ["width", "mono_below"], "blend": ["mix"], "ms_encode": [], "ms_decode": [],
    "channels": [], "merge": [], "meter": [], "lua": ["channels"],
}
for name, params in required.items():
    m = by_name.get(name)
    have = [p.get("name") for p in m.get("params") or [] if isinstance(p, dict)] if m else []
    missing = [p for p in params if p not in have]
    check(m is not None and not missing,
          "modules --json: %s listed with params %s (missing %s)"
          % (name, params, "the module" if m is None else missing))
for m in mods:
    for p in m.get("params") or []:
        if p.get("type") in ("number", "integer"):
            if not (isinstance(p.get("min"), (int, float)) and isinstance(p.get("max"), (int, float))
                    and p["min"] <= p.get("default", p["min"]) <= p["max"]):
                check(False, "modules --json: %s.%s has min <= default <= max: %r"
                      % (m["name"], p.get("name"), p))
        if p.get("type") == "choice":
            if not (p.get("choices") and p.get("default") in p["choices"]):
                check(False, "modules --json: %s.%s lists choices with the default among them: %r"
                      % (m["name"], p.get("name"), p))
bl = by_name.get("blend", {})
check(bl.get("inputs") == ["dry", "wet"], "modules --json: blend inputs %r" % bl.get("inputs"))

rc, out, err = T.run(["modules", "eq"])
check(rc == 0 and err == "", "modules eq: exit 0 (rc %d, err %r)" % (rc, err[:200]))
check(out.startswith("eq") and all(w in out for w in ("type<i>", "freq<i>", "gain<i>", "q<i>", "bell")),
      "modules eq: describes eq and its band parameters: %r" % out[:300])
rc, out, err = T.run(["modules", "eq", "--json"])
try:
    one = json.loads(out)
except ValueError:
    one = None
check(rc == 0 and isinstance(one, dict) and one.get("name") == "eq",
      "modules eq --json: one JSON object for eq: %r" % out[:200])
expect_error("modules eqq", ["modules", "eqq"], 1, ["eqq"], suggest="eq")

# ---- run: arguments and error positions ---------------------------------------

d = T.tmpdir()
rc, out, err = T.run_lua('''
emit("a0", arg[0]); emit("a1", arg[1]); emit("a2", arg[2]); emit("n", #arg)
local v1, v2 = ...
emit("v1", v1); emit("v2", v2); emit("mb", type(mb)); emit("req", rawequal(mb, require "moonbus"))
''', cwd=d, args=["first arg", "--flag"])
v = T.parse_emitted(out)
check(rc == 0 and err == "", "run: exit 0, quiet stderr (rc %d, %r)" % (rc, err[:300]))
check(v.get("a0") == os.path.join(d, "script.lua"), "run: arg[0] is the script path: %r" % v.get("a0"))
check(v.get("a1") == "first arg" and v.get("a2") == "--flag" and v.get("n") == 2,
      "run: arg[1], arg[2], #arg: %r %r %r" % (v.get("a1"), v.get("a2"), v.get("n")))
check(v.get("v1") == "first arg" and v.get("v2") == "--flag", "run: ... holds the args too: %r" % v)
check(v.get("mb") == "table" and v.get("req") == "true",
      "run: the global mb is require 'moonbus': %r %r" % (v.get("mb"), v.get("req")))

# the script path as given on the command line, relative to the cwd
with open(os.path.join(d, "rel.lua"), "w") as f:
    f.write('print(arg[0])\n')
rc, out, err = T.run(["run", "rel.lua"], cwd=d)
check(rc == 0 and out == "rel.lua\n", "run: arg[0] as given (rel.lua): %r" % out)


def script_error(what, body, line, names=()):
    dd = T.tmpdir()
    with open(os.path.join(dd, "script.lua"), "w") as f:
        f.write(body)
    rc, out, err = T.run(["run", "script.lua"], cwd=dd)
    want = "moonbus: script.lua:%d: " % line
    check(rc == 1, "%s: exit 1 (got %d)" % (what, rc))
    check(one_line(err) and err.startswith(want),
          "%s: one line starting %r: %r" % (what, want, err[:400]))
    missing = [n for n in names if n not in err]
    check(not missing, "%s: names %s: %r" % (what, list(names), err[:400]))


script_error("syntax error", 'local g = mb.graph{}\n\nlocal x = = 1\n', 3)
script_error("syntax error at the end of the file", 'local g = mb.graph{}\nif true then\n', 3)
script_error("library error from a user call", 'local g = mb.graph{}\n\ng:add("eqq")\n', 3,
             ["eqq", "did you mean 'eq'"])
script_error("library error from a Lua-side helper",
             'local g = mb.graph{}\nlocal t = g:add("gain")\nlocal out = mb.ms.process(g, t, {mdi = {}})\n',
             3, ["mdi", "did you mean 'mid'"])
script_error("library error inside a user function: the innermost user line",
             'local g = mb.graph{}\nlocal function build(kind)\n  return g:add(kind)\nend\nbuild("gian")\n',
             3, ["gian"])
script_error("runtime error", 'local t = nil\n\n\nprint(t.x)\n', 4, ["nil"])
script_error("param error by assignment", 'local g = mb.graph{}\nlocal v = g:add("gain")\nv.gain = 1000\n',
             3, ["gain", "1000"])

# a user's own module: the position is that file's line
dd = T.tmpdir()
with open(os.path.join(dd, "helper.lua"), "w") as f:
    f.write('local M = {}\nfunction M.go(g)\n  return g:add("gainn")\nend\nreturn M\n')
with open(os.path.join(dd, "script.lua"), "w") as f:
    f.write('package.path = "./?.lua;" .. package.path\nlocal h = require "helper"\n'
            'h.go(mb.graph{})\n')
rc, out, err = T.run(["run", "script.lua"], cwd=dd)
check(rc == 1 and one_line(err) and re.search(r"helper\.lua:3: .*gainn", err) is not None,
      "error in the user's own module names helper.lua:3: %r" % err[:300])

# ---- demo ---------------------------------------------------------------------

d = T.tmpdir()
demo = os.path.join(d, "demo out.wav")
rc, out, err = T.run(["demo", demo], cwd=d)
check(rc == 0, "demo: exit 0 (got %d, %r)" % (rc, err[:300]))
check(os.path.isfile(demo), "demo: wrote %s" % demo)
check(err == "", "demo: nothing on stderr when it is not a terminal: %r" % err[:300])
mi = re.search(r"integrated\s+(-?\d+(?:\.\d+)?)\s*LUFS", out)
check(mi is not None, "demo: prints the integrated loudness: %r" % out[:600])
if mi and os.path.isfile(demo):
    fi = ffmpeg_loudness(demo)[0]
    check(fi is not None and abs(float(mi.group(1)) - fi) <= 0.1,
          "demo: printed integrated %s LUFS vs ffmpeg %r (within 0.1 LU)" % (mi.group(1), fi))
    check(len(T.read(demo)[0]) > 48000, "demo: the file holds audio")
left = sorted(f for f in os.listdir(d) if f != os.path.basename(demo))
check(left == ["demo out-mix.wav", "demo out-stems"],
      "demo: beside the master only its mix and stems folder: %s" % left)

# ---- progress and clipping ------------------------------------------------

LONG = '''
local g = mb.graph{rate = 48000}
local t = g:add("tone", {wave = "pink", duration = %g, channels = 2, level = -20})
local m = g:add("meter")
g:chain(t, m)
local s = g:render()
emit("wall", s.wall)
'''
# a render (to a meter: no big file) long enough to take over 1.5 s here
secs = 300.0
for attempt in range(4):
    d = T.tmpdir()
    rc, out, err = T.run_lua(LONG % secs, cwd=d)
    wall = T.parse_emitted(out).get("wall", 0)
    if rc != 0 or wall >= 1.5:
        break
    secs = min(86400.0, secs * 2.5 / max(wall, 0.05))
check(rc == 0, "long render: exit 0 (rc %d, %r)" % (rc, err[:200]))
check(wall > 1.0, "long render takes > 1 s (%.2f s for %g s of audio), so a terminal "
      "would show progress" % (wall, secs))
check(err == "", "long render: no progress output when stderr is not a terminal: %r" % err[:200])

# the same render with stderr on a terminal shows progress
d = T.tmpdir()
with open(os.path.join(d, "script.lua"), "w") as f:
    f.write(T.PRELUDE + LONG % secs)
master, slave = pty.openpty()
p = subprocess.Popen([T.MOONBUS, "run", "script.lua"], cwd=d, stdout=subprocess.PIPE,
                     stderr=slave, stdin=subprocess.DEVNULL)
os.close(slave)
tty = b""
while True:
    r, _, _ = select.select([master], [], [], 120)
    if not r:
        break
    try:
        chunk = os.read(master, 4096)
    except OSError:
        break
    if not chunk:
        break
    tty += chunk
p.wait(timeout=300)
os.close(master)
check(p.returncode == 0 and b"%" in tty,
      "long render: progress shown when stderr is a terminal (rc %d, %r)" % (p.returncode, tty[-200:]))

CLIP = '''
local g = mb.graph{rate = 48000}
local t = g:add("tone", {wave = "sine", freq = 1000, level = -6, duration = 1, channels = 2})
g:chain(t, g:add("gain", {gain = 12}), g:add("output", {path = "%s", bits = %d}))
g:render()
'''
amp = 10 ** (-6 / 20) * 10 ** (12 / 20)
ph = 2 * np.pi * 1000 * np.arange(48000) / 48000
expected = 2 * min(np.count_nonzero(np.abs(amp * np.sin(ph)) > 1),
                   np.count_nonzero(np.abs(amp * np.cos(ph)) > 1))
for bits in (16, 24):
    d = T.tmpdir()
    rc, out, err = T.run_lua(CLIP % ("hot.wav", bits), cwd=d)
    check(rc == 0, "clipped %d-bit output: exit 0 (got %d)" % (bits, rc))
    check(os.path.isfile(os.path.join(d, "hot.wav")), "clipped %d-bit output: the file is written" % bits)
    check(one_line(err) and "hot.wav" in err and "clipped" in err,
          "clipped %d-bit output: one 'moonbus:' warning naming the file and 'clipped': %r" % (bits, err))
    nums = [int(s) for s in re.findall(r"\b(\d{4,})\b", err)]
    check(any(abs(k - expected) <= 0.02 * expected for k in nums),
          "clipped %d-bit output: the warning gives the count (about %d): %r" % (bits, expected, err))
d = T.tmpdir()
rc, out, err = T.run_lua(CLIP % ("hot.wav", 32), cwd=d)
check(rc == 0 and err == "", "over-level 32-bit float output: no clipping warning (rc %d, %r)" % (rc, err))

T.finish()
