"""The declared-feature engine (Java aggregation operator + derived features in a pandas UDF) on
real parts, for a feature set the job does not ship: FRAUD_FEATURES plus one declared line,
``Aggregation("amount_max_24h", "max", "amount", "24h")``.

    Parquet --BATCH (backfill)------------------------------\\
    Kafka --STREAMING, arrival, in-order input---------------+--> equal, cell for cell, to the
    Kafka --STREAMING, event-time, disordered (<= bound)-----/    pandas execution of the declaration

Event times are cut to whole minutes, so many events of a card tie in time and are ordered by
event_id.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from features.contracts import PAYMENT
from features.declare import Aggregation
from features.execute import execute
from features.fraud import FRAUD_FEATURES
from tests.reference.card_history import compute_features
from features.synthetic import generate_payments, to_arrow
from jobs.flinkenv import FlinkSettings, make_env
from jobs.io import KafkaSource, ParquetSource, StartPosition
from jobs.pipeline import StreamConfig, build_features, source_columns
from streamscore.produce import produce_rows
from tests.reference.compare import differences

pytestmark = pytest.mark.integration

PLUS = dataclasses.replace(FRAUD_FEATURES, name="fraud_plus",
                           items=FRAUD_FEATURES.items + (Aggregation("amount_max_24h", "max", "amount", "24h"),))
DISORDER_MS = 90_000  # 1.5 min: events a minute apart swap places


@pytest.fixture(scope="module")
def frames():
    df = generate_payments(3000, seed=31, days=2, n_cards=30)
    df["event_time"] = df["event_time"] // 60_000 * 60_000
    ordered = df.sort_values(["event_time", "event_id"], kind="stable").reset_index(drop=True)
    # arrival order: each event displaced by less than DISORDER_MS of event time
    jitter = np.random.default_rng(3).uniform(0, DISORDER_MS, len(ordered))
    disordered = ordered.iloc[np.argsort(ordered["event_time"].to_numpy() + jitter, kind="stable")]
    assert not disordered["event_time"].is_monotonic_increasing
    assert ordered.duplicated(["card_id", "event_time"]).sum() > 0  # ties within a card
    return {"disordered": disordered.reset_index(drop=True), "ordered": ordered}


def _collect(fs, *, batch, ordering="event-time", path=None, bootstrap=None, topic=None):
    env, t_env = make_env(FlinkSettings(batch=batch, parallelism=1))
    if path is not None:
        source = ParquetSource(str(path), source_columns(PAYMENT, False, raw=False))
    else:
        source = KafkaSource(bootstrap, topic, StartPosition.parse("earliest"), StartPosition.parse("latest"),
                             f"engine-test-{topic}")
    rows = t_env.to_data_stream(source.table(t_env))
    cfg = StreamConfig(ordering=ordering, max_disorder_ms=2 * DISORDER_MS, max_future_ms=10 ** 13,
                       max_past_ms=10 ** 13)
    streams = build_features(rows, t_env, fs, cfg, kafka=path is None, source=source.name, batch=batch)
    names = list(fs.output_columns) + ["ingest_ms"]
    with streams.features.execute().collect() as results:
        return {r[0]: dict(zip(names, r)) for r in results}


@pytest.fixture(scope="module")
def reference(frames):
    return execute(PLUS, frames["ordered"]).to_dict("records")


def test_pandas_execution_of_the_plus_set_keeps_the_fraud_values(frames, reference):
    want = list(compute_features(to_arrow(frames["ordered"], PAYMENT).to_pylist()))
    got = {r["event_id"]: r for r in reference}
    assert differences(got, want, FRAUD_FEATURES.output_columns) == []


def test_backfill_of_an_extra_declared_feature_equals_the_pandas_reference(frames, reference, tmp_path):
    path = tmp_path / "payments.parquet"
    pq.write_table(to_arrow(frames["disordered"], PAYMENT), path)
    got = _collect(PLUS, batch=True, path=path)
    assert len(got) == len(reference)
    assert differences(got, reference, PLUS.output_columns) == []


@pytest.mark.parametrize("ordering, kind", [("arrival", "ordered"), ("event-time", "ordered"),
                                            ("event-time", "disordered")])
def test_streaming_from_kafka_equals_the_pandas_reference(kafka_broker, frames, reference, ordering, kind):
    topic = f"engine-{kind}-{ordering}-{int(time.time() * 1000)}"
    produce_rows(kafka_broker.bootstrap, topic, to_arrow(frames[kind], PAYMENT), PAYMENT)
    got = _collect(PLUS, batch=False, ordering=ordering, bootstrap=kafka_broker.bootstrap, topic=topic)
    assert len(got) == len(reference)
    assert differences(got, reference, PLUS.output_columns) == []
