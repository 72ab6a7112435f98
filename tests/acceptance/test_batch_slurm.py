"""moonbus batch on a real one-node Slurm cluster (job arrays) and under GNU
parallel: the scripts of scripts/slurm/ as an operator would use them
(docs/cluster.md).

A private Slurm (slurmfix.Slurm: its own munged, slurmctld, slurmd, ports
and scratch folder) runs scripts/slurm/moonbus-batch.sbatch as an array of
3 over a manifest of 6 tracks (targets spotify, apple and -16):
- every array task exits 0 and writes its log where the #SBATCH line says;
- `moonbus batch --merge` then reports every job exactly once, all pass;
- each shard's journal holds a disjoint set of jobs, their union all jobs;
- every output measures within 0.2 LU of its target in ffmpeg's ebur128,
  true peak at most the ceiling + 0.1 dB;
- the same array submitted again redoes nothing (outputs untouched);
- scripts/slurm/submit.sh (array of 2 + afterany merge job, in a folder
  whose name has a space and a quote) ends with a merged report;
- scripts/slurm/parallel.sh does the same with GNU parallel (the part is
  skipped, and says so, when parallel is not installed);
- the scripts' usage errors exit 2.
Skipped as a whole (exit 0, "SKIP" line) when Slurm or munge is missing.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

import mbtest as T
import slurmfix

SCRIPTS = os.path.join(T.SRC, "scripts", "slurm")
SBATCH = os.path.join(SCRIPTS, "moonbus-batch.sbatch")
SUBMIT = os.path.join(SCRIPTS, "submit.sh")
PARALLEL = os.path.join(SCRIPTS, "parallel.sh")
TARGETS = {"spotify": (-14.0, -1.0), "apple": (-16.0, -1.0), "-16": (-16.0, -1.0)}
FS = 48000

ok, why = slurmfix.available()
if not ok:
    print("SKIP  test_batch_slurm: Slurm is not usable here: %s" % why)
    sys.exit(0)


def make_catalogue(d):
    """6 tracks at -30..-12 LUFS (set by ffmpeg's meter), 24-bit 48 kHz,
    and m.csv; returns [(output, target)]."""
    os.makedirs(os.path.join(d, "mixes"))
    levels = [-30, -26, -22, -18, -15, -12]
    targets = ["spotify", "apple", "-16", "spotify", "apple", "spotify"]
    rows, jobs = ["input,output,target"], []
    for i, (lvl, tgt) in enumerate(zip(levels, targets)):
        tmp = T.music(os.path.join(d, "probe.wav"), 4, lvl, FS, seed=i, subtype="FLOAT")
        x, _ = T.read(tmp)
        g = 10 ** ((lvl - T.ffmpeg_r128(tmp)["I"]) / 20)
        os.unlink(tmp)
        name = "%02d Track.wav" % (i + 1)
        assert np.max(np.abs(x * g)) < 1, "test track %d would clip" % i
        T.write(os.path.join(d, "mixes", name), x * g, FS, subtype="PCM_24")
        rows.append("mixes/%s,masters/%s,%s" % (name, name, tgt))
        jobs.append(("masters/" + name, tgt))
    with open(os.path.join(d, "m.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    return jobs


def copy_catalogue(src, dst):
    os.makedirs(dst)
    shutil.copytree(os.path.join(src, "mixes"), os.path.join(dst, "mixes"))
    shutil.copy(os.path.join(src, "m.csv"), dst)


def check_catalogue(d, jobs, what, shards):
    """Outputs on target (ffmpeg), merged report complete and all pass, the
    shard journals disjoint and complete."""
    qc = os.path.join(d, "m-qc")
    for out, tgt in jobs:
        path = os.path.join(d, out)
        if not T.check(os.path.exists(path), "%s: %s exists" % (what, out)):
            continue
        lufs, ceiling = TARGETS[tgt]
        r = T.ffmpeg_r128(path)
        T.check(r is not None and abs(r["I"] - lufs) <= 0.2 and r["TP"] <= ceiling + 0.1,
                "%s: %s: ffmpeg %.2f LUFS (target %s: %g), true peak %.2f dBTP (ceiling %g)" % (
                    what, out, r["I"], tgt, lufs, r["TP"], ceiling))
    try:
        with open(os.path.join(qc, "report.json")) as f:
            rep = json.load(f)
    except (OSError, ValueError) as e:
        T.check(False, "%s: merged report.json: %s" % (what, e))
        return {}
    ids = [j["id"] for j in rep["jobs"]]
    T.check(len(ids) == len(jobs) and len(set(ids)) == len(jobs) and
            sorted(j["output"] for j in rep["jobs"]) == sorted(o for o, _ in jobs),
            "%s: merged report lists every job exactly once (%d ids, %d distinct)" % (
                what, len(ids), len(set(ids))))
    T.check(all(j["verdict"] == "pass" and j["status"] == "done" for j in rep["jobs"]) and
            rep["summary"]["pass"] == len(jobs),
            "%s: every verdict pass: %s" % (what, rep["summary"]))
    T.check(os.path.exists(os.path.join(qc, "report.html")) and
            os.path.exists(os.path.join(qc, "journal.json")),
            "%s: merged report.html and journal.json written" % what)
    seen = []
    for i in range(1, shards + 1):
        try:
            with open(os.path.join(qc, "journal-shard-%d-of-%d.json" % (i, shards))) as f:
                seen.append(set(json.load(f)["jobs"].keys()))
        except (OSError, ValueError) as e:
            T.check(False, "%s: shard %d/%d journal: %s" % (what, i, shards, e))
            seen.append(set())
    disjoint = all(not (a & b) for k, a in enumerate(seen) for b in seen[k + 1:])
    union = set().union(*seen)
    T.check(disjoint and union == set(ids),
            "%s: shard journals disjoint (%s jobs each), union = all %d jobs" % (
                what, [len(s) for s in seen], len(ids)))
    return {o: T.stamp(os.path.join(d, o)) for o, _ in jobs if os.path.exists(os.path.join(d, o))}


def task_logs(d):
    return "\n".join("--- %s ---\n%s" % (n, open(os.path.join(d, n)).read()[-3000:])
                     for n in sorted(os.listdir(d)) if n.endswith(".log"))


def run_array(s, d, tasks, extra=()):
    t0 = time.time()
    jid = s.sbatch(["--array=1-%d" % tasks, "--cpus-per-task=2", SBATCH, "m.csv"] + list(extra),
                   cwd=d)
    s.wait(jid, timeout=600)
    states = s.job_states(jid)
    T.note("array %s of %d tasks: %.1f s, %s" % (jid, tasks, time.time() - t0, states))
    good = sorted(states) == list(range(1, tasks + 1)) and \
        all(v["state"] == "COMPLETED" and v["exit"] == 0 and v["signal"] == 0
            for v in states.values())
    if not T.check(good, "every array task of %s exited 0: %s" % (
            jid, {k: (v["state"], v["exit"]) for k, v in states.items()})):
        print(task_logs(d))
    return jid


# ---------------------------------------------------------------------------
d = T.tmpdir()
base = os.path.join(d, "catalogue")
os.makedirs(base)
jobs = make_catalogue(base)
lv = [T.ffmpeg_r128(os.path.join(base, "mixes", "%02d Track.wav" % (i + 1)))["I"] for i in range(6)]
T.note("inputs: %s LUFS" % ", ".join("%.1f" % v for v in lv))

# --- usage errors (no Slurm needed)
for cmd in ([SBATCH], [SUBMIT], [PARALLEL], [SUBMIT, "m.csv", "x"], [SBATCH, "--bad"]):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    p = subprocess.run(["sh"] + cmd, capture_output=True, text=True, env=env, cwd=base)
    T.check(p.returncode == 2 and "usage" in p.stderr,
            "%s: exit %d with a usage line" % (" ".join(os.path.basename(c) for c in cmd),
                                               p.returncode))
p = subprocess.run(["sh", SBATCH, "m.csv"], capture_output=True, text=True, cwd=base,
                   env={k: v for k, v in os.environ.items() if not k.startswith("SLURM_")})
T.check(p.returncode == 2 and "array" in p.stderr,
        "the sbatch script outside an array: exit %d, %s" % (p.returncode, p.stderr.strip()))

sd = os.path.join(d, "slurm")
copy_catalogue(base, sd)
ud = os.path.join(d, "sub mit 'x'")
copy_catalogue(base, ud)

def slurm_part():
    t0 = time.time()
    with slurmfix.Slurm(d) as s:
        T.note("Slurm up in %.1f s: node %s, cluster %s, ports %s" % (
            time.time() - t0, s.node, s.cluster, s.ports))
        s.env["MOONBUS"] = T.MOONBUS

        # --- the sbatch array of 3, then the merge by hand
        jid = run_array(s, sd, 3)
        logs = ["moonbus-batch-%s_%d.log" % (jid, i) for i in (1, 2, 3)]
        T.check(all(os.path.exists(os.path.join(sd, n)) for n in logs),
                "task logs where the #SBATCH --output pattern puts them: %s" % logs)
        rc, out, err = T.run(["batch", "m.csv", "--merge"], cwd=sd)
        T.check(rc == 0, "moonbus batch m.csv --merge: rc %d %s" % (rc, err.strip()[-500:]))
        before = check_catalogue(sd, jobs, "sbatch array", 3)

        # --- resubmitted: nothing to redo
        run_array(s, sd, 3)
        T.check(before and all(T.stamp(os.path.join(sd, o)) == before[o] for o in before),
                "the array submitted again leaves every output untouched")

        # --- submit.sh: array of 2 + merge job after it, in an awkward folder name
        t0 = time.time()
        p = subprocess.run(["sh", SUBMIT, "m.csv", "2"], capture_output=True, text=True, cwd=ud,
                           env=s.env)
        ids = dict(l.split() for l in p.stdout.splitlines() if len(l.split()) == 2)
        if T.check(p.returncode == 0 and set(ids) == {"array", "merge"},
                   "submit.sh printed both job ids: %r %s" % (p.stdout, p.stderr.strip())):
            s.wait(ids["merge"], timeout=600)
            a_st, m_st = s.job_states(ids["array"]), s.job_states(ids["merge"])
            T.note("submit.sh: array + merge in %.1f s" % (time.time() - t0))
            T.check(sorted(a_st) == [1, 2] and all(v["exit"] == 0 for v in a_st.values()) and
                    [v["state"] for v in m_st.values()] == ["COMPLETED"] and
                    all(v["exit"] == 0 for v in m_st.values()),
                    "submit.sh: both tasks and the merge job exited 0: %s / %s" % (
                        {k: (v["state"], v["exit"]) for k, v in a_st.items()},
                        [(v["state"], v["exit"]) for v in m_st.values()]))
            T.check(os.path.exists(os.path.join(ud, "moonbus-merge-%s.log" % ids["merge"])),
                    "the merge job's log is moonbus-merge-%s.log" % ids["merge"])
            if not check_catalogue(ud, jobs, "submit.sh", 2):
                print(task_logs(ud))
        t_down = time.time()
    T.check(not os.path.exists(s.dir), "the cluster's scratch folder is gone")
    T.note("Slurm stopped in %.1f s" % (time.time() - t_down))


try:
    slurm_part()
except slurmfix.SlurmError as e:
    T.check(False, "Slurm: %s" % e)

# --- GNU parallel
if shutil.which("parallel"):
    pd = os.path.join(d, "parallel")
    copy_catalogue(base, pd)
    env = dict(os.environ, MOONBUS=T.MOONBUS)
    t0 = time.time()
    p = subprocess.run(["sh", PARALLEL, "m.csv", "3"], capture_output=True, text=True, cwd=pd,
                       env=env, timeout=600)
    T.note("parallel.sh with 3 shards: %.1f s" % (time.time() - t0))
    T.check(p.returncode == 0, "parallel.sh exit %d %s" % (p.returncode, p.stderr.strip()[-800:]))
    try:
        with open(os.path.join(pd, "m-qc", "parallel-joblog.tsv")) as f:
            rows = [l.rstrip("\n").split("\t") for l in f if l.strip()]
        head, rows = rows[0], rows[1:]
        codes = [int(r[head.index("Exitval")]) for r in rows]
        T.check(len(rows) == 3 and codes == [0, 0, 0], "parallel's joblog: 3 shards, exit values %s"
                % codes)
    except (OSError, ValueError, IndexError) as e:
        T.check(False, "parallel's joblog: %s" % e)
    check_catalogue(pd, jobs, "parallel.sh", 3)
else:
    T.note("GNU parallel is not installed (apt-get install parallel): parallel.sh part skipped")

T.finish()
