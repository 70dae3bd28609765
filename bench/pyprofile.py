"""Profile section: per-operator busy time, CPU per process/thread, a cProfile of the Python path, ablations."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

from bench.observe import operator_shares
from bench.report import fmt_num
from bench.runner import Bench, _r, run_fraud, run_sql
from bench.throughput import _tp_line
from jobs.runtime import ROOT, SetupError


def python_path_profile(n: int, seed: int, out_dir: Path) -> dict:
    """The fraud job's Python work without Flink: parse + validate per event, then the derived
    features and scoring in batches of 1,000 (the aggregations run on the JVM: computed here by
    the pandas reference, untimed). Times each stage, then writes a cProfile of the whole path
    (top functions) to ``out_dir/profile-python.txt``."""
    import cProfile
    import io
    import pstats

    import pandas as pd

    from features.contracts import PAYMENT
    from features.execute import aggregate, derive
    from features.fraud import FRAUD_FEATURES
    from features.synthetic import generate_payments, records
    from udfs.parse import ParseEvents
    from udfs.scoring import ScoreBatch
    from udfs.types import event_columns

    df = generate_payments(n, seed=seed, n_cards=max(20, n // 10), days=7)
    payloads = [PAYMENT.to_json({k: r[k] for k in PAYMENT.field_names}) for r in records(df, PAYMENT)]

    class _Counter:
        def inc(self, n=1):
            pass

    class _Metrics:
        def counter(self, name):
            return _Counter()

    class _Runtime:
        def __init__(self, store, key):
            self.store, self.key = store, key

        def get_metrics_group(self):
            return _Metrics()

        def get_metric_group(self):
            return _Metrics()

    class _Timers:
        def current_watermark(self):
            return -(2 ** 63)

    class _Ctx:
        def timer_service(self):
            return _Timers()

    key = [None]
    parse = ParseEvents(PAYMENT, kafka=True, with_labels=False, source="bench", max_future_ms=10 ** 12,
                        max_past_ms=10 ** 12)
    parse.open(_Runtime({}, key))
    names = [c for c, _ in event_columns(PAYMENT, False)]
    scorer = ScoreBatch(FRAUD_FEATURES.feature_names, None, FRAUD_FEATURES.definition_hash)
    scorer.open(_Runtime({}, key))
    ctx = _Ctx()

    def stage_parse():
        return [r for p in payloads for r in parse.process_element((p, "t", 0, 0), ctx)]

    def aggregated(rows):  # the JVM's part, untimed
        frame = pd.DataFrame([tuple(r) for r in rows], columns=names)
        return pd.concat([frame, aggregate(FRAUD_FEATURES, frame)], axis=1)

    def stage_derive(frame):
        return pd.concat([derive(FRAUD_FEATURES, frame.iloc[i:i + 1000]) for i in range(0, len(frame), 1000)])

    def stage_score(frame):
        feats = frame[list(FRAUD_FEATURES.feature_names) + ["ingest_ms"]]
        for i in range(0, len(feats), 1000):
            part = feats.iloc[i:i + 1000]
            scorer.eval(*[part[c] for c in part.columns])  # the features, then ingest_ms

    times = {}
    t = time.perf_counter()
    rows = stage_parse()
    times["parse + validate JSON"] = time.perf_counter() - t
    frame = aggregated(rows)
    t = time.perf_counter()
    feats = stage_derive(frame)
    times["derived features (pandas, batches of 1,000)"] = time.perf_counter() - t
    t = time.perf_counter()
    stage_score(feats)
    times["score (pandas, batches of 1,000)"] = time.perf_counter() - t

    prof = cProfile.Profile()
    prof.enable()
    stage_score(stage_derive(aggregated(stage_parse())))
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
    text = buf.getvalue()
    text = text.replace(str(ROOT) + "/", "").replace(sys.prefix + "/", "")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "profile-python.txt").write_text(
        f"cProfile of the fraud job's Python path outside Flink (aggregations: JVM, not included), {n:,} events, sorted by own time\n\n{text}")
    us = {k: round(1e6 * v / n, 2) for k, v in times.items()}
    total = sum(v for k, v in us.items() if not k.startswith("  "))
    return {"events": n, "us_per_event": us, "us_total": round(total, 2),
            "max_events_per_s": round(1e6 / total) if total else None,
            "cprofile": str(out_dir / "profile-python.txt")}


def section_profile(bench: Bench, args, results: dict) -> dict:
    p = bench.progress
    p.step("profile: Python per-event path of the fraud job outside Flink (cProfile)")
    n = 20_000 if not args.quick else 5_000
    py = python_path_profile(n, args.seed, Path(args.out))
    p.info(f"Python work {py['us_total']:.1f} µs/event -> at most {fmt_num(py['max_events_per_s'])} events/s "
           f"on one core ({', '.join(f'{k.strip()} {v}' for k, v in py['us_per_event'].items())})")
    out: dict = {"python": py}
    tp = results.get("throughput") or {}
    fraud = tp.get("fraud")
    if fraud:
        out["operators"] = operator_shares(fraud.get("rest"))
        out["cpu"] = fraud.get("cpu_breakdown")
        out["cpu_total"] = sum(v for _, v in fraud.get("cpu_breakdown") or [])
        out["per_event_cpu_us"] = _r(1e6 * fraud["cpu_s"] / fraud["events"]) if fraud.get("cpu_s") else None
        out["per_event_wall_us"] = _r(1e6 * fraud["net_s"] / fraud["events"]) if fraud.get("net_s") else None
    if args.ablations and tp.get("topic"):
        topic, events = tp["topic"], tp["events"]
        abl = [{"variant": f"fraud job as measured ({bench.state_backend})", **_abl(fraud)},
               {"variant": f"Java SQL velocity as measured ({bench.state_backend})", **_abl(tp.get("sql"))}]
        other = "hashmap" if bench.state_backend == "rocksdb" else "rocksdb"
        plan = [("fraud job, features only: no scoring UDF (features to Kafka)", "fraud", dict(features_only=True)),
                ("fraud job, bigger Python bundles (bundle.size, arrow.batch.size 10000, bundle.time 1 s)", "fraud",
                 dict(extra=["-D", "python.fn-execution.bundle.size=10000", "-D",
                             "python.fn-execution.arrow.batch.size=10000", "-D", "python.fn-execution.bundle.time=1000"])),
                (f"fraud job, {other} state backend", "fraud", dict(backend=other)),
                (f"Java SQL velocity, {other} state backend", "sql", dict(backend=other))]
        for name, job, kw in plan:
            p.step(f"profile ablation: {name}")
            saved = bench.state_backend
            bench.state_backend = kw.pop("backend", saved)
            try:
                if job == "fraud":
                    r = run_fraud(bench, topic, events, "fraud-ablation", model=args.model, **kw)
                else:
                    r = run_sql(bench, topic, events, "sql-ablation")
            except SetupError as e:
                abl.append({"variant": name, "error": str(e)})
                continue
            finally:
                bench.state_backend = saved
            p.info(_tp_line(name, r))
            abl.append({"variant": name, **_abl(r), "operators": operator_shares(r.get("rest")),
                        "cpu": r.get("cpu_breakdown")})
        out["ablations"] = abl
    return out


def _abl(r: Optional[dict]) -> dict:
    r = r or {}
    return {k: r.get(k) for k in ("events_per_s", "events_per_s_span", "events_per_cpu_s", "net_s", "cpu_s", "loadavg")}
