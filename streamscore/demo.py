"""`streamscore demo`: the whole fraud story on this machine, step by step.

Starts a local Kafka broker, generates a week of labelled payment history, backfills its
features with Flink (BATCH), trains the models, then generates a new day of payments, sends
it through Kafka and runs the streaming fraud job on a local MiniCluster with the trained
model, and summarises the decisions it wrote back to Kafka. Each step prints the command
that does it, so the demo doubles as a tour of the CLI.
"""
from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

from jobs.runtime import RUN_DIR

DAY_MS = 86_400_000


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the fraud pipeline end to end on a local broker and MiniCluster",
                       description=__doc__)
    p.add_argument("--port", type=int, default=9092, help="local Kafka broker port (default: %(default)s)")
    p.add_argument("--events", type=int, default=120_000, help="payments over 8 days (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--workdir", default=str(RUN_DIR / "demo"))
    p.add_argument("--retrain", action="store_true", help="train even if the demo registry has a model")
    p.add_argument("--keep-broker", action="store_true", help="leave the broker running afterwards")
    p.set_defaults(func=demo)


def _step(n: int, text: str, argv: list | None = None) -> None:
    print(f"\n[{n}] {text}", flush=True)
    if argv:
        print("    $ streamscore " + " ".join(shlex.quote(a) for a in argv), flush=True)


def _call(argv: list) -> None:
    from streamscore.cli import main

    rc = main(argv)
    if rc != 0:
        raise SystemExit(f"demo: `streamscore {' '.join(argv)}` failed (exit {rc})")


def demo(args) -> int:
    from features import scoring
    from streamscore.kafka_broker import KafkaBroker, delete_topics

    t_start = time.time()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    registry = work / "models"

    _step(1, "start a local Kafka broker (KRaft, 127.0.0.1)", ["kafka", "up", "--port", str(args.port)])
    broker = KafkaBroker(port=args.port).start()
    print(f"    {broker.describe()}")
    bootstrap = broker.bootstrap
    try:
        data = work / "payments.parquet"
        _step(2, f"generate {args.events:,} labelled payments over 8 days: planted fraud (< 1%), 1% out of "
                 f"order, a few malformed and late", gen := [
                  "generate", "fraud", "--events", str(args.events), "--seed", str(args.seed), "--days", "8",
                  "--out-of-order", "0.01", "--malformed", "0.001", "--late", "0.001", "--out", str(data)])
        _call(gen)
        history, stream_part, day8 = split_days(data, work)
        if args.retrain or scoring.current_version(registry) is None:
            _step(3, "backfill days 1-7 with the streaming job's own operators in Flink BATCH mode",
                  bf := ["backfill", "fraud", "--input", str(history), "--out", str(work / "history-features"),
                         "--overwrite"])
            _call(bf)
            _step(4, "train rules + IsolationForest + gradient boosting; thresholds chosen on validation days",
                  tr := ["train", "fraud", "--features", str(work / "history-features"), "--model-dir",
                         str(registry)])
            _call(tr)
        else:
            print(f"\n[3-4] model registry {registry} already has {scoring.current_version(registry)} "
                  f"(use --retrain to train again)")
        day = stream_part

        topic = "demo-payments"
        outputs = {k: f"demo-{k}" for k in ("decisions", "dead-letters", "late")}
        delete_topics(bootstrap, [topic, *outputs.values()])
        _step(5, f"send days 7-8 to Kafka topic {topic} (day 7 warms the per-card state; timestamp = event_time)",
              pr := ["produce", "--topic", topic, "--input", str(day), "--bootstrap", bootstrap])
        _call(pr)

        feats = work / "served-features"
        _step(6, "run the streaming fraud job on a local MiniCluster over the whole topic, then stop",
              run := ["run", "fraud", "--topic", topic, "--bootstrap", bootstrap, "--until", "latest",
                      "--model", str(registry), "--decisions", f"kafka:{outputs['decisions']}",
                      "--dead-letters", f"kafka:{outputs['dead-letters']}", "--late", f"kafka:{outputs['late']}",
                      "--features-out", f"parquet:{feats}", "--checkpoint-dir", str(work / "checkpoints")])
        if feats.exists():
            import shutil

            shutil.rmtree(feats)
        _call(run)

        _step(7, f"read the decisions back from Kafka topic {outputs['decisions']}")
        summarise(bootstrap, outputs, day, day8)
    finally:
        if not args.keep_broker:
            broker.stop()
            print("\nkafka: stopped (run with --keep-broker to keep it, then `streamscore kafka down`)")
    print(f"\ndemo finished in {time.time() - t_start:.0f} s; files under {work}")
    return 0


def split_days(data: Path, work: Path):
    """Days 1-7 (training history), days 7-8 (the stream), and day 8's first instant."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(data)
    t = table["event_time"]
    t0 = pc.min(t).as_py()
    day7, day8 = t0 + 6 * DAY_MS, t0 + 7 * DAY_MS
    bad = pc.is_null(t)  # malformed rows carry no event_time: keep them in both parts
    history = table.filter(pc.or_kleene(bad, pc.less(t, day8)))
    stream = table.filter(pc.or_kleene(bad, pc.greater_equal(t, day7)))
    paths = work / "history.parquet", work / "stream.parquet"
    pq.write_table(history, paths[0])
    pq.write_table(stream, paths[1])
    return paths[0], paths[1], day8


def consume_all(bootstrap: str, topic: str, idle_ms: int = 3000) -> list:
    from kafka import KafkaConsumer

    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=idle_ms, isolation_level="read_committed")
    try:
        return [json.loads(m.value) for m in c]
    finally:
        c.close()


def summarise(bootstrap: str, outputs: dict, day_file: Path, day8_ms: int) -> None:
    import numpy as np
    import pyarrow.parquet as pq

    decisions = consume_all(bootstrap, outputs["decisions"])
    dead = consume_all(bootstrap, outputs["dead-letters"])
    late = consume_all(bootstrap, outputs["late"])
    day = pq.read_table(day_file, columns=["event_id", "event_time", "is_fraud", "fraud_pattern"]).to_pandas()
    n_in = len(day)
    print(f"    in {n_in:,} = decided {len(decisions):,} + dead-lettered {len(dead):,} + late {len(late):,}"
          f"{'' if n_in == len(decisions) + len(dead) + len(late) else '  (MISMATCH)'}")
    if not decisions:
        return
    decisions = [d for d in decisions if d["event_time"] >= day8_ms]
    day = day[day["event_time"] >= day8_ms]
    print(f"    day 8 only ({len(decisions):,} decisions):")
    mix = {}
    for d in decisions:
        mix[d["decision"]] = mix.get(d["decision"], 0) + 1
    print("    decisions: " + ", ".join(f"{k} {v:,} ({v / len(decisions):.2%})" for k, v in sorted(mix.items())))
    fb = sum(1 for d in decisions if d["fallback"])
    print(f"    model {decisions[0]['model_version']}, rule fallbacks {fb:,}")
    labels = day.set_index("event_id")
    flagged = {d["event_id"] for d in decisions if d["decision"] != "approve"}
    fraud = set(labels.index[labels["is_fraud"].astype("boolean").fillna(False).astype(bool)])
    hit = len(flagged & fraud)
    print(f"    planted fraud {len(fraud):,}: {hit:,} stepped up or blocked (recall {hit / max(len(fraud), 1):.1%}),"
          f" precision of flags {hit / max(len(flagged), 1):.1%}")
    lat = np.array([d["decide_ms"] - d["ingest_ms"] for d in decisions])
    print(f"    ingest -> decision inside the job (replay of a pre-loaded topic): p50 {np.percentile(lat, 50):.0f} ms,"
          f" p99 {np.percentile(lat, 99):.0f} ms")
    blocked = [d for d in decisions if d["decision"] == "block"][:3]
    for d in blocked:
        pattern = labels.loc[d["event_id"], "fraud_pattern"] if d["event_id"] in labels.index else None
        print(f"    e.g. block {d['event_id']} card {d['card_id']} score {d['score']:.2f} reasons "
              f"{','.join(d['reasons']) or '-'} (planted: {pattern or 'legit'})")
    if dead:
        reasons = {}
        for d in dead:
            reasons[d["reason"]] = reasons.get(d["reason"], 0) + 1
        print("    dead letters by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))
