"""IOT_FEATURES on the declared-feature engine (Java operator, composite key, ewma), on real parts:

    Parquet --BATCH (backfill)--------------------------------------\\
    Kafka --STREAMING, arrival, in-order input-----------------------+--> equal, cell for cell, to
    Kafka --STREAMING, event-time, NAB's own order + jittered sensors/    the pandas execution

Input: all of NAB (48,012 readings, with the real 55-min step back of
machine_temperature_system_failure.csv) followed by generated sensors (two or more sensors per
machine, times cut to whole minutes so readings of one sensor tie). In the disordered run NAB keeps
its file order (the step back is within the 1 h watermark bound, so nothing is late) and the
generated readings are displaced by up to JITTER_MS. ewma is compared exactly too: its weights use
only IEEE operations (features.declare.decay_weight = Aggregator.decay, bit for bit).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.contracts import SENSOR
from features.execute import execute
from features.iot import IOT_FEATURES, iot_features
from features.nab import load_nab
from features.synthetic import generate_sensors, to_arrow
from jobs.flinkenv import FlinkSettings, make_env
from jobs.io import KafkaSource, ParquetSource, SinkSpec, StartPosition, create_sink
from jobs.pipeline import StreamConfig, build_features, source_columns
from udfs.types import feature_columns
from streamscore.produce import produce_rows
from tests.reference.compare import differences

pytestmark = pytest.mark.integration

JITTER_MS = 10 * 60_000  # generated readings (about one a minute per sensor) swap places
MAX_DISORDER_MS = 60 * 60_000  # > NAB's 55-min step back and > the jitter: nothing is late
FAST = iot_features(half_life_ms=7 * 60_000 + 1)  # a half-life that is no round number of minutes


@pytest.fixture(scope="module")
def frames():
    cols = list(SENSOR.field_names)
    nab = load_nab()[cols]
    syn = generate_sensors(12_000, seed=21, days=0.25, n_machines=8)[cols]
    syn["event_time"] = syn["event_time"] // 60_000 * 60_000
    assert syn.duplicated(["machine_id", "sensor_id", "event_time"]).any()  # ties within a sensor
    both = pd.concat([nab.astype(object), syn.astype(object)], ignore_index=True)
    both["event_time"] = both["event_time"].astype("int64")
    both["value"] = both["value"].astype("float64")
    ordered = both.sort_values(["event_time", "event_id"], kind="stable").reset_index(drop=True)
    jitter = np.random.default_rng(5).uniform(0, JITTER_MS, len(syn))
    syn_sorted = syn.sort_values(["event_time", "event_id"]).reset_index(drop=True)
    syn_dis = syn_sorted.iloc[np.argsort(syn_sorted["event_time"].to_numpy() + jitter, kind="stable")]
    disordered = pd.concat([nab.astype(object), syn_dis.astype(object)], ignore_index=True)
    disordered["event_time"] = disordered["event_time"].astype("int64")
    disordered["value"] = disordered["value"].astype("float64")
    assert not disordered["event_time"].is_monotonic_increasing
    return {"ordered": ordered, "disordered": disordered}


def _collect(fs, *, batch, ordering="event-time", path=None, bootstrap=None, topic=None):
    """The feature rows of one job, by event_id. They go through a Parquet sink, not collect():
    collect() crosses py4j per row (minutes for 60,000 rows)."""
    work = Path(tempfile.mkdtemp(prefix="iot-engine-"))
    env, t_env = make_env(FlinkSettings(batch=batch, parallelism=1,
                                        checkpoint_dir=None if batch else str(work / "ckpt"),
                                        checkpoint_interval_ms=1_000))
    if path is not None:
        source = ParquetSource(str(path), source_columns(SENSOR, False, raw=False))
    else:
        source = KafkaSource(bootstrap, topic, StartPosition.parse("earliest"), StartPosition.parse("latest"),
                             f"iot-engine-test-{topic}")
    rows = t_env.to_data_stream(source.table(t_env))
    cfg = StreamConfig(ordering=ordering, max_disorder_ms=MAX_DISORDER_MS, max_future_ms=10 ** 13,
                       max_past_ms=10 ** 13, max_jump_ms=10 ** 13)
    streams = build_features(rows, t_env, fs, cfg, kafka=path is None, source=source.name, batch=batch)
    sink = create_sink(t_env, SinkSpec("parquet", str(work / "out")), feature_columns(fs, False), stem="features")
    streams.features.execute_insert(sink).wait()
    files = sorted(f for f in (work / "out").rglob("part-*") if not f.name.startswith("."))
    frame = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    shutil.rmtree(work, ignore_errors=True)
    frame = frame.astype(object).where(frame.notna(), None)
    return {r["event_id"]: r for r in frame.to_dict("records")}


@pytest.fixture(scope="module")
def reference(frames):
    return {fs.name + str(fs.definition_hash): execute(fs, frames["ordered"]).to_dict("records")
            for fs in (IOT_FEATURES, FAST)}


def _want(reference, fs):
    return reference[fs.name + str(fs.definition_hash)]


@pytest.mark.parametrize("fs", [IOT_FEATURES, FAST], ids=["half-life-30min", "half-life-7min+1ms"])
def test_backfill_equals_the_pandas_execution(frames, reference, fs, tmp_path):
    path = tmp_path / "sensors.parquet"
    pq.write_table(to_arrow(frames["disordered"], SENSOR, with_raw=False), path)
    got = _collect(fs, batch=True, path=path)
    want = _want(reference, fs)
    assert len(got) == len(want) == len(frames["ordered"])
    assert differences(got, want, fs.output_columns) == []


@pytest.mark.parametrize("ordering, kind", [("arrival", "ordered"), ("event-time", "disordered")])
def test_streaming_from_kafka_equals_the_pandas_execution(kafka_broker, frames, reference, ordering, kind):
    topic = f"iot-engine-{kind}-{ordering}-{int(time.time() * 1000)}"
    produce_rows(kafka_broker.bootstrap, topic, to_arrow(frames[kind], SENSOR), SENSOR)
    got = _collect(IOT_FEATURES, batch=False, ordering=ordering, bootstrap=kafka_broker.bootstrap, topic=topic)
    want = _want(reference, IOT_FEATURES)
    assert len(got) == len(want)
    assert differences(got, want, IOT_FEATURES.output_columns) == []
