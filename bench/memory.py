"""Memory section: a longer stream with the same cards, RSS and checkpoint size over time."""
from __future__ import annotations

from typing import Optional

from bench.data import load_topic, payments_frame
from bench.runner import Bench, _cleanup_dir, run_fraud, run_sql
from bench.throughput import _tp_line


def section_memory(bench: Bench, args) -> dict:
    p = bench.progress
    n = args.events * args.memory_factor
    days = args.days * args.memory_factor
    p.step(f"memory: pre-load {n:,} events ({args.memory_factor}x the stream: {days:g} days, same {args.cards:,} cards)")
    df = payments_frame(n, args.cards, days, args.seed + 3)
    topic = bench.name("events-long")
    load = load_topic(bench, df, topic, 1, args.loader, "memory")
    del df
    runs = []
    for job in ("fraud", "sql"):
        p.step(f"memory: {job} job over {n:,} events, sampling RSS and the checkpoint folder")
        if job == "fraud":
            r = run_fraud(bench, topic, n, "fraud-long", model=args.model, sample_ckpt=True)
        else:
            r = run_sql(bench, topic, n, "sql-long", sample_ckpt=True)
        p.info(_tp_line(job, r))
        tl = r["timeline"]
        ckpts = checkpoint_progress(r.get("checkpoints") or [], tl)
        runs.append({"job": job, "events": n, "events_per_s": r["events_per_s"], "rss_peak_mb": r["rss_peak_mb"],
                     "rss_end_mb": _last_rss_mb(tl), "checkpoint_mb_at": _ckpt_at(tl, n),
                     "state_mb_at": _state_at(ckpts, n), "checkpoints": ckpts, "timeline": tl,
                     "net_s": r["net_s"], "loadavg": r["loadavg"]})
        _cleanup_dir(bench.work / "ckpt")
    return {"events": n, "days": days, "cards": args.cards, "load": load, "runs": runs,
            "note": ("Stream length x10 at the same event rate per day, so per-card history must plateau once the "
                     "30-day retention is reached. RSS: all processes of the job (JVM incl. RocksDB, Python "
                     "workers). State: the full state size of each completed checkpoint (REST checkpoint history); the "
                     "checkpoint folder (2 retained incremental RocksDB checkpoints, compacted now and then) "
                     "is shown too.")}


def _last_rss_mb(tl: list) -> Optional[float]:
    """RSS at the last sample with output before the job wound down."""
    vals = [(t, n, r) for t, n, r, _ in tl if r]
    if not vals:
        return None
    mx = max((n or 0) for _, n, _ in vals)
    for t, n, r in vals:
        if (n or 0) >= mx:
            return round(r / 2**20, 1)
    return round(vals[-1][2] / 2**20, 1)


def checkpoint_progress(ckpts: list, tl: list) -> list:
    """Completed checkpoints with the output count at their trigger time: [(events, state MB, persisted MB)].

    >>> checkpoint_progress([{"t": 1.5, "state_bytes": 2**20, "persisted_bytes": 2**19}],
    ...                     [(0.0, 0, 1, None), (1.0, 10, 1, None), (2.0, 30, 1, None)])
    [[10, 1.0, 0.5]]
    """
    out = []
    for c in ckpts:
        n = 0
        for t, k, _, _ in tl:
            if t > c["t"]:
                break
            n = k if k is not None else n
        if c.get("state_bytes") is not None:
            out.append([n, round(c["state_bytes"] / 2**20, 2),
                        round((c.get("persisted_bytes") or 0) / 2**20, 2)])
    return out


def _state_at(ckpts: list, total: int) -> dict:
    """Full state size (MB) of the last checkpoint before 25/50/75/100 % of the stream."""
    out = {}
    for frac in (0.25, 0.5, 0.75, 1.0):
        before = [mb for n, mb, _ in ckpts if n <= frac * total]
        out[f"{int(frac * 100)}%"] = before[-1] if before else None
    return out


def _ckpt_at(tl: list, total: int) -> dict:
    """Checkpoint folder size (MB) when the output reached 25/50/75/100 % of ``total``."""
    out = {}
    for frac in (0.25, 0.5, 0.75, 1.0):
        val = None
        for _, n, _, ck in tl:
            if ck is not None:
                val = ck
            if n is not None and n >= frac * total and val is not None:
                break
        out[f"{int(frac * 100)}%"] = round(val / 2**20, 2) if val is not None else None
    return out
