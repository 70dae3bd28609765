"""The fraud and iot jobs on a real standalone Flink cluster (JobManager + TaskManager processes started
from the PyFlink wheel's scripts by `streamscore cluster up`), fed by the session's Kafka broker.

One cluster for the whole module (a start costs 10-25 s): both submission paths run against it,
`streamscore run fraud --cluster` and the plain `flink run -py streamscore/submit.py`, then a TaskManager
is killed and replaced.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.alerts import AlertPolicy, run_alerts
from features.contracts import PAYMENT, SENSOR
from features.iot import IOT_FEATURES
from features.iot_model import load_iot_model
from features.synthetic import generate_payments, generate_sensors, to_arrow
from streamscore.cli import main as cli
from streamscore.produce import produce_rows
from jobs.runtime import ROOT

N_EVENTS = 2000
cluster_test = [pytest.mark.integration, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from streamscore.cluster import FlinkCluster

    c = FlinkCluster(rest_port=free_port(), taskmanagers=1, slots=2, run_dir=tmp_path_factory.mktemp("flink"))
    t0 = time.monotonic()
    c.start(timeout=180)
    started = time.monotonic() - t0
    try:
        yield c
    finally:
        t0 = time.monotonic()
        stopped = c.stop()
        took = time.monotonic() - t0
        print(f"\n[cluster] started in {started:.1f} s, stopped in {took:.1f} s")
        assert stopped
        assert not c.running() and not c.taskmanager_pids()


@pytest.fixture(scope="module")
def payments(kafka_broker):
    """2,000 payments pre-loaded into their own topic; returns (topic, event ids)."""
    frame = generate_payments(N_EVENTS, seed=3)
    topic = f"cluster-payments-{os.getpid()}-{int(time.time())}"
    produce_rows(kafka_broker.bootstrap, topic, to_arrow(frame, PAYMENT), PAYMENT)
    return topic, set(frame["event_id"])


def read_decisions(bootstrap: str, topic: str, expect: int, timeout: float = 240,
                   isolation: str = "read_uncommitted") -> list:
    """Poll ``topic`` from the start until ``expect`` records arrived (or the timeout)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, isolation_level=isolation)
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expect and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000).values():
                out += [json.loads(m.value) for m in batch]
    finally:
        consumer.close()
    return out


def job_args(kafka_broker, topic: str, decisions: str, ckpt) -> list:
    return ["run", "fraud", "--topic", topic, "--bootstrap", kafka_broker.bootstrap,
            "--group-id", f"cluster-test-{decisions}", "--decisions", f"kafka:{decisions}",
            "--features-out", "none", "--dead-letters", "none", "--late", "none",
            "--checkpoint-dir", str(ckpt)]


def check_running_and_cancel(cluster, job_id: str, expected_ids: set, decisions: list) -> None:
    assert len(decisions) >= N_EVENTS, f"only {len(decisions)} of {N_EVENTS} decisions arrived"
    assert {d["event_id"] for d in decisions} == expected_ids
    jobs = {j["jid"]: j for j in cluster.jobs()}
    assert jobs[job_id]["state"] == "RUNNING", jobs[job_id]
    assert jobs[job_id]["name"] == "streamscore-fraud"
    assert cluster.cancel(job_id) == "CANCELED"
    assert cluster.job(job_id)["state"] == "CANCELED"


@pytest.mark.integration
@pytest.mark.slow
def test_cluster_is_up(cluster):
    st = cluster.status()
    assert st["running"] and st["taskmanagers"] == 1 and st["slots_total"] == 2
    assert st["slots_available"] == 2 and st["jobs_running"] == 0
    assert len(cluster.taskmanager_pids()) == 1
    line = cluster.describe()
    assert "\n" not in line and cluster.rest_url in line and "1 TaskManager(s)" in line


@pytest.mark.integration
@pytest.mark.slow
def test_fraud_job_with_cluster_flag(cluster, kafka_broker, payments, unique_topic, tmp_path, capsys):
    topic, ids = payments
    out = unique_topic("decisions")
    t0 = time.monotonic()
    rc = cli([*job_args(kafka_broker, topic, out, tmp_path / "ckpt"), "--cluster", cluster.address])
    submitted = time.monotonic() - t0
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert f"cluster {cluster.address}" in printed  # not a local MiniCluster
    job_id = re.search(r"job id ([0-9a-f]{32})", printed).group(1)
    decisions = read_decisions(kafka_broker.bootstrap, out, N_EVENTS)
    took = time.monotonic() - t0
    check_running_and_cancel(cluster, job_id, ids, decisions)
    with capsys.disabled():
        print(f"\n[cluster] --cluster: submitted in {submitted:.1f} s, {N_EVENTS} decisions after {took:.1f} s")


@pytest.mark.integration
@pytest.mark.slow
def test_fraud_job_with_flink_run(cluster, kafka_broker, payments, unique_topic, tmp_path, capsys):
    """The documented plain form: FLINK_CONF_DIR=flink-conf flink run -d -m ... -py streamscore/submit.py ..."""
    from streamscore.submit import submit_command

    topic, ids = payments
    out = unique_topic("decisions")
    argv, env = submit_command(cluster.address, job_args(kafka_broker, topic, out, tmp_path / "ckpt"))
    t0 = time.monotonic()
    res = subprocess.run(argv, env={**os.environ, **env}, cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    submitted = time.monotonic() - t0
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    job_id = re.search(r"submitted with JobID ([0-9a-f]{32})", res.stdout).group(1)
    decisions = read_decisions(kafka_broker.bootstrap, out, N_EVENTS)
    took = time.monotonic() - t0
    check_running_and_cancel(cluster, job_id, ids, decisions)
    with capsys.disabled():
        print(f"\n[cluster] flink run: submitted in {submitted:.1f} s, {N_EVENTS} decisions after {took:.1f} s")


@pytest.mark.integration
@pytest.mark.slow
def test_kill_and_replace_taskmanager(cluster, capsys):
    old = cluster.taskmanager_pids()
    t0 = time.monotonic()
    killed = cluster.kill_taskmanager()
    assert killed == old[-1] and cluster.taskmanager_pids() == old[:-1]
    new = cluster.start_taskmanager(timeout=120)
    took = time.monotonic() - t0
    assert new != killed and cluster.taskmanager_pids() == old[:-1] + [new]
    with capsys.disabled():
        print(f"\n[cluster] TaskManager killed and a new one registered in {took:.1f} s")


def test_status_with_nothing_running_is_one_line_and_fails(tmp_path):
    port = free_port()
    res = subprocess.run([sys.executable, "-m", "streamscore.cli", "cluster", "status", "--rest-port", str(port),
                          "--run-dir", str(tmp_path / "flink")], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode != 0
    lines = res.stdout.splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "not running" in lines[0]
    assert res.stderr == ""


def read_committed(bootstrap: str, topic: str, expect: int, timeout: float = 300) -> list:
    """Decisions a read_committed consumer sees (transactions of a crashed attempt stay invisible)."""
    return read_decisions(bootstrap, topic, expect, timeout, isolation="read_committed")


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("delivery", ["exactly-once", "at-least-once"])
def test_taskmanager_killed_mid_stream_recovers_from_checkpoint(cluster, kafka_broker, unique_topic, tmp_path,
                                                                capsys, delivery):
    """Kill -9 the TaskManager while events stream in; the job restarts from its latest checkpoint
    on a replacement. exactly-once: every input event_id has exactly one committed decision;
    at-least-once: none is missing (duplicates allowed, counted).

        produce: [part 1 .......][part 2, paced ..........................]
        job:       decide ... ckpt ... ckpt ...  X kill -9    restart from last ckpt ... decide rest
    """
    import threading

    bootstrap = kafka_broker.bootstrap
    frame = generate_payments(N_EVENTS, seed=13)
    table = to_arrow(frame, PAYMENT)
    topic, out = unique_topic("eo-in"), unique_topic("eo-decisions")
    half = N_EVENTS // 2
    produce_rows(bootstrap, topic, table.slice(0, half), PAYMENT)
    rc = cli([*job_args(kafka_broker, topic, out, tmp_path / "ckpt"), "--cluster", cluster.address,
              "--delivery", delivery, "--checkpoint-interval-ms", "2000"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    job_id = re.search(r"job id ([0-9a-f]{32})", printed).group(1)
    try:
        first = read_committed(bootstrap, out, 1, timeout=240)
        assert first, "no committed decision before the kill"
        feeder = threading.Thread(target=produce_rows, args=(bootstrap, topic, table.slice(half), PAYMENT),
                                  kwargs={"rate": 100.0})
        feeder.start()
        time.sleep(3)  # mid-stream: part 2 is arriving and being decided
        t0 = time.monotonic()
        killed = cluster.kill_taskmanager()
        cluster.start_taskmanager(timeout=180)
        feeder.join()
        decisions = read_committed(bootstrap, out, N_EVENTS, timeout=300)
        took = time.monotonic() - t0
        if delivery == "at-least-once":  # duplicates may trail in: read a little longer
            decisions = read_committed(bootstrap, out, len(decisions) + 10 ** 6, timeout=10)
        restarts = cluster.rest(f"/jobs/{job_id}/exceptions").get("exceptionHistory", {}).get("entries", [])
    finally:
        cluster.cancel(job_id)
    ids = [d["event_id"] for d in decisions]
    with capsys.disabled():
        print(f"\n[recovery/{delivery}] TaskManager {killed} killed mid-stream; {len(ids)} decisions for "
              f"{N_EVENTS} events ({len(ids) - len(set(ids))} duplicates), all in {took:.0f} s after the kill; "
              f"{len(restarts)} failure(s) in the job's history")
    assert restarts, "the job never noticed the kill"
    assert set(ids) == set(frame["event_id"]), "a decision is missing"
    if delivery == "exactly-once":
        assert len(ids) == N_EVENTS, "a decision was committed twice"


@pytest.mark.integration
@pytest.mark.slow
def test_iot_job_exactly_once_through_a_taskmanager_kill(cluster, kafka_broker, unique_topic, tmp_path, capsys):
    """The iot job on the cluster, exactly-once to Kafka, its TaskManager killed mid-stream: every
    reading has exactly one committed score, and the committed alerts are, in order, the first
    ones of the offline reference (backfill -> model -> features.alerts.run_alerts; the live
    stream's watermark has not passed the last few), none twice."""
    import threading


    bootstrap = kafka_broker.bootstrap
    frame = generate_sensors(N_EVENTS, seed=8, days=0.5, n_machines=2, anomaly_rate=0.05)
    frame = frame.sort_values("event_time", kind="stable").reset_index(drop=True)
    table = to_arrow(frame, SENSOR)
    pq.write_table(table, tmp_path / "readings.parquet")
    assert cli(["backfill", "iot", "--input", str(tmp_path / "readings.parquet"), "--out", str(tmp_path / "f")]) == 0
    assert cli(["train", "iot", "--features", str(tmp_path / "f"), "--model-dir", str(tmp_path / "m"), "--quiet"]) == 0
    policy = AlertPolicy(min_duration_ms=300_000, cooldown_ms=600_000, quiet_ms=1_800_000)
    model = load_iot_model(tmp_path / "m", expected_hash=IOT_FEATURES.definition_hash)
    feats = pd.concat([pq.read_table(f).to_pandas() for f in sorted((tmp_path / "f").rglob("part-*"))
                       if not f.name.startswith(".")], ignore_index=True)
    verdict = model.score_frame(feats[list(IOT_FEATURES.feature_names)])
    expected, _ = run_alerts(feats[["event_id", "machine_id", "sensor_id", "event_time"]].assign(
        score=verdict["score"].to_numpy(), is_anomalous=(verdict["decision"] == "alert").to_numpy(),
        reasons=verdict["reasons"].to_numpy(), model_version=model.model_version), policy)
    expected = expected.sort_values(["event_time", "event_id"])["event_id"].tolist()
    assert expected, "the reference raised no alert: pick another seed"

    topic, scores, alerts = unique_topic("iot-in"), unique_topic("iot-scores"), unique_topic("iot-alerts")
    half = N_EVENTS // 2
    produce_rows(bootstrap, topic, table.slice(0, half), SENSOR)
    rc = cli(["run", "iot", "--topic", topic, "--bootstrap", bootstrap, "--group-id", f"cluster-{scores}",
              "--model", str(tmp_path / "m"), "--scores", f"kafka:{scores}", "--alerts", f"kafka:{alerts}",
              "--tickets", "none", "--features-out", "none", "--dead-letters", "none", "--late", "none",
              "--min-duration-ms", str(policy.min_duration_ms), "--cooldown-ms", str(policy.cooldown_ms),
              "--quiet-ms", str(policy.quiet_ms), "--checkpoint-dir", str(tmp_path / "ckpt"),
              "--cluster", cluster.address, "--delivery", "exactly-once", "--checkpoint-interval-ms", "2000"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    job_id = re.search(r"job id ([0-9a-f]{32})", printed).group(1)
    try:
        assert read_committed(bootstrap, scores, 1, timeout=240), "no committed score before the kill"
        feeder = threading.Thread(target=produce_rows, args=(bootstrap, topic, table.slice(half), SENSOR),
                                  kwargs={"rate": 100.0})
        feeder.start()
        time.sleep(3)
        t0 = time.monotonic()
        killed = cluster.kill_taskmanager()
        cluster.start_taskmanager(timeout=180)
        feeder.join()
        got = read_committed(bootstrap, scores, N_EVENTS, timeout=300)
        took = time.monotonic() - t0
        got_alerts = read_committed(bootstrap, alerts, 10 ** 6, timeout=15)
        restarts = cluster.rest(f"/jobs/{job_id}/exceptions").get("exceptionHistory", {}).get("entries", [])
    finally:
        cluster.cancel(job_id)
    ids = [s["event_id"] for s in got]
    alert_ids = [a["event_id"] for a in sorted(got_alerts, key=lambda a: (a["event_time"], a["event_id"]))]
    with capsys.disabled():
        print(f"\n[recovery/iot] TaskManager {killed} killed mid-stream; {len(ids)} scores for {N_EVENTS} readings "
              f"({len(ids) - len(set(ids))} duplicates) in {took:.0f} s after the kill; {len(alert_ids)} of "
              f"{len(expected)} reference alerts committed; {len(restarts)} failure(s) in the job's history")
    assert restarts, "the job never noticed the kill"
    assert sorted(ids) == sorted(frame["event_id"]), "a score is missing or committed twice"
    assert len(alert_ids) == len(set(alert_ids)), "an alert was committed twice"
    assert alert_ids == expected[:len(alert_ids)] and len(alert_ids) >= len(expected) // 2, (alert_ids, expected)
