"""Per-card payment features: the fraud feature set, declared once, and its pure logic.

Per card, events are ordered by (event_time, event_id). For an event e at time t,
"window W" means the card's events with t - W < event_time <= t that are at or before e
in that order (e included); "prior" means strictly before e.

``FRAUD_FEATURES`` is executed by the engine (jvm/engine in streaming and Flink backfill,
features/execute.py in the pandas backfill); the per-event reference implementations that check
it live with the tests (tests/reference/card_history.py, tests/reference/fraud_reference.py).

>>> FRAUD_FEATURES.feature_names[:3]
('txn_count_1h', 'txn_count_24h', 'txn_count_7d')
"""
from __future__ import annotations

import math
from itertools import repeat

import numpy as np

from features.contracts import PAYMENT
from features.featureset import DAY_MS, HOUR_MS, Aggregation, Derived, FeatureSet

EARTH_RADIUS_KM = 6371.0088
MIN_SECS_FOR_SPEED = 60.0
_DEG = math.pi / 180.0  # what math.radians multiplies by


def _zscore(amount, mean, std):
    return np.where(std > 0, (amount - mean) / std, np.nan)


def _secs(t, prev_t):
    return (t - prev_t) / 1000.0


def _km(prev_lat, prev_lon, lat, lon):
    # haversine_km's arithmetic step by step, vectorized, but its libm calls (sin, cos, asin and
    # Python's x ** 2, which is pow(x, 2.0), not always x * x) through the math module per value:
    # np.arcsin differs from math.asin in the last bit for ~10 % of inputs, and online and offline
    # must agree exactly. The +, -, *, / and sqrt are IEEE-exact in both.
    out = np.full(len(lat), np.nan)
    ok = ~(np.isnan(prev_lat) | np.isnan(prev_lon) | np.isnan(lat) | np.isnan(lon))
    lat1, lon1, lat2, lon2 = prev_lat[ok], prev_lon[ok], lat[ok], lon[ok]

    def each(fn, x):
        return np.fromiter(map(fn, x.tolist()), dtype=np.float64, count=len(x))

    def squared(x):
        return np.fromiter(map(pow, x.tolist(), repeat(2)), dtype=np.float64, count=len(x))

    p1, p2 = lat1 * _DEG, lat2 * _DEG
    dp, dl = p2 - p1, (lon2 - lon1) * _DEG
    a = squared(each(math.sin, dp / 2)) + each(math.cos, p1) * each(math.cos, p2) * squared(each(math.sin, dl / 2))
    out[ok] = 2 * EARTH_RADIUS_KM * each(math.asin, np.minimum(1.0, np.sqrt(a)))
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

def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km.

    >>> round(haversine_km(52.52, 13.405, 48.8566, 2.3522), 1)  # Berlin -> Paris
    877.5
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))
