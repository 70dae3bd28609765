"""Backpressure: feed the running fraud job at twice the rate it sustains, for a minute. Kafka
buffers the excess, the job falls behind (consumer lag grows), catches up, and no decision is lost.

    rate ^      producer at 2R for 60 s
         |   ┌──────────────────┐
       2R|   │                  │
        R|---│------------------│-----------   job, at its sustainable rate R
         |   └──────────────────┘
         +-------------------------------------> time: lag grows, then drains to 0
"""
from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest
from kafka import KafkaConsumer

from features.contracts import PAYMENT
from features.synthetic import generate_payments, to_arrow
from streamscore.cli import build_parser
from streamscore.kafka_broker import consumer_lag
from streamscore.produce import produce_rows
from jobs.run import prepare

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WARMUP = 30_000
OVERLOAD_S = float(os.environ.get("STREAMSCORE_BACKPRESSURE_SECONDS", 60))


class DecisionCounter(threading.Thread):
    """Counts distinct decided event_ids on a topic and keeps each record's decide_ms."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                      enable_auto_commit=False, consumer_timeout_ms=500)
        self.decide_ms: dict = {}
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for records in self.consumer.poll(timeout_ms=500).values():
                for m in records:
                    d = json.loads(m.value)
                    self.decide_ms.setdefault(d["event_id"], d["decide_ms"])

    def wait_for(self, n: int, timeout_s: float) -> bool:
        deadline = time.time() + timeout_s
        while len(self.decide_ms) < n and time.time() < deadline:
            time.sleep(0.5)
        return len(self.decide_ms) >= n


def test_twice_the_sustainable_rate_loses_nothing(kafka_broker, tmp_path, capsys):
    bootstrap = kafka_broker.bootstrap
    topic, out, group = (f"fraud-bp-{int(time.time())}", f"fraud-bp-decisions-{int(time.time())}",
                         f"bp-{int(time.time())}")
    args = build_parser().parse_args([
        "run", "fraud", "--topic", topic, "--bootstrap", bootstrap, "--group-id", group,
        "--decisions", f"kafka:{out}", "--features-out", "none", "--dead-letters", "none", "--late", "none",
        "--checkpoint-dir", str(tmp_path / "ckpt"), "--checkpoint-interval-ms", "2000"])
    warmup = generate_payments(WARMUP, seed=31)
    produce_rows(bootstrap, topic, to_arrow(warmup, PAYMENT), PAYMENT)
    counter = DecisionCounter(bootstrap, out)
    counter.start()
    env, _, _ = prepare(args)
    client = env.execute_async("fraud-backpressure")
    try:
        # 1. the job's sustainable rate R, from the decide times of a pre-loaded backlog
        assert counter.wait_for(WARMUP, 300), "warm-up backlog not decided"
        t = np.sort(np.array(list(counter.decide_ms.values())))
        body = t[len(t) // 3:]  # skip the first third: Python workers and state still warming up
        rate = (len(body) - 1) / max((body[-1] - body[0]) / 1000, 1e-3)

        # 2. twice that, for a minute, while sampling the job's consumer lag
        n_over = int(2 * rate * OVERLOAD_S)
        # the overload continues the stream's event time (a jump of hours would be time_skew)
        frame = generate_payments(n_over, seed=32, start_ms=int(warmup["event_time"].max()) + 1_000)
        frame["event_id"] = "over-" + frame["event_id"].astype(str)  # the generator numbers ids from 1 again
        lags, done = [], threading.Event()

        def sample():
            while not done.is_set():
                lags.append((time.time(), sum(consumer_lag(bootstrap, group, [topic]).values())))
                time.sleep(2)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.time()
        sent = produce_rows(bootstrap, topic, to_arrow(frame, PAYMENT), PAYMENT, rate=2 * rate)
        produced_s = time.time() - t0
        total = WARMUP + n_over
        caught_up = counter.wait_for(total, 600)
        t_caught = time.time() - t0
        done.set()
        sampler.join()
        deadline = time.time() + 60  # offsets are committed when a checkpoint completes
        while (final_lag := sum(consumer_lag(bootstrap, group, [topic]).values())) and time.time() < deadline:
            time.sleep(2)
    finally:
        client.cancel().result()
        counter.stop.set()

    achieved = n_over / produced_s
    peak = max(n for _, n in lags)
    with capsys.disabled():
        print(f"\n[backpressure] sustainable {rate:,.0f} ev/s; produced {n_over:,} at {achieved:,.0f} ev/s "
              f"({achieved / rate:.2f}x) for {produced_s:.0f} s; peak consumer lag {peak:,}; "
              f"all decided {t_caught:.0f} s after the overload began; final lag {final_lag}")
        print("[backpressure] lag samples (s, records): " +
              ", ".join(f"{ts - t0:.0f}:{n}" for ts, n in lags[::3]))
    assert sent["sent"] == n_over
    assert achieved >= 1.5 * rate, "the producer could not overload the job; the test proves nothing"
    assert caught_up, f"only {len(counter.decide_ms):,} of {total:,} decided"
    assert len(counter.decide_ms) == total  # nothing lost (distinct event ids)
    assert peak > 0.05 * rate * OVERLOAD_S  # the job really fell behind
    assert final_lag == 0
