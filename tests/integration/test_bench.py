"""`streamscore bench --quick` end to end with tiny numbers: its own broker, four Flink jobs
(fraud, Java SQL, BATCH backfill, a streaming latency run), results written and the broker stopped.
About 3 minutes on an idle 2-core machine (mostly JVM and Python worker start-ups)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import free_port_pair

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_quick_bench_with_tiny_numbers(tmp_path):
    port = free_port_pair()
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "streamscore.cli", "bench", "--quick", "--events", "2000", "--cards", "200",
           "--backfill-events", "3000", "--rates", "300", "--latency-seconds", "3",
           "--sections", "throughput,backfill,latency", "--port", str(port), "--out", str(out),
           "--work-dir", str(tmp_path / "work"), "--quiet-wait", "0"]
    # earlier tests in this process ran PyFlink UDF code, which sets PYFLINK_GATEWAY_DISABLED
    env = {k: v for k, v in os.environ.items() if k != "PYFLINK_GATEWAY_DISABLED"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "[1/" in res.stdout and "writing results" in res.stdout  # progress

    r = json.loads((out / "results.json").read_text())
    tp = r["throughput"]
    for job in ("fraud", "sql"):
        assert tp[job]["outputs"] == 2000, tp[job]
        assert tp[job]["events_per_s"] > 0 and tp[job]["net_s"] > 0 and tp[job]["cpu_s"] > 0
    assert r["backfill"]["check"]["agree"], r["backfill"]["check"]
    assert r["backfill"]["flink"]["rows_per_s"] > 0 and r["backfill"]["reference"]["rows_per_s"] > 0
    (run,) = r["latency"]["runs"]
    (phase,) = run["phases"]
    assert "error" not in run, run
    assert phase["missing"] == 0 and phase["consumer"]["n"] == phase["sent"] > 0
    assert 0 < phase["consumer"]["p50"] <= phase["consumer"]["p99"]

    md = (out / "results.md").read_text()
    assert "| figure | streamscore | reference | ratio | target | met |" in md
    for png in ("throughput.png", "backfill.png", "latency.png"):
        assert (out / png).stat().st_size > 1000

    with socket.socket() as s:  # the benchmark stopped the broker it started
        assert s.connect_ex(("127.0.0.1", port)) != 0
