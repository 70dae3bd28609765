"""What the three generators share: argument checks, diurnal times, arrival order with disorder,
malformed payloads, ids, and the final frame (see features.synthetic)."""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np
import pandas as pd

from features.contracts import (BAD_TIMESTAMP, BOOL, FLOAT64, INT64, MALFORMED_JSON,
                                MISSING_FIELD, NON_FINITE, NOT_AN_OBJECT, OUT_OF_RANGE,
                                RAW_PAYLOAD, STRING, TIMESTAMP_MS, WRONG_TYPE, EventContract,
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

    >>> from features.contracts import PAYMENT, SENSOR
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
