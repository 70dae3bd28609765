"""Spike (issue 8): which OVER-window constructs Flink 2.2 STREAMING accepts over a Kafka JSON source
with a per-partition watermark declared in the DDL. Planning only (EXPLAIN): no broker, no job run."""
import sys, json
sys.path.insert(0, "/work/main")
from jobs.flinkenv import make_env, FlinkSettings
from bench.sql import PAYMENT_SQL, _ddl_cols

env, t = make_env(FlinkSettings(batch=False, parallelism=1))
t.execute_sql(f"""CREATE TEMPORARY TABLE payments ({_ddl_cols(PAYMENT_SQL)},
  rt AS TO_TIMESTAMP_LTZ(event_time, 3), WATERMARK FOR rt AS rt - INTERVAL '5' SECOND) WITH (
  'connector'='kafka','topic'='x','properties.bootstrap.servers'='localhost:1','properties.group.id'='g',
  'scan.startup.mode'='earliest-offset','scan.bounded.mode'='latest-offset','format'='json')""")
P = "PARTITION BY card_id ORDER BY rt"
cases = {
 "count/sum RANGE INTERVAL '3599.999' SECOND": f"SELECT COUNT(*) OVER (w), SUM(amount) OVER (w) FROM payments WINDOW w AS ({P} RANGE BETWEEN INTERVAL '3599.999' SECOND PRECEDING AND CURRENT ROW)",
 "RANGE INTERVAL '7' DAY": f"SELECT COUNT(*) OVER ({P} RANGE BETWEEN INTERVAL '7' DAY PRECEDING AND CURRENT ROW) FROM payments",
 "sum of squares 30d": f"SELECT SUM(amount*amount) OVER ({P} RANGE BETWEEN INTERVAL '30' DAY PRECEDING AND CURRENT ROW) FROM payments",
 "STDDEV_POP in OVER": f"SELECT STDDEV_POP(amount) OVER ({P} RANGE BETWEEN INTERVAL '30' DAY PRECEDING AND CURRENT ROW) FROM payments",
 "LAG in OVER": f"SELECT LAG(event_time) OVER ({P}) FROM payments",
 "LAG ORDER BY rt, event_id": f"SELECT LAG(event_time) OVER (PARTITION BY card_id ORDER BY rt, event_id) FROM payments",
 "ROWS 1 PRECEDING (prev via MAX)": f"SELECT MAX(event_time) OVER ({P} ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM payments",
 "LAST_VALUE ROWS": f"SELECT LAST_VALUE(lat) OVER ({P} ROWS BETWEEN 1 PRECEDING AND 1 PRECEDING) FROM payments",
 "COUNT(DISTINCT) OVER": f"SELECT COUNT(DISTINCT merchant_id) OVER ({P} RANGE BETWEEN INTERVAL '24' HOUR PRECEDING AND CURRENT ROW) FROM payments",
 "ROW_NUMBER OVER": f"SELECT ROW_NUMBER() OVER (PARTITION BY card_id, event_time ORDER BY rt) FROM payments",
 "first-seen: OVER PARTITION BY card, merchant": f"SELECT COUNT(*) OVER (PARTITION BY card_id, merchant_id ORDER BY rt RANGE BETWEEN INTERVAL '30' DAY PRECEDING AND CURRENT ROW) FROM payments",
 "ORDER BY event_time BIGINT in streaming": "SELECT COUNT(*) OVER (PARTITION BY card_id ORDER BY event_time RANGE BETWEEN 3599999 PRECEDING AND CURRENT ROW) FROM payments",
 "self interval join distinct 24h": """SELECT a.event_id, COUNT(DISTINCT b.merchant_id) FROM payments a JOIN payments b
   ON a.card_id=b.card_id AND b.rt BETWEEN a.rt - INTERVAL '24' HOUR AND a.rt GROUP BY a.event_id""",
 "two frames in one SELECT": f"SELECT COUNT(*) OVER ({P} RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT ROW), COUNT(*) OVER ({P} RANGE BETWEEN INTERVAL '24' HOUR PRECEDING AND CURRENT ROW) FROM payments",
}
res = {}
for name, q in cases.items():
    try:
        t.explain_sql(q); res[name] = "ACCEPTED"
    except Exception as e:
        msg = str(e).strip().splitlines()
        line = next((l for l in msg if "Exception:" in l or "not supported" in l.lower()), msg[0] if msg else repr(e))
        res[name] = "REFUSED: " + line.strip()[:300]
    print(f"{name}: {res[name]}", flush=True)
json.dump(res, open("/work/spike/constructs.json", "w"), indent=1)
