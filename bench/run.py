#!/usr/bin/python3
"""moonbus against sox and ffmpeg, side by side, in one run.

    /usr/bin/python3 bench/run.py [--moonbus build/moonbus] [--runs 5]
                                  [--dir /tmp/moonbus-bench] [--cpus N]
                                  [JOB ...]

Jobs (default: all):
  chain      the reference mastering chain of shared/BENCH.md (HPF 30 Hz,
             low shelf +1.5 dB 100 Hz, bell -2 dB 300 Hz Q 1, high shelf
             +2 dB 10 kHz, compressor -18 dB 2:1 10/150 ms, +6 dB into a
             limiter at -1, 16-bit TPDF dither) on the 5-minute 48 kHz
             24-bit test mix. moonbus runs it twice: true-peak limiting (what
             it ships) and sample-peak limiting (like for like: sox and
             ffmpeg only hold sample peaks).
  loudness   two-pass delivery to -14 LUFS / -1 dBTP: `moonbus master`
             (solve, render, verify) against ffmpeg's two-pass loudnorm
             (linear) and its lean route, ebur128 then volume.
  multiband  3 bands split at 200 and 2000 Hz (Linkwitz-Riley 4th order),
             each compressed: moonbus multiband, sox mcompand, ffmpeg
             acrossover + acompressor + amix.
  convolution  the test mix through gen_testmix.py's 2.5 s stereo impulse
             response (channel by channel, no normalisation, 24-bit out):
             moonbus convolver in block mode (latency 8192 frames,
             compensated) and in zero-latency mode, against ffmpeg afir.
  reverb     algorithmic reverb, wet/dry 30 %: moonbus reverb (16-line
             FDN, RT60 2 s) against sox reverb (Freeverb; defaults).

Each command runs --runs times, the tools interleaved so that the
machine's drift hits them alike; the table shows the median wall time, the
median CPU time (user + system of the process and its children), the
largest peak resident memory, the real-time factor (audio seconds per wall
second) and, per peer, moonbus's speed ratio (peer wall / moonbus wall).
The outputs' loudness and peaks are measured with ffmpeg afterwards so the
speed figures can be read beside what each tool delivered.

--cpus N runs every tool on the first N CPUs it may use (taskset), for
figures on one core (`--cpus 1`) next to the whole machine's.

The test mix is written by shared/bench/gen_testmix.py (deterministic)
into --dir the first time.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
GEN = os.path.join(os.path.dirname(SRC), "shared", "bench", "gen_testmix.py")

FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-max_size", "262144", "-y"]


def run_timed(cmd, cwd):
    """(wall s, CPU s, peak RSS MiB, stdout + stderr) of one command, from
    wait4's resource usage of that child alone; raises on failure."""
    import tempfile
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        text = log.read().decode(errors="replace")
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd[:3]), p.returncode, text[-300:]))
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0, text


def run_steps(steps, cwd, pin=()):
    """A job made of several commands (two passes): times add up, memory is
    the largest; a step may be a function of the previous step's output.
    `pin` prefixes every command (taskset)."""
    wall = cpu = mem = 0.0
    prev = ""
    for step in steps:
        cmd = step(prev) if callable(step) else step
        w, c, m, prev = run_timed(list(pin) + cmd, cwd)
        wall, cpu, mem = wall + w, cpu + c, max(mem, m)
    return wall, cpu, mem


def ffmpeg_r128(path):
    p = subprocess.run(["ffmpeg", "-nostdin", "-nostats", "-hide_banner", "-i", path, "-af",
                        "ebur128=peak=true+sample:metadata=1,ametadata=mode=print:file=-",
                        "-f", "null", "-"], capture_output=True, text=True)
    last = {}
    for line in p.stdout.splitlines():
        if line.startswith("lavfi.r128.") and "=" in line:
            k, v = line[len("lavfi.r128."):].split("=", 1)
            last[k] = float(v)
    import math
    tp = max([v for k, v in last.items() if k.startswith("true_peaks_ch")] or [0])
    sp = max([v for k, v in last.items() if k.startswith("sample_peaks_ch")] or [0])
    db = lambda v: 20 * math.log10(v) if v > 0 else float("-inf")
    return last.get("I"), db(tp), db(sp)


CHAIN_LUA = r"""
-- The reference chain of shared/BENCH.md as a moonbus script.
local inp, out, true_peak = arg[1], arg[2], arg[3] ~= "sample"
local g = mb.graph{}
g:chain(g:add("input", { path = inp }),
  g:add("eq", { bands = {
    { type = "highpass", freq = 30, q = 0.707 },
    { type = "lowshelf", freq = 100, gain = 1.5, q = 0.707 },
    { type = "bell", freq = 300, gain = -2, q = 1 },
    { type = "highshelf", freq = 10000, gain = 2, q = 0.707 } } }),
  g:add("compressor", { threshold = -18, ratio = 2, attack = 10, release = 150, knee = 2,
    detector = "peak", link = 1, makeup = 1 }),
  g:add("limiter", { gain = 6, ceiling = -1, release = 50, true_peak = true_peak }),
  g:add("dither", { bits = 16, shape = "tpdf" }),
  g:add("output", { path = out, bits = 16 }))
g:render{ progress = false }
"""

MULTIBAND_LUA = r"""
local inp, out = arg[1], arg[2]
local g = mb.graph{}
g:chain(g:add("input", { path = inp }),
  g:add("multiband", { crossovers = { 200, 2000 },
    threshold1 = -24, ratio1 = 3, attack1 = 5, release1 = 100,
    threshold2 = -24, ratio2 = 3, attack2 = 5, release2 = 100,
    threshold3 = -24, ratio3 = 3, attack3 = 5, release3 = 100 }),
  g:add("output", { path = out, bits = 24 }))
g:render{ progress = false }
"""


CONV_LUA = r"""
local inp, ir, out, mode = arg[1], arg[2], arg[3], arg[4]
local g = mb.graph{}
g:chain(g:add("input", { path = inp }),
  g:add("convolver", { path = ir, mode = mode }),
  g:add("output", { path = out, bits = 24 }))
g:render{ progress = false, tail = 0.001 }
"""

REVERB_LUA = r"""
local inp, out = arg[1], arg[2]
local g = mb.graph{}
g:chain(g:add("input", { path = inp }),
  g:add("reverb", { rt60 = 2, mix = 0.3 }),
  g:add("output", { path = out, bits = 24 }))
g:render{ progress = false, tail = 0.001 }
"""


def jobs(mbx, inp, d):
    chain_lua = os.path.join(d, "chain.lua")
    with open(chain_lua, "w") as f:
        f.write(CHAIN_LUA)
    mb_lua = os.path.join(d, "multiband.lua")
    with open(mb_lua, "w") as f:
        f.write(MULTIBAND_LUA)
    o = lambda name: os.path.join(d, name)
    for name, text in (("conv.lua", CONV_LUA), ("reverb.lua", REVERB_LUA)):
        with open(o(name), "w") as f:
            f.write(text)
    ir = o("ir_48k.wav")

    def ebur_volume(prev):
        # the summary's integrated loudness is the last "I:" printed
        gain = -14 - float(re.findall(r"I:\s+(-?[\d.]+) LUFS", prev)[-1])
        return FFMPEG + ["-i", inp, "-af", "volume=%.2fdB" % gain, "-c:a", "pcm_s24le", o("ff_vol.wav")]

    def loudnorm2(prev):
        j = json.loads(prev[prev.rindex("{"):])
        return FFMPEG + ["-i", inp, "-af",
                         "loudnorm=I=-14:TP=-1:LRA=20:measured_I=%s:measured_TP=%s:measured_LRA=%s:"
                         "measured_thresh=%s:offset=%s:linear=true" % (
                             j["input_i"], j["input_tp"], j["input_lra"], j["input_thresh"],
                             j["target_offset"]), "-ar", "48000", "-c:a", "pcm_s24le", o("ff_ln.wav")]

    return {
        "chain": [
            ("moonbus (true peak)", [[mbx, "run", chain_lua, inp, o("mb_chain.wav")]], o("mb_chain.wav")),
            ("moonbus (sample peak)", [[mbx, "run", chain_lua, inp, o("mb_chain_sp.wav"), "sample"]],
             o("mb_chain_sp.wav")),
            ("sox", [["sox", "-V1", inp, "-b", "16", o("sox_chain.wav"), "highpass", "30", "bass", "1.5", "100",
                      "0.707q", "equalizer", "300", "1q", "-2", "treble", "2", "10k", "0.707q", "compand",
                      "0.01,0.15", "6:-90,-90,-18,-18,0,-9", "0", "-90", "compand", "0,0.05",
                      "-90,-90,-7,-7,0,-7", "6", "-90", "0", "dither"]], o("sox_chain.wav")),
            ("ffmpeg tuned", [FFMPEG + ["-i", inp, "-af",
                                        "aformat=sample_fmts=dblp,highpass=f=30:p=2:t=q:w=0.707,"
                                        "lowshelf=f=100:g=1.5:t=q:w=0.707,equalizer=f=300:t=q:w=1:g=-2,"
                                        "highshelf=f=10000:g=2:t=q:w=0.707,acompressor=threshold=-18dB:"
                                        "ratio=2:attack=10:release=150:knee=2:detection=peak:link=maximum:"
                                        "makeup=1,alimiter=level_in=2:limit=-1dB:attack=5:release=50:"
                                        "level=0:latency=1,aresample=osf=s16:dither_method=triangular",
                                        "-c:a", "pcm_s16le", o("ff_chain.wav")]], o("ff_chain.wav")),
        ],
        "loudness": [
            ("moonbus master", [[mbx, "master", inp, o("mb_master.wav"), "--lufs", "-14", "--ceiling", "-1",
                                 "--bits", "24", "--quiet"]], o("mb_master.wav")),
            ("ffmpeg ebur128 + volume", [["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-max_size",
                                          "262144", "-i", inp, "-af", "ebur128=peak=true", "-f", "null", "-"],
                                         ebur_volume], o("ff_vol.wav")),
            ("ffmpeg loudnorm 2-pass", [FFMPEG[:3] + ["-loglevel", "info"] + FFMPEG[5:] + [
                "-i", inp, "-af", "loudnorm=I=-14:TP=-1:LRA=20:print_format=json", "-f", "null", "-"],
                loudnorm2], o("ff_ln.wav")),
        ],
        "multiband": [
            ("moonbus multiband", [[mbx, "run", mb_lua, inp, o("mb_mband.wav")]], o("mb_mband.wav")),
            ("sox mcompand", [["sox", "-V1", inp, o("sox_mband.wav"), "mcompand",
                               "0.005,0.1 6:-24,-24,0,-16", "200",
                               "0.005,0.1 6:-24,-24,0,-16", "2000",
                               "0.005,0.1 6:-24,-24,0,-16"]], o("sox_mband.wav")),
            ("ffmpeg tuned", [FFMPEG + ["-i", inp, "-filter_complex",
                                        "aformat=sample_fmts=fltp,acrossover=split=200 2000:order=4th[b0][b1][b2];"
                                        "[b0]acompressor=threshold=-24dB:ratio=3:attack=5:release=100[c0];"
                                        "[b1]acompressor=threshold=-24dB:ratio=3:attack=5:release=100[c1];"
                                        "[b2]acompressor=threshold=-24dB:ratio=3:attack=5:release=100[c2];"
                                        "[c0][c1][c2]amix=inputs=3:normalize=0",
                                        "-c:a", "pcm_s24le", o("ff_mband.wav")]], o("ff_mband.wav")),
        ],
        "convolution": [
            ("moonbus convolver (block)", [[mbx, "run", o("conv.lua"), inp, ir, o("mb_conv.wav"), "block"]],
             o("mb_conv.wav")),
            ("moonbus convolver (zero latency)", [[mbx, "run", o("conv.lua"), inp, ir, o("mb_conv0.wav"),
                                                   "zero"]], o("mb_conv0.wav")),
            ("ffmpeg afir", [FFMPEG + ["-i", inp, "-i", ir, "-filter_complex",
                                       "[0:a][1:a]afir=gtype=none:irfmt=input[o]", "-map", "[o]",
                                       "-c:a", "pcm_s24le", o("ff_conv.wav")]], o("ff_conv.wav")),
        ],
        "reverb": [
            ("moonbus reverb", [[mbx, "run", o("reverb.lua"), inp, o("mb_reverb.wav")]], o("mb_reverb.wav")),
            ("sox reverb", [["sox", "-V1", inp, o("sox_reverb.wav"), "reverb", "50", "50", "100", "100",
                             "0", "-10"]], o("sox_reverb.wav")),
        ],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--moonbus", default=os.path.join(SRC, "build", "moonbus"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", default="/tmp/moonbus-bench")
    ap.add_argument("--cpus", type=int, default=0, help="run every tool on this many CPUs (taskset)")
    ap.add_argument("jobs", nargs="*")
    a = ap.parse_args()
    pin = []
    if a.cpus > 0:
        mine = sorted(os.sched_getaffinity(0))
        if a.cpus > len(mine):
            ap.error("--cpus %d: only %d CPUs available" % (a.cpus, len(mine)))
        pin = ["taskset", "-c", ",".join(str(c) for c in mine[:a.cpus])]
    os.makedirs(a.dir, exist_ok=True)
    inp = os.path.join(a.dir, "input_48k.wav")
    if not os.path.exists(inp) or not os.path.exists(os.path.join(a.dir, "ir_48k.wav")):
        print("writing the test mix into %s ..." % a.dir, flush=True)
        subprocess.run(["/usr/bin/python3", GEN, "--outdir", a.dir], check=True)
    import soundfile as sf
    info = sf.info(inp)
    secs = info.frames / info.samplerate
    table = jobs(os.path.abspath(a.moonbus), inp, a.dir)
    names = a.jobs or list(table)
    for job in names:
        if job not in table:
            ap.error("no job '%s' (jobs: %s)" % (job, ", ".join(table)))
    print("input: %s, %.0f s, %d Hz, %d ch; %d runs each, interleaved; %s; %s" % (
        inp, secs, info.samplerate, info.channels, a.runs,
        "on CPU %s only" % pin[2] if pin else "all %d CPUs" % len(os.sched_getaffinity(0)),
        time.strftime("%Y-%m-%d %H:%M")))
    for job in names:
        tools = table[job]
        res = {t[0]: [] for t in tools}
        for _ in range(a.runs):
            for name, steps, _out in tools:
                try:
                    res[name].append(run_steps(steps, a.dir, pin))
                except RuntimeError as e:
                    print("  %s: %s" % (name, e))
                    res[name].append(None)
        print("\n## %s\n" % job)
        print("| tool | wall s (median) | CPU s | peak MiB | xRT | moonbus speed-up | output LUFS | dBTP | dBFS |")
        print("|---|---|---|---|---|---|---|---|---|")
        ours = [n for n in res if n.startswith("moonbus")]
        med = {}
        for name, _steps, out in tools:
            runs = [r for r in res[name] if r]
            if not runs:
                print("| %s | failed | | | | | | | |" % name)
                continue
            w = statistics.median(r[0] for r in runs)
            c = statistics.median(r[1] for r in runs)
            m = max(r[2] for r in runs)
            med[name] = w
            lufs, tp, sp = ffmpeg_r128(out)
            speed = ""
            if not name.startswith("moonbus") and ours and ours[0] in med:
                speed = "%.2fx" % (w / med[ours[0]])
            print("| %s | %.3f | %.3f | %.0f | %.0f | %s | %.2f | %.2f | %.2f |" % (
                name, w, c, m, secs / w, speed, lufs if lufs is not None else float("nan"), tp, sp))
        if len(ours) > 1:
            print("\n(speed-up against %s; %s)" % (ours[0], ", ".join(
                "%s %.0f xRT" % (n, secs / med[n]) for n in ours if n in med)))


if __name__ == "__main__":
    main()
