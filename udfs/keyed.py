"""The keyed feature operator: a key's history in checkpointed state, fed to pure feature logic.

The logic is any object made by ``new_state()`` with ``update(event: dict) -> tuple`` (the
feature values, in the FeatureSet's order) that trims itself by event time, for instance
``features.fraud.CardHistory``. This operator only adds what Flink owns: state, timers,
the watermark, and the late output.

Orderings:
  arrival     each event is scored as it arrives, over the events already in state.
  event-time  events wait in state until the watermark passes event_time + allowed
              lateness, then go through the logic in (event_time, event_id) order: exactly
              the backfill's answer, even with disorder; latency = the disorder bound.

An event whose event_time + allowed lateness is at or behind the watermark is late: it
leaves on the LATE side output with its reason and never touches state.
"""
from __future__ import annotations

import json
from typing import Callable, Sequence

from pyflink.common import Row, Types
from pyflink.datastream import OutputTag
from pyflink.datastream.functions import KeyedProcessFunction
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from features.contracts import LATE
from udfs.counters import RunCounts
from udfs.types import REJECT_COLUMNS, reject_row, row_type

LATE_EVENTS = OutputTag("late-events", row_type(REJECT_COLUMNS))
ORDERINGS = ("arrival", "event-time")
_NO_WATERMARK = -(2 ** 63)
_END_OF_KEY = 2 ** 63 - 2  # a BATCH-mode timer that fires once the key's input is exhausted


class KeyedFeatures(KeyedProcessFunction):
    def __init__(self, new_state: Callable, event_names: Sequence[str], key: str, ordering: str,
                 allowed_lateness_ms: int, label_names: Sequence[str] = (), source: str = "",
                 batch: bool = False, counts_dir=None):
        if ordering not in ORDERINGS:
            raise ValueError(f"ordering must be one of {ORDERINGS}, got {ordering!r}")
        if allowed_lateness_ms < 0:
            raise ValueError("allowed lateness must be >= 0")
        self.new_state = new_state
        self.event_names = tuple(event_names)
        self.key = key
        self.event_time_order = ordering == "event-time"
        self.lateness = allowed_lateness_ms
        self.label_names = tuple(label_names)
        self.source = source
        self.batch = batch
        self.counts_dir = counts_dir

    def open(self, runtime_context):
        self.history = runtime_context.get_state(
            ValueStateDescriptor("history", Types.PICKLED_BYTE_ARRAY()))
        if self.event_time_order:
            self.buffer = runtime_context.get_map_state(
                MapStateDescriptor("pending", Types.LONG(), Types.PICKLED_BYTE_ARRAY()))
        mg = runtime_context.get_metrics_group()
        self.emitted = mg.counter("featureRowsEmitted")
        self.late = mg.counter("eventsLate")
        self.counts = RunCounts(self.counts_dir, "features")  # end-of-run counts (udfs/counters.py)
        # BATCH mode feeds one key's records together and fires its timers when the key is done,
        # and nothing is checkpointed: a plain dict replaces per-event state round trips.
        self.key_buffer = {}

    def close(self):
        self.counts.close()

    def process_element(self, value, ctx):
        ev = dict(zip(self.event_names, value))
        if self.batch:
            key = ev[self.key]
            pending = self.key_buffer.get(key)
            if pending is None:
                pending = self.key_buffer[key] = []
                ctx.timer_service().register_event_time_timer(_END_OF_KEY)
            pending.append(ev)
            return
        t = ev["event_time"]
        wm = ctx.timer_service().current_watermark()
        if wm != _NO_WATERMARK and t + self.lateness <= wm:
            self.late.inc()
            self.counts.inc("late")
            raw = json.dumps({k: v for k, v in ev.items() if k not in ("src_partition", "src_offset")})
            yield LATE_EVENTS, reject_row(LATE, f"event_time {t} is {wm - t} ms behind the watermark {wm} "
                                          f"(allowed lateness {self.lateness} ms)", raw, self.source,
                                          ev.get("src_partition"), ev.get("src_offset"), ev.get("ingest_ms"))
            return
        if not self.event_time_order:
            state = self.history.value() or self.new_state()
            feats = state.update(ev)
            self.history.update(state)
            self.emitted.inc()
            self.counts.inc("feature_rows")
            yield self._row(ev, feats)
            return
        pending = self.buffer.get(t)
        if pending is None:
            pending = []
            ctx.timer_service().register_event_time_timer(t + self.lateness)
        pending.append(ev)
        self.buffer.put(t, pending)

    def on_timer(self, timestamp, ctx):
        if self.batch:
            pending = self.key_buffer.pop(ctx.get_current_key(), [])
            pending.sort(key=lambda e: (e["event_time"], e["event_id"]))
            state = self.new_state()
            for ev in pending:
                self.emitted.inc()
                self.counts.inc("feature_rows")
                yield self._row(ev, state.update(ev))
            return
        t = timestamp - self.lateness
        pending = self.buffer.get(t)
        if not pending:
            return
        self.buffer.remove(t)
        pending.sort(key=lambda e: e["event_id"])
        state = self.history.value() or self.new_state()
        for ev in pending:
            feats = state.update(ev)
            self.emitted.inc()
            self.counts.inc("feature_rows")
            yield self._row(ev, feats)
        self.history.update(state)

    def _row(self, ev: dict, feats: tuple) -> Row:
        return Row(ev["event_id"], ev[self.key], ev["event_time"], *feats, ev.get("ingest_ms"),
                   *[ev.get(n) for n in self.label_names])
