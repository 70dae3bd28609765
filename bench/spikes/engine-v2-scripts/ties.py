"""Spike: exclusive-bound interval literals + same-ms peer behaviour of STREAMING rowtime OVER RANGE (tiny CSV)."""
import sys, json
sys.path.insert(0, "/work/main")
from jobs.flinkenv import make_env, FlinkSettings
open("/work/spike/ties.csv", "w").write("e1,c,1000,1.0\ne2,c,1000,2.0\ne3,c,3601000,4.0\ne4,c,3601000,8.0\ne5,c,3601001,16.0\n")
env, t = make_env(FlinkSettings(batch=False, parallelism=1))
t.execute_sql("""CREATE TEMPORARY TABLE p (event_id STRING, card_id STRING, event_time BIGINT, amount DOUBLE,
  rt AS TO_TIMESTAMP_LTZ(event_time, 3), WATERMARK FOR rt AS rt - INTERVAL '5' SECOND)
  WITH ('connector'='filesystem','path'='file:///work/spike/ties.csv','format'='csv')""")
res = {}
for name, lit in {"MINUTE TO SECOND 59:59.999": "INTERVAL '59:59.999' MINUTE TO SECOND",
                  "SECOND(4,3) 3599.999": "INTERVAL '3599.999' SECOND(4,3)",
                  "HOUR TO SECOND 23:59:59.999": "INTERVAL '23:59:59.999' HOUR TO SECOND",
                  "DAY TO SECOND 6 23:59:59.999": "INTERVAL '6 23:59:59.999' DAY TO SECOND",
                  "1 HOUR (inclusive)": "INTERVAL '1' HOUR"}.items():
    q = f"""SELECT event_id, COUNT(*) OVER w AS n, SUM(amount) OVER w AS s FROM p
      WINDOW w AS (PARTITION BY card_id ORDER BY rt RANGE BETWEEN {lit} PRECEDING AND CURRENT ROW)"""
    try:
        rows = sorted((r[0], r[1], r[2]) for r in t.execute_sql(q).collect())
        res[name] = rows
    except Exception as e:
        res[name] = "REFUSED: " + next((l for l in str(e).splitlines() if "Exception" in l), str(e)[:200])[:250]
    print(name, res[name], flush=True)
for name, q in {"LAG(event_id) ties": "SELECT event_id, LAG(event_id) OVER (PARTITION BY card_id ORDER BY rt) FROM p",
                "ROWS 1 PRECEDING MIN/COUNT": "SELECT event_id, COUNT(*) OVER (PARTITION BY card_id ORDER BY rt ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM p"}.items():
    try:
        res[name] = sorted(tuple(r) for r in t.execute_sql(q).collect())
    except Exception as e:
        res[name] = "REFUSED: " + str(e).splitlines()[0][:250]
    print(name, res[name], flush=True)
json.dump(res, open("/work/spike/ties.json", "w"), indent=1, default=str)
