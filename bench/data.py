"""Benchmark data: generated payments, as Parquet or pre-loaded into a Kafka topic."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from bench.runner import Bench, JobProcess
from jobs.runtime import SetupError


def payments_frame(n: int, cards: int, days: float, seed: int):
    from features.synthetic import generate_payments

    return generate_payments(n, seed=seed, n_cards=cards, days=days)


def write_payments(df, path: Path) -> Path:
    import pyarrow.parquet as pq

    from features.contracts import PAYMENT
    from features.synthetic import to_arrow

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_arrow(df, PAYMENT), path)
    return path


def load_topic(bench: Bench, df, topic: str, partitions: int, loader: str, label: str) -> dict:
    """Pre-load ``topic`` with the payments of ``df`` (file order; key card_id; timestamp event_time)."""
    from features.contracts import PAYMENT
    from features.synthetic import to_arrow
    from streamscore.kafka_broker import ensure_topic
    from streamscore.produce import produce_rows

    ensure_topic(bench.bootstrap, topic, partitions=partitions)
    bench.topics.append(topic)
    use_flink = loader == "flink" or (loader == "auto" and len(df) > 300_000)
    t0 = time.time()
    if use_flink:
        path = write_payments(df, bench.work / "data" / f"{topic}.parquet")
        job = JobProcess(bench, f"load-{label}", {"kind": "load", "input": str(path), "topic": topic,
                                                  "bootstrap": bench.bootstrap, "parallelism": 1},
                         out_topic=topic, threads=False, rest=False).start(quiet=False)
        res = job.wait(expected=len(df), desc=f"loading {topic}")
        path.unlink(missing_ok=True)
        if res.get("error") or res.get("outputs") != len(df):
            raise SetupError(f"loading {topic} failed ({res.get('outputs')} of {len(df)} records): "
                             f"{res.get('error')}; see {res['log']}")
        how = "Flink SQL loader"
    else:
        table = to_arrow(df, PAYMENT, with_raw=False).drop(list(PAYMENT.label_names))
        produce_rows(bench.bootstrap, topic, table, PAYMENT, progress=sys.stderr.isatty())
        how = "kafka-python (streamscore.produce.produce_rows)"
    secs = time.time() - t0
    bench.progress.info(f"loaded {len(df):,} events into {topic} ({partitions} partition(s)) with {how} "
                        f"in {secs:.1f} s")
    return {"topic": topic, "events": len(df), "partitions": partitions, "loader": how, "seconds": round(secs, 1)}
