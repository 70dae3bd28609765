"""The shape every pipeline shares: parse + validate -> watermarks -> dedup (by event_id) -> the
declared-feature engine (key_by + the Java aggregation operator, derived features in a pandas UDF).

``build_features`` is pure graph construction: it takes a stream of source rows and returns
the output streams, so the same graph runs on Kafka, on Parquet, in tests and in backfill.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

from pyflink.datastream import DataStream

from features.contracts import EventContract
from features.featureset import DAY_MS, FeatureSet
from udfs.dedup import deduplicate
from udfs.engine import ORDERINGS, declared_features
from udfs.parse import intake
from udfs.types import EVENT_EXTRAS, event_columns
from udfs.watermarks import with_watermarks


@dataclass(frozen=True)
class StreamConfig:
    """Event-time behaviour of a feature pipeline. Validated on construction.

    >>> StreamConfig(ordering="random")
    Traceback (most recent call last):
    ...
    ValueError: ordering must be one of ('arrival', 'event-time'), got 'random'
    """

    ordering: str = "arrival"
    max_disorder_ms: int = 5_000  # bounded out-of-orderness of the watermark
    idleness_ms: int = 0  # >0: an input silent this long stops holding the watermark back (see README)
    allowed_lateness_ms: int = 0
    max_future_ms: int = DAY_MS  # beyond this ahead of the wall clock: dead letter
    max_jump_ms: int = 3_600_000  # beyond this ahead of the stream: dead letter, unless confirmed
    max_past_ms: int = 365 * DAY_MS  # beyond this behind the stream: dead letter
    with_labels: bool = False  # carry label columns (training data) through to the feature rows
    dedup_horizon_ms: int = 7 * DAY_MS  # a repeated event_id within this much event time is a duplicate
    max_amount: float = 1e7  # plausible maximum of a payment amount; beyond: out_of_range
    max_record_bytes: int = 65_536  # a payload larger than this is dead-lettered as too_large
    counts_dir: Optional[str] = None  # where operators write their end-of-run counts (udfs.counters)
    # ((partition, offset), ...): Kafka records at or past these are not part of the run (a restored
    # --until run, see jobs/ops.py); None: no such bound
    stop_offsets: Optional[tuple] = None

    def __post_init__(self):
        if self.ordering not in ORDERINGS:
            raise ValueError(f"ordering must be one of {ORDERINGS}, got {self.ordering!r}")
        for name in ("max_disorder_ms", "idleness_ms", "allowed_lateness_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if min(self.max_future_ms, self.max_jump_ms, self.max_past_ms) <= 0:
            raise ValueError("max_future_ms, max_jump_ms and max_past_ms must be > 0")
        if self.dedup_horizon_ms < 0:
            raise ValueError("dedup_horizon_ms must be >= 0 (0 turns de-duplication off)")
        if not self.max_amount > 0:
            raise ValueError("max_amount must be > 0")
        if self.max_record_bytes < 1024:
            raise ValueError("max_record_bytes must be at least 1024")


class FeatureStreams(NamedTuple):
    features: object  # a Table: one row per accepted, on-time event (udfs.types.feature_columns)
    dead_letters: DataStream  # malformed records, with reason and source position
    late: DataStream  # events behind the watermark, with reason
    events: DataStream  # the accepted, de-duplicated events (``event_columns``), timestamped in streaming


def source_columns(contract: EventContract, with_labels: bool, raw: bool = True) -> list:
    """Columns a Parquet source of ``contract`` is read with."""
    cols = contract.flink_sql_columns(with_labels=with_labels)
    return cols + ([("_raw", "STRING")] if raw else [])


def _field(contract: EventContract, name: str, attr: str):
    """An attribute of a contract field, or None where the contract has no such field."""
    return next((getattr(f, attr) for f in contract.all_fields if f.name == name), None)


def build_features(rows: DataStream, t_env, fs: FeatureSet, cfg: StreamConfig, *,
                   kafka: bool, source: str, batch: bool, scorer=None) -> FeatureStreams:
    """The feature graph over ``rows`` (Kafka (payload, topic, partition, offset) or Parquet rows).

    ``scorer`` (udfs.scoring.ScoreBatch): score every feature row in the derived features' UDF; the
    features table then also has the RESULT_FIELDS columns."""
    contract = fs.contract
    ev_cols = event_columns(contract, cfg.with_labels)
    uid = fs.name
    if _field(contract, "amount", "max_value") not in (None, cfg.max_amount):  # payments only
        contract = contract.with_range("amount", max_value=cfg.max_amount)
    row_info = rows.get_type()
    row_info = getattr(row_info, "_type_info", row_info)  # a Table's rows come as ExternalTypeInfo(RowTypeInfo)
    names = [] if kafka else list(row_info.get_field_names())
    parsed = intake(rows, contract, ev_cols, kafka=kafka, source_names=names, with_labels=cfg.with_labels,
                    source=source, max_future_ms=cfg.max_future_ms, max_past_ms=cfg.max_past_ms,
                    max_jump_ms=cfg.max_jump_ms, max_record_bytes=cfg.max_record_bytes, stream_guards=not batch,
                    counts_dir=cfg.counts_dir,
                    stop_offsets=None if cfg.stop_offsets is None else dict(cfg.stop_offsets), uid=uid)
    timed = parsed.events
    if not batch:
        timed = with_watermarks(timed, ev_cols, cfg.max_disorder_ms, cfg.idleness_ms, f"{uid}/watermarks")
    dead_letters = parsed.dead_letters
    if cfg.dedup_horizon_ms > 0:
        # keyed by event_id, before the card key: a copy never reaches any card's history or the scorer
        extras = {x for x, _ in EVENT_EXTRAS}
        content = [n for n, _ in ev_cols if n not in extras]
        dedup = deduplicate(timed, ev_cols, content, cfg.dedup_horizon_ms, batch=batch, uid=f"{uid}/dedup",
                            source=source, counts_dir=cfg.counts_dir)
        timed = dedup.kept
        dead_letters = dead_letters.union(dedup.duplicates)
    labels = contract.label_names if cfg.with_labels else ()
    # BATCH sorts by key but not by time within a key: only the event-time ordering is deterministic there.
    ordering = "event-time" if batch else cfg.ordering
    feats = declared_features(timed, t_env, fs, ev_cols, ordering=ordering, allowed_lateness_ms=cfg.allowed_lateness_ms,
                              uid=f"{uid}/features", source=source, label_names=labels, counts_dir=cfg.counts_dir,
                              scorer=scorer)
    return FeatureStreams(feats.features, dead_letters, feats.late, timed)
