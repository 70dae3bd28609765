"""Flink type information derived from the declarations in features/ (never written by hand)."""
from __future__ import annotations

from pyflink.common import Types

from features.contracts import BOOL, FLOAT64, INT64, STRING, TIMESTAMP_MS, EventContract
from features.featureset import FeatureSet

_CONTRACT_TYPES = {STRING: Types.STRING, INT64: Types.LONG, FLOAT64: Types.DOUBLE, BOOL: Types.BOOLEAN,
                   TIMESTAMP_MS: Types.LONG}
_FEATURE_TYPES = {"int64": Types.LONG, "float64": Types.DOUBLE, "bool": Types.BOOLEAN}
_SQL = {"STRING": Types.STRING, "BIGINT": Types.LONG, "DOUBLE": Types.DOUBLE, "BOOLEAN": Types.BOOLEAN,
        "INT": Types.INT, "BYTES": lambda: Types.PRIMITIVE_ARRAY(Types.BYTE())}

# Lineage carried with every accepted event: when it entered the job and where it came from.
EVENT_EXTRAS = (("ingest_ms", "BIGINT"), ("src_partition", "INT"), ("src_offset", "BIGINT"))

# Dead letters and late events share one shape, so one sink serves both. ``raw`` is the payload
# as text (``raw_encoding`` utf-8), or base64 of bytes that are not UTF-8; a payload longer than
# contracts.MAX_RAW_KEPT keeps only a prefix, and ``raw_size`` / ``raw_sha256`` always describe
# the whole original.
REJECT_COLUMNS = (("reason", "STRING"), ("detail", "STRING"), ("raw", "STRING"), ("raw_encoding", "STRING"),
                  ("raw_size", "BIGINT"), ("raw_sha256", "STRING"), ("source", "STRING"),
                  ("src_partition", "INT"), ("src_offset", "BIGINT"), ("ingest_ms", "BIGINT"))


def reject_row(reason: str, detail: str, raw, source: str, partition, offset, ingest_ms):
    """A dead-letter / late row in REJECT_COLUMNS order; ``raw`` is bytes, str or None."""
    from pyflink.common import Row

    from features.contracts import bounded_detail, bounded_raw

    text, encoding, size, sha = bounded_raw(raw)
    return Row(reason, bounded_detail(detail), text, encoding, size, sha, source, partition, offset, ingest_ms)




def event_columns(contract: EventContract, with_labels: bool) -> list:
    """(name, SQL type) of the event rows flowing between parse and the feature operator."""
    return contract.flink_sql_columns(with_labels=with_labels) + list(EVENT_EXTRAS)


def feature_columns(fs: FeatureSet, with_labels: bool) -> list:
    """(name, SQL type) of the feature rows the keyed operator emits."""
    sql = {"int64": "BIGINT", "float64": "DOUBLE", "bool": "BOOLEAN"}
    cols = [("event_id", "STRING"), *((k, "STRING") for k in fs.keys), ("event_time", "BIGINT")]
    cols += [(f.name, sql[f.dtype]) for f in fs.features]
    cols.append(("ingest_ms", "BIGINT"))
    if with_labels:
        cols += fs.contract.flink_sql_columns(with_labels=True)[len(fs.contract.fields):]
    return cols


def row_type(columns) -> "Types":
    return Types.ROW_NAMED([n for n, _ in columns], [_SQL[t]() for _, t in columns])


def ddl_columns(columns) -> str:
    """Column list for CREATE TABLE, every name quoted (some, like `raw`, are SQL keywords)."""
    return ", ".join(f"`{n}` {t}" for n, t in columns)
