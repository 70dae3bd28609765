"""Deterministic synthetic event streams for the three domains (pure numpy/pandas, no Flink).

Each generator returns a pandas DataFrame in **arrival order** (row order = the order a producer
sends the events) whose columns are the contract's fields, its label fields and RAW_PAYLOAD
(``_raw``). The same arguments give the same frame, and so a byte-identical Parquet file.

* ``generate_payments`` (fraud): a card population with home cities, currencies, spending habits,
  favourite merchants, 0-1 devices and a diurnal rhythm in local time, plus planted, labelled
  fraud: ``card_testing``, ``impossible_travel``, ``account_takeover``, ``high_amount``.
* ``generate_behaviour`` (recsys): users with category tastes, Zipf-popular items, sessions and a
  view -> cart -> purchase funnel.
* ``generate_sensors`` (iot): machines with temperature / vibration / pressure sensors, daily load
  cycles and noise, and labelled ``spike`` / ``drift`` / ``stuck`` anomalies.

Disorder options shared by all three (fractions of ``n_events``; the sets are disjoint):

* ``out_of_order``: events delayed by 1..``max_disorder_ms`` of event time; no event is ever
  more than ``max_disorder_ms`` behind the largest event_time sent before it.
* ``late``: events sent only after an event at least ``late_by_ms`` younger has been sent
  (so they are at least ``late_by_ms`` behind the running maximum).
* ``malformed``: events replaced by a broken payload in ``_raw`` (typed columns and labels
  null). The k-th malformed row in file order has kind ``MALFORMED_KINDS[k % 9]``; every one is
  rejected by ``contract.parse`` with ``expected_reason(contract, kind)``.

With all three at 0, rows are sorted by (event_time, event_id). Event ids carry a domain prefix
and the seed, then a number in event-time order: ``p-1-000000001`` (payments, seed 1), ``b-…``
(behaviour), ``s-…`` (sensors). So two files from two seeds never share an id, and within a file
ids sort in event-time order. A few facts about a generated frame are in ``df.attrs``. String columns have
STRING_DTYPE (missing = NaN); numbers and booleans are nullable (Int64, Float64, boolean)
because malformed rows have no typed values. ``to_arrow`` gives the Table files are written as.

>>> df = generate_payments(2000, seed=1)
>>> len(df), list(df.columns) == list(PAYMENT.field_names + PAYMENT.label_names) + [RAW_PAYLOAD]
(2000, True)
>>> df["event_id"].iloc[0], bool(df["event_time"].is_monotonic_increasing)
('p-1-000000001', True)

The package keeps one module per generator (payments, behaviour, sensors) beside what they share
(_common); everything is importable from ``features.synthetic``.
"""
from __future__ import annotations

from features.contracts import BEHAVIOUR, PAYMENT, RAW_PAYLOAD, SENSOR
from features.synthetic._common import (
    DEFAULT_START_MS, MINUTE_MS, HOUR_MS, DAY_MS, EARTH_RADIUS_KM, Progress, FRAUD_PATTERNS,
    FRAUD_TARGET_RATE, ANOMALY_KINDS, MALFORMED_KINDS, expected_reason, haversine_km, id_prefix,
    STRING_DTYPE, string_array, to_arrow, records)
from features.synthetic.payments import (
    CITIES, FX, ZERO_DECIMAL, MCC_PHYSICAL, MCC_ONLINE, generate_payments)
from features.synthetic.behaviour import (CATEGORIES, P_CART, P_PURCHASE, generate_behaviour)
from features.synthetic.sensors import (SENSOR_TYPES, generate_sensors)

GENERATORS = {"fraud": generate_payments, "recsys": generate_behaviour, "iot": generate_sensors}
CONTRACT_OF = {"fraud": PAYMENT, "recsys": BEHAVIOUR, "iot": SENSOR}

__all__ = [
    "RAW_PAYLOAD",
    "DEFAULT_START_MS", "MINUTE_MS", "HOUR_MS", "DAY_MS", "EARTH_RADIUS_KM", "Progress",
    "FRAUD_PATTERNS", "FRAUD_TARGET_RATE", "ANOMALY_KINDS", "MALFORMED_KINDS", "expected_reason",
    "haversine_km", "id_prefix", "STRING_DTYPE", "string_array", "to_arrow", "records", "CITIES", "FX",
    "ZERO_DECIMAL", "MCC_PHYSICAL", "MCC_ONLINE", "generate_payments", "CATEGORIES", "P_CART",
    "P_PURCHASE", "generate_behaviour", "SENSOR_TYPES", "generate_sensors", "GENERATORS", "CONTRACT_OF",
]
