"""The fraud job: payments -> per-card features -> risk score -> approve / step_up / block.

``build`` holds the logic and is pure graph construction over injected rows; jobs/run.py and
jobs/backfill.py wire sources, sinks and checkpoints around ``JOB`` (jobs/graph.py).
"""
from __future__ import annotations

from pyflink.table.expressions import col

from features.fraud import FRAUD_FEATURES
from jobs.graph import REJECT_OUTPUTS, Job, JobConfig, Output, feature_log
from jobs.pipeline import build_features
from udfs.scoring import RESULT_FIELDS, check_model, scorer
from udfs.types import feature_columns

FS = FRAUD_FEATURES


def decision_columns(with_labels: bool = False) -> list:
    """Columns of a decision record, in order: identity, verdict, the served features, timings."""
    feats = feature_columns(FS, with_labels=False)
    head, body, ingest = feats[:3], feats[3:-1], feats[-1]
    verdict = [c for c in RESULT_FIELDS if c[0] != "decide_ms"]
    return head + verdict + body + [ingest, ("decide_ms", "BIGINT")]


def build(rows, t_env, cfg: JobConfig, *, kafka: bool, source: str, batch: bool) -> dict:
    """The fraud graph over source rows (see jobs.pipeline.build_features for ``rows``):
    {"decisions" (None when not scoring), "features", "dead_letters", "late"}."""
    score = scorer(FS, cfg.model, counts_dir=cfg.stream.counts_dir) if cfg.score else None
    streams = build_features(rows, t_env, FS, cfg.stream, kafka=kafka, source=source, batch=batch, scorer=score)
    table = streams.features
    out = {"decisions": None, "features": table, "dead_letters": streams.dead_letters, "late": streams.late}
    if score is not None:
        verdict = dict(RESULT_FIELDS)  # one UDF gave features and verdicts: the served features leave the verdict out
        out["features"] = table.select(*[col(n) for n in table.get_schema().get_field_names() if n not in verdict])
        out["decisions"] = table.select(*[col(n) for n, _ in decision_columns()])
    return out


JOB = Job(
    domain="fraud",
    feature_set=FS,
    outputs=(
        Output("decisions", "kafka:{d}-decisions", decision_columns, key="event_id",
               help="approve / step_up / block per payment"),
        feature_log(FS),
        *REJECT_OUTPUTS,
    ),
    build=build,
    check_model=lambda path: check_model(path, FS),
    doc="payments -> per-card features -> risk score -> approve / step_up / block",
)
