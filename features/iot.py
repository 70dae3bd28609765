"""Per-sensor reading features and window summaries of the iot pipeline, declared once as data.

Key: (machine_id, sensor_id): two sensors of one machine are two histories. Per key, readings
are ordered by (event_time, event_id). For a reading e at t, "window W" means the key's
readings with t - W < event_time <= t at or before e in that order (e included); "prior"
means strictly before e (the fraud contract's words, features/fraud.py).

``IOT_FEATURES`` (``iot_features(half_life_ms=...)`` for another half-life) is executed by the
declared-feature engine (jvm/engine in streaming and Flink backfill, features/execute.py in
pandas); ``tests/reference/sensor_history.py`` recomputes it reading by reading.

* value_mean_1h / value_std_1h / value_min_1h / value_max_1h / count_1h: over the 1 h window,
  e included (std: population, 0.0 for one reading).
* value_zscore_1h: (value - mean of the PRIOR readings in 1 h) / their population std; null
  where fewer than 2 prior readings or that std is 0.
* value_mean_24h / value_std_24h: the 24 h window, e included.
* value_ewma: time-decayed average (``ewma`` in features/declare.py) over the 24 h window, e
  included, half-life ``half_life_ms`` (default 30 min: a reading 24 h old weighs 2**-48).
* delta_prev: value - the previous reading's value; gap_s: seconds since the previous reading;
  rate_per_min: delta_prev / (gap in minutes). All three null for the key's first reading;
  rate_per_min is also null at a zero gap (two readings in the same millisecond: no rate).

>>> IOT_FEATURES.passthrough
('event_id', 'machine_id', 'sensor_id', 'event_time')
>>> iot_features(half_life_ms=60_000).definition_hash != IOT_FEATURES.definition_hash
True
"""
from __future__ import annotations

import numpy as np

from features.contracts import SENSOR
from features.featureset import DAY_MS, HOUR_MS, MINUTE_MS, Aggregation, Derived, FeatureSet
from features.windows import Sliding, Tumbling, WindowAgg, WindowedFeatures

IOT_KEY = ("machine_id", "sensor_id")
DEFAULT_HALF_LIFE_MS = 30 * MINUTE_MS
DEFAULT_TUMBLING_MS = 5 * MINUTE_MS


def _zscore(value, mean, std):
    return np.where(std > 0, (value - mean) / std, np.nan)


def _delta(value, prev_value):
    return value - prev_value


def _gap_s(t, prev_t):
    return (t - prev_t) / 1000.0


def _rate_per_min(value, prev_value, t, prev_t):
    gap = t - prev_t
    return np.where(gap > 0, (value - prev_value) / (gap / 60_000.0), np.nan)


def iot_features(half_life_ms: int = DEFAULT_HALF_LIFE_MS) -> FeatureSet:
    """The iot feature set with ``value_ewma``'s half-life (int ms, 1 .. 24 h: the ewma's window)."""
    if isinstance(half_life_ms, bool) or not isinstance(half_life_ms, int) or not 1 <= half_life_ms <= DAY_MS:
        raise ValueError(f"half_life_ms must be an int within 1 .. {DAY_MS} ms, got {half_life_ms!r}")
    return FeatureSet(
        name="iot_sensor_features",
        version=1,
        contract=SENSOR,
        key=IOT_KEY,
        order_by=("event_time", "event_id"),
        windows={"1h": HOUR_MS, "24h": DAY_MS},
        retention_ms=DAY_MS,
        doc="Level, spread, trend and decay features of one sensor's readings.",
        items=(
            Aggregation("value_mean_1h", "mean", "value", "1h", doc="mean of the readings in 1 h, e included"),
            Aggregation("value_std_1h", "std_pop", "value", "1h", doc="population std in 1 h, e included"),
            Aggregation("value_min_1h", "min", "value", "1h"),
            Aggregation("value_max_1h", "max", "value", "1h"),
            Aggregation("count_1h", "count", window="1h", doc="readings in 1 h, e included"),
            Aggregation("value_mean_prior_1h", "mean", "value", "1h", prior=True, min_count=2, hidden=True),
            Aggregation("value_std_prior_1h", "std_pop", "value", "1h", prior=True, min_count=2, hidden=True),
            Derived("value_zscore_1h", "float64", ("value", "value_mean_prior_1h", "value_std_prior_1h"), _zscore,
                    nullable=True, doc="(value - prior mean) / prior std; null below 2 prior or std 0"),
            Aggregation("value_mean_24h", "mean", "value", "24h"),
            Aggregation("value_std_24h", "std_pop", "value", "24h"),
            Aggregation("value_ewma", "ewma", "value", "24h", half_life_ms=half_life_ms,
                        doc=f"time-decayed mean, half-life {half_life_ms} ms, over 24 h"),
            Aggregation("prev_value", "last", "value", hidden=True),
            Aggregation("prev_time", "last", "event_time", hidden=True),
            Derived("delta_prev", "float64", ("value", "prev_value"), _delta, nullable=True,
                    doc="value - previous reading's value"),
            Derived("rate_per_min", "float64", ("value", "prev_value", "event_time", "prev_time"), _rate_per_min,
                    nullable=True, doc="delta_prev per minute of event time; null at a zero gap"),
            Derived("gap_s", "float64", ("event_time", "prev_time"), _gap_s, nullable=True,
                    doc="seconds since the previous reading"),
        ),
    )


IOT_FEATURES = iot_features()


def iot_windows(tumbling_ms: int = DEFAULT_TUMBLING_MS) -> tuple:
    """(tumbling summary per sensor of ``tumbling_ms``, sliding 1 h every 5 min): WindowedFeatures."""
    tumbling = WindowedFeatures(
        "iot_sensor_tumbling", 1, SENSOR, IOT_KEY, Tumbling(tumbling_ms),
        [WindowAgg("count", "count"), WindowAgg("value_mean", "mean", "value"),
         WindowAgg("value_min", "min", "value"), WindowAgg("value_max", "max", "value"),
         WindowAgg("value_std", "std_pop", "value")],
        doc="per sensor, back-to-back windows")
    sliding = WindowedFeatures(
        "iot_sensor_sliding_1h", 1, SENSOR, IOT_KEY, Sliding(HOUR_MS, 5 * MINUTE_MS),
        [WindowAgg("value_mean", "mean", "value"), WindowAgg("value_std", "std_pop", "value")],
        doc="per sensor, 1 h windows every 5 min")
    return tumbling, sliding


IOT_TUMBLING, IOT_SLIDING = iot_windows()
