"""Spike (issue 8): the declared-feature Java operator (jvm/engine) against the references, same script.

  .venv/bin/python bench/spikes/engine-v2-scripts/java_operator.py [N]      (default 200000)

1. exactness: BATCH over a Parquet file of N payments -> Java operator (event-time order) -> collected,
   compared cell by cell with features.fraud.compute_features (CardHistory);
2. BATCH timing: Parquet -> Java operator -> discard, vs tests.reference.fraud_reference (pandas/numpy);
3. STREAMING: a pre-loaded 1-partition Kafka topic -> (a) the bench's Java-only SQL reference, (b) JSON
   table source -> Java operator -> discard, (c) (b) + the derived features in a pandas UDF -> blackhole.
Figures are printed and written to bench/results/engine-v2-java-operator.json.
"""
import json
import math
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from features.contracts import PAYMENT  # noqa: E402
from features.fraud import FRAUD_FEATURES  # noqa: E402
from tests.reference.card_history import compute_features
from features.synthetic import generate_payments, to_arrow  # noqa: E402
from bench.sql import PAYMENT_SQL, _ddl_cols, loader_sql, velocity_sql  # noqa: E402
from jobs.flinkenv import FlinkSettings, make_env  # noqa: E402
from streamscore.kafka_broker import KafkaBroker  # noqa: E402
from tests.conftest import free_port_pair  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
H, D = 3_600_000, 86_400_000
SPEC = {
    "name": "fraud_card_features", "key": "card_id", "order_by": ["event_time", "event_id"],
    "retention_ms": 30 * D,
    "columns": [{"name": "event_time", "type": "long"}, {"name": "amount", "type": "double"},
                {"name": "merchant_id", "type": "string"}, {"name": "device_id", "type": "string"},
                {"name": "lat", "type": "double"}, {"name": "lon", "type": "double"}],
    "aggregations": [
        {"name": "txn_count_1h", "op": "count", "window_ms": H},
        {"name": "txn_count_24h", "op": "count", "window_ms": D},
        {"name": "txn_count_7d", "op": "count", "window_ms": 7 * D},
        {"name": "amount_sum_1h", "op": "sum", "input": "amount", "window_ms": H},
        {"name": "amount_sum_24h", "op": "sum", "input": "amount", "window_ms": D},
        {"name": "amount_mean_30d", "op": "mean", "input": "amount", "window_ms": 30 * D, "prior": True, "min_count": 1},
        {"name": "amount_std_30d", "op": "std_pop", "input": "amount", "window_ms": 30 * D, "prior": True, "min_count": 2},
        {"name": "prev_time", "op": "last", "input": "event_time"},
        {"name": "prev_lat", "op": "last", "input": "lat"},
        {"name": "prev_lon", "op": "last", "input": "lon"},
        {"name": "distinct_merchants_24h", "op": "distinct_count", "input": "merchant_id", "window_ms": D},
        {"name": "merchant_first_seen", "op": "first_seen", "input": "merchant_id", "window_ms": 30 * D, "prior": True},
        {"name": "device_first_seen", "op": "first_seen", "input": "device_id", "window_ms": 30 * D, "prior": True},
    ],
}
AGG_NAMES = [a["name"] for a in SPEC["aggregations"]]
COLS = [n for n, _ in PAYMENT_SQL]


def row_type():
    from pyflink.common import Types
    kinds = {"STRING": Types.STRING(), "BIGINT": Types.LONG(), "DOUBLE": Types.DOUBLE()}
    return Types.ROW_NAMED(COLS, [kinds[t] for _, t in PAYMENT_SQL])


def java_features(t_env, table, ordering):
    from pyflink.datastream import DataStream
    from pyflink.java_gateway import get_gateway
    ds = t_env.to_data_stream(table)
    res = get_gateway().jvm.io.streamscore.engine.Engine.features(
        ds._j_data_stream, row_type().get_java_type_info(), json.dumps(SPEC), ordering, 0, "fraud/features", None)
    return DataStream(res.features())


def discard(ds):
    from pyflink.java_gateway import get_gateway
    ds._j_data_stream.sinkTo(get_gateway().jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink())


def timed(label, fn, res):
    t0 = time.time()
    fn()
    res[label] = round(time.time() - t0, 2)
    print(f"{label}: {res[label]:.1f} s", flush=True)


def parquet_source(t_env, path):
    t_env.execute_sql(f"CREATE TEMPORARY TABLE pq ({_ddl_cols(PAYMENT_SQL)}) WITH ('connector' = 'filesystem', "
                      f"'path' = '{Path(path).resolve().as_uri()}', 'format' = 'parquet')")
    return t_env.from_path("pq")


def check_exact(path, frame, res):
    env, t_env = make_env(FlinkSettings(batch=True, parallelism=1))
    feats = java_features(t_env, parquet_source(t_env, path), "event-time")
    t0 = time.time()
    got = {r[0]: r for r in feats.execute_and_collect()}
    res["batch_collect_s"] = round(time.time() - t0, 2)
    want = list(compute_features(pq.read_table(path).to_pylist()))  # nulls as None, as a job reads them
    names = FRAUD_FEATURES.feature_names
    n = len(COLS)
    bad = 0
    for w in want:
        r = got[w["event_id"]]
        a = dict(zip(AGG_NAMES, list(r)[n:]))
        mean, std = a["amount_mean_30d"], a["amount_std_30d"]
        amount, t, lat, lon = r[COLS.index("amount")], r[COLS.index("event_time")], r[COLS.index("lat")], r[COLS.index("lon")]
        secs = km = kmh = None
        if a["prev_time"] is not None:
            from features.fraud import MIN_SECS_FOR_SPEED, haversine_km
            secs = (t - a["prev_time"]) / 1000.0
            km = haversine_km(a["prev_lat"], a["prev_lon"], lat, lon)
            kmh = km / (max(secs, MIN_SECS_FOR_SPEED) / 3600.0)
        mine = dict(a, amount_zscore_30d=(amount - mean) / std if std else None, secs_since_prev=secs,
                    km_from_prev=km, kmh_from_prev=kmh)
        for name in names:
            x, y = mine[name], w[name]
            if not (x == y or (x is None and y is None)):
                bad += 1
                if bad <= 5:
                    print("MISMATCH", w["event_id"], name, x, y)
    res["exact_rows"] = len(want)
    res["exact_mismatched_cells"] = bad
    print(f"exactness: {len(want)} rows x {len(names)} features, {bad} cells differ", flush=True)


def batch_timing(path, res):
    from tests.reference.fraud_reference import reference_features
    env, t_env = make_env(FlinkSettings(batch=True, parallelism=1))
    discard(java_features(t_env, parquet_source(t_env, path), "event-time"))
    timed("batch_java_operator", lambda: env.execute("batch-java"), res)
    env, t_env = make_env(FlinkSettings(batch=True, parallelism=1))
    t_env.execute_sql(f"CREATE TEMPORARY TABLE bh ({_ddl_cols(PAYMENT_SQL)}) WITH ('connector' = 'blackhole')")
    timed("batch_read_only", lambda: parquet_source(t_env, path).execute_insert("bh").wait(), res)
    timed("pandas_reference", lambda: reference_features(pq.read_table(path).to_pandas()), res)


def streaming(bs, topic, res):
    from pyflink.table import DataTypes
    from pyflink.table.udf import udf

    def src(t_env):
        t_env.execute_sql(f"CREATE TEMPORARY TABLE payments ({_ddl_cols(PAYMENT_SQL)}, "
                          f"rt AS TO_TIMESTAMP_LTZ(event_time, 3), WATERMARK FOR rt AS rt - INTERVAL '5' SECOND) WITH ("
                          f"'connector'='kafka','topic'='{topic}','properties.bootstrap.servers'='{bs}',"
                          f"'properties.group.id'='spk-{uuid.uuid4().hex}','scan.startup.mode'='earliest-offset',"
                          f"'scan.bounded.mode'='latest-offset','format'='json','json.ignore-parse-errors'='true')")
        return t_env.sql_query(f"SELECT {', '.join(COLS)} FROM payments")

    env, t_env = make_env(FlinkSettings(batch=False, parallelism=1))
    t_env.execute_sql("CREATE TEMPORARY TABLE bh1 (x INT) WITH ('connector'='blackhole')")
    timed("stream_noop", lambda: t_env.execute_sql("INSERT INTO bh1 SELECT * FROM (VALUES (1)) AS v(x)").wait(), res)

    env, t_env = make_env(FlinkSettings(batch=False, parallelism=1))
    stmts = velocity_sql({"bootstrap": bs, "topic": topic, "out_topic": None, "group_id": "spk-" + uuid.uuid4().hex})
    for s in stmts[:-1]:
        t_env.execute_sql(s)
    timed("stream_java_sql_reference", lambda: t_env.execute_sql(stmts[-1]).wait(), res)

    env, t_env = make_env(FlinkSettings(batch=False, parallelism=1))
    discard(java_features(t_env, src(t_env), "arrival"))
    timed("stream_java_operator_arrival", lambda: env.execute("stream-java"), res)

    env, t_env = make_env(FlinkSettings(batch=False, parallelism=1))
    discard(java_features(t_env, src(t_env), "event-time"))
    timed("stream_java_operator_event_time", lambda: env.execute("stream-java-et"), res)

    out = [("event_id", DataTypes.STRING()), ("amount_zscore_30d", DataTypes.DOUBLE()),
           ("secs_since_prev", DataTypes.DOUBLE()), ("km_from_prev", DataTypes.DOUBLE()),
           ("kmh_from_prev", DataTypes.DOUBLE())]

    @udf(result_type=DataTypes.ROW([DataTypes.FIELD(n, t) for n, t in out]), func_type="pandas")
    def derive(df: pd.DataFrame) -> pd.DataFrame:
        std = df["amount_std_30d"].astype("float64")
        z = (df["amount"] - df["amount_mean_30d"].astype("float64")) / std.where(std > 0)
        secs = (df["event_time"] - df["prev_time"].astype("float64")) / 1000.0
        p1, p2 = np.radians(df["prev_lat"].astype("float64")), np.radians(df["lat"])
        dl = np.radians(df["lon"] - df["prev_lon"].astype("float64"))
        a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
        km = 2 * 6371.0088 * np.arcsin(np.minimum(1.0, np.sqrt(a)))
        kmh = km / (np.maximum(secs, 60.0) / 3600.0)
        return pd.DataFrame({"event_id": df["event_id"], "amount_zscore_30d": z, "secs_since_prev": secs,
                             "km_from_prev": km, "kmh_from_prev": kmh})

    env, t_env = make_env(FlinkSettings(batch=False, parallelism=1))
    feats = t_env.from_data_stream(java_features(t_env, src(t_env), "arrival"))
    t_env.execute_sql("CREATE TEMPORARY TABLE bh2 (event_id STRING, amount_zscore_30d DOUBLE, secs_since_prev DOUBLE, "
                      "km_from_prev DOUBLE, kmh_from_prev DOUBLE) WITH ('connector'='blackhole')")
    timed("stream_java_operator_plus_pandas_udf", lambda: feats.map(derive).execute_insert("bh2").wait(), res)


def main():
    res = {"events": N}
    work = Path(tempfile.mkdtemp(prefix="spike-java-op-"))
    frame = generate_payments(N, seed=8, days=30)
    path = work / "payments.parquet"
    pq.write_table(to_arrow(frame, PAYMENT), path)
    small = work / "small.parquet"
    sf = frame.iloc[:20_000].copy()
    sf["event_time"] = (sf["event_time"] // 1000) * 1000  # same-ms ties, ordered by event_id
    pq.write_table(to_arrow(sf, PAYMENT), small)
    check_exact(small, sf, res)
    batch_timing(path, res)
    broker = KafkaBroker(port=free_port_pair(), data_dir=work / "kafka").start(timeout=90)
    try:
        topic = "spike-" + uuid.uuid4().hex[:8]
        env, t_env = make_env(FlinkSettings(batch=True, parallelism=1))
        stmts = loader_sql({"input": str(path), "topic": topic, "bootstrap": broker.bootstrap})
        for s in stmts[:-1]:
            t_env.execute_sql(s)
        timed("load_topic", lambda: t_env.execute_sql(stmts[-1]).wait(), res)
        streaming(broker.bootstrap, topic, res)
    finally:
        broker.stop()
    noop = res["stream_noop"]
    for k in ("stream_java_sql_reference", "stream_java_operator_arrival", "stream_java_operator_event_time",
              "stream_java_operator_plus_pandas_udf"):
        res[k + "_net_ev_s"] = round(N / max(res[k] - noop, 1e-9))
    res["batch_ratio_vs_pandas"] = round(res["pandas_reference"] / res["batch_java_operator"], 2)
    print(json.dumps(res, indent=1))
    (ROOT / "bench" / "results" / "engine-v2-java-operator.json").write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
