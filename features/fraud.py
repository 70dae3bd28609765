"""Per-card payment features: the fraud feature set, declared once, and its pure logic.

Per card, events are ordered by (event_time, event_id). For an event e at time t,
"window W" means the card's events with t - W < event_time <= t that are at or before e
in that order (e included); "prior" means strictly before e.

The same ``CardHistory.update`` runs inside the Flink operator (streaming and BATCH
backfill) and in plain Python (``compute_features``), so online and offline agree.

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

import numpy as np

from features.contracts import PAYMENT
from features.featureset import DAY_MS, HOUR_MS, Aggregation, Derived, FeatureSet

EARTH_RADIUS_KM = 6371.0088
MIN_SECS_FOR_SPEED = 60.0

def _zscore(amount, mean, std):
    return np.where(std > 0, (amount - mean) / std, np.nan)


def _secs(t, prev_t):
    return (t - prev_t) / 1000.0


def _km(prev_lat, prev_lon, lat, lon):
    # The scalar haversine_km per row, not numpy's trigonometry: np.arcsin differs from
    # math.asin in the last bit for ~10 % of inputs, and online and offline must agree exactly.
    out = np.full(len(lat), np.nan)
    ok = ~(np.isnan(prev_lat) | np.isnan(prev_lon) | np.isnan(lat) | np.isnan(lon))
    out[ok] = [haversine_km(*p) for p in zip(prev_lat[ok].tolist(), prev_lon[ok].tolist(),
                                             lat[ok].tolist(), lon[ok].tolist())]
    return out


def _kmh(km, secs):
    return km / (np.maximum(secs, MIN_SECS_FOR_SPEED) / 3600.0)


FRAUD_FEATURES = FeatureSet(
    name="fraud_card_features",
    version=1,
    contract=PAYMENT,
    key="card_id",
    order_by=("event_time", "event_id"),
    windows={"1h": HOUR_MS, "24h": DAY_MS, "7d": 7 * DAY_MS, "30d": 30 * DAY_MS},
    retention_ms=30 * DAY_MS,
    doc="Velocity, amount and geo features of a card's payments.",
    items=(
        Aggregation("txn_count_1h", "count", window="1h", doc="events in the window, e included"),
        Aggregation("txn_count_24h", "count", window="24h"),
        Aggregation("txn_count_7d", "count", window="7d"),
        Aggregation("amount_sum_1h", "sum", "amount", "1h", doc="sum of amount in the window, e included"),
        Aggregation("amount_sum_24h", "sum", "amount", "24h"),
        Aggregation("amount_mean_30d", "mean", "amount", "30d", prior=True, doc="mean amount of prior events"),
        Aggregation("amount_std_30d", "std_pop", "amount", "30d", prior=True, min_count=2,
                    doc="population std of prior amounts"),
        Derived("amount_zscore_30d", "float64", ("amount", "amount_mean_30d", "amount_std_30d"), _zscore,
                nullable=True, doc="(amount - mean) / std where std > 0"),
        Aggregation("prev_time", "last", "event_time", hidden=True),
        Aggregation("prev_lat", "last", "lat", hidden=True),
        Aggregation("prev_lon", "last", "lon", hidden=True),
        Derived("secs_since_prev", "float64", ("event_time", "prev_time"), _secs, nullable=True,
                doc="seconds since the previous event"),
        Derived("km_from_prev", "float64", ("prev_lat", "prev_lon", "lat", "lon"), _km, nullable=True,
                doc="haversine km from the previous event"),
        Derived("kmh_from_prev", "float64", ("km_from_prev", "secs_since_prev"), _kmh, nullable=True,
                doc="km / max(secs, 60) h"),
        Aggregation("distinct_merchants_24h", "distinct_count", "merchant_id", "24h"),
        Aggregation("merchant_first_seen", "first_seen", "merchant_id", "30d", prior=True,
                    doc="merchant not among prior events in 30 d"),
        Aggregation("device_first_seen", "first_seen", "device_id", "30d", prior=True,
                    doc="null where e has no device"),
    ),
)

_W1H, _W24H, _W7D, _W30D = (FRAUD_FEATURES.windows[w] for w in ("1h", "24h", "7d", "30d"))

# The slice of an event the logic keeps: (event_time, event_id, amount, merchant_id, device_id, lat, lon).
# A tuple, not a dict: it is pickled into Flink state on every update, and tuples are smallest.
T, ID, AMOUNT, MERCHANT, DEVICE, LAT, LON = range(7)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km.

    >>> round(haversine_km(52.52, 13.405, 48.8566, 2.3522), 1)  # Berlin -> Paris
    877.5
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


class CardHistory:
    """One card's event-time history: what the Flink operator keeps in keyed state.

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
