#!/usr/bin/python3
"""Acceptance: the convolver (issue 4, item 3), measured outside moonbus.

The issue: "impulse response from a file (resampled to the graph's rate),
mono, stereo and true-stereo (4-channel) responses, partitioned FFT
convolution with FFTW, latency reported (zero-latency mode for live use),
dry/wet, pre-delay, no hidden normalisation of the response."

Files are float32 WAVs written here with soundfile: 1.5 s of seeded stereo
noise at 48 kHz (-12 dBFS RMS, then 0.2 s of silence), a mono copy, and
responses: long (2.5 s of decaying noise, -60 dB at the end: a reverb) and
short (300 taps), each mono, stereo and true-stereo (4 channels: L->L,
L->R, R->L, R->R). Outputs are 32-bit float WAVs. Measured with numpy /
scipy:

  accuracy: each render against scipy.signal.fftconvolve in float64 of the
    same float32 input and response (true stereo: out L = L*h1 + R*h3, out
    R = L*h2 + R*h4; a stereo response on a mono input: L = x*h1, R = x*h2),
    in zero-latency mode (default) and block mode: residual RMS(diff) /
    RMS(ref) at most -100 dB, and the RMS ratio within 0.01 dB; a response
    of 0.5 at tap 0 then 4999 zeros gives the input times 0.5 (gain error
    at most 0.01 dB, and the largest difference below -120 dBFS);
  length: a file of N frames through an M-frame response with the default
    render renders N + M - 1 frames (plus P frames with a pre-delay P), and
    a longer render{duration} is exactly zero past that;
  block size: renders with blocks of 64, 1000 and 4096 frames (mix and gain
    automated, zero and block modes) are identical (null below -120 dBFS;
    bit-identical expected);
  latency: an impulse at frame 12000 through a unit-impulse response, mix 1,
    comes out at frame 12000 in both modes (the graph compensates block
    mode's latency), g:latency() is 0 in zero mode and `block` in block mode
    (1000, and the default 8192); at mix 0.5 the dry and wet halves add up
    at that frame to 1.0 (dry delayed inside the node); a pre-delay of 10 ms
    moves only the wet half, to frame 12480;
  resampling: a windowed-sinc low-pass (4 kHz, 511 taps, Blackman, DC gain
    1) written at 44.1 kHz, used in a 48 kHz graph: the magnitude response
    of the render of an impulse is within 0.05 dB of the 44.1 kHz FIR's
    analytic response (DTFT at 44.1 kHz) from 20 Hz to 3.5 kHz, and below
    -60 dB from 5 kHz to 20 kHz; the response file is byte-identical and
    keeps its modification time after the renders;
  bad inputs: a missing file, a folder, a non-audio file and a 3-channel
    file are refused with an error naming the path; mix = 1.5 and mode =
    "lowlatency" with errors naming the parameter and its range / choices.
The robustness set (NaN/Inf/subnormal on silence, 1e-30, DC, square, burst)
is test_modules_numeric.py's (its SETTINGS entry for convolver).
"""
import hashlib
import os
import sys

import numpy as np
from scipy import signal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbtest as T  # noqa: E402

FS = 48000
N = int(1.7 * FS)
RESIDUAL = -100.0
GAIN_TOL = 0.01
NULL = -120.0


def residual_db(y, ref):
    e = np.sqrt(np.mean((y - ref) ** 2))
    r = np.sqrt(np.mean(ref ** 2))
    return -np.inf if e == 0 else 20 * np.log10(e / r)


def reference(x, h):
    """Expected output (frames x out channels) in float64: the documented
    routing of a 1, 2 or 4-channel response on a 1 or 2-channel input."""
    x = x.astype(np.float64)
    h = h.astype(np.float64)
    conv = lambda a, b: signal.fftconvolve(a, b)  # noqa: E731
    nin, nir = x.shape[1], h.shape[1]
    if nir == 1:
        return np.stack([conv(x[:, c], h[:, 0]) for c in range(nin)], axis=1)
    if nir == 2:
        src = [0, 0] if nin == 1 else [0, 1]
        return np.stack([conv(x[:, src[o]], h[:, o]) for o in range(2)], axis=1)
    xl, xr = (x[:, 0], x[:, 0]) if nin == 1 else (x[:, 0], x[:, 1])
    return np.stack([conv(xl, h[:, 0]) + conv(xr, h[:, 2]),
                     conv(xl, h[:, 1]) + conv(xr, h[:, 3])], axis=1)


def render_one(d, src, ir, out, opts="", block=4096, extra=""):
    script = """
local g = mb.graph{ rate = 48000, block = %d }
local c = g:add("convolver", { path = %s %s })
%s
g:chain(g:add("input", { path = %s }), c, g:add("output", { path = %s, bits = 32 }))
emit("latency", g:latency())
local st = g:render{}
emit("frames", st.frames)
""" % (block, T.lua_str(ir), opts, extra, T.lua_str(src), T.lua_str(out))
    return T.render(script, cwd=d, what="render %s through %s %s" % (src, ir, opts))


def main():
    T.require_modules("input", "output", "convolver")
    d = T.tmpdir()
    rng = np.random.default_rng(20240)
    x = rng.standard_normal((N, 2)) * 10 ** (-12 / 20)
    x[int(1.5 * FS):] = 0
    x = x.clip(-1, 1).astype(np.float32)
    T.write(os.path.join(d, "x2.wav"), x, FS)
    T.write(os.path.join(d, "x1.wav"), x[:, :1], FS)
    xfull = (rng.standard_normal((N, 2)) * 0.25).clip(-1, 1).astype(np.float32)
    T.write(os.path.join(d, "xfull.wav"), xfull, FS)  # non-zero to its last frame

    # responses: long (2.5 s, decaying to -60 dB) and short (300 taps)
    ML, MS = int(2.5 * FS), 300
    env = 10 ** (-60 / 20 * np.arange(ML) / ML)
    irs = {}
    for ch in (1, 2, 4):
        irs["long%d" % ch] = (rng.standard_normal((ML, ch)) * env[:, None] * 0.05).astype(np.float32)
        irs["short%d" % ch] = (rng.standard_normal((MS, ch)) *
                               np.exp(-np.arange(MS) / 60.0)[:, None] * 0.3).astype(np.float32)
    for name, h in irs.items():
        T.write(os.path.join(d, name + ".wav"), h, FS)

    # ---- accuracy and output length -----------------------------------
    cases = [("x2", "long1", ""), ("x2", "long2", ""), ("x2", "long4", ""),
             ("x1", "long2", ""), ("x1", "long4", ""),
             ("x2", "short1", ""), ("x2", "short2", ""), ("x2", "short4", ""),
             ("x2", "long2", ', mode = "block"'), ("x2", "long4", ', mode = "block", block = 1000'),
             ("x2", "short4", ', mode = "block", block = 64')]
    for k, (src, ir, opts) in enumerate(cases):
        out = "acc%d.wav" % k
        v = render_one(d, src + ".wav", ir + ".wav", out, opts)
        y, _ = T.read(os.path.join(d, out))
        xs = x if src == "x2" else x[:, :1]
        ref = reference(xs, irs[ir])
        what = "%s through %s%s" % (src, ir, opts.replace(",", ""))
        M = irs[ir].shape[0]
        T.check(y.shape == ref.shape and len(y) == N + M - 1,
                "%s: %d frames x %d (expected N + M - 1 = %d x %d)"
                % (what, y.shape[0], y.shape[1], N + M - 1, ref.shape[1]))
        if y.shape != ref.shape:
            continue
        for c in range(ref.shape[1]):
            r = residual_db(y[:, c], ref[:, c])
            g = T.rms_db(y[:, c]) - T.rms_db(ref[:, c])
            T.check(r <= RESIDUAL and abs(g) <= GAIN_TOL,
                    "%s, channel %d: residual %.1f dB (limit %.0f), RMS ratio %+.5f dB (limit %.2f)"
                    % (what, c + 1, r, RESIDUAL, g, GAIN_TOL))

    # a 0.5 impulse: exactly half, through FFT partitions too
    half = np.zeros((5000, 1), np.float32)
    half[0] = 0.5
    T.write(os.path.join(d, "half.wav"), half, FS)
    for opts in ("", ', mode = "block"'):
        render_one(d, "x2.wav", "half.wav", "half_out.wav", opts)
        y, _ = T.read(os.path.join(d, "half_out.wav"))
        ok = len(y) == N + 4999
        ref = np.zeros_like(y)
        ref[:N] = 0.5 * x.astype(np.float64)
        g = T.rms_db(y) - T.rms_db(ref)
        pk = T.peak_db(y - ref) if ok else np.inf
        T.check(ok and abs(g) <= GAIN_TOL and pk < NULL,
                "0.5 impulse (5000 taps)%s: gain %+.6f dB (limit %.2f), largest difference %.1f dBFS "
                "(limit %.0f), %d frames" % (opts.replace(",", ""), g, GAIN_TOL, pk, NULL, len(y)))

    # exact zeros past the tail; pre-delay lengthens the output
    script = """
local g = mb.graph{ rate = 48000, block = 1000 }
g:chain(g:add("input", { path = "xfull.wav" }), g:add("convolver", { path = "short2.wav" }),
        g:add("output", { path = "long_render.wav", bits = 32 }))
g:render{ duration = %r }
local g2 = mb.graph{ rate = 48000, block = 1000 }
g2:chain(g2:add("input", { path = "x2.wav" }), g2:add("convolver", { path = "short2.wav", predelay = 10 }),
         g2:add("output", { path = "predelay_len.wav", bits = 32 }))
g2:render{}
""" % ((N + 5000) / FS)
    T.render(script, cwd=d, what="tail renders")
    y, _ = T.read_raw32(os.path.join(d, "long_render.wav"))
    after = y[N + MS - 1:]
    T.check(len(y) == N + 5000 and np.count_nonzero(after) == 0 and np.all(y[N + MS - 2] != 0),
            "render past the tail: %d frames, %d non-zero samples after frame N + M - 1 = %d "
            "(expected 0), last tail frame non-zero: %s"
            % (len(y), np.count_nonzero(after), N + MS - 1, bool(np.all(y[N + MS - 2] != 0))))
    y, _ = T.read(os.path.join(d, "predelay_len.wav"))
    T.check(len(y) == N + MS - 1 + 480, "pre-delay 10 ms: %d frames (expected N + M - 1 + 480 = %d)"
            % (len(y), N + MS - 1 + 480))

    # ---- block sizes ---------------------------------------------------
    script = """
for _, mode in ipairs{ "zero", "block" } do
  for _, b in ipairs{ 64, 1000, 4096 } do
    local g = mb.graph{ rate = 48000, block = b }
    local c = g:add("convolver", { path = "long4.wav", mode = mode, block = 1000, predelay = 7 })
    c:automate("mix", { {0, 1}, {0.3, 0.4}, {0.9, 0.7, "hold"}, {1.2, 1} })
    c:automate("gain", { {0, 0}, {0.5, -6}, {1.0, 3} })
    g:chain(g:add("input", { path = "x2.wav" }), c,
            g:add("output", { path = "blk_" .. mode .. "_" .. b .. ".wav", bits = 32 }))
    g:render{}
  end
end
"""
    T.render(script, cwd=d, what="block-size renders")
    for mode in ("zero", "block"):
        a, _ = T.read_raw32(os.path.join(d, "blk_%s_4096.wav" % mode))
        for b in (64, 1000):
            y, _ = T.read_raw32(os.path.join(d, "blk_%s_%d.wav" % (mode, b)))
            same = y.shape == a.shape and np.array_equal(y.view(np.uint32), a.view(np.uint32))
            pk = T.peak_db(y.astype(np.float64) - a) if y.shape == a.shape else np.inf
            T.check(y.shape == a.shape and pk < NULL,
                    "mode %s, automated mix and gain: block %d vs 4096: null %.1f dBFS (limit %.0f), "
                    "bit-identical: %s" % (mode, b, pk, NULL, same))

    # ---- latency -------------------------------------------------------
    imp = np.zeros((36000, 1), np.float32)
    imp[12000] = 1.0
    T.write(os.path.join(d, "imp.wav"), imp, FS)
    unit = np.zeros((2000, 1), np.float32)
    unit[0] = 1.0
    T.write(os.path.join(d, "unit.wav"), unit, FS)
    lat_cases = [("", 0), (', mode = "block", block = 1000', 1000), (', mode = "block"', 8192)]
    for opts, lat in lat_cases:
        for mix, pre in ((1, 0), (0.5, 0), (0.5, 10)):
            o = "%s, mix = %g, predelay = %g" % (opts, mix, pre)
            v = render_one(d, "imp.wav", "unit.wav", "lat.wav", o, block=512)
            y, _ = T.read(os.path.join(d, "lat.wav"))
            y = y[:, 0]
            T.check(v.get("latency") == lat, "%s: g:latency() = %s (expected %d)" % (o, v.get("latency"), lat))
            p = int(round(pre * FS / 1000))
            if mix == 1:
                pos = int(np.argmax(np.abs(y)))
                T.check(pos == 12000 and abs(y[pos] - 1) < 1e-6,
                        "%s: impulse out at frame %d, height %.7f (expected 12000, 1)" % (o, pos, y[pos]))
            elif p == 0:
                T.check(abs(y[12000] - 1) < 1e-6 and T.peak_db(np.delete(y, 12000)) < -120,
                        "%s: dry and wet meet at frame 12000: %.7f (expected 1.0), elsewhere %.1f dBFS"
                        % (o, y[12000], T.peak_db(np.delete(y, 12000))))
            else:
                rest = np.delete(y, [12000, 12000 + p])
                T.check(abs(y[12000] - 0.5) < 1e-6 and abs(y[12000 + p] - 0.5) < 1e-6
                        and T.peak_db(rest) < -120,
                        "%s: dry at 12000 (%.7f), wet at %d (%.7f), elsewhere %.1f dBFS"
                        % (o, y[12000], 12000 + p, y[12000 + p], T.peak_db(rest)))

    # ---- resampled response ----------------------------------------------
    taps, fc, fs_ir = 511, 4000.0, 44100
    n = np.arange(taps) - (taps - 1) / 2
    lp = np.sinc(2 * fc / fs_ir * n) * np.blackman(taps)
    lp /= lp.sum()  # DC gain 1
    irpath = os.path.join(d, "lp44k.wav")
    T.write(irpath, lp.astype(np.float32)[:, None], fs_ir)
    before = hashlib.sha256(open(irpath, "rb").read()).hexdigest()
    mtime = os.stat(irpath).st_mtime_ns
    lp32 = lp.astype(np.float32).astype(np.float64)
    for opts in ("", ', mode = "block"'):
        render_one(d, "imp.wav", "lp44k.wav", "lp_out.wav", opts)
        y, _ = T.read(os.path.join(d, "lp_out.wav"))
        y = y[:, 0]
        nfft = 1 << 16
        seg = y[12000:12000 + nfft]
        Y = np.fft.rfft(seg, nfft)
        f = np.fft.rfftfreq(nfft, 1 / FS)
        # the 44.1 kHz FIR's own response at the same frequencies (DTFT)
        w = 2 * np.pi * f / fs_ir
        H = np.exp(-1j * np.outer(w, np.arange(taps))) @ lp32
        pb = (f >= 20) & (f <= 3500)
        sb = (f >= 5000) & (f <= 20000)
        err = T.db(Y[pb]) - T.db(H[pb])
        stop = np.max(T.db(Y[sb]))
        T.check(np.max(np.abs(err)) <= 0.05 and stop < -60,
                "44.1 kHz low-pass in a 48 kHz graph%s: passband (20 Hz..3.5 kHz) within %.5f dB of the "
                "FIR's response (limit 0.05), stopband (5..20 kHz) at most %.1f dB (limit -60)"
                % (opts.replace(",", ""), np.max(np.abs(err)), stop))
    after = hashlib.sha256(open(irpath, "rb").read()).hexdigest()
    T.check(after == before and os.stat(irpath).st_mtime_ns == mtime,
            "the response file is unchanged (sha256 and modification time)")

    # ---- bad inputs ----------------------------------------------------------
    os.mkdir(os.path.join(d, "adir"))
    with open(os.path.join(d, "notaudio.wav"), "w") as fh:
        fh.write("this is not a sound file\n" * 10)
    T.write(os.path.join(d, "three.wav"), np.zeros((100, 3), np.float32) + 0.1, FS)
    for bad in ("missing.wav", "adir", "notaudio.wav", "three.wav"):
        rc, out, err = T.run_lua("""
local g = mb.graph{ rate = 48000 }
g:chain(g:add("input", { path = "x2.wav" }), g:add("convolver", { path = %s }),
        g:add("output", { path = "bad.wav" }))
g:render{}
""" % T.lua_str(bad), cwd=d)
        line = err.strip().splitlines()[-1] if err.strip() else ""
        T.check(rc == 1 and bad in line and line.startswith("moonbus:") and
                not os.path.exists(os.path.join(d, "bad.wav")) and
                (bad != "three.wav" or "3 channels" in line),
                "impulse response %s: exit %d, message %r" % (bad, rc, line))
    for opts, words in (("mix = 1.5", ("mix", "1.5", "0", "1")),
                        ('mode = "lowlatency"', ("mode", "lowlatency", "zero", "block"))):
        rc, out, err = T.run_lua("""
local g = mb.graph{ rate = 48000 }
g:add("convolver", { path = "short1.wav", %s })
""" % opts, cwd=d)
        T.check(rc == 1 and all(w in err for w in words),
                "%s: exit %d, message %r" % (opts, rc, err.strip()))
    T.finish()


if __name__ == "__main__":
    main()
