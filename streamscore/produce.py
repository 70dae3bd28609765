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
from collections import deque
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional

from features.contracts import CONTRACTS, RAW_PAYLOAD, EventContract, InvalidEvent, contract_for, parse_event_time
from jobs import kafka_limits, runtime
from jobs.runtime import SetupError

# Throughput over latency: a replay is a bulk load. Idempotence (kafka-python's default) keeps
# file order per partition even when a batch is retried, which event-time replays depend on.
PRODUCER_CONFIG = {
    "acks": "all",
    "linger_ms": 20,
    "batch_size": 512 * 1024,
    # what the project's broker accepts (jobs/kafka_limits.py): a larger row is refused here, by row
    "max_request_size": kafka_limits.MAX_REQUEST_BYTES,
}
BATCH_ROWS = 10_000


def _rows(source: Any, skip: int = 0) -> Iterator[Mapping[str, Any]]:
    """Row dicts from a pyarrow Table/RecordBatch/ParquetFile, a pandas DataFrame or an iterable of
    dicts, from row ``skip`` on (whole batches are skipped without converting them)."""
    import itertools

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
        yield from itertools.islice(source, skip, None)
        return
    for batch in batches:
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        if skip:
            batch, skip = batch.slice(skip), 0
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


class ProduceStopped(SetupError):
    """Sending cannot go on (the broker went away, authorisation failed); ``resume_row`` is the
    first row not known to be delivered."""

    def __init__(self, message: str, resume_row: int):
        super().__init__(message)
        self.resume_row = resume_row


# A record the broker cannot store: that row is reported and skipped, sending goes on. Anything
# else (timeouts, no broker, authorisation) concerns every row after it: the replay stops.
def _is_row_error(exc: BaseException) -> bool:
    from kafka import errors

    return isinstance(exc, (errors.MessageSizeTooLargeError, errors.RecordListTooLargeError,
                            errors.InvalidTimestampError, errors.CorruptRecordError, errors.InvalidRecordError))


def _row_reason(exc: BaseException, size: int) -> tuple:
    """(kind, one-line reason) of a row the broker cannot take."""
    from kafka import errors

    if isinstance(exc, (errors.MessageSizeTooLargeError, errors.RecordListTooLargeError)):
        return "too_large", (f"record of {size:,} bytes is over the broker's limit of "
                             f"{kafka_limits.MAX_REQUEST_BYTES:,} (max.request.size / message.max.bytes)")
    return type(exc).__name__, f"refused by the broker: {type(exc).__name__}: {str(exc)[:200]}"


MAX_REPORTED_ROWS = 1000  # lines about unsendable rows; further ones are only counted


def _stderr_report(row: int, reason: str) -> None:
    sys.stderr.write(f"produce: row {row} not sent: {reason}\n")


def produce_rows(bootstrap: str, topic: str, rows_or_table: Any, contract: EventContract,
                 rate: Optional[float] = None, progress: bool = False, producer=None, skip_rows: int = 0,
                 report=_stderr_report) -> dict:
    """Send rows to ``topic`` in order; ``rate`` paces to events/s. Returns counts and timing.

    Rows are numbered from 0 in file order; ``skip_rows`` N starts at row N. A row that cannot be
    sent (too large for the broker, not serialisable) is passed to ``report(row, reason)`` (at most
    MAX_REPORTED_ROWS times), counted in ``not_sent`` by kind, and sending goes on. A fatal error
    (no broker, timeouts) raises ProduceStopped naming the row to resume from.
    """
    from kafka.errors import KafkaError

    if rate is not None and rate <= 0:
        raise ValueError(f"--rate must be > 0 events/s, got {rate}")
    if skip_rows < 0:
        raise ValueError(f"--skip-rows must be >= 0, got {skip_rows}")
    own = producer is None
    producer = producer or make_producer(bootstrap)
    not_sent: dict = {}
    reported = [0]

    def skip(row: int, kind: str, reason: str) -> None:
        not_sent[kind] = not_sent.get(kind, 0) + 1
        if reported[0] < MAX_REPORTED_ROWS:
            report(row, reason)
        elif reported[0] == MAX_REPORTED_ROWS:
            report(row, f"{reason} (further unsendable rows are counted, not listed)")
        reported[0] += 1

    # (row, future, size) of records not yet known to be delivered, in send order; drained as
    # their futures complete, so a failure is reported with its row number.
    pending: deque = deque()
    fatal: list = []  # (row, exception): the first error that stops the replay
    refused_after_send = [0]

    def drain() -> None:
        while pending and pending[0][1].is_done:
            row, fut, size = pending.popleft()
            if fut.exception is None:
                continue
            if _is_row_error(fut.exception):
                refused_after_send[0] += 1
                skip(row, *_row_reason(fut.exception, size))
            else:
                fatal.append((row, fut.exception))
                pending.appendleft((row, fut, size))
                return

    total = _count(rows_or_table)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=None if total is None else max(0, total - skip_rows), unit=" events", unit_scale=True,
                   desc=topic, leave=False, file=sys.stderr)
    key_field = contract.key
    handed = raw_sent = 0
    row_no = skip_rows - 1
    last_ts: Optional[int] = None
    send = producer.send
    t0 = time.perf_counter()
    try:
        try:
            # One partition: name it, and skip kafka-python's per-record murmur2 in pure Python.
            partition = 0 if len(producer.partitions_for(topic) or ()) == 1 else None
        except KafkaError as e:  # e.g. metadata for the topic never arrived (auto-creation off)
            raise ProduceStopped(f"sending to {topic} on {bootstrap} failed before row {skip_rows}: {e}",
                                 skip_rows) from None
        for row_no, row in enumerate(_rows(rows_or_table, skip_rows), start=skip_rows):
            raw = row.get(RAW_PAYLOAD)
            try:
                if raw is not None:
                    value = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
                    key = None
                else:
                    value = _value(contract, row)
                    key = _key(row.get(key_field))
            except (TypeError, ValueError, OverflowError) as e:  # UnicodeEncodeError is a ValueError
                skip(row_no, "unserialisable", f"cannot serialise: {type(e).__name__}: {str(e)[:200]}")
                continue
            if raw is not None:
                ts = last_ts if last_ts is not None else int(time.time() * 1000)
            else:
                ts = _timestamp(row.get("event_time"))
                if ts is None:
                    ts = last_ts if last_ts is not None else int(time.time() * 1000)
                else:
                    last_ts = ts
            try:
                fut = send(topic, value=value, key=key, timestamp_ms=ts, partition=partition)
            except KafkaError as e:
                if not _is_row_error(e):  # buffer full for max_block_ms, metadata timeout, ...
                    fatal.append((row_no, e))
                    break
                skip(row_no, *_row_reason(e, len(value) + len(key or b"")))
                continue
            pending.append((row_no, fut, len(value) + len(key or b"")))
            handed += 1
            if raw is not None:
                raw_sent += 1
            if rate is not None:
                ahead = t0 + handed / rate - time.perf_counter()
                if ahead > 0.001:
                    time.sleep(ahead)
            if handed % 1000 == 0:
                if bar is not None:
                    bar.update(1000)
                drain()
                if fatal:
                    break
        if not fatal:
            try:
                producer.flush()
            except KafkaError as e:
                fatal.append((pending[0][0] if pending else row_no + 1, e))
            drain()
    finally:
        if bar is not None:
            bar.update(handed % 1000)
            bar.close()
        if own:
            try:  # after a fatal error, do not wait for the rest: they are resent on resume
                producer.close(timeout=0 if fatal else None)
            except KafkaError:
                pass
    seconds = time.perf_counter() - t0
    if fatal:
        row, exc = fatal[0]
        resume = min([row] + [r for r, f, _ in pending if not f.succeeded()])
        raise ProduceStopped(
            f"sending to {topic} on {bootstrap} stopped at row {resume} ({type(exc).__name__}: "
            f"{str(exc)[:200]}); rows {skip_rows}..{resume - 1} were sent or reported, some after it may "
            f"be too (the job drops identical copies as duplicates); resume with --skip-rows {resume}", resume)
    sent = handed - refused_after_send[0]
    return {"topic": topic, "sent": sent, "raw": raw_sent, "not_sent": not_sent, "skipped_rows": skip_rows,
            "seconds": seconds, "events_per_s": sent / seconds if seconds > 0 else float("inf")}


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
    p.add_argument("--skip-rows", type=int, default=0, metavar="N",
                   help="start at row N of the file (rows count from 0); a stopped replay names its N")
    p.set_defaults(func=run)


def run(args) -> int:
    pf, contract = contract_of_file(args.input, args.domain)
    try:
        stats = produce_rows(args.bootstrap, args.topic, pf, contract, rate=args.rate,
                             progress=sys.stderr.isatty(), skip_rows=args.skip_rows)
    except ProduceStopped as e:
        raise ProduceStopped(f"{e}: {resume_command(getattr(args, 'argv', None), e.resume_row)}",
                             e.resume_row) from None
    raw = f", {stats['raw']} verbatim" if stats["raw"] else ""
    skipped = f" from row {stats['skipped_rows']:,}" if stats["skipped_rows"] else ""
    not_sent = ""
    if stats["not_sent"]:
        n = sum(stats["not_sent"].values())
        kinds = ", ".join(f"{v:,} {k}" for k, v in sorted(stats["not_sent"].items()))
        not_sent = f"; {n:,} row{'s' if n != 1 else ''} not sent ({kinds}), listed above"
    print(f"produce: sent {stats['sent']:,} {contract.name} events{raw}{skipped} to {args.topic} on "
          f"{args.bootstrap} in {stats['seconds']:.2f} s ({stats['events_per_s']:,.0f} events/s){not_sent}")
    # Rows the broker cannot hold are reported like the job's dead letters, not a failure of the
    # replay: everything else was sent. A stop (ProduceStopped) exits 1.
    return 0


def resume_command(argv, row: int) -> str:
    """The command line that continues a stopped replay at ``row``."""
    import shlex

    if not argv:
        return f"resume with --skip-rows {row}"
    out, it = [], iter(argv)
    for a in it:
        if a == "--skip-rows":
            next(it, None)
        elif not a.startswith("--skip-rows="):
            out.append(a)
    return "streamscore " + " ".join(shlex.quote(a) for a in out + ["--skip-rows", str(row)])
