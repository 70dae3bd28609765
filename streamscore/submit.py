"""Script entry point for `flink run -py streamscore/submit.py <streamscore arguments>`.

`flink run` starts this file with the cluster's client JVM as PyFlink gateway; the job then
finds Flink's context environment (the cluster given by ``-m``) instead of a local MiniCluster.
So pass the usual `streamscore` arguments without ``--cluster``, e.g.

    FLINK_CONF_DIR=flink-conf .venv/lib/python3.11/site-packages/pyflink/bin/flink run -d \\
      -m 127.0.0.1:8081 -pyexec .venv/bin/python -pyclientexec .venv/bin/python \\
      -py streamscore/submit.py run fraud --topic fraud-events --bootstrap 127.0.0.1:9092

``-d`` detaches: without it `flink run` waits for the (unbounded) job. The venv's Python finds
the project through its editable install, so no PYTHONPATH is needed on the client; the cluster's
TaskManagers get theirs from `streamscore cluster up`. (``submit_command`` below builds this.)
"""
import sys


def submit_command(cluster: str, job_args: list, detached: bool = True) -> tuple:
    """The plain `flink run` form of ``streamscore <job_args>`` against ``cluster`` (HOST:PORT):
    (argv, extra environment). Verified with the fraud job:

        FLINK_CONF_DIR=.run/flink-8081/conf <site-packages>/pyflink/bin/flink run -d -m 127.0.0.1:8081 \\
          -pyexec .venv/bin/python -pyclientexec .venv/bin/python -py streamscore/submit.py run fraud ...

    FLINK_CONF_DIR gives the client the project's Flink options; ``-pyexec`` is the TaskManagers'
    Python, ``-pyclientexec`` the one that builds the job graph. ``job_args`` must not contain
    ``--cluster``: under `flink run` the job submits through Flink's context environment."""
    if "--cluster" in job_args:
        raise ValueError("`flink run` submits to -m HOST:PORT; drop --cluster from the job arguments")
    from jobs import runtime
    from streamscore.cluster import flink_home

    py = runtime.python_executable()
    argv = [str(flink_home() / "bin" / "flink"), "run", *(["-d"] if detached else []), "-m", cluster,
            "-pyexec", py, "-pyclientexec", py, "-py", str(runtime.ROOT / "streamscore" / "submit.py"), *job_args]
    return argv, {"FLINK_CONF_DIR": str(runtime.FLINK_CONF_DIR), "FLINK_LOG_DIR": str(runtime.RUN_DIR / "log")}


if __name__ == "__main__":
    from streamscore.cli import main

    sys.exit(main(sys.argv[1:]))
