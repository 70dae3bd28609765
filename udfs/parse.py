"""Parse and validate incoming records; whatever breaks the contract becomes a dead letter.

Two inputs, one output shape: payloads from Kafka (``payload, topic, partition, offset``, the
payload as raw bytes) and typed rows from Parquet (the contract's columns, maybe ``_raw``). Valid
events leave as typed rows (contract fields + lineage); the rest become dead letters with the
reason, the (bounded) raw payload and the source position. Nothing is dropped and no record stops
the job. Three stages::

    records --JVM intake (jvm/engine Intake)--certain------------------------\\
            \\--uncertain--> Python intake (features.intake, exact reasons) --+--> JVM time guards --> events
                                   \\--> dead letters                               \\--> dead letters (time_skew)

The JVM path accepts only what the Python intake certainly accepts, with the same values
(tests/integration/test_jvm_intake.py holds it to that on the hostile corpus), so everyday records
never cross into Python; malformed, unusual or doubtful ones take the Python path and get its
exact outcome. The time guards need one view of the stream's order, so they run after both paths
(``TimeGuards``, the Java twin of ``Intake._check_time``).
"""
from __future__ import annotations

import json
import time
from typing import NamedTuple, Optional, Sequence

from pyflink.common import Row
from pyflink.datastream import DataStream, OutputTag
from pyflink.datastream.functions import ProcessFunction

from features.contracts import RAW_PAYLOAD, EventContract
from features.intake import Intake
from udfs.counters import RunCounts
from udfs.types import REJECT_COLUMNS, reject_row, row_type

DEAD_LETTERS = OutputTag("dead-letters", row_type(REJECT_COLUMNS))
PAYLOAD, SOURCE = "_payload", "_source"  # carried to the time guards, for a refused record's dead letter


class IntakeStreams(NamedTuple):
    events: DataStream  # rows of ``event_columns``
    dead_letters: DataStream  # REJECT_COLUMNS rows


def carrier_columns(event_columns: Sequence, kafka: bool) -> list:
    """The event columns plus what a refused record's dead letter needs: its payload and source."""
    return list(event_columns) + [(PAYLOAD, "BYTES" if kafka else "STRING"), (SOURCE, "STRING")]


def intake(rows: DataStream, contract: EventContract, event_columns: Sequence, *, kafka: bool,
           source_names: Sequence[str], with_labels: bool, source: str, max_future_ms: int, max_past_ms: int,
           max_jump_ms: int, max_record_bytes: int, stream_guards: bool, counts_dir: Optional[str],
           stop_offsets: Optional[dict], uid: str) -> IntakeStreams:
    """Validated events and dead letters of ``rows`` (Kafka records, or typed rows of ``source_names``)."""
    from pyflink.java_gateway import get_gateway

    from udfs.engine import engine_jar_class

    gw = get_gateway()
    names = gw.new_array(gw.jvm.String, len(source_names))
    for i, n in enumerate(source_names):
        names[i] = n
    carrier = carrier_columns(event_columns, kafka)
    carrier_type = row_type(carrier)
    engine = engine_jar_class()
    stop = None if stop_offsets is None else json.dumps(sorted([int(p), int(o)] for p, o in stop_offsets.items()))
    fast = engine.intake(rows._j_data_stream, names, carrier_type.get_java_type_info(),
                         json.dumps(contract.intake_spec(with_labels)), bool(kafka), int(max_record_bytes), stop,
                         f"{uid}/intake")
    slow = (DataStream(fast.side())
            .process(ParseEvents(contract, kafka=kafka, with_labels=with_labels, source=source,
                                 max_record_bytes=max_record_bytes, counts_dir=counts_dir),
                     output_type=carrier_type)
            .name(f"{uid}/parse").uid(f"{uid}/parse"))
    guarded = engine.timeGuards(DataStream(fast.main()).union(slow)._j_data_stream, carrier_type.get_java_type_info(),
                                len(event_columns), int(max_future_ms), int(max_jump_ms), int(max_past_ms),
                                bool(stream_guards), f"{uid}/time-guards", counts_dir)
    refused = (DataStream(guarded.side())
               .map(RefusedRow([n for n, _ in carrier], len(event_columns), source), output_type=row_type(REJECT_COLUMNS))
               .name(f"{uid}/time-skew").uid(f"{uid}/time-skew"))
    return IntakeStreams(DataStream(guarded.main()), slow.get_side_output(DEAD_LETTERS).union(refused))


class ParseEvents(ProcessFunction):
    """The Python intake: validate records against ``contract`` (features.intake, without the time
    guards, which follow both paths); valid ones leave as carrier rows, the rest as dead letters.

    ``kafka``: input rows are (payload, topic, partition, offset); otherwise rows carry the
    contract's columns (from Parquet).
    """

    def __init__(self, contract: EventContract, kafka: bool, with_labels: bool, source: str,
                 max_record_bytes: int = 65_536, counts_dir=None):
        self.contract = contract
        self.kafka = kafka
        self.source = source
        self.max_record_bytes = max_record_bytes
        self.names = contract.field_names + (contract.label_names if with_labels else ())
        self.counts_dir = counts_dir

    def open(self, runtime_context):
        # the time guards run after both intake paths (TimeGuards): none here
        self.intake = Intake(self.contract, max_record_bytes=self.max_record_bytes, stream_guards=False,
                             time_guards=False)
        self.rejected = runtime_context.get_metrics_group().counter("eventsDeadLettered")
        self.counts = RunCounts(self.counts_dir, "parse")

    def close(self):
        self.counts.close()

    def process_element(self, value, ctx):
        ingest = int(time.time() * 1000)
        if self.kafka:
            raw, source, partition, offset = value[0], value[1] or self.source, value[2], value[3]
            out = self.intake.payload(raw, ingest)
        else:
            source, partition, offset = self.source, None, None
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
        ev = out.event
        yield Row(*[ev.get(n) for n in self.names], ingest, partition, offset, raw, source)


class RefusedRow:
    """A record the time guards refused (carrier row + reason + detail) -> a REJECT_COLUMNS row."""

    def __init__(self, carrier_names: Sequence[str], width: int, source: str):
        self.names = list(carrier_names)
        self.width = width
        self.source = source

    def __call__(self, value):
        ev = dict(zip(self.names, value))
        raw = ev[PAYLOAD]
        if raw is None:  # a typed row: the row itself, as the Python intake writes it
            content = self.names[:self.width - 3]  # the contract columns (lineage is in the dead letter's own)
            raw = json.dumps({k: ev[k] for k in content}, default=str)
        n = len(self.names)
        return reject_row(value[n], value[n + 1], raw, ev[SOURCE] or self.source, ev["src_partition"],
                          ev["src_offset"], ev["ingest_ms"])
