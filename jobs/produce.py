"""Replay a Parquet file of events into a Kafka topic, in file order, as the contract's JSON.

Each record: value = ``contract.to_json(row)``, key = the contract's key field (UTF-8), record
timestamp = ``event_time`` (so Flink's event time is the Kafka timestamp). A row whose RAW_PAYLOAD
column is set is sent verbatim with no key, stamped with the previous good row's time (or now):
that is how malformed records are replayed. Rows are not validated here; the jobs do that.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional

from features.contracts import CONTRACTS, RAW_PAYLOAD, EventContract, InvalidEvent, contract_for, parse_event_time
from jobs import runtime
from jobs.runtime import SetupError

# Throughput over latency: a replay is a bulk load. Idempotence (kafka-python's default) keeps
# file order per partition even when a batch is retried, which event-time replays depend on.
PRODUCER_CONFIG = {
    "acks": "all",
    "linger_ms": 20,
    "batch_size": 512 * 1024,
    "max_request_size": 4 * 1024 * 1024,
}
BATCH_ROWS = 10_000


def _rows(source: Any) -> Iterator[Mapping[str, Any]]:
    """Row dicts from a pyarrow Table/RecordBatch/ParquetFile, a pandas DataFrame or an iterable of dicts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(source, pq.ParquetFile):
        batches: Iterable = source.iter_batches(batch_size=BATCH_ROWS)
    elif type(source).__name__ == "DataFrame":
        batches = pa.Table.from_pandas(source, preserve_index=False).to_batches(max_chunksize=BATCH_ROWS)
    elif isinstance(source, pa.Table):
        batches = source.to_batches(max_chunksize=BATCH_ROWS)
    elif isinstance(source, pa.RecordBatch):
        batches = [source]
    else:
        yield from source
        return
    for batch in batches:
        names = batch.schema.names
        for values in zip(*(_column_values(c) for c in batch.columns)):
            yield dict(zip(names, values))


def _column_values(col) -> list:
    """A column as Python objects; via numpy where that is exact (3x faster than to_pylist)."""
    import pyarrow as pa

    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or (
            col.null_count == 0 and (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t))):
        return col.to_numpy(zero_copy_only=False).tolist()
    return col.to_pylist()  # nulls in a numeric column would turn into NaN through numpy


def _count(source: Any) -> Optional[int]:
    if hasattr(source, "num_rows"):
        return source.num_rows
    if hasattr(source, "metadata") and hasattr(source.metadata, "num_rows"):
        return source.metadata.num_rows
    try:
        return len(source)
    except TypeError:
        return None


def _value(contract: EventContract, row: Mapping[str, Any]) -> bytes:
    try:
        return contract.to_json(row).encode("utf-8")
    except ValueError:
        # NaN/inf in a historic row: send it as JSON with NaN tokens, and let the job's
        # contract check dead-letter it (a replay shows what the data holds).
        names = contract.field_names + contract.label_names
        return json.dumps({k: row[k] for k in names if k in row}, separators=(",", ":")).encode("utf-8")


def _key(value: Any) -> Optional[bytes]:
    if value is None:
        return None
    return (value if isinstance(value, str) else str(value)).encode("utf-8")


def _timestamp(value: Any) -> Optional[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return parse_event_time(value)
    except InvalidEvent:
        return None


def use_fast_crc32c() -> str:
    """Make kafka-python checksum record batches in C. Returns the implementation in use.

    Without the optional `crc32c` package kafka-python computes every batch's CRC-32C in pure
    Python (about 7 MB/s here), which capped a replay at ~11k events/s. crcmod's C extension
    (installed with apache-beam, a PyFlink dependency) is ~50x faster; it is used only if it
    reproduces the CRC-32C check value.
    """
    from kafka.record import default_records, util

    if getattr(util, "crc32c_c", None) is not None:
        return "crc32c"
    if getattr(util.calc_crc32c, "_streamscore", False):
        return "crcmod"
    try:
        import crcmod.predefined

        fast = sys.modules["crcmod.crcmod"]._usingExtension
        crc = crcmod.predefined.mkCrcFun("crc-32c")
    except (ImportError, KeyError, AttributeError, ValueError):
        return "pure-python"
    if not fast or crc(b"123456789") != 0xE3069283:
        return "pure-python"

    def calc_crc32c(memview):
        return crc(memview)

    calc_crc32c._streamscore = True
    # default_records imported the function by name, so patch both references.
    util.calc_crc32c = default_records.calc_crc32c = calc_crc32c
    return "crcmod"


def make_producer(bootstrap: str, **overrides):
    """A kafka-python KafkaProducer tuned for bulk replays; SetupError if no broker answers."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    use_fast_crc32c()
    conf = dict(PRODUCER_CONFIG, bootstrap_servers=bootstrap, client_id="streamscore-produce")
    if "bootstrap_timeout_ms" in KafkaProducer.DEFAULT_CONFIG:  # kafka-python >= 3.0
        conf["bootstrap_timeout_ms"] = 10_000
    conf.update(overrides)
    try:
        return KafkaProducer(**conf)
    except KafkaError as e:
        raise SetupError(f"no Kafka broker at {bootstrap} ({e}); start one with `streamscore kafka up`") from None


def produce_rows(bootstrap: str, topic: str, rows_or_table: Any, contract: EventContract,
                 rate: Optional[float] = None, progress: bool = False, producer=None) -> dict:
    """Send rows to ``topic`` in order; ``rate`` paces to events/s. Returns counts and timing.

    Raises SetupError if any record was not delivered.
    """
    from kafka.errors import KafkaError

    if rate is not None and rate <= 0:
        raise ValueError(f"--rate must be > 0 events/s, got {rate}")
    own = producer is None
    producer = producer or make_producer(bootstrap)
    errors: list = []

    def on_error(exc):  # called on the producer's I/O thread
        errors.append(exc)

    total = _count(rows_or_table)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit=" events", unit_scale=True, desc=topic, leave=False, file=sys.stderr)
    key_field = contract.key
    sent = raw_sent = 0
    last_ts: Optional[int] = None
    send = producer.send
    t0 = time.perf_counter()
    try:
        # One partition: name it, and skip kafka-python's per-record murmur2 in pure Python.
        partition = 0 if len(producer.partitions_for(topic) or ()) == 1 else None
        for row in _rows(rows_or_table):
            raw = row.get(RAW_PAYLOAD)
            if raw is not None:
                value = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
                key = None
                ts = last_ts if last_ts is not None else int(time.time() * 1000)
                raw_sent += 1
            else:
                value = _value(contract, row)
                key = _key(row.get(key_field))
                ts = _timestamp(row.get("event_time"))
                if ts is None:
                    ts = last_ts if last_ts is not None else int(time.time() * 1000)
                else:
                    last_ts = ts
            send(topic, value=value, key=key, timestamp_ms=ts, partition=partition).add_errback(on_error)
            sent += 1
            if rate is not None:
                ahead = t0 + sent / rate - time.perf_counter()
                if ahead > 0.001:
                    time.sleep(ahead)
            if bar is not None and sent % 1000 == 0:
                bar.update(1000)
        producer.flush()
    except KafkaError as e:  # e.g. metadata for the topic never arrived (auto-creation off)
        raise SetupError(f"sending to {topic} on {bootstrap} failed after {sent} records: {e}") from None
    finally:
        if bar is not None:
            bar.update(sent % 1000)
            bar.close()
        if own:
            producer.close()
    seconds = time.perf_counter() - t0
    if errors:
        raise SetupError(f"{len(errors)} of {sent} records to {topic} were not delivered: {errors[0]}")
    return {"topic": topic, "sent": sent, "raw": raw_sent, "seconds": seconds,
            "events_per_s": sent / seconds if seconds > 0 else float("inf")}


def contract_of_file(path: str | Path, domain: Optional[str] = None):
    """(ParquetFile, contract): the contract from --domain, else from the file's "contract" metadata."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid and friends for non-Parquet input
        raise ValueError(f"{path} is not a readable Parquet file ({e})") from None
    meta = pf.schema_arrow.metadata or {}
    named = meta.get(b"contract", b"").decode() or None
    if domain:
        contract = contract_for(domain)
        if named and named != contract.name:
            raise ValueError(f"{path} holds {named} events but --domain {domain} means {contract.name} events")
        return pf, contract
    if named is None:
        raise ValueError(f"{path} has no 'contract' schema metadata; pass --domain fraud|recsys|iot")
    if named not in CONTRACTS:
        raise ValueError(f"{path} names unknown contract {named!r}; pass --domain fraud|recsys|iot")
    return pf, CONTRACTS[named]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("produce", help="replay a Parquet file of events into a Kafka topic",
                              description=__doc__.split("\n")[0])
    p.add_argument("--topic", required=True)
    p.add_argument("--input", required=True, metavar="FILE", help="Parquet file written with the contract's schema")
    p.add_argument("--rate", type=float, default=None, help="events/s (default: as fast as possible)")
    p.add_argument("--bootstrap", default=runtime.DEFAULT_BOOTSTRAP, metavar="HOST:PORT",
                   help=f"Kafka bootstrap servers (default {runtime.DEFAULT_BOOTSTRAP})")
    p.add_argument("--domain", choices=("fraud", "recsys", "iot"), default=None,
                   help="event contract (default: from the file's schema metadata)")
    p.set_defaults(func=run)


def run(args) -> int:
    pf, contract = contract_of_file(args.input, args.domain)
    stats = produce_rows(args.bootstrap, args.topic, pf, contract, rate=args.rate,
                         progress=sys.stderr.isatty())
    raw = f", {stats['raw']} verbatim" if stats["raw"] else ""
    print(f"produce: sent {stats['sent']:,} {contract.name} events{raw} to {args.topic} on {args.bootstrap} "
          f"in {stats['seconds']:.2f} s ({stats['events_per_s']:,.0f} events/s)")
    return 0
