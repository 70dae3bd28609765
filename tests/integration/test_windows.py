"""Tumbling, sliding and session windows on Flink (udfs/windows.py), BATCH and STREAMING, against
the pandas execution (features/windows.py), cell by cell.

    Parquet (arrival order, <= 30 s disorder) --BATCH: DDL source with rowtime ----------------\\
                                              --STREAMING: ParquetSource + with_event_time ---+--> 3 Parquet
                                                 one job per mode, one INSERT per kind        /    sinks

3,000 generated sensor readings of 3 machines over 6 hours, times cut to 30 s (many same-ms
ties), silences cut out so sessions split, a tenth of the labels null, plus a hand-made machine
``mch-edge`` (2,642 readings in all) whose rows are also written out by hand below (Flink's
boundary rules, checked on Flink itself rather than only against pandas).

Every cell is compared exactly (floats including the sign of a zero) except:

* ``total`` (sum) and ``avg`` (mean): Flink adds in arrival order (and HOP merges per-slice partial
  sums), pandas in (event_time, event_id) order, so doubles may differ in the last bits: relative
  tolerance 1e-12 (values are >= 0, so no cancellation). Measured: about half of these cells
  differ, by at most 7e-16 relative.
* ``sd`` (std_pop): Flink's is computed from sums of squares (udfs/windows.py says why), pandas'
  two-pass. The sum-of-squares variance is off by up to about 3·n·eps·mean(x²), so the std by that
  over the std: tolerance ``1e-12·sd + 4·n·eps·mean(x²)/sd``. All-equal windows must give
  exactly 0.0 on both sides. Measured: at most 1.1e-15 relative for tumbling and session
  windows, up to 1.3e-8 for the per-sensor sliding windows (few, nearly equal readings).
* ``lo``/``hi`` (min/max) compare with ``==``: which of -0.0 and 0.0 is the minimum is
  unspecified (Flink keeps the first in arrival order).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.contracts import SENSOR
from features.synthetic import DEFAULT_START_MS, generate_sensors
from features.windows import Session, Sliding, Tumbling, WindowAgg, WindowedFeatures, execute_windows
from jobs.flinkenv import FlinkSettings, make_env
from jobs.io import ParquetSource
from udfs.windows import create_sink, create_source, source_columns, use_utc, window_table, with_event_time

pytestmark = pytest.mark.integration

T0 = DEFAULT_START_MS
MIN = 60_000
DISORDER_MS = 30_000
EDGE = "mch-edge"
B = T0 + 120 * MIN  # the edge machine's events start here (a multiple of 5 min)

AGGS = (WindowAgg("n", "count"), WindowAgg("total", "sum", "value"), WindowAgg("avg", "mean", "value"),
        WindowAgg("sd", "std_pop", "value"), WindowAgg("lo", "min", "value"), WindowAgg("hi", "max", "value"),
        WindowAgg("sensors", "distinct_count", "sensor_id"), WindowAgg("values", "distinct_count", "value"),
        WindowAgg("first_v", "first", "value"), WindowAgg("last_v", "last", "value"),
        WindowAgg("last_sensor", "last", "sensor_id"), WindowAgg("first_anomaly", "first", "is_anomaly"),
        WindowAgg("last_anomaly", "last", "is_anomaly"), WindowAgg("latest", "max", "event_time"))
DECLS = {
    "tumbling": WindowedFeatures("iot_tumbling_5m", 1, SENSOR, "machine_id", Tumbling(5 * MIN), AGGS),
    "sliding": WindowedFeatures("iot_sliding_10m", 1, SENSOR, ("machine_id", "sensor_id"),
                                Sliding(10 * MIN, 150_000), AGGS),
    "session": WindowedFeatures("iot_session_1m", 1, SENSOR, "machine_id", Session(MIN), AGGS),
}
TOLERANT = ("total", "avg")

# The edge machine (offsets from B in ms). Tumbling 5 min: e01 on a boundary, e02 at end - 1, e03/e04
# tie exactly on the next boundary. Session gap 1 min: e02 -> e03 1 ms, e04 -> e05 gap - 1,
# e05 -> e06 exactly gap (merges: Flink's rule), e06 -> e07 gap + 1 (splits).
EDGE_EVENTS = [  # id, offset, value, sensor, is_anomaly
    ("e01", 0, 1.0, "temp-1", None), ("e02", 299_999, -0.0, "temp-1", True),
    ("e03", 300_000, 0.0, "temp-1", False), ("e04", 300_000, 2.5, "vib-1", None),
    ("e05", 359_999, -0.0, "temp-1", False), ("e06", 419_999, 2.5, "temp-1", True),
    ("e07", 480_000, 7.0, "temp-1", False)]
#  kind: (start, end, n, sensors, values, first_v, last_v, first_anomaly, last_anomaly), written out by hand
EDGE_ROWS = {
    "tumbling": [(B, B + 300_000, 2, 1, 2, 1.0, -0.0, True, True),
                 (B + 300_000, B + 600_000, 5, 2, 3, 0.0, 7.0, False, False)],
    "session": [(B, B + 60_000, 1, 1, 1, 1.0, 1.0, None, None),
                (B + 299_999, B + 479_999, 5, 2, 2, -0.0, 2.5, True, True),
                (B + 480_000, B + 540_000, 1, 1, 1, 7.0, 7.0, False, False)],
}


def _events() -> pd.DataFrame:
    df = generate_sensors(3000, seed=11, days=0.25, n_machines=3)
    rows = [dict(r) for r in df.drop(columns=["_raw"]).astype(object).where(df.notna(), None).to_dict("records")]
    rng = np.random.default_rng(5)
    holes = {m: [(s, s + int(rng.integers(2, 7)) * MIN) for s in rng.integers(T0, T0 + 360 * MIN, 12)]
             for m in {r["machine_id"] for r in rows}}
    kept = []
    for i, r in enumerate(rows):
        r["event_time"] = int(r["event_time"]) // 30_000 * 30_000
        if any(a <= r["event_time"] < b for a, b in holes[r["machine_id"]]):
            continue  # a silence: sessions split here
        r["value"] = float(r["value"])
        r["is_anomaly"] = None if i % 10 == 3 else bool(r["is_anomaly"])
        kept.append(r)
    for eid, off, value, sensor, anomaly in EDGE_EVENTS:
        kept.append(dict(event_id=f"s-edge-{eid}", event_time=B + off, machine_id=EDGE, sensor_id=sensor,
                         value=value, unit="degC", is_anomaly=anomaly))
    ordered = pd.DataFrame(kept).sort_values(["event_time", "event_id"], kind="stable").reset_index(drop=True)
    # arrival order: each event up to DISORDER_MS behind the largest event time sent before it
    jitter = np.random.default_rng(9).uniform(0, DISORDER_MS, len(ordered))
    arrival = ordered.iloc[np.argsort(ordered["event_time"].to_numpy() + jitter, kind="stable")]
    return arrival.reset_index(drop=True)


@pytest.fixture(scope="module")
def events():
    df = _events()
    ahead = df["event_time"].cummax().shift(fill_value=0) - df["event_time"]
    assert 0 < ahead.max() <= DISORDER_MS  # disordered, within the watermark's promise
    assert df.duplicated(["machine_id", "event_time"]).sum() > 100  # many same-ms ties per key
    return df


@pytest.fixture(scope="module")
def parquet_file(events, tmp_path_factory):
    path = tmp_path_factory.mktemp("windows") / "sensors.parquet"
    schema = SENSOR.arrow_schema(with_labels=True)
    pq.write_table(pa.Table.from_pylist(events[schema.names].to_dict("records"), schema=schema), path)
    return path


@pytest.fixture(scope="module")
def expected(events):
    return {kind: execute_windows(d, events) for kind, d in DECLS.items()}




@pytest.fixture(scope="module", params=["batch", "streaming"])
def flink(request, parquet_file, tmp_path_factory):
    """One Flink job per mode: the three kinds as three INSERTs of one statement set."""
    mode = request.param
    batch = mode == "batch"
    env, t_env = make_env(FlinkSettings(batch=batch, parallelism=1))
    columns = source_columns(DECLS["tumbling"])
    assert all(source_columns(d) == columns for d in DECLS.values())
    if batch:  # a DDL source with the rowtime computed column and watermark
        source = create_source(t_env, DECLS["tumbling"], {"connector": "filesystem", "path": parquet_file.as_uri(),
                                                          "format": "parquet"}, DISORDER_MS)
    else:  # a plain Parquet table, the rowtime added through a DataStream Schema
        plain = ParquetSource(str(parquet_file), columns).table(t_env)
        source = with_event_time(t_env, plain, DECLS["tumbling"], DISORDER_MS)
    out = tmp_path_factory.mktemp(f"out_{mode}")
    statements = t_env.create_statement_set()
    for kind, decl in DECLS.items():
        sink = create_sink(t_env, decl, {"connector": "filesystem", "path": (out / kind).as_uri(), "format": "parquet"})
        statements.add_insert(sink, window_table(t_env, source, decl, batch=batch))
    statements.execute().wait()
    frames = {}
    for kind, decl in DECLS.items():
        files = sorted(p for p in (out / kind).rglob("part-*") if not p.name.startswith("."))
        table = pa.concat_tables([pq.read_table(f) for f in files])
        frames[kind] = (table.to_pandas().sort_values(list(decl.key) + ["window_start"])
                        .reset_index(drop=True))
    return mode, frames


def _same_exactly(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return a == b


def _differences(decl, got: pd.DataFrame, want: pd.DataFrame) -> list:
    out = []
    keys = list(decl.key) + ["window_start"]
    g, w = got.astype(object).where(got.notna(), None), want.astype(object).where(want.notna(), None)
    if g[keys].values.tolist() != w[keys].values.tolist():
        return [("windows differ", len(got), len(want))]
    eps = np.finfo(float).eps
    for i, (gr, wr) in enumerate(zip(g.to_dict("records"), w.to_dict("records"))):
        for c in decl.output_columns:
            a, b = gr[c], wr[c]
            if c in TOLERANT:
                ok = a is not None and b is not None and abs(a - b) <= 1e-12 * abs(b)
            elif c == "sd":
                mean_sq = wr["avg"] ** 2 + b ** 2
                ok = (a == b == 0.0) or (b > 0 and abs(a - b) <= 1e-12 * b + 4 * wr["n"] * eps * mean_sq / b)
            elif c in ("lo", "hi"):
                ok = a == b
            else:
                ok = _same_exactly(a, b)
            if not ok:
                out.append((i, tuple(wr[k] for k in keys), c, a, b))
    return out


@pytest.mark.parametrize("kind", list(DECLS))
def test_flink_windows_equal_the_pandas_execution(flink, expected, kind):
    mode, frames = flink
    got, want = frames[kind], expected[kind]
    assert len(want) > 50 and len(got) == len(want)
    assert list(got.columns) == list(DECLS[kind].output_columns)
    assert _differences(DECLS[kind], got, want)[:10] == []


@pytest.mark.parametrize("kind", list(EDGE_ROWS))
def test_boundary_rules_on_flink_are_the_hand_written_ones(flink, expected, kind):
    """Tumbling: [start, end), an event at end - 1 in, one at end out. Session: events exactly gap
    ms apart merge, gap + 1 ms apart split; end = last event + gap. Checked on Flink's own output
    (and on pandas)."""
    mode, frames = flink
    cols = ["window_start", "window_end", "n", "sensors", "values", "first_v", "last_v", "first_anomaly", "last_anomaly"]
    for frame in (frames[kind], expected[kind]):
        edge = frame[frame["machine_id"] == EDGE]
        rows = [tuple(None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v
                      for v in r) for r in edge[cols].astype(object).itertuples(index=False)]
        assert rows == EDGE_ROWS[kind]
        assert [math.copysign(1.0, r[5]) for r in rows] == [math.copysign(1.0, r[5]) for r in EDGE_ROWS[kind]]


def test_windows_need_the_utc_session_zone():
    """In another zone Flink aligns windows to local wall-clock time (measured: 1-hour windows in
    Asia/Kolkata start at hh:30 UTC), so a zone set explicitly to anything else is refused."""
    _, t_env = make_env(FlinkSettings(batch=True, parallelism=1))
    use_utc(t_env)
    assert t_env.get_config().get_local_timezone() == "UTC"
    t_env.get_config().set_local_timezone("Asia/Kolkata")
    with pytest.raises(ValueError, match="'Asia/Kolkata': epoch-aligned windows need UTC"):
        use_utc(t_env)
