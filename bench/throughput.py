"""Throughput and scaling sections: the fraud job vs the Java SQL reference over a pre-loaded topic."""
from __future__ import annotations

from bench.data import load_topic, payments_frame
from bench.report import fmt_num
from bench.runner import Bench, run_fraud, run_sql
from bench.settings import TARGETS
from bench.stats import ratio


def section_throughput(bench: Bench, args) -> dict:
    p = bench.progress
    p.step(f"throughput: generate {args.events:,} payments ({args.cards:,} cards, {args.days} days) "
           f"and pre-load a Kafka topic")
    df = payments_frame(args.events, args.cards, args.days, args.seed)
    topic = bench.name("events")
    load = load_topic(bench, df, topic, 1, args.loader, "throughput")
    del df
    p.step(f"throughput: fraud job over {args.events:,} events (rules{' + model' if args.model else ''}, "
           f"decisions to Kafka)")
    fraud = run_fraud(bench, topic, args.events, "fraud", model=args.model)
    p.info(_tp_line("fraud job", fraud))
    p.step(f"throughput: Java-only Flink SQL velocity job over the same {args.events:,} events")
    sql = run_sql(bench, topic, args.events, "sql-velocity")
    p.info(_tp_line("SQL job", sql))
    r = ratio(fraud["events_per_s"], sql["events_per_s"])
    p.info(f"ratio fraud/SQL {fmt_num(r, 2)} (target >= {TARGETS['throughput_ratio']})")
    return {"events": args.events, "cards": args.cards, "days": args.days, "load": load, "topic": topic,
            "fraud": fraud, "sql": sql, "ratio": r, "ratio_span": ratio(fraud["events_per_s_span"], sql["events_per_s_span"]),
            "ratio_cpu": ratio(fraud["events_per_cpu_s"], sql["events_per_cpu_s"]),
            "note": ("events/s (net) = events / JobExecutionResult.getNetRuntime(): from job submission to "
                     "finish inside the MiniCluster, so JVM and MiniCluster start-up are excluded, task "
                     "deployment and Python worker start are included. events/s (span) = events / time "
                     "between the first and the last output record's Kafka timestamp (steady state). "
                     "events/CPU s = events / CPU seconds of every process of the job (JVM, Python workers, "
                     "client), which is what matters on a shared machine. Both jobs: parallelism 1, "
                     f"{bench.state_backend} state, checkpoints every 10 s, Kafka sink at-least-once.")}


def _tp_line(name: str, r: dict) -> str:
    return (f"{name}: {fmt_num(r.get('events_per_s'))} events/s (net {fmt_num(r.get('net_s'), 1)} s), "
            f"{fmt_num(r.get('events_per_s_span'))} events/s steady, {fmt_num(r.get('events_per_cpu_s'))} "
            f"events/CPU s, wall {fmt_num(r.get('wall_s'), 1)} s, load {r.get('loadavg')}")


def section_scaling(bench: Bench, args) -> dict:
    p = bench.progress
    p.step(f"scaling: pre-load {args.events:,} events into a 2-partition topic")
    df = payments_frame(args.events, args.cards, args.days, args.seed)
    topic = bench.name("events2p")
    load = load_topic(bench, df, topic, 2, args.loader, "scaling")
    del df
    runs = []
    for job, par in (("fraud", 1), ("fraud", 2), ("sql", 1), ("sql", 2)):
        p.step(f"scaling: {job} job, parallelism {par}")
        if job == "fraud":
            r = run_fraud(bench, topic, args.events, f"fraud-p{par}", parallelism=par, model=args.model)
        else:
            r = run_sql(bench, topic, args.events, f"sql-p{par}", parallelism=par)
        p.info(_tp_line(f"{job} p{par}", r))
        base = next((x for x in runs if x["job"] == job and x["parallelism"] == 1), None)
        runs.append({"job": job, "parallelism": par, "events_per_s": r["events_per_s"],
                     "events_per_s_span": r["events_per_s_span"], "events_per_cpu_s": r["events_per_cpu_s"],
                     "speedup": ratio(r["events_per_s"], base["events_per_s"]) if base else 1.0,
                     "net_s": r["net_s"], "cpu_s": r["cpu_s"], "loadavg": r["loadavg"],
                     "timeline": r["timeline"], "rest": r.get("rest")})
    return {"events": args.events, "load": load, "runs": runs}
