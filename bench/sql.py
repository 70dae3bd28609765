"""The Java-only Flink SQL reference statements: velocity features over OVER RANGE windows, and the loader."""
from __future__ import annotations

from pathlib import Path


VELOCITY_COLUMNS = (("txn_count_1h", "BIGINT"), ("txn_count_24h", "BIGINT"), ("txn_count_7d", "BIGINT"),
                    ("amount_sum_1h", "DOUBLE"), ("amount_sum_24h", "DOUBLE"))
PAYMENT_SQL = (("event_id", "STRING"), ("event_time", "BIGINT"), ("card_id", "STRING"),
               ("merchant_id", "STRING"), ("mcc", "STRING"), ("amount", "DOUBLE"), ("currency", "STRING"),
               ("lat", "DOUBLE"), ("lon", "DOUBLE"), ("device_id", "STRING"))


def _ddl_cols(cols) -> str:
    return ", ".join(f"`{n}` {t}" for n, t in cols)


def velocity_sql(spec: dict) -> list:
    """DDL + INSERT of the Java-only reference: per-card velocity features as chained OVER RANGE
    windows (Flink allows one window frame per SELECT) over the rowtime of the Kafka timestamp."""
    bs, topic, out = spec["bootstrap"], spec["topic"], spec["out_topic"]
    group = spec.get("group_id", "bench-sql")
    src = (f"CREATE TEMPORARY TABLE payments ({_ddl_cols(PAYMENT_SQL)}, "
           f"`ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL, "
           f"WATERMARK FOR `ts` AS `ts` - INTERVAL '{int(spec.get('max_disorder_ms', 5000)) / 1000:.3f}' SECOND) WITH ("
           f"'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bs}', "
           f"'properties.group.id' = '{group}', 'scan.startup.mode' = 'earliest-offset', "
           f"'scan.bounded.mode' = 'latest-offset', 'format' = 'json', 'json.ignore-parse-errors' = 'true')")
    cols = [("event_id", "STRING"), ("card_id", "STRING"), ("event_time", "BIGINT")] + list(VELOCITY_COLUMNS)
    if out:
        sink = (f"CREATE TEMPORARY TABLE velocity ({_ddl_cols(cols)}) WITH ('connector' = 'kafka', "
                f"'topic' = '{out}', 'properties.bootstrap.servers' = '{bs}', 'format' = 'json', "
                f"'sink.delivery-guarantee' = 'at-least-once')")
    else:
        sink = f"CREATE TEMPORARY TABLE velocity ({_ddl_cols(cols)}) WITH ('connector' = 'blackhole')"

    def over(w):
        return f"OVER (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL {w} PRECEDING AND CURRENT ROW)"

    query = f"""INSERT INTO velocity
WITH w1h AS (
  SELECT event_id, card_id, event_time, amount, ts,
         COUNT(*) {over("'1' HOUR")} AS txn_count_1h,
         SUM(amount) {over("'1' HOUR")} AS amount_sum_1h
  FROM payments),
w24h AS (
  SELECT event_id, card_id, event_time, ts, txn_count_1h, amount_sum_1h,
         COUNT(*) {over("'24' HOUR")} AS txn_count_24h,
         SUM(amount) {over("'24' HOUR")} AS amount_sum_24h
  FROM w1h)
SELECT event_id, card_id, event_time, txn_count_1h, txn_count_24h,
       COUNT(*) {over("'7' DAY")} AS txn_count_7d,
       amount_sum_1h, amount_sum_24h
FROM w24h"""
    return [src, sink, query]


def loader_sql(spec: dict) -> list:
    """DDL + INSERT of a bulk loader: a Parquet file of payments -> Kafka, as produce_rows writes it
    (JSON value of the payment fields, key card_id, record timestamp = event_time)."""
    src = (f"CREATE TEMPORARY TABLE pq ({_ddl_cols(PAYMENT_SQL)}) WITH ('connector' = 'filesystem', "
           f"'path' = '{Path(spec['input']).resolve().as_uri()}', 'format' = 'parquet')")
    sink = (f"CREATE TEMPORARY TABLE kout ({_ddl_cols(PAYMENT_SQL)}, `ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp') "
            f"WITH ('connector' = 'kafka', 'topic' = '{spec['topic']}', "
            f"'properties.bootstrap.servers' = '{spec['bootstrap']}', 'key.format' = 'raw', "
            f"'key.fields' = 'card_id', 'value.format' = 'json', 'value.fields-include' = 'ALL', "
            f"'sink.delivery-guarantee' = 'at-least-once', 'properties.linger.ms' = '20', "
            f"'properties.batch.size' = '524288')")
    names = ", ".join(f"`{n}`" for n, _ in PAYMENT_SQL)
    query = f"INSERT INTO kout SELECT {names}, TO_TIMESTAMP_LTZ(`event_time`, 3) FROM pq"
    return [src, sink, query]
