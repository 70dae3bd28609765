"""Where things live on this machine: the repository, the JVM jars, run-time data.

Nothing here is hard-coded per job: every location can be moved with an environment
variable, and Kafka addresses always come from the command line or STREAMSCORE_BOOTSTRAP.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(os.environ.get("STREAMSCORE_HOME", Path(__file__).resolve().parent.parent))
JARS_DIR = Path(os.environ.get("STREAMSCORE_JARS", ROOT / ".jars"))
RUN_DIR = Path(os.environ.get("STREAMSCORE_RUN", ROOT / ".run"))
FLINK_CONF_DIR = ROOT / "flink-conf"
DEFAULT_BOOTSTRAP = os.environ.get("STREAMSCORE_BOOTSTRAP", "127.0.0.1:9092")


class SetupError(RuntimeError):
    """Something the machine lacks (jars, a broker); the message says which command fixes it."""


def flink_jars() -> list[Path]:
    d = JARS_DIR / "flink"
    jars = sorted(d.glob("*.jar")) if d.is_dir() else []
    if not any(j.name.startswith("flink-sql-connector-kafka") for j in jars):
        raise SetupError(f"Flink connector jars missing under {d}; run `make jars`")
    return jars


def kafka_classpath() -> str:
    d = JARS_DIR / "kafka"
    jars = sorted(d.glob("*.jar")) if d.is_dir() else []
    if not any(j.name.startswith("kafka_2.13") for j in jars):
        raise SetupError(f"Kafka broker jars missing under {d}; run `make jars`")
    return os.pathsep.join(str(j) for j in jars)


def python_executable() -> str:
    """The interpreter Flink's Python workers must use (the venv's, never whatever is on PATH)."""
    return os.environ.get("STREAMSCORE_PYEXEC", sys.executable)


def ensure_java_home() -> None:
    """Make ``JAVA_HOME`` usable or absent before PyFlink looks for ``$JAVA_HOME/bin/java``.

    Flink's own bash scripts (config.sh) ``export JAVA_HOME=""`` when it was unset and java is on
    PATH, so any process started under them inherits an empty value; PyFlink then runs
    ``bin/java`` relative to the working directory and fails with "No such file or directory".
    An unusable value is replaced by the home of the ``java`` on PATH, or removed.
    """
    import shutil

    home = os.environ.get("JAVA_HOME")
    if home is None or (os.path.isabs(home) and os.path.isfile(os.path.join(home, "bin", "java"))):
        return
    java = shutil.which("java")
    if java:
        os.environ["JAVA_HOME"] = str(Path(os.path.realpath(java)).parent.parent)
    else:
        del os.environ["JAVA_HOME"]
