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
"""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np
import pandas as pd

from features.contracts import (BAD_TIMESTAMP, BEHAVIOUR, BOOL, FLOAT64, INT64, MALFORMED_JSON,
                                MISSING_FIELD, NON_FINITE, NOT_AN_OBJECT, OUT_OF_RANGE, PAYMENT,
                                RAW_PAYLOAD, SENSOR, STRING, TIMESTAMP_MS, WRONG_TYPE, EventContract,
                                InvalidEvent)

DEFAULT_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
EARTH_RADIUS_KM = 6371.0088

Progress = Optional[Callable[[str, float], None]]  # (stage, fraction done in [0, 1])

FRAUD_PATTERNS = ("card_testing", "impossible_travel", "account_takeover", "high_amount")
FRAUD_TARGET_RATE = 0.005  # planned share of fraud events; always < 1 %
ANOMALY_KINDS = ("spike", "drift", "stuck")

# --------------------------------------------------------------------------------------------
# Malformed records
# --------------------------------------------------------------------------------------------
MALFORMED_KINDS = ("not_json", "truncated_json", "json_array", "missing_field", "wrong_type",
                   "non_finite", "bad_value", "absurd_timestamp", "empty_id")
_REASON = {"not_json": MALFORMED_JSON, "truncated_json": MALFORMED_JSON, "json_array": NOT_AN_OBJECT,
           "missing_field": MISSING_FIELD, "wrong_type": WRONG_TYPE, "non_finite": NON_FINITE,
           "bad_value": OUT_OF_RANGE, "absurd_timestamp": BAD_TIMESTAMP, "empty_id": OUT_OF_RANGE}

# Per contract: the numeric field to break, the key, and the required fields dropped in turn.
_BREAK = {
    "payment": dict(number="amount", key="card_id",
                    drop=("event_time", "card_id", "amount", "merchant_id", "currency", "event_id")),
    "behaviour": dict(number="price", key="user_id",
                      drop=("event_time", "user_id", "item_id", "action", "price", "event_id")),
    "sensor": dict(number="value", key="machine_id",
                   drop=("event_time", "machine_id", "sensor_id", "value", "unit", "event_id")),
}


def expected_reason(contract: EventContract, kind: str) -> str:
    """The InvalidEvent reason ``contract.parse`` gives for a malformed payload of ``kind``.

    >>> expected_reason(PAYMENT, "bad_value"), expected_reason(SENSOR, "bad_value")
    ('out_of_range', 'wrong_type')
    """
    if kind == "bad_value" and contract.name == "sensor":
        return WRONG_TYPE  # sensors: a non-numeric value ("ERR")
    return _REASON[kind]


def _malformed_payload(contract: EventContract, event: dict, kind: str, variant: int, rng) -> str:
    """One broken payload derived from a good event (dict of the contract's fields)."""
    spec = _BREAK[contract.name]
    obj = dict(event)
    num, key = spec["number"], spec["key"]
    if kind == "not_json":
        forms = (lambda: " ".join(f"{k}={v}" for k, v in obj.items()),          # key=value log line
                 lambda: repr(obj),                                              # Python dict repr
                 lambda: "<html><body><h1>502 Bad Gateway</h1></body></html>",
                 lambda: "\ufffd\ufffd\x01\x02" + str(obj.get(key)))             # binary junk
        return forms[variant % len(forms)]()
    if kind == "truncated_json":
        text = json.dumps(obj, separators=(",", ":"))
        return text[: int(rng.integers(1, len(text) - 1))]
    if kind == "json_array":
        if variant % 2:
            return json.dumps([obj], separators=(",", ":"))                    # a batch wrapper
        return json.dumps(list(obj.values()), separators=(",", ":"))
    if kind == "missing_field":
        name = spec["drop"][variant % len(spec["drop"])]
        if (variant // len(spec["drop"])) % 2:
            obj[name] = None
        else:
            del obj[name]
    elif kind == "wrong_type":
        if variant % 2:
            obj[key] = int(rng.integers(1, 1_000_000))                          # id as a number
        else:
            obj[num] = f"{obj[num]}"                                            # "12.5"
    elif kind == "non_finite":
        obj[num] = (math.nan, math.inf, -math.inf)[variant % 3]                 # NaN / Infinity
    elif kind == "bad_value":
        if contract.name == "sensor":
            obj[num] = ("ERR", "n/a", "", "--")[variant % 4]
        else:
            obj[num] = -abs(obj[num]) - 0.01
    elif kind == "absurd_timestamp":
        t = obj["event_time"]
        v = variant % 3
        if v == 0:    # the year 2300 as ISO-8601
            dt = datetime.fromtimestamp(t / 1000, timezone.utc)
            dt = dt.replace(year=2300, day=min(dt.day, 28))
            obj["event_time"] = dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
        elif v == 1:  # epoch seconds where ms are expected -> January 1970
            obj["event_time"] = t // 1000
        else:         # epoch microseconds -> tens of thousands of years ahead
            obj["event_time"] = t * 1000
    elif kind == "empty_id":
        obj["event_id" if variant % 2 == 0 else key] = ""
    else:  # pragma: no cover
        raise ValueError(kind)
    return json.dumps(obj, separators=(",", ":"), allow_nan=True)


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------
def haversine_km(lat1, lon1, lat2, lon2):
    """Great-circle distance in km (numpy broadcasting)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


def _check_args(n_events, seed, days, out_of_order, late, malformed, max_disorder_ms, late_by_ms,
                start_ms):
    if isinstance(n_events, bool) or not isinstance(n_events, (int, np.integer)) or n_events <= 0:
        raise ValueError(f"the number of events must be a positive integer, got {n_events!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not (isinstance(days, (int, float)) and math.isfinite(days) and days > 0):
        raise ValueError(f"days must be > 0, got {days!r}")
    if round(days * DAY_MS) < MINUTE_MS:
        raise ValueError(f"days={days} is shorter than a minute")
    for name, v in (("out_of_order", out_of_order), ("late", late), ("malformed", malformed)):
        if not (isinstance(v, (int, float)) and 0.0 <= v < 1.0):
            raise ValueError(f"{name} must be a fraction in [0, 1), got {v!r}")
    if out_of_order + late + malformed >= 1.0:
        raise ValueError("out_of_order + late + malformed must stay below 1")
    if out_of_order > 0 and max_disorder_ms < 1:
        raise ValueError(f"max_disorder_ms must be >= 1 ms when out_of_order > 0, got {max_disorder_ms}")
    if late > 0 and late_by_ms < 1:
        raise ValueError(f"late_by_ms must be >= 1 ms when late > 0, got {late_by_ms}")
    if late > 0 and out_of_order > 0 and late_by_ms <= max_disorder_ms:
        raise ValueError(f"late_by_ms ({late_by_ms}) must exceed max_disorder_ms ({max_disorder_ms}), "
                         "else late and out-of-order events cannot be told apart")
    if not isinstance(start_ms, (int, np.integer)):
        raise ValueError(f"start_ms must be epoch milliseconds (int), got {start_ms!r}")
    end = start_ms + round(days * DAY_MS)
    if start_ms < 946_684_800_000 or end > 4_102_444_800_000:
        raise ValueError("the generated time span must lie within 2000..2100")


def _circ_gauss(h, mu, sd):
    d = (h - mu + 12.0) % 24.0 - 12.0
    return np.exp(-0.5 * (d / sd) ** 2)


def _payment_profile(h):  # card payments per local hour: morning, lunch, evening peaks
    return (0.06 + 0.35 * _circ_gauss(h, 8.5, 1.3) + 1.0 * _circ_gauss(h, 12.8, 2.2)
            + 0.85 * _circ_gauss(h, 18.3, 2.4))


def _shopping_profile(h):  # online shopping: lunch and a strong evening peak
    return 0.08 + 0.45 * _circ_gauss(h, 12.5, 2.0) + 1.0 * _circ_gauss(h, 20.7, 2.3)


def _diurnal_times(rng, n, offset_h, start_ms, span_ms, profile):
    """n times (ms after start) in [0, span_ms) with density ∝ profile(local hour)."""
    table = profile(np.arange(24 * 60) / 60.0)  # per local minute of the day
    fmax = float(table.max()) * 1.001
    offset_h = np.broadcast_to(np.asarray(offset_h, dtype=np.float64), (n,))
    out = np.empty(n, dtype=np.int64)
    todo = np.arange(n)
    while todo.size:
        t = np.floor(rng.random(todo.size) * span_ms).astype(np.int64)
        minute = ((start_ms + t) // MINUTE_MS + np.round(offset_h[todo] * 60).astype(np.int64)) % 1440
        ok = rng.random(todo.size) * fmax < table[minute]
        out[todo[ok]] = t[ok]
        todo = todo[~ok]
    return out


def _ids(prefix: str, n: int, width: int) -> list:
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


class _Codes(NamedTuple):
    """A string column as codes into a lookup (fast to shuffle; -1 = null)."""

    lookup: Sequence[Optional[str]]
    codes: np.ndarray

    def value(self, i: int) -> Optional[str]:
        c = int(self.codes[i])
        return None if c < 0 else self.lookup[c]

    def arrow(self, null: np.ndarray):
        import pyarrow as pa
        import pyarrow.compute as pc

        idx = pa.array(self.codes.astype(np.int64), mask=(self.codes < 0) | null)
        return pc.take(pa.array(list(self.lookup), type=pa.string()), idx)


def _arrival(t, rng, n_ooo, n_late, n_bad, bad_ok, max_disorder_ms, late_by_ms):
    """Arrival permutation of events sorted by event time, and the late/ooo/malformed masks.

    Every event gets an arrival key >= its event_time; rows are sent by (key, class, index).
    Out-of-order: key = t + U{1..max_disorder_ms}. Late: key = the key of the first sent,
    well-formed event whose event_time >= t + late_by_ms (+ an exponential extra), class 1 so it
    goes right after that event. Hence nothing is more than max_disorder_ms behind the running
    maximum except the late events, which are at least late_by_ms behind it.
    """
    n = len(t)
    idx = np.arange(n)
    is_late = np.zeros(n, bool)
    is_ooo = np.zeros(n, bool)
    is_bad = np.zeros(n, bool)
    if n == 0:
        return idx, is_late, is_ooo, is_bad
    t_max = t[-1]
    if n_late:
        eligible = np.flatnonzero(t + late_by_ms <= t_max)
        if eligible.size < n_late:
            raise ValueError(f"cannot make {n_late:,} events late by {late_by_ms:,} ms: only "
                             f"{eligible.size:,} events are that far from the end; use more days or "
                             "a smaller late fraction")
        is_late[np.sort(rng.choice(eligible, n_late, replace=False))] = True
    if n_ooo:
        rest = np.flatnonzero(~is_late)
        is_ooo[np.sort(rng.choice(rest, n_ooo, replace=False))] = True
    if n_bad:
        # never the newest events: they must stay available as anchors for late events
        rest = np.flatnonzero(~is_late & ~is_ooo & bad_ok & (t < t_max))
        if rest.size < n_bad:
            raise ValueError(f"cannot make {n_bad:,} events malformed: only {rest.size:,} candidates")
        is_bad[np.sort(rng.choice(rest, n_bad, replace=False))] = True
    key = t.copy()
    cls = np.zeros(n, np.int8)
    o = np.flatnonzero(is_ooo)
    if o.size:
        key[o] = t[o] + rng.integers(1, max_disorder_ms + 1, o.size)
    li = np.flatnonzero(is_late)
    if li.size:
        anchors = np.flatnonzero(~is_late & ~is_bad)  # sorted by t; includes the last event
        at = t[anchors]
        extra = np.floor(rng.exponential(late_by_ms * 0.5, li.size)).astype(np.int64)
        pos = np.searchsorted(at, t[li] + late_by_ms + extra, side="left")
        short = pos >= at.size  # extra overshoots the end: fall back to the bare minimum
        pos[short] = np.searchsorted(at, t[li][short] + late_by_ms, side="left")
        key[li] = key[anchors[pos]]
        cls[li] = 1
    perm = np.lexsort((idx, cls, key))
    return perm, is_late, is_ooo, is_bad


def id_prefix(domain_prefix: str, seed: int) -> str:
    """The event-id prefix of a generated file: the domain's, then the seed (ids unique across seeds).

    A seed beyond 16 digits is written as 16 hex digits of its SHA-256, which keeps ids short.

    >>> id_prefix("p-", 7), id_prefix("p-", 10 ** 30)
    ('p-7-', 'p-xfa72d4146f76703a-')
    """
    import hashlib

    seed = int(seed)
    tag = str(seed) if seed < 10 ** 16 else "x" + hashlib.sha256(str(seed).encode()).hexdigest()[:16]
    return f"{domain_prefix}{tag}-"


def _finish(contract: EventContract, prefix: str, cols: dict, seed: int, bad_ok: np.ndarray,
            out_of_order: float, late: float, malformed: float, max_disorder_ms: int,
            late_by_ms: int, attrs: dict, progress: Progress) -> pd.DataFrame:
    """Sort by event time, number, disorder, break, and frame the columns of one stream.

    ``cols``: event_time (int64 ms) and every other field/label; string columns as _Codes.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    def reorder(cols, perm):
        return {k: (_Codes(v.lookup, v.codes[perm]) if isinstance(v, _Codes) else v[perm])
                for k, v in cols.items()}

    n = len(cols["event_time"])
    order = np.argsort(cols["event_time"], kind="stable")
    cols = reorder(cols, order)
    bad_ok = bad_ok[order]
    width = max(9, len(str(n)))
    number = np.arange(1, n + 1, dtype=np.int64)  # event_id number, in event-time order
    prefix = id_prefix(prefix, seed)

    drng = np.random.default_rng([seed, 1])  # disorder draws do not move the events themselves
    n_ooo, n_late, n_bad = (int(round(f * n)) for f in (out_of_order, late, malformed))
    perm, is_late, is_ooo, is_bad = _arrival(cols["event_time"], drng, n_ooo, n_late, n_bad, bad_ok,
                                             max_disorder_ms, late_by_ms)
    cols = reorder(cols, perm)
    number = number[perm]
    is_bad = is_bad[perm]
    event_id = pc.binary_join_element_wise(
        prefix, pc.utf8_lpad(pc.cast(pa.array(number), pa.string()), width, "0"), "")
    if progress:
        progress("disorder", 0.9)

    raw = np.full(n, None, dtype=object)
    bad = np.flatnonzero(is_bad)
    if bad.size:
        mrng = np.random.default_rng([seed, 2])
        for k, i in enumerate(bad):
            kind = MALFORMED_KINDS[k % len(MALFORMED_KINDS)]
            event = {}
            for f in contract.field_names:
                v = cols[f] if f != "event_id" else None
                event[f] = (f"{prefix}{number[i]:0{width}d}" if f == "event_id" else
                            v.value(i) if isinstance(v, _Codes) else _native(v[i]))
            payload = _malformed_payload(contract, event, kind, k // len(MALFORMED_KINDS), mrng)
            try:
                contract.parse(payload)
            except InvalidEvent as e:
                if e.reason != expected_reason(contract, kind):  # pragma: no cover - self-check
                    raise AssertionError(f"{kind} payload rejected as {e.reason}: {payload}")
            else:  # pragma: no cover - self-check
                raise AssertionError(f"{kind} payload was accepted: {payload}")
            raw[i] = payload
    data = {}
    for f in contract.all_fields:
        v = event_id if f.name == "event_id" else cols[f.name]
        if f.name == "event_id":
            data[f.name] = string_array(
                pc.if_else(pa.array(is_bad), pa.scalar(None, pa.string()), v))
        elif f.type == STRING:
            data[f.name] = string_array(v.arrow(is_bad))
        elif f.type in (INT64, TIMESTAMP_MS):
            data[f.name] = pd.arrays.IntegerArray(v.astype(np.int64), is_bad.copy())
        elif f.type == FLOAT64:
            data[f.name] = pd.arrays.FloatingArray(v.astype(np.float64), is_bad.copy())
        elif f.type == BOOL:
            data[f.name] = pd.arrays.BooleanArray(v.astype(bool), is_bad.copy())
    data[RAW_PAYLOAD] = string_array(pa.array(raw, type=pa.string()))
    df = pd.DataFrame(data)
    df.attrs.update(attrs)
    df.attrs.update(domain_contract=contract.name, seed=int(seed), n_out_of_order=n_ooo,
                    n_late=n_late, n_malformed=n_bad)
    if progress:
        progress("done", 1.0)
    return df


# Strings are Arrow-backed with NumPy semantics (the pandas 3 default): a missing value is NaN and
# compares unequal to everything, so ``df[df.fraud_pattern == "card_testing"]`` just works.
STRING_DTYPE = pd.StringDtype("pyarrow_numpy")


def string_array(values):
    """A pandas string array (STRING_DTYPE) from a pyarrow array or a sequence of str/None."""
    return pd.array(values, dtype=STRING_DTYPE)


def _native(v):
    if isinstance(v, np.generic):
        return v.item()
    return v


# --------------------------------------------------------------------------------------------
# fraud: card payments
# --------------------------------------------------------------------------------------------
# city, lat, lon, UTC offset (h, no DST), currency, weight of the issuer's cardholders living there
CITIES = (
    ("Berlin", 52.5200, 13.4050, 1, "EUR", 9), ("Munich", 48.1351, 11.5820, 1, "EUR", 5),
    ("Hamburg", 53.5511, 9.9937, 1, "EUR", 4), ("Paris", 48.8566, 2.3522, 1, "EUR", 8),
    ("Lyon", 45.7640, 4.8357, 1, "EUR", 3), ("Madrid", 40.4168, -3.7038, 1, "EUR", 5),
    ("Barcelona", 41.3874, 2.1686, 1, "EUR", 4), ("Rome", 41.9028, 12.4964, 1, "EUR", 4),
    ("Milan", 45.4642, 9.1900, 1, "EUR", 4), ("Amsterdam", 52.3676, 4.9041, 1, "EUR", 4),
    ("Vienna", 48.2082, 16.3738, 1, "EUR", 3), ("Lisbon", 38.7223, -9.1393, 0, "EUR", 2),
    ("Dublin", 53.3498, -6.2603, 0, "EUR", 2), ("London", 51.5074, -0.1278, 0, "GBP", 8),
    ("Manchester", 53.4808, -2.2426, 0, "GBP", 3), ("Zurich", 47.3769, 8.5417, 1, "CHF", 2),
    ("Stockholm", 59.3293, 18.0686, 1, "SEK", 2), ("Warsaw", 52.2297, 21.0122, 1, "PLN", 3),
    ("New York", 40.7128, -74.0060, -5, "USD", 4), ("Chicago", 41.8781, -87.6298, -6, "USD", 2),
    ("San Francisco", 37.7749, -122.4194, -8, "USD", 2), ("Toronto", 43.6532, -79.3832, -5, "CAD", 2),
    ("Mexico City", 19.4326, -99.1332, -6, "MXN", 1), ("Sao Paulo", -23.5505, -46.6333, -3, "BRL", 1),
    ("Tokyo", 35.6762, 139.6503, 9, "JPY", 2), ("Singapore", 1.3521, 103.8198, 8, "SGD", 1),
    ("Sydney", -33.8688, 151.2093, 10, "AUD", 1), ("Mumbai", 19.0760, 72.8777, 5.5, "INR", 1),
    ("Dubai", 25.2048, 55.2708, 4, "AED", 1), ("Johannesburg", -26.2041, 28.0473, 2, "ZAR", 1),
    ("Istanbul", 41.0082, 28.9784, 3, "TRY", 1),
)
# units of the currency per EUR (rounded), and decimals used for amounts
FX = {"EUR": 1.0, "GBP": 0.85, "CHF": 0.95, "SEK": 11.5, "PLN": 4.3, "USD": 1.08, "CAD": 1.47,
      "MXN": 18.5, "BRL": 5.5, "JPY": 160.0, "SGD": 1.45, "AUD": 1.65, "INR": 90.0, "AED": 4.0,
      "ZAR": 20.0, "TRY": 35.0}
ZERO_DECIMAL = {"JPY"}

# ISO 18245 MCCs at physical merchants: code, share of merchants, amount factor vs the card's typical
MCC_PHYSICAL = (("5411", 0.20, 1.0), ("5812", 0.12, 1.3), ("5814", 0.11, 0.35), ("5541", 0.07, 1.4),
                ("5912", 0.06, 0.6), ("5311", 0.05, 1.8), ("5651", 0.05, 1.6), ("4111", 0.05, 0.15),
                ("5499", 0.08, 0.3), ("5999", 0.05, 0.8), ("5732", 0.03, 2.5), ("5944", 0.01, 3.0),
                ("7011", 0.01, 3.0), ("4121", 0.04, 0.6), ("5942", 0.03, 0.6), ("5200", 0.04, 1.8))
MCC_ONLINE = (("5815", 0.18, 0.3), ("5818", 0.08, 0.8), ("5969", 0.10, 1.0), ("5999", 0.18, 1.2),
              ("5732", 0.10, 2.5), ("4899", 0.10, 0.4), ("4722", 0.05, 3.0), ("5045", 0.05, 2.5),
              ("4829", 0.04, 2.0), ("7995", 0.02, 1.0), ("5311", 0.10, 1.5))
_CT_MCCS = {"5815", "5818", "5969", "4899", "5999"}          # card testing: cheap digital goods
_ATO_MCCS = {"5732", "5045", "4829", "5944", "5999", "4722"}  # resaleable / cash-like
_HIGH_MCCS = {"5732", "5944", "5311", "7011"}


def _plan_fraud(rng, n_events: int, span_ms: int) -> list:
    """[(pattern, n_events_of_incident)] with the total under 1 % of n_events."""
    if n_events < 1000 or span_ms < 3 * HOUR_MS:
        return []
    budget = FRAUD_TARGET_RATE * n_events
    shares = {"card_testing": (0.42, 12.5), "impossible_travel": (0.13, 1.5),
              "account_takeover": (0.27, 4.5), "high_amount": (0.18, 1.0)}
    plan = []
    for p, (share, mean_size) in shares.items():
        k = int(budget * share / mean_size + 0.5)
        if n_events >= 4000:
            k = max(k, 1)
        for _ in range(k):
            size = {"card_testing": lambda: int(rng.integers(5, 21)),
                    "impossible_travel": lambda: int(rng.integers(1, 3)),
                    "account_takeover": lambda: int(rng.integers(3, 7)),
                    "high_amount": lambda: 1}[p]()
            plan.append((p, size))
    while plan and sum(s for _, s in plan) >= 0.01 * n_events:
        biggest = max(range(len(plan)), key=lambda i: plan[i][1])
        plan.pop(biggest)
    return plan


def generate_payments(n_events: int, seed: int = 0, start_ms: int = DEFAULT_START_MS, days: float = 1.0,
                      n_cards: Optional[int] = None, out_of_order: float = 0.0, late: float = 0.0,
                      malformed: float = 0.0, max_disorder_ms: int = 5000, late_by_ms: int = 600_000,
                      progress: Progress = None) -> pd.DataFrame:
    """Card payment authorisations with planted, labelled fraud (< 1 % of events).

    ``n_cards`` defaults to n_events // 20 (at least 20). Amounts are in the card's billing
    (home) currency. Card-present payments carry the merchant's location and no device;
    online payments carry the card's device and the device's location.
    """
    _check_args(n_events, seed, days, out_of_order, late, malformed, max_disorder_ms, late_by_ms,
                start_ms)
    rng = np.random.default_rng(seed)
    span_ms = int(round(days * DAY_MS))
    n_cards = int(n_cards) if n_cards else max(20, n_events // 20)
    if n_cards <= 0:
        raise ValueError(f"n_cards must be > 0, got {n_cards}")
    step = (lambda s, f: progress(s, f)) if progress else (lambda s, f: None)
    step("cards", 0.0)

    # cities ------------------------------------------------------------------------------
    c_lat = np.array([c[1] for c in CITIES])
    c_lon = np.array([c[2] for c in CITIES])
    c_utc = np.array([c[3] for c in CITIES], dtype=float)
    c_cur = [c[4] for c in CITIES]
    c_dec = np.array([0 if c[4] in ZERO_DECIMAL else 2 for c in CITIES])
    c_fx = np.array([FX[c[4]] for c in CITIES])
    c_w = np.array([c[5] for c in CITIES], dtype=float)
    c_w /= c_w.sum()
    n_city = len(CITIES)
    city_km = haversine_km(c_lat[:, None], c_lon[:, None], c_lat[None, :], c_lon[None, :])

    # cards -------------------------------------------------------------------------------
    card_city = rng.choice(n_city, n_cards, p=c_w)
    cos_lat = np.cos(np.radians(c_lat[card_city]))
    home_lat = c_lat[card_city] + rng.normal(0, 0.05, n_cards)
    home_lon = c_lon[card_city] + rng.normal(0, 0.05, n_cards) / cos_lat
    card_mu = np.log(30.0) + rng.normal(0, 0.5, n_cards) + np.log(c_fx[card_city])
    card_sigma = rng.uniform(0.45, 0.8, n_cards)
    activity = rng.gamma(1.5, 1.0, n_cards)
    has_device = rng.random(n_cards) < 0.65
    online_share = rng.uniform(0.15, 0.6, n_cards) * has_device
    n_ring = 4
    n_dev_ids = n_cards + n_ring + 4096 + n_events // 50
    dev_numbers = rng.permutation(n_dev_ids)            # device ids do not reveal the card
    device_ids = [f"d-{i:08d}" for i in dev_numbers]
    card_device = np.where(has_device, np.arange(n_cards), -1)
    card_ids = _ids("c-", n_cards, max(6, len(str(n_cards - 1))))

    # merchants ---------------------------------------------------------------------------
    n_phys = max(400, n_cards // 3)
    per_city = np.maximum(15, np.round(n_phys * c_w)).astype(int)
    m_lo = np.concatenate([[0], np.cumsum(per_city)[:-1]])
    n_phys = int(per_city.sum())
    n_on = max(40, n_cards // 40)
    n_merch = n_phys + n_on
    m_city = np.concatenate([np.repeat(np.arange(n_city), per_city), np.full(n_on, -1)])
    m_cos = np.cos(np.radians(c_lat[m_city[:n_phys]]))
    m_lat = np.concatenate([c_lat[m_city[:n_phys]] + rng.normal(0, 0.035, n_phys), np.full(n_on, np.nan)])
    m_lon = np.concatenate([c_lon[m_city[:n_phys]] + rng.normal(0, 0.035, n_phys) / m_cos,
                            np.full(n_on, np.nan)])
    mcc_codes = np.array(sorted({c for c, _, _ in MCC_PHYSICAL + MCC_ONLINE}), dtype=object)
    code_ix = {c: i for i, c in enumerate(mcc_codes)}
    mcc_factor = np.ones(len(mcc_codes))
    for c, _, f in MCC_PHYSICAL + MCC_ONLINE:
        mcc_factor[code_ix[c]] = f
    pw = np.array([w for _, w, _ in MCC_PHYSICAL]); pw /= pw.sum()
    ow = np.array([w for _, w, _ in MCC_ONLINE]); ow /= ow.sum()
    m_mcc = np.concatenate([
        np.array([code_ix[c] for c, _, _ in MCC_PHYSICAL])[rng.choice(len(MCC_PHYSICAL), n_phys, p=pw)],
        np.array([code_ix[c] for c, _, _ in MCC_ONLINE])[rng.choice(len(MCC_ONLINE), n_on, p=ow)]])
    merchant_ids = [f"m-{i:06d}" for i in rng.permutation(n_merch)]

    # favourites: up to 6 per card, popularity-skewed (low ranks are the big stores) ------
    n_fav = rng.integers(2, 7, n_cards)
    lo, size = m_lo[card_city][:, None], per_city[card_city][:, None]
    fav_phys = lo + np.floor(size * rng.random((n_cards, 6)) ** 2).astype(np.int64)
    fav_on = n_phys + np.floor(n_on * rng.random((n_cards, 6)) ** 2).astype(np.int64)

    # fraud plan first: legit events fill the rest ------------------------------------------
    plan = _plan_fraud(rng, n_events, span_ms)
    n_fraud = sum(s for _, s in plan)
    n_legit = n_events - n_fraud
    step("legit events", 0.1)

    ev_card = rng.choice(n_cards, n_legit, p=activity / activity.sum())
    ev_online = rng.random(n_legit) < online_share[ev_card]
    ev_fav = rng.random(n_legit) < 0.8
    j = np.floor(rng.random(n_legit) * n_fav[ev_card]).astype(np.int64)
    u = rng.random(n_legit) ** 1.5
    home = card_city[ev_card]
    rand_phys = m_lo[home] + np.floor(u * per_city[home]).astype(np.int64)
    rand_on = n_phys + np.floor(u * n_on).astype(np.int64)
    ev_merch = np.where(ev_online, np.where(ev_fav, fav_on[ev_card, j], rand_on),
                        np.where(ev_fav, fav_phys[ev_card, j], rand_phys))
    ev_t = _diurnal_times(rng, n_legit, c_utc[home], start_ms, span_ms, _payment_profile)
    ev_lat = home_lat[ev_card] + rng.normal(0, 0.01, n_legit)   # device geolocation (online)
    ev_lon = home_lon[ev_card] + rng.normal(0, 0.01, n_legit)

    # legitimate travellers: move to another city, arriving no faster than a plane ---------
    traveller = rng.random(n_cards) < 0.015
    dest = (card_city + rng.integers(1, n_city, n_cards)) % n_city
    trip_km = city_km[card_city, dest]
    flight_ms = ((trip_km / 800.0 + 1.5) * HOUR_MS).astype(np.int64)
    room = span_ms - 2 * flight_ms
    traveller &= room > 2 * HOUR_MS
    t_dep = np.floor(rng.random(n_cards) * np.maximum(room, 1)).astype(np.int64)
    tr = traveller[ev_card]
    in_flight = tr & (ev_t >= t_dep[ev_card]) & (ev_t < t_dep[ev_card] + flight_ms[ev_card])
    ev_t = np.where(in_flight, ev_t + flight_ms[ev_card], ev_t)
    abroad = tr & (ev_t >= t_dep[ev_card] + flight_ms[ev_card])
    dcity = dest[ev_card]
    abroad_merch = np.where(ev_online, rand_on, m_lo[dcity] + np.floor(u * per_city[dcity]).astype(np.int64))
    ev_merch = np.where(abroad, abroad_merch, ev_merch)
    ev_lat = np.where(abroad, c_lat[dcity] + rng.normal(0, 0.03, n_legit), ev_lat)
    ev_lon = np.where(abroad, c_lon[dcity] + rng.normal(0, 0.03, n_legit), ev_lon)
    phys = ~ev_online
    ev_lat = np.where(phys, m_lat[ev_merch], ev_lat)
    ev_lon = np.where(phys, m_lon[ev_merch], ev_lon)

    ev_amount = np.exp(card_mu[ev_card] + card_sigma[ev_card] * rng.normal(0, 1, n_legit)) \
        * mcc_factor[m_mcc[ev_merch]]
    ev_device = np.where(ev_online, card_device[ev_card], -1)
    step("fraud", 0.4)

    # plant fraud ---------------------------------------------------------------------------
    by_card = np.argsort(ev_card, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(ev_card, minlength=n_cards))])
    counts = np.diff(starts)
    pool = np.flatnonzero((counts >= 5) & ~traveller)
    if pool.size < len(plan):
        pool = np.flatnonzero((counts >= 1) & ~traveller)
    if pool.size == 0 and plan:
        pool = np.flatnonzero(counts >= 1)
    victims = rng.choice(pool, len(plan), replace=len(plan) > pool.size) if plan else []
    on_ix = np.arange(n_phys, n_merch)
    ct_merch = on_ix[np.isin(mcc_codes[m_mcc[on_ix]], list(_CT_MCCS))]
    ato_merch = on_ix[np.isin(mcc_codes[m_mcc[on_ix]], list(_ATO_MCCS))]
    high_merch_ok = np.isin(mcc_codes[m_mcc], list(_HIGH_MCCS))
    next_dev = n_cards + n_ring

    f_card, f_t, f_merch, f_lat, f_lon, f_amount, f_dev, f_pat = ([] for _ in range(8))
    incidents = {p: 0 for p in FRAUD_PATTERNS}

    def emit(card, t, merch, lat, lon, amount, dev, pattern):
        f_card.append(card); f_t.append(int(t)); f_merch.append(int(merch)); f_lat.append(float(lat))
        f_lon.append(float(lon)); f_amount.append(float(amount)); f_dev.append(int(dev))
        f_pat.append(FRAUD_PATTERNS.index(pattern) + 1)

    def far_city(home_c, min_km):
        far = np.flatnonzero(city_km[home_c] >= min_km)
        if far.size == 0:
            far = np.array([int(np.argmax(city_km[home_c]))])
        return int(rng.choice(far))

    for (pattern, size), v in zip(plan, victims):
        v = int(v)
        mine = by_card[starts[v]:starts[v + 1]]
        med = float(np.median(ev_amount[mine])) if mine.size else float(np.exp(card_mu[v]))
        fx = c_fx[card_city[v]]
        incidents[pattern] += 1
        if pattern == "card_testing":
            dur = rng.uniform(60_000, 8 * MINUTE_MS)
            t0 = rng.integers(0, span_ms - 10 * MINUTE_MS)
            offs = np.sort(rng.uniform(0, dur, size)); offs[0] = 0
            k = int(rng.integers(2, min(6, size) + 1))
            shops = rng.choice(ct_merch, k, replace=k > ct_merch.size)
            which = np.concatenate([np.arange(k), rng.integers(0, k, size - k)])
            rng.shuffle(which)
            if rng.random() < 0.7:
                dev = next_dev; next_dev += 1          # a fresh device
            else:
                dev = n_cards + int(rng.integers(0, n_ring))  # a fraud ring's device, many cards
            fc = far_city(card_city[v], 300)
            flat, flon = c_lat[fc] + rng.normal(0, 0.03), c_lon[fc] + rng.normal(0, 0.03)
            for o, w in zip(offs, which):
                amt = float(rng.choice([0.5, 0.99, 1.0, 1.0, 1.5, 2.0])) + float(rng.integers(0, 50)) / 100
                emit(v, t0 + int(o), shops[w], flat, flon, amt * fx, dev, pattern)
        elif pattern == "impossible_travel":
            cand = mine[ev_t[mine] <= span_ms - HOUR_MS]
            if cand.size == 0:  # pragma: no cover - plan needs >= 1000 events over >= 3 h
                cand = mine[np.argsort(ev_t[mine])[:1]]
            e0 = int(rng.choice(cand))
            t = int(ev_t[e0]) + int(rng.integers(5 * MINUTE_MS, 45 * MINUTE_MS))
            fc = far_city(card_city[v], 2500)
            for _ in range(size):
                m = int(m_lo[fc] + rng.integers(0, per_city[fc]))
                emit(v, t, m, m_lat[m], m_lon[m], med * rng.uniform(1.5, 6.0), -1, pattern)
                t += int(rng.integers(3 * MINUTE_MS, 15 * MINUTE_MS))
        elif pattern == "account_takeover":
            dur = rng.uniform(40, 110) * MINUTE_MS
            t0 = int(rng.integers(0, span_ms - 2 * HOUR_MS))
            offs = np.sort(rng.uniform(0, dur, size)); offs[0] = 0
            used = set(ev_merch[mine].tolist())
            fresh = np.array([m for m in ato_merch if m not in used]) if used else ato_merch
            if fresh.size == 0:
                fresh = np.array([m for m in range(n_phys, n_merch) if m not in used])
            shops = rng.choice(fresh, size, replace=size > fresh.size)
            dev = next_dev; next_dev += 1
            fc = far_city(card_city[v], 0) if rng.random() < 0.5 else \
                int((card_city[v] + rng.integers(1, n_city)) % n_city)
            flat, flon = c_lat[fc] + rng.normal(0, 0.03), c_lon[fc] + rng.normal(0, 0.03)
            for o, m in zip(offs, shops):
                emit(v, t0 + int(o), m, flat, flon, med * rng.uniform(4.0, 12.0), dev, pattern)
        else:  # high_amount
            base = int(ev_t[rng.choice(mine)]) if mine.size else int(rng.integers(0, span_ms))
            t = int(np.clip(base + rng.integers(-3 * HOUR_MS, 3 * HOUR_MS), 0, span_ms - 1))
            hc = card_city[v]
            if card_device[v] >= 0 and rng.random() < 0.5:
                opts = np.flatnonzero(high_merch_ok[n_phys:]) + n_phys
                m = int(rng.choice(opts)) if opts.size else int(rng.integers(n_phys, n_merch))
                lat, lon, dev = home_lat[v] + rng.normal(0, 0.01), home_lon[v] + rng.normal(0, 0.01), card_device[v]
            else:
                opts = np.flatnonzero(high_merch_ok[m_lo[hc]:m_lo[hc] + per_city[hc]]) + m_lo[hc]
                m = int(rng.choice(opts)) if opts.size else int(m_lo[hc] + rng.integers(0, per_city[hc]))
                lat, lon, dev = m_lat[m], m_lon[m], -1
            top = float(ev_amount[mine].max()) if mine.size else med
            emit(v, t, m, lat, lon, max(med * rng.uniform(15.0, 50.0), top * rng.uniform(1.5, 3.0)), dev,
                 pattern)
    assert next_dev <= n_dev_ids
    assert len(f_t) == n_fraud, (len(f_t), n_fraud)
    assert n_fraud < 0.01 * n_events, "fraud must stay under 1 % of events"
    step("assemble", 0.7)

    card = np.concatenate([ev_card, np.array(f_card, dtype=np.int64)])
    merch = np.concatenate([ev_merch, np.array(f_merch, dtype=np.int64)])
    amount = np.concatenate([ev_amount, np.array(f_amount)])
    decimals = c_dec[card_city[card]]
    amount = np.maximum(np.round(amount * 10.0 ** decimals) / 10.0 ** decimals, 0.01)
    pat = np.concatenate([np.zeros(n_legit, np.int8), np.array(f_pat, dtype=np.int8)])
    cols = {
        "event_time": start_ms + np.concatenate([ev_t, np.array(f_t, dtype=np.int64)]),
        "card_id": _Codes(card_ids, card),
        "merchant_id": _Codes(merchant_ids, merch),
        "mcc": _Codes(mcc_codes, m_mcc[merch]),
        "amount": amount,
        "currency": _Codes(c_cur, card_city[card]),
        "lat": np.clip(np.round(np.concatenate([ev_lat, np.array(f_lat)]), 5), -90, 90),
        "lon": np.clip(np.round(np.concatenate([ev_lon, np.array(f_lon)]), 5), -180, 180),
        "device_id": _Codes(device_ids, np.concatenate([ev_device, np.array(f_dev, dtype=np.int64)])),
        "is_fraud": pat > 0,
        "fraud_pattern": _Codes(FRAUD_PATTERNS, pat.astype(np.int64) - 1),
    }
    attrs = dict(domain="fraud", n_cards=n_cards, n_merchants=n_merch, fraud_incidents=incidents,
                 n_travellers=int(traveller.sum()))
    return _finish(PAYMENT, "p-", cols, seed, pat == 0, out_of_order, late, malformed, max_disorder_ms,
                   late_by_ms, attrs, progress)


# --------------------------------------------------------------------------------------------
# recsys: shopper behaviour
# --------------------------------------------------------------------------------------------
# category, share of the catalogue, median price (EUR)
CATEGORIES = (("electronics", 0.08, 120.0), ("computers", 0.04, 450.0), ("phones", 0.03, 350.0),
              ("books", 0.12, 15.0), ("fashion", 0.12, 40.0), ("shoes", 0.05, 70.0),
              ("beauty", 0.07, 20.0), ("home", 0.08, 35.0), ("kitchen", 0.06, 30.0),
              ("garden", 0.04, 25.0), ("sports", 0.06, 45.0), ("toys", 0.06, 25.0),
              ("grocery", 0.06, 6.0), ("pets", 0.04, 18.0), ("automotive", 0.03, 30.0),
              ("jewelry", 0.02, 150.0), ("music", 0.02, 12.0), ("games", 0.02, 45.0))
P_CART = 0.10      # of views
P_PURCHASE = 0.30  # of carts -> 3 % of views


def generate_behaviour(n_events: int, seed: int = 0, start_ms: int = DEFAULT_START_MS, days: float = 1.0,
                       n_users: Optional[int] = None, n_items: Optional[int] = None,
                       out_of_order: float = 0.0, late: float = 0.0, malformed: float = 0.0,
                       max_disorder_ms: int = 5000, late_by_ms: int = 600_000,
                       progress: Progress = None) -> pd.DataFrame:
    """Shopper sessions: views, ~10 % of them carted, ~3 % purchased (of views).

    ``n_users`` defaults to n_events // 40, ``n_items`` to n_events // 50 (at least 10 / 50).
    About one session in five has no session_hint (client without a session id).
    """
    _check_args(n_events, seed, days, out_of_order, late, malformed, max_disorder_ms, late_by_ms,
                start_ms)
    rng = np.random.default_rng(seed)
    span_ms = int(round(days * DAY_MS))
    n_users = int(n_users) if n_users else max(10, n_events // 40)
    n_items = int(n_items) if n_items else max(50, n_events // 50)
    if n_users <= 0 or n_items <= 0:
        raise ValueError("n_users and n_items must be > 0")
    step = (lambda s, f: progress(s, f)) if progress else (lambda s, f: None)
    step("catalogue", 0.0)

    n_cat = len(CATEGORIES)
    cat_names = [c[0] for c in CATEGORIES]
    cat_share = np.array([c[1] for c in CATEGORIES]); cat_share /= cat_share.sum()
    cat_price = np.array([c[2] for c in CATEGORIES])
    # items: contiguous per category, rank 0 the most popular; Zipf(1.1) inside the category
    per_cat = np.maximum(1, np.round(cat_share * n_items)).astype(int)
    n_items = int(per_cat.sum())
    i_lo = np.concatenate([[0], np.cumsum(per_cat)[:-1]])
    item_cat = np.repeat(np.arange(n_cat), per_cat)
    item_price = cat_price[item_cat] * np.exp(rng.normal(0, 0.55, n_items))
    item_price = np.where(item_price >= 2, np.round(item_price) - 0.01, np.round(item_price, 2))
    item_price = np.maximum(item_price, 0.49)
    item_ids = [f"i-{i:07d}" for i in rng.permutation(n_items)]
    zipf_cdf = []
    for c in range(n_cat):
        w = 1.0 / np.arange(1, per_cat[c] + 1) ** 1.1
        zipf_cdf.append(np.cumsum(w) / w.sum())
    # users: peaked category tastes, heterogeneous activity and buying propensity
    prefs = rng.gamma(0.35, 1.0, (n_users, n_cat)) * cat_share
    prefs /= prefs.sum(axis=1, keepdims=True)
    pref_cdf = np.cumsum(prefs, axis=1)
    activity = rng.lognormal(0, 1.0, n_users)
    buyer = rng.lognormal(0, 0.5, n_users)
    buyer /= buyer.mean()
    user_ids = _ids("u-", n_users, max(6, len(str(n_users - 1))))

    # sessions and their views ---------------------------------------------------------
    step("sessions", 0.1)
    funnel = 1 + P_CART + P_CART * P_PURCHASE
    n_views = int(n_events / funnel * 1.03) + 50
    lengths = rng.geometric(1 / 7.0, int(n_views / 7.0 * 1.2) + 20)  # views per session, mean 7
    cum = np.cumsum(lengths)
    n_sess = int(np.searchsorted(cum, n_views)) + 1
    if n_sess > lengths.size:  # pragma: no cover
        extra = rng.geometric(1 / 7.0, n_sess - lengths.size + 100)
        lengths = np.concatenate([lengths, extra]); cum = np.cumsum(lengths)
        n_sess = int(np.searchsorted(cum, n_views)) + 1
    lengths = lengths[:n_sess].copy()
    lengths[-1] -= int(cum[n_sess - 1] - n_views)
    sess_user = rng.choice(n_users, n_sess, p=activity / activity.sum())
    sess_hint_ok = rng.random(n_sess) >= 0.2
    sess_ids = [f"sess-{x:012x}" for x in rng.integers(0, 2 ** 48, n_sess)]
    v_sess = np.repeat(np.arange(n_sess), lengths)
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    gaps = rng.exponential(35_000.0, n_views) + rng.lognormal(8.5, 0.6, n_views)  # ms, dwell
    gaps[first] = 0
    csum = np.cumsum(gaps)
    offs = csum - np.repeat(csum[first], lengths)
    dur = offs[np.cumsum(lengths) - 1]
    s_start = _diurnal_times(rng, n_sess, 1.0, start_ms, span_ms, _shopping_profile).astype(np.float64)
    scale = np.minimum(1.0, (span_ms - 1) / np.maximum(dur, 1.0))   # squeeze sessions longer than span
    s_start = np.clip(s_start, 0, np.maximum(span_ms - 1 - dur * scale, 0))
    v_t = np.floor(np.repeat(s_start, lengths) + offs * np.repeat(scale, lengths)).astype(np.int64)
    v_user = sess_user[v_sess]

    # what they look at: a session intent category (70 %) or any of their tastes -------------
    step("views", 0.25)
    intent = (pref_cdf[sess_user] < rng.random(n_sess)[:, None]).sum(axis=1)
    any_cat = (pref_cdf[v_user] < rng.random(n_views)[:, None]).sum(axis=1)
    v_cat = np.minimum(np.where(rng.random(n_views) < 0.7, intent[v_sess], any_cat), n_cat - 1)
    v_item = np.empty(n_views, np.int64)
    uz = rng.random(n_views)
    for c in range(n_cat):
        sel = v_cat == c
        v_item[sel] = i_lo[c] + np.minimum(np.searchsorted(zipf_cdf[c], uz[sel]), per_cat[c] - 1)

    # funnel ---------------------------------------------------------------------------
    p_cart = np.clip(P_CART * buyer[v_user], 0, 0.6)
    carted = rng.random(n_views) < p_cart
    bought = carted & (rng.random(n_views) < P_PURCHASE)
    # trim to exactly n_events by removing leaves: plain views, then purchases, carts, views
    total = n_views + int(carted.sum()) + int(bought.sum())
    keep = np.ones(n_views, bool)
    excess = total - n_events
    for layer in ("view", "purchase", "cart", "view"):
        if excess <= 0:
            break
        if layer == "view":
            cand = np.flatnonzero(keep & ~carted)
        elif layer == "purchase":
            cand = np.flatnonzero(keep & bought)
        else:
            cand = np.flatnonzero(keep & carted & ~bought)
        drop = rng.choice(cand, min(excess, cand.size), replace=False) if cand.size else cand
        if layer == "view":
            keep[drop] = False
        elif layer == "purchase":
            bought[drop] = False
        else:
            carted[drop] = False
        excess -= drop.size
    assert excess <= 0
    if excess < 0:  # pragma: no cover - oversampling makes this unreachable
        raise AssertionError("behaviour generator undershot")

    ci = np.flatnonzero(keep & carted)
    bi = np.flatnonzero(keep & bought)
    vi = np.flatnonzero(keep)
    cart_t = np.zeros(n_views, np.int64)
    cart_t[ci] = v_t[ci] + rng.integers(5_000, 90_000, ci.size)       # cart 5-90 s after the view
    c_t = cart_t[ci]
    b_t = cart_t[bi] + np.floor(rng.exponential(120_000, bi.size)).astype(np.int64) + 10_000
    step("assemble", 0.6)
    src = np.concatenate([vi, ci, bi])
    t = np.minimum(np.concatenate([v_t[vi], c_t, b_t]), span_ms - 1)
    action = np.concatenate([np.full(vi.size, 0), np.full(ci.size, 1), np.full(bi.size, 2)])
    item = v_item[src]
    cols = {
        "event_time": start_ms + t,
        "user_id": _Codes(user_ids, v_user[src]),
        "session_hint": _Codes(sess_ids, np.where(sess_hint_ok[v_sess[src]], v_sess[src], -1)),
        "item_id": _Codes(item_ids, item),
        "category": _Codes(cat_names, item_cat[item]),
        "action": _Codes(("view", "cart", "purchase"), action),
        "price": item_price[item],
    }
    assert len(t) == n_events
    attrs = dict(domain="recsys", n_users=n_users, n_items=n_items, n_sessions=n_sess)
    return _finish(BEHAVIOUR, "b-", cols, seed, np.ones(n_events, bool), out_of_order, late, malformed,
                   max_disorder_ms, late_by_ms, attrs, progress)


# --------------------------------------------------------------------------------------------
# iot: machine sensors
# --------------------------------------------------------------------------------------------
# sensor type, unit, rounding
SENSOR_TYPES = (("temp", "degC", 2), ("vib", "mm/s", 3), ("pres", "bar", 3))


def generate_sensors(n_events: int, seed: int = 0, start_ms: int = DEFAULT_START_MS, days: float = 1.0,
                     n_machines: Optional[int] = None, anomaly_rate: float = 0.01,
                     out_of_order: float = 0.0, late: float = 0.0, malformed: float = 0.0,
                     max_disorder_ms: int = 5000, late_by_ms: int = 600_000,
                     progress: Progress = None) -> pd.DataFrame:
    """Regular readings of 3-5 sensors per machine, with labelled spike/drift/stuck anomalies.

    ``n_machines`` defaults to one per ~4 sensors reporting once a minute over the span.
    ``anomaly_rate`` is the target share of readings inside an anomaly.
    """
    _check_args(n_events, seed, days, out_of_order, late, malformed, max_disorder_ms, late_by_ms,
                start_ms)
    if not 0 <= anomaly_rate < 0.5:
        raise ValueError(f"anomaly_rate must be in [0, 0.5), got {anomaly_rate}")
    rng = np.random.default_rng(seed)
    span_ms = int(round(days * DAY_MS))
    per_sensor = max(1.0, span_ms / MINUTE_MS)
    n_machines = int(n_machines) if n_machines else max(1, int(round(n_events / (4.0 * per_sensor))))
    if n_machines <= 0:
        raise ValueError(f"n_machines must be > 0, got {n_machines}")
    step = (lambda s, f: progress(s, f)) if progress else (lambda s, f: None)
    step("sensors", 0.0)

    # sensors: temp-1, vib-1, pres-1 on every machine, sometimes temp-2 / vib-2 --------------
    s_machine, s_type, s_name = [], [], []
    extra_t = rng.random(n_machines) < 0.5
    extra_v = rng.random(n_machines) < 0.3
    for m in range(n_machines):
        names = [("temp-1", 0), ("vib-1", 1), ("pres-1", 2)]
        if extra_t[m]:
            names.append(("temp-2", 0))
        if extra_v[m]:
            names.append(("vib-2", 1))
        for nm, ty in names:
            s_machine.append(m); s_type.append(ty); s_name.append(nm)
    s_machine = np.array(s_machine); s_type = np.array(s_type)
    n_s = s_machine.size
    cnt = np.full(n_s, n_events // n_s, dtype=np.int64)
    cnt[: n_events % n_s] += 1
    machine_ids = _ids("mch-", n_machines, 4)

    # times: a regular period per sensor, random phase, small jitter --------------------------
    r_s = np.repeat(np.arange(n_s), cnt)
    first = np.concatenate([[0], np.cumsum(cnt)[:-1]])
    k = np.arange(n_events) - np.repeat(first, cnt)
    period = span_ms / np.maximum(cnt, 1)
    phase = rng.random(n_s)
    jitter = rng.uniform(-0.03, 0.03, n_events)
    t = np.floor((k + phase[r_s] + jitter) * period[r_s]).astype(np.int64)
    t = np.clip(t, 0, span_ms - 1)

    # values: base + daily load cycle + slow wander + noise --------------------------------
    step("values", 0.2)
    ty = s_type[r_s]
    m_of = s_machine[r_s]
    hours = (start_ms + t) / HOUR_MS
    m_phase = rng.normal(0, 1.0, n_machines)
    load = 0.5 + 0.5 * np.sin(2 * np.pi * (hours + 1.0 - 9.0 - m_phase[m_of]) / 24.0)  # peak ~15:00
    base = np.where(s_type == 0, rng.uniform(45, 75, n_s),
                    np.where(s_type == 1, rng.uniform(1.5, 4.5, n_s), rng.uniform(4.0, 8.0, n_s)))
    amp = np.where(s_type == 0, rng.uniform(2, 6, n_s), np.where(s_type == 1, 0.5, 0.3))
    wander = np.zeros(n_events)
    for _ in range(2):
        per_h = rng.uniform(1.5, 8.0, n_s)
        ph = rng.uniform(0, 2 * np.pi, n_s)
        wander += np.sin(2 * np.pi * hours / per_h[r_s] + ph[r_s])
    noise = rng.normal(0, 1, n_events)
    value = np.where(
        ty == 0, base[r_s] + amp[r_s] * load + 0.6 * wander + 0.25 * noise,
        np.where(ty == 1, base[r_s] * (0.6 + amp[r_s] * load) * np.exp(0.06 * noise) + 0.05 * wander,
                 base[r_s] + amp[r_s] * load + 0.04 * wander + 0.03 * noise))

    # anomalies ---------------------------------------------------------------------------
    step("anomalies", 0.4)
    anomalous = np.zeros(n_events, bool)
    target = int(anomaly_rate * n_events)
    done = {kk: 0 for kk in ANOMALY_KINDS}
    readings = {kk: 0 for kk in ANOMALY_KINDS}
    kind_i, tries = 0, 0
    p_s = cnt / cnt.sum()
    while anomalous.sum() < target and tries < 50 * (target + 10):
        tries += 1
        kind = ANOMALY_KINDS[kind_i % 3]
        s = int(rng.choice(n_s, p=p_s))
        c = int(cnt[s])
        length = {"spike": int(rng.integers(1, 4)), "drift": int(rng.integers(30, 181)),
                  "stuck": int(rng.integers(20, 121))}[kind]
        length = min(length, max(1, target - int(anomalous.sum()))) if kind == "spike" else \
            min(length, max(5, c // 5))
        if c < length + 2:
            continue
        a = first[s] + int(rng.integers(1, c - length))
        sl = slice(a, a + length)
        if anomalous[a - 1:a + length + 1].any():
            continue
        tt = s_type[s]
        if kind == "spike":
            if tt == 0:
                value[sl] += rng.uniform(12, 25)
            elif tt == 1:
                value[sl] *= rng.uniform(3, 6)
            else:
                value[sl] += rng.choice([-1, 1]) * rng.uniform(1.5, 3.0)
        elif kind == "drift":
            ramp = np.linspace(0, 1, length) ** 1.5
            if tt == 0:
                value[sl] += ramp * rng.uniform(6, 15)
            elif tt == 1:
                value[sl] *= 1 + ramp * rng.uniform(1.5, 3.0)
            else:
                value[sl] -= ramp * rng.uniform(0.8, 2.0)
        else:
            value[sl] = value[a - 1]
        anomalous[sl] = True
        done[kind] += 1
        readings[kind] += length
        kind_i += 1
    value = np.where(ty == 1, np.maximum(value, 0.0), value)
    value = np.where(ty == 0, np.round(value, 2), np.round(value, 3))
    # a stuck sensor repeats its last value exactly, also after rounding
    units = [u for _, u, _ in SENSOR_TYPES]
    cols = {
        "event_time": start_ms + t,
        "machine_id": _Codes(machine_ids, m_of),
        "sensor_id": _Codes(s_name, r_s),
        "value": value,
        "unit": _Codes(units, ty),
        "is_anomaly": anomalous,
    }
    attrs = dict(domain="iot", n_machines=n_machines, n_sensors=n_s, anomaly_incidents=done,
                 anomaly_readings=readings)
    step("assemble", 0.7)
    return _finish(SENSOR, "s-", cols, seed, ~anomalous, out_of_order, late, malformed, max_disorder_ms,
                   late_by_ms, attrs, progress)


GENERATORS = {"fraud": generate_payments, "recsys": generate_behaviour, "iot": generate_sensors}
CONTRACT_OF = {"fraud": PAYMENT, "recsys": BEHAVIOUR, "iot": SENSOR}


def to_arrow(df: pd.DataFrame, contract: EventContract, with_raw: bool = True):
    """The frame as a pyarrow Table with the contract's explicit schema (labels included)."""
    import pyarrow as pa

    schema = contract.arrow_schema(with_labels=True, with_raw=with_raw)
    missing = [f.name for f in schema if f.name not in df.columns]
    if missing:
        df = df.assign(**{m: pd.Series(pd.NA, index=df.index, dtype="object") for m in missing})
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    return table.replace_schema_metadata(schema.metadata)


def records(df: pd.DataFrame, contract: EventContract) -> list:
    """Rows as plain Python dicts (None for nulls), ready for ``contract.from_row``."""
    return to_arrow(df, contract).to_pylist()
