"""Event-time watermarks on the JVM, assigned after parsing so a malformed or absurd timestamp never
reaches the watermark generator (it was dead-lettered first).

Flink's own bounded-out-of-orderness generator (watermark = newest event_time - max_disorder_ms
- 1, an idle input stops holding it back), with the timestamp read from the row's ``event_time``
by a Java assigner (jvm/engine ``Engine.watermarks``): a Python assigner would cross into Python
for every record.
"""
from __future__ import annotations

from typing import Sequence

from pyflink.datastream import DataStream

from udfs.engine import engine_jar_class
from udfs.types import row_type


def with_watermarks(events: DataStream, event_columns: Sequence, max_disorder_ms: int, idleness_ms: int,
                    uid: str) -> DataStream:
    """``events`` (rows of ``event_columns``) with timestamps from ``event_time`` and watermarks."""
    if max_disorder_ms < 0 or idleness_ms < 0:
        raise ValueError("max out-of-orderness and idleness must be >= 0")
    return DataStream(engine_jar_class().watermarks(events._j_data_stream, row_type(event_columns).get_java_type_info(),
                                                    "event_time", int(max_disorder_ms), int(idleness_ms), uid))
