"""Alerts, incidents and maintenance tickets on the JVM (rules: features/alerts.py).

Keyed by (machine_id, sensor_id) of the scored readings, after scoring: the Java operator
(jvm/engine ``Incidents``, entry point ``Alerts.incidents``; no Python per record) buffers each
reading in checkpointed state until the watermark passes it, so the outcome does not depend on
arrival order within the watermark's bound, and closes an incident on an event-time timer (a
silent sensor closes on the watermark of the others). Readings already behind the watermark on
arrival are rare: they come back through one small Python map as dead-letter rows (``late``).
"""
from __future__ import annotations

import json
from typing import NamedTuple, Optional, Sequence

from pyflink.datastream import DataStream

from features.alerts import ALERT_COLUMNS, SCORED_COLUMNS, TICKET_COLUMNS, AlertPolicy
from features.contracts import LATE
from udfs.engine import engine_jar_class
from udfs.types import REJECT_COLUMNS, reject_row, row_type


def alert_row_type():
    """Flink type of the alert rows (ALERT_COLUMNS)."""
    return row_type(ALERT_COLUMNS)


def ticket_row_type():
    """Flink type of the ticket rows (TICKET_COLUMNS)."""
    return row_type(TICKET_COLUMNS)


class AlertStreams(NamedTuple):
    alerts: DataStream  # ALERT_COLUMNS rows
    tickets: DataStream  # TICKET_COLUMNS rows
    late: DataStream  # REJECT_COLUMNS rows


def alerts_jar_class():
    """The Java entry point (checks the engine jar is on the classpath first)."""
    from pyflink.java_gateway import get_gateway

    engine_jar_class()
    return get_gateway().jvm.io.streamscore.engine.Alerts


def raise_alerts(scored: DataStream, names: Sequence[str], policy: AlertPolicy, *, uid: str, source: str,
                 counts_dir: Optional[str] = None) -> AlertStreams:
    """``scored``: rows with the columns ``names`` (at least SCORED_COLUMNS, by name), with event-time
    timestamps and watermarks in streaming (udfs.watermarks)."""
    if not isinstance(policy, AlertPolicy):
        raise ValueError("policy must be a features.alerts.AlertPolicy")
    missing = [n for n, _ in SCORED_COLUMNS if n not in names]
    if missing:
        raise ValueError(f"scored readings lack the columns {missing}")
    from pyflink.java_gateway import get_gateway

    gw = get_gateway()
    j_names = gw.new_array(gw.jvm.String, len(names))
    for i, n in enumerate(names):
        j_names[i] = n
    res = alerts_jar_class().incidents(scored._j_data_stream, j_names, policy.to_json(), uid, counts_dir)
    late = (DataStream(res.late()).map(LateReading(source), output_type=row_type(REJECT_COLUMNS))
            .name(f"{uid}-late").uid(f"{uid}-late"))
    return AlertStreams(DataStream(res.alerts()), DataStream(res.tickets()), late)


class LateReading:
    """A late reading from the Java operator (SCORED_COLUMNS, then the watermark) -> a REJECT_COLUMNS row."""

    def __init__(self, source: str):
        self.names = [n for n, _ in SCORED_COLUMNS]
        self.source = source

    def __call__(self, value):
        ev = dict(zip(self.names, value))
        wm = value[len(self.names)]
        t = ev["event_time"]
        raw = json.dumps(ev, separators=(",", ":"), default=str)
        return reject_row(LATE, f"scored reading at event_time {t} is {wm - t} ms behind the watermark {wm}: "
                          f"too late to order it into its sensor's incidents", raw, self.source, None, None, None)
