"""Latency section: event-to-decision latency at fixed producer rates, per delivery guarantee and option set."""
from __future__ import annotations

import json
import re
import shlex
import time
from typing import Callable, Optional

from bench.cpu import loadavg
from bench.data import payments_frame
from bench.observe import checkpoint_history
from bench.options import parse_rates, parse_variant
from bench.report import fmt_num, _fmt_opts
from bench.runner import Bench, _cleanup_dir, _dflags, fraud_argv, JobProcess
from bench.stats import latency_summary
from jobs.runtime import SetupError


_INGEST = re.compile(rb'"ingest_ms":(\d+)')
_DECIDE = re.compile(rb'"decide_ms":(\d+)')


def _consume_decisions(bootstrap: str, topic: str, read_committed: bool, out_path: str, ready, stop, counter) -> None:
    """Runs in its own process: records (event_id, arrival wall time, ingest_ms, decide_ms)."""
    import pickle

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             client_id="streamscore-bench-latency", fetch_max_wait_ms=100,
                             isolation_level="read_committed" if read_committed else "read_uncommitted")
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    ready.set()
    raw = []
    n = 0
    while not stop.is_set():
        batch = consumer.poll(timeout_ms=20)
        now = time.time()
        for msgs in batch.values():
            for m in msgs:
                raw.append((m.key, now, m.value))
            n += len(msgs)
        counter.value = n
    consumer.close()
    rows = []
    for key, arrived, value in raw:
        i, d = _INGEST.search(value or b""), _DECIDE.search(value or b"")
        rows.append(((key or b"").decode(), arrived, int(i.group(1)) if i else None, int(d.group(1)) if d else None))
    with open(out_path, "wb") as f:
        pickle.dump(rows, f)


class PacedProducer:
    """Sends payment events at a fixed rate, stamping event_time/timestamp with the wall clock
    and remembering each event_id's send time."""

    def __init__(self, bootstrap: str, topic: str, templates: list):
        from streamscore.produce import make_producer

        self.topic = topic
        self.producer = make_producer(bootstrap, linger_ms=0, acks=1, batch_size=64 * 1024)
        self.templates = templates  # (card_id bytes, JSON text after event_time)
        self.sent: dict = {}
        self.i = 0
        self.producer.partitions_for(topic)

    def send_one(self, prefix: str) -> None:
        card, tail = self.templates[self.i % len(self.templates)]
        self.i += 1
        eid = f"{prefix}-{self.i:08d}"
        now = time.time()
        ms = int(now * 1000)
        value = f'{{"event_id":"{eid}","event_time":{ms},{tail}'.encode()
        self.producer.send(self.topic, value=value, key=card, timestamp_ms=ms, partition=0)
        self.sent[eid] = now

    def run(self, rate: float, seconds: float, prefix: str, stop_when: Optional[Callable[[], bool]] = None) -> dict:
        total = max(1, int(rate * seconds))
        t0 = time.perf_counter()
        n = 0
        while n < total:
            due = min(total, int((time.perf_counter() - t0) * rate) + 1)
            while n < due:
                self.send_one(prefix)
                n += 1
            if stop_when is not None and stop_when():
                break
            ahead = t0 + n / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        self.producer.flush()
        secs = time.perf_counter() - t0
        return {"sent": n, "seconds": round(secs, 3), "achieved_rate": round(n / secs, 1) if secs > 0 else None}

    def close(self) -> None:
        self.producer.close()


def _templates(df) -> list:
    cols = ("card_id", "merchant_id", "mcc", "amount", "currency", "lat", "lon", "device_id")
    out = []
    for row in df[list(cols)].itertuples(index=False):
        d = dict(zip(cols, row))
        dev = d["device_id"]
        d["device_id"] = None if not isinstance(dev, str) else dev
        body = json.dumps({k: (float(v) if k in ("amount", "lat", "lon") else v) for k, v in d.items()},
                          separators=(",", ":"))
        out.append((d["card_id"].encode(), body[1:]))
    return out


def latency_run(bench: Bench, args, variant: str, options: dict, delivery: str, rates: list, templates: list) -> dict:
    import multiprocessing as mp
    import pickle

    from streamscore.kafka_broker import ensure_topic

    p = bench.progress
    in_topic, out_topic = bench.name(f"lat-in-{variant}"), bench.name(f"lat-out-{variant}")
    for t in (in_topic, out_topic):
        ensure_topic(bench.bootstrap, t, partitions=1)
        bench.topics.append(t)
    ckpt = bench.work / "ckpt" / in_topic
    extra = []
    if delivery == "exactly-once":
        extra += ["--checkpoint-interval-ms", str(args.eo_checkpoint_ms)]
    argv = fraud_argv(bench, in_topic, out_topic, ckpt, 1, args.model, until=None, delivery=delivery, extra=extra)
    run = {"variant": variant, "delivery": delivery, "options": options, "phases": [],
           "checkpoint_interval_ms": args.eo_checkpoint_ms if delivery == "exactly-once" else 10_000}
    ctx = mp.get_context("spawn")
    ready, stop, counter = ctx.Event(), ctx.Event(), ctx.Value("q", 0)
    dump = bench.work / "logs" / f"{out_topic}.pickle"
    dump.parent.mkdir(parents=True, exist_ok=True)
    consumer = ctx.Process(target=_consume_decisions, args=(bench.bootstrap, out_topic, delivery == "exactly-once",
                                                            str(dump), ready, stop, counter), daemon=True)
    consumer.start()
    ready.wait(60)
    producer = PacedProducer(bench.bootstrap, in_topic, templates)
    job = JobProcess(bench, f"latency-{variant}-{delivery}",
                     {"kind": "cli", "argv": argv, "options": dict(options, **{"web.checkpoints.history": "100"})},
                     threads=False).start()
    run["command"] = "streamscore " + " ".join(shlex.quote(a) for a in argv + _dflags(job.spec))
    try:
        # warm-up: a trickle until the first decision comes back, then a few seconds at the first rate
        t0 = time.monotonic()
        bar = p.bar(f"latency {variant}/{delivery}: waiting for the first decision", None, unit=" s")
        while counter.value == 0:
            if job.proc.poll() is not None:
                raise SetupError(f"the fraud job exited during warm-up (see {job.log_path})")
            if time.monotonic() - t0 > args.warmup_timeout:
                raise SetupError(f"no decision within {args.warmup_timeout:.0f} s of starting the job "
                                 f"(see {job.log_path})")
            producer.run(50, 0.5, "warm")
            bar.set(int(time.monotonic() - t0))
        bar.close()
        run["first_decision_after_s"] = round(time.monotonic() - t0, 1)
        # JIT compilation of a fresh JVM burns a core for tens of seconds: measure after it
        producer.run(rates[0], args.warmup_seconds, "warm")
        time.sleep(2)
        for rate in rates:
            prefix = f"r{rate}"
            p.info(f"{variant}/{delivery}: {rate:,} events/s for {args.latency_seconds:.0f} s")
            before = counter.value
            ph = producer.run(rate, args.latency_seconds, prefix)
            # drain: wait until everything sent came back, or the deadline
            deadline = time.monotonic() + args.drain_seconds + (run["checkpoint_interval_ms"] / 1000
                                                                if delivery == "exactly-once" else 0)
            want = before + ph["sent"]
            while counter.value < want and time.monotonic() < deadline and job.proc.poll() is None:
                time.sleep(0.2)
            ph.update({"rate": rate, "received_by_drain": counter.value - before, "loadavg": loadavg()})
            run["phases"].append(ph)
            time.sleep(1)
    except SetupError as e:
        run["error"] = str(e)
    finally:
        run["checkpoints"] = checkpoint_history(job.rest_port)
        job.kill()
        jr = job.finish()
        stop.set()
        consumer.join(120)
        producer.close()
        _cleanup_dir(ckpt)
    run["cpu_s"] = jr.get("cpu_s")
    run["loadavg"] = jr.get("loadavg")
    rows = pickle.loads(dump.read_bytes()) if dump.exists() else []
    dump.unlink(missing_ok=True)
    arrivals = {}
    internal = {}
    for eid, arrived, ingest, decide in rows:
        if eid not in arrivals:  # at-least-once may duplicate: the first arrival counts
            arrivals[eid] = arrived
            if ingest is not None and decide is not None:
                internal[eid] = decide - ingest
    for ph in run["phases"]:
        prefix = f"r{ph['rate']}-"
        ids = [e for e in producer.sent if e.startswith(prefix)]
        lat = [1000 * (arrivals[e] - producer.sent[e]) for e in ids if e in arrivals]
        ph["consumer"] = latency_summary(lat)
        ph["internal"] = latency_summary(internal[e] for e in ids if e in internal)
        ph["missing"] = len(ids) - len(lat)
        ph["samples"] = _downsample(sorted(lat), 400)
        ph["series"] = latency_series([(producer.sent[e], 1000 * (arrivals[e] - producer.sent[e]))
                                       for e in ids if e in arrivals])
        p.info(f"  {ph['rate']:,}/s: consumer p50/p95/p99 {fmt_num(ph['consumer']['p50'], 1)}/"
               f"{fmt_num(ph['consumer']['p95'], 1)}/{fmt_num(ph['consumer']['p99'], 1)} ms, internal p99 "
               f"{fmt_num(ph['internal']['p99'], 1)} ms, missing {ph['missing']}")
    return run


def latency_series(points: list, bins: int = 400) -> list:
    """(send wall time s, latency ms) thinned to at most ``bins`` points, keeping each bin's worst.

    >>> latency_series([(0.0, 5.0), (1.0, 50.0), (3.0, 7.0), (4.0, 9.0)], bins=2)
    [[1.0, 50.0], [4.0, 9.0]]
    """
    if not points:
        return []
    points = sorted(points)
    t0, t1 = points[0][0], points[-1][0]
    width = (t1 - t0) / bins or 1.0
    worst: dict = {}
    for t, v in points:
        b = min(int((t - t0) / width), bins - 1)
        if b not in worst or v > worst[b][1]:
            worst[b] = (t, v)
    return [[round(t, 3), round(v, 2)] for _, (t, v) in sorted(worst.items())]


def _downsample(sorted_vals: list, k: int) -> list:
    """k evenly spaced quantiles of a sorted list (for CDF plots)."""
    if len(sorted_vals) <= k:
        return [round(v, 2) for v in sorted_vals]
    return [round(sorted_vals[int(i * (len(sorted_vals) - 1) / (k - 1))], 2) for i in range(k)]


def section_latency(bench: Bench, args) -> dict:
    p = bench.progress
    rates = parse_rates(args.rates)
    variants = [parse_variant(v) for v in args.latency_variant]
    deliveries = [d.strip() for d in args.delivery.split(",") if d.strip()]
    df = payments_frame(20_000, min(args.cards, 20_000), args.days, args.seed + 2)
    templates = _templates(df)
    runs = []
    plan = [(v, o, "at-least-once") for v, o in variants if "at-least-once" in deliveries]
    if "exactly-once" in deliveries:
        plan.append((variants[0][0], variants[0][1], "exactly-once"))
    for variant, options, delivery in plan:
        p.step(f"latency: fraud job, {delivery}, {variant} ({_fmt_opts(options)}), rates {rates}")
        runs.append(latency_run(bench, args, variant, options, delivery, rates, templates))
    return {"rates": rates, "seconds_per_rate": args.latency_seconds, "runs": runs,
            "note": ("Consumer-observed: a kafka-python consumer (own process) on the decisions topic stamps each "
                     "arrival with the wall clock, minus the producer's wall clock just before send() of that "
                     "event_id (producer linger 0, acks=1). Internal: decide_ms - ingest_ms from the decision "
                     "record (the parse operator's clock to the scoring UDF's). Events carry event_time = send "
                     "time; each rate runs against the same job after a warm-up. Exactly-once output is only "
                     f"visible after a checkpoint ({args.eo_checkpoint_ms} ms interval there), read_committed.")}
