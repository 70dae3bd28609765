"""Execute a feature declaration with pandas/numpy: the reference for the Flink engine.

``aggregate`` computes every ``Aggregation`` of a set over a frame of events, vectorized
across rows (one numpy pass per lag inside the window), following the arithmetic rules in
``features.declare.Aggregation`` to the bit, so it equals the Java operator (jvm/engine) and
``CardHistory``. ``derive`` runs the ``Derived`` functions; it is the very code the Flink job
runs in its pandas UDF, so derived values cannot drift between the two. ``execute`` = both,
in the set's output columns.

Events are taken in (event_time, event_id) order per key, which is the `event-time` ordering
and the backfill's; in-order input gives the same in the `arrival` ordering.

>>> import pandas as pd
>>> from features.fraud import FRAUD_FEATURES
>>> ev = pd.DataFrame(dict(event_id=["a", "b"], card_id="c", event_time=[0, 3_600_000],
...                        merchant_id="m", amount=[10.0, 30.0], device_id=None, lat=0.0, lon=0.0))
>>> out = execute(FRAUD_FEATURES, ev)
>>> out[["txn_count_1h", "txn_count_24h", "amount_mean_30d", "secs_since_prev"]].values.tolist()
[[1, 1, None, None], [1, 2, 10.0, 3600.0]]
"""
from __future__ import annotations

from typing import Iterable, Union

import numpy as np
import pandas as pd

from features.declare import Aggregation, Derived

Frame = Union[pd.DataFrame, Iterable[dict]]


def _frame(events: Frame, fs) -> pd.DataFrame:
    df = events if isinstance(events, pd.DataFrame) else pd.DataFrame(list(events))
    for f in fs.contract.all_fields:
        if f.name not in df.columns:
            df = df.assign(**{f.name: None})
    return df


def _values(col: pd.Series, kind: str):
    """(values, notnull) as numpy arrays; values of null rows are arbitrary."""
    notnull = col.notna().to_numpy()
    if kind == "double":
        return pd.to_numeric(col, errors="coerce").astype("float64").to_numpy(), notnull
    if kind == "long":
        return col.fillna(0).astype("int64").to_numpy(), notnull
    if kind == "boolean":
        return col.fillna(False).astype(bool).to_numpy(), notnull
    return col.to_numpy(dtype=object), notnull


def aggregate(fs, events: Frame) -> pd.DataFrame:
    """The aggregation columns (hidden ones included) of every event, in the input's row order.

    Columns hold Python-comparable values: int64/float64/bool numpy dtypes where no null is
    possible, else object columns with None for null.
    """
    df = _frame(events, fs)
    n = len(df)
    kinds = {c["name"]: c["type"] for c in fs.engine_spec()["columns"]}
    key = df[fs.key].to_numpy(dtype=object)
    times = df["event_time"].astype("int64").to_numpy()
    ids = df["event_id"].to_numpy(dtype=object)
    # Sort by (key, time, id); Python's own comparison of the ids (code-point order).
    order = np.array(sorted(range(n), key=lambda i: (key[i], times[i], ids[i])), dtype=np.int64)
    k_sorted = key[order]
    t = times[order]
    starts = np.zeros(n, dtype=np.int64)  # index of the first row of the key's group
    if n:
        new_group = np.ones(n, dtype=bool)
        new_group[1:] = k_sorted[1:] != k_sorted[:-1]
        starts = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    pos = np.arange(n, dtype=np.int64)

    out = {}
    for agg in (it for it in fs.items if isinstance(it, Aggregation)):
        dtype = fs.declared[agg.name]["dtype"]
        nullable = fs.declared[agg.name]["nullable"]
        if agg.input is not None:
            col = df[agg.input].iloc[order].reset_index(drop=True)
            x, ok = _values(col, kinds[agg.input])
        else:
            x, ok = None, np.ones(n, dtype=bool)
        if agg.op == "last":
            has_prev = pos > starts
            prev = np.maximum(pos - 1, 0)
            vals = x[prev] if n else x
            valid = has_prev & ok[prev] if n else has_prev
        else:
            lo = _window_start(t, starts, fs.windows[agg.window])
            hi = pos - 1 if agg.prior else pos  # inclusive end; hi < lo: empty
            vals, valid = _OPS[agg.op](x, ok, lo, hi, starts, agg)
        out[agg.name] = _column(vals, valid, dtype, nullable)
    res = pd.DataFrame(out)
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = pos
    return res.iloc[inverse].reset_index(drop=True)


def _window_start(t, starts, w):
    """Per row, the first index of its key group with time > t - w (the window's open lower end)."""
    lo = np.empty(len(t), dtype=np.int64)
    bounds = np.flatnonzero(np.r_[True, starts[1:] != starts[:-1]]) if len(t) else []
    ends = list(bounds[1:]) + [len(t)]
    for b, e in zip(bounds, ends):
        lo[b:e] = b + np.searchsorted(t[b:e], t[b:e] - w, side="right")
    return lo


def _lags(lo, hi, newest_first=True):
    """Yield (rows, j): for each lag, the rows whose window still reaches back that far and the
    index j of that window member; newest to oldest (or oldest to newest)."""
    span = hi - lo + 1
    most = int(span.max()) if len(span) else 0
    ks = range(most) if newest_first else range(most - 1, -1, -1)
    for k in ks:
        rows = np.flatnonzero(span > k)
        if newest_first:
            yield rows, hi[rows] - k
        else:
            # oldest first: lag k counted from the window's start, for rows long enough
            yield rows, lo[rows] + (span[rows] - 1 - k)


def _count(x, ok, lo, hi, starts, agg):
    n = np.maximum(hi - lo + 1, 0)
    return n, n >= agg.min_count


def _nonnull_count(ok, lo, hi):
    n = np.zeros(len(lo), dtype=np.int64)
    for rows, j in _lags(lo, hi):
        n[rows] += ok[j]
    return n


def _sum_newest_first(x, ok, lo, hi, agg):
    """The exact sum: e's own value first (when included), then prior values newest to oldest."""
    acc = np.zeros(len(lo), dtype=np.float64)
    xs = x.astype(np.float64)
    for k, (rows, j) in enumerate(_lags(lo, hi)):
        take = ok[j]
        r = rows[take]
        if k == 0 and not agg.prior:
            acc[r] = xs[j[take]]  # e's own value is the start (not 0.0 + it: keeps a -0.0)
        else:
            acc[r] = acc[r] + xs[j[take]]
    return acc


def _sum(x, ok, lo, hi, starts, agg):
    cnt = _nonnull_count(ok, lo, hi)
    return _sum_newest_first(x, ok, lo, hi, agg), cnt >= agg.min_count


def _mean(x, ok, lo, hi, starts, agg):
    cnt = _nonnull_count(ok, lo, hi)
    s = _sum_newest_first(x, ok, lo, hi, agg)
    with np.errstate(invalid="ignore", divide="ignore"):
        return s / cnt, cnt >= agg.min_count


def _std_pop(x, ok, lo, hi, starts, agg):
    mean, valid = _mean(x, ok, lo, hi, starts, agg)
    cnt = _nonnull_count(ok, lo, hi)
    xs = x.astype(np.float64)
    sq = np.zeros(len(lo), dtype=np.float64)
    first = np.full(len(lo), np.nan)
    equal = np.ones(len(lo), dtype=bool)
    for rows, j in _lags(lo, hi, newest_first=False):
        take = ok[j]
        r, jj = rows[take], j[take]
        fresh = np.isnan(first[r])
        first[r[fresh]] = xs[jj[fresh]]
        equal[r] &= xs[jj] == first[r]
        d = xs[jj] - mean[r]
        sq[r] = sq[r] + d * d
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(sq / cnt)
    return np.where(equal, 0.0, std), valid


def _extreme(fn):
    def op(x, ok, lo, hi, starts, agg):
        acc = np.zeros(len(lo), dtype=x.dtype)
        seen = np.zeros(len(lo), dtype=bool)
        for rows, j in _lags(lo, hi):
            take = ok[j]
            r, jj = rows[take], j[take]
            acc[r] = np.where(seen[r], fn(acc[r], x[jj]), x[jj])
            seen[r] = True
        return acc, _nonnull_count(ok, lo, hi) >= agg.min_count
    return op


def _distinct_count(x, ok, lo, hi, starts, agg):
    # A window member j counts when no later member of the same window holds an equal value:
    # nxt[j] = the next row of j's key group with an equal value (groups are contiguous).
    n = len(lo)
    nxt = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    later: dict = {}
    for j in range(n - 1, -1, -1):
        if ok[j]:
            k = (int(starts[j]), x[j])
            if k in later:
                nxt[j] = later[k]
            later[k] = j
    cnt = np.zeros(n, dtype=np.int64)
    for rows, j in _lags(lo, hi):
        cnt[rows] += ok[j] & (nxt[j] > hi[rows])
    return cnt, cnt >= agg.min_count


def _first_seen(x, ok, lo, hi, starts, agg):
    seen = np.zeros(len(lo), dtype=bool)
    for rows, j in _lags(lo, hi):
        take = ok[j] & ok[rows]
        r = rows[take]
        seen[r] |= x[j[take]] == x[r]
    return ~seen, ok.copy()


_OPS = {"count": _count, "sum": _sum, "mean": _mean, "std_pop": _std_pop,
        "min": _extreme(np.minimum), "max": _extreme(np.maximum),
        "distinct_count": _distinct_count, "first_seen": _first_seen}


def _column(vals, valid, dtype, nullable):
    np_type = {"int64": "int64", "float64": "float64", "bool": "bool"}.get(dtype)
    if not nullable and bool(np.all(valid)):
        return vals.astype(np_type) if np_type else vals
    out = np.empty(len(vals), dtype=object)
    conv = {"int64": int, "float64": float, "bool": bool}.get(dtype, lambda v: v)
    for i in range(len(vals)):
        out[i] = conv(vals[i]) if valid[i] else None
    return out


def derived_inputs(fs, frame: pd.DataFrame, name: str):
    """The numpy array a Derived function gets for column ``name``: float64 with NaN for null
    (numbers and bools), object with None (strings)."""
    col = frame[name]
    kind = fs.declared[name]["dtype"] if name in fs.declared else \
        {f.name: f.type for f in fs.contract.all_fields}[name]
    if kind in ("string",):
        return col.to_numpy(dtype=object)
    return pd.to_numeric(col.astype(object).where(col.notna(), np.nan), errors="coerce").astype("float64").to_numpy()


def derive(fs, frame: pd.DataFrame) -> pd.DataFrame:
    """Add every Derived column of ``fs`` to a frame holding the contract fields and the
    aggregation columns; returns a new frame. NaN results are null (None in object columns)."""
    out = frame.copy()
    for it in fs.items:
        if not isinstance(it, Derived):
            continue
        args = [derived_inputs(fs, out, name) for name in it.inputs]
        with np.errstate(all="ignore"):
            res = np.asarray(it.fn(*args), dtype=np.float64)
        if res.shape != (len(out),):
            raise ValueError(f"derived {it.name}: returned shape {res.shape}, expected ({len(out)},)")
        valid = ~np.isnan(res)
        if not it.nullable and not bool(valid.all()):
            raise ValueError(f"derived {it.name}: null result but declared nullable=False")
        if it.dtype == "float64":
            vals = res
        elif it.dtype == "int64":
            vals = np.where(valid, res, 0).astype(np.int64)
        else:
            vals = np.where(valid, res, 0) != 0
        out[it.name] = _column(vals, valid, it.dtype, it.nullable)
    return out


def execute(fs, events: Frame) -> pd.DataFrame:
    """The set's output columns (identity columns, then its features) of every event, in the
    input's row order, with None for null."""
    df = _frame(events, fs).reset_index(drop=True)
    aggs = aggregate(fs, df)
    full = derive(fs, pd.concat([df, aggs], axis=1))
    return full[list(fs.output_columns)]
