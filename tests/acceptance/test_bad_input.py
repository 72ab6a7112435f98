#!/usr/bin/python3
"""Acceptance: bad input fails cleanly and safely.

The issue: "Bad input, each a test: missing file, a file that is not audio,
a truncated WAV, an empty file, an unknown module, an unknown or misspelt
parameter, an out-of-range or wrongly-typed value, a cycle, a script syntax
error, an error inside a control callback, a missing output folder, an
output path equal to an input. Each gives one clear `moonbus:` line naming
the culprit, a non-zero exit, and no file left under the output's name."

Every case is a script that would otherwise write out.wav (the output node
is made first, so a sink exists when the error strikes). For each we check:
exit status 1; stderr is exactly one line starting "moonbus: "; that line
names the culprit (path, module, parameter, value, range, the nodes of a
cycle) and, for a misspelling, suggests the right word; it carries the
script's file and the line of the offending call ("script.lua:N:"); the
folder holds exactly the files it held before (no output, no temporary
file) and every one of them is byte-identical (inputs never modified).
A last case interrupts a long render with SIGINT.

Environment: MOONBUS (the executable), MOONBUS_SRC (the source tree).
"""
import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbtest as T  # noqa: E402

PRELUDE_LINES = T.PRELUDE.count("\n")
HEAD = 'local g = mb.graph{rate = 48000}\nlocal out = g:add("output", {path = "out.wav", bits = 24})\n'


def snapshot(d):
    """{relative path: sha256} of every file under d (hidden ones too)."""
    snap = {}
    for root, dirs, files in os.walk(d):
        for f in files + [x for x in dirs if os.path.islink(os.path.join(root, x))]:
            p = os.path.join(root, f)
            rel = os.path.relpath(p, d)
            if rel == "script.lua":
                continue
            if os.path.isfile(p):
                with open(p, "rb") as fh:
                    snap[rel] = hashlib.sha256(fh.read()).hexdigest()
            else:
                snap[rel] = "link"
        for x in dirs:
            snap[os.path.relpath(os.path.join(root, x), d) + "/"] = "dir"
    return snap


def make_inputs(d):
    t = np.arange(48000) / 48000.0
    x = 0.5 * np.sin(2 * np.pi * 1000 * t)
    T.write(os.path.join(d, "in.wav"), np.stack([x, x], 1), 48000, subtype="PCM_24")
    with open(os.path.join(d, "in.wav"), "rb") as f:
        wav = f.read()
    with open(os.path.join(d, "notaudio.wav"), "w") as f:
        f.write("This is a text file, not a sound file.\n" * 20)
    with open(os.path.join(d, "trunc.wav"), "wb") as f:
        f.write(wav[:1000])  # header promises 48000 frames
    with open(os.path.join(d, "trunchead.wav"), "wb") as f:
        f.write(wav[:30])  # not even a whole header
    open(os.path.join(d, "empty.wav"), "wb").close()
    # a RIFF/WAVE header that claims 0 channels
    import struct
    data = b"\0" * 400
    fmt = struct.pack("<HHIIHH", 1, 0, 48000, 0, 0, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    with open(os.path.join(d, "zerochan.wav"), "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", len(body)) + body)
    os.mkdir(os.path.join(d, "adir"))
    os.mkdir(os.path.join(d, "taken.wav"))  # a folder under an output's name
    os.symlink("in.wav", os.path.join(d, "link.wav"))


def marked_lines(script):
    """Line numbers (in the file run_lua writes) of the lines marked --@:
    where the error may be reported (at the call, or at the render)."""
    return [PRELUDE_LINES + i + 1 for i, line in enumerate(script.split("\n"))
            if "--@" in line]


def case(name, script, expect, suggest=None, line=True, setup=None):
    d = T.tmpdir()
    make_inputs(d)
    if setup:
        setup(d)
    before = snapshot(d)
    rc, out, err = T.run_lua(script, cwd=d, timeout=120)
    after = snapshot(d)
    lines = err.split("\n")
    msg = lines[0]
    ok_one = err.endswith("\n") and len(lines) == 2 and msg.startswith("moonbus: ")
    T.check(rc == 1, "%s: exit status 1 (got %d)" % (name, rc))
    T.check(ok_one, "%s: exactly one 'moonbus: ' line on stderr (got %r)" % (name, err[:500]))
    missing = [e for e in expect if e not in msg]
    T.check(not missing, "%s: message names %s (missing %s): %r" % (name, expect, missing, msg))
    if suggest:
        hint = "did you mean '%s'" % suggest
        T.check(hint in msg and msg.count("did you mean") == 1,
                "%s: suggests %r once: %r" % (name, hint, msg))
    if line:
        want = ["script.lua:%d:" % n for n in marked_lines(script)]
        T.check(any(w in msg for w in want),
                "%s: message gives the script line (%s): %r" % (name, " or ".join(want), msg))
    new = sorted(set(after) - set(before))
    gone = sorted(set(before) - set(after))
    changed = sorted(k for k in before if k in after and before[k] != after[k])
    T.check(not new, "%s: no file left behind (new: %s)" % (name, new))
    T.check(not gone and not changed,
            "%s: existing files untouched (removed %s, changed %s)" % (name, gone, changed))


# ---- files ---------------------------------------------------------------

case("missing input file", HEAD + '''
local src = g:add("input", {path = "missing.wav"}) --@
g:chain(src, out)
g:render() --@
''', ["missing.wav"])

case("input that is not audio", HEAD + '''
local src = g:add("input", {path = "notaudio.wav"}) --@
g:chain(src, out)
g:render() --@
''', ["notaudio.wav"])

case("truncated WAV (data cut short)", HEAD + '''
local src = g:add("input", {path = "trunc.wav"}) --@
g:chain(src, out)
g:render() --@
''', ["trunc.wav", "truncated"])

case("truncated WAV (header cut short)", HEAD + '''
local src = g:add("input", {path = "trunchead.wav"}) --@
g:chain(src, out)
g:render() --@
''', ["trunchead.wav"])

case("empty input file", HEAD + '''
local src = g:add("input", {path = "empty.wav"}) --@
g:chain(src, out)
g:render() --@
''', ["empty.wav", "empty"])

case("input with 0 channels", HEAD + '''
local src = g:add("input", {path = "zerochan.wav"}) --@
g:chain(src, out)
g:render() --@
''', ["zerochan.wav"])

case("input path is a folder", HEAD + '''
local src = g:add("input", {path = "adir"}) --@
g:chain(src, out)
g:render() --@
''', ["adir"])

case("input path of the wrong type", HEAD + '''
local src = g:add("input", {path = 42}) --@
g:chain(src, out)
g:render()
''', ["path", "string", "number"])

case("mb.measure of a missing file", HEAD + '''
local m = mb.measure("missing.wav") --@
''', ["missing.wav"])

# ---- modules, options, parameters --------------------------------------

case("unknown module", HEAD + '''
local src = g:add("input", {path = "in.wav"})
local eq = g:add("eqq", {}) --@
g:chain(src, eq, out)
g:render()
''', ["'eqq'"], suggest="eq")

case("misspelt option of g:add", HEAD + '''
local src = g:add("input", {path = "in.wav"})
local v = g:add("gain", {gian = -3}) --@
g:chain(src, v, out)
g:render()
''', ["gian"], suggest="gain")

case("misspelt parameter assignment", HEAD + '''
local src = g:add("input", {path = "in.wav"})
local v = g:add("gain", {name = "trim"})
v.gian = -3 --@
g:chain(src, v, out)
g:render()
''', ["gian", "trim"], suggest="gain")

case("misspelt list option of eq", HEAD + '''
local src = g:add("input", {path = "in.wav"})
local eq = g:add("eq", {bnds = {{type = "bell", freq = 1000, gain = 3}}}) --@
g:chain(src, eq, out)
g:render()
''', ["bnds"], suggest="bands")

case("misspelt field of an eq band", HEAD + '''
local src = g:add("input", {path = "in.wav"})
local eq = g:add("eq", {bands = {{tpye = "bell", freq = 1000, gain = 3}}}) --@
g:chain(src, eq, out)
g:render()
''', ["tpye"], suggest="type")

case("misspelt choice", HEAD + '''
local src = g:add("input", {path = "in.wav"})
local eq = g:add("eq", {bands = {{type = "bel", freq = 1000, gain = 3}}}) --@
g:chain(src, eq, out)
g:render()
''', ["bel", '"lowshelf"', '"highpass"'], suggest="bell")

case("unknown parameter in automate", HEAD + '''
local src = g:add("input", {path = "in.wav"})
local v = g:add("gain", {})
v:automate("gian", {{0, 0}, {1, -6}}) --@
g:chain(src, v, out)
g:render()
''', ["gian"], suggest="gain")

case("out-of-range value", HEAD + '''
local src = g:add("input", {path = "in.wav"})
local v = g:add("gain", {name = "trim", gain = 500}) --@
g:chain(src, v, out)
g:render()
''', ["trim", "gain", "500", "-120", "48"])

case("out-of-range value by assignment", HEAD + '''
local src = g:add("input", {path = "in.wav"})
local eq = g:add("eq", {name = "tone eq", bands = {{type = "bell", freq = 1000}}})
eq.gain1 = -99 --@
g:chain(src, eq, out)
g:render()
''', ["tone eq", "gain1", "-99", "-30", "30"])

case("out-of-range automation value", HEAD + '''
local src = g:add("input", {path = "in.wav"})
local v = g:add("gain", {name = "trim"})
v:automate("gain", {{0, 0}, {0.5, 60}}) --@
g:chain(src, v, out)
g:render()
''', ["trim", "gain", "60", "48"])

case("wrongly-typed value", HEAD + '''
local src = g:add("input", {path = "in.wav"})
local v = g:add("gain", {name = "trim", gain = "loud"}) --@
g:chain(src, v, out)
g:render()
''', ["trim", "gain", "string"])

case("wrongly-typed boolean", HEAD + '''
local src = g:add("input", {path = "in.wav"})
local v = g:add("gain", {name = "trim", invert = 1}) --@
g:chain(src, v, out)
g:render()
''', ["trim", "invert"])

case("unknown graph option", '''
local g = mb.graph{rat = 48000} --@
''', ["rat"], suggest="rate")

case("unknown render option", HEAD + '''
local src = g:add("input", {path = "in.wav"})
g:chain(src, out)
g:render{duraton = 1} --@
''', ["duraton"], suggest="duration")

case("negative render duration", HEAD + '''
local src = g:add("input", {path = "in.wav"})
g:chain(src, out)
g:render{duration = -1} --@
''', ["duration"])

# ---- graph shape ---------------------------------------------------------

case("cycle", HEAD + '''
local src = g:add("input", {path = "in.wav"})
local a = g:add("gain", {name = "alpha"})
local b = g:add("gain", {name = "beta"})
local c = g:add("gain", {name = "gamma"})
g:chain(src, a, b, c, out)
g:connect(c, a) --@
g:render() --@
''', ["cycle", "alpha", "beta", "gamma"])

case("node connected to itself", HEAD + '''
local src = g:add("input", {path = "in.wav"})
local a = g:add("gain", {name = "loop"})
g:chain(src, a, out)
g:connect(a, a) --@
g:render() --@
''', ["cycle", "loop"])

case("nothing connected to an output", HEAD + '''
local src = g:add("input", {path = "in.wav"})
g:render() --@
''', ["output"])

case("connect to an unknown input name", HEAD + '''
local src = g:add("input", {path = "in.wav"})
local b = g:add("blend", {name = "mixer"})
g:connect(src, b, "dry")
g:connect(src, b, "wte") --@
g:chain(b, out)
g:render()
''', ["mixer", "wte"], suggest="wet")

case("connect into a node without inputs", HEAD + '''
local src = g:add("input", {path = "in.wav", name = "source"})
local v = g:add("gain", {})
g:connect(v, src) --@
g:render()
''', ["source"])

case("connect from a node without output", HEAD + '''
local src = g:add("input", {path = "in.wav"})
local v = g:add("gain", {})
g:chain(src, out)
g:connect(out, v) --@
g:render()
''', ["output"])

case("endless source without a render duration", HEAD + '''
local t = g:add("tone", {wave = "pink", duration = 0})
g:chain(t, out)
g:render() --@
''', ["duration"])

case("lua node without channels and nothing connected", HEAD + '''
local l = g:add("lua", {name = "gen", process = function(b) end})
g:chain(l, out)
g:render() --@
''', ["gen", "channels"])

# ---- scripts and callbacks ----------------------------------------------

case("script syntax error", HEAD + '''
local src = g:add("input", {path = "in.wav"})
g:chain(src, out)
local x = = 3 --@
g:render()
''', ["="])

case("error inside a control callback", HEAD + '''
local src = g:add("input", {path = "in.wav"})
g:chain(src, out)
g:every(0.1, function(t)
  if t > 0.3 then error("callback exploded") end --@
end)
g:render()
''', ["callback exploded"])

case("runtime error inside a control callback", HEAD + '''
local src = g:add("input", {path = "in.wav"})
g:chain(src, out)
g:every(0.1, function(t)
  if t > 0.3 then local x = nil; x.field = 1 end --@
end)
g:render()
''', ["nil value"])

case("out-of-range value set from a control callback", HEAD + '''
local src = g:add("input", {path = "in.wav"})
local v = g:add("gain", {name = "rider"})
g:chain(src, v, out)
g:every(0.1, function(t)
  if t > 0.3 then v.gain = 100 end --@
end)
g:render()
''', ["rider", "gain", "100"])

case("error inside a lua node's process function", HEAD + '''
local src = g:add("input", {path = "in.wav"})
local l = g:add("lua", {name = "proto", process = function(b)
  if b.time > 0.2 then error("block went wrong") end --@
end})
g:chain(src, l, out)
g:render()
''', ["proto", "block went wrong"])

case("error raised by the script after building", HEAD + '''
local src = g:add("input", {path = "in.wav"})
g:chain(src, out)
error("my own failure") --@
g:render()
''', ["my own failure"])

case("multi-line error message", HEAD + '''
local src = g:add("input", {path = "in.wav"})
g:chain(src, out)
error("first line\\nsecond line") --@
g:render()
''', ["first line"])

# ---- outputs -------------------------------------------------------------

case("missing output folder", '''
local g = mb.graph{rate = 48000}
local out = g:add("output", {path = "nodir/out.wav"}) --@
local src = g:add("input", {path = "in.wav"})
g:chain(src, out)
g:render() --@
''', ["nodir"])

case("output path equal to an input (output made first)", '''
local g = mb.graph{rate = 48000}
local out = g:add("output", {path = "in.wav"})
local src = g:add("input", {path = "in.wav"}) --@
local v = g:add("gain", {gain = -6})
g:chain(src, v, out)
g:render() --@
''', ["in.wav"])

case("output path equal to an input (input made first)", '''
local g = mb.graph{rate = 48000}
local src = g:add("input", {path = "in.wav"})
local out = g:add("output", {path = "in.wav"}) --@
local v = g:add("gain", {gain = -6})
g:chain(src, v, out)
g:render() --@
''', ["in.wav"])

case("output path equal to an input, spelt differently", '''
local g = mb.graph{rate = 48000}
local src = g:add("input", {path = "in.wav"})
local out = g:add("output", {path = "./adir/../in.wav"}) --@
g:chain(src, out)
g:render() --@
''', ["in.wav"])

case("output path equal to a convolver's impulse response", '''
local g = mb.graph{rate = 48000}
local src = g:add("tone", {wave = "sine", duration = 0.5})
local conv = g:add("convolver", {path = "in.wav"})
local out = g:add("output", {path = "./in.wav"}) --@
g:chain(src, conv, out) --@
g:render() --@
''', ["in.wav", "convolver"])

case("output path that is a symlink to an input", '''
local g = mb.graph{rate = 48000}
local src = g:add("input", {path = "in.wav"})
local out = g:add("output", {path = "link.wav"}) --@
g:chain(src, out)
g:render() --@
''', ["link.wav"])

case("output bits = 20", '''
local g = mb.graph{rate = 48000}
local out = g:add("output", {path = "out.wav", bits = 20}) --@
local src = g:add("input", {path = "in.wav"})
g:chain(src, out)
g:render()
''', ["bits", "20"])

case("output with an unknown extension (.mp4)", '''
local g = mb.graph{rate = 48000}
local out = g:add("output", {path = "out.mp4"}) --@
local src = g:add("input", {path = "in.wav"})
g:chain(src, out)
g:render() --@
''', ["out.mp4"])

case("output path of the wrong type", '''
local g = mb.graph{rate = 48000}
local out = g:add("output", {path = true}) --@
''', ["path", "string"])

case("output path is a folder", '''
local g = mb.graph{rate = 48000}
local out = g:add("output", {path = "taken.wav"}) --@
local src = g:add("input", {path = "in.wav"})
g:chain(src, out)
g:render() --@
''', ["taken.wav"])

case("output path without a file name", '''
local g = mb.graph{rate = 48000}
local out = g:add("output", {path = "adir/"}) --@
local src = g:add("input", {path = "in.wav"})
g:chain(src, out)
g:render() --@
''', ["adir"])

case("two outputs to one path", '''
local g = mb.graph{rate = 48000}
local src = g:add("input", {path = "in.wav"})
g:connect(src, g:add("output", {path = "out.wav"}))
g:connect(src, g:add("output", {path = "out.wav"})) --@
g:render() --@
''', ["out.wav"])

case("output sample rate out of range", '''
local g = mb.graph{rate = 48000}
local out = g:add("output", {path = "out.wav", rate = 5}) --@
local src = g:add("input", {path = "in.wav"})
g:chain(src, out)
g:render()
''', ["rate", "5"])


# ---- SIGINT during a long render ----------------------------------------

# ---- live-only pieces offline, and edits of removed nodes ----------------

case("device input in an offline render", HEAD + '''
local src = g:add("device_in", {})
g:chain(src, out)
g:render() --@
''', ["device_in", "live"])

case("a lua node played live", HEAD + '''
local src = g:add("input", {path = "in.wav"})
local l = g:add("lua", {process = function(b) end})
g:chain(src, l, out)
g:play{} --@
''', ["lua", "live"])

case("connecting a removed node", HEAD + '''
local src = g:add("input", {path = "in.wav"})
local x = g:add("gain", {name = "trim"})
g:remove(x)
g:connect(src, x) --@
''', ["trim", "removed"])

case("play with an unknown option", HEAD + '''
local src = g:add("input", {path = "in.wav"})
g:chain(src, out)
g:play{ blok = 256 } --@
''', ["blok"], suggest="block")


def sigint_case():
    name = "SIGINT during a long render"
    d = T.tmpdir()
    with open(os.path.join(d, "script.lua"), "w") as f:
        f.write('''local g = mb.graph{rate = 48000}
local t = g:add("tone", {wave = "pink", duration = 3000, channels = 2, level = -20})
local out = g:add("output", {path = "out.wav", bits = 24})
g:chain(t, out)
g:render()
print("finished")
''')
    p = subprocess.Popen([T.MOONBUS, "run", "script.lua"], cwd=d,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # wait until the render has started writing (a file appears), then 0.5 s
    deadline = time.time() + 10
    while time.time() < deadline and p.poll() is None:
        if [f for f in os.listdir(d) if f != "script.lua"]:
            break
        time.sleep(0.02)
    time.sleep(0.5)
    started = p.poll() is None
    T.check(started, "%s: the render was still running after 0.5 s" % name)
    if started:
        p.send_signal(signal.SIGINT)
    try:
        out, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        T.check(False, "%s: moonbus stopped within 30 s of SIGINT" % name)
    T.check(p.returncode != 0, "%s: non-zero exit (got %d)" % (name, p.returncode))
    T.check("finished" not in out, "%s: the script did not carry on as if done" % name)
    lines = err.split("\n")
    T.check(err.endswith("\n") and len(lines) == 2 and lines[0].startswith("moonbus: "),
            "%s: one 'moonbus: ' line on stderr: %r" % (name, err[:300]))
    T.check("interrupt" in err.lower(), "%s: the line says interrupted: %r" % (name, err[:300]))
    left = sorted(f for f in os.listdir(d) if f != "script.lua")
    T.check(not left, "%s: no output nor temporary file left (found %s)" % (name, left))


sigint_case()


def batch_case(name, manifest, args, expect, code=1):
    """`moonbus batch` refusing a manifest or its options: one line, the
    exit status, and nothing written in the manifest's folder."""
    d = T.tmpdir()
    make_inputs(d)
    if manifest is not None:
        with open(os.path.join(d, "m.csv"), "w") as f:
            f.write(manifest)
    before = snapshot(d)
    rc, out, err = T.run(["batch"] + args, cwd=d)
    lines = err.split("\n")
    T.check(rc == code, "%s: exit %d (got %d)" % (name, code, rc))
    T.check(err.endswith("\n") and len(lines) == 2 and lines[0].startswith("moonbus: ")
            and expect in lines[0], "%s: one 'moonbus: ' line naming %r: %r" % (name, expect, err[:300]))
    T.check(snapshot(d) == before, "%s: nothing written, inputs untouched" % name)


batch_case("batch: missing manifest", None, ["none.csv"], "none.csv")
batch_case("batch: header only", "input,output,target\n", ["m.csv"], "no jobs")
batch_case("batch: misspelt target", "input,output,target\nin.wav,o.wav,spotfy\n", ["m.csv"],
           "m.csv:2: unknown target 'spotfy'")
batch_case("batch: output escaping its folder", "input,output,target\nin.wav,../o.wav,apple\n",
           ["m.csv"], "m.csv:2: output '../o.wav' is outside the output folder")
batch_case("batch: output over its input", "input,output,target\nin.wav,in.wav,apple\n",
           ["m.csv"], "m.csv:2:")
batch_case("batch: row of the wrong width", "input,output,target\nin.wav,o.wav\n",
           ["m.csv"], "m.csv:2: 2 fields, the header has 3")
batch_case("batch: unclosed quote", 'input,output,target\n"in.wav,o.wav,apple\n',
           ["m.csv"], "m.csv:2: a quoted field is never closed")
batch_case("batch: shard out of range", "input,output,target\nin.wav,o.wav,apple\n",
           ["m.csv", "--shard", "4/3"], "--shard '4/3'", code=2)
T.finish()
