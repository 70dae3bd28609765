"""Event-time watermarks, assigned after parsing so a malformed or absurd timestamp never
reaches the watermark generator (it was dead-lettered first)."""
from __future__ import annotations

from pyflink.common import Duration, WatermarkStrategy
from pyflink.common.watermark_strategy import TimestampAssigner


class EventTime(TimestampAssigner):
    """Reads the event's ``event_time`` (epoch ms) field."""

    def __init__(self, index: int):
        self.index = index

    def extract_timestamp(self, value, record_timestamp) -> int:
        return value[self.index]


def bounded_out_of_orderness(event_time_index: int, max_disorder_ms: int, idleness_ms: int = 0):
    """Watermark = newest event_time - max_disorder_ms - 1; an idle input stops holding it back."""
    if max_disorder_ms < 0:
        raise ValueError("max out-of-orderness must be >= 0")
    strategy = (WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(max_disorder_ms))
                .with_timestamp_assigner(EventTime(event_time_index)))
    if idleness_ms > 0:
        strategy = strategy.with_idleness(Duration.of_millis(idleness_ms))
    return strategy
