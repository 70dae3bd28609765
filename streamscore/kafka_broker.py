"""A real single-node Kafka broker (KRaft, combined broker+controller) run with `java`.

Everything the broker owns lives in one directory (default ``.run/kafka-<port>/``):
``server.properties``, ``log4j2.properties``, ``kafka.pid``, ``broker.log`` and the partition
data under ``logs/``. Both listeners bind to loopback only.

Records keep their event time as timestamp whatever its age: time retention is off and future
timestamps are accepted (see ``server_properties``). The broker keeps Kafka's default
``transaction.max.timeout.ms`` (15 min): Flink's exactly-once KafkaSink defaults to
``transaction.timeout.ms`` = 1 h, which this broker refuses, so jobs must set at most 15 min.
Record size: ``message.max.bytes`` and the replica fetch size admit a payload up to 1 MiB; every
producer and consumer of the project is configured from the same numbers (jobs/kafka_limits.py).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterable, Optional

from jobs import kafka_limits, runtime
from jobs.runtime import SetupError

LOOPBACK = "127.0.0.1"
NODE_ID = 1
HEAP = "512m"


def server_properties(port: int, controller_port: int, log_dir: Path | str, num_partitions: int = 1,
                      host: str = LOOPBACK) -> dict:
    """The broker's settings as an ordered dict (rendered by ``render_properties``)."""
    if port == controller_port:
        raise ValueError(f"broker and controller need different ports (both {port})")
    return {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        # A static voter set (not `format --standalone`): the quorum endpoint then lives in this
        # file rather than in the formatted log, so a changed controller port needs no re-format.
        "controller.quorum.voters": f"{NODE_ID}@{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": str(int(num_partitions)),
        "auto.create.topics.enable": "true",
        "delete.topic.enable": "true",
        # One broker: every internal topic must fit on it, or group/transaction coordinators never start.
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Fewer internal partitions: creating the default 50 makes the first consumer group or
        # transaction of a fresh broker wait seconds; a dev broker gains nothing from them.
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.num.partitions": "4",
        # Consumers in tests and demos join at once instead of after the default 3 s.
        "group.initial.rebalance.delay.ms": "0",
        # Left at Kafka's default (15 min) on purpose; see the module docstring.
        "transaction.max.timeout.ms": "900000",
        # Replays stamp records with their event time, which may be years old or in the future.
        # Kafka 4 rejects CreateTime > now + 1 h by default (InvalidTimestamp for the whole batch),
        # and time-based retention (7 days) would silently delete a replay of older data within
        # one retention check (5 min). A dev broker keeps what it is given; delete topics instead.
        "log.message.timestamp.after.max.ms": str(2**63 - 1),
        "log.retention.ms": "-1",
        # What it accepts, stated rather than left to Kafka's defaults: a payload up to 1 MiB plus
        # batch overhead; the jobs' producers and source take the same numbers (jobs/kafka_limits.py).
        **kafka_limits.broker_properties(),
    }


def render_properties(props: dict) -> str:
    lines = ["# written by streamscore (streamscore/kafka_broker.py); regenerated on every start"]
    lines += [f"{k}={v}" for k, v in props.items()]
    return "\n".join(lines) + "\n"


# Broker log to stdout (which start() redirects to broker.log); the chattiest classes at WARN.
LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.state.name = state.change.logger
logger.state.level = warn
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = warn
logger.storage.name = org.apache.kafka.storage
logger.storage.level = warn
logger.log.name = kafka.log
logger.log.level = warn
logger.coord.name = org.apache.kafka.coordinator
logger.coord.level = warn
logger.config.name = org.apache.kafka.common.config
logger.config.level = warn
"""


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie (a zombie still answers kill(0))."""
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own finished child
    except ChildProcessError:
        pass
    if os.path.exists("/proc/self/stat"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False
    try:  # no /proc (macOS)
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class KafkaBroker:
    """One local broker, identified by its port and directory. Safe to construct for an already
    running broker (``status``/``stop`` find it through the pid file)."""

    def __init__(self, port: int = 9092, data_dir: Optional[str | Path] = None,
                 controller_port: Optional[int] = None, num_partitions: int = 1, host: str = LOOPBACK,
                 heap: str = HEAP, overrides: Optional[dict] = None):
        if not 0 < int(port) < 65536:
            raise ValueError(f"port {port} is not a TCP port")
        self.port = int(port)
        self.controller_port = int(controller_port) if controller_port else self.port + 1
        if not 0 < self.controller_port < 65536:
            raise ValueError(f"controller port {self.controller_port} is not a TCP port")
        self.host = host
        self.num_partitions = int(num_partitions)
        self.heap = heap
        self.overrides = {k: str(v) for k, v in (overrides or {}).items()}  # extra server.properties
        self.dir = Path(data_dir) if data_dir else runtime.RUN_DIR / f"kafka-{self.port}"
        self._proc: Optional[subprocess.Popen] = None

    # -- paths -----------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.dir / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.dir / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "broker.log"

    @property
    def log_dir(self) -> Path:
        return self.dir / "logs"

    def properties(self) -> dict:
        props = server_properties(self.port, self.controller_port, self.log_dir.resolve(),
                                  self.num_partitions, self.host)
        props.update(self.overrides)
        return props

    # -- state -----------------------------------------------------------------------------
    def pid(self) -> Optional[int]:
        """The pid of this broker's JVM if it is running, else None (stale pid files are ignored)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if not _pid_alive(pid):
            return None
        try:  # guard against a recycled pid belonging to something else
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return pid
        if b"kafka.Kafka" not in cmdline:
            return None
        return pid

    def status(self) -> dict:
        pid = self.pid()
        return {"running": pid is not None, "pid": pid, "bootstrap": self.bootstrap,
                "controller": f"{self.host}:{self.controller_port}", "dir": str(self.dir)}

    def describe(self) -> str:
        """The one-line summary the CLI prints."""
        st = self.status()
        where = _short(self.dir)
        if st["running"]:
            return f"kafka: up on {self.bootstrap} (pid {st['pid']}, data {where})"
        if _port_open(self.host, self.port):
            return (f"kafka: not running from {where}, but {self.bootstrap} is in use by another process "
                    f"(another --data-dir?)")
        return f"kafka: not running on {self.bootstrap} (data {where}; start it with `streamscore kafka up --port {self.port}`)"

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> "KafkaBroker":
        """Start the broker (formatting its directory the first time) and wait until it serves
        metadata. Returns self; a broker that already runs is returned as is."""
        if self.pid() is not None:
            self.wait_ready(timeout)
            return self
        for p in (self.port, self.controller_port):
            if _port_open(self.host, p):
                raise SetupError(f"port {self.host}:{p} is already in use by another process; "
                                 f"pick another with --port")
        classpath = runtime.kafka_classpath()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(render_properties(self.properties()))
        log4j = self.dir / "log4j2.properties"
        log4j.write_text(LOG4J2)
        if not (self.log_dir / "meta.properties").exists():
            self._format(classpath)

        if self.log_file.exists():  # keep the previous run's log for post-mortems
            self.log_file.replace(self.log_file.with_suffix(".log.1"))
        cmd = ["java", f"-Xmx{self.heap}", f"-Xms{min_heap(self.heap)}", "-XX:+UseG1GC",
               "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j.resolve()}",
               f"-Dkafka.logs.dir={self.dir.resolve()}",
               "-cp", classpath, "kafka.Kafka", str(self.config_file.resolve())]
        with open(self.log_file, "ab") as log:
            try:
                # Own session: the broker outlives `streamscore kafka up` and ignores the terminal's ^C.
                self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT, cwd=self.dir,
                                              start_new_session=True)
            except FileNotFoundError:
                raise SetupError("`java` not found on PATH; install a JDK 17+") from None
        self.pid_file.write_text(f"{self._proc.pid}\n")
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop(timeout=10)
            raise
        return self

    def _format(self, classpath: str) -> None:
        cluster_id = _random_cluster_id()
        cmd = ["java", "-Xmx256m", "-cp", classpath, "kafka.tools.StorageTool", "format",
               "--config", str(self.config_file.resolve()), "--cluster-id", cluster_id,
               "--ignore-formatted"]
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            last = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise SetupError(f"formatting {self.log_dir} failed: {last[0]}")

    def wait_ready(self, timeout: float = 60) -> None:
        """Block until the broker accepts connections and answers a metadata request with itself."""
        from kafka.errors import KafkaError

        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            pid = self.pid()
            if pid is None:
                raise SetupError(f"kafka on {self.bootstrap} exited during start-up: {self._log_hint()}")
            if _port_open(self.host, self.port):
                left_ms = (deadline - time.monotonic()) * 1000
                try:
                    if _has_broker(self.bootstrap, timeout_ms=min(5000, max(500, left_ms))):
                        return
                    last_error = "no broker registered yet"
                except (KafkaError, SetupError, OSError) as e:  # not serving yet
                    last_error = f"{type(e).__name__}: {e}"
            time.sleep(0.2)
        raise SetupError(f"kafka on {self.bootstrap} not ready after {timeout:.0f} s ({last_error}); "
                         f"see {self.log_file}")

    def stop(self, timeout: float = 30) -> bool:
        """SIGTERM (a clean shutdown), SIGKILL after ``timeout`` s. Returns False if it was not running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        _signal(pid, signal.SIGTERM)
        if not self._wait_gone(pid, timeout):
            _signal(pid, signal.SIGKILL)
            self._wait_gone(pid, 10)
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
            self._proc = None
        self.pid_file.unlink(missing_ok=True)
        return True

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return True
            time.sleep(0.1)
        return not _pid_alive(pid)

    def _log_hint(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "no log written"
        errors = [ln for ln in lines if " ERROR " in ln or "Exception" in ln]
        tail = (errors or lines or ["(empty log)"])[-1].strip()
        return f"{tail[:300]} (see {self.log_file})"

    def __enter__(self) -> "KafkaBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"KafkaBroker(port={self.port}, data_dir={str(self.dir)!r})"


def min_heap(heap: str) -> str:
    """Initial heap: half the maximum (the JVM otherwise reserves a quarter of the machine's RAM)."""
    unit = heap[-1].lower()
    if unit in "kmg" and heap[:-1].isdigit():
        return f"{max(1, int(heap[:-1]) // 2)}{unit}"
    return heap


def _random_cluster_id() -> str:
    """What `kafka-storage random-uuid` prints: a UUID, base64url without padding (22 chars).
    Like Kafka's Uuid.randomUuid, never starting with "-": the tool's parser would read an option."""
    import base64

    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


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


# -- admin helpers (kafka-python) -------------------------------------------------------------
def _admin(bootstrap: str, timeout_ms: float = 10000):
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    conf = {"bootstrap_servers": bootstrap, "request_timeout_ms": int(timeout_ms), "client_id": "streamscore-admin"}
    if "bootstrap_timeout_ms" in KafkaAdminClient.DEFAULT_CONFIG:  # kafka-python >= 3.0
        conf["bootstrap_timeout_ms"] = int(timeout_ms)
    try:
        return KafkaAdminClient(**conf)
    except KafkaError as e:  # 3.x: KafkaTimeoutError "Unable to bootstrap"; 2.x: NoBrokersAvailable
        raise SetupError(f"no Kafka broker at {bootstrap} ({e}); start one with `streamscore kafka up`") from None


def _has_broker(bootstrap: str, timeout_ms: float = 5000) -> bool:
    admin = _admin(bootstrap, timeout_ms)
    try:
        return bool(admin.describe_cluster().get("brokers"))
    finally:
        admin.close()


def ensure_topic(bootstrap: str, name: str, partitions: int = 1, replication_factor: int = 1,
                 configs: Optional[dict] = None, timeout: float = 30) -> bool:
    """Create ``name`` unless it exists and wait until every partition has a leader.
    Returns True if it was created. An existing topic is left as is (even with other partitions)."""
    from kafka.errors import TopicAlreadyExistsError

    admin = _admin(bootstrap)
    try:
        spec = {"num_partitions": int(partitions), "replication_factor": int(replication_factor)}
        if configs:
            spec["configs"] = {k: str(v) for k, v in configs.items()}
        try:
            admin.create_topics({name: spec}, timeout_ms=int(timeout * 1000))
            created = True
        except TopicAlreadyExistsError:
            created = False
        admin.wait_for_topics([name], timeout_ms=int(timeout * 1000))
        return created
    finally:
        admin.close()


def delete_topics(bootstrap: str, names: Iterable[str], timeout: float = 30) -> list:
    """Delete the topics that exist among ``names``; returns the names deleted."""
    names = list(names)
    if not names:
        return []
    admin = _admin(bootstrap)
    try:
        existing = set(admin.list_topics())
        gone = [n for n in names if n in existing]
        if gone:
            admin.delete_topics(gone, timeout_ms=int(timeout * 1000))
        return gone
    finally:
        admin.close()


def consumer_lag(bootstrap: str, group: str, topics: Optional[Iterable[str]] = None) -> dict:
    """Records not yet committed by consumer group ``group``: {(topic, partition): lag}.

    Flink's Kafka source commits offsets on each completed checkpoint, so for a Flink job this
    is the backlog as of its last checkpoint. Partitions without a committed offset count in full.
    """
    from kafka import KafkaConsumer, TopicPartition

    admin = _admin(bootstrap)
    try:
        committed = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    wanted = set(topics) if topics else {tp.topic for tp in committed}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(t, p) for t in sorted(wanted) for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = consumer.end_offsets(parts) if parts else {}
        begins = consumer.beginning_offsets(parts) if parts else {}
    finally:
        consumer.close()
    lag = {}
    for tp in parts:
        meta = committed.get(tp)
        done = meta.offset if meta is not None and meta.offset >= 0 else begins[tp]
        lag[(tp.topic, tp.partition)] = max(0, ends[tp] - done)
    return lag


# -- CLI ----------------------------------------------------------------------------------------
def add_parser(subparsers) -> None:
    p = subparsers.add_parser("kafka", help="run a local single-node Kafka broker (KRaft, loopback only)",
                              description="Start, stop or inspect a local Kafka broker run with java.")
    p.add_argument("action", choices=("up", "down", "status", "lag"),
                   help="lag: records a consumer group (--group) has not committed yet")
    p.add_argument("--group", default=None, help="consumer group for `lag` (a Flink job's --group-id)")
    p.add_argument("--topic", action="append", default=None, help="restrict `lag` to these topics")
    p.add_argument("--port", type=int, default=_default_port(), help="broker port (default from "
                   "STREAMSCORE_BOOTSTRAP, else 9092)")
    p.add_argument("--controller-port", type=int, default=None, help="KRaft controller port (default port+1)")
    p.add_argument("--data-dir", default=None, help="broker directory (default .run/kafka-<port>)")
    p.add_argument("--partitions", type=int, default=1, help="num.partitions for auto-created topics")
    p.add_argument("--timeout", type=float, default=60, help="seconds to wait for start/stop")
    p.set_defaults(func=run)


def _default_port() -> int:
    try:
        return int(runtime.DEFAULT_BOOTSTRAP.split(",")[0].rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return 9092


def run(args) -> int:
    broker = KafkaBroker(port=args.port, data_dir=args.data_dir, controller_port=args.controller_port,
                         num_partitions=args.partitions)
    if args.action == "lag":
        if not args.group:
            raise ValueError("kafka lag needs --group")
        lag = consumer_lag(broker.bootstrap, args.group, args.topic)
        if not lag:
            print(f"kafka: group {args.group} has committed nothing on {broker.bootstrap}")
            return 0
        for (t, p), n in sorted(lag.items()):
            print(f"{t}[{p}] lag {n:,}")
        print(f"total lag of {args.group}: {sum(lag.values()):,}")
        return 0
    if args.action == "up":
        was_running = broker.pid() is not None
        t0 = time.monotonic()
        broker.start(timeout=args.timeout)
        took = "already running" if was_running else f"started in {time.monotonic() - t0:.1f} s"
        print(f"{broker.describe()} [{took}]")
        return 0
    if args.action == "down":
        pid = broker.pid()
        t0 = time.monotonic()
        if broker.stop(timeout=args.timeout):
            print(f"kafka: stopped on {broker.bootstrap} (pid {pid}, {time.monotonic() - t0:.1f} s)")
        else:
            print(f"kafka: not running on {broker.bootstrap} (nothing to stop)")
        return 0
    print(broker.describe())
    # LSB convention: status of a stopped service exits 3.
    return 0 if broker.pid() is not None else 3
