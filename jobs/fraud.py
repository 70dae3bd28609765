"""The fraud job: payments -> per-card features -> risk score -> approve / step_up / block.

``build`` holds the logic and is pure graph construction over injected rows; ``run_stream``
and ``run_backfill`` wire sources, sinks and checkpoints around it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Optional

from pyflink.datastream import DataStream
from pyflink.table.expressions import col

from features.fraud import FRAUD_FEATURES
from jobs.io import KafkaSinkOptions, SinkSpec, create_sink
from jobs.pipeline import StreamConfig, build_features
from udfs.scoring import RESULT_FIELDS, scorer
from udfs.types import REJECT_COLUMNS, feature_columns

FS = FRAUD_FEATURES


@dataclass(frozen=True)
class FraudJobConfig:
    stream: StreamConfig = field(default_factory=StreamConfig)
    model: Optional[str] = None  # a model folder or a registry (its current version); None: rules only
    score: bool = True  # False: features only (backfill)


class FraudOutputs(NamedTuple):
    features: object  # a Table of udfs.types.feature_columns
    decisions: Optional[object]  # a Table, or None when not scoring
    dead_letters: DataStream
    late: DataStream


def decision_columns() -> list:
    """Columns of a decision record, in order: identity, verdict, the served features, timings."""
    feats = feature_columns(FS, with_labels=False)
    head, body, ingest = feats[:3], feats[3:-1], feats[-1]
    verdict = [c for c in RESULT_FIELDS if c[0] != "decide_ms"]
    return head + verdict + body + [ingest, ("decide_ms", "BIGINT")]


def build(rows: DataStream, t_env, cfg: FraudJobConfig, *, kafka: bool, source: str, batch: bool) -> FraudOutputs:
    """The fraud graph over source rows; see jobs.pipeline.build_features for ``rows``."""
    score = scorer(FS, cfg.model, counts_dir=cfg.stream.counts_dir) if cfg.score else None
    streams = build_features(rows, t_env, FS, cfg.stream, kafka=kafka, source=source, batch=batch, scorer=score)
    table = streams.features
    if score is None:
        return FraudOutputs(table, None, streams.dead_letters, streams.late)
    verdict = dict(RESULT_FIELDS)  # one UDF gave features and verdicts: the served features leave the verdict out
    features = table.select(*[col(n) for n in table.get_schema().get_field_names() if n not in verdict])
    decisions = table.select(*[col(n) for n, _ in decision_columns()])
    return FraudOutputs(features, decisions, streams.dead_letters, streams.late)


@dataclass(frozen=True)
class FraudSinks:
    decisions: SinkSpec = SinkSpec("none")
    features: SinkSpec = SinkSpec("none")
    dead_letters: SinkSpec = SinkSpec("none")
    late: SinkSpec = SinkSpec("none")
    kafka: Optional[KafkaSinkOptions] = None


def attach_sinks(t_env, out: FraudOutputs, sinks: FraudSinks, with_labels: bool):
    """Declare the sink tables and add every output to one statement set (one job)."""
    ss = t_env.create_statement_set()
    n = 0
    feat_cols = feature_columns(FS, with_labels)
    targets = [(sinks.features, out.features, feat_cols, None, "features"),
               (sinks.dead_letters, t_env.from_data_stream(out.dead_letters), list(REJECT_COLUMNS), None,
                "dead_letters"),
               (sinks.late, t_env.from_data_stream(out.late), list(REJECT_COLUMNS), None, "late")]
    if out.decisions is not None:
        targets.insert(0, (sinks.decisions, out.decisions, decision_columns(), "event_id", "decisions"))
    for spec, table, cols, key, stem in targets:
        name = create_sink(t_env, spec, cols, sinks.kafka, key=key, stem=stem)
        if name is not None:
            ss.add_insert(name, table)
            n += 1
    if n == 0:
        raise ValueError("every output is 'none': nothing to run")
    return ss
