"""Degradation helpers for in-stream scoring, plain Python (no Flink), so they are unit-tested.

CircuitBreaker: after ``trip_after`` bad batches in a row (an exception, or slower than
``max_batch_ms``), scoring is skipped for ``cooldown_s`` and the rules decide; then one batch
is let through to probe (half-open). A good probe closes the breaker, a bad one re-opens it.

>>> clock = [0.0]
>>> b = CircuitBreaker(trip_after=2, max_batch_ms=100, cooldown_s=10, clock=lambda: clock[0])
>>> b.record(ok=True, batch_ms=500); b.record(ok=False, batch_ms=1); b.allow(), b.trips
(False, 1)
>>> clock[0] = 10.5; b.allow()   # cool-down over: one probe batch
True
>>> b.record(ok=True, batch_ms=5); b.state
'closed'
"""
from __future__ import annotations

import time
from typing import Callable, Optional

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitBreaker:
    def __init__(self, trip_after: int = 3, max_batch_ms: float = 1_000.0, cooldown_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        if trip_after < 1 or max_batch_ms <= 0 or cooldown_s < 0:
            raise ValueError("trip_after >= 1, max_batch_ms > 0 and cooldown_s >= 0 are required")
        self.trip_after = trip_after
        self.max_batch_ms = max_batch_ms
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.state = CLOSED
        self.bad_in_a_row = 0
        self.opened_at = 0.0
        self.trips = 0

    def allow(self) -> bool:
        """May the next batch be scored by the model?"""
        if self.state == OPEN and self.clock() - self.opened_at >= self.cooldown_s:
            self.state = HALF_OPEN
        return self.state != OPEN

    def record(self, ok: bool, batch_ms: float) -> None:
        """The outcome of a batch the model scored (or tried to)."""
        bad = (not ok) or batch_ms > self.max_batch_ms
        if not bad:
            self.bad_in_a_row = 0
            self.state = CLOSED
            return
        self.bad_in_a_row += 1
        if self.state == HALF_OPEN or self.bad_in_a_row >= self.trip_after:
            self.state = OPEN
            self.opened_at = self.clock()
            self.trips += 1
            self.bad_in_a_row = 0


class Reloader:
    """Polls a model registry's current pointer at most every ``interval_s`` seconds.

    ``check()`` returns the newly promoted version's name when it changed since the last
    successful load, else None; the caller loads it and calls ``loaded(version)``.
    """

    def __init__(self, current: Callable[[], Optional[str]], interval_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.current = current
        self.interval_s = interval_s
        self.clock = clock
        self.version: Optional[str] = None
        self.next_check = 0.0

    def check(self) -> Optional[str]:
        now = self.clock()
        if now < self.next_check:
            return None
        self.next_check = now + self.interval_s
        try:
            v = self.current()
        except OSError:
            return None
        return v if v is not None and v != self.version else None

    def loaded(self, version: Optional[str]) -> None:
        self.version = version
