"""The de-duplication operator: keyed by event_id, one copy of each event goes on (features/dedup.py).

Placed after the watermarks and before key_by(card), so a repeated event_id never reaches the
card's history or the scorer, whichever card the copy names. Copies leave on the DUPLICATES side
output in the dead-letter shape (jobs/pipeline.py unions it into the dead letters), with the
event as JSON in ``raw`` (content only; lineage is in the dead letter's own columns).

Streaming: ValueState per event_id holds (event_time, fingerprint); an event-time timer at
event_time + horizon clears it, so the state is bounded by event time and checkpointed with the
job. BATCH: the records of one event_id arrive together; a plain dict holds them until the
key's end-of-key timer, then features.dedup.resolve picks the kept one independently of row
order (the fingerprint is only computed for ids that have more than one record).
"""
from __future__ import annotations

import json
from typing import Sequence

from pyflink.common import Types
from pyflink.datastream import OutputTag
from pyflink.datastream.functions import KeyedProcessFunction
from pyflink.datastream.state import ValueStateDescriptor

from features.dedup import fingerprint, is_copy, resolve, verdict
from udfs.counters import RunCounts
from udfs.types import REJECT_COLUMNS, reject_row, row_type

DUPLICATES = OutputTag("duplicates", row_type(REJECT_COLUMNS))
_END_OF_KEY = 2 ** 63 - 2  # a BATCH-mode timer that fires once the key's input is exhausted
_MAX_TIMER = 2 ** 63 - 3  # below the end-of-key timestamp; a huge horizon must not overflow a long


class Dedup(KeyedProcessFunction):
    """``event_names``: the event row's columns; ``content_names``: those that make up its content
    (contract fields and labels, not lineage)."""

    def __init__(self, event_names: Sequence[str], content_names: Sequence[str], horizon_ms: int,
                 source: str = "", batch: bool = False, counts_dir=None):
        if horizon_ms <= 0:
            raise ValueError("the dedup horizon must be > 0 (leave the operator out to turn it off)")
        self.event_names = tuple(event_names)
        self.content_idx = tuple(self.event_names.index(n) for n in content_names)
        self.content_names = tuple(content_names)
        self.t_idx = self.event_names.index("event_time")
        self.lineage_idx = tuple(self.event_names.index(n) for n in ("src_partition", "src_offset", "ingest_ms"))
        self.horizon = horizon_ms
        self.source = source
        self.batch = batch
        self.counts_dir = counts_dir

    def open(self, runtime_context):
        self.seen = runtime_context.get_state(ValueStateDescriptor("seen", Types.PICKLED_BYTE_ARRAY()))
        self.dropped = runtime_context.get_metrics_group().counter("eventsDuplicate")
        self.counts = RunCounts(self.counts_dir, "dedup")
        # BATCH: one key's records arrive together and nothing is checkpointed (the Java feature operator relies on the same)
        self.key_buffer = {}

    def close(self):
        self.counts.close()

    def _fp(self, value) -> bytes:
        return fingerprint([value[i] for i in self.content_idx])

    def process_element(self, value, ctx):
        if self.batch:
            key = ctx.get_current_key()
            pending = self.key_buffer.get(key)
            if pending is None:
                self.key_buffer[key] = [value]
                ctx.timer_service().register_event_time_timer(_END_OF_KEY)
            else:
                pending.append(value)
            return
        t = value[self.t_idx]
        fp = self._fp(value)
        seen = self.seen.value()
        if seen is not None:
            t0, fp0 = seen
            if is_copy(t0, t, self.horizon):
                yield self._reject(value, *verdict(t0, fp0, t, fp))
                return
            if t < t0:  # an older, distinct use of the id: the newer one stays remembered
                yield value
                return
        self.seen.update((t, fp))
        ctx.timer_service().register_event_time_timer(min(t + self.horizon, _MAX_TIMER))
        yield value

    def on_timer(self, timestamp, ctx):
        if self.batch:
            pending = self.key_buffer.pop(ctx.get_current_key(), ())
            if len(pending) == 1:
                yield pending[0]
                return
            outcomes = resolve([(v[self.t_idx], self._fp(v)) for v in pending], self.horizon)
            for v, out in zip(pending, outcomes):
                yield v if out is None else self._reject(v, *out)
            return
        seen = self.seen.value()
        # an earlier id's timer must not clear the state of a later, distinct use of that id
        if seen is not None and min(seen[0] + self.horizon, _MAX_TIMER) <= timestamp:
            self.seen.clear()

    def _reject(self, value, reason: str, detail: str):
        self.dropped.inc()
        self.counts.inc(reason)
        raw = json.dumps({n: value[i] for n, i in zip(self.content_names, self.content_idx)},
                         separators=(",", ":"), default=str)
        partition, offset, ingest = (value[i] for i in self.lineage_idx)
        return DUPLICATES, reject_row(reason, detail, raw, self.source, partition, offset, ingest)
