"""moonbus batch: a catalogue mastered in parallel workers, checked, reported
and resumed (issue 6).

Measured with ffmpeg (ebur128, astats) and numpy, never with moonbus:
- every output lands on its target (within 0.2 LU) under its ceiling, and
  the QC figures in the report agree with ffmpeg within 0.1 dB / 0.1 LU;
- a missing input fails its own job only; the exit status says so;
- malformed rows, duplicate outputs and outputs escaping the output folder
  are refused, with their lines, before anything is written;
- a re-run redoes only what failed or changed (settings, input content);
- a batch killed with SIGKILL mid-run and run again finishes every job,
  redoes none that had finished, and leaves no partial file;
- shards split the jobs disjointly and --merge reports each job once;
- the HTML report renders in headless Chromium with its plots, and its
  table equals the JSON (tests/acceptance/htmlcheck.py).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

import mbtest as T

TARGETS = {"spotify": (-14, -1), "apple": (-16, -1), "youtube": (-13, -1),
           "tidal": (-14, -1), "ebu": (-23, -1)}


def batch(args, cwd, timeout=900):
    return T.run(["batch"] + list(args), cwd=cwd, timeout=timeout)


def astats(path):
    """ffmpeg astats overall figures: peak and RMS level (dBFS), DC offset
    (linear, the largest channel's |mean|)."""
    p = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", path,
                        "-af", "astats=measure_overall=Peak_level+RMS_level:measure_perchannel=DC_offset",
                        "-f", "null", "-"], capture_output=True, text=True)
    out = {"dc": 0.0}
    section = None
    for line in p.stderr.splitlines():
        line = line.split("] ", 1)[-1].strip()
        if line.startswith("Channel:"):
            section = "ch"
        elif line.startswith("Overall"):
            section = "all"
        elif ":" in line:
            k, v = [s.strip() for s in line.split(":", 1)]
            try:
                v = float(v)
            except ValueError:
                continue
            if section == "ch" and k == "DC offset":
                out["dc"] = max(out["dc"], abs(v))
            elif section == "all" and k == "Peak level dB":
                out["peak"] = v
            elif section == "all" and k == "RMS level dB":
                out["rms"] = v
    return out


def walk_partials(*roots):
    """Files a finished run must not leave: our hidden work files."""
    bad = []
    for root in roots:
        for dp, _, names in os.walk(root):
            for n in names:
                if ".moonbus-" in n or n.endswith(".tmp"):
                    bad.append(os.path.join(dp, n))
    return bad


def report(d, name="m"):
    with open(os.path.join(d, name + "-qc", "report.json")) as f:
        return json.load(f)


def ran_lines(out):
    return [l for l in out.splitlines() if l.startswith("[")]


# ---------------------------------------------------------------------------
d = T.tmpdir()
os.makedirs(os.path.join(d, "mixes"))
tracks = [("01 Opening.wav", -26, 48000, "PCM_24", "spotify"),
          ("02 Loud.wav", -11, 48000, "PCM_24", "apple"),
          ("03 Quiet start.wav", -20, 44100, "PCM_16", "-16"),
          ("04 Ballad.wav", -30, 48000, "PCM_24", "youtube"),
          ("05 Custom.wav", -18, 48000, "PCM_24", "tidal")]
for i, (name, lvl, fs, sub, _) in enumerate(tracks):
    T.music(os.path.join(d, "mixes", name), 30, lvl, fs, seed=i, subtype=sub,
            head=1.0 if i == 2 else 0.0)

# a copy of the default chain that reads a manifest column (s.params.air)
with open(os.path.join(T.SRC, "scripts", "master.lua")) as f:
    chain_src = f.read()
chain_src = chain_src.replace(
    '{ type = "highpass", freq = 20, slope = 12 },',
    '{ type = "highpass", freq = 20, slope = 12 },\n'
    '    { type = "highshelf", freq = 10000, gain = assert(tonumber(s.params.air), "air") },')
assert "s.params.air" in chain_src
with open(os.path.join(d, "bright.lua"), "w") as f:
    f.write(chain_src)

rows = ["input,output,target,script,air,notes"]
for i, (name, _, _, _, tgt) in enumerate(tracks):
    script = "bright.lua" if i == 4 else ""
    air = "2.5" if i == 4 else ""
    rows.append('mixes/%s,"masters/%s",%s,%s,%s,"row %d, as delivered"' % (
        name, name, tgt, script, air, i + 1))
rows.append("mixes/06 Missing.wav,masters/06 Missing.wav,spotify,,,")
with open(os.path.join(d, "m.csv"), "w") as f:
    f.write("\n".join(rows) + "\n")


def fresh_copy(name):
    """A new folder under d with the mixes, the script and m.csv, for a
    run that must start from nothing."""
    new = os.path.join(d, name)
    os.makedirs(new)
    shutil.copytree(os.path.join(d, "mixes"), os.path.join(new, "mixes"))
    shutil.copy(os.path.join(d, "bright.lua"), new)
    shutil.copy(os.path.join(d, "m.csv"), new)
    return new

masters = os.path.join(d, "masters")
qc = os.path.join(d, "m-qc")

# --- dry run: the plan, nothing written
rc, out, err = batch(["m.csv", "--dry-run"], d)
T.check(rc == 0 and "6 to run" in out, "dry run plans 6 jobs (rc %d): %s" % (rc, out.strip().splitlines()[-1:]))
T.check(not os.path.exists(masters) and not os.path.exists(qc),
        "dry run writes nothing (no output or report folder)")

# --- the run: two workers, one job fails (its input is missing)
t0 = time.time()
rc, out, err = batch(["m.csv", "--jobs", "2"], d)
T.note("batch of 6 jobs with 2 workers: %.1f s" % (time.time() - t0))
T.check(rc == 1, "a failed job makes the exit status 1 (got %d)" % rc)
errl = [l for l in err.splitlines() if l.strip()]
T.check(len(errl) == 1 and errl[0].startswith("moonbus: batch: 1 of 6 jobs failed"),
        "one error line: %s" % errl)
T.check("06 Missing.wav" in out and "failed:" in out, "the summary lists the failed job")
rep = report(d)
jobs = {j["output"]: j for j in rep["jobs"]}
T.check(rep["summary"]["jobs"] == 6 and rep["summary"]["error"] == 1,
        "report summary: %s" % rep["summary"])
T.check(jobs["masters/06 Missing.wav"]["verdict"] == "error" and
        "missing.wav" in jobs["masters/06 Missing.wav"]["error"].lower(),
        "the missing input fails its own job: %s" % jobs["masters/06 Missing.wav"].get("error"))

for i, (name, lvl, fs, sub, tgt) in enumerate(tracks):
    path = os.path.join(masters, name)
    if not T.check(os.path.exists(path), "output %s exists" % name):
        continue
    lufs, ceiling = TARGETS.get(tgt, (float(tgt) if tgt.lstrip("-").isdigit() else None, -1))
    r = T.ffmpeg_r128(path)
    T.check(abs(r["I"] - lufs) <= 0.2 and r["TP"] <= ceiling + 0.1,
            "%s: ffmpeg %.2f LUFS (target %g), true peak %.2f dBTP (ceiling %g)" % (
                name, r["I"], lufs, r["TP"], ceiling))
    j = jobs["masters/" + name]
    a = j["after"]
    T.check(j["verdict"] == "pass", "%s: QC verdict %s (%s)" % (
        name, j["verdict"], [(c["name"], c["verdict"]) for c in j["checks"] if c["verdict"] != "pass"]))
    dI, dL, dT = abs(a["integrated"] - r["I"]), abs(a["lra"] - r["LRA"]), abs(a["true_peak"] - r["TP"])
    T.check(dI <= 0.1 and dL <= 0.1 and dT <= 0.1,
            "%s: QC vs ffmpeg ebur128: I %.3f/%.3f, LRA %.3f/%.3f, TP %.3f/%.3f" % (
                name, a["integrated"], r["I"], a["lra"], r["LRA"], a["true_peak"], r["TP"]))
    s = astats(path)
    dc_db = 20 * np.log10(s["dc"]) if s["dc"] > 0 else -np.inf
    ok_dc = (a.get("dc_db") is None and dc_db < -120) or (
        a.get("dc_db") is not None and (abs(a["dc_db"] - dc_db) <= 0.1 or max(a["dc_db"], dc_db) < -100))
    T.check(abs(a["sample_peak"] - s["peak"]) <= 0.1 and abs(a["rms"] - s["rms"]) <= 0.1 and ok_dc,
            "%s: QC vs ffmpeg astats: peak %.2f/%.2f, RMS %.2f/%.2f, DC %s/%.1f dB" % (
                name, a["sample_peak"], s["peak"], a["rms"], s["rms"], a.get("dc_db"), dc_db))
    T.check(a["rate"] == fs and a["bits"] == 24,
            "%s: %d Hz %d-bit as the target keeps" % (name, a["rate"], a["bits"]))

# the custom chain ran with its column: its +2.5 dB high shelf at 10 kHz
# lifts 15-20 kHz against 200-2000 Hz by about 2.5 dB; the default chain
# (track 1) leaves that balance alone (broadband dynamics only)
from scipy.signal import welch


def tilt(before, after):
    """dB change of (15-20 kHz power / 200-2000 Hz power), input to output."""
    def ratio(path):
        x, fs = T.read(path)
        f, p = welch(x.mean(axis=1), fs, nperseg=8192)
        return 10 * np.log10(p[(f >= 15000) & (f <= 20000)].sum() / p[(f >= 200) & (f <= 2000)].sum())
    return ratio(after) - ratio(before)


t5 = tilt(os.path.join(d, "mixes", tracks[4][0]), os.path.join(masters, tracks[4][0]))
t1 = tilt(os.path.join(d, "mixes", tracks[0][0]), os.path.join(masters, tracks[0][0]))
j5 = jobs["masters/05 Custom.wav"]
T.check(j5["verdict"] == "pass" and abs(t5 - 2.5) <= 0.5 and abs(t1) <= 0.5,
        "the script column's chain got its 'air' column: 15-20 kHz tilt %+.2f dB (shelf +2.5), "
        "default chain %+.2f dB" % (t5, t1))

# the HTML report
try:
    import htmlcheck
    # the table against report.json, the plots against the full records
    # (report.json leaves the long series to jobs/<id>.json)
    full = report(d)
    for j in full["jobs"]:
        with open(os.path.join(qc, "jobs", j["id"] + ".json")) as f:
            j.update({k: v for k, v in json.load(f).items() if k not in ("line", "input", "output")})
    with open(os.path.join(d, "full.json"), "w") as f:
        json.dump(full, f)
    problems = htmlcheck.check_report(os.path.join(qc, "report.html"),
                                      os.path.join(d, "full.json"),
                                      os.path.join(d, "report.png"))
    problems += htmlcheck.check_report(os.path.join(qc, "report.html"),
                                       os.path.join(qc, "report.json"),
                                       os.path.join(d, "report2.png"))
    T.check(not problems, "report.html in headless Chromium: %s" % (problems or "plots and table = JSON"))
except ImportError as e:
    T.check(False, "htmlcheck: %s" % e)

T.check(not walk_partials(d), "no work files left: %s" % walk_partials(d))

# --- re-run: only the failed job runs again
before = {n: T.stamp(os.path.join(masters, n)) for n, *_ in tracks}
rc, out, err = batch(["m.csv", "--jobs", "2"], d)
T.check(rc == 1 and len(ran_lines(out)) == 1 and "06 Missing" in ran_lines(out)[0],
        "re-run redoes only the failed job: %s" % ran_lines(out))
T.check(all(T.stamp(os.path.join(masters, n)) == before[n] for n in before),
        "finished outputs untouched by the re-run")

# --- edits: a changed target, a touched input (same content), a changed input
rows[2] = rows[2].replace(",apple,", ",ebu,")
rows.pop()  # drop the missing input
with open(os.path.join(d, "m.csv"), "w") as f:
    f.write("\n".join(rows) + "\n")
os.utime(os.path.join(d, "mixes", tracks[0][0]))  # touch only
T.music(os.path.join(d, "mixes", tracks[3][0]), 30, -29, 48000, seed=9)  # new content
rc, out, err = batch(["m.csv", "--jobs", "2"], d)
redone = sorted(l.split()[2] for l in ran_lines(out))
T.check(rc == 0 and len(ran_lines(out)) == 2 and "masters/02" in " ".join(ran_lines(out))
        and "masters/04" in " ".join(ran_lines(out)),
        "after edits only the changed target and the changed input are redone (rc %d): %s" % (
            rc, ran_lines(out)))
r = T.ffmpeg_r128(os.path.join(masters, tracks[1][0]))
T.check(abs(r["I"] + 23) <= 0.2, "the re-targeted job now measures %.2f LUFS (ebu -23)" % r["I"])
T.check(T.stamp(os.path.join(masters, tracks[0][0])) == before[tracks[0][0]],
        "the touched (unchanged) input's master was not redone")
rep = report(d)
T.check(len(rep["jobs"]) == 5 and len({j["id"] for j in rep["jobs"]}) == 5,
        "the report follows the manifest: 5 jobs")

# --- shards: disjoint, complete, merged once
sd = fresh_copy("shards")
rc, out, err = batch(["m.csv", "--merge"], sd)
T.check(rc == 1 and "in no shard's journal" in err, "merge before any shard ran names the missing jobs (rc %d)" % rc)
seen = []
for i in (1, 2, 3):
    rc, out, err = batch(["m.csv", "--shard", "%d/3" % i], sd)
    with open(os.path.join(sd, "m-qc", "journal-shard-%d-of-3.json" % i)) as f:
        ids = list(json.load(f)["jobs"].keys())
    T.check(rc == 0, "shard %d/3 ran %d jobs (rc %d)" % (i, len(ids), rc))
    seen += ids
T.check(len(seen) == 5 and len(set(seen)) == 5, "each job in exactly one shard: %s" % seen)
rc, out, err = batch(["m.csv", "--dry-run", "--shard", "2/3"], sd)
T.check(rc == 0 and "0 to run" in out, "a shard's re-run has nothing to do: %s" % out.strip().splitlines()[-1:])
rc, out, err = batch(["m.csv", "--merge"], sd)
rep = report(sd)
T.check(rc == 0 and len(rep["jobs"]) == 5 and sorted(j["id"] for j in rep["jobs"]) == sorted(seen)
        and all(j["verdict"] == "pass" for j in rep["jobs"]),
        "merged report lists every job once, all pass (rc %d)" % rc)

# --- a bad manifest: every problem with its line, nothing written
bd = os.path.join(d, "bad")
os.makedirs(bd)
shutil.copytree(os.path.join(d, "mixes"), os.path.join(bd, "mixes"))
bad = ["input,output,target",
       "mixes/01 Opening.wav,out/a.wav,spotify",        # 2 ok
       "mixes/02 Loud.wav,out/a.wav,apple",             # 3 duplicate output
       "mixes/02 Loud.wav,../escape.wav,apple",         # 4 escapes
       "mixes/02 Loud.wav,/tmp/elsewhere.wav,apple",    # 5 absolute elsewhere
       "mixes/02 Loud.wav,out/sub/../../../x.wav,apple",  # 6 escapes after ..
       "mixes/02 Loud.wav,out/b.wav,spotfy",            # 7 unknown target
       "mixes/02 Loud.wav,out/c.wav",                   # 8 too few fields
       "mixes/02 Loud.wav,out/d.wav,-99",               # 9 LUFS out of range
       "mixes/02 Loud.wav,mixes/01 Opening.wav,apple",  # 10 overwrites an input
       "mixes/02 Loud.wav,out/e.wav,spotify"]           # 11 ok
with open(os.path.join(bd, "m.csv"), "w") as f:
    f.write("\n".join(bad) + "\n")
before_files = sorted(os.listdir(bd))
rc, out, err = batch(["m.csv"], bd)
lines = err.strip().splitlines()
flagged = sorted(int(l.split("m.csv:")[1].split(":")[0]) for l in lines if "m.csv:" in l)
T.check(rc == 1 and flagged == [3, 4, 5, 6, 7, 8, 9, 10] and all(l.startswith("moonbus: ") for l in lines),
        "bad manifest: lines %s reported (rc %d)" % (flagged, rc))
T.check(sorted(os.listdir(bd)) == before_files, "bad manifest: nothing written before refusing")

# a Lua manifest, with defaults
ld = os.path.join(d, "lua")
os.makedirs(ld)
shutil.copy(os.path.join(d, "mixes", tracks[0][0]), os.path.join(ld, "a.wav"))
with open(os.path.join(ld, "album.lua"), "w") as f:
    f.write('return { defaults = { target = "apple" },\n'
            '  jobs = { { input = "a.wav", output = "a-master.flac", bits = 16 },\n'
            '           { input = "a.wav", output = "a-ebu.wav", target = "ebu" } } }\n')
rc, out, err = batch(["album.lua"], ld)
ra = T.ffmpeg_r128(os.path.join(ld, "a-master.flac")) if rc == 0 else None
T.check(rc == 0 and ra and abs(ra["I"] + 16) <= 0.2 and os.path.exists(os.path.join(ld, "a-ebu.wav")),
        "Lua manifest with defaults: 2 jobs, FLAC master at %s LUFS (rc %d %s)" % (
            ra and "%.2f" % ra["I"], rc, err.strip()[-200:]))

# --- killed with SIGKILL mid-run, then re-run
kd = os.path.join(d, "kill")
os.makedirs(kd)
krows = ["input,output,target"]
for i in range(8):
    T.music(os.path.join(kd, "k%d.wav" % i), 40, -20 + i, 48000, seed=20 + i)
    krows.append("k%d.wav,out/k%d.wav,spotify" % (i, i))
with open(os.path.join(kd, "m.csv"), "w") as f:
    f.write("\n".join(krows) + "\n")
p = subprocess.Popen([T.MOONBUS, "batch", "m.csv", "--jobs", "2"], cwd=kd,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
journal = os.path.join(kd, "m-qc", "journal.json")
deadline = time.time() + 600
finished = {}
while time.time() < deadline and p.poll() is None:
    try:
        with open(journal) as f:
            finished = json.load(f)["jobs"]
    except (OSError, ValueError):
        finished = {}
    if len(finished) >= 3:
        break
    time.sleep(0.01)
still_running = p.poll() is None
p.send_signal(signal.SIGKILL)
p.wait()
time.sleep(0.5)
def moonbus_in(folder):
    """Pids of moonbus processes working in `folder` (this test's batch
    and its workers; other tests may run batches elsewhere)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if (os.readlink("/proc/%s/cwd" % pid) == folder and
                    b"moonbus" in open("/proc/%s/cmdline" % pid, "rb").read()):
                pids.append(pid)
        except OSError:
            pass
    return pids


left = moonbus_in(kd)
T.check(still_running and 3 <= len(finished) < 8,
        "killed mid-run with %d of 8 jobs in the journal" % len(finished))
T.check(not left, "the workers died with the batch (left: %s)" % left)
with open(journal) as f:
    finished = json.load(f)["jobs"]  # still valid JSON: replaced atomically
done_ids = {k for k, e in finished.items() if e["status"] == "done"}
stamps = {}
for i in range(8):
    path = os.path.join(kd, "out", "k%d.wav" % i)
    if os.path.exists(path):
        stamps["out/k%d.wav" % i] = T.stamp(path)
partial = walk_partials(kd)
T.note("after the kill: %d finished, %d outputs, %d work files left (cleared by the re-run)" % (
    len(done_ids), len(stamps), len(partial)))
rc, out, err = batch(["m.csv", "--jobs", "2"], kd)
rep = report(kd)
by_id = {j["id"]: j for j in rep["jobs"]}
T.check(rc == 0 and len(rep["jobs"]) == 8 and all(j["verdict"] == "pass" for j in rep["jobs"]),
        "the re-run finishes every job (rc %d, %s)" % (rc, rep["summary"]))
T.check(len(ran_lines(out)) == 8 - len(done_ids),
        "the re-run ran %d jobs = 8 - %d finished" % (len(ran_lines(out)), len(done_ids)))
untouched = all(T.stamp(os.path.join(kd, by_id[i]["output"])) == stamps.get(by_id[i]["output"])
                for i in done_ids)
T.check(untouched, "no finished job was redone (their files are the same inodes and times)")
T.check(not walk_partials(kd), "no partial file anywhere: %s" % walk_partials(kd))
for i in range(8):
    r = T.ffmpeg_r128(os.path.join(kd, "out", "k%d.wav" % i))
    if not (abs(r["I"] + 14) <= 0.2 and r["TP"] <= -0.9):
        T.check(False, "k%d.wav after the kill: %.2f LUFS %.2f dBTP" % (i, r["I"], r["TP"]))
        break
else:
    T.check(True, "all 8 outputs of the killed batch measure -14 LUFS within 0.2 LU, true peak <= -0.9")

# --- memory per job stays bounded whatever the length (streaming): the
# largest process of a one-job batch over 20 s and over 6 minutes
def peak_rss_kb(args, cwd):
    probe = ("import resource, subprocess, sys; "
             "r = subprocess.run(sys.argv[1:], capture_output=True); "
             "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    p = subprocess.run([sys.executable, "-c", probe, T.MOONBUS] + args, cwd=cwd,
                       capture_output=True, text=True)
    rc, kb = p.stdout.split()
    return int(rc), int(kb)


if os.environ.get("MOONBUS_SANITIZED"):
    T.note("memory bound: skipped under the sanitizers (their allocator keeps freed memory)")
else:
    mm = os.path.join(d, "mem")
    os.makedirs(mm)
    rss = {}
    for name, secs in (("short", 20), ("long", 360)):
        T.music(os.path.join(mm, name + ".wav"), secs, -20, 48000, seed=5)
        with open(os.path.join(mm, name + ".csv"), "w") as f:
            f.write("input,output,target\n%s.wav,out/%s.wav,spotify\n" % (name, name))
        rc, rss[name] = peak_rss_kb(["batch", name + ".csv", "--jobs", "1"], mm)
        T.check(rc == 0, "%d s job ran (rc %d)" % (secs, rc))
    T.check(rss["long"] <= rss["short"] + 8192,
            "memory per job bounded: largest process %.1f MB for 20 s, %.1f MB for 360 s "
            "(the 360 s file is %.0f MB)" % (rss["short"] / 1024, rss["long"] / 1024,
                                              os.path.getsize(os.path.join(mm, "long.wav")) / 1e6))

# --- on a terminal: a progress line with done, failed, running and an ETA
import pty
pd = fresh_copy("pty")
master_fd, slave_fd = pty.openpty()
p = subprocess.Popen([T.MOONBUS, "batch", "m.csv", "--jobs", "2"], cwd=pd, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=slave_fd)
os.close(slave_fd)
chunks = []
while True:
    try:
        b = os.read(master_fd, 4096)
    except OSError:
        break
    if not b:
        break
    chunks.append(b)
p.wait()
os.close(master_fd)
tty = b"".join(chunks).decode(errors="replace")
lines = [l for l in tty.replace("\r", "\n").split("\n") if l.startswith("batch: ") and "running" in l]
T.check(p.returncode == 0 and any("done" in l and "failed" in l and "ETA" in l for l in lines),
        "progress line on a terminal: %r" % (lines[-1:] if lines else tty[-200:]))

# --- a 1,000-row manifest plans its dry run quickly (a figure, not a test)
md = os.path.join(d, "big")
os.makedirs(md)
shutil.copy(os.path.join(d, "mixes", tracks[0][0]), os.path.join(md, "in.wav"))
with open(os.path.join(md, "m.csv"), "w") as f:
    f.write("input,output,target,isrc\n")
    for i in range(1000):
        f.write("in.wav,disc%d/track%04d.wav,%s,GBXXX26%05d\n" % (i // 100, i, ("spotify", "apple")[i % 2], i))
t0 = time.time()
rc, out, err = batch(["m.csv", "--dry-run", "--quiet"], md)
T.check(rc == 0 and "1000 jobs" in out, "1,000-row dry run: %s" % out.strip())
T.note("1,000-row dry run: %.3f s wall for the whole command" % (time.time() - t0))

T.finish()
