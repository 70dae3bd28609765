"""Alerts, incidents, maintenance tickets and cool-down over scored sensor readings (pure, no Flink).

This docstring is the contract; jvm/engine ``Incidents`` implements it and
tests/integration/test_jvm_alerts.py holds the two to each other.

Input: scored readings (``SCORED_COLUMNS``): event_id, machine_id, sensor_id, event_time (epoch
ms), score, is_anomalous (the model's threshold decision; null counts as not anomalous), reasons
(text), model_version. event_ids are unique (the pipeline de-duplicates upstream).

Each sensor, key = (machine_id, sensor_id), is handled on its own, its readings in (event_time,
event_id) order (ids in Unicode code-point order), whatever order they arrived in. With
``Q = quiet_ms``, ``C = cooldown_ms``, ``D = min_duration_ms``, an open incident has a ``start``
(time of its first anomalous reading), ``last`` (time of its latest anomalous reading) and
``end = last + Q``. Each reading r at time t, in order:

1. **Close first.** If an incident is open and ``t >= end``, it closes at ``end`` (below).
   So an anomalous reading exactly Q after the last one starts a *new* incident.
2. **Anomalous r.** No incident open: one opens (start = last = t) and r alerts (``alert_seq``
   1). Incident open: last = t, and r alerts iff ``t - last_alert >= C`` (exactly C alerts; C = 0:
   every anomalous reading alerts). The cool-down is per incident: the first reading of a new
   incident always alerts. Then, if the incident has no ticket yet and ``last - start >= D``
   (exactly D opens; D = 0: every incident gets a ticket at its first reading), a ticket event
   ``open`` is emitted, event_time t. At most one ticket per incident.
3. **Normal r.** Changes nothing but a count: normal readings between anomalous ones do not close
   an incident, so a flapping sensor (anomalous readings less than Q apart) is one incident.

**Closing.** An incident closes at ``end`` once event time passes it: when the watermark reaches
``end`` (a Flink event-time timer at ``end``; nothing at or before a watermark can still arrive),
or at the first later reading of the sensor, or at end of input (the final watermark: in a
backfill every incident is closed at its ``end``, which may lie after the last reading). An
incident with a ticket then emits a ticket event ``closed``, event_time = ended_at = end;
incidents without a ticket close silently. ``close_reason``: ``recovered`` if the sensor sent at
least one normal reading after the last anomalous one, else ``silent``.

**A silent sensor** (stops reporting) is quiet: silence is no evidence of anomaly, so it never
alerts by itself; the model sees the gap (``gap_s``) when the sensor reports again. Its open
incident closes when the watermark, driven by the other sensors of the stream, passes ``end``
(at end of input in a backfill), with close_reason ``silent``, so maintenance can tell "went
quiet" from "recovered". If the whole input stops, the watermark stops too and the incident stays
open (see the pipeline's idleness setting).

Outputs: ``ALERT_COLUMNS`` rows (one per alerting reading; event_id is the reading's) and
``TICKET_COLUMNS`` rows (``open``: counts as of the opening reading, ended_at/close_reason null;
``closed``: the incident's totals). ``max_score``: the largest non-null, non-NaN score of the
incident's anomalous readings so far (null if none); ``model_version``: that of the incident's
first reading. ids are deterministic: ``incident_id = "inc-" + hex(fingerprint([machine_id,
sensor_id, start event_id]))`` (features.dedup.fingerprint, which the JVM computes byte for byte),
``ticket_id = "tkt-" + the same hex``.

``run_alerts(frame, policy, watermark=W)`` gives what has been emitted once the watermark reached
W: only readings with event_time <= W are processed, and incidents close iff end <= W. The default
(None) is end of input. Readings behind the watermark on arrival cannot be put in order: the Flink
operator sends them to a ``late`` output instead (none occur within the watermark's bound).

>>> p = AlertPolicy(min_duration_ms=10, cooldown_ms=5, quiet_ms=5)
>>> rows = [dict(event_id=f"e{t}", machine_id="m", sensor_id="s", event_time=t, score=0.9,
...              is_anomalous=t != 12, reasons="hi", model_version="v1") for t in (0, 3, 6, 9, 12, 13)]
>>> alerts, tickets = run_alerts(pd.DataFrame(rows), p)
>>> alerts["event_time"].tolist(), alerts["alert_seq"].tolist()
([0, 6, 13], [1, 2, 3])
>>> tickets[["status", "event_time", "ended_at", "close_reason"]].values.tolist()
[['open', 13, None, None], ['closed', 18, 18, 'silent']]
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import pandas as pd

from features.dedup import fingerprint

MINUTE_MS = 60_000
MAX_POLICY_MS = 30 * 24 * 60 * MINUTE_MS  # 30 days: beyond it a setting is a unit mistake, not a policy

SCORED_COLUMNS = (("event_id", "STRING"), ("machine_id", "STRING"), ("sensor_id", "STRING"),
                  ("event_time", "BIGINT"), ("score", "DOUBLE"), ("is_anomalous", "BOOLEAN"),
                  ("reasons", "STRING"), ("model_version", "STRING"))
ALERT_COLUMNS = (("event_id", "STRING"), ("incident_id", "STRING"), ("machine_id", "STRING"),
                 ("sensor_id", "STRING"), ("event_time", "BIGINT"), ("score", "DOUBLE"), ("reasons", "STRING"),
                 ("model_version", "STRING"), ("alert_seq", "BIGINT"))
TICKET_COLUMNS = (("ticket_id", "STRING"), ("incident_id", "STRING"), ("machine_id", "STRING"),
                  ("sensor_id", "STRING"), ("status", "STRING"), ("event_time", "BIGINT"), ("started_at", "BIGINT"),
                  ("last_anomalous_at", "BIGINT"), ("ended_at", "BIGINT"), ("anomalous_readings", "BIGINT"),
                  ("alerts", "BIGINT"), ("max_score", "DOUBLE"), ("close_reason", "STRING"),
                  ("model_version", "STRING"))
OPEN, CLOSED = "open", "closed"
RECOVERED, SILENT = "recovered", "silent"


@dataclass(frozen=True)
class AlertPolicy:
    """When an anomalous sensor alerts, opens a ticket and is done (semantics: module docstring).

    Defaults suit readings every 5 minutes: a ticket once an incident has lasted 15 minutes (4
    anomalous readings in a row, or flapping over as long), at most one alert per 30 minutes per
    incident, and 30 minutes (6 readings) without an anomalous one end the incident.

    >>> AlertPolicy(quiet_ms=0)
    Traceback (most recent call last):
    ...
    ValueError: quiet_ms must be >= 1 ms, got 0
    """

    min_duration_ms: int = 15 * MINUTE_MS
    cooldown_ms: int = 30 * MINUTE_MS
    quiet_ms: int = 30 * MINUTE_MS

    def __post_init__(self):
        for name, low in (("min_duration_ms", 0), ("cooldown_ms", 0), ("quiet_ms", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{name} must be an integer number of ms, got {v!r}")
            if v < low:
                raise ValueError(f"{name} must be >= {low} ms, got {v}")
            if v > MAX_POLICY_MS:
                raise ValueError(f"{name} must be at most {MAX_POLICY_MS} ms (30 days), got {v}")

    def to_json(self) -> str:
        """The policy as the JVM operator reads it."""
        return json.dumps({"min_duration_ms": self.min_duration_ms, "cooldown_ms": self.cooldown_ms,
                           "quiet_ms": self.quiet_ms}, sort_keys=True)


def incident_hex(machine_id: str, sensor_id: str, start_event_id: str) -> str:
    return fingerprint([machine_id, sensor_id, start_event_id]).hex()


def _anomalous(v) -> bool:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return False
    return bool(v)


def _usable(score) -> bool:
    return score is not None and not (isinstance(score, float) and math.isnan(score))


class _Incident:
    __slots__ = ("hex", "start", "last", "last_alert", "n_anomalous", "n_alerts", "max_score", "normal_after",
                 "ticket", "model_version")

    def __init__(self, hex_id: str, t: int, model_version):
        self.hex = hex_id
        self.start = self.last = self.last_alert = t
        self.n_anomalous = self.n_alerts = self.normal_after = 0
        self.max_score = None
        self.ticket = False
        self.model_version = model_version


class SensorTracker:
    """One sensor's incident state; feed it readings in (event_time, event_id) order."""

    def __init__(self, policy: AlertPolicy, machine_id: str, sensor_id: str):
        self.p = policy
        self.machine_id, self.sensor_id = machine_id, sensor_id
        self.open: Optional[_Incident] = None
        self.alerts: List[tuple] = []
        self.tickets: List[tuple] = []

    def _ticket(self, inc: _Incident, status: str, t: int) -> None:
        closed = status == CLOSED
        self.tickets.append((f"tkt-{inc.hex}", f"inc-{inc.hex}", self.machine_id, self.sensor_id, status, t,
                             inc.start, inc.last, t if closed else None, inc.n_anomalous, inc.n_alerts,
                             inc.max_score, (RECOVERED if inc.normal_after else SILENT) if closed else None,
                             inc.model_version))

    def advance(self, watermark) -> None:
        """Event time reached ``watermark``: close the open incident if its end is not after it."""
        inc = self.open
        if inc is not None and inc.last + self.p.quiet_ms <= watermark:
            if inc.ticket:
                self._ticket(inc, CLOSED, inc.last + self.p.quiet_ms)
            self.open = None

    def reading(self, event_id: str, t: int, score, anomalous, reasons, model_version) -> None:
        self.advance(t)  # step 1: t >= end closes first
        if not _anomalous(anomalous):
            if self.open is not None:
                self.open.normal_after += 1
            return
        inc = self.open
        if inc is None:
            inc = self.open = _Incident(incident_hex(self.machine_id, self.sensor_id, event_id), t, model_version)
            alert = True
        else:
            alert = t - inc.last_alert >= self.p.cooldown_ms
        inc.last = t
        inc.n_anomalous += 1
        inc.normal_after = 0
        if _usable(score) and (inc.max_score is None or score > inc.max_score):
            inc.max_score = float(score)
        if alert:
            inc.last_alert = t
            inc.n_alerts += 1
            self.alerts.append((event_id, f"inc-{inc.hex}", self.machine_id, self.sensor_id, t,
                                None if score is None else float(score), reasons, model_version, inc.n_alerts))
        if not inc.ticket and inc.last - inc.start >= self.p.min_duration_ms:
            inc.ticket = True
            self._ticket(inc, OPEN, t)


def _frame(rows: list, columns) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[n for n, _ in columns], dtype=object)
    for n, t in columns:
        if t == "BIGINT" and n not in ("ended_at",):
            frame[n] = frame[n].astype("int64")
    return frame


def run_alerts(scored: pd.DataFrame, policy: AlertPolicy, watermark: Optional[int] = None
               ) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """(alerts, tickets) of ``scored`` (SCORED_COLUMNS; extra columns ignored) under ``policy``, once
    the watermark reached ``watermark`` (None: end of input). Alerts in (machine_id, sensor_id,
    event_time) order, tickets in (machine_id, sensor_id, event_time, open before closed) order."""
    names = [n for n, _ in SCORED_COLUMNS]
    missing = [n for n in names if n not in scored.columns]
    if missing:
        raise ValueError(f"scored readings lack the columns {missing}")
    for n in ("event_id", "machine_id", "sensor_id", "event_time"):
        if scored[n].isna().any():
            raise ValueError(f"{n} must not be null")
    if scored["event_id"].duplicated().any():
        raise ValueError("event_ids must be unique (de-duplicate upstream)")
    records = [tuple(None if isinstance(v, float) and math.isnan(v) and k != "score" else v
                     for k, v in zip(names, r)) for r in scored[names].itertuples(index=False, name=None)]
    records = [(str(e), str(m), str(s), int(t), sc, a, rs, mv) for e, m, s, t, sc, a, rs, mv in records]
    records.sort(key=lambda r: (r[1], r[2], r[3], r[0]))
    alerts, tickets = [], []
    tracker = None
    for e, m, s, t, sc, a, rs, mv in records:
        if tracker is None or (tracker.machine_id, tracker.sensor_id) != (m, s):
            if tracker is not None:
                _finish(tracker, watermark, alerts, tickets)
            tracker = SensorTracker(policy, m, s)
        if watermark is not None and t > watermark:
            continue  # not yet seen at this watermark
        tracker.reading(e, t, sc, a, rs, mv)
    if tracker is not None:
        _finish(tracker, watermark, alerts, tickets)
    return _frame(alerts, ALERT_COLUMNS), _frame(tickets, TICKET_COLUMNS)


def _finish(tracker: SensorTracker, watermark, alerts: list, tickets: list) -> None:
    tracker.advance(math.inf if watermark is None else watermark)
    alerts += tracker.alerts
    tickets += tracker.tickets
