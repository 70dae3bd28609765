"""Sources and sinks, injected into the job graphs: Kafka, Parquet, print or discard.

Every table here is declared with explicit, quoted column names derived from the contracts
and feature sets; no SQL refers to a generated name. Connection strings arrive as arguments.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from jobs import kafka_limits
from udfs.types import ddl_columns

_TABLE_SEQ = [0]


def _table_name(stem: str) -> str:
    _TABLE_SEQ[0] += 1
    return f"{re.sub(r'[^A-Za-z0-9_]', '_', stem)}_{_TABLE_SEQ[0]}"


def _with(options: dict) -> str:
    # SQL string literals: a quote in a value (a password) doubled, or it would end the literal, break
    # the DDL and have the parser quote the statement, secret included, in its error message
    def lit(x) -> str:
        return "'" + str(x).replace("'", "''") + "'"

    return ", ".join(f"{lit(k)} = {lit(v)}" for k, v in options.items())


# ---------------------------------------------------------------------------------------- replay
@dataclass(frozen=True)
class StartPosition:
    """Where a Kafka replay starts (``--start``) or stops (``--until``).

    >>> StartPosition.parse("offsets:0:42,1:7").options("scan.startup")
    {'scan.startup.mode': 'specific-offsets', 'scan.startup.specific-offsets': 'partition:0,offset:42;partition:1,offset:7'}
    >>> StartPosition.parse("timestamp:1700000000000").kind
    'timestamp'
    >>> StartPosition.parse("yesterday")
    Traceback (most recent call last):
    ...
    ValueError: bad position 'yesterday': use earliest, latest, committed, timestamp:MS or offsets:P:O[,P:O...]
    """

    kind: str  # earliest | latest | committed | timestamp | offsets
    timestamp_ms: Optional[int] = None
    offsets: tuple = ()  # ((partition, offset), ...)

    @classmethod
    def parse(cls, text: str) -> "StartPosition":
        t = text.strip()
        if t in ("earliest", "latest", "committed"):
            return cls(t)
        try:
            if t.startswith("timestamp:"):
                ms = int(t.split(":", 1)[1])
                if ms < 0:
                    raise ValueError
                return cls("timestamp", timestamp_ms=ms)
            if t.startswith("offsets:"):
                pairs = []
                for part in t.split(":", 1)[1].split(","):
                    p, o = part.split(":")
                    if int(p) < 0 or int(o) < 0:
                        raise ValueError
                    pairs.append((int(p), int(o)))
                if not pairs:
                    raise ValueError
                return cls("offsets", offsets=tuple(pairs))
        except ValueError:
            pass
        raise ValueError(f"bad position {text!r}: use earliest, latest, committed, timestamp:MS "
                         f"or offsets:P:O[,P:O...]")

    def options(self, prefix: str) -> dict:
        """Kafka table options; prefix is 'scan.startup' or 'scan.bounded'."""
        start = prefix == "scan.startup"
        if self.kind == "earliest":
            if not start:
                raise ValueError("--until earliest makes no sense")
            return {f"{prefix}.mode": "earliest-offset"}
        if self.kind == "latest":
            return {f"{prefix}.mode": "latest-offset"}
        if self.kind == "committed":
            return {f"{prefix}.mode": "group-offsets"}
        if self.kind == "timestamp":
            return {f"{prefix}.mode": "timestamp", f"{prefix}.timestamp-millis": str(self.timestamp_ms)}
        spec = ";".join(f"partition:{p},offset:{o}" for p, o in self.offsets)
        return {f"{prefix}.mode": "specific-offsets", f"{prefix}.specific-offsets": spec}


# ---------------------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class KafkaSource:
    bootstrap: str
    topic: str
    start: StartPosition = StartPosition("earliest")
    until: Optional[StartPosition] = None
    group_id: str = "streamscore"
    # Kafka client settings (security) as ((key, value), ...), see jobs/kafka_props.py
    properties: tuple = ()

    @property
    def name(self) -> str:
        return f"kafka:{self.topic}"

    def table(self, t_env):
        """A table of (payload, topic, partition, offset). The payload stays raw bytes: decoding is
        the parser's job, so bytes that are not UTF-8 reach the dead letters unchanged."""
        name = _table_name(f"src_{self.topic}")
        opts = {"connector": "kafka", "topic": self.topic, "properties.bootstrap.servers": self.bootstrap,
                "properties.group.id": self.group_id, "properties.auto.offset.reset": "earliest",
                "format": "raw"}
        # read a record up to the broker's largest (jobs/kafka_limits.py); the parser bounds the rest
        opts.update({f"properties.{k}": v for k, v in kafka_limits.source_properties().items()})
        opts.update({f"properties.{k}": v for k, v in self.properties})
        opts.update(self.start.options("scan.startup"))
        if self.until is not None:
            opts.update(self.until.options("scan.bounded"))
        t_env.execute_sql(
            f"CREATE TEMPORARY TABLE `{name}` (`payload` BYTES, "
            f"`topic` STRING METADATA VIRTUAL, `partition` INT METADATA VIRTUAL, "
            f"`offset` BIGINT METADATA VIRTUAL) WITH ({_with(opts)})")
        return t_env.from_path(name)


@dataclass(frozen=True)
class ParquetSource:
    """A Parquet file or a folder of them, read by Flink's filesystem connector."""

    path: str
    columns: Sequence = ()  # (name, SQL type), set by the job from its contract

    @property
    def name(self) -> str:
        return f"parquet:{self.path}"

    def table(self, t_env):
        p = Path(self.path)
        if not p.exists():
            raise FileNotFoundError(f"input {self.path} does not exist")
        name = _table_name("src_parquet")
        opts = {"connector": "filesystem", "path": p.resolve().as_uri(), "format": "parquet"}
        t_env.execute_sql(f"CREATE TEMPORARY TABLE `{name}` ({ddl_columns(self.columns)}) WITH ({_with(opts)})")
        return t_env.from_path(name)


# ------------------------------------------------------------------------------------------ sinks
@dataclass(frozen=True)
class SinkSpec:
    """Where an output goes: ``kafka:TOPIC``, ``parquet:PATH``, ``json:PATH``, ``print`` or ``none``.

    >>> SinkSpec.parse("kafka:fraud-decisions").target
    'fraud-decisions'
    >>> SinkSpec.parse("s3:bucket")
    Traceback (most recent call last):
    ...
    ValueError: bad sink 's3:bucket': use kafka:TOPIC, parquet:PATH, json:PATH, print or none
    """

    kind: str
    target: str = ""

    @classmethod
    def parse(cls, text: str) -> "SinkSpec":
        if text in ("print", "none"):
            return cls(text)
        kind, _, target = text.partition(":")
        if kind in ("kafka", "parquet", "json") and target:
            return cls(kind, target)
        raise ValueError(f"bad sink {text!r}: use kafka:TOPIC, parquet:PATH, json:PATH, print or none")


@dataclass(frozen=True)
class KafkaSinkOptions:
    bootstrap: str
    delivery: str = "at-least-once"  # or exactly-once
    transactional_id_prefix: str = "streamscore"
    # Must not exceed the broker's transaction.max.timeout.ms (15 min by default); the connector's
    # own default (1 h) would be refused.
    transaction_timeout_ms: int = 600_000
    properties: tuple = ()  # Kafka client settings ((key, value), ...), see jobs/kafka_props.py

    def __post_init__(self):
        if self.delivery not in ("at-least-once", "exactly-once", "none"):
            raise ValueError(f"delivery must be at-least-once or exactly-once, got {self.delivery!r}")


def create_sink(t_env, spec: SinkSpec, columns: Sequence, kafka: Optional[KafkaSinkOptions] = None,
                key: Optional[str] = None, stem: str = "out") -> Optional[str]:
    """Declare a sink table for ``columns``; returns its name (None for ``none``)."""
    if spec.kind == "none":
        return None
    name = _table_name(f"sink_{stem}")
    if spec.kind == "print":
        opts = {"connector": "print", "print-identifier": stem}
    elif spec.kind in ("parquet", "json"):
        Path(spec.target).mkdir(parents=True, exist_ok=True)
        opts = {"connector": "filesystem", "path": Path(spec.target).resolve().as_uri(), "format": spec.kind}
    else:
        if kafka is None:
            raise ValueError("a Kafka sink needs --bootstrap")
        opts = {"connector": "kafka", "topic": spec.target, "properties.bootstrap.servers": kafka.bootstrap,
                "format": "json", "json.encode.decimal-as-plain-number": "true",
                "sink.delivery-guarantee": kafka.delivery}
        # the producer refuses what the broker would (jobs/kafka_limits.py); our records are far smaller
        opts.update({f"properties.{k}": v for k, v in kafka_limits.sink_properties().items()})
        opts.update({f"properties.{k}": v for k, v in kafka.properties})
        if key:
            opts.update({"key.format": "raw", "key.fields": key, "value.fields-include": "ALL"})
        if kafka.delivery == "exactly-once":
            opts["sink.transactional-id-prefix"] = f"{kafka.transactional_id_prefix}-{stem}"
            opts["properties.transaction.timeout.ms"] = str(kafka.transaction_timeout_ms)
    t_env.execute_sql(f"CREATE TEMPORARY TABLE `{name}` ({ddl_columns(columns)}) WITH ({_with(opts)})")
    return name
