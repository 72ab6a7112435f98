#!/usr/bin/python3
"""Acceptance: file formats and resampling.

The issue: "Round trips WAV/AIFF/FLAC at 16/24/32-bit; resampling 48 to
44.1 kHz flat within 0.01 dB to 20 kHz with at least 120 dB of alias
rejection."

Round trips: a stereo input (48 kHz, 20000 frames of seeded random integer
codes covering the whole range including both extremes; for 32-bit float,
random floats in [-1, 1] including -1, 1 and small values) is written with
soundfile as WAV, AIFF and FLAC at 16 and 24 bits and as WAV and AIFF at 32
(float; FLAC has no 32), then `input -> output{bits = same}` to the same
format. The output, read back with soundfile as integer codes (or float32),
must equal the input exactly, with the same length, channels and rate.

Resampling (soxr-grade), all measured with numpy:
  - 48 -> 44.1 kHz (output{rate = 44100}): a unit impulse at 0.5 s in a 1 s
    float WAV; |FFT| of the 44.1 kHz output within +-0.01 dB of 0 dB at
    every bin 20 Hz .. 20 kHz; the peak lands at 0.5 s (frame 22050);
    alias rejection: steady sines at 23 kHz and 23.9 kHz (-1 dBFS, 10 ms
    fades, 1 s each) have nothing left in the 44.1 kHz output above -121 dBFS
    (120 dB below the tone): Kaiser (beta 20, sidelobes -160 dB) windowed FFT
    of the steady middle 0.6 s, levels scaled so a sine of amplitude A reads
    20 log10 A.
  - 96 -> 44.1 kHz: a 30 kHz sine at -1 dBFS, same criterion.
  - 44.1 -> 48 kHz (an input file at 44.1 kHz in a 48 kHz graph): impulse at
    0.5 s flat within +-0.01 dB (of 20 log10(48000/44100)) 20 Hz .. 20 kHz and peak at frame 24000;
    image rejection: a 20 kHz sine at -1 dBFS leaves nothing but itself
    (bins more than 50 Hz from 20 kHz) above -121 dBFS (its image would be at
    24.1 kHz, folded to 23.9 kHz).
  - lengths: inputs of 48000 and 48010 frames at 48 kHz written at 44.1 kHz,
    and 44100 and 44111 frames at 44.1 kHz read into 48 kHz: the length must
    be floor or ceil of frames * ratio (the one seen is printed).
Lossy inputs: MP3 (MPEG layer III) and Ogg Vorbis and Opus files written by
soundfile (libsndfile) from a 1 kHz stereo sine at -6 dBFS (1.5 s): moonbus
reads them (`input -> output` float WAV) and gives the samples soundfile
decodes from the same file (within float32 rounding, -140 dBFS), with the
1 kHz level at -6 +-0.5 dB.
"""
import os
import sys

import numpy as np
import soundfile as sf
from scipy.signal import windows

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbtest as T  # noqa: E402

FLAT = 0.01  # dB
REJECT = 120.0  # dB
TONE_DB = -1.0


def lua_copy(pairs, rate=None, out_rate=None, bits=32):
    """A script that copies each (in, out) through input -> output."""
    lines = []
    for i, (src, dst, b) in enumerate(pairs):
        g = "mb.graph{ rate = %d }" % rate if rate else "mb.graph{}"
        orate = ", rate = %d" % out_rate if out_rate else ""
        lines.append(
            "do local g = %s\n"
            "  g:chain(g:add('input', { path = %s }), g:add('output', { path = %s, bits = %d%s }))\n"
            "  local st = g:render{}\n"
            "  emit(%s, st.outputs[1].frames)\n"
            "end" % (g, T.lua_str(src), T.lua_str(dst), b, orate, T.lua_str("frames_" + dst)))
    return "\n".join(lines)


def roundtrip(d):
    rng = np.random.default_rng(99)
    n = 20000
    cases = []
    for fmt, ext in (("WAV", "wav"), ("AIFF", "aiff"), ("FLAC", "flac")):
        for bits in (16, 24, 32):
            if fmt == "FLAC" and bits == 32:
                continue
            cases.append((fmt, ext, bits))
    pairs, data = [], {}
    for fmt, ext, bits in cases:
        name = "rt%d.%s" % (bits, ext)
        if bits == 32:
            x = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
            x[:6, 0] = [-1.0, 1.0, 0.0, 1e-30, -3.5e-20, 0.5]
            x[:6, 1] = [1.0, -1.0, 2.0 ** -24, -2.0 ** -30, 0.25, -0.0]
            sf.write(os.path.join(d, name), x, 48000, format=fmt, subtype="FLOAT")
            data[name] = sf.read(os.path.join(d, name), dtype="float32", always_2d=True)[0]
        else:
            lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
            codes = rng.integers(lo, hi + 1, (n, 2), dtype=np.int64)
            codes[:4, 0] = [lo, hi, 0, -1]
            codes[:4, 1] = [hi, lo, 1, 0]
            # soundfile writes int32 data left-justified: code << (32 - bits)
            sf.write(os.path.join(d, name), (codes << (32 - bits)).astype(np.int32), 48000,
                     format=fmt, subtype="PCM_%d" % bits)
            back = sf.read(os.path.join(d, name), dtype="int32", always_2d=True)[0]
            assert np.array_equal(back.astype(np.int64) >> (32 - bits), codes), "soundfile round trip"
            data[name] = back
        pairs.append((name, "out_" + name, bits))
    v = T.render(lua_copy(pairs), cwd=d, what="round trips")
    for (fmt, ext, bits), (src, dst, _) in zip(cases, pairs):
        x = data[src]
        info = sf.info(os.path.join(d, dst))
        if bits == 32:
            y = sf.read(os.path.join(d, dst), dtype="float32", always_2d=True)[0]
        else:
            y = sf.read(os.path.join(d, dst), dtype="int32", always_2d=True)[0]
        same_shape = y.shape == x.shape
        if same_shape:
            bad = np.nonzero(np.any(x != y, axis=1))[0]
            nbad = len(bad)
            if bits == 32:
                exact = nbad == 0 and np.array_equal(np.signbit(x), np.signbit(y))
            else:
                exact = nbad == 0
        else:
            exact, nbad, bad = False, -1, []
        detail = ""
        if nbad > 0:
            k = bad[0]
            sh = 0 if bits == 32 else 32 - bits
            detail = "; %d frames differ, first frame %d: in %s out %s" % (
                nbad, k, (x[k] >> sh) if sh else x[k], (y[k] >> sh) if sh else y[k])
        want_sub = "FLOAT" if bits == 32 else "PCM_%d" % bits
        # WAVE_FORMAT_EXTENSIBLE is a WAV file too
        fmt_ok = info.format == fmt or (fmt == "WAV" and info.format == "WAVEX")
        T.check(exact and fmt_ok and info.subtype == want_sub and info.samplerate == 48000,
                "round trip %s %d-bit: %s %s %d Hz %s, bit-exact %s%s" % (
                    fmt, bits, info.format, info.subtype, info.samplerate, y.shape,
                    "yes" if exact else "NO", detail))


def spectrum_db(y, fs, skip):
    """Kaiser-windowed FFT level of the steady part (skip seconds at each
    end), scaled so a sine of amplitude A reads 20 log10 A."""
    a, b = int(skip * fs), len(y) - int(skip * fs)
    seg = y[a:b]
    w = windows.kaiser(len(seg), 20)
    X = np.fft.rfft(seg * w)
    f = np.fft.rfftfreq(len(seg), 1 / fs)
    return T.db(2 * np.abs(X) / np.sum(w)), f


def faded_sine(freq, fs, dur, level_db, fade=0.01):
    n = int(round(dur * fs))
    t = np.arange(n) / fs
    x = 10 ** (level_db / 20) * np.sin(2 * np.pi * freq * t)
    k = int(fade * fs)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(k) / k)
    x[:k] *= ramp
    x[-k:] *= ramp[::-1]
    return x


def impulse_flat(y, fs, src_fs, at, what):
    """A unit impulse at src_fs is, band-limited and sampled at fs, a pulse
    whose samples sum to fs/src_fs: a flat resampler gives |FFT| =
    20 log10(fs/src_fs) dB at every frequency it passes."""
    Y = np.fft.rfft(y)
    f = np.fft.rfftfreq(len(y), 1 / fs)
    sel = (f >= 20) & (f <= 20000)
    ref = 20 * np.log10(fs / src_fs)
    h = T.db(Y[sel]) - ref
    k = int(np.argmax(np.abs(h)))
    T.check(np.max(np.abs(h)) <= FLAT,
            "%s: impulse response %+.4f .. %+.4f dB from flat (%.4f dB) over 20 Hz-20 kHz "
            "(limit +-%.2f; worst %+.4f at %.0f Hz)" % (what, h.min(), h.max(), ref, FLAT, h[k],
                                                        f[sel][k]))
    pk = int(np.argmax(np.abs(y)))
    T.check(pk == at, "%s: impulse peak at frame %d (expected %d: aligned with the input)"
            % (what, pk, at))


def resampling(d):
    w = lambda name, x, fs: sf.write(os.path.join(d, name), x.astype(np.float32), fs,
                                     subtype="FLOAT")
    imp48 = np.zeros(48000)
    imp48[24000] = 1.0
    w("imp48.wav", imp48, 48000)
    imp44 = np.zeros(44100)
    imp44[22050] = 1.0
    w("imp44.wav", imp44, 44100)
    w("t23000.wav", faded_sine(23000, 48000, 1.0, TONE_DB), 48000)
    w("t23900.wav", faded_sine(23900, 48000, 1.0, TONE_DB), 48000)
    w("t30000.wav", faded_sine(30000, 96000, 1.0, TONE_DB), 96000)
    w("t20000_44.wav", faded_sine(20000, 44100, 1.0, TONE_DB), 44100)
    for n in (48000, 48010):
        w("len%d.wav" % n, np.zeros(n) + 0.1, 48000)
    for n in (44100, 44111):
        w("len%d.wav" % n, np.zeros(n) + 0.1, 44100)

    down = [("imp48.wav", "imp48_44.wav", 32), ("t23000.wav", "t23000_44.wav", 32),
            ("t23900.wav", "t23900_44.wav", 32), ("len48000.wav", "len48000_44.wav", 32),
            ("len48010.wav", "len48010_44.wav", 32)]
    script = lua_copy(down, rate=48000, out_rate=44100)
    script += "\n" + lua_copy([("t30000.wav", "t30000_44.wav", 32)], rate=96000, out_rate=44100)
    up = [("imp44.wav", "imp44_48.wav", 32), ("t20000_44.wav", "t20000_48.wav", 32),
          ("len44100.wav", "len44100_48.wav", 32), ("len44111.wav", "len44111_48.wav", 32)]
    script += "\n" + lua_copy(up, rate=48000)
    T.render(script, cwd=d, what="resampling")

    y, fs = T.read(os.path.join(d, "imp48_44.wav"))
    T.check(fs == 44100, "48 -> 44.1: output rate %d" % fs)
    impulse_flat(y[:, 0], fs, 48000, 22050, "48 -> 44.1 kHz")
    for name, freq, src_fs in (("t23000_44.wav", 23000, 48000), ("t23900_44.wav", 23900, 48000),
                               ("t30000_44.wav", 30000, 96000)):
        y, fs = T.read(os.path.join(d, name))
        s, f = spectrum_db(y[:, 0], fs, 0.2)
        k = int(np.argmax(s))
        T.check(s[k] <= TONE_DB - REJECT,
                "%g -> 44.1 kHz: %g Hz at %g dBFS: strongest component in the output %.1f dBFS "
                "at %.0f Hz, rejection %.1f dB (need >= %.0f)" % (
                    src_fs / 1000, freq, TONE_DB, s[k], f[k], TONE_DB - s[k], REJECT))

    y, fs = T.read(os.path.join(d, "imp44_48.wav"))
    T.check(fs == 48000, "44.1 -> 48: output rate %d" % fs)
    impulse_flat(y[:, 0], fs, 44100, 24000, "44.1 -> 48 kHz (input resampling)")
    y, fs = T.read(os.path.join(d, "t20000_48.wav"))
    s, f = spectrum_db(y[:, 0], fs, 0.2)
    tone = np.abs(f - 20000) <= 50
    k = int(np.argmax(np.where(tone, -np.inf, s)))
    T.check(abs(s[tone].max() - TONE_DB) < 0.05 and s[k] <= TONE_DB - REJECT,
            "44.1 -> 48 kHz: 20 kHz sine reads %.3f dBFS; strongest other component %.1f dBFS "
            "at %.0f Hz, rejection %.1f dB (need >= %.0f)" % (
                s[tone].max(), s[k], f[k], TONE_DB - s[k], REJECT))

    for n, src_fs, dst_fs, name in ((48000, 48000, 44100, "len48000_44.wav"),
                                    (48010, 48000, 44100, "len48010_44.wav"),
                                    (44100, 44100, 48000, "len44100_48.wav"),
                                    (44111, 44100, 48000, "len44111_48.wav")):
        m = sf.info(os.path.join(d, name)).frames
        exact = n * dst_fs / src_fs
        kind = [k for k, v in (("floor", np.floor(exact)), ("ceil", np.ceil(exact)),
                               ("round", np.floor(exact + 0.5))) if v == m]
        T.check(m in (np.floor(exact), np.ceil(exact)),
                "length %d frames at %g kHz -> %d at %g kHz (exact %.4f: %s)" % (
                    n, src_fs / 1000, m, dst_fs / 1000, exact, "/".join(kind) or "neither"))


def lossy(d):
    fs = 48000
    n = int(1.5 * fs)
    t = np.arange(n) / fs
    x = 10 ** (-6 / 20) * np.sin(2 * np.pi * 1000 * t)
    x = np.stack([x, x], axis=1)
    files = []
    for name, fmt, sub in (("s.mp3", "MP3", "MPEG_LAYER_III"), ("s.ogg", "OGG", "VORBIS"),
                           ("s.opus", "OGG", "OPUS")):
        try:
            sf.write(os.path.join(d, name), x, fs, format=fmt, subtype=sub)
            files.append(name)
        except Exception as e:  # the machine's libsndfile cannot write it
            T.note("%s: soundfile cannot write it here (%s): not tested" % (name, e))
    pairs = [(nm, nm + ".wav", 32) for nm in files]
    for src, dst, b in pairs:
        rc, out, err = T.run_lua(lua_copy([(src, dst, b)]), cwd=d)
        if not T.check(rc == 0, "%s: moonbus reads it (exit %d%s)" % (src, rc, (": " + err.strip()) if rc else "")):
            continue
        ref, rfs = sf.read(os.path.join(d, src), dtype="float32", always_2d=True)
        y, yfs = T.read(os.path.join(d, dst))
        same = y.shape == ref.shape and yfs == rfs
        diff = T.peak_db(y - ref) if same else float("nan")
        T.check(same and diff < -140,
                "%s: %s at %d Hz (soundfile decodes %s at %d Hz), difference %.1f dBFS" % (
                    src, y.shape, yfs, ref.shape, rfs, diff))
        s, f = spectrum_db(y[:, 0], yfs, 0.25)
        k = int(np.argmin(np.abs(f - 1000)))
        lev = s[k - 10:k + 11].max()
        T.check(abs(lev + 6) <= 0.5, "%s: 1 kHz at %.2f dBFS (expected -6 +-0.5)" % (src, lev))


def wav_header(d):
    """A WAV that fits in 4 GiB gets the plain RIFF header every tool reads:
    WAVE_FORMAT_PCM (1) for integers, WAVE_FORMAT_IEEE_FLOAT (3) for float,
    not WAVE_FORMAT_EXTENSIBLE (0xFFFE) or RF64."""
    import struct
    src = os.path.join(d, "hdr_in.wav")
    T.write(src, np.zeros((4800, 2)), 48000, subtype="PCM_16")
    pairs = [(src, os.path.join(d, "hdr_%d.wav" % b), b) for b in (16, 24, 32)]
    T.render(lua_copy(pairs), cwd=d, what="WAV header renders")
    for _, dst, b in pairs:
        with open(dst, "rb") as f:
            head = f.read(22)
        riff, tag = head[:4], struct.unpack("<H", head[20:22])[0]
        want = 3 if b == 32 else 1
        T.check(riff == b"RIFF" and tag == want,
                "%d-bit stereo WAV: %s header, format tag %#x (expected RIFF, %#x)"
                % (b, riff, tag, want))


def quantise(d):
    """Float to 16 and 24 bits: codes = round half away from zero of
    x * 2^(bits-1), clamped to the format's range; NaN writes 0. Inputs:
    exact ties (k + 0.5 codes, both signs), values one float step either
    side of a tie, values beyond +-1, random floats; 1003 frames so the
    vector body and the scalar tail both run."""
    rng = np.random.default_rng(5)
    for bits in (16, 24):
        sc = float(2 ** (bits - 1))
        k = rng.integers(-int(sc), int(sc) - 1, 400).astype(np.float64)
        ties = ((k + 0.5) / sc).astype(np.float32)
        near = np.concatenate([np.nextafter(ties, np.float32(2)), np.nextafter(ties, np.float32(-2))])
        extra = np.array([1.0, -1.0, 1.5, -1.5, 0.99999994, -0.99999994, 0.0, -0.0,
                          0.5 / sc, -0.5 / sc, 1e-30, 3.0e38, -3.0e38], np.float32)
        x = np.concatenate([ties, near, extra,
                            rng.uniform(-1.1, 1.1, 1003 * 2 - 1200 - extra.size).astype(np.float32)])
        x = x[:2006].reshape(-1, 2)
        src = os.path.join(d, "q_in_%d.wav" % bits)
        dst = os.path.join(d, "q_out_%d.wav" % bits)
        T.write(src, x, 48000, subtype="FLOAT")
        T.render(lua_copy([(src, dst, bits)]), cwd=d, what="quantise %d" % bits)
        y, _ = sf.read(dst, dtype="int32", always_2d=True)
        got = y >> (32 - bits)
        v = np.clip(x.astype(np.float64) * sc, -sc, sc - 1)
        want = (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int64)
        bad = int(np.sum(got != want))
        T.check(bad == 0, "%d-bit: %d of %d samples quantised to round-half-away codes (%d wrong)"
                % (bits, got.size - bad, got.size, bad))


def main():
    T.require_modules("input", "output")
    d = T.tmpdir()
    roundtrip(d)
    resampling(d)
    lossy(d)
    wav_header(d)
    quantise(d)
    T.finish()


if __name__ == "__main__":
    main()
