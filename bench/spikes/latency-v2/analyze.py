"""Issue 8 spike: per-event and per-batch view of one traced latency run (trace_latency.py's TRACE_DIR).

    .venv/bin/python bench/spikes/latency-v2/analyze.py TRACE_DIR [RUN] [--prefix r1000] [--gap-ms 120]

Per event: send (producer wall clock), ingest_ms (JVM intake), decide_ms (scoring UDF, one value per
Python batch), arrival (consumer). Prints summaries, the stalls (gaps between successive decide_ms
larger than --gap-ms while events were waiting) and what the /proc thread samples saw in each.
"""
from __future__ import annotations

import json
import pickle
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def load(trace: Path, run: str, prefix: str):
    sent = pickle.loads((trace / f"{run}-sent.pickle").read_bytes())
    rows = pickle.loads((trace / f"{run}-rows.pickle").read_bytes())
    first = {}
    for eid, arrived, ingest, decide in rows:
        if eid not in first:
            first[eid] = (arrived, ingest, decide)
    ev = [(sent[e], *first[e]) for e in sent if e.startswith(prefix) and e in first]
    a = np.array(ev, dtype="float64")  # send s, arrival s, ingest ms, decide ms
    return a[np.argsort(a[:, 0])]


def pct(x):
    return "/".join(f"{np.percentile(x, q):.0f}" for q in (50, 95, 99)) + f" max {x.max():.0f}"


def thread_samples(trace: Path, t0: float, t1: float):
    out = []
    with open(trace / "thread-samples.jsonl") as f:
        for line in f:
            r = json.loads(line)
            if t0 - 1 <= r["t"] <= t1 + 1:
                out.append(r)
    return out


def cpu_between(samples, ta: float, tb: float, top: int = 8):
    """CPU ticks (1/100 s) per (role, thread name) between wall times ta and tb, and the box's idle share."""
    first = last = None
    for r in samples:
        if r["t"] <= ta:
            first = r
        if r["t"] <= tb:
            last = r
    if first is None or last is None or first is last:
        return [], None
    ticks = defaultdict(int)
    for pid, p in last["procs"].items():
        old = first["procs"].get(pid, {"threads": {}})["threads"]
        for tid, (name, state, t) in p["threads"].items():
            d = t - old.get(tid, [name, state, t])[2] if tid in old else 0
            if d:
                ticks[(p["role"], name)] += d
    c0, c1 = [int(x) for x in first["cpu"]], [int(x) for x in last["cpu"]]
    tot = sum(c1) - sum(c0)
    idle = (c1[3] - c0[3]) / tot if tot else None
    return sorted(ticks.items(), key=lambda kv: -kv[1])[:top], idle


def main():
    args = sys.argv[1:]
    trace = Path(args[0])
    run = args[1] if len(args) > 1 and not args[1].startswith("--") else "run1"
    prefix = args[args.index("--prefix") + 1] if "--prefix" in args else "r1000"
    gap_ms = float(args[args.index("--gap-ms") + 1]) if "--gap-ms" in args else 120.0
    a = load(trace, run, prefix)
    send, arr, ing, dec = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
    print(f"{len(a)} events; consumer (arrival-send) p50/p95/p99 {pct(1000 * (arr - send))} ms")
    print(f"  send->ingest {pct(ing - 1000 * send)}; ingest->decide {pct(dec - ing)}; decide->arrival {pct(1000 * arr - dec)}")
    # batches = distinct decide_ms (one per UDF eval call; two batches in the same ms merge)
    uniq, inv, counts = np.unique(dec, return_inverse=True, return_counts=True)
    print(f"  {len(uniq)} decide_ms values (batches), rows per batch p50 {np.median(counts):.0f} max {counts.max()}")
    gaps = np.diff(uniq)
    print(f"  gap between batches p50/p95/p99 {pct(gaps)} ms")
    # the intake: gaps in ingest_ms (sorted)
    ising = np.sort(ing)
    ig = np.diff(ising)
    print(f"  gaps in ingest_ms p50/p99/max {np.median(ig):.0f}/{np.percentile(ig, 99):.0f}/{ig.max():.0f} ms; "
          f"send gaps max {1000 * np.diff(send).max():.0f} ms")
    samples = thread_samples(trace, send[0], arr[-1])
    t_origin = send[0]
    print(f"\nstalls: decide gaps > {gap_ms:.0f} ms (t = s since the phase's first send)")
    for i in np.nonzero(gaps > gap_ms)[0]:
        d0, d1 = uniq[i], uniq[i + 1]
        nxt = dec == d1
        waiting = ((ing > d0) & (ing < d1)).sum()  # ingested while no batch came out
        top, idle = cpu_between(samples, d0 / 1000, d1 / 1000)
        print(f"  t={d0 / 1000 - t_origin:7.3f} gap {d1 - d0:5.0f} ms, next batch {nxt.sum():4d} rows "
              f"(ingest span {ing[nxt].min() - d0:+.0f}..{ing[nxt].max() - d0:+.0f} ms), ingested meanwhile {waiting}, "
              f"box idle {idle if idle is None else round(100 * idle)}%")
        print("      cpu ticks: " + ", ".join(f"{r}/{n}:{t}" for (r, n), t in top))


if __name__ == "__main__":
    main()
