"""A real standalone Flink cluster (JobManager + TaskManagers) on this machine, loopback only.

Started with the scripts the PyFlink wheel ships (``<site-packages>/pyflink/bin/start-cluster.sh``;
FLINK_HOME is the ``pyflink`` package directory). Everything one cluster owns lives in one
directory, ``.run/flink-<rest port>/``:

    conf/   config.yaml = flink-conf/config.yaml + this cluster's ports, slots, Python and dirs;
            the log4j files; ``workers`` (one ``localhost`` line per TaskManager)
    lib/    FLINK_LIB_DIR, symlinks: the wheel's lib/*.jar plus opt/flink-python-*.jar
    log/    the daemons' .log/.out files (the previous start's in log/previous/)
    pid/    the scripts' pid files (flink-streamscore-standalonesession.pid, -taskexecutor.pid)
    tmp/    io.tmp.dirs (blobs, Python environments)

Jars, as measured with the fraud job (Python, thread mode, Table API Kafka source/sink):
  * flink-python must be on the daemons' classpath: the wheel keeps it in opt/, and a PyFlink
    client does not ship it, so without it the job fails with ClassNotFoundException
    EmbeddedPythonProcessOperator. Hence lib/ above.
  * the Kafka connector (and Parquet) work from ``pipeline.jars``, which ``jobs.flinkenv`` always
    sets and the client uploads with every job; they need not be on the cluster's classpath
    (``project_jars=True`` adds .jars/flink to lib/ too, which also works).

The daemons inherit the environment their embedded Python needs: PYTHONPATH = the repository and
the venv's site-packages (as ``jobs.flinkenv.prepare_process_env`` does for the MiniCluster), and
``python.executable`` is the venv's interpreter.

Submit with ``streamscore run fraud --cluster 127.0.0.1:<rest port> ...`` or with `flink run`
(``streamscore.submit.submit_command``).
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import site
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

from jobs import runtime
from jobs.runtime import SetupError

LOOPBACK = "127.0.0.1"
IDENT = "streamscore"  # FLINK_IDENT_STRING: names the pid and log files
DEFAULT_REST_PORT = 8081
JM_CLASS = b"org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint"
TM_CLASS = b"org.apache.flink.runtime.taskexecutor.TaskManagerRunner"


def flink_home() -> Path:
    """The pyflink package directory: the wheel's FLINK_HOME (bin/, lib/, opt/), without importing it."""
    spec = importlib.util.find_spec("pyflink")
    if spec is None or not spec.submodule_search_locations:
        raise SetupError("pyflink is not installed in this Python; run `make setup`")
    home = Path(list(spec.submodule_search_locations)[0])
    if not (home / "bin" / "start-cluster.sh").exists():
        raise SetupError(f"{home}/bin/start-cluster.sh missing: this pyflink wheel ships no cluster scripts")
    return home


def python_path() -> str:
    """PYTHONPATH for the cluster's Python (thread mode embeds CPython in the TaskManager JVM and does
    not read the venv's .pth files): the repository first, then the venv's site-packages."""
    paths = [str(runtime.ROOT)] + site.getsitepackages()
    old = os.environ.get("PYTHONPATH")
    if old:
        paths += [p for p in old.split(os.pathsep) if p and p not in paths]
    return os.pathsep.join(paths)


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _cmdline(pid: int) -> list:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


class RestError(SetupError):
    """The JobManager's REST API did not answer, or refused the request."""


class FlinkCluster:
    """One local standalone cluster, identified by its REST port (and directory). Safe to construct
    for a cluster that already runs: ``status``/``stop`` find it through the pid files."""

    def __init__(self, rest_port: int = DEFAULT_REST_PORT, taskmanagers: int = 1, slots: int = 2,
                 run_dir: Optional[str | Path] = None, rpc_port: Optional[int] = None,
                 overrides: Optional[dict] = None, host: str = LOOPBACK, project_jars: bool = False):
        if not 0 < int(rest_port) < 65536:
            raise ValueError(f"rest port {rest_port} is not a TCP port")
        if int(taskmanagers) < 1:
            raise ValueError(f"--taskmanagers must be >= 1, got {taskmanagers}")
        if int(slots) < 1:
            raise ValueError(f"--slots must be >= 1, got {slots}")
        self.rest_port = int(rest_port)
        self.taskmanagers = int(taskmanagers)
        self.slots = int(slots)
        self.host = host
        self._rpc_port = int(rpc_port) if rpc_port else None
        self.overrides = {k: str(v) for k, v in (overrides or {}).items()}  # extra config.yaml keys
        self.project_jars = project_jars  # .jars/flink on the daemons' classpath (lib/)
        self.dir = Path(run_dir) if run_dir else runtime.RUN_DIR / f"flink-{self.rest_port}"

    # -- paths -------------------------------------------------------------------------------
    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    @property
    def address(self) -> str:
        """What ``--cluster`` and ``flink run -m`` take."""
        return f"{self.host}:{self.rest_port}"

    @property
    def conf_dir(self) -> Path:
        return self.dir / "conf"

    @property
    def lib_dir(self) -> Path:
        return self.dir / "lib"

    @property
    def log_dir(self) -> Path:
        return self.dir / "log"

    @property
    def pid_dir(self) -> Path:
        return self.dir / "pid"

    def _pid_file(self, daemon: str) -> Path:
        return self.pid_dir / f"flink-{IDENT}-{daemon}.pid"

    # -- configuration -------------------------------------------------------------------------
    def _choose_rpc_port(self) -> int:
        """JobManager RPC port: the one given, flink-conf's (6123) for the default REST port, else a
        free one (so test clusters run beside a developer's)."""
        if self._rpc_port:
            return self._rpc_port
        if self.rest_port == DEFAULT_REST_PORT:
            from jobs.flinkenv import load_flink_conf

            return int(load_flink_conf().get("jobmanager.rpc.port", 6123))
        return _free_port(self.host)

    def configuration(self, rpc_port: Optional[int] = None) -> dict:
        """The cluster's config.yaml, flat: flink-conf/config.yaml, then this cluster's settings."""
        from jobs.flinkenv import load_flink_conf

        conf = load_flink_conf(runtime.FLINK_CONF_DIR / "config.yaml")
        py = runtime.python_executable()
        conf.update({
            "jobmanager.rpc.address": self.host,
            "jobmanager.bind-host": self.host,
            "jobmanager.rpc.port": str(rpc_port or self._choose_rpc_port()),
            "taskmanager.host": self.host,
            "taskmanager.bind-host": self.host,
            "taskmanager.numberOfTaskSlots": str(self.slots),
            "rest.address": self.host,
            "rest.bind-address": self.host,
            "rest.port": str(self.rest_port),
            # every other listener on a free port, so clusters can run side by side
            "blob.server.port": "0",
            "taskmanager.rpc.port": "0",
            "taskmanager.data.port": "0",
            "metrics.internal.query-service.port": "0",
            "python.executable": py,
            "python.client.executable": py,
            "io.tmp.dirs": str((self.dir / "tmp").resolve()),
            "env.pid.dir": str(self.pid_dir.resolve()),
            "env.log.dir": str(self.log_dir.resolve()),
        })
        conf.update(self.overrides)
        return conf

    def _write_run_dir(self, rpc_port: int) -> None:
        for d in (self.conf_dir, self.lib_dir, self.log_dir, self.pid_dir, self.dir / "tmp"):
            d.mkdir(parents=True, exist_ok=True)
        for f in runtime.FLINK_CONF_DIR.iterdir():
            if f.is_file() and f.name != "config.yaml":
                shutil.copy2(f, self.conf_dir / f.name)
        lines = ["# written by streamscore (streamscore/cluster.py) from flink-conf/config.yaml; regenerated on "
                 "every `streamscore cluster up`"]
        lines += [f"{k}: {json.dumps(v)}" for k, v in self.configuration(rpc_port).items()]
        (self.conf_dir / "config.yaml").write_text("\n".join(lines) + "\n")
        (self.conf_dir / "workers").write_text("localhost\n" * self.taskmanagers)
        (self.conf_dir / "masters").write_text(f"{self.host}:{self.rest_port}\n")
        self._link_jars()

    def _link_jars(self) -> None:
        """lib/ = the wheel's lib/*.jar + opt/flink-python (+ .jars/flink/*.jar), as symlinks."""
        home = flink_home()
        for old in self.lib_dir.iterdir():
            old.unlink()
        jars = sorted((home / "lib").glob("*.jar")) + sorted((home / "opt").glob("flink-python*.jar"))
        if self.project_jars:
            jars += runtime.flink_jars()
        for j in jars:
            (self.lib_dir / j.name).symlink_to(j.resolve())

    def process_env(self) -> dict:
        """Environment for the cluster scripts and the daemons they start."""
        env = dict(os.environ)
        env.update({
            "FLINK_HOME": str(flink_home()),
            "FLINK_CONF_DIR": str(self.conf_dir.resolve()),
            "FLINK_LIB_DIR": str(self.lib_dir.resolve()),
            "FLINK_LOG_DIR": str(self.log_dir.resolve()),
            "FLINK_PID_DIR": str(self.pid_dir.resolve()),
            "FLINK_IDENT_STRING": IDENT,
            "PYTHONPATH": python_path(),
        })
        # Jobs bring their Hadoop client (Parquet) in pipeline.jars; an inherited HADOOP_CLASSPATH
        # would put a second, possibly different Hadoop on the daemons' classpath.
        env.pop("HADOOP_CLASSPATH", None)
        return env

    def _script(self, name: str, *args: str, timeout: float = 120) -> str:
        cmd = ["bash", str(flink_home() / "bin" / name), *args]
        try:
            res = subprocess.run(cmd, env=self.process_env(), stdin=subprocess.DEVNULL, capture_output=True,
                                 text=True, timeout=timeout, cwd=self.dir,
                                 start_new_session=True)  # the daemons ignore the terminal's ^C
        except subprocess.TimeoutExpired:
            raise SetupError(f"{name} {' '.join(args)} did not return within {timeout:.0f} s") from None
        out = (res.stdout + res.stderr).strip()
        if res.returncode != 0:
            raise SetupError(f"{name} {' '.join(args)} failed (exit {res.returncode}): "
                             f"{(out.splitlines() or ['no output'])[-1]}")
        return out

    # -- state ---------------------------------------------------------------------------------
    def _pids(self, daemon: str, main_class: bytes) -> list:
        try:
            lines = self._pid_file(daemon).read_text().split()
        except FileNotFoundError:
            return []
        pids = []
        for ln in lines:
            try:
                pid = int(ln)
            except ValueError:
                continue
            if not _pid_alive(pid):
                continue
            cmd = _cmdline(pid) if Path("/proc").is_dir() else [main_class]
            # Just after start the pid can still be flink-daemon.sh's fork, not yet exec'd into java.
            if main_class in cmd or any(a.endswith(b"flink-daemon.sh") for a in cmd):
                pids.append(pid)
        return pids

    def jobmanager_pid(self) -> Optional[int]:
        pids = self._pids("standalonesession", JM_CLASS)
        return pids[-1] if pids else None

    def taskmanager_pids(self) -> list:
        """Pids of this cluster's live TaskManager JVMs, oldest first."""
        return self._pids("taskexecutor", TM_CLASS)

    def running(self) -> bool:
        return self.jobmanager_pid() is not None

    def rest(self, path: str, method: str = "GET", body: Optional[dict] = None, timeout: float = 5):
        """One REST call; returns the decoded JSON (None for an empty answer)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.rest_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:300]
            raise RestError(f"{method} {path}: HTTP {e.code} {detail}") from None
        except (urllib.error.URLError, OSError) as e:
            raise RestError(f"{method} {path}: {getattr(e, 'reason', e)}") from None
        return json.loads(raw) if raw.strip() else None

    def overview(self) -> dict:
        """/overview: taskmanagers, slots-total, slots-available, jobs-running, flink-version, ..."""
        return self.rest("/overview")

    def jobs(self) -> list:
        """Every job the JobManager knows: dicts with jid, name, state, start-time, duration, ..."""
        return self.rest("/jobs/overview")["jobs"]

    def job(self, job_id: str) -> dict:
        return self.rest(f"/jobs/{job_id}")

    def cancel(self, job_id: str, timeout: float = 60) -> str:
        """Cancel a job and wait until it reaches a terminal state; returns that state."""
        self.rest(f"/jobs/{job_id}?mode=cancel", method="PATCH")
        return self.wait_job(job_id, ("CANCELED", "FAILED", "FINISHED"), timeout)

    def wait_job(self, job_id: str, states, timeout: float = 60) -> str:
        states = (states,) if isinstance(states, str) else tuple(states)
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            try:
                state = self.job(job_id)["state"]
            except RestError:
                pass
            if state in states:
                return state
            time.sleep(0.2)
        raise TimeoutError(f"job {job_id} is {state} after {timeout:.0f} s, not {'/'.join(states)}")

    def status(self) -> dict:
        st = {"running": False, "rest_url": self.rest_url, "dir": str(self.dir),
              "jobmanager_pid": self.jobmanager_pid(), "taskmanager_pids": self.taskmanager_pids()}
        if st["jobmanager_pid"] is None:
            return st
        st["running"] = True
        try:
            ov = self.overview()
        except RestError as e:
            st["rest_error"] = str(e)
            return st
        st.update(taskmanagers=ov["taskmanagers"], slots_total=ov["slots-total"],
                  slots_available=ov["slots-available"], jobs_running=ov["jobs-running"],
                  flink_version=ov.get("flink-version"))
        return st

    def describe(self) -> str:
        """The one line `streamscore cluster status` prints."""
        st = self.status()
        where = _short(self.dir)
        if not st["running"]:
            if _port_open(self.host, self.rest_port):
                return (f"flink: not running from {where}, but {self.address} is in use by another process "
                        f"(another --rest-port?)")
            return (f"flink: not running on {self.rest_url} (start it with `streamscore cluster up "
                    f"--rest-port {self.rest_port}`)")
        if "rest_error" in st:
            return (f"flink: JobManager pid {st['jobmanager_pid']} runs but {self.rest_url} does not answer "
                    f"({st['rest_error']}); see {_short(self.log_dir)}")
        return (f"flink: up on {self.rest_url}, {st['taskmanagers']} TaskManager(s), slots "
                f"{st['slots_available']}/{st['slots_total']} free, {st['jobs_running']} running job(s) "
                f"(flink {st['flink_version']}, JobManager pid {st['jobmanager_pid']}, dir {where})")

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout: float = 120) -> "FlinkCluster":
        """Start JobManager + TaskManagers and wait until all TaskManagers registered with free
        slots. Returns self; a cluster that already runs from this directory is returned as is."""
        if self.running():
            self.wait_ready(timeout, expect=max(1, len(self.taskmanager_pids())), free_slots=False)
            return self
        if _port_open(self.host, self.rest_port):
            raise SetupError(f"port {self.address} is already in use by another process; pick another "
                             f"with --rest-port")
        rpc = self._choose_rpc_port()
        if _port_open(self.host, rpc):
            raise SetupError(f"JobManager RPC port {self.host}:{rpc} is already in use (another Flink?)")
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            raise SetupError("`java` not found on PATH; install a JDK 17")
        self.stop()  # daemons of this directory that outlived their JobManager
        self._write_run_dir(rpc)
        self._rotate_logs()
        self._script("start-cluster.sh")
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop(timeout=20)
            raise
        return self

    def wait_ready(self, timeout: float = 120, expect: Optional[int] = None, free_slots: bool = True) -> None:
        """Block until the REST API reports ``expect`` (default: --taskmanagers) registered
        TaskManagers and (``free_slots``) at least one free slot."""
        expect = self.taskmanagers if expect is None else expect
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.jobmanager_pid() is None:
                raise SetupError(f"flink JobManager exited during start-up: {self._log_hint('standalonesession')}")
            if not self.taskmanager_pids():
                raise SetupError(f"flink TaskManager exited during start-up: {self._log_hint('taskexecutor')}")
            try:
                ov = self.overview()
                if ov["taskmanagers"] >= expect and (ov["slots-available"] > 0 or not free_slots):
                    return
                last = f"{ov['taskmanagers']} of {expect} TaskManager(s), {ov['slots-available']} free slots"
            except RestError as e:
                last = str(e)
            time.sleep(0.25)
        raise SetupError(f"flink on {self.rest_url} not ready after {timeout:.0f} s ({last}); see {self.log_dir}")

    def taskmanager_ids(self) -> list:
        """Resource ids of the TaskManagers the JobManager lists (a killed one stays listed until
        its heartbeats time out)."""
        return [tm["id"] for tm in self.rest("/taskmanagers")["taskmanagers"]]

    def start_taskmanager(self, timeout: float = 120) -> int:
        """Start one more TaskManager (e.g. to replace a killed one) with taskmanager.sh; returns
        its pid once it registered with the JobManager."""
        if not self.running():
            raise SetupError(f"no Flink cluster running on {self.rest_url}")
        before_pids, before_ids = set(self.taskmanager_pids()), set(self.taskmanager_ids())
        self._script("taskmanager.sh", "start")
        new = [p for p in self.taskmanager_pids() if p not in before_pids]
        if not new:
            raise SetupError(f"taskmanager.sh start started no TaskManager: {self._log_hint('taskexecutor')}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _pid_alive(new[-1]):
                raise SetupError(f"the new TaskManager exited: {self._log_hint('taskexecutor')}")
            try:
                if set(self.taskmanager_ids()) - before_ids:
                    return new[-1]
            except RestError:
                pass
            time.sleep(0.25)
        raise SetupError(f"the new TaskManager (pid {new[-1]}) did not register within {timeout:.0f} s")

    def kill_taskmanager(self, pid: Optional[int] = None, sig: int = signal.SIGKILL,
                         timeout: float = 30) -> int:
        """Kill one TaskManager (default: the newest) with ``sig`` (default SIGKILL: a crash, no clean
        shutdown) and wait until the process is gone. Returns its pid. The JobManager notices the loss
        and restarts the job's tasks once slots are free again: with a single TaskManager, call
        ``start_taskmanager()``. Measured on the 2-core box under load (fraud job, 2 s checkpoints):
        the replacement registered 20 s after the kill, every task was RUNNING again after 58 s."""
        pids = self.taskmanager_pids()
        if pid is None:
            if not pids:
                raise SetupError(f"no TaskManager running for {self.rest_url}")
            pid = pids[-1]
        elif pid not in pids:
            raise ValueError(f"pid {pid} is not a TaskManager of {self.rest_url} (those are {pids})")
        os.kill(pid, sig)
        if not _wait_gone([pid], timeout):
            raise SetupError(f"TaskManager {pid} still alive {timeout:.0f} s after signal {sig}")
        return pid

    def stop(self, timeout: float = 30) -> bool:
        """Stop the TaskManagers, then the JobManager, cleanly: SIGTERM (Flink's shutdown hooks run),
        SIGKILL whatever is left after ``timeout`` s. False if nothing was running.

        This is what stop-cluster.sh does (``kill`` per pid-file line, TaskManagers first), minus its
        five config-parsing JVM starts: about 1 s instead of 11-14 s on the 2-core machines. Running
        jobs end with the JobManager (SUSPENDED; their retained checkpoints stay)."""
        tms, jm = self.taskmanager_pids(), self.jobmanager_pid()
        if not tms and jm is None:
            self._clear_pid_files()
            return False
        self._terminate(tms, timeout)
        if jm is not None:
            self._terminate([jm], timeout)
        self._clear_pid_files()
        return True

    @staticmethod
    def _terminate(pids: list, timeout: float) -> None:
        for p in pids:
            _signal(p, signal.SIGTERM)
        if pids and not _wait_gone(pids, timeout):
            for p in pids:
                _signal(p, signal.SIGKILL)
            _wait_gone(pids, 10)

    def _clear_pid_files(self) -> None:
        for daemon in ("standalonesession", "taskexecutor"):
            self._pid_file(daemon).unlink(missing_ok=True)

    def _rotate_logs(self) -> None:
        """Keep the previous run's logs in log/previous/ for post-mortems."""
        logs = [f for f in self.log_dir.glob("flink-*") if f.is_file()]
        if not logs:
            return
        prev = self.log_dir / "previous"
        shutil.rmtree(prev, ignore_errors=True)
        prev.mkdir()
        for f in logs:
            f.replace(prev / f.name)

    def _log_hint(self, daemon: str) -> str:
        files = sorted(self.log_dir.glob(f"flink-{IDENT}-{daemon}-*.log")) + sorted(
            self.log_dir.glob(f"flink-{IDENT}-{daemon}-*.out"))
        for f in files:
            lines = f.read_text(errors="replace").splitlines()
            errors = [ln for ln in lines if " ERROR " in ln or "Exception" in ln or "Error:" in ln]
            if errors:
                return f"{errors[-1].strip()[:300]} (see {f})"
        return f"no error logged (see {self.log_dir})"

    def __enter__(self) -> "FlinkCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"FlinkCluster(rest_port={self.rest_port}, dir={str(self.dir)!r})"


def _wait_gone(pids, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_pid_alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return not any(_pid_alive(p) for p in pids)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _short(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# -- CLI ----------------------------------------------------------------------------------------
def add_parser(subparsers) -> None:
    p = subparsers.add_parser("cluster", help="run a local standalone Flink cluster (JobManager + TaskManagers)",
                              description="Start, stop or inspect a local standalone Flink cluster built from "
                                          "the PyFlink wheel's scripts, configured from flink-conf/ "
                                          "(loopback only). Submit to it with `streamscore run fraud "
                                          "--cluster 127.0.0.1:<rest-port>`.")
    p.add_argument("action", choices=("up", "down", "status"))
    p.add_argument("--rest-port", type=int, default=DEFAULT_REST_PORT,
                   help="REST/web UI port; also names the run dir .run/flink-<port> (default: %(default)s)")
    p.add_argument("--taskmanagers", type=int, default=1, help="TaskManager processes (default: %(default)s)")
    p.add_argument("--slots", type=int, default=2, help="task slots per TaskManager (default: %(default)s)")
    p.add_argument("--run-dir", default=None, help="cluster directory (default .run/flink-<rest-port>)")
    p.add_argument("--timeout", type=float, default=120, help="seconds to wait for start/stop")
    p.set_defaults(func=run)


def run(args) -> int:
    cluster = FlinkCluster(rest_port=args.rest_port, taskmanagers=args.taskmanagers, slots=args.slots,
                           run_dir=args.run_dir)
    if args.action == "up":
        was_running = cluster.running()
        t0 = time.monotonic()
        cluster.start(timeout=args.timeout)
        took = "already running" if was_running else f"started in {time.monotonic() - t0:.1f} s"
        print(f"{cluster.describe()} [{took}]")
        return 0
    if args.action == "down":
        t0 = time.monotonic()
        pids = cluster.taskmanager_pids() + ([cluster.jobmanager_pid()] if cluster.running() else [])
        try:
            running = [j["name"] for j in cluster.jobs() if j["state"] == "RUNNING"] if pids else []
        except SetupError:
            running = []
        if cluster.stop(timeout=args.timeout):
            lost = f", ended {len(running)} running job(s): {', '.join(running)}" if running else ""
            print(f"flink: stopped on {cluster.rest_url} (pids {' '.join(map(str, pids))}, "
                  f"{time.monotonic() - t0:.1f} s{lost})")
        else:
            print(f"flink: not running on {cluster.rest_url} (nothing to stop)")
        return 0
    print(cluster.describe())
    return 0 if cluster.running() else 3  # LSB: status of a stopped service exits 3
