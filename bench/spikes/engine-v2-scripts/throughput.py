"""Spike (issue 8) item 1: STREAMING Flink SQL fraud features (OVER windows, exclusive bounds) over a pre-loaded
Kafka topic vs the bench's Java-only reference (bench.sql.velocity_sql), same script, parallelism 1."""
import sys, time, json, uuid
sys.path.insert(0, "/work/main")
from jobs.flinkenv import make_env, FlinkSettings
from bench.sql import PAYMENT_SQL, _ddl_cols, velocity_sql
BS, TOPIC, N = "127.0.0.1:19092", sys.argv[1], int(sys.argv[2])

def src(t, g):
    t.execute_sql(f"""CREATE TEMPORARY TABLE payments ({_ddl_cols(PAYMENT_SQL)},
      rt AS TO_TIMESTAMP_LTZ(event_time, 3), WATERMARK FOR rt AS rt - INTERVAL '5' SECOND) WITH (
      'connector'='kafka','topic'='{TOPIC}','properties.bootstrap.servers'='{BS}','properties.group.id'='{g}',
      'scan.startup.mode'='earliest-offset','scan.bounded.mode'='latest-offset','format'='json',
      'json.ignore-parse-errors'='true')""")

def W(frame, part="card_id"):
    return f"OVER (PARTITION BY {part} ORDER BY rt {frame})"
R = lambda lit: f"RANGE BETWEEN INTERVAL {lit} PRECEDING AND CURRENT ROW"
H1, H24 = R("'59:59.999' MINUTE TO SECOND"), R("'23:59:59.999' HOUR TO SECOND")
D7, D30 = R("'6 23:59:59.999' DAY TO SECOND"), R("'29 23:59:59.999' DAY TO SECOND")
PREV = "ROWS BETWEEN 1 PRECEDING AND CURRENT ROW"
FEATS = f"""
WITH a AS (SELECT *, COUNT(*) {W(H1)} AS n1h, SUM(amount) {W(H1)} AS s1h FROM payments),
b AS (SELECT *, COUNT(*) {W(H24)} AS n24h, SUM(amount) {W(H24)} AS s24h,
        COUNT(DISTINCT merchant_id) {W(H24)} AS dm24h FROM a),
c AS (SELECT *, COUNT(*) {W(D7)} AS n7d FROM b),
d AS (SELECT *, COUNT(*) {W(D30)} AS n30d, SUM(amount) {W(D30)} AS s30d, SUM(amount*amount) {W(D30)} AS q30d FROM c),
e AS (SELECT *, COUNT(*) {W(PREV)} AS np, FIRST_VALUE(event_time) {W(PREV)} AS pt,
        FIRST_VALUE(lat) {W(PREV)} AS plat, FIRST_VALUE(lon) {W(PREV)} AS plon FROM d),
f AS (SELECT *, COUNT(*) {W(D30, 'card_id, merchant_id')} AS nm FROM e),
g AS (SELECT *, COUNT(*) {W(D30, 'card_id, device_id')} AS nd FROM f)
SELECT event_id, card_id, event_time, amount, lat, lon, n1h, n24h, n7d, s1h, s24h, dm24h,
  CASE WHEN n30d > 1 THEN (s30d - amount) / (n30d - 1) END AS prior_mean_30d,
  CASE WHEN n30d > 1 THEN SQRT(GREATEST((q30d - amount*amount)/(n30d-1) - POWER((s30d-amount)/(n30d-1), 2), 0)) END AS prior_std_30d,
  CASE WHEN np > 1 THEN event_time - pt END AS secs_since_prev_ms,
  CASE WHEN np > 1 THEN plat END AS prev_lat, CASE WHEN np > 1 THEN plon END AS prev_lon,
  nm = 1 AS new_merchant_30d, nd = 1 AS new_device_30d
FROM g"""
OUT = ("event_id STRING, card_id STRING, event_time BIGINT, amount DOUBLE, lat DOUBLE, lon DOUBLE, n1h BIGINT, "
       "n24h BIGINT, n7d BIGINT, s1h DOUBLE, s24h DOUBLE, dm24h BIGINT, prior_mean_30d DOUBLE, prior_std_30d DOUBLE, "
       "secs_since_prev_ms BIGINT, prev_lat DOUBLE, prev_lon DOUBLE, new_merchant_30d BOOLEAN, new_device_30d BOOLEAN")

def run(label, stmts):
    env, t = make_env(FlinkSettings(batch=False, parallelism=1))
    for s in stmts[:-1]:
        t.execute_sql(s)
    t0 = time.time(); t.execute_sql(stmts[-1]).wait(); dt = time.time() - t0
    print(f"{label}: {dt:.1f} s", flush=True); return dt

res = {}
res["noop"] = run("noop", ["CREATE TEMPORARY TABLE bh (x INT) WITH ('connector'='blackhole')",
                           "INSERT INTO bh SELECT * FROM (VALUES (1)) AS v(x)"])
ref = velocity_sql({"bootstrap": BS, "topic": TOPIC, "out_topic": None, "group_id": "spk-" + uuid.uuid4().hex})
res["ref_blackhole"] = run("ref_blackhole", ref)
def feat(label, sink):
    class T: pass
    stmts = [f"CREATE TEMPORARY TABLE outt ({OUT}) WITH ({sink})", "INSERT INTO outt " + FEATS]
    env, t = make_env(FlinkSettings(batch=False, parallelism=1)); src(t, "spk-" + uuid.uuid4().hex)
    t.execute_sql(stmts[0]); t0 = time.time(); t.execute_sql(stmts[1]).wait(); dt = time.time() - t0
    print(f"{label}: {dt:.1f} s", flush=True); res[label] = dt
feat("feat_blackhole", "'connector'='blackhole'")
feat("feat_kafka", f"'connector'='kafka','topic'='spike-out-{uuid.uuid4().hex[:6]}','properties.bootstrap.servers'='{BS}','format'='json','sink.delivery-guarantee'='at-least-once'")
for k in list(res):
    if k != "noop":
        res[k + "_ev_s_gross"] = round(N / res[k]); res[k + "_ev_s_net"] = round(N / max(res[k] - res["noop"], 1e-3))
print(json.dumps(res, indent=1)); json.dump(res, open(f"/work/spike/throughput_{N}.json", "w"), indent=1)
