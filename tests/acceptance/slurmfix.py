"""Slurm test fixture: a real one-node Slurm cluster (slurmctld + slurmd)
with its own munged, all in one scratch folder. No moonbus dependency.
Needs Debian's slurmctld, slurmd, slurm-client and munge (root).

  import slurmfix as sf
  ok, why = sf.available()            # False + the missing programs: skip
  with sf.Slurm(tmpdir) as s:
      jid = s.sbatch(["--array=1-3", "job.sbatch", "arg"], cwd=tmpdir)
      s.wait(jid, timeout=120)        # SlurmError on timeout
      s.job_states(jid)  # {1: {"state": "COMPLETED", "exit": 0, "signal": 0,
                         #      "jobid": "5"}, 2: ...}  (key None: not an array)
      subprocess.run(["squeue"], env=s.env)

Slurm(tmpdir=None, cpus=8, timeout=30.0, keep=False)
  .start() / with-block  makes its scratch folder (inside tmpdir, else in the
                         system's temp folder), writes a munge key and a
                         minimal slurm.conf there (state, spool, logs and pid
                         files all inside it; node name `hostname -s` at
                         127.0.0.1; CPUs=`cpus` through
                         SlurmdParameters=config_overrides so that several
                         array tasks run at once on a small machine; free TCP
                         ports picked for slurmctld and slurmd), starts
                         munged, slurmctld -D and slurmd -D as children, and
                         waits until `sinfo` shows the node idle. After
                         `timeout` s, or as soon as a daemon exits, it stops
                         what it started and raises SlurmError with the
                         command lines and the tail of every log.
  .stop()                cancels the cluster's jobs, `scontrol shutdown`,
                         5 s grace, then SIGKILL to the daemons and to any
                         process left that runs with this cluster's
                         SLURM_CONF (job steps), stops munged, removes the
                         scratch folder (unless keep=True or SLURMFIX_KEEP=1).
                         Safe to call twice; also run at interpreter exit.
  .env                   os.environ without any SLURM_*/SBATCH_*/... variable,
                         plus SLURM_CONF=this cluster's config. os.environ is
                         not touched: pass env=s.env to every Slurm command
                         (sbatch's jobs inherit it, --export=ALL).
  .sbatch(args, cwd=None) -> job id (str); adds --parsable
  .wait(jobid, timeout=120, poll=0.2)  until `squeue -h -j ID` lists nothing
  .job_states(jobid) -> {array task id (int; None for a plain job):
                         {"state", "exit", "signal", "jobid"}} from
                         `scontrol -o show job` (kept MinJobAge=300 s)
  .scontrol(*args) / .squeue(*args) -> stdout (raises SlurmError on failure)
  .log(n=40)             the tail of every daemon log
  .dir / .conf / .node / .cluster / .ports

Isolation: each instance has its own munged (socket, key), ClusterName,
ports, state and spool folders, so two clusters can run at once, in one
process or in two, and neither touches /etc/slurm, /run/munge or a system
Slurm. Daemons get SIGTERM if the test process dies (PR_SET_PDEATHSIG).
"""
import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

PROGRAMS = ["munged", "mungekey", "munge", "slurmctld", "slurmd", "slurmstepd", "sbatch",
            "squeue", "sinfo", "scontrol", "scancel"]
SBIN = ["/usr/sbin", "/sbin"]
_ENV_PREFIXES = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SINFO_", "SCANCEL_",
                 "SCONTROL_", "SACCT_", "SPANK_")


class SlurmError(RuntimeError):
    pass


def _which(prog):
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(SBIN)
    return shutil.which(prog, path=path)


def available():
    """(True, "") when every program the fixture needs is installed, else
    (False, "missing: ... (apt-get install slurmctld slurmd slurm-client munge)")."""
    missing = [p for p in PROGRAMS if not _which(p)]
    if missing:
        return False, ("missing: %s (apt-get install slurmctld slurmd slurm-client munge)"
                       % " ".join(missing))
    if os.getuid() != 0:
        return False, "not root (the fixture runs slurmd and jobs as root)"
    return True, ""


def _die_with_parent():
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _free_ports(n):
    """n distinct TCP ports free right now on every address (the daemons
    bind INADDR_ANY)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _tail(path, n):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return "(no %s)" % os.path.basename(path)
    return "\n".join(lines[-n:])


# Each daemon runs under this small reaper (written to the scratch folder
# as reaper.py): a child subreaper, so the processes slurmd detaches
# (slurmstepd, the jobs) are reaped here instead of lingering as <defunct>
# under a PID 1 that does not reap (this container). It forwards
# SIGTERM/SIGINT to the daemon; once the daemon has exited it ends whatever
# is left below it (SIGTERM, SIGKILL after 2 s) and exits with the daemon's
# status. The daemon gets SIGKILL if the reaper dies, the reaper SIGTERM if
# the test process dies: no job outlives the test.
REAPER = r"""
import ctypes, os, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(36, 1)                      # PR_SET_CHILD_SUBREAPER
pid = os.fork()
if pid == 0:
    libc.prctl(1, signal.SIGKILL)      # PR_SET_PDEATHSIG
    os.execvp(sys.argv[1], sys.argv[1:])
def fwd(sig, frame):
    try:
        os.kill(pid, sig)
    except OSError:
        pass
signal.signal(signal.SIGTERM, fwd)
signal.signal(signal.SIGINT, fwd)
def children():
    me, out = str(os.getpid()), []
    for d in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % d) as f:
                if f.read().rsplit(")", 1)[1].split()[1] == me:
                    out.append(int(d))
        except (OSError, IndexError, ValueError):
            pass
    return out
status = None
while status is None:
    try:
        p, st = os.waitpid(-1, 0)
    except InterruptedError:
        continue
    except ChildProcessError:
        break
    if p == pid:
        status = os.waitstatus_to_exitcode(st)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
t0 = time.monotonic()
sent = set()
while True:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        break
    sig = signal.SIGTERM if time.monotonic() - t0 < 2 else signal.SIGKILL
    for c in children():
        if (c, sig) not in sent:
            sent.add((c, sig))
            try:
                os.kill(c, sig)
            except OSError:
                pass
    time.sleep(0.05)
sys.exit(status if status is not None and status >= 0 else 128 - (status or 0))
"""

_live = []


@atexit.register
def _stop_all():
    for s in list(_live):
        s.stop()


CONF = """\
# written by slurmfix.py: a private one-node test cluster
ClusterName={cluster}
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_sock}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig={dir}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_min_interval=100000
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
MinJobAge=300
KillWait=2
MailProg=/bin/true
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


class Slurm:
    def __init__(self, tmpdir=None, cpus=8, timeout=30.0, keep=False):
        self.tmpdir = tmpdir
        self.cpus = int(cpus)
        self.timeout = float(timeout)
        self.keep = keep or bool(os.environ.get("SLURMFIX_KEEP"))
        self.node = socket.gethostname().split(".")[0]
        self.dir = None
        self.conf = None
        self.cluster = None
        self.ports = None
        self.munge_sock = None
        self.procs = {}  # name -> Popen
        self.cmds = {}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIXES)}
        self.env["PATH"] = self.env.get("PATH", "/usr/bin:/bin") + os.pathsep + \
            os.pathsep.join(SBIN)

    # -- helpers -------------------------------------------------------
    def _spawn(self, name, cmd):
        reaper = os.path.join(self.dir, "reaper.py")
        if not os.path.exists(reaper):
            with open(reaper, "w") as f:
                f.write(REAPER)
        cmd = [sys.executable, reaper] + cmd
        log = open(os.path.join(self.dir, name + ".out"), "ab")
        try:
            self.procs[name] = subprocess.Popen(
                cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            log.close()
        self.cmds[name] = " ".join(cmd[2:])

    def _run(self, cmd, timeout=20, check=True, cwd=None):
        try:
            p = subprocess.run(cmd, env=self.env, cwd=cwd, capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            if check:
                raise SlurmError("%s: no answer in %d s" % (" ".join(cmd), timeout))
            return None
        if check and p.returncode != 0:
            raise SlurmError("%s exited %d: %s" % (" ".join(cmd), p.returncode,
                                                   (p.stderr or p.stdout).strip()))
        return p

    def log(self, n=40):
        if not self.dir:
            return ""
        parts = ["--- commands ---"] + ["%s: %s" % kv for kv in sorted(self.cmds.items())]
        for name in ("munged.out", "slurmctld.log", "slurmctld.out", "slurmd.log", "slurmd.out"):
            parts.append("--- %s (last %d lines) ---\n%s" % (name, n,
                                                            _tail(os.path.join(self.dir, name), n)))
        return "\n".join(parts)

    def _dead(self):
        return [n for n, p in self.procs.items() if p.poll() is not None]

    def _munge_ok(self):
        p = subprocess.run("munge -n -S '%s' | unmunge -S '%s'" % (self.munge_sock, self.munge_sock),
                           shell=True, env=self.env, capture_output=True, timeout=10)
        return p.returncode == 0

    def _node_state(self):
        p = self._run(["sinfo", "-h", "-N", "-o", "%T"], timeout=5, check=False)
        if p is None or p.returncode != 0:
            return None
        return p.stdout.strip()

    def _wait_for(self, what, ok, detail=lambda: ""):
        t_end = time.monotonic() + self.timeout
        while True:
            if ok():
                return
            dead = self._dead()
            if dead:
                raise SlurmError("%s: %s exited (%s) before it was ready" % (
                    what, ", ".join(dead), ", ".join(str(self.procs[d].returncode) for d in dead)))
            if time.monotonic() > t_end:
                raise SlurmError("%s: not ready after %.0f s%s" % (what, self.timeout, detail()))
            time.sleep(0.1)

    # -- public --------------------------------------------------------
    def start(self):
        ok, why = available()
        if not ok:
            raise SlurmError("Slurm is not usable here: " + why)
        errors = []
        for attempt in range(3):  # a port taken between choosing and binding
            try:
                self._start_once()
                _live.append(self)
                return self
            except SlurmError as e:
                text = "%s\n%s" % (e, self.log())
                self._teardown()
                errors.append(text)
                if "Address already in use" not in text:
                    break
        raise SlurmError("Slurm did not start:\n" + "\n".join(errors))

    def _start_once(self):
        self.dir = tempfile.mkdtemp(prefix="slurmfix-", dir=self.tmpdir)
        os.chmod(self.dir, 0o755)
        for sub in ("state", "spool"):
            os.mkdir(os.path.join(self.dir, sub))
        self.cluster = "mbt%d" % (abs(hash((os.getpid(), self.dir))) % 10 ** 6)
        self.ports = _free_ports(2)
        # munge: own key and socket (a unix socket path has ~107 bytes)
        self.munge_sock = os.path.join(self.dir, "munge.sock")
        if len(self.munge_sock) > 100:
            self._sockdir = tempfile.mkdtemp(prefix="slurmfix-m-")
            self.munge_sock = os.path.join(self._sockdir, "munge.sock")
        key = os.path.join(self.dir, "munge.key")
        self._run(["mungekey", "--create", "--keyfile", key])
        # -f: the key and socket checks want every folder above o+x; mkdtemp
        # makes 0700 folders, and only root (us) talks to this munged
        self._spawn("munged", ["munged", "-F", "-f", "-S", self.munge_sock, "--key-file", key,
                               "--pid-file", os.path.join(self.dir, "munged.pid"),
                               "--seed-file", os.path.join(self.dir, "munged.seed"),
                               "--num-threads", "2"])
        self._wait_for("munged", self._munge_ok)

        open(os.path.join(self.dir, "plugstack.conf"), "w").close()  # not /etc/slurm's
        self.conf = os.path.join(self.dir, "slurm.conf")
        with open(self.conf, "w") as f:
            f.write(CONF.format(cluster=self.cluster, node=self.node, ctld_port=self.ports[0],
                                d_port=self.ports[1], munge_sock=self.munge_sock, dir=self.dir,
                                cpus=self.cpus))
        self.env["SLURM_CONF"] = self.conf
        self._spawn("slurmctld", ["slurmctld", "-D", "-c", "-f", self.conf])
        self._spawn("slurmd", ["slurmd", "-D", "-N", self.node, "-f", self.conf])
        self._wait_for("slurmctld/slurmd", lambda: self._node_state() == "idle",
                       lambda: " (sinfo: node state %r)" % self._node_state())

    def _conf_procs(self):
        """pids of processes (other than ours) whose environment carries this
        cluster's SLURM_CONF: slurmstepd and the job processes it runs."""
        if not self.conf:
            return []
        needle = ("SLURM_CONF=%s\0" % self.conf).encode()
        me = os.getpid()
        pids = []
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == me:
                continue
            try:
                with open("/proc/%s/environ" % d, "rb") as f:
                    env = f.read() + b"\0"
            except OSError:
                continue
            if needle in env or env.startswith(needle):
                pids.append(int(d))
        return pids

    def _teardown(self, grace=5.0):
        alive = {n: p for n, p in self.procs.items() if p.poll() is None}
        if "slurmctld" in alive:
            jobs = self._run(["squeue", "-h", "-o", "%A"], timeout=5, check=False)
            if jobs is not None and jobs.returncode == 0 and jobs.stdout.split():
                self._run(["scancel"] + sorted(set(jobs.stdout.split())), timeout=5, check=False)
                t_end = time.monotonic() + grace
                while time.monotonic() < t_end:
                    q = self._run(["squeue", "-h"], timeout=5, check=False)
                    if q is None or q.returncode != 0 or not q.stdout.strip():
                        break
                    time.sleep(0.2)
            self._run(["scontrol", "shutdown"], timeout=5, check=False)
        for name in ("slurmctld", "slurmd"):
            p = self.procs.get(name)
            if p is None:
                continue
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for pid in self._conf_procs():  # job steps slurmd left behind
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        p = self.procs.get("munged")
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = {}
        if self.dir and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        if getattr(self, "_sockdir", None):
            shutil.rmtree(self._sockdir, ignore_errors=True)
            self._sockdir = None

    def stop(self):
        if self in _live:
            _live.remove(self)
        if self.procs:
            self._teardown()
            if self.keep:
                print("slurmfix: kept", self.dir)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- jobs ----------------------------------------------------------
    def sbatch(self, args, cwd=None):
        p = self._run(["sbatch", "--parsable"] + list(args), cwd=cwd, timeout=30)
        return p.stdout.strip().split(";")[0]

    def scontrol(self, *args):
        return self._run(["scontrol"] + list(args)).stdout

    def squeue(self, *args):
        return self._run(["squeue"] + list(args)).stdout

    def wait(self, jobid, timeout=120, poll=0.2):
        """Wait until no task of job `jobid` is pending or running."""
        t_end = time.monotonic() + timeout
        while True:
            p = self._run(["squeue", "-h", "-j", str(jobid), "-o", "%i %T"], timeout=10, check=False)
            if p is not None and p.returncode == 0 and not p.stdout.strip():
                return
            dead = self._dead()
            if dead:
                raise SlurmError("waiting for job %s: %s exited\n%s" % (jobid, ", ".join(dead),
                                                                        self.log()))
            if time.monotonic() > t_end:
                raise SlurmError("job %s not finished after %.0f s:\n%s\n%s" % (
                    jobid, timeout, p.stdout if p is not None else "(squeue hung)", self.log()))
            time.sleep(poll)

    def job_states(self, jobid):
        """{array task id or None: {"state", "exit", "signal", "jobid"}}."""
        out = self.scontrol("-o", "show", "job", str(jobid))
        res = {}
        for line in out.splitlines():
            f = {}
            for tok in line.split():
                if "=" in tok:
                    k, v = tok.split("=", 1)
                    f.setdefault(k, v)
            if "JobId" not in f:
                continue
            task = f.get("ArrayTaskId")
            key = int(task) if task and task.isdigit() else (task or None)
            code, _, sig = f.get("ExitCode", "0:0").partition(":")
            res[key] = {"state": f.get("JobState"), "exit": int(code or 0),
                        "signal": int(sig or 0), "jobid": f["JobId"]}
        return res
