"""Shared helpers for the acceptance tests: render with moonbus, measure
with numpy/scipy/soundfile/ffmpeg (never with moonbus's own measuring).

  import mbtest as T
  d = T.tmpdir()                      # removed when the test exits
  rc, out, err = T.run_lua(script, cwd=d)
  vals = T.render(script, cwd=d)      # fails the test (and exits) on rc != 0;
                                      # returns the values the script emit()ed
  x, rate = T.read(os.path.join(d, "out.wav"))   # float64, frames x channels
  T.check(abs(err_db) < 0.1, "level at 0.5 s: %.3f dB" % err_db)
  T.finish()                          # prints the summary, exits 1 on failure

Every script run through run_lua() gets a small Lua prelude: emit(key, v)
prints "@@key=v" (numbers with 17 significant digits), which render()
collects into a dict (numbers as float, the rest as str).

Environment: MOONBUS (the executable; default build/moonbus beside this
tree), MOONBUS_SRC (the source tree).
"""
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import soundfile as sf

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("MOONBUS_SRC", os.path.normpath(os.path.join(HERE, "..", "..")))
MOONBUS = os.path.abspath(os.environ.get("MOONBUS", os.path.join(SRC, "build", "moonbus")))

_failures = []
_checks = 0
_dirs = []

PRELUDE = r"""
local function __mb_fmt(v)
  if math.type(v) == "integer" then return string.format("%d", v) end
  if type(v) == "number" then return string.format("%.17g", v) end
  return tostring(v)
end
function emit(k, v) io.write("@@", k, "=", __mb_fmt(v), "\n") end
"""


def _cleanup():
    if os.environ.get("MBTEST_KEEP"):
        for d in _dirs:
            print("kept", d)
        return
    for d in _dirs:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)


def tmpdir():
    """A fresh temporary directory, removed at exit (MBTEST_KEEP=1 keeps it)."""
    d = tempfile.mkdtemp(prefix="mbtest-")
    _dirs.append(d)
    return d


def lua_str(s):
    """A Lua string literal for s (paths)."""
    return json.dumps(str(s))


def run(args, cwd=None, timeout=600):
    """Run `$MOONBUS args...`; returns (exit code, stdout, stderr)."""
    p = subprocess.run([MOONBUS] + list(args), cwd=cwd, capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def run_lua(script, cwd=None, args=(), timeout=600):
    """Run a Lua script string through `$MOONBUS run` in cwd (a fresh temp
    dir by default); returns (exit code, stdout, stderr)."""
    if cwd is None:
        cwd = tmpdir()
    path = os.path.join(cwd, "script.lua")
    with open(path, "w") as f:
        f.write(PRELUDE)
        f.write(script)
    return run(["run", path] + list(args), cwd=cwd, timeout=timeout)


def parse_emitted(out):
    vals = {}
    for line in out.splitlines():
        if line.startswith("@@") and "=" in line:
            k, v = line[2:].split("=", 1)
            try:
                vals[k] = float(v)
            except ValueError:
                vals[k] = v
    return vals


class RenderFailed(Exception):
    pass


def render(script, cwd=None, what="render", fatal=True):
    """run_lua() that must succeed: on a non-zero exit, records a failure
    and (fatal) finishes the test; returns the emitted values."""
    rc, out, err = run_lua(script, cwd=cwd)
    if rc != 0:
        check(False, "%s: moonbus exited %d: %s" % (what, rc, err.strip()[-2000:]))
        if fatal:
            finish()
        raise RenderFailed(err)
    return parse_emitted(out)


def modules():
    """Module descriptors from `moonbus modules --json` (a list of dicts with
    at least "name"); None if the command fails."""
    rc, out, err = run(["modules", "--json"])
    if rc != 0:
        return None
    try:
        data = json.loads(out)
    except ValueError:
        return None
    if isinstance(data, dict):
        data = data.get("modules", list(data.values()))
    return data


def require_modules(*names):
    """Record a failure naming the modules missing from this build (the test
    is written against the contract; a missing module is a failure)."""
    script = "\n".join(
        "do local ok, e = pcall(function() local g = mb.graph{}; g:add(%s, {}) end) "
        "if not ok and tostring(e):find('unknown module', 1, true) then emit('missing', %s) end end"
        % (lua_str(n), lua_str(n)) for n in names)
    rc, out, err = run_lua(script)
    missing = [l[len("@@missing="):] for l in out.splitlines() if l.startswith("@@missing=")]
    if rc != 0:
        missing = ["(probe failed: %s)" % err.strip()]
    check(not missing, "modules present in this build: missing %s" % missing)
    return not missing


def read(path):
    """(samples float64 frames x channels, rate)."""
    x, fs = sf.read(path, dtype="float64", always_2d=True)
    return x, fs


def read_raw32(path):
    """Float32 samples exactly as stored (for subnormal/bit-exact checks)."""
    x, fs = sf.read(path, dtype="float32", always_2d=True)
    return x, fs


def write(path, x, fs, subtype="FLOAT", format=None):
    sf.write(path, x, fs, subtype=subtype, format=format)


def db(x, floor=1e-300):
    """20 log10 |x| (elementwise), -inf-safe."""
    return 20 * np.log10(np.maximum(np.abs(np.asarray(x)).astype(np.float64), floor))


def peak_db(x):
    """Sample peak in dBFS (-inf for digital silence)."""
    p = float(np.max(np.abs(x))) if np.size(x) else 0.0
    return -np.inf if p == 0 else 20 * np.log10(p)


def rms_db(x):
    r = float(np.sqrt(np.mean(np.square(np.asarray(x, dtype=np.float64))))) if np.size(x) else 0.0
    return -np.inf if r == 0 else 20 * np.log10(r)


def ffmpeg_r128(path, extra_filters=""):
    """ffmpeg's own EBU R128 reading of a file: a dict with I (LUFS), LRA
    (LU), TP (dBTP, ebur128 peak=true: 4x oversampled below 96 kHz) and SP
    (sample peak, dBFS), from the last values of `ebur128=...:metadata=1`
    printed through ametadata (finer than the summary's 0.1 dB steps).
    None when ffmpeg fails. `extra_filters` go before the meter."""
    af = (extra_filters + "," if extra_filters else "") + \
        "ebur128=peak=true+sample:metadata=1,ametadata=mode=print:file=-"
    p = subprocess.run(["ffmpeg", "-nostdin", "-nostats", "-hide_banner", "-i", path,
                        "-af", af, "-f", "null", "-"], capture_output=True, text=True)
    if p.returncode != 0:
        return None
    last = {}
    for line in p.stdout.splitlines():
        if line.startswith("lavfi.r128.") and "=" in line:
            k, v = line[len("lavfi.r128."):].split("=", 1)
            last[k] = float(v)
    out = {"I": last.get("I"), "LRA": last.get("LRA")}
    # per-channel linear peaks: lavfi.r128.true_peaks_chN
    tp = [v for k, v in last.items() if k.startswith("true_peaks_ch")]
    sp = [v for k, v in last.items() if k.startswith("sample_peaks_ch")]
    out["TP"] = 20 * np.log10(max(tp)) if tp and max(tp) > 0 else -np.inf
    out["SP"] = 20 * np.log10(max(sp)) if sp and max(sp) > 0 else -np.inf
    return out


def check(cond, msg):
    """Record one check; prints PASS/FAIL with the message (the figures)."""
    global _checks
    _checks += 1
    print(("PASS  " if cond else "FAIL  ") + msg, flush=True)
    if not cond:
        _failures.append(msg)
    return bool(cond)


def note(msg):
    print("      " + msg, flush=True)


def finish():
    """Print the summary and exit (1 if any check failed)."""
    if _failures:
        print("\n%d of %d checks FAILED:" % (len(_failures), _checks))
        for f in _failures:
            print("  - " + f)
        sys.stdout.flush()
        sys.exit(1)
    print("\nall %d checks passed" % _checks)
    sys.stdout.flush()
    sys.exit(0)


def stamp(path):
    """What changes when a file is rewritten: inode, mtime (ns), size."""
    st = os.stat(path)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def music(path, seconds, level_db=-18.0, fs=48000, seed=0, subtype="PCM_24",
          head=0.0, tail=0.0):
    """Write a music-like stereo test track: band-limited noise with a slow
    swell and a decaying note every half second (real dynamics for the
    compressor and limiter), partly correlated channels, its RMS at about
    `level_db` dBFS, with `head`/`tail` seconds of digital silence."""
    from scipy.signal import butter, lfilter
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    t = np.arange(n) / fs
    x = rng.standard_normal((n, 2))
    b, a = butter(2, [60 / (fs / 2), 8000 / (fs / 2)], "band")
    x = lfilter(b, a, x, axis=0)
    x[:, 1] = 0.6 * x[:, 1] + 0.4 * x[:, 0]
    swell = 0.55 + 0.45 * np.sin(2 * np.pi * 0.23 * t + seed)
    hits = np.exp(-((t % 0.5) / 0.06)) * np.sin(2 * np.pi * (110 + 20 * seed) * t)
    x = x * swell[:, None] + 1.5 * hits[:, None]
    x *= 10 ** (level_db / 20) / np.sqrt(np.mean(x ** 2))
    pad = lambda s: np.zeros((int(s * fs), 2))
    x = np.concatenate([pad(head), x, pad(tail)])
    sf.write(path, x, fs, subtype=subtype)
    return path
