"""Issue 8 spike: one row per (run, variant, rate) of traced latency runs: the bench's percentiles, load, the
box's CPU split into ours/foreign, the scoring UDF's calls (pyworker log) and, with JFR, the time the
features task thread spent blocked in the Python operator's finishBundle.

    .venv/bin/python bench/spikes/latency-v2/summarize.py OUT.json TRACE_DIR...
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def phase_cpu(trace: Path, t0: float, t1: float) -> dict:
    first = last = None
    with open(trace / "thread-samples.jsonl") as f:
        for line in f:
            r = json.loads(line)
            if r["t"] < t0:
                first = r
            elif r["t"] <= t1:
                last = r
                if first is None:
                    first = r
    if not first or not last or first is last:
        return {}
    secs = last["t"] - first["t"]
    ours = {}
    for pid, p in last["procs"].items():
        old = first["procs"].get(pid, {"threads": {}})["threads"]
        d = sum(t - old[tid][2] for tid, (_, _, t) in p["threads"].items() if tid in old)
        ours[p["role"]] = ours.get(p["role"], 0) + d / 100 / secs
    c0, c1 = [int(x) for x in first["cpu"]], [int(x) for x in last["cpu"]]
    busy = (sum(c1) - sum(c0) - (c1[3] - c0[3]) - (c1[4] - c0[4])) / 100 / secs
    mine = sum(ours.values())
    return {"box_busy_cores": round(busy, 2), "ours_cores": round(mine, 2), "foreign_cores": round(busy - mine, 2),
            "by_role": {k: round(v, 2) for k, v in sorted(ours.items(), key=lambda kv: -kv[1])}, "load": last["load"]}


def evals(trace: Path, t0: float, t1: float) -> dict:
    rows = []
    for p in trace.glob("pyworker-*.log"):
        for line in p.read_text().splitlines():
            f = line.split()
            if f[0] == "eval" and t0 <= float(f[1]) <= t1:
                rows.append((float(f[2]), float(f[3]), int(f[4])))
    if not rows:
        return {}
    a = np.array(rows)
    return {"calls": len(a), "rows_p50": float(np.median(a[:, 2])), "wall_ms_p50": round(1000 * np.median(a[:, 0]), 1),
            "wall_ms_p99": round(1000 * np.percentile(a[:, 0], 99), 1), "cpu_ms_p50": round(1000 * np.median(a[:, 1]), 1),
            "cpu_s_total": round(a[:, 1].sum(), 2), "wall_s_total": round(a[:, 0].sum(), 2)}


def parks(trace: Path, t0: float, t1: float) -> dict:
    from jfr_timeline import slim

    jfrs = sorted(trace.glob("jvm-*.jfr"), key=lambda p: p.stat().st_size)
    out = {}
    for j in jfrs:
        if "-" in j.stem.split("jvm-")[1]:
            continue  # per-phase dumps; the exit recording holds everything
        cache = trace / f"jfr-slim-{j.stem}.pickle"
        if not cache.exists():
            tmp = trace / "jfr-slim.pickle"
            tmp.unlink(missing_ok=True)
            slim(trace, str(j))
            tmp.rename(cache)
        import pickle

        ev = pickle.loads(cache.read_bytes())
        p = [e for e in ev if e[0] == "jdk.ThreadPark" and e[3] and e[3].startswith("fraud_card_features/features")
             and "takeResult" in " ".join(e[4]) and t0 <= e[1] <= t1]
        if p:
            d = np.array([e[2] for e in p]) * 1000
            out = {"finish_bundle_blocked_s": round(d.sum() / 1000, 2), "blocks_over_10ms": len(d),
                   "block_ms_p50": round(float(np.median(d)), 1), "block_ms_max": round(float(d.max()), 1)}
    return out


def main():
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    out, traces = args[0], args[1:]
    table = []
    for t in map(Path, traces):
        res = json.loads((t / "out" / "results.json").read_text())["latency"]
        phases = [json.loads(line) for line in (t / "phases.jsonl").read_text().splitlines()]
        k = 0
        for run in res["runs"]:
            for ph in run["phases"]:
                tp = phases[k] if k < len(phases) else {}
                k += 1
                row = {"trace": t.name, "variant": run["variant"], "options": run["options"], "rate": ph["rate"],
                       "consumer": {q: ph["consumer"].get(q) for q in ("p50", "p95", "p99", "max")},
                       "internal": {q: ph["internal"].get(q) for q in ("p50", "p95", "p99", "max")},
                       "missing": ph["missing"], "loadavg_after": ph["loadavg"], "error": run.get("error")}
                if tp:
                    row["cpu"] = phase_cpu(t, tp["t0"], tp["t0"] + tp["seconds"])
                    row["udf"] = evals(t, tp["t0"], tp["t0"] + tp["seconds"])
                    if "--jfr" in flags:
                        try:
                            row["jfr"] = parks(t, tp["t0"], tp["t0"] + tp["seconds"])
                        except Exception as e:  # a recording cut short by the kill
                            row["jfr"] = {"error": repr(e)[:200]}
                table.append(row)
                c, i = row["consumer"], row["internal"]
                print(f"{t.name:6s} {run['variant']:10s} {ph['rate']:5d}/s consumer {c['p50']:.0f}/{c['p95']:.0f}/{c['p99']:.0f} "
                      f"internal {i['p50']:.0f}/{i['p95']:.0f}/{i['p99']:.0f} load {ph['loadavg']} "
                      f"cpu {row.get('cpu', {}).get('ours_cores')}/{row.get('cpu', {}).get('foreign_cores')} "
                      f"udf {row.get('udf')} jfr {row.get('jfr')}")
    Path(out).write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
