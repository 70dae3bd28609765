"""The fraud features computed event by event in plain Python: a reference for the engine.

``CardHistory`` keeps one card's event-time history and computes an event's 14 features from
it, the way the first streamscore operator did in Flink state; ``compute_features`` runs it over
a batch. The engine (jvm/engine, features/execute.py) must agree with it exactly
(tests/fast/test_declare.py, tests/fast/test_fraud_features.py, tests/integration/...).

>>> h = CardHistory()
>>> e1 = dict(event_id="a", event_time=0, card_id="c", merchant_id="m1", amount=10.0,
...           device_id=None, lat=0.0, lon=0.0)
>>> h.update(e1)[:5]
(1, 1, 1, 10.0, 10.0)
>>> e2 = dict(e1, event_id="b", event_time=3_600_000, amount=30.0)  # exactly 1 h later
>>> row = dict(zip(FRAUD_FEATURES.feature_names, h.update(e2)))
>>> row["txn_count_1h"], row["txn_count_24h"], row["amount_mean_30d"], row["secs_since_prev"]
(1, 2, 10.0, 3600.0)
"""
from __future__ import annotations

import math
from bisect import bisect_left
from typing import Iterable, Iterator, Optional

from features.fraud import FRAUD_FEATURES, MIN_SECS_FOR_SPEED, haversine_km

_W1H, _W24H, _W7D, _W30D = (FRAUD_FEATURES.windows[w] for w in ("1h", "24h", "7d", "30d"))

# The slice of an event the logic keeps: (event_time, event_id, amount, merchant_id, device_id, lat, lon).
T, ID, AMOUNT, MERCHANT, DEVICE, LAT, LON = range(7)


class CardHistory:
    """One card's event-time history (what the first operator kept in keyed state).

    ``events`` holds the card's events of the last ``retention`` ms (of event time, counted
    back from the newest event seen), sorted by (event_time, event_id). ``last`` is the newest
    event ever seen and survives trimming, so ``secs_since_prev`` works after long silences.
    """

    __slots__ = ("events", "last")

    def __init__(self, events: Optional[list] = None, last: Optional[tuple] = None):
        self.events = events if events is not None else []
        self.last = last

    def __getstate__(self):
        return (self.events, self.last)

    def __setstate__(self, state):
        self.events, self.last = state

    def update(self, e: dict) -> tuple:
        """Insert event ``e`` and return its feature values, in FRAUD_FEATURES order."""
        rec = (e["event_time"], e["event_id"], e["amount"], e["merchant_id"], e.get("device_id"),
               e["lat"], e["lon"])
        events = self.events
        pos = bisect_left(events, rec[:2], key=_order)
        feats = _features(rec, events, pos, self.last)
        events.insert(pos, rec)
        if self.last is None or _order(rec) > _order(self.last):
            self.last = rec
        self.trim(self.last[T] - FRAUD_FEATURES.retention_ms)
        return feats

    def trim(self, horizon_ms: int) -> None:
        """Forget events at or before ``horizon_ms``; no window reaches them any more."""
        events = self.events
        if events and events[0][T] <= horizon_ms:
            cut = bisect_left(events, horizon_ms + 1, key=_time)
            del events[:cut]


def _order(rec: tuple) -> tuple:
    return rec[0], rec[1]


def _time(rec: tuple) -> int:
    return rec[0]


def _features(e: tuple, events: list, pos: int, last: Optional[tuple]) -> tuple:
    """Features of ``e`` given the card's sorted history; events[:pos] precede e."""
    t, amount, merchant, device = e[T], e[AMOUNT], e[MERCHANT], e[DEVICE]
    c1h = c24h = c7d = 1
    s1h = s24h = amount
    merchants_24h = {merchant}
    merchant_seen = device_seen = False
    n30 = 0
    sum30 = 0.0
    i = pos - 1
    while i >= 0:
        p = events[i]
        age = t - p[T]
        if age >= _W30D:
            break
        n30 += 1
        sum30 += p[AMOUNT]
        if p[MERCHANT] == merchant:
            merchant_seen = True
        if device is not None and p[DEVICE] == device:
            device_seen = True
        if age < _W7D:
            c7d += 1
            if age < _W24H:
                c24h += 1
                s24h += p[AMOUNT]
                merchants_24h.add(p[MERCHANT])
                if age < _W1H:
                    c1h += 1
                    s1h += p[AMOUNT]
        i -= 1

    mean30 = std30 = z30 = None
    if n30:
        mean30 = sum30 / n30
        if n30 >= 2:
            window = events[pos - n30:pos]
            first = window[0][AMOUNT]
            if all(p[AMOUNT] == first for p in window):
                # equal amounts: std is exactly 0, though sum/n of e.g. three 0.1s is not exactly 0.1
                std30 = 0.0
            else:
                sq = 0.0  # second pass over the window, numerically safer than sum of squares
                for p in window:
                    d = p[AMOUNT] - mean30
                    sq += d * d
                std30 = math.sqrt(sq / n30)
            if std30 > 0:
                z30 = (amount - mean30) / std30

    prev = events[pos - 1] if pos > 0 else (last if last is not None and _order(last) < _order(e) else None)
    secs = km = kmh = None
    if prev is not None:
        secs = (t - prev[T]) / 1000.0
        km = haversine_km(prev[LAT], prev[LON], e[LAT], e[LON])
        kmh = km / (max(secs, MIN_SECS_FOR_SPEED) / 3600.0)

    return (c1h, c24h, c7d, s1h, s24h, mean30, std30, z30, secs, km, kmh, len(merchants_24h),
            not merchant_seen, None if device is None else not device_seen)


def compute_features(events: Iterable[dict], ordered: bool = True) -> Iterator[dict]:
    """Feature rows for a batch of payment events, in plain Python (no Flink).

    With ``ordered`` (the default) each card's events are processed in (event_time, event_id)
    order, which is what the backfill and the `event-time` streaming ordering produce;
    otherwise in the order given (the `arrival` ordering).
    """
    evs = list(events)
    if ordered:
        evs.sort(key=lambda e: (e["event_time"], e["event_id"]))
    cards: dict = {}
    names = FRAUD_FEATURES.feature_names
    for e in evs:
        h = cards.get(e["card_id"])
        if h is None:
            h = cards[e["card_id"]] = CardHistory()
        row = {"event_id": e["event_id"], "card_id": e["card_id"], "event_time": e["event_time"]}
        row.update(zip(names, h.update(e)))
        yield row
