"""Intake: whatever bytes arrive become exactly one outcome, an accepted event or a dead letter.

This is the reference intake: contract validation, the bounds on work per record, and the
stream-order guards on event time. In a job, the JVM intake (jvm/engine ``Intake``) takes the
records it is certain this one accepts, with the same values, and hands the rest to it
(udfs/parse.py); the time guards run on the JVM after both (``TimeGuards``, the same rules word
for word; ``time_guards=False`` leaves them out here). It never
raises: an unexpected error in reading a record is itself a dead letter (``unparseable``), so
one record can neither stop the job nor vanish.

Time guards, checked before watermarks are assigned (so a refused timestamp never moves them):

* wall clock: more than ``max_future_ms`` ahead of the wall clock is ``time_skew`` (always);
* stream order (streaming only): more than ``max_jump_ms`` ahead of the newest accepted event
  is ``time_skew`` unless the next events confirm it: CONFIRM_JUMP events in a row, each beyond
  the bound and within ``max_jump_ms`` of each other, mean the stream really moved on (a quiet
  period, a replay of another era); from the third on they are accepted. More than
  ``max_past_ms`` behind the newest is ``time_skew`` too.

A backfill (``stream_guards=False``) has no arrival order, so only the wall-clock bound applies:
any row order of a file gives the same outcomes.

>>> from features.contracts import PAYMENT
>>> intake = Intake(PAYMENT)
>>> ok = ('{"event_id":"e1","event_time":1767225600000,"card_id":"c1","merchant_id":"m1",'
...       '"mcc":"5411","amount":9.5,"currency":"EUR","lat":0,"lon":0}')
>>> intake.payload(ok.encode(), now_ms=1767225600000).event["amount"]
9.5
>>> intake.payload(b"\\xff\\xfe", now_ms=1767225600000).reason
'malformed_json'
"""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional

from features.contracts import (MAX_RECORD_BYTES, RAW_PAYLOAD, TIME_SKEW, TOO_LARGE, UNPARSEABLE,
                                EventContract, InvalidEvent)

DAY_MS = 86_400_000
CONFIRM_JUMP = 3


class Outcome(NamedTuple):
    event: Optional[dict]  # the validated event, or None
    reason: Optional[str] = None  # dead-letter reason (features.contracts.REASONS), or None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.event is not None


class Intake:
    """Validates records of one contract for one source subtask (the guards keep its stream time)."""

    def __init__(self, contract: EventContract, *, max_record_bytes: int = MAX_RECORD_BYTES,
                 max_future_ms: int = DAY_MS, max_jump_ms: int = 3_600_000, max_past_ms: int = 365 * DAY_MS,
                 stream_guards: bool = True, time_guards: bool = True):
        if min(max_record_bytes, max_future_ms, max_jump_ms, max_past_ms) <= 0:
            raise ValueError("intake bounds must be > 0")
        self.contract = contract
        self.max_record_bytes = max_record_bytes
        self.max_future_ms = max_future_ms
        self.max_jump_ms = max_jump_ms
        self.max_past_ms = max_past_ms
        self.stream_guards = stream_guards
        # False: contract validation only; the caller applies the time guards (jvm/engine TimeGuards)
        self.time_guards = time_guards
        self.newest: Optional[int] = None  # newest accepted event_time
        self.jumps: list = []  # consecutive event times refused as jumping ahead

    def payload(self, raw: Any, now_ms: int) -> Outcome:
        """A Kafka payload (bytes or str)."""
        return self._guarded(lambda: self.contract.parse(raw, max_bytes=self.max_record_bytes), now_ms)

    def row(self, row: Mapping[str, Any], now_ms: int) -> Outcome:
        """A typed row from Parquet (its RAW_PAYLOAD column, where set, is a verbatim payload)."""
        if row.get(RAW_PAYLOAD) is not None:
            return self.payload(row[RAW_PAYLOAD], now_ms)
        return self._guarded(lambda: self._row(row), now_ms)

    def _row(self, row: Mapping[str, Any]) -> dict:
        for k, v in row.items():  # typed columns can be huge too (a 500 KB id from a file)
            if isinstance(v, (str, bytes)) and len(v) > self.max_record_bytes:
                raise InvalidEvent(TOO_LARGE, f"column {k} is {len(v)} long (max {self.max_record_bytes})")
        return self.contract.from_row(row)

    def _guarded(self, read, now_ms: int) -> Outcome:
        try:
            ev = read()
            if self.time_guards:
                self._check_time(ev["event_time"], now_ms)
        except InvalidEvent as e:
            return Outcome(None, e.reason, e.detail)
        except Exception as e:  # noqa: BLE001 - by design: one record must never stop the job
            return Outcome(None, UNPARSEABLE, f"{type(e).__name__}: {str(e)[:200]}")
        if self.newest is None or ev["event_time"] > self.newest:
            self.newest = ev["event_time"]
        return Outcome(ev)

    def _check_time(self, t: int, now_ms: int) -> None:
        if t > now_ms + self.max_future_ms:
            raise InvalidEvent(TIME_SKEW, f"event_time {t} is {t - now_ms} ms ahead of the wall clock "
                                          f"(max {self.max_future_ms})")
        if not self.stream_guards or self.newest is None:
            return
        if t > self.newest + self.max_jump_ms:
            if self.jumps and abs(t - self.jumps[-1]) > self.max_jump_ms:
                self.jumps.clear()  # not the same new era as the previous candidate
            self.jumps.append(t)
            if len(self.jumps) < CONFIRM_JUMP:
                raise InvalidEvent(TIME_SKEW, f"event_time {t} is {t - self.newest} ms ahead of the stream "
                                              f"(max jump {self.max_jump_ms}; {CONFIRM_JUMP} in a row confirm one)")
            self.newest = min(self.jumps)  # confirmed: the stream moved on
        self.jumps.clear()
        if t < self.newest - self.max_past_ms:
            raise InvalidEvent(TIME_SKEW, f"event_time {t} is {self.newest - t} ms behind the stream")
