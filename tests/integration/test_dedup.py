"""Idempotency end to end (issue 7, item 4): the same payments sent twice, and some once more with
other content, through a real Kafka broker and a Flink MiniCluster, get one decision per event_id;
every other copy is a dead letter (``duplicate`` / ``duplicate_id_conflict``), and
in = decided + dead-lettered + late holds exactly. A backfill of a file with duplicates gives the
same feature rows and dead letters whatever the row order."""
from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.contracts import DUPLICATE, DUPLICATE_ID_CONFLICT, LATE, PAYMENT
from features.fraud import FRAUD_FEATURES
from tests.reference.card_history import compute_features
from features.synthetic import generate_payments, records, to_arrow
from streamscore.cli import main as cli
from streamscore.produce import produce_rows

pytestmark = pytest.mark.integration

N = 1500
HOUR = 3_600_000
FEATURES = list(FRAUD_FEATURES.feature_names)


def read_dir(path: Path, kind: str) -> list:
    files = sorted(p for p in Path(path).rglob("part-*") if not p.name.startswith(".")) if Path(path).exists() else []
    if kind == "parquet":
        return [r for f in files for r in pq.read_table(f).to_pylist()]
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]


def changed_copies(frame: pd.DataFrame, every: int, shift_ms: int = 0) -> list:
    """Copies of every ``every``-th event with other content: amount, event_time (+1 s) or card in
    turn, each also moved by ``shift_ms`` in event time."""
    out = []
    for k, ev in enumerate(records(frame.iloc[::every], PAYMENT)):
        ev = dict(ev)
        change = k % 3
        if change == 0:
            ev["amount"] = round(ev["amount"] + 1.0, 2)
        elif change == 1:
            ev["event_time"] += 1_000
        else:
            ev["card_id"] = "c-other"
        ev["event_time"] += shift_ms
        out.append(ev)
    return out


def feature_frame(rows: list) -> pd.DataFrame:
    return (pd.DataFrame(rows).drop(columns=["ingest_ms"]).sort_values("event_id").reset_index(drop=True))


def assert_same_features(got: pd.DataFrame, want: pd.DataFrame):
    assert list(got["event_id"]) == list(want["event_id"])
    for c in FEATURES:
        x, y = got[c].astype(object), want[c].astype(object)
        assert ((x.isna() & y.isna()) | (x == y)).all(), c


def run_stream(kafka_broker, topic: str, out: Path, *extra) -> dict:
    rc = cli(["run", "fraud", "--topic", topic, "--bootstrap", kafka_broker.bootstrap, "--until", "latest",
              "--decisions", f"json:{out / 'decisions'}", "--features-out", f"parquet:{out / 'features'}",
              "--dead-letters", f"json:{out / 'dead'}", "--late", f"json:{out / 'late'}",
              "--checkpoint-dir", str(out / "ckpt"), *extra])
    assert rc == 0
    return {k: read_dir(out / k, "parquet" if k == "features" else "json")
            for k in ("decisions", "features", "dead", "late")}


def test_same_events_twice_and_changed_get_one_decision_each(kafka_broker, unique_topic, tmp_path):
    frame = generate_payments(N, seed=31)
    changed = changed_copies(frame, every=25)
    topic = unique_topic("dups")
    table = to_arrow(frame, PAYMENT)
    produce_rows(kafka_broker.bootstrap, topic, table, PAYMENT)
    produce_rows(kafka_broker.bootstrap, topic, table, PAYMENT)  # a full replay of the same events
    produce_rows(kafka_broker.bootstrap, topic, changed, PAYMENT)  # the same ids, other content
    n_in = 2 * N + len(changed)

    out = run_stream(kafka_broker, topic, tmp_path)
    decisions, dead, late = out["decisions"], out["dead"], out["late"]

    per_id = Counter(d["event_id"] for d in decisions)
    assert set(per_id) == set(frame["event_id"]) and set(per_id.values()) == {1}
    reasons = Counter(d["reason"] for d in dead)
    assert reasons == {DUPLICATE: N, DUPLICATE_ID_CONFLICT: len(changed)}
    assert late == []
    assert len(decisions) + len(dead) + len(late) == n_in
    # each dead letter is the refused copy itself, and a conflict names the first copy's time
    first_time = dict(zip(frame["event_id"], frame["event_time"].astype(int)))
    conflicts = [d for d in dead if d["reason"] == DUPLICATE_ID_CONFLICT]
    assert sorted(json.loads(d["raw"])["event_id"] for d in conflicts) == sorted(e["event_id"] for e in changed)
    for d in conflicts:
        assert str(first_time[json.loads(d["raw"])["event_id"]]) in d["detail"]
        # the source's name, as late events carry it ("kafka:<topic>")
        assert d["source"].endswith(topic) and d["src_offset"] >= 2 * N
    assert all(d["src_offset"] is not None and N <= d["src_offset"] < 2 * N for d in dead if d["reason"] == DUPLICATE)
    # no copy touched a card's history: the served features are those of the clean stream
    want = pd.DataFrame(list(compute_features(records(frame, PAYMENT))))
    assert_same_features(feature_frame(out["features"]), want.sort_values("event_id").reset_index(drop=True))


def test_state_is_bounded_by_event_time(kafka_broker, unique_topic, tmp_path):
    """With a 1 h horizon, copies of events the watermark has left more than 1 h behind are no longer
    remembered: they are judged as new events and come out late, not decided twice."""
    frame = generate_payments(2000, seed=32)
    topic = unique_topic("horizon")
    table = to_arrow(frame, PAYMENT)
    produce_rows(kafka_broker.bootstrap, topic, table, PAYMENT)
    produce_rows(kafka_broker.bootstrap, topic, table, PAYMENT)

    out = run_stream(kafka_broker, topic, tmp_path, "--dedup-horizon-ms", str(HOUR))
    decisions, dead, late = out["decisions"], out["dead"], out["late"]
    assert Counter(d["event_id"] for d in decisions) == Counter(frame["event_id"])
    assert len(decisions) + len(dead) + len(late) == 2 * len(frame)
    assert {d["reason"] for d in dead} == {DUPLICATE} and {x["reason"] for x in late} == {LATE}
    t_max = int(frame["event_time"].max())
    dup_times = [json.loads(d["raw"])["event_time"] for d in dead]
    late_times = [json.loads(x["raw"])["event_time"] for x in late]
    # every copy the state still held is a recent one; most of the day's copies had been forgotten
    assert min(dup_times) > t_max - 6 * HOUR
    assert len(late) > len(frame) // 2 and all(t < t_max for t in late_times)


@pytest.fixture(scope="module")
def dup_file(tmp_path_factory):
    """One file's worth of payments with identical and changed copies, in two row orders."""
    d = tmp_path_factory.mktemp("dedup-backfill")
    frame = generate_payments(N, seed=33)
    base = records(frame, PAYMENT)
    identical = [dict(e) for e in base[::15]]
    # earlier in time than the original: here the changed copy is the one kept, the original refused
    changed = changed_copies(frame.iloc[7:], every=40, shift_ms=-5_000)
    rows = base + identical + changed
    shuffled = [rows[i] for i in pd.Series(range(len(rows))).sample(frac=1.0, random_state=3)]
    paths = {}
    for name, rs in (("ordered", rows), ("shuffled", shuffled)):
        paths[name] = d / f"{name}.parquet"
        pq.write_table(to_arrow(pd.DataFrame(rs), PAYMENT, with_raw=False), paths[name])
    return dict(dir=d, paths=paths, n_identical=len(identical), changed=changed, base=base)


def backfill(path: Path, out: Path):
    rc = cli(["backfill", "fraud", "--input", str(path), "--out", str(out / "features"),
              "--dead-letters", f"json:{out / 'dead'}"])
    assert rc == 0
    return read_dir(out / "features", "parquet"), read_dir(out / "dead", "json")


def test_backfill_with_duplicates_does_not_depend_on_row_order(dup_file):
    feats_a, dead_a = backfill(dup_file["paths"]["ordered"], dup_file["dir"] / "a")
    feats_b, dead_b = backfill(dup_file["paths"]["shuffled"], dup_file["dir"] / "b")

    a, b = feature_frame(feats_a), feature_frame(feats_b)
    assert len(a) == N
    pd.testing.assert_frame_equal(a, b)

    def comparable(dead):  # everything but the wall-clock ingest time and the file's name
        return sorted(json.dumps({k: v for k, v in x.items() if k not in ("ingest_ms", "source")}, sort_keys=True)
                      for x in dead)
    assert comparable(dead_a) == comparable(dead_b)
    reasons = Counter(x["reason"] for x in dead_a)
    assert reasons == {DUPLICATE: dup_file["n_identical"], DUPLICATE_ID_CONFLICT: len(dup_file["changed"])}

    # the kept copy is the earliest: the changed copies (4-5 s earlier), not the originals
    changed = {e["event_id"]: e for e in dup_file["changed"]}
    winners = [changed.get(e["event_id"], e) for e in dup_file["base"]]
    want = pd.DataFrame(list(compute_features(winners))).sort_values("event_id").reset_index(drop=True)
    assert_same_features(a, want)
    refused_times = {json.loads(x["raw"])["event_id"]: json.loads(x["raw"])["event_time"]
                     for x in dead_a if x["reason"] == DUPLICATE_ID_CONFLICT}
    assert refused_times == {e["event_id"]: e["event_time"] for e in dup_file["base"] if e["event_id"] in changed}
