"""JACK test fixture: a real jackd on the dummy driver (no sound card needed)
and a sample-exact recorder of any JACK ports. No moonbus dependency.
Needs Debian's jackd2 and python3-jack-client (and numpy, soundfile).

  import jackfix as jf
  with jf.Jack(rate=48000, period=256, name="t-%d" % os.getpid()) as j:
      rec = jf.Recorder(["moonbus:out_0", "moonbus:out_1"], "got.wav")
      subprocess.run([...moonbus plays...], env=j.env)   # ports come later
      x, rate = rec.stop()      # float32 frames x channels, also in got.wav
      rec.xruns, j.xruns        # xruns seen by the recorder / logged by jackd

Jack(rate=48000, period=256, name=None, realtime=True, timeout=10.0,
     sync=True, extra_driver_args=())
  runs  jackd [-n NAME] -S -R -P 70 -t 5000 -d dummy -r RATE -p PERIOD -C 2 -P 2
  with JACK_NO_AUDIO_RESERVATION=1.
  .start() / with-block  remove stale /dev/shm files of that server if no
                         client can reach it, start jackd, poll jack_lsp every
                         50 ms until it answers (JackError with jackd's output
                         after `timeout` s; without -R as a second try)
  .stop()                SIGTERM, 5 s grace, then SIGKILL + shm cleanup
  .kill()                SIGKILL now (a "server vanishes" test) + shm cleanup
  .env                   os.environ + JACK_NO_START_SERVER=1 (+ JACK_DEFAULT_SERVER
                         when named); start() also puts these in os.environ
  .with_R                True if the jackd that runs was given -R
  .realtime              True if jackd really got SCHED_FIFO (without the
                         privilege jackd -R still starts, without it)
  .xruns                 "XRun" lines in jackd's output so far
  .log() / .running()    jackd's output so far / jackd still alive
  jackd gets SIGTERM if the test process dies (PR_SET_PDEATHSIG) and is
  stopped at interpreter exit.

  name: libjack, and so PortAudio's JACK host API, takes the server from
  JACK_DEFAULT_SERVER, so a named server works with PortAudio and lets two
  tests run at once (ctest -j). name=None uses the default server.
  sync: -S (synchronous mode) makes the server wait for late clients instead
  of running the next cycle over their buffers. It is what keeps recordings
  sample-exact under load (in async mode a late recorder reads a buffer the
  player has already overwritten: one block lost, the next one twice).
  sync=False gives jackd's default asynchronous mode.

Recorder(ports, path=None, name="jackfix_rec", max_seconds=300, server=None)
  Registers one input port per entry of `ports` (jackfix_rec:in_0, in_1, ...)
  and connects each to the named output port as soon as it exists, now or
  later (it also reconnects a port that comes back). Recording starts with
  the first JACK cycle in which every named port is connected (so all
  channels start on the same frame) and keeps every frame from then on.
  An entry may be None (a channel left unconnected). Because PortAudio lists
  every JACK client as a device, a player told to play on device
  "jackfix_rec" connects itself to the recorder before its first cycle:
  then nothing of the start can be missed.
  .stop() -> (np.ndarray float32 frames x channels, rate); writes `path` as
             a 32-bit float WAV if given. Returns at once even after the
             server died.
  .connected() / .wait_connected(timeout=5.0) -> bool
  .xruns          xrun notifications this client got (the server's count)
  .frames         frames recorded so far
  .server_gone    True once JACK shut the client down
  .overflow       True if max_seconds was reached (recording stopped there)
  Do no heavy Python work while recording: the process callback needs the GIL.

first_nonzero(x) -> index of the first frame with any nonzero sample, or -1
"""
import atexit
import glob
import os
import shutil
import signal
import subprocess
import threading
import time

import numpy as np

JACKD = "jackd"
JACK_LSP = "jack_lsp"


def _shm_paths(server):
    """/dev/shm entries that belong to `server` (a crashed jackd leaves them)."""
    uid = os.getuid()
    pats = ["/dev/shm/jack_%s_%d_*" % (server, uid),
            "/dev/shm/jack_sem.%d_%s_*" % (uid, server)]
    out = []
    for p in pats:
        out.extend(glob.glob(p))
    return out


def _rm(paths):
    for p in paths:
        try:
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                os.unlink(p)
        except OSError:
            pass


class JackError(RuntimeError):
    pass


def _die_with_parent():
    # jackd gets SIGTERM when the test process dies (a ctest timeout, a
    # crash), so no orphaned server blocks the next test
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


_live = []


@atexit.register
def _stop_all():
    for j in list(_live):
        j.stop()


class Jack:
    def __init__(self, rate=48000, period=256, name=None, realtime=True, timeout=10.0,
                 sync=True, extra_driver_args=()):
        self.rate = int(rate)
        self.period = int(period)
        self.name = name
        self.server = name or os.environ.get("JACK_DEFAULT_SERVER") or "default"
        self.want_realtime = realtime
        self.realtime = None
        self.with_R = None
        self.timeout = timeout
        self.sync = sync
        self.extra_driver_args = list(extra_driver_args)
        self.proc = None
        self._out = b""
        self._reader = None
        self.env = dict(os.environ)
        self.env["JACK_NO_START_SERVER"] = "1"
        if name:
            self.env["JACK_DEFAULT_SERVER"] = name

    # -- helpers -------------------------------------------------------
    def _cmd(self, rt):
        cmd = [JACKD]
        if self.name:
            cmd += ["-n", self.name]
        if self.sync:
            cmd += ["-S"]
        if rt:
            cmd += ["-R", "-P", "70"]
        else:
            cmd += ["-r"]  # before -d: "no realtime"
        cmd += ["-t", "5000", "-d", "dummy", "-r", str(self.rate), "-p", str(self.period),
                "-C", "2", "-P", "2"]
        return cmd + self.extra_driver_args

    def lsp_ok(self):
        """True if a client can reach the server (jack_lsp exits 0)."""
        try:
            r = subprocess.run([JACK_LSP], env=self.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=5)
            return r.returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def _read(self):
        while True:
            b = self.proc.stdout.read1(4096) if hasattr(self.proc.stdout, "read1") else \
                self.proc.stdout.read(1)
            if not b:
                return
            self._out += b

    def log(self):
        return self._out.decode("utf-8", "replace")

    @property
    def xruns(self):
        # jackd 1.9.21 prints one line per xrun it notifies to clients:
        # "JackTimedDriver::Process XRun = N usec" (the driver was late) or
        # "JackEngine::XRun: client = NAME was not finished, ..." (async only)
        return sum(1 for line in self.log().splitlines() if "XRun" in line)

    def _rt_threads(self):
        """How many of jackd's threads run SCHED_FIFO or SCHED_RR: without
        the privilege, jackd -R still starts, prints "Cannot use real-time
        scheduling (RR/70) (1: Operation not permitted)" and runs without."""
        n = 0
        for t in glob.glob("/proc/%d/task/*/stat" % self.proc.pid):
            try:
                with open(t) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[38]) in (1, 2):  # field 41 "policy"
                    n += 1
            except (OSError, IndexError, ValueError):
                pass
        return n

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def clean_shm(self):
        # Only this server's own files. The shared registry stays: libjack
        # keeps it mapped in every process that opened a client (this test
        # process's recorder), and removing it makes the next client in the
        # same process fail with "Cannot open shm segment"; jackd checks the
        # registry's entries itself on start.
        _rm(_shm_paths(self.server))

    def _start_once(self, rt):
        env = dict(self.env)
        env["JACK_NO_AUDIO_RESERVATION"] = "1"
        self._out = b""
        self.proc = subprocess.Popen(self._cmd(rt), env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        t_end = time.monotonic() + self.timeout
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                break
            if self.lsp_ok():
                return True
            time.sleep(0.05)
        if self.proc.poll() is None:
            self._terminate()
        self._reader.join(1)
        return False

    # -- public --------------------------------------------------------
    def start(self):
        if self.lsp_ok():
            raise JackError("a JACK server named %r is already running" % self.server)
        self.clean_shm()
        tried = []
        for rt in ([True, False] if self.want_realtime else [False]):
            if self._start_once(rt):
                self.with_R = rt
                self.realtime = self._rt_threads() > 0
                _live.append(self)
                os.environ["JACK_NO_START_SERVER"] = "1"
                if self.name:
                    os.environ["JACK_DEFAULT_SERVER"] = self.name
                return self
            tried.append("%s (exit %s):\n%s" % (" ".join(self._cmd(rt)), self.proc.returncode,
                                                self.log()))
            self.clean_shm()
        raise JackError("jackd did not start within %.1f s\n" % self.timeout + "\n".join(tried))

    def _terminate(self, grace=5.0):
        p = self.proc
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                self.clean_shm()

    def stop(self):
        if self.proc is None:
            return
        if self in _live:
            _live.remove(self)
        self._terminate()
        if self._reader:
            self._reader.join(1)
        if not self.lsp_ok():
            self.clean_shm()

    def kill(self):
        if self.proc is None:
            return
        if self in _live:
            _live.remove(self)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._reader:
            self._reader.join(1)
        self.clean_shm()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def first_nonzero(x):
    x = np.asarray(x)
    nz = np.flatnonzero(np.any(x.reshape(len(x), -1) != 0, axis=1))
    return int(nz[0]) if len(nz) else -1


class Recorder:
    def __init__(self, ports, path=None, name="jackfix_rec", max_seconds=300, server=None):
        import jack  # python3-jack-client

        self.targets = list(ports)
        self.path = path
        self.xruns = 0
        self.server_gone = False
        self.overflow = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._recording = False
        self.frames = 0
        self.client = jack.Client(name, no_start_server=True, servername=server)
        self.rate = self.client.samplerate
        n = len(self.targets)
        self.buf = np.zeros((int(max_seconds * self.rate), n), dtype=np.float32)
        self.inports = [self.client.inports.register("in_%d" % i) for i in range(n)]
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)
        self.client.set_shutdown_callback(self._shutdown)
        self.client.set_port_registration_callback(self._portreg, only_available=False)
        self.client.activate()
        self._thread = threading.Thread(target=self._connector, daemon=True)
        self._thread.start()
        self._wake.set()

    # -- JACK callbacks (process runs in JACK's thread: keep it tiny) ---
    def _process(self, nframes):
        if not self._recording:
            for p, t in zip(self.inports, self.targets):
                if t is not None and not p.number_of_connections:
                    return
            self._recording = True
        buf = self.buf
        pos = self.frames
        if buf is None or pos + nframes > len(buf):
            self.overflow = True
            return
        for i, p in enumerate(self.inports):
            buf[pos:pos + nframes, i] = p.get_array()
        self.frames = pos + nframes

    def _xrun(self, delay):
        self.xruns += 1

    def _shutdown(self, status, reason):
        self.server_gone = True
        self._wake.set()

    def _portreg(self, port, register):
        self._wake.set()

    # -- connector thread ----------------------------------------------
    def _connect_missing(self):
        import jack

        for mine, target in zip(self.inports, self.targets):
            if target is None:
                continue
            try:
                if any(c.name == target for c in mine.connections):
                    continue
                self.client.get_port_by_name(target)
            except (jack.JackError, KeyError):
                continue  # not there (yet)
            try:
                self.client.connect(target, mine)
            except jack.JackError:
                pass  # raced with its unregistration, or already connected

    def _connector(self):
        # poll fast only while a target is missing: every Python thread that
        # runs competes for the GIL with the process callback
        done = False
        while not self._stop.is_set() and not self.server_gone:
            self._wake.wait(0.5 if done else 0.01)
            self._wake.clear()
            if self._stop.is_set() or self.server_gone:
                return
            try:
                self._connect_missing()
                done = self.connected()
            except Exception:  # the server went away mid-call
                if self.server_gone:
                    return

    def connected(self):
        try:
            return all(t is None or any(c.name == t for c in p.connections)
                       for p, t in zip(self.inports, self.targets))
        except Exception:
            return False

    def wait_connected(self, timeout=5.0):
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if self.connected():
                return True
            time.sleep(0.005)
        return False

    def stop(self):
        if self.buf is None:  # stopped before
            return self._result
        self._stop.set()
        self._wake.set()
        self._thread.join(2)
        try:
            if not self.server_gone:
                self.client.deactivate()
            self.client.close()  # 0.01 s even after the server died
        except Exception:
            pass
        x = self.buf[:self.frames].copy()
        self.buf = None
        if self.path:
            import soundfile as sf

            sf.write(self.path, x, self.rate, subtype="FLOAT")
        self._result = (x, self.rate)
        return self._result
