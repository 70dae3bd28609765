"""Parse and validate incoming records; whatever breaks the contract becomes a dead letter.

Two inputs, one output shape: JSON payloads from Kafka (``payload, topic, partition, offset``)
and typed rows from Parquet (the contract's columns, maybe ``_raw``). Valid events leave as
typed rows (contract fields + lineage); the rest leave on the DEAD_LETTERS side output with
the reason, the raw payload and the source position. Nothing is dropped.
"""
from __future__ import annotations

import json
import time

from pyflink.common import Row
from pyflink.datastream import OutputTag
from pyflink.datastream.functions import ProcessFunction

from features.contracts import RAW_PAYLOAD, TIME_SKEW, EventContract, InvalidEvent
from udfs.types import REJECT_COLUMNS, reject_row, row_type

DEAD_LETTERS = OutputTag("dead-letters", row_type(REJECT_COLUMNS))


class ParseEvents(ProcessFunction):
    """Validate records against ``contract``.

    ``kafka``: input rows are (payload, topic, partition, offset) with a JSON payload;
    otherwise rows carry the contract's columns (from Parquet).
    Absurd timestamps are dead-lettered as ``time_skew`` before they can drag the watermark:
    more than ``max_future_ms`` ahead of the wall clock, more than ``max_jump_ms`` ahead of the
    newest accepted event, or more than ``max_past_ms`` behind it. A stream that really jumps
    ahead (a quiet week, a replay of another period) is accepted once CONFIRM_JUMP events in a
    row agree on the new era; the first of them wait in the dead letters with their reason.
    """

    CONFIRM_JUMP = 3

    def __init__(self, contract: EventContract, kafka: bool, with_labels: bool, source: str,
                 max_future_ms: int, max_past_ms: int, max_jump_ms: int = 7 * 86_400_000):
        self.contract = contract
        self.kafka = kafka
        self.with_labels = with_labels
        self.source = source
        self.max_future_ms = max_future_ms
        self.max_past_ms = max_past_ms
        self.max_jump_ms = max_jump_ms
        self.names = contract.field_names + (contract.label_names if with_labels else ())

    def open(self, runtime_context):
        self.newest = None  # newest accepted event_time in this subtask
        self.jumps = []  # consecutive events refused as jumping ahead of the stream
        mg = runtime_context.get_metrics_group()
        self.accepted = mg.counter("eventsAccepted")
        self.rejected = mg.counter("eventsDeadLettered")

    def process_element(self, value, ctx):
        ingest = int(time.time() * 1000)
        if self.kafka:
            raw, source, partition, offset = value[0], value[1] or self.source, value[2], value[3]
        else:
            raw, source, partition, offset = None, self.source, None, None
        try:
            if self.kafka:
                ev = self.contract.parse(raw)
            else:
                row = value.as_dict()
                raw = row.get(RAW_PAYLOAD)
                ev = self.contract.from_row(row)
            t = ev["event_time"]
            self._check_skew(t, ingest)
        except InvalidEvent as e:
            self.rejected.inc()
            if raw is None:
                raw = json.dumps({k: v for k, v in value.as_dict().items() if k != RAW_PAYLOAD},
                                 default=str)
            yield DEAD_LETTERS, reject_row(e.reason, e.detail, raw, source, partition, offset, ingest)
            return
        if self.newest is None or t > self.newest:
            self.newest = t
        self.accepted.inc()
        yield Row(*[ev.get(n) for n in self.names], ingest, partition, offset)

    def _check_skew(self, t: int, now_ms: int) -> None:
        if t > now_ms + self.max_future_ms:
            raise InvalidEvent(TIME_SKEW, f"event_time {t} is {t - now_ms} ms ahead of the wall clock")
        if self.newest is None:
            return
        if t > self.newest + self.max_jump_ms:
            self.jumps.append(t)
            if len(self.jumps) < self.CONFIRM_JUMP:
                raise InvalidEvent(TIME_SKEW, f"event_time {t} is {t - self.newest} ms ahead of the stream")
            self.newest = min(self.jumps)  # confirmed: the stream moved on
        self.jumps.clear()
        if t < self.newest - self.max_past_ms:
            raise InvalidEvent(TIME_SKEW, f"event_time {t} is {self.newest - t} ms behind the stream")
