"""Script entry point for `flink run -py jobs/submit.py <streamscore arguments>`.

`flink run` starts this file with the cluster's client JVM as PyFlink gateway; the job then
finds Flink's context environment (the cluster given by ``-m``) instead of a local MiniCluster.
So pass the usual `streamscore` arguments without ``--cluster``, e.g.

    FLINK_CONF_DIR=flink-conf .venv/lib/python3.11/site-packages/pyflink/bin/flink run -d \\
      -m 127.0.0.1:8081 -pyexec .venv/bin/python -pyclientexec .venv/bin/python \\
      -py jobs/submit.py run fraud --topic fraud-events --bootstrap 127.0.0.1:9092

``-d`` detaches: without it `flink run` waits for the (unbounded) job. The venv's Python finds
the project through its editable install, so no PYTHONPATH is needed on the client; the cluster's
TaskManagers get theirs from `streamscore cluster up`. (`jobs.cluster.submit_command` builds this.)
"""
import sys

from jobs.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
