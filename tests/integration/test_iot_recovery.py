"""The iot job's guarantees, as fraud's: a savepoint taken with an incident open restores to the
same scores, alerts and tickets as an uninterrupted run, and a bounded replay reads exactly the
requested offsets.

    uninterrupted:  [r1 .................................................. rN]  -> scores, alerts, tickets A
    interrupted:    [r1 ...... rk] savepoint | restore, --until latest [rk+1 ... rN]  -> B
                             ^ rk is the first anomalous reading of an incident that goes on after
                               it, so the incident's state (open, alert count, cool-down) and the
                               readings still waiting for the watermark cross the savepoint
    A == B: every reading scored once with the same cells, the same alerts in the same order,
    the same ticket events
"""
from __future__ import annotations

import json
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.contracts import SENSOR
from features.synthetic import generate_sensors, to_arrow
from jobs.run import prepare
from streamscore.cli import build_parser, main as cli
from streamscore.produce import produce_rows
from tests.integration.test_fraud_recovery import decisions as read_topic, stop_with_savepoint

pytestmark = pytest.mark.integration

N = 3000
# Short enough that the synthetic sensors' minute readings open, ticket and close incidents.
POLICY_FLAGS = ["--min-duration-ms", "300000", "--cooldown-ms", "600000", "--quiet-ms", "1800000"]
SCORE_CELLS = ("score", "decision", "reasons", "model_version", "value_mean_1h", "value_zscore_1h",
               "value_mean_24h", "value_ewma", "delta_prev", "gap_s")


@pytest.fixture(scope="module")
def readings():
    # 2 machines x 3-5 sensors, one reading a minute for half a day, planted spikes/drifts/stuck runs;
    # in event-time order (one partition: offsets are row numbers)
    frame = generate_sensors(N, seed=8, days=0.5, n_machines=2, anomaly_rate=0.05)
    return frame.sort_values("event_time", kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def model(readings, tmp_path_factory):
    """A model trained on the readings' backfill (1 s): its alerts come in incidents of several
    readings, which the rules-only fallback (single-reading spikes here) would not give."""
    d = tmp_path_factory.mktemp("iot-model")
    pq.write_table(to_arrow(readings, SENSOR), d / "readings.parquet")
    assert cli(["backfill", "iot", "--input", str(d / "readings.parquet"), "--out", str(d / "features")]) == 0
    assert cli(["train", "iot", "--features", str(d / "features"), "--model-dir", str(d / "models"), "--quiet"]) == 0
    return str(d / "models")


def job_args(bootstrap, topic, out, tmp_path, model, *extra):
    return ["run", "iot", "--topic", topic, "--bootstrap", bootstrap, "--group-id", out, "--model", model,
            "--scores", f"kafka:{out}-scores", "--alerts", f"kafka:{out}-alerts", "--tickets", f"kafka:{out}-tickets",
            "--features-out", "none", "--dead-letters", "none", "--late", "none", *POLICY_FLAGS,
            "--checkpoint-dir", str(tmp_path / "ckpt"), *extra]


def outputs(bootstrap, out, n_scores, alerts=0, tickets=0) -> dict:
    return {"scores": read_topic(bootstrap, f"{out}-scores", n_scores, timeout_s=180),
            "alerts": read_topic(bootstrap, f"{out}-alerts", alerts, timeout_s=60),
            "tickets": read_topic(bootstrap, f"{out}-tickets", tickets, timeout_s=60)}


def test_savepoint_with_an_open_incident_restores_to_the_same_outputs(kafka_broker, readings, model, tmp_path,
                                                                      capsys):
    bootstrap = kafka_broker.bootstrap
    table = to_arrow(readings, SENSOR)
    topic = f"iot-recovery-{int(time.time())}"
    produce_rows(bootstrap, topic, table, SENSOR)

    # A: one uninterrupted, bounded run
    assert cli(job_args(bootstrap, topic, f"{topic}-a", tmp_path / "a", model, "--until", "latest")) == 0
    a = outputs(bootstrap, f"{topic}-a", N, alerts=1, tickets=1)
    assert len(a["scores"]) == N
    printed = capsys.readouterr().out
    n_open = sum(t["status"] == "open" for t in a["tickets"])
    assert f"counts: in {N} = decided {N} + dead letters 0 + late 0 (holds)" in printed, printed[-2000:]
    assert (f"alerts: {len(a['alerts'])} in {len({x['incident_id'] for x in a['alerts']})} incident(s); tickets "
            f"opened {n_open}, closed {len(a['tickets']) - n_open}") in printed, printed[-2000:]
    assert a["alerts"] and a["tickets"], "the stream raised no alert or ticket: it cannot test incident state"
    opened = [t for t in a["tickets"] if t["status"] == "open"]
    assert opened and len(opened) < len(a["tickets"]), "want a ticket opened and closed"
    per_incident = pd.Series([al["incident_id"] for al in a["alerts"]]).value_counts()
    assert (per_incident > 1).any(), "no incident alerted twice: the cut would carry no cool-down state"

    # the cut: right after the first alert of an incident that alerts again and opens a ticket later
    row_of = {e: i for i, e in enumerate(readings["event_id"])}
    first_alert = {}
    for al in a["alerts"]:
        first_alert.setdefault(al["incident_id"], al["event_id"])
    ticketed = {t["incident_id"] for t in opened}
    incident = next(i for i in first_alert if i in ticketed and per_incident[i] > 1)
    cut = row_of[first_alert[incident]] + 1
    assert 100 < cut < N - 100, f"cut {cut} leaves too little on one side; pick another seed"

    # B: a live topic; the job sees rows [0, cut), is stopped with a savepoint, the rest arrives while
    # it is down, and the restored job reads on from the savepoint's offsets and state to the end
    live, out_b = f"{topic}-live", f"{topic}-b"
    produce_rows(bootstrap, live, table.slice(0, cut), SENSOR)
    env, _, _ = prepare(build_parser().parse_args(job_args(bootstrap, live, out_b, tmp_path / "b", model)))
    client = env.execute_async("iot-recovery-first-part")
    before = read_topic(bootstrap, f"{out_b}-scores", cut, timeout_s=180)
    assert len(before) == cut, "the first part was not scored"
    savepoint = stop_with_savepoint(client, (tmp_path / "savepoints").as_uri())
    produce_rows(bootstrap, live, table.slice(cut), SENSOR)
    assert cli(job_args(bootstrap, live, out_b, tmp_path / "b2", model, "-s", savepoint, "--until", "latest")) == 0
    b = outputs(bootstrap, out_b, N, alerts=len(a["alerts"]), tickets=len(a["tickets"]))
    print(f"\n[iot recovery] cut after row {cut} (incident {incident}); {len(before)} scores before the "
          f"savepoint; A: {len(a['alerts'])} alerts, {len(a['tickets'])} ticket events; B: {len(b['alerts'])}, "
          f"{len(b['tickets'])}")

    ids = [s["event_id"] for s in b["scores"]]
    assert len(ids) == len(set(ids)) == N, "a score is missing or duplicated"
    by_id = {s["event_id"]: s for s in a["scores"]}
    for s in b["scores"]:
        x = by_id[s["event_id"]]
        for k in SCORE_CELLS:
            assert s[k] == x[k], (s["event_id"], k, s[k], x[k])

    def frame(rows, sort):
        return pd.DataFrame(rows).sort_values(sort).reset_index(drop=True)

    alert_cols = ["event_id", "incident_id", "alert_seq", "event_time", "score", "reasons"]
    pd.testing.assert_frame_equal(frame(b["alerts"], ["event_time", "event_id"])[alert_cols],
                                  frame(a["alerts"], ["event_time", "event_id"])[alert_cols])
    ticket_cols = ["ticket_id", "status", "event_time", "started_at", "ended_at", "anomalous_readings", "alerts",
                   "close_reason"]
    pd.testing.assert_frame_equal(frame(b["tickets"], ["ticket_id", "status"])[ticket_cols],
                                  frame(a["tickets"], ["ticket_id", "status"])[ticket_cols])


def test_bounded_replay_scores_exactly_the_requested_offsets(kafka_broker, readings, tmp_path):
    topic = f"iot-replay-{int(time.time())}"
    produce_rows(kafka_broker.bootstrap, topic, to_arrow(readings, SENSOR), SENSOR)
    out = tmp_path / "scores"
    assert cli(["run", "iot", "--topic", topic, "--bootstrap", kafka_broker.bootstrap,
                "--start", "offsets:0:500", "--until", "offsets:0:1700", "--scores", f"json:{out}",
                "--alerts", "none", "--tickets", "none", "--features-out", "none", "--dead-letters", "none",
                "--late", "none", "--checkpoint-dir", str(tmp_path / "ckpt")]) == 0
    ids = [json.loads(line)["event_id"] for f in sorted(out.rglob("part-*")) if not f.name.startswith(".")
           for line in f.read_text().splitlines() if line.strip()]
    assert sorted(ids) == sorted(readings["event_id"].iloc[500:1700])
