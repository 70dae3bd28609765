"""The iot job: sensor readings -> per-sensor features -> anomaly score -> alerts and maintenance tickets,
plus per-sensor window summaries.

    readings -> intake -> watermarks -> dedup --+--> IOT_FEATURES (JVM) -> derive + score (pandas UDF) -> scores
                                                |                                     \\-> alerts / tickets (JVM)
                                                +--> tumbling summaries (Flink window TVF)
                                                \\--> sliding 1 h summaries (Flink window TVF)

``build`` is pure graph construction over injected rows; jobs/run.py and jobs/backfill.py wire
sources, sinks and checkpoints around ``JOB`` (jobs/graph.py), as for fraud. The alert policy is the
served model's (saved with it at training), else ``AlertPolicy()``; ``cfg.options`` may override it
(``alert_policy``) and set the tumbling size (``tumbling_ms``).
"""
from __future__ import annotations

from pyflink.table.expressions import call_sql, col

from features.alerts import ALERT_COLUMNS, SCORED_COLUMNS, TICKET_COLUMNS, AlertPolicy
from features.iot import DEFAULT_TUMBLING_MS, IOT_FEATURES, IOT_SLIDING, iot_windows
from features.iot_model import ALERT, load_iot_model, rules_only
from jobs.graph import REJECT_OUTPUTS, Job, JobConfig, Output, feature_log
from jobs.pipeline import build_features
from udfs.alerts import raise_alerts
from udfs.scoring import RESULT_FIELDS, check_model, scorer
from udfs.types import feature_columns
from udfs.watermarks import with_watermarks
from udfs.windows import sql_columns, window_table, with_event_time

FS = IOT_FEATURES
OPTIONS = ("alert_policy", "tumbling_ms")


def score_columns(with_labels: bool = False) -> list:
    """Columns of a scored reading: identity, verdict, the served features, timings."""
    feats = feature_columns(FS, with_labels=False)
    n_id = len(FS.passthrough)
    head, body, ingest = feats[:n_id], feats[n_id:-1], feats[-1]
    verdict = [c for c in RESULT_FIELDS if c[0] != "decide_ms"]
    return head + verdict + body + [ingest, ("decide_ms", "BIGINT")]


def _policy(cfg: JobConfig) -> AlertPolicy:
    policy = cfg.options.get("alert_policy")
    if policy is not None:
        if not isinstance(policy, AlertPolicy):
            raise ValueError("options['alert_policy'] must be a features.alerts.AlertPolicy")
        return policy
    if cfg.model:
        saved = load_iot_model(cfg.model, expected_hash=FS.definition_hash).alert_policy
        return saved if isinstance(saved, AlertPolicy) else AlertPolicy(**dict(saved))
    return AlertPolicy()


def build(rows, t_env, cfg: JobConfig, *, kafka: bool, source: str, batch: bool) -> dict:
    """The iot graph over source rows (see jobs.pipeline.build_features for ``rows``): {"scores",
    "alerts", "tickets" (None when not scoring), "features", "summaries", "sliding", "dead_letters",
    "late"}."""
    unknown = set(cfg.options) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown iot options {sorted(unknown)}; known: {OPTIONS}")
    score = (scorer(FS, cfg.model, counts_dir=cfg.stream.counts_dir, loader=load_iot_model, rules=rules_only)
             if cfg.score else None)
    streams = build_features(rows, t_env, FS, cfg.stream, kafka=kafka, source=source, batch=batch, scorer=score)
    table = streams.features
    tumbling, sliding = iot_windows(int(cfg.options.get("tumbling_ms", DEFAULT_TUMBLING_MS)))
    events = with_event_time(t_env, streams.events, tumbling, cfg.stream.max_disorder_ms)
    out = {"scores": None, "alerts": None, "tickets": None, "features": table,
           "summaries": window_table(t_env, events, tumbling, batch=batch),
           "sliding": window_table(t_env, events, sliding, batch=batch),
           "dead_letters": streams.dead_letters, "late": streams.late}
    if score is None:
        return out
    verdict = dict(RESULT_FIELDS)
    # One pass of the pandas UDF for every consumer of its rows: the alerts branch goes through a
    # DataStream, and a Table used both by a sink and by to_data_stream is planned twice (the UDF
    # would score every reading twice). So the rows become a DataStream once, and a Table again.
    table = t_env.from_data_stream(t_env.to_data_stream(table))
    out["features"] = table.select(*[col(n) for n in table.get_schema().get_field_names() if n not in verdict])
    out["scores"] = table.select(*[col(n) for n, _ in score_columns()])
    # Alerts are decided in event-time order per sensor on the JVM (features/alerts.py); the Table
    # program does not carry the stream's watermarks, so they are assigned again from event_time.
    scored = table.select(col("event_id"), col("machine_id"), col("sensor_id"), col("event_time"), col("score"),
                          (col("decision") == ALERT).alias("is_anomalous"),
                          call_sql("ARRAY_JOIN(reasons, ',')").alias("reasons"), col("model_version"))
    names = [n for n, _ in SCORED_COLUMNS]
    scored = t_env.to_data_stream(scored)
    if not batch:
        scored = with_watermarks(scored, SCORED_COLUMNS, cfg.stream.max_disorder_ms, cfg.stream.idleness_ms,
                                 f"{FS.name}/alerts-watermarks")
    alerts = raise_alerts(scored, names, _policy(cfg), uid=f"{FS.name}/alerts", source=source,
                          counts_dir=cfg.stream.counts_dir)
    out["alerts"], out["tickets"] = alerts.alerts, alerts.tickets
    out["late"] = streams.late.union(alerts.late)
    return out


JOB = Job(
    domain="iot",
    feature_set=FS,
    outputs=(
        Output("scores", "kafka:{d}-scores", score_columns, key="event_id",
               help="every reading's anomaly score, decision and served features"),
        Output("alerts", "kafka:{d}-alerts", lambda labels: list(ALERT_COLUMNS), key="event_id"),
        Output("tickets", "kafka:{d}-tickets", lambda labels: list(TICKET_COLUMNS), key="ticket_id",
               help="maintenance tickets: one 'open' and one 'closed' event per incident that lasted"),
        feature_log(FS),
        Output("summaries", "none", lambda labels: sql_columns(iot_windows()[0]),
               help="tumbling per-sensor summaries (count, mean, min, max, std)"),
        Output("sliding", "none", lambda labels: sql_columns(IOT_SLIDING), help="1 h summaries every 5 min"),
        *REJECT_OUTPUTS,
    ),
    build=build,
    check_model=lambda path: check_model(path, FS, loader=load_iot_model),
    doc="sensor readings -> per-sensor features -> anomaly score -> alerts and maintenance tickets",
)
