"""Create Flink execution environments the same way for every job.

Everything machine-specific is done here, once: which Python the workers run, which jars
Flink loads, where logs go, and the flink-conf/config.yaml defaults. Jobs only say what
they need (mode, parallelism, checkpoints).
"""
from __future__ import annotations

import os
import site
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import yaml

from jobs.runtime import FLINK_CONF_DIR, ROOT, RUN_DIR, ensure_java_home, flink_jars, python_executable


@dataclass(frozen=True)
class FlinkSettings:
    """How a job runs on Flink. Validated on construction.

    >>> FlinkSettings(parallelism=0)
    Traceback (most recent call last):
    ...
    ValueError: parallelism must be >= 1, got 0
    """

    batch: bool = False
    parallelism: int = 1
    checkpoint_dir: Optional[str] = None  # None: no checkpointing
    checkpoint_interval_ms: int = 10_000
    state_backend: str = "rocksdb"
    restore_from: Optional[str] = None  # savepoint / retained checkpoint path
    cluster: Optional[str] = None  # host:port of a JobManager REST endpoint; None: local MiniCluster
    extra: Mapping[str, str] = field(default_factory=dict)  # raw Flink options, highest precedence

    def __post_init__(self):
        if self.parallelism < 1:
            raise ValueError(f"parallelism must be >= 1, got {self.parallelism}")
        if self.state_backend not in ("rocksdb", "hashmap"):
            raise ValueError(f"state backend must be rocksdb or hashmap, got {self.state_backend!r}")
        if self.checkpoint_interval_ms < 100:
            raise ValueError("checkpoint interval must be at least 100 ms")
        if self.cluster is not None and ":" not in self.cluster:
            raise ValueError(f"--cluster takes HOST:PORT, got {self.cluster!r}")
        if self.restore_from is not None and not _local_path(self.restore_from).exists():
            raise FileNotFoundError(f"savepoint/checkpoint {self.restore_from} does not exist")


def _local_path(uri_or_path: str) -> Path:
    """A path from a plain path or a file: URI (Flink prints savepoints as file:/...)."""
    from urllib.parse import urlparse

    return Path(urlparse(uri_or_path).path) if uri_or_path.startswith("file:") else Path(uri_or_path)


def prepare_process_env() -> None:
    """Environment variables the PyFlink gateway JVM and its embedded Python need.

    Thread mode embeds CPython inside the JVM (pemja); that interpreter does not process the
    venv's site-packages on its own, so it is put on PYTHONPATH, with the repository itself.
    """
    paths = [str(ROOT)] + site.getsitepackages()
    old = os.environ.get("PYTHONPATH")
    if old:
        paths += [p for p in old.split(os.pathsep) if p not in paths]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    # Set by PyFlink in processes that ran Python UDF code (e.g. a test process); a job client
    # started from such a process (inherits it) would refuse to launch its gateway.
    os.environ.pop("PYFLINK_GATEWAY_DISABLED", None)
    ensure_java_home()
    os.environ.setdefault("FLINK_CONF_DIR", str(FLINK_CONF_DIR))
    log_dir = RUN_DIR / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLINK_LOG_DIR", str(log_dir))


def load_flink_conf(path: Path = FLINK_CONF_DIR / "config.yaml") -> dict:
    """The project's Flink defaults as flat "a.b.c" -> str."""
    with open(path) as f:
        data = yaml.safe_load(f) or {}

    def flat(d, prefix=""):
        for k, v in d.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict):
                yield from flat(v, key)
            else:
                yield key, v

    out = {}
    for k, v in flat(data):
        if isinstance(v, bool):
            v = str(v).lower()
        out[k] = str(v)
    return out


# Options that only matter to a standalone cluster process, not to a job's configuration.
_CLUSTER_ONLY = ("jobmanager.", "taskmanager.", "rest.", "env.java.")


def flink_configuration(settings: FlinkSettings) -> dict:
    conf = {k: v for k, v in load_flink_conf().items() if not k.startswith(_CLUSTER_ONLY)}
    conf["pipeline.jars"] = ";".join(j.resolve().as_uri() for j in flink_jars())
    conf["python.executable"] = python_executable()
    conf["python.client.executable"] = python_executable()
    conf["state.backend.type"] = settings.state_backend
    conf["parallelism.default"] = str(settings.parallelism)
    if settings.checkpoint_dir and not settings.batch:
        conf["execution.checkpointing.dir"] = Path(settings.checkpoint_dir).resolve().as_uri()
        conf["execution.checkpointing.interval"] = f"{settings.checkpoint_interval_ms} ms"
    else:
        conf.pop("execution.checkpointing.interval", None)
    if settings.restore_from:
        conf["execution.state-recovery.path"] = settings.restore_from
    conf["execution.runtime-mode"] = "BATCH" if settings.batch else "STREAMING"
    conf.update(settings.extra)
    return conf


def make_env(settings: FlinkSettings):
    """A (StreamExecutionEnvironment, StreamTableEnvironment) pair configured for ``settings``."""
    prepare_process_env()
    from pyflink.common import Configuration
    from pyflink.datastream import RuntimeExecutionMode, StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    conf = Configuration()
    for k, v in flink_configuration(settings).items():
        conf.set_string(k, v)
    if settings.cluster:
        from pyflink.java_gateway import get_gateway

        host, port = settings.cluster.rsplit(":", 1)
        conf.set_string("execution.target", "remote")
        conf.set_string("rest.address", host)
        conf.set_string("rest.port", port)
        conf.set_string("execution.attached", "true")  # execute() waits for a bounded job, as locally
        # get_execution_environment() outside `flink run` returns a LocalStreamEnvironment, which
        # forces execution.target=local (a MiniCluster, here clashing with rest.port): build the
        # environment from the configuration so the remote executor submits to the cluster.
        j_env_class = get_gateway().jvm.org.apache.flink.streaming.api.environment.StreamExecutionEnvironment
        env = StreamExecutionEnvironment(j_env_class(conf._j_configuration))
    else:
        env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_runtime_mode(RuntimeExecutionMode.BATCH if settings.batch else RuntimeExecutionMode.STREAMING)
    env.set_parallelism(settings.parallelism)
    t_env = StreamTableEnvironment.create(env)  # follows the env's runtime mode
    return env, t_env
