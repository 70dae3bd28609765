"""Parse and validate incoming records; whatever breaks the contract becomes a dead letter.

Two inputs, one output shape: payloads from Kafka (``payload, topic, partition, offset``, the
payload as raw bytes) and typed rows from Parquet (the contract's columns, maybe ``_raw``). Valid
events leave as typed rows (contract fields + lineage); the rest leave on the DEAD_LETTERS side
output with the reason, the (bounded) raw payload and the source position. The logic is
features.intake.Intake, which never raises: nothing is dropped and no record stops the job.
"""
from __future__ import annotations

import json
import time

from pyflink.common import Row
from pyflink.datastream import OutputTag
from pyflink.datastream.functions import ProcessFunction

from features.contracts import RAW_PAYLOAD, EventContract
from features.intake import Intake
from udfs.counters import RunCounts
from udfs.types import REJECT_COLUMNS, reject_row, row_type

DEAD_LETTERS = OutputTag("dead-letters", row_type(REJECT_COLUMNS))


class ParseEvents(ProcessFunction):
    """Validate records against ``contract`` (see features.intake for the time guards).

    ``kafka``: input rows are (payload, topic, partition, offset); otherwise rows carry the
    contract's columns (from Parquet). ``stream_guards=False`` (backfill) drops the arrival-order
    guards, which mean nothing for a file.
    """

    def __init__(self, contract: EventContract, kafka: bool, with_labels: bool, source: str,
                 max_future_ms: int, max_past_ms: int, max_jump_ms: int = 3_600_000,
                 max_record_bytes: int = 65_536, stream_guards: bool = True, counts_dir=None,
                 stop_offsets=None):
        self.contract = contract
        self.kafka = kafka
        self.source = source
        self.limits = dict(max_future_ms=max_future_ms, max_past_ms=max_past_ms, max_jump_ms=max_jump_ms,
                           max_record_bytes=max_record_bytes, stream_guards=stream_guards)
        self.names = contract.field_names + (contract.label_names if with_labels else ())
        self.counts_dir = counts_dir
        self.stop_offsets = stop_offsets  # {partition: offset} of a restored --until run (jobs/ops.py)

    def open(self, runtime_context):
        self.intake = Intake(self.contract, **self.limits)
        mg = runtime_context.get_metrics_group()
        self.accepted = mg.counter("eventsAccepted")
        self.rejected = mg.counter("eventsDeadLettered")
        self.counts = RunCounts(self.counts_dir, "parse")

    def close(self):
        self.counts.close()

    def process_element(self, value, ctx):
        ingest = int(time.time() * 1000)
        if self.kafka:
            raw, source, partition, offset = value[0], value[1] or self.source, value[2], value[3]
            if self.stop_offsets is not None and offset >= self.stop_offsets.get(partition, 0):
                return  # past --until: not part of this run, not counted (a restored source reads on)
            out = self.intake.payload(raw, ingest)
        else:
            raw, source, partition, offset = None, self.source, None, None
            row = value.as_dict()
            raw = row.get(RAW_PAYLOAD)
            out = self.intake.row(row, ingest)
        if not out.ok:
            self.rejected.inc()
            self.counts.inc(f"dead_letter.{out.reason}")
            if raw is None:
                raw = json.dumps({k: v for k, v in value.as_dict().items() if k != RAW_PAYLOAD}, default=str)
            yield DEAD_LETTERS, reject_row(out.reason, out.detail, raw, source, partition, offset, ingest)
            return
        self.accepted.inc()
        self.counts.inc("accepted")
        ev = out.event
        yield Row(*[ev.get(n) for n in self.names], ingest, partition, offset)
