"""Tumbling, sliding and session windows: one output row per (key, window), as data, run by pandas.

A ``WindowedFeatures`` declares a key (one or more contract fields), a window kind and a list of
``WindowAgg``. Its rows are the key fields, ``window_start`` and ``window_end`` (UTC epoch ms),
then one column per aggregation, in declared order. ``execute_windows`` is the pandas reference;
udfs/windows.py compiles the same declaration to Flink's own window operators.

Window rules (times are integer epoch ms; windows are half-open ``[start, end)``):

* ``Tumbling(size)``: windows ``[k*size, (k+1)*size)``, aligned to epoch 0. An event at exactly
  ``k*size`` belongs to window k, one at ``k*size - 1`` to window k-1.
* ``Sliding(size, slide)``: windows ``[k*slide, k*slide + size)`` for every k; each event is in
  ``size / slide`` windows. ``size`` must be a multiple of ``slide`` (Flink's HOP requires it).
* ``Session(gap)``: a key's events, in time order, stay in one session while each is at most
  ``gap`` ms after the previous one; more than ``gap`` ms of silence starts a new session.
  ``window_start`` = first event time, ``window_end`` = last event time + gap. This is Flink's
  rule (measured): a session window of an event at t is ``[t, t + gap)`` and windows that touch
  are merged, so an event exactly ``gap`` ms after the previous one joins its session.

Only windows holding at least one event of the key appear. The pandas execution sees every event;
Flink's streaming window operators drop events behind the watermark (see udfs/windows.py). Aggregations, over the window's
events in (event_time, event_id) order; null input values are skipped by every op but count:

* count: events (int64, never null). distinct_count: distinct non-null values (int64, never
  null; 0.0 and -0.0 are one value).
* sum (float64): the values added one by one, oldest first, starting from the first value.
* mean: that sum / the number of values. min / max: of the values (the input's type).
* std_pop (float64): exactly 0.0 when all values are equal; else, with that mean, ``sq = 0.0``
  then ``d = x - mean; sq += d * d`` oldest to newest, result ``sqrt(sq / n)``.
* first / last: the value of the window's first / last event (by event_time, then event_id)
  whose value is not null; any input type, strings included.
* sum, mean, std_pop, min, max, first, last are null where the window has no non-null value:
  nullable exactly when the input field is.

>>> from features.contracts import SENSOR
>>> wf = WindowedFeatures("iot_5m", 1, SENSOR, "machine_id", Tumbling(300_000),
...                       [WindowAgg("n", "count"), WindowAgg("v_max", "max", "value")])
>>> wf.output_columns
('machine_id', 'window_start', 'window_end', 'n', 'v_max')
>>> Sliding(300_000, 120_000)
Traceback (most recent call last):
...
ValueError: Sliding: size_ms 300000 must be a multiple of slide_ms 120000 (Flink's HOP window requires it)
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import pandas as pd

from features.contracts import BOOL, FLOAT64, INT64, STRING, TIMESTAMP_MS, EventContract

DAY_MS = 86_400_000
# Flink takes window lengths as INTERVAL 'D HH:MM:SS.fff' DAY TO SECOND(3) literals, whose day
# field has two digits (DAY(5) is refused by the planner): 99 days 23:59:59.999 at most.
MAX_WINDOW_MS = 100 * DAY_MS - 1

WINDOW_OPS = ("count", "sum", "mean", "std_pop", "min", "max", "distinct_count", "first", "last")
_NUMERIC_OPS = ("sum", "mean", "std_pop", "min", "max")
WINDOW_COLUMNS = ("window_start", "window_end")
OUTPUT_TYPES = ("int64", "float64", "bool", "string")
# Contract field type -> the dtype a min/max/first/last of it has.
_FIELD_DTYPES = {INT64: "int64", TIMESTAMP_MS: "int64", FLOAT64: "float64", BOOL: "bool", STRING: "string"}


def _check_ms(where: str, what: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{where}: {what} must be an int of milliseconds, got {v!r}")
    if not 1 <= v <= MAX_WINDOW_MS:
        raise ValueError(f"{where}: {what} must be within 1 .. {MAX_WINDOW_MS} ms, got {v}")


@dataclass(frozen=True)
class Tumbling:
    """Back-to-back windows of ``size_ms``, aligned to epoch 0."""

    size_ms: int

    def __post_init__(self):
        _check_ms("Tumbling", "size_ms", self.size_ms)

    def definition(self) -> dict:
        return {"kind": "tumbling", "size_ms": int(self.size_ms)}


@dataclass(frozen=True)
class Sliding:
    """Windows of ``size_ms`` starting every ``slide_ms`` (a divisor of the size), aligned to epoch 0."""

    size_ms: int
    slide_ms: int

    def __post_init__(self):
        _check_ms("Sliding", "size_ms", self.size_ms)
        _check_ms("Sliding", "slide_ms", self.slide_ms)
        if self.size_ms % self.slide_ms:
            raise ValueError(f"Sliding: size_ms {self.size_ms} must be a multiple of slide_ms {self.slide_ms} "
                             f"(Flink's HOP window requires it)")

    def definition(self) -> dict:
        return {"kind": "sliding", "size_ms": int(self.size_ms), "slide_ms": int(self.slide_ms)}


@dataclass(frozen=True)
class Session:
    """Per key, events at most ``gap_ms`` apart; a session ends at its last event + gap."""

    gap_ms: int

    def __post_init__(self):
        _check_ms("Session", "gap_ms", self.gap_ms)

    def definition(self) -> dict:
        return {"kind": "session", "gap_ms": int(self.gap_ms)}


Window = Union[Tumbling, Sliding, Session]


@dataclass(frozen=True)
class WindowAgg:
    """One aggregate of a window's events: ``op`` (one of WINDOW_OPS) of the contract field ``input``."""

    name: str
    op: str
    input: Optional[str] = None
    doc: str = ""

    def __post_init__(self):
        where = f"window aggregation {self.name}"
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"window aggregation name {self.name!r} is not an identifier")
        if self.op not in WINDOW_OPS:
            raise ValueError(f"{where}: unknown op {self.op!r} (one of {WINDOW_OPS})")
        if self.op == "count":
            if self.input is not None:
                raise ValueError(f"{where}: count takes no input (it counts events)")
        elif not isinstance(self.input, str) or not self.input:
            raise ValueError(f"{where}: {self.op} needs an input field")

    def resolved(self, field_type: Optional[str], input_nullable: bool) -> tuple:
        """(dtype, nullable) given the input's contract type and nullability."""
        if self.op in ("count", "distinct_count"):
            return "int64", False
        if self.op in _NUMERIC_OPS and field_type not in (INT64, TIMESTAMP_MS, FLOAT64):
            raise ValueError(f"window aggregation {self.name}: {self.op} needs a numeric input, "
                             f"{self.input} is {field_type}")
        dtype = "float64" if self.op in ("sum", "mean", "std_pop") else _FIELD_DTYPES[field_type]
        return dtype, bool(input_nullable)


@dataclass(frozen=True)
class WindowColumn:
    """One output column: name, dtype (one of OUTPUT_TYPES) and whether it can be null."""

    name: str
    dtype: str
    nullable: bool


@dataclass(frozen=True)
class WindowedFeatures:
    """A versioned windowed aggregation of one contract's events, keyed by ``key`` (a field or a tuple)."""

    name: str
    version: int
    contract: EventContract
    key: Union[str, Sequence[str]]
    window: Window
    aggregations: Sequence[WindowAgg]
    time_field: str = "event_time"
    doc: str = ""
    columns: tuple = field(init=False, repr=False)  # WindowColumn per output column, in order

    def __post_init__(self):
        where = f"windowed features {self.name}"
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"windowed features name {self.name!r} is not an identifier")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise ValueError(f"{where}: version must be an int >= 1, got {self.version!r}")
        if not isinstance(self.window, (Tumbling, Sliding, Session)):
            raise ValueError(f"{where}: window must be Tumbling, Sliding or Session, got {self.window!r}")
        keys = (self.key,) if isinstance(self.key, str) else tuple(self.key)
        object.__setattr__(self, "key", keys)
        aggs = tuple(self.aggregations)
        object.__setattr__(self, "aggregations", aggs)
        fields = {f.name: f for f in self.contract.all_fields}
        if not keys or not all(isinstance(k, str) for k in keys):
            raise ValueError(f"{where}: key must be a field name or a non-empty sequence of them")
        if len(set(keys)) != len(keys):
            raise ValueError(f"{where}: repeated key field in {keys}")
        for k in keys:
            if k not in fields:
                raise ValueError(f"{where}: key {k!r} is not a field of contract {self.contract.name}")
            if fields[k].nullable:
                raise ValueError(f"{where}: key {k!r} is nullable; a window key must always be set")
        t = fields.get(self.time_field)
        if t is None or t.type not in (TIMESTAMP_MS, INT64) or t.nullable:
            raise ValueError(f"{where}: time_field {self.time_field!r} must be a non-nullable epoch-ms field "
                             f"of contract {self.contract.name}")
        if self.time_field in keys:
            raise ValueError(f"{where}: time_field {self.time_field!r} cannot also be a key")
        if "event_id" not in fields:  # first/last break time ties by event_id
            raise ValueError(f"{where}: contract {self.contract.name} has no event_id")
        if not aggs:
            raise ValueError(f"{where}: no aggregations")
        cols = [WindowColumn(k, _FIELD_DTYPES[fields[k].type], False) for k in keys]
        cols += [WindowColumn(w, "int64", False) for w in WINDOW_COLUMNS]
        taken = set(keys) | set(WINDOW_COLUMNS)
        for a in aggs:
            if not isinstance(a, WindowAgg):
                raise ValueError(f"{where}: {a!r} is not a WindowAgg")
            if a.name in taken:
                raise ValueError(f"{where}: column name {a.name!r} is used twice (keys and window_start/"
                                 f"window_end are output columns too)")
            taken.add(a.name)
            f = fields.get(a.input) if a.input is not None else None
            if a.input is not None and f is None:
                raise ValueError(f"window aggregation {a.name}: unknown input {a.input!r} "
                                 f"(not a field of contract {self.contract.name})")
            dtype, nullable = a.resolved(f.type if f else None, bool(f is not None and f.nullable))
            cols.append(WindowColumn(a.name, dtype, nullable))
        object.__setattr__(self, "columns", tuple(cols))

    @property
    def output_columns(self) -> tuple:
        return tuple(c.name for c in self.columns)

    @property
    def input_fields(self) -> tuple:
        """The contract fields the execution reads, in contract order."""
        used = set(self.key) | {self.time_field, "event_id"} | {a.input for a in self.aggregations if a.input}
        return tuple(f.name for f in self.contract.all_fields if f.name in used)

    def field_type(self, name: str) -> str:
        return next(f.type for f in self.contract.all_fields if f.name == name)

    def definition(self) -> dict:
        """The canonical, JSON-able description the hash covers (docs excluded)."""
        return {"name": self.name, "version": self.version,
                "contract": [self.contract.name, self.contract.version], "key": list(self.key),
                "time_field": self.time_field, "window": self.window.definition(),
                "aggregations": [[a.name, a.op, a.input] for a in self.aggregations],
                "columns": [[c.name, c.dtype, c.nullable] for c in self.columns]}

    @property
    def definition_hash(self) -> str:
        blob = json.dumps(self.definition(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def arrow_schema(self):
        """Schema of the output rows (as written to Parquet)."""
        import pyarrow as pa

        kinds = {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(), "string": pa.string()}
        return pa.schema([pa.field(c.name, kinds[c.dtype], nullable=c.nullable) for c in self.columns],
                         metadata={"windowed_features": self.name, "version": str(self.version),
                                   "definition_hash": self.definition_hash})


# ------------------------------------------------------------------------------- pandas execution
def assign_windows(window: Window, times: np.ndarray, group: np.ndarray) -> tuple:
    """Window membership of events sorted by (key, time): (rows, starts, ends) with one entry per
    (event, window) pair; ``group`` numbers the key of each row (equal keys are contiguous)."""
    times = np.asarray(times, dtype=np.int64)
    if isinstance(window, Tumbling):
        starts = times - times % window.size_ms  # numpy's % floors: epoch-aligned for any sign
        return np.arange(len(times)), starts, starts + window.size_ms
    if isinstance(window, Sliding):
        last = times - times % window.slide_ms  # the newest window holding t starts here
        per = window.size_ms // window.slide_ms
        rows = np.repeat(np.arange(len(times)), per)
        starts = np.repeat(last, per) - np.tile(np.arange(per), len(times)) * window.slide_ms
        return rows, starts, starts + window.size_ms
    # Session: a new session where the key changes or the silence exceeds the gap.
    new = np.ones(len(times), dtype=bool)
    new[1:] = (group[1:] != group[:-1]) | (times[1:] - times[:-1] > window.gap_ms)
    session = np.cumsum(new) - 1
    first = times[new]
    last = np.maximum.reduceat(times, np.flatnonzero(new)) if len(times) else times
    return np.arange(len(times)), first[session], last[session] + window.gap_ms


def _present(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v)) and v is not pd.NA


def _agg(op: str, vals: list):
    """One aggregate of the window's input values (time order; nulls already removed, but count)."""
    if op == "count":
        return len(vals)
    if op == "distinct_count":
        return len(set(vals))  # Python's equality: 0.0 == -0.0, 1 == 1.0
    if not vals:
        return None
    if op == "first":
        return vals[0]
    if op == "last":
        return vals[-1]
    if op == "min":
        return min(vals)
    if op == "max":
        return max(vals)
    xs = [float(v) for v in vals]
    total = xs[0]
    for x in xs[1:]:
        total += x
    if op == "sum":
        return total
    mean = total / len(xs)
    if op == "mean":
        return mean
    if all(x == xs[0] for x in xs):  # std_pop
        return 0.0
    sq = 0.0
    for x in xs:
        d = x - mean
        sq += d * d
    return math.sqrt(sq / len(xs))


_CONVERT = {"int64": int, "float64": float, "bool": bool, "string": str}


def execute_windows(decl: WindowedFeatures, events: Union[pd.DataFrame, Iterable[dict]]) -> pd.DataFrame:
    """The declaration's output rows for ``events`` (any row order), sorted by (key..., window_start).

    Columns that cannot be null have numpy dtypes (int64, float64, bool); nullable and string
    columns are object columns with None for null. Input nulls may be None, NaN or pd.NA.
    """
    df = events if isinstance(events, pd.DataFrame) else pd.DataFrame(list(events))
    missing = [c for c in decl.input_fields if c not in df.columns]
    if missing:
        raise ValueError(f"windowed features {decl.name}: events lack columns {missing}")
    for c in decl.key + (decl.time_field, "event_id"):
        if df[c].isna().any():
            raise ValueError(f"windowed features {decl.name}: {c} is null in some events")
    keys = list(decl.key)
    cols = {c: df[c].astype(object).to_numpy() for c in decl.input_fields}
    times = df[decl.time_field].astype("int64").to_numpy()
    # (key..., time, event_id): Python's comparison of the values (code-point order for strings)
    order = sorted(range(len(df)), key=lambda i: tuple(cols[k][i] for k in keys) + (times[i], cols["event_id"][i]))
    order = np.asarray(order, dtype=np.int64)
    key_tuples = [tuple(cols[k][i] for k in keys) for i in order]
    group = np.zeros(len(order), dtype=np.int64)
    for j in range(1, len(order)):
        group[j] = group[j - 1] + (key_tuples[j] != key_tuples[j - 1])
    rows, starts, ends = assign_windows(decl.window, times[order], group)
    # (key group, window_start, row): rows of one window stay in (time, event_id) order
    member = np.lexsort((rows, starts, group[rows]))
    rows, starts, ends = rows[member], starts[member], ends[member]
    out = {c.name: [] for c in decl.columns}
    bounds = np.flatnonzero(np.r_[True, (group[rows][1:] != group[rows][:-1]) | (starts[1:] != starts[:-1])])
    for b, e in zip(bounds, list(bounds[1:]) + [len(rows)]) if len(rows) else ():
        idx = order[rows[b:e]]
        for k, v in zip(keys, key_tuples[rows[b]]):
            out[k].append(v)
        out["window_start"].append(int(starts[b]))
        out["window_end"].append(int(ends[b]))
        for a in decl.aggregations:
            vals = [None] * len(idx) if a.input is None else [cols[a.input][i] for i in idx]
            out[a.name].append(_agg(a.op, vals if a.op == "count" else [v for v in vals if _present(v)]))
    frame = {}
    for c in decl.columns:
        conv = _CONVERT[c.dtype]
        vals = [None if v is None else conv(v) for v in out[c.name]]
        if c.nullable or c.dtype == "string":
            frame[c.name] = pd.Series(vals, dtype=object)
        else:
            frame[c.name] = pd.Series(vals, dtype={"int64": "int64", "float64": "float64", "bool": "bool"}[c.dtype])
    return pd.DataFrame(frame, columns=list(decl.output_columns))
