#!/usr/bin/python3
"""Acceptance: numeric hygiene of every module, nulls and neutral settings.

The issue: "No NaN, Inf or subnormal sample from any module on silence, a
constant 1e-30, a burst followed by silence, DC, or a full-scale square."
and "M/S encode then decode nulls below -135 dBFS; width 0 gives L-R exactly
0; a node at neutral settings is bit-exact."

Signals (48 kHz stereo float WAVs written here with soundfile):
  silence 0.5 s; constant 1e-30 0.5 s; burst: 50 ms of white noise at
  -6 dBFS RMS then 7.95 s of silence (long enough for the slowest eq band
  here, a 48 dB/oct high-pass at 20 Hz with pole Q 2.56, time constant
  41 ms, to decay from 0.1 through the float subnormal range, 1.2e-38 ..
  1.4e-45: 85 time constants, 3.5 s); DC 0.5 for 0.5 s;
  a full-scale (+-1) 1 kHz square, 0.5 s.
Every module that `moonbus modules --json` lists with an input (except
output and device I/O) gets each signal (on its first input, and also on
its second input for blend/compressor sidechain/merge) with sensible
settings (below; a module these settings do not fit is run with its
defaults, which is printed), into a 32-bit float output (tail capped at
3 s). numpy scans each output as stored (float32) for NaN, Inf and
subnormals (0 < |x| < np.finfo(np.float32).tiny).

Nulls and neutral settings, on 1 s of seeded stereo noise (-12 dBFS RMS,
clipped to +-1, with a few tiny values): ms_encode -> ms_decode nulls against
the input below -135 dBFS (and mb.ms.process with empty chains); width 0
gives L - R == 0 exactly; these nodes at neutral settings give the input
bit for bit: gain 0 dB, eq with no bands, width 1, blend mix 0 (wet path a
-6 dB gain), meter, pan 0 on stereo with laws "0" and "-3" (documented: a
stereo input at centre passes bit-exact), channels first=1 count=2 on
stereo, merge of a single input, lua identity.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbtest as T  # noqa: E402

FS = 48000
TINY = np.finfo(np.float32).tiny
NULL_MS = -135.0

# sensible settings per module (Lua table constructors); others: defaults
SETTINGS = {
    "gain": "{ gain = 6 }",
    "eq": """{ bands = {
        { type = "highpass", freq = 20, slope = 48 },
        { type = "lowshelf", freq = 80, gain = 6, q = 0.7 },
        { type = "bell", freq = 300, gain = -12, q = 8 },
        { type = "notch", freq = 1000, q = 10 },
        { type = "bandpass", freq = 2000, q = 0.3 },
        { type = "tilt", freq = 1000, gain = 6 },
        { type = "highshelf", freq = 10000, gain = 9, q = 0.7 },
        { type = "lowpass", freq = 20000, slope = 24 },
        { type = "bell", freq = 20, gain = 12, q = 2 },
        { type = "lowpass", freq = 30, slope = 6 },
        { type = "highpass", freq = 15000, q = 2 } } }""",
    "pan": '{ pan = 0.3, law = "-3" }',
    "width": "{ width = 1.5, mono_below = 100 }",
    "blend": "{ mix = 0.5 }",
    "channels": "{ first = 1, count = 2 }",
    "compressor": "{ threshold = -30, ratio = 4, attack = 5, release = 100, knee = 6, makeup = 6 }",
    "expander": "{ threshold = -40, ratio = 4, attack = 1, release = 100, hold = 10 }",
    "multiband": "{ crossovers = { 200, 2000 } }",
    "limiter": "{ ceiling = -1, release = 50 }",
    "saturate": "{ drive = 12 }",
    "dither": "{ bits = 16 }",
    "delay": "{ time = 100, feedback = 0.9, mix = 0.5 }",
    "reverb": "{ rt60 = 2, mix = 0.5 }",
    "convolver": '{ path = "ir.wav", mix = 0.5 }',
    "lua": "{ process = function(b) end }",
}
SECOND_INPUT = ("wet", "sidechain", "in2")
SKIP = ("output", "device_in", "device_out")


def signals(rng):
    n = FS // 2
    burst = np.zeros((8 * FS, 2))
    k = int(0.05 * FS)
    burst[:k] = rng.standard_normal((k, 2)) * 10 ** (-6 / 20)
    sq = np.where((np.arange(n) // 24) % 2 == 0, 1.0, -1.0)
    return {
        "silence": np.zeros((n, 2)),
        "const1e-30": np.full((n, 2), 1e-30),
        "burst": burst.clip(-1, 1),
        "dc": np.full((n, 2), 0.5),
        "square": np.stack([sq, sq], axis=1),
    }


def module_list():
    rc, out, err = T.run(["modules", "--json"])
    mods = None
    if rc == 0:
        try:
            mods = json.loads(out)
        except ValueError:
            pass
    T.check(mods is not None, "`moonbus modules --json`: exit %d%s" % (
        rc, "" if mods is not None else ": " + (err.strip() or out[:200])))
    if mods is None:  # fall back to the library's own list to test the rest
        rc, out, err = T.run_lua("io.write(require('cjson').encode(mb.modules()))")
        mods = json.loads(out) if rc == 0 else []
    return mods


NUMERIC_SCRIPT = r"""
local function try(mod, sig, settings, inputs)
  local g = mb.graph{ rate = 48000, block = 512 }
  local src = g:add("input", { path = sig .. ".wav" })
  local ok, node = pcall(g.add, g, mod, settings)
  if not ok then
    emit("defaults_" .. mod, tostring(node))
    node = g:add(mod, {})
  end
  for _, port in ipairs(inputs) do g:connect(src, node, port) end
  g:chain(node, g:add("output", { path = "o_" .. mod .. "_" .. sig .. ".wav", bits = 32 }))
  g:render{ tail = 3 }
end
local function run(mod, settings, inputs)
  for _, sig in ipairs{ %(sigs)s } do
    local ok, e = pcall(try, mod, sig, settings, inputs)
    if not ok then emit("error_" .. mod .. "_" .. sig, tostring(e)) end
  end
end
%(runs)s
"""

NEUTRAL_SCRIPT = r"""
local function one(name, build)
  local ok, e = pcall(function()
    local g = mb.graph{ rate = 48000, block = 512 }
    local src = g:add("input", { path = "noise.wav" })
    local last = build(g, src)
    g:chain(last, g:add("output", { path = "n_" .. name .. ".wav", bits = 32 }))
    g:render{}
  end)
  if not ok then emit("error_" .. name, tostring(e)) end
end
one("ms", function(g, s) return g:chain(s, g:add("ms_encode"), g:add("ms_decode")) end)
one("ms_process", function(g, s) return mb.ms.process(g, s, { mid = {}, side = {} }) end)
one("width0", function(g, s) return g:chain(s, g:add("width", { width = 0 })) end)
one("gain0", function(g, s) return g:chain(s, g:add("gain", { gain = 0 })) end)
one("eq_none", function(g, s) return g:chain(s, g:add("eq", { bands = {} })) end)
one("width1", function(g, s) return g:chain(s, g:add("width", { width = 1 })) end)
one("blend0", function(g, s)
  return mb.parallel.blend(g, s, { g:add("gain", { gain = -6 }) }, { mix = 0 }) end)
one("meter", function(g, s) return g:chain(s, g:add("meter")) end)
one("pan0_law0", function(g, s) return g:chain(s, g:add("pan", { pan = 0, law = "0" })) end)
one("pan0_law-3", function(g, s) return g:chain(s, g:add("pan", { pan = 0, law = "-3" })) end)
one("channels12", function(g, s) return g:chain(s, g:add("channels", { first = 1, count = 2 })) end)
one("merge1", function(g, s) return g:chain(s, g:add("merge")) end)
one("lua_identity", function(g, s) return g:chain(s, g:add("lua", { process = function(b) end })) end)
"""

NEUTRAL = ["gain0", "eq_none", "width1", "blend0", "meter", "pan0_law0", "pan0_law-3",
           "channels12", "merge1", "lua_identity"]


def scan(x):
    return (int(np.count_nonzero(np.isnan(x))), int(np.count_nonzero(np.isinf(x))),
            int(np.count_nonzero((np.abs(x) < TINY) & (x != 0))))


def main():
    d = T.tmpdir()
    rng = np.random.default_rng(2024)
    sigs = signals(rng)
    for name, x in sigs.items():
        T.write(os.path.join(d, name + ".wav"), x.astype(np.float32), FS)
    ir = rng.standard_normal(FS // 2) * np.exp(-np.arange(FS // 2) / (0.1 * FS)) * 0.1
    T.write(os.path.join(d, "ir.wav"), ir.astype(np.float32), FS)

    mods = module_list()
    runs, tested = [], []
    for m in mods:
        ins = m.get("inputs") or []
        if not ins or m["name"] in SKIP:
            continue
        ports = [ins[0]] + [p for p in ins[1:2] if p in SECOND_INPUT]
        runs.append("run(%s, %s, { %s })" % (T.lua_str(m["name"]), SETTINGS.get(m["name"], "{}"),
                                              ", ".join(T.lua_str(p) for p in ports)))
        tested.append(m["name"])
    T.note("modules tested: %s" % ", ".join(tested))
    script = NUMERIC_SCRIPT % {"sigs": ", ".join(T.lua_str(s) for s in sigs),
                               "runs": "\n".join(runs)}
    vals = T.render(script, cwd=d, what="numeric renders")
    for k, v in vals.items():
        if k.startswith("defaults_"):
            T.note("%s: run with default settings (%s)" % (k[len("defaults_"):], v))
    for mod in tested:
        bad = []
        for sig in sigs:
            err = vals.get("error_%s_%s" % (mod, sig))
            if err is not None:
                bad.append("%s: error %s" % (sig, err))
                continue
            y, _ = T.read_raw32(os.path.join(d, "o_%s_%s.wav" % (mod, sig)))
            nan, inf, sub = scan(y)
            if nan or inf or sub:
                first = np.nonzero(np.any(np.isnan(y) | np.isinf(y) |
                                          ((np.abs(y) < TINY) & (y != 0)), axis=1))[0][0]
                bad.append("%s: %d NaN, %d Inf, %d subnormal of %d samples (first at frame %d)"
                           % (sig, nan, inf, sub, y.size, first))
        T.check(not bad, "%s: no NaN/Inf/subnormal on %s%s" % (
            mod, ", ".join(sigs), "" if not bad else " -- " + "; ".join(bad)))

    # nulls and neutral settings
    x = (rng.standard_normal((FS, 2)) * 10 ** (-12 / 20)).clip(-1, 1)
    x[:4, 0] = [1e-20, -3e-12, 1.0, -1.0]
    x[:4, 1] = [-1.0, 2e-25, 0.0, 1.0]
    x = x.astype(np.float32)
    T.write(os.path.join(d, "noise.wav"), x, FS)
    x = T.read_raw32(os.path.join(d, "noise.wav"))[0]
    vals = T.render(NEUTRAL_SCRIPT, cwd=d, what="neutral renders")

    def out(name):
        e = vals.get("error_" + name)
        if e is not None:
            T.check(False, "%s: render failed: %s" % (name, e))
            return None
        return T.read_raw32(os.path.join(d, "n_%s.wav" % name))[0]

    for name, what in (("ms", "ms_encode -> ms_decode"), ("ms_process", "mb.ms.process, empty chains")):
        y = out(name)
        if y is not None:
            ok = y.shape == x.shape
            pk = T.peak_db(y.astype(np.float64) - x) if ok else float("nan")
            T.check(ok and pk < NULL_MS, "%s: %s, null %.1f dBFS (limit %.0f)" % (what, y.shape, pk, NULL_MS))
    y = out("width0")
    if y is not None:
        dif = np.abs(y[:, 0].astype(np.float64) - y[:, 1]) if y.shape[1] == 2 else np.array([np.inf])
        T.check(y.shape == x.shape and np.max(dif) == 0,
                "width 0: max |L - R| = %.3g (expected exactly 0), %s" % (np.max(dif), y.shape))
    for name in NEUTRAL:
        y = out(name)
        if y is None:
            continue
        same = y.shape == x.shape and np.array_equal(y.view(np.uint32), x.view(np.uint32))
        detail = ""
        if not same and y.shape == x.shape:
            diff = np.nonzero(np.any(y.view(np.uint32) != x.view(np.uint32), axis=1))[0]
            detail = ": %d frames differ, first %d (in %s out %s), peak difference %.1f dBFS" % (
                len(diff), diff[0], x[diff[0]], y[diff[0]], T.peak_db(y.astype(np.float64) - x))
        T.check(same, "%s: bit-exact %s %s%s" % (name, "yes" if same else "NO", y.shape, detail))
    T.finish()


if __name__ == "__main__":
    main()
