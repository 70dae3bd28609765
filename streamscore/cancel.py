"""`streamscore cancel JOB_ID`: stop a job on a standalone Flink cluster through its REST API.

The cluster's web UI has no Cancel button (flink-conf/config.yaml sets web.cancel.enable: false).
In Flink 2.2 that option only hides the dashboard's button (DashboardConfigHandler); the REST
endpoint PATCH /jobs/<id>?mode=cancel stays, and is what `flink cancel` calls too. So the CLI
cancels through it, waits until the job is terminal and names its newest retained checkpoint.
"""
from __future__ import annotations

import re
import time

from jobs.runtime import SetupError

DEFAULT_CLUSTER = "127.0.0.1:8081"
_JOB_ID = re.compile(r"[0-9a-f]{32}")
_TERMINAL = ("CANCELED", "FAILED", "FINISHED", "SUSPENDED")


def add_parser(sub) -> None:
    p = sub.add_parser("cancel", help="cancel a job on a Flink cluster (the web UI cannot)",
                       description=__doc__.split("\n")[0])
    p.add_argument("job_id", metavar="JOB_ID",
                   help="32 hex digits (printed by `run --cluster`; an unknown id lists the running ones)")
    p.add_argument("--cluster", default=DEFAULT_CLUSTER, metavar="HOST:PORT",
                   help="the JobManager's REST endpoint (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="seconds to wait for the job to stop (default: %(default)s)")
    p.set_defaults(func=run)


def _cluster(address: str):
    from streamscore.cluster import FlinkCluster

    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--cluster takes HOST:PORT, got {address!r}")
    return FlinkCluster(rest_port=int(port), host=host)


def cancel(address: str, job_id: str, timeout: float = 60.0) -> str:
    """Cancel ``job_id`` on the cluster at ``address``; the line to print. SetupError (one line) for
    no cluster or an unknown job, TimeoutError if it does not stop in time."""
    from streamscore.cluster import RestError

    job_id = job_id.strip().lower()
    if not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"a job id is 32 hex digits, got {job_id[:40]!r}")
    cluster = _cluster(address)
    try:
        cluster.overview()
    except RestError:
        raise SetupError(f"no Flink cluster answers at {cluster.rest_url} (start one with "
                         f"`streamscore cluster up`, or give --cluster HOST:PORT)") from None
    try:
        job = cluster.job(job_id)
    except RestError as e:
        if "HTTP 404" in str(e):
            running = [f"{j['jid']} ({j['name']})" for j in cluster.jobs() if j["state"] == "RUNNING"]
            raise SetupError(f"no job {job_id} on {cluster.rest_url}; running there: "
                             f"{', '.join(running) or 'none'}") from None
        raise
    name, state = job.get("name", "?"), job.get("state", "?")
    if state in _TERMINAL:
        return f"job {job_id} ({name}) is already {state} on {cluster.rest_url}; nothing to cancel"
    t0 = time.monotonic()
    cluster.rest(f"/jobs/{job_id}?mode=cancel", method="PATCH")
    state = cluster.wait_job(job_id, _TERMINAL, timeout)
    line = f"job {job_id} ({name}) {state} on {cluster.rest_url} in {time.monotonic() - t0:.1f} s"
    ckpt = _newest_checkpoint(cluster, job_id)
    if ckpt:
        line += f"; newest retained checkpoint {ckpt} (resume: the job's run command with --from-savepoint)"
    return line


def _newest_checkpoint(cluster, job_id: str):
    try:
        latest = (cluster.rest(f"/jobs/{job_id}/checkpoints") or {}).get("latest") or {}
    except SetupError:
        return None
    done = latest.get("completed") or {}
    path = done.get("external_path")
    return path if path and path != "<checkpoint-not-externally-addressable>" else None


def run(args) -> int:
    import sys

    try:
        print(cancel(args.cluster, args.job_id, args.timeout), flush=True)
    except TimeoutError as e:
        sys.stderr.write(f"streamscore cancel: {e}\n")
        return 1
    return 0
