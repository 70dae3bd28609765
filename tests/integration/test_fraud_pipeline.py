"""The fraud job end to end on real parts: generated payments -> real Kafka broker -> Flink
MiniCluster (streaming) and the same events from Parquet -> Flink BATCH backfill.

Parity is exact: the feature rows of a streaming run equal the backfill's, value for value.
    in-order input     arrival ordering    == backfill
    in-order input     event-time ordering == backfill
    disordered input   event-time ordering == backfill   (disorder <= the watermark bound)
    disordered input   arrival ordering    -> some rows differ; the count is reported
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.contracts import PAYMENT, REASONS, InvalidEvent
from features.fraud import FRAUD_FEATURES
from features.synthetic import generate_payments, records, to_arrow
from streamscore.cli import main as cli
from streamscore.produce import produce_rows

pytestmark = pytest.mark.integration

N_EVENTS = 4000
DISORDER_MS = 3_000
FEATURES = list(FRAUD_FEATURES.feature_names)


def read_parquet_dir(path: Path) -> pd.DataFrame:
    files = sorted(p for p in Path(path).rglob("part-*") if not p.name.startswith("."))
    assert files, f"no committed part files under {path}"
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def read_json_dir(path: Path) -> list:
    out = []
    for f in sorted(Path(path).rglob("part-*")):
        if not f.name.startswith("."):
            out += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return out


def diff_rows(a: pd.DataFrame, b: pd.DataFrame) -> pd.Series:
    """Per event_id: does any feature differ (exact comparison, nulls equal to nulls)?"""
    a = a.set_index("event_id").sort_index()
    b = b.set_index("event_id").sort_index()
    assert list(a.index) == list(b.index), "different events"
    differs = pd.Series(False, index=a.index)
    for c in FEATURES:
        x, y = a[c].astype(object), b[c].astype(object)
        same = (x.isna() & y.isna()) | (x == y)
        differs |= ~same
    return differs


@pytest.fixture(scope="module")
def payments(tmp_path_factory):
    """One day of payments with bounded disorder, and the same events sorted by event time."""
    d = tmp_path_factory.mktemp("payments")
    disordered = generate_payments(N_EVENTS, seed=11, out_of_order=0.08, max_disorder_ms=DISORDER_MS)
    ordered = disordered.sort_values(["event_time", "event_id"], kind="stable").reset_index(drop=True)
    paths = {"disordered": d / "disordered.parquet", "ordered": d / "ordered.parquet"}
    pq.write_table(to_arrow(disordered, PAYMENT), paths["disordered"])
    pq.write_table(to_arrow(ordered, PAYMENT), paths["ordered"])
    assert not disordered["event_time"].is_monotonic_increasing, "the generator planted no disorder"
    return {"frames": {"disordered": disordered, "ordered": ordered}, "paths": paths, "dir": d}


@pytest.fixture(scope="module")
def backfill(payments):
    out = payments["dir"] / "backfill"
    rc = cli(["backfill", "fraud", "--input", str(payments["paths"]["disordered"]), "--out", str(out)])
    assert rc == 0
    return read_parquet_dir(out)


@pytest.fixture(scope="module")
def topics(kafka_broker, payments):
    """Both orderings pre-loaded into their own topics (Kafka record timestamp = event_time)."""
    names = {}
    for kind, frame in payments["frames"].items():
        topic = f"fraud-parity-{kind}-{int(time.time())}"
        produce_rows(kafka_broker.bootstrap, topic, to_arrow(frame, PAYMENT), PAYMENT)
        names[kind] = topic
    return names


def stream(kafka_broker, topic: str, out: Path, ordering: str, *extra) -> pd.DataFrame:
    """A bounded streaming run over the whole topic; returns the served feature rows."""
    rc = cli(["run", "fraud", "--topic", topic, "--bootstrap", kafka_broker.bootstrap, "--until", "latest",
              "--ordering", ordering, "--max-disorder-ms", str(2 * DISORDER_MS),
              "--decisions", f"kafka:{topic}-decisions", "--features-out", f"parquet:{out / 'features'}",
              "--dead-letters", f"json:{out / 'dead'}", "--late", f"json:{out / 'late'}",
              "--checkpoint-dir", str(out / "ckpt"), *extra])
    assert rc == 0
    return read_parquet_dir(out / "features")


def test_backfill_matches_plain_python_logic(backfill, payments):
    """The BATCH job's rows equal features.fraud run without Flink (same code, same order)."""
    from tests.reference.card_history import compute_features

    expected = pd.DataFrame(list(compute_features(records(payments["frames"]["disordered"], PAYMENT))))
    assert len(backfill) == N_EVENTS
    assert not diff_rows(backfill, expected).any()
    # labels ride along for training
    labels = payments["frames"]["disordered"].set_index("event_id")["is_fraud"]
    assert (backfill.set_index("event_id")["is_fraud"] == labels.loc[backfill["event_id"]].values).all()


def test_backfill_agrees_with_independent_reference(backfill, payments):
    from tests.reference.fraud_reference import reference_features

    ref = reference_features(payments["frames"]["disordered"]).set_index("event_id").sort_index()
    got = backfill.set_index("event_id").sort_index()
    for c in FEATURES:
        x, y = got[c], ref[c]
        if c in ("amount_mean_30d", "amount_std_30d", "amount_zscore_30d", "km_from_prev", "kmh_from_prev",
                 "amount_sum_1h", "amount_sum_24h", "secs_since_prev"):
            x, y = x.astype(float), y.astype(float)
            assert ((x.isna() & y.isna()) | ((x - y).abs() <= 1e-9 * y.abs().clip(lower=1.0))).all(), c
        else:
            x, y = x.astype(object), y.astype(object)
            assert ((x.isna() & y.isna()) | (x == y)).all(), c


@pytest.mark.parametrize("ordering", ["arrival", "event-time"])
def test_in_order_stream_equals_backfill(kafka_broker, topics, backfill, ordering, tmp_path):
    served = stream(kafka_broker, topics["ordered"], tmp_path, ordering)
    assert len(served) == N_EVENTS
    assert diff_rows(served, backfill).sum() == 0


def test_disordered_stream_event_time_equals_backfill(kafka_broker, topics, backfill, tmp_path):
    served = stream(kafka_broker, topics["disordered"], tmp_path, "event-time")
    assert len(served) == N_EVENTS
    assert diff_rows(served, backfill).sum() == 0


def test_disordered_stream_arrival_differs_and_is_counted(kafka_broker, topics, backfill, tmp_path, capsys):
    served = stream(kafka_broker, topics["disordered"], tmp_path, "arrival")
    assert len(served) == N_EVENTS  # nothing lost, nothing late (disorder is within the bound)
    differing = int(diff_rows(served, backfill).sum())
    with capsys.disabled():
        print(f"\n[parity] arrival ordering over disordered input: {differing} of {N_EVENTS} feature rows "
              f"differ from the backfill")
    assert differing > 0  # the disorder is real; event-time ordering is what removes it


def test_bad_input_is_dead_lettered_and_counts_add_up(kafka_broker, tmp_path):
    """Every kind of malformed record reaches the dead-letter output with its reason and offset;
    events far behind the watermark reach the late output; in = processed + dead + late."""
    frame = generate_payments(3000, seed=5, malformed=0.03, late=0.02, late_by_ms=6 * 3_600_000)
    table = to_arrow(frame, PAYMENT)
    topic = f"fraud-bad-{int(time.time())}"
    produce_rows(kafka_broker.bootstrap, topic, table, PAYMENT)
    # and a record dated days ahead of everything else: a time skew, never allowed near the watermark
    skewed = records(frame[frame["_raw"].isna()].tail(1), PAYMENT)[0]
    skewed.update(event_id="skewed-1", event_time=int(time.time() * 1000) + 5 * 86_400_000)
    produce_rows(kafka_broker.bootstrap, topic, [skewed], PAYMENT)
    n_in = len(frame) + 1

    served = stream(kafka_broker, topic, tmp_path, "arrival")
    dead = read_json_dir(tmp_path / "dead")
    late = read_json_dir(tmp_path / "late") if (tmp_path / "late").exists() else []

    assert len(served) + len(dead) + len(late) == n_in
    # each dead letter carries what arrived, why, and where it came from
    raws = set(frame["_raw"].dropna())
    for d in dead:
        assert d["reason"] in REASONS and d["src_offset"] is not None and d["source"] == topic
        if d["raw"] in raws:
            with pytest.raises(InvalidEvent) as err:
                PAYMENT.parse(d["raw"])
            assert err.value.reason == d["reason"]
    assert {d["raw"] for d in dead} >= raws  # every malformed record is there
    assert {"malformed_json", "not_an_object", "missing_field", "wrong_type", "non_finite", "out_of_range",
            "bad_timestamp", "time_skew"} <= {d["reason"] for d in dead}
    assert any(d["reason"] == "time_skew" and "skewed-1" in d["raw"] for d in dead)
    # planted late events (6 h behind everything before them in arrival order) must come out late;
    # the watermark is periodic, so a few just at the edge may still count as on time
    t = frame.loc[frame["_raw"].isna(), "event_time"]
    planted_late = int((t < t.cummax().shift(1) - 3 * 3_600_000).sum())
    assert all(x["reason"] == "late" for x in late)
    assert planted_late > 0 and 0.8 * planted_late <= len(late) <= planted_late
    late_ids = {json.loads(x["raw"])["event_id"] for x in late}
    assert late_ids.isdisjoint(set(served["event_id"]))
