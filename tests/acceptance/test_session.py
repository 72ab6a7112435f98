#!/usr/bin/python3
"""Acceptance: mixing sessions (lua/moonbus/session.lua) and
scripts/mixdown.lua, measured with numpy (and ffmpeg for loudness).

What is asserted, and against what:
  pan laws      a mono track (white noise) panned centre and hard left/right
                under each law (0, -3, -4.5, -6 dB), each track rendered as
                its own stem: at centre each side is `law` dB (+-0.05 dB,
                RMS ratio to the input); hard left is 0 dB left (+-0.05) and
                exact zeros right (and the mirror).
  summing       8 stereo tracks at unity routed to the master, mix written as
                32-bit float. (a) Inputs on a 2^-20 grid (|x| <= 1/16), so
                every partial sum is exactly representable in float32: the
                mix must EQUAL the float64 sum, sample for sample. (b) Random
                float32 noise at levels from -40 to -6 dBFS: per sample,
                |mix - sum64| <= (N-1) u sum|x_i| + u |sum64|, u = 2^-24 (the
                error bound of recursive float32 summation in any order plus
                one rounding); a 0.001 dB gain error would break it by 100x.
  sends         a steady mono sine, fader automated 0 -> -20 -> -6 dB, sends
                to three returns rendered as stems: the pre-fader send keeps
                its level (-6 dB) within 0.05 dB sample by sample while the
                fader moves; the post-fader send follows fader + centre pan
                law (-3.01 dB) + send level, and an automated post-fader send
                follows fader + its own automation, within 0.05 dB of the
                breakpoint envelope (linear in dB) at every sample.
  stems         a session with nested buses, returns (an echo with a 0.3 s
                tail), direct tracks, pre/post sends and a master chain:
                rendered with the master bypassed at 24 bits, the stems
                (every route into the master) sum to the mix below -120 dBFS
                and every file has the mix's length (inputs + tail); with the
                master's fader at -6 dB (not bypassed), the mix equals the
                stems' sum times 10^(-6/20) below -120 dBFS. The same session
                renders bit-identically with blocks of 64, 1000 and 4096.
  mute/solo     exact sums (2^-20 grid): polarity inverts exactly; a mute
                removes a track and keeps the mix's length; solo-in-place
                keeps the soloed track's return (solo-safe returns); mute
                wins over solo; muting a bus keeps its tracks' sends; a
                soloed bus lets its tracks through.
  mixdown       scripts/mixdown.lua on a session file in another folder
                (paths relative to the file): 24-bit mix and stems, the
                printed mix loudness within 0.1 LU of ffmpeg's ebur128.
  errors        one `moonbus:` line naming the strip, field and value (or
                the path), with a suggestion where one applies; nothing left
                behind by a render that fails half-way (no mix, no stem, no
                temporary file, no stems folder we created).
"""
import glob
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbtest as T  # noqa: E402

FS = 48000
L = T.lua_str
U = 2.0 ** -24


def write32(path, x):
    T.write(path, np.asarray(x, dtype=np.float32), FS, subtype="FLOAT")


def gridded(rng, n, ch):
    """Samples k 2^-20 with |k| <= 2^16: partial sums of 8 of them stay
    exactly representable in float32 (at most 20 significant bits)."""
    k = rng.integers(-2 ** 16, 2 ** 16 + 1, size=(n, ch))
    return (k * 2.0 ** -20).astype(np.float32)


def mixdown(args, cwd):
    return T.run(["run", os.path.join(T.SRC, "scripts", "mixdown.lua")] + list(args), cwd=cwd)


def one_line(err):
    return err.endswith("\n") and err.count("\n") == 1 and err.startswith("moonbus: ")


def test_pan_laws():
    d = T.tmpdir()
    rng = np.random.default_rng(1)
    x = (rng.uniform(-1, 1, FS) * 0.25).astype(np.float32)
    write32(os.path.join(d, "mono.wav"), x)
    laws = ["0", "-3", "-4.5", "-6"]
    tracks, names = [], []
    for law in laws:
        for pos, tag in ((-1, "L"), (0, "C"), (1, "R")):
            name = "p%s%s" % (law.replace("-", "m").replace(".", "_"), tag)
            names.append((name, law, pos))
            tracks.append('{ name = "%s", file = "mono.wav", pan = %d, law = "%s" }' % (name, pos, law))
    T.render("""
local s = { tracks = { %s }, stems = { %s } }
mb.session.render(s, { mix = "mix.wav", stems = "stems", bits = 32 })
""" % (",\n".join(tracks), ", ".join('"%s"' % n for n, _, _ in names)), cwd=d)
    ref = T.rms_db(x)
    for name, law, pos in names:
        y, fs = T.read(os.path.join(d, "stems", name + ".wav"))
        lv, rv = T.rms_db(y[:, 0]) - ref, T.rms_db(y[:, 1]) - ref
        if pos == 0:
            T.check(abs(lv - float(law)) <= 0.05 and abs(rv - float(law)) <= 0.05,
                    "pan law %s dB, centre: L %+.3f dB, R %+.3f dB (want %s +-0.05)" % (law, lv, rv, law))
        else:
            near, far = (y[:, 0], y[:, 1]) if pos < 0 else (y[:, 1], y[:, 0])
            nv = T.rms_db(near) - ref
            T.check(abs(nv) <= 0.05 and np.max(np.abs(far)) == 0.0,
                    "pan law %s dB, hard %s: near side %+.3f dB (want 0 +-0.05), far side peak %s"
                    % (law, "left" if pos < 0 else "right", nv, T.peak_db(far)))


def test_summing():
    d = T.tmpdir()
    rng = np.random.default_rng(2)
    n, N = FS * 2, 8
    for case in ("grid", "noise"):
        xs = []
        for i in range(N):
            if case == "grid":
                x = gridded(rng, n, 2)
            else:
                lvl = 10 ** (rng.uniform(-40, -6) / 20)
                x = (rng.standard_normal((n, 2)) * lvl).astype(np.float32)
            write32(os.path.join(d, "%s%d.wav" % (case, i)), x)
            xs.append(x.astype(np.float64))
        T.render("""
local tracks = {}
for i = 0, %d do tracks[#tracks + 1] = { name = "t" .. i, file = "%s" .. i .. ".wav" } end
mb.session.render({ tracks = tracks }, { mix = "%s.wav", bits = 32 })
""" % (N - 1, case, case), cwd=d)
        y, _ = T.read(os.path.join(d, case + ".wav"))
        s64 = np.sum(xs, axis=0)
        err = np.abs(y - s64)
        if case == "grid":
            T.check(y.shape == s64.shape and np.max(err) == 0.0,
                    "8 tracks at unity, inputs on a 2^-20 grid: mix == float64 sum exactly "
                    "(max |diff| %g)" % np.max(err))
        else:
            bound = (N - 1) * U * np.sum(np.abs(xs), axis=0) + U * np.abs(s64)
            ratio = np.max(err / np.maximum(bound, 1e-300))
            seq = np.zeros_like(xs[0], dtype=np.float32)
            for x in xs:
                seq = (seq + x.astype(np.float32)).astype(np.float32)
            T.check(y.shape == s64.shape and np.all(err <= bound),
                    "8 tracks of noise at unity: |mix - float64 sum| within the float32 summation bound "
                    "at every sample (worst: %.3f of the bound, max |diff| %.2g = %.1f dBFS)"
                    % (ratio, np.max(err), T.peak_db(err)))
            T.note("samples equal to a float32 sum in track order: %.2f %%"
                   % (100 * np.mean(seq.astype(np.float64) == y)))


def envelope(t, pts):
    """Breakpoint envelope, linear in dB between points (the gain module
    ramps linearly in dB), at times t (s)."""
    return np.interp(t, [p[0] for p in pts], [p[1] for p in pts])


def test_sends():
    d = T.tmpdir()
    secs = 4
    t = np.arange(secs * FS) / FS
    x = (0.5 * np.sin(2 * np.pi * 997 * t)).astype(np.float32)
    write32(os.path.join(d, "tone.wav"), x)
    fader = [(0, 0), (1, 0), (2, -20), (3, -20), (3.5, -6)]
    sendauto = [(0, -30), (4, 0)]
    lua_pts = lambda pts: "{ %s }" % ", ".join("{%g, %g}" % p for p in pts)
    T.render("""
local s = {
  tracks = { { name = "tone", file = "tone.wav", law = -3,
    sends = { { to = "pre", level = -6, pre = true }, { to = "post", level = -6 }, { to = "auto" } },
    automation = { gain = %s, ["send:auto"] = %s } } },
  returns = { { name = "pre" }, { name = "post" }, { name = "auto" } },
  stems = { "pre", "post", "auto" },
}
mb.session.render(s, { mix = "mix.wav", stems = "stems", bits = 32 })
""" % (lua_pts(fader), lua_pts(sendauto)), cwd=d)
    g_f = envelope(t, fader)
    law = 20 * np.log10(np.sqrt(0.5))
    want = {"pre": np.full_like(t, -6.0), "post": g_f + law - 6, "auto": g_f + law + envelope(t, sendauto)}
    strong = np.abs(x) > 0.25  # away from zero crossings, the ratio is well defined
    for name, w in want.items():
        y, _ = T.read(os.path.join(d, "stems", name + ".wav"))
        for ch in range(2):
            got = T.db(y[strong, ch] / x[strong].astype(np.float64))
            dev = np.max(np.abs(got - w[strong]))
            T.check(dev <= 0.05, "%s-fader send '%s' ch %d follows %s within 0.05 dB at every sample "
                    "(worst %.4f dB)" % ("pre" if name == "pre" else "post", name, ch + 1,
                                         "its fixed level" if name == "pre" else "fader + law + send",
                                         dev))
        # windowed levels over time, for the record
        win = FS // 2
        lv = [T.rms_db(y[i:i + win, 0]) - T.rms_db(x[i:i + win]) for i in range(0, len(x), win)]
        T.note("%s return, level per 0.5 s: %s" % (name, " ".join("%.1f" % v for v in lv)))
    y, _ = T.read(os.path.join(d, "stems", "pre.wav"))
    a = T.rms_db(y[: FS // 2, 0])
    b = T.rms_db(y[int(2.25 * FS):int(2.75 * FS), 0])
    T.check(abs(a - b) <= 0.01, "pre-fader send: level with the fader at 0 dB %.3f, at -20 dB %.3f dBFS" % (a, b))


# A session with everything: nested buses, returns with a tail, direct
# tracks, pre and post sends, inserts on tracks, buses and the master.
BIG = """
local function echo(delay_s, gain)
  -- a single repeat after delay_s (a tail of delay_s seconds)
  local hist = {}
  return function(b)
    local n = math.floor(delay_s * b.rate + 0.5)
    for c = 1, b.channels do
      local h = hist[c]
      if not h then h = { pos = 0 }; for i = 0, n - 1 do h[i] = 0.0 end; hist[c] = h end
      local ch = b[c]
      for i = 1, b.frames do
        local x = ch[i]
        ch[i] = x + gain * h[h.pos]
        h[h.pos] = x
        h.pos = (h.pos + 1) % n
      end
    end
  end
end
return {
  tracks = {
    { name = "kick", file = "kick.wav", bus = "drums", gain = -2,
      inserts = { { "eq", { bands = { { type = "highpass", freq = 30 } } } } } },
    { name = "snare", file = "snare.wav", bus = "drums", pan = 0.2,
      sends = { { to = "echo", level = -10, pre = true } } },
    { name = "piano", file = "keys.wav", bus = "keys", pan = -0.4, law = -4.5,
      sends = { { to = "echo", level = -6 } },
      automation = { gain = { {0, -10}, {1, 0}, {2, -3} }, ["send:echo"] = { {0, -20}, {2, -3} } } },
    { name = "bass", file = "bass.wav", bus = "music", polarity = true,
      inserts = { { "compressor", { threshold = -24, ratio = 3 } } } },
    { name = "vox", file = "vox.wav", pan = 0.1, trim = 2,
      sends = { { to = "echo", level = -12 } } },
    { name = "fx", file = "fx.wav", gain = -6 },
  },
  buses = {
    { name = "drums", inserts = { { "compressor", { threshold = -20, ratio = 4, attack = 5 } } } },
    { name = "keys", bus = "music", width = 1.3, gain = -1 },
    { name = "music", pan = -0.1, automation = { gain = { {0, 0}, {2.5, -4} } } },
  },
  returns = {
    { name = "echo", inserts = { { "lua", { process = echo(0.3, 0.5), tail = 0.3 } } }, gain = -3 },
  },
  master = { gain = MASTER_GAIN, inserts = MASTER_INSERTS },
}
"""


def write_big_inputs(d, rng, secs=3.0):
    n = int(secs * FS)
    t = np.arange(n) / FS
    env = np.exp(-(t % 0.5) * 12)
    write32(os.path.join(d, "kick.wav"), 0.6 * np.sin(2 * np.pi * 55 * t) * env)
    write32(os.path.join(d, "snare.wav"), rng.standard_normal(n) * 0.2 * np.exp(-((t + 0.25) % 0.5) * 20))
    write32(os.path.join(d, "keys.wav"), np.stack([0.2 * np.sin(2 * np.pi * 440 * t),
                                                   0.2 * np.sin(2 * np.pi * 554 * t)], 1))
    write32(os.path.join(d, "bass.wav"), 0.4 * np.sin(2 * np.pi * 82.4 * t))
    write32(os.path.join(d, "vox.wav"), (rng.standard_normal(n) * 0.1)[: int(2.5 * FS)])
    write32(os.path.join(d, "fx.wav"), rng.standard_normal((n // 2, 2)) * 0.05)


def big_session(d, master_gain=0, master_inserts='{ { "limiter", { ceiling = -1 } } }'):
    with open(os.path.join(d, "big.lua"), "w") as f:
        f.write(BIG.replace("MASTER_GAIN", str(master_gain)).replace("MASTER_INSERTS", master_inserts))


def test_stems():
    d = T.tmpdir()
    rng = np.random.default_rng(3)
    write_big_inputs(d, rng)
    big_session(d)
    # big.lua uses a `lua` insert, so it is loaded as plain Lua here (a
    # session file is sandboxed but may define functions).
    v = T.render("""
local s = mb.session.load("big.lua")
local stats, r = mb.session.render(s, { mix = "mix.wav", stems = "stems", bypass_master = true })
for _, st in ipairs(r.stems) do emit("stem", st.name) end
emit("frames", stats.outputs[1].frames)
""", cwd=d)
    names = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(d, "stems", "*.wav")))
    T.check(names == ["direct", "drums", "echo", "music"],
            "stems = every route into the master: %s (want direct, drums, echo, music)" % names)
    y, fs = T.read(os.path.join(d, "mix.wav"))
    import soundfile as sf
    T.check(sf.info(os.path.join(d, "mix.wav")).subtype == "PCM_24", "default mix format 24-bit")
    want_len = int(3.0 * FS) + int(0.3 * FS)
    total = np.zeros_like(y)
    lens = {}
    for n in names:
        s, _ = T.read(os.path.join(d, "stems", n + ".wav"))
        lens[n] = len(s)
        if s.shape == y.shape:
            total += s
    T.check(len(y) == want_len and all(v == len(y) for v in lens.values()),
            "mix %d frames (3 s + 0.3 s echo tail = %d), stems %s" % (len(y), want_len, lens))
    null = T.peak_db(y - total) if total.shape == y.shape else 0
    T.check(null < -120, "master bypassed: stems summed null against the 24-bit mix at %.1f dBFS (< -120)" % null)
    T.check(T.peak_db(y[int(3.05 * FS):, :]) > -60, "the echo's tail is in the mix (%.1f dBFS after the inputs end)"
            % T.peak_db(y[int(3.05 * FS):, :]))

    # Not bypassed: the master fader applies to the sum (float files).
    d2 = T.tmpdir()
    write_big_inputs(d2, np.random.default_rng(3))
    big_session(d2, master_gain=-6, master_inserts="{}")
    T.render("""
mb.session.render(mb.session.load("big.lua"), { mix = "mix.wav", stems = "stems", bits = 32 })
""", cwd=d2)
    y, _ = T.read(os.path.join(d2, "mix.wav"))
    total = sum(T.read(os.path.join(d2, "stems", n + ".wav"))[0] for n in names)
    null = T.peak_db(y - total * 10 ** (-6 / 20))
    T.check(null < -120, "master fader -6 dB: mix vs stems' sum x 10^(-6/20): %.1f dBFS (< -120)" % null)

    # Block sizes: identical renders (float files, mix and every stem).
    outs = {}
    for block in (64, 1000, 4096):
        T.render("""
mb.session.render(mb.session.load("big.lua"), { mix = "b%d.wav", stems = "b%d", bits = 32, block = %d })
""" % (block, block, block), cwd=d)
        outs[block] = [T.read_raw32(os.path.join(d, "b%d.wav" % block))[0]] + \
            [T.read_raw32(os.path.join(d, "b%d" % block, n + ".wav"))[0] for n in names]
    same = all(a.shape == b.shape and np.array_equal(a, b)
               for blk in (64, 1000) for a, b in zip(outs[blk], outs[4096]))
    T.check(same, "blocks of 64, 1000 and 4096 frames: mix and 4 stems bit-identical")
    sub = [np.sum((a != 0) & (np.abs(a) < np.finfo(np.float32).tiny)) for a in outs[4096]]
    T.check(sum(sub) == 0 and all(np.all(np.isfinite(a)) for a in outs[4096]),
            "no NaN, Inf or subnormal sample in the mix or stems (subnormals: %s)" % sub)


def test_mute_solo():
    d = T.tmpdir()
    rng = np.random.default_rng(4)
    a = gridded(rng, 3 * FS, 2)
    c = gridded(rng, 4 * FS, 2)
    dd = gridded(rng, 1 * FS, 2)
    for n, x in (("a", a), ("c", c), ("d", dd)):
        write32(os.path.join(d, n + ".wav"), x)
    n = 4 * FS

    def pad(x):
        out = np.zeros((n, 2))
        out[: len(x)] = x
        return out

    A, C, D = pad(a), pad(c), pad(dd)
    cases = {
        "base": ("", A + A + C - D),
        "mute_c": ('s.tracks[2].mute = true', A + A - D),
        "solo_a": ('s.tracks[1].solo = true', A + A),
        "solo_mute_a": ('s.tracks[1].solo = true; s.tracks[1].mute = true', 0 * A),
        "mute_bus": ('s.buses[1].mute = true', A + C - D),
        "mute_return": ('s.returns[1].mute = true', A + C - D),
        "solo_bus": ('s.buses[1].solo = true', A + A),
        "solo_d_and_bus": ('s.buses[1].solo = true; s.tracks[3].solo = true', A + A - D),
    }
    for name, (change, want) in cases.items():
        T.render("""
local s = {
  tracks = { { name = "a", file = "a.wav", bus = "b1", sends = { { to = "r" } } },
             { name = "c", file = "c.wav" },
             { name = "d", file = "d.wav", polarity = true } },
  buses = { { name = "b1" } },
  returns = { { name = "r" } },
}
%s
mb.session.render(s, { mix = "%s.wav", bits = 32 })
""" % (change, name), cwd=d)
        y, _ = T.read(os.path.join(d, name + ".wav"))
        ok = y.shape == want.shape and np.array_equal(y, want)
        T.check(ok, "%s (%s): mix equals the expected exact sum, %d frames (want %d)%s"
                % (name, change or "all tracks; d with polarity inverted", len(y), n,
                   "" if ok or y.shape != want.shape else ", max diff %g" % np.max(np.abs(y - want))))


def test_mixdown_script():
    d = T.tmpdir()
    proj = os.path.join(d, "proj")
    os.makedirs(os.path.join(proj, "audio"))
    rng = np.random.default_rng(5)
    t = np.arange(3 * FS) / FS
    write32(os.path.join(proj, "audio", "gtr.wav"), 0.3 * np.sin(2 * np.pi * 196 * t))
    write32(os.path.join(proj, "audio", "pad.wav"), rng.standard_normal((3 * FS, 2)) * 0.05)
    with open(os.path.join(proj, "song.lua"), "w") as f:
        f.write("""-- a session file: plain data, loops allowed
local pts = {}
for i = 0, 6 do pts[#pts + 1] = { i * 0.5, i % 2 == 0 and 0 or -6 } end
return {
  tracks = {
    { name = "gtr", file = "audio/gtr.wav", pan = -0.3, bus = "band", automation = { gain = pts } },
    { name = "pad", file = "audio/pad.wav", gain = -4, bus = "band" },
  },
  buses = { { name = "band", inserts = { { "compressor", { threshold = -20, ratio = 2 } } } } },
  output = { mix = "out/mix.wav", stems = "out/stems" },
}
""")
    rc, out, err = mixdown([os.path.join("proj", "song.lua"), "--mix", "mix.wav", "--stems", "stems"], cwd=d)
    T.check(rc == 0 and err == "", "mixdown: exit 0, quiet stderr (rc %d, %r)" % (rc, err[:300]))
    import soundfile as sf
    ok = os.path.isfile(os.path.join(d, "mix.wav")) and os.path.isfile(os.path.join(d, "stems", "band.wav"))
    T.check(ok, "mixdown: wrote mix.wav and stems/band.wav (paths from the command line, relative to the cwd)")
    if ok:
        info = sf.info(os.path.join(d, "mix.wav"))
        T.check(info.subtype == "PCM_24" and info.frames == 3 * FS and info.channels == 2,
                "mixdown: 24-bit stereo mix, %d frames (%s)" % (info.frames, info.subtype))
        m = re.search(r"^mix\s+(-?\d+\.\d+)", out, re.M)
        f = T.ffmpeg_r128(os.path.join(d, "mix.wav"))
        T.check(m is not None and abs(float(m.group(1)) - f["I"]) <= 0.1,
                "mixdown: printed mix loudness %s LUFS vs ffmpeg %.2f (within 0.1 LU)"
                % (m.group(1) if m else None, f["I"]))
        T.check("gain reduction" in out and "band.compressor" in out,
                "mixdown: the report names the compressor's gain reduction: %r" % out[-300:])
    # the session's own output paths, relative to the session file
    rc, out, err = mixdown([os.path.join("proj", "song.lua"), "-q", "--bits", "16"], cwd=d)
    ok = rc == 0 and out == "" and os.path.isfile(os.path.join(proj, "out", "mix.wav")) \
        and os.path.isfile(os.path.join(proj, "out", "stems", "band.wav"))
    T.check(ok, "mixdown: output.mix and output.stems from the session, relative to it (rc %d, %r)"
            % (rc, err[:300]))
    if ok:
        T.check(sf.info(os.path.join(proj, "out", "mix.wav")).subtype == "PCM_16", "mixdown --bits 16: 16-bit mix")
    # --mute from the command line: an instrumental
    rc, out, err = mixdown([os.path.join("proj", "song.lua"), "--mix", "inst.wav", "--mute", "gtr", "--bits", "32"],
                           cwd=d)
    if T.check(rc == 0, "mixdown --mute gtr: exit 0 (%r)" % err[:300]):
        y, _ = T.read(os.path.join(d, "inst.wav"))
        T.check(len(y) == 3 * FS and "not heard" in out and "gtr" in out,
                "mixdown --mute gtr: %d frames, the report says what was not heard" % len(y))


def test_example():
    """scripts/examples/session.lua, with synthesised files in its audio/."""
    d = T.tmpdir()
    proj = os.path.join(d, "proj")
    os.makedirs(os.path.join(proj, "audio"))
    with open(os.path.join(T.SRC, "scripts", "examples", "session.lua")) as f:
        text = f.read()
    with open(os.path.join(proj, "song.lua"), "w") as f:
        f.write(text)
    rng = np.random.default_rng(8)
    n = 6 * FS
    t = np.arange(n) / FS
    hit = lambda period, decay: np.exp(-(t % period) * decay)
    files = {
        "kick": 0.5 * np.sin(2 * np.pi * 55 * t) * hit(0.625, 10),
        "snare": rng.standard_normal(n) * 0.15 * hit(1.25, 25),
        "overheads": rng.standard_normal((n, 2)) * 0.03,
        "bass": 0.3 * np.sin(2 * np.pi * 41.2 * t),
        "guitar": 0.2 * np.sin(2 * np.pi * 196 * t) * hit(0.3125, 3),
        "guitar2": -0.18 * np.sin(2 * np.pi * 196.5 * t) * hit(0.3125, 3),
        "vocal": 0.25 * np.sin(2 * np.pi * 220 * t + 3 * np.sin(2 * np.pi * 4 * t)),
    }
    for k, x in files.items():
        T.write(os.path.join(proj, "audio", k + ".wav"), x, FS, subtype="PCM_24")
    rc, out, err = mixdown([os.path.join("proj", "song.lua"), "--bypass-master", "--bits", "32", "-q"], cwd=d)
    if not T.check(rc == 0 and err == "", "example session: mixdown exit 0 (rc %d, %r)" % (rc, err[:300])):
        return
    names = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(proj, "stems", "*.wav")))
    T.check(names == ["direct", "drums", "music", "room", "slap"],
            "example session: stems %s (direct, drums, music, room, slap)" % names)
    y, _ = T.read(os.path.join(proj, "mix.wav"))
    parts = [T.read(os.path.join(proj, "stems", s + ".wav"))[0] for s in names]
    ok = all(p.shape == y.shape for p in parts)
    null = T.peak_db(y - sum(parts)) if ok else 0
    T.check(ok and null < -120 and len(y) > n,
            "example session: %d frames (inputs 6 s + tails), stems null the mix at %.1f dBFS"
            % (len(y), null))
    rc, out, err = mixdown([os.path.join("proj", "song.lua"), "--mix", "with-master.wav"], cwd=d)
    T.check(rc == 0 and "stem slap" in out and "vocal.compressor" in out,
            "example session with its master bus: exit %d, report %r" % (rc, (out + err)[-400:]))


def expect_fail(what, d, session_text, names, suggest=None, args=(), code=1, fname="s.lua"):
    with open(os.path.join(d, fname), "w") as f:
        f.write(session_text)
    before = set(os.listdir(d))
    rc, out, err = mixdown([fname, "--mix", "m.wav", "--stems", "st"] + list(args), cwd=d)
    missing = [n for n in names if n not in err]
    T.check(rc == code and one_line(err) and not missing,
            "%s: exit %d, one line naming %s: %r" % (what, rc, names, err.strip()[:300]))
    if suggest:
        T.check("did you mean '%s'" % suggest in err, "%s: suggests '%s': %r" % (what, suggest, err.strip()[:200]))
    T.check(set(os.listdir(d)) == before, "%s: nothing written (%s)" % (what, sorted(set(os.listdir(d)) - before)))


def test_errors():
    d = T.tmpdir()
    write32(os.path.join(d, "k.wav"), np.zeros(FS))
    base = 'return { tracks = { { name = "kick", file = "k.wav"%s } }%s }'
    expect_fail("pan out of range", d, base % (", pan = 1.5", ""),
                ["session: track 'kick': pan 1.5 out of range -1..1"])
    expect_fail("unknown bus", d, base % (', bus = "drumz"', ', buses = { { name = "drums" } }'),
                ["track 'kick'", "bus 'drumz' does not exist"], suggest="drums")
    expect_fail("bus cycle", d, base % (', bus = "a"', ', buses = { { name = "a", bus = "b" }, { name = "b", bus = "a" } }'),
                ["routing cycle", "bus 'a' -> bus 'b' -> bus 'a'"])
    expect_fail("send cycle between returns", d,
                base % (', sends = { { to = "r1" } }',
                        ', returns = { { name = "r1", sends = { { to = "r2" } } }, { name = "r2", sends = { { to = "r1" } } } }'),
                ["routing cycle", "return 'r1' -> return 'r2' -> return 'r1'"])
    expect_fail("missing file", d, 'return { tracks = { { name = "kick", file = "nope/kick.wav" } } }',
                ["track 'kick'", os.path.join(d, "nope/kick.wav")[len(d) + 1:], "not found"])
    expect_fail("unknown field", d, base % (", pna = 0.5", ""), ["track 'kick'", "'pna'"], suggest="pan")
    expect_fail("unknown module", d, base % (', inserts = { { "compresor", {} } }', ""),
                ["track 'kick': insert 1", "'compresor'"], suggest="compressor")
    expect_fail("bad insert parameter", d, base % (', inserts = { { "compressor", { threshold = 10 } } }', ""),
                ["track 'kick': insert 1 (compressor)", "threshold", "10"])
    expect_fail("unknown insert option", d, base % (', inserts = { { "compressor", { treshold = -10 } } }', ""),
                ["track 'kick': insert 1 (compressor)", "treshold"], suggest="threshold")
    expect_fail("send to an unknown return", d, base % (', sends = { { to = "verv" } }', ', returns = { { name = "verb" } }'),
                ["track 'kick'", "'verv'"], suggest="verb")
    expect_fail("automation value out of range", d, base % (", automation = { gain = { {0, 0}, {1, 100} } }", ""),
                ["track 'kick'", "automation 'gain' point 2", "100", "-120..48"])
    expect_fail("automation lane", d, base % (", automation = { gian = { {0, 0} } }", ""),
                ["track 'kick'", "'gian'"], suggest="gain")
    expect_fail("duplicate name", d, base % ("", ', buses = { { name = "kick" } }'),
                ["bus 'kick'", "taken by track 'kick'"])
    expect_fail("bad law", d, base % (", law = -5", ""), ["track 'kick'", "law -5"])
    expect_fail("no tracks", d, "return { }", ["session", "track"])
    expect_fail("not a table", d, "return 42", ["must return a table"])
    expect_fail("syntax error", d, "return { tracks = { }\n", ["s.lua:"])
    expect_fail("sandbox: no os", d, 'os.execute("touch pwned") return {}', ["os"])
    T.check(not os.path.exists(os.path.join(d, "pwned")), "sandbox: the session file could not run a command")
    expect_fail("sandbox: no io", d, 'io.open("x", "w") return {}', ["io"])
    rc, out, err = mixdown(["nope.lua", "--mix", "m.wav"], cwd=d)
    T.check(rc == 1 and one_line(err) and "cannot open 'nope.lua'" in err, "missing session file: %r" % err.strip())
    with open(os.path.join(d, "ok.lua"), "w") as f:
        f.write(base % ("", ""))
    rc, out, err = mixdown(["ok.lua"], cwd=d)
    T.check(rc == 2 and one_line(err) and "--mix" in err, "mixdown without --mix or output.mix: exit 2: %r" % err.strip())
    rc, out, err = mixdown(["ok.lua", "--mix", "k.wav"], cwd=d)
    T.check(rc == 1 and one_line(err) and "k.wav" in err and "input" in err,
            "mix over one of the inputs refused: %r" % err.strip())
    rc, out, err = mixdown(["ok.lua", "--mix", "m.wav", "--mute", "kik"], cwd=d)
    T.check(rc == 2 and one_line(err) and "did you mean 'kick'" in err, "--mute kik: %r" % err.strip())

    # A render that fails half-way leaves nothing behind.
    dd = T.tmpdir()
    rng = np.random.default_rng(6)
    write32(os.path.join(dd, "k.wav"), rng.standard_normal(2 * FS) * 0.1)
    rc, out, err = T.run_lua("""
local boom = function(b) if b.time > 0.5 then error("boom at " .. b.time) end end
local s = { tracks = { { name = "kick", file = "k.wav", bus = "drums" },
                       { name = "snare", file = "k.wav" } },
            buses = { { name = "drums", inserts = { { "lua", { process = boom } } } } } }
local ok, e = pcall(mb.session.render, s, { mix = "mix.wav", stems = "new/stems" })
emit("ok", tostring(ok)); emit("err", tostring(e))
""", cwd=dd)
    v = T.parse_emitted(out)
    left = sorted(os.listdir(dd))
    T.check(v.get("ok") == "false" and "boom" in str(v.get("err")),
            "failing render raises the insert's error: %r" % v.get("err"))
    T.check(left == ["k.wav", "script.lua"],
            "failing render leaves no mix, no stem, no temporary file, and removes the stems folders it "
            "created (left: %s)" % left)


def stems_run(args, cwd):
    return T.run(["run", os.path.join(T.SRC, "scripts", "stems.lua")] + list(args), cwd=cwd)


def test_stem_mastering():
    d = T.tmpdir()
    rng = np.random.default_rng(7)
    secs = 8
    n = secs * FS
    t = np.arange(n) / FS
    from scipy import signal
    drums = np.zeros((n, 2))
    for k in range(secs * 2):
        i = int(k * 0.5 * FS)
        m = min(n - i, int(0.3 * FS))
        tt = np.arange(m) / FS
        drums[i:i + m] += (0.7 * np.sin(2 * np.pi * 60 * tt) * np.exp(-tt * 12))[:, None]
        drums[i:i + m, 0] += rng.standard_normal(m) * 0.15 * np.exp(-tt * 30)
    bass = 0.35 * signal.lfilter(*signal.butter(2, 400 / (FS / 2)), signal.sawtooth(2 * np.pi * 55 * t))
    music = signal.lfilter(*signal.butter(2, [300 / (FS / 2), 4000 / (FS / 2)], "band"),
                           rng.standard_normal((n, 2)) * 0.2, axis=0)
    vocals = 0.2 * np.sin(2 * np.pi * 330 * t + 2 * np.sin(2 * np.pi * 5 * t))[:, None] * [0.9, 1.0]
    stems = {"drums": drums, "bass": bass, "music": music, "vocals": vocals}
    for k, x in stems.items():
        write32(os.path.join(d, k + ".wav"), x)
    stems = {k: np.asarray(x, dtype=np.float32).astype(np.float64) for k, x in stems.items()}
    dual = lambda x: x[:, None] * [1, 1] if x.ndim == 1 else x

    # A list of files: summed at unity (the mono bass on both sides).
    files = [k + ".wav" for k in stems]
    before = set(os.listdir(d))
    rc, out, err = stems_run(files + ["-o", "master.wav", "--target", "spotify", "--json", "r.json"], cwd=d)
    ok = T.check(rc == 0 and err == "", "stems.lua drums bass music vocals --target spotify: exit %d %r"
                 % (rc, err.strip()[:300]))
    left = sorted(set(os.listdir(d)) - before)
    T.check(left == ["master.wav", "r.json"], "stems.lua leaves only the master and the report: %s" % left)
    if ok:
        import json
        r = json.load(open(os.path.join(d, "r.json")))
        m = T.ffmpeg_r128(os.path.join(d, "master.wav"))
        T.check(abs(m["I"] + 14) <= 0.2 and m["TP"] <= -0.9 and m["SP"] <= -0.9,
                "stem master: ffmpeg %.2f LUFS (-14 +-0.2), true peak %.2f dBTP, sample peak %.2f dBFS (<= -0.9)"
                % (m["I"], m["TP"], m["SP"]))
        total = sum(dual(x) for x in stems.values())
        write32(os.path.join(d, "numpy_sum.wav"), total)
        ms = T.ffmpeg_r128(os.path.join(d, "numpy_sum.wav"))
        T.check(abs(r["before"]["integrated"] - ms["I"]) <= 0.1,
                "report 'before' %.2f LUFS vs ffmpeg on the numpy sum of the stems %.2f"
                % (r["before"]["integrated"], ms["I"]))
        T.check(r["input"] == "4 stems" and r.get("stems") == files and all(
            k in r for k in ("before", "after", "gain", "max_gain_reduction", "passes", "target")),
            "report: the master's fields, input '%s', stems %s" % (r.get("input"), r.get("stems")))
        # `moonbus master` on the same sum: the same report and master
        rc, _, err = T.run(["master", "numpy_sum.wav", "ref.wav", "--target", "spotify", "--json", "ref.json"], cwd=d)
        if T.check(rc == 0, "moonbus master on the numpy sum: exit %d %r" % (rc, err[:200])):
            ref = json.load(open(os.path.join(d, "ref.json")))
            T.check(abs(ref["gain"] - r["gain"]) <= 0.01 and
                    abs(ref["after"]["integrated"] - r["after"]["integrated"]) <= 0.01 and
                    ref["passes"] == r["passes"],
                    "same as moonbus master: gain %+.3f vs %+.3f dB, after %.3f vs %.3f LUFS, passes %d vs %d"
                    % (r["gain"], ref["gain"], r["after"]["integrated"], ref["after"]["integrated"],
                       r["passes"], ref["passes"]))
            a, _ = T.read(os.path.join(d, "master.wav"))
            b, _ = T.read(os.path.join(d, "ref.wav"))
            null = T.peak_db(a - b) if a.shape == b.shape else 0
            T.check(null < -100, "stems.lua master vs moonbus master on the summed file: null %.1f dBFS (< -100)"
                    % null)

    # A stems file with per-stem processing; --mix keeps the sum.
    with open(os.path.join(d, "stems.lua"), "w") as f:
        f.write("""return { tracks = {
  { name = "drums", file = "drums.wav", gain = -6 },
  { name = "bass", file = "bass.wav", pan = -1, law = 0 },
  { name = "music", file = "music.wav", polarity = true },
  { name = "vocals", file = "vocals.wav", pan = 0.5 },
} }
""")
    rc, out, err = stems_run(["stems.lua", "-o", "m2.wav", "--lufs", "-16", "--mix", "sum.wav", "-q"], cwd=d)
    if T.check(rc == 0 and out == "" and os.path.isfile(os.path.join(d, "sum.wav")),
               "stems.lua stems.lua --mix sum.wav -q: exit %d, quiet, sum kept %r" % (rc, err[:300])):
        y, _ = T.read(os.path.join(d, "sum.wav"))
        # the expected sum: drums -6 dB; bass hard left (law 0); music
        # inverted; vocals (stereo) balanced right: left at the -3 law's
        # cos(0.75 pi/2) / cos(pi/4)
        want = stems["drums"] * 10 ** (-6 / 20) - stems["music"] + stems["vocals"] * [
            np.cos(0.375 * np.pi) / np.cos(0.25 * np.pi), 1]
        want[:, 0] += stems["bass"]
        null = T.peak_db(y - want) if y.shape == want.shape else 0
        T.check(null < -120, "per-stem gain, pan, polarity and balance: the kept sum nulls against numpy at %.1f dBFS"
                % null)
        m = T.ffmpeg_r128(os.path.join(d, "m2.wav"))
        T.check(abs(m["I"] + 16) <= 0.2 and m["TP"] <= -0.9, "stems file master: %.2f LUFS (-16), %.2f dBTP"
                % (m["I"], m["TP"]))

    # Failures leave nothing.
    before = set(os.listdir(d))
    rc, out, err = stems_run(files + ["-o", "loud.wav", "--lufs", "-6", "--max-limiting", "1", "--json", "j.json"], cwd=d)
    T.check(rc == 1 and one_line(err) and "limiting" in err and set(os.listdir(d)) == before,
            "too much limiting: exit %d, one line %r, nothing written (%s)"
            % (rc, err.strip()[:200], sorted(set(os.listdir(d)) - before)))
    rc, out, err = stems_run(["drums.wav", "nope.wav", "-o", "x.wav", "--target", "spotify"], cwd=d)
    T.check(rc == 1 and one_line(err) and "nope.wav" in err, "missing stem: %r" % err.strip())
    rc, out, err = stems_run(["drums.wav", "-o", "x.wav"], cwd=d)
    T.check(rc == 2 and one_line(err) and "--target" in err, "no target: exit 2: %r" % err.strip())
    rc, out, err = stems_run(["drums.wav", "-o", "drums.wav", "--target", "spotify"], cwd=d)
    T.check(rc == 1 and one_line(err) and "drums.wav" in err, "master over a stem refused: %r" % err.strip())
    T.check(set(os.listdir(d)) == before, "no file left by the failed runs: %s" % sorted(set(os.listdir(d)) - before))


def main():
    T.require_modules("gain", "pan", "blend", "width", "eq", "compressor", "limiter", "meter", "lua")
    test_pan_laws()
    test_summing()
    test_sends()
    test_stems()
    test_mute_solo()
    test_mixdown_script()
    test_example()
    test_errors()
    test_stem_mastering()
    T.finish()


main()
