"""Execute a feature declaration with pandas/numpy: the reference for the Flink engine.

``aggregate`` computes every ``Aggregation`` of a set over a frame of events, vectorized
across rows, following the arithmetic rules in ``features.declare.Aggregation`` to the bit, so
it equals the Java operator (jvm/engine) and ``CardHistory`` (tests/reference). ``derive`` runs the ``Derived``
functions; it is the very code the Flink job runs in its pandas UDF, so derived values cannot
drift between the two. ``execute`` = both, in the set's output columns.

Events are taken in (event_time, event_id) order per key, which is the `event-time` ordering
and the backfill's; in-order input gives the same in the `arrival` ordering.

How it stays exact and fast: sums are accumulated in the declared order (newest to oldest) one
lag at a time across all rows, so every row sees the same sequence of double additions as the
per-event engines; rows are laid out by window length (longest first) so the rows a lag still
reaches are a contiguous prefix, block by block (whole keys, about BLOCK_ROWS rows) so a block's
values stay in the CPU's cache. Counts, distinct counts, first-seen and "all values equal" are
integer questions and are answered with prefix sums and "previous equal value" indices instead.

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

from features.declare import EXP_COEFFS, LN2_NEG, MAX_DECAY_HALF_LIVES, Aggregation, Derived

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


class _Strings:
    """A string input in the sorted order: its value codes at once (factorized in the input order, so
    no string is moved), the values themselves only if an op asks for them."""

    def __init__(self, col: pd.Series, order: np.ndarray):
        self.col, self.order = col, order
        codes, uniques = pd.factorize(col)  # null: -1; equal strings (code points), one code
        self.codes = codes.astype(np.int64)[order]
        self.n_codes = len(uniques)
        self._values = None

    @property
    def values(self) -> np.ndarray:
        if self._values is None:
            self._values = self.col.iloc[self.order].to_numpy(dtype=object)
        return self._values

    def __getitem__(self, idx):
        return self.values[idx]


def key_codes(df: pd.DataFrame, keys) -> np.ndarray:
    """One int64 code per row, equal exactly where the rows are equal in every key field."""
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    codes, _ = pd.factorize(df[keys[0]])
    codes = codes.astype(np.int64)
    for k in keys[1:]:
        more, uniq = pd.factorize(df[k])
        codes, _ = pd.factorize(codes * (len(uniq) + 1) + more.astype(np.int64))
        codes = codes.astype(np.int64)
    return codes


def _sort_order(codes: np.ndarray, times: np.ndarray, ids: pd.Series):
    """(order, group codes in sorted order): rows by (key, event_time, event_id).

    Keys (``key_codes``) are grouped by equality only (results do not depend on the order of the
    keys); inside a key, an integer sort on time, then ties of (key, time) sorted by Python's
    comparison of the ids (code-point order), stable, so equal ids keep their input order.
    """
    order = np.lexsort((times, codes))  # stable
    n = len(order)
    if n > 1:
        cs, ts = codes[order], times[order]
        tie = (cs[1:] == cs[:-1]) & (ts[1:] == ts[:-1])
        if tie.any():
            in_tie = np.r_[tie, False] | np.r_[False, tie]
            grp = np.cumsum(np.r_[True, ~tie])
            sub = np.flatnonzero(in_tie)
            rows = order[sub]
            g = grp[sub].tolist()
            idv = ids.iloc[rows].tolist()
            perm = sorted(range(len(sub)), key=lambda i: (g[i], idv[i]))
            order[sub] = rows[np.asarray(perm, dtype=np.int64)]
    return order.astype(np.int64), codes[order]


# Rows per block of the lag loops: a block's values, sums and indices stay in the CPU's cache.
BLOCK_ROWS = 32_768


class _Layout:
    """Sorted rows and what the ops share: group starts, window starts, per-window lag layouts,
    per-input values and "previous equal value" indices (computed once each).

    The sorted rows are cut into blocks of whole groups (about BLOCK_ROWS rows): no window crosses
    a group, so a block's windows read only the block, and the lag loops run block by block."""

    def __init__(self, group_codes: np.ndarray, t: np.ndarray):
        n = len(t)
        self.n = n
        self.t = t
        self.pos = np.arange(n, dtype=np.int64)
        new_group = np.ones(n, dtype=bool)
        if n:
            new_group[1:] = group_codes[1:] != group_codes[:-1]
        self.gid = np.cumsum(new_group) - 1  # dense group number, non-decreasing
        self.starts = np.maximum.accumulate(np.where(new_group, self.pos, 0)) if n else self.pos
        group_starts = np.flatnonzero(new_group)
        cuts = np.zeros(0, dtype=np.int64)
        if n > BLOCK_ROWS:  # the first group start at or after each multiple of BLOCK_ROWS
            idx = np.searchsorted(group_starts, np.arange(BLOCK_ROWS, n, BLOCK_ROWS))
            cuts = group_starts[idx[idx < len(group_starts)]]
        bounds = np.unique(np.r_[0, cuts, n]).tolist()
        self.blocks = list(zip(bounds[:-1], bounds[1:]))
        self._lo, self._lags, self._prev, self._cache = {}, {}, {}, {}

    def lo(self, w: int) -> np.ndarray:
        """Per row, the first index of its group with time > t - w (the window's open lower end)."""
        if w not in self._lo:
            self._lo[w] = _window_start(self.gid, self.t, self.starts, w, self.blocks)
        return self._lo[w]

    def lags(self, w: int, prior: bool) -> list:
        """Per block, (R, hiR, ck) for the window [lo, hi]: R orders the block's rows by span, longest
        first (stable), hiR = hi[R], ck[k] = how many of them have span > k (they are R[:ck[k]])."""
        key = (w, prior)
        if key not in self._lags:
            lo = self.lo(w)
            hi = self.pos - 1 if prior else self.pos
            span = np.maximum(hi - lo + 1, 0)
            out = []
            for a, b in self.blocks:
                sp = span[a:b]
                most = int(sp.max()) if b > a else 0
                neg = -sp.astype(np.int16) if most < 2 ** 15 else -sp  # small ints: numpy's radix sort
                R = a + np.argsort(neg, kind="stable")
                ck = (b - a) - np.cumsum(np.bincount(sp, minlength=most + 1))[:most] if most else np.zeros(0, np.int64)
                out.append((R, hi[R], ck))
            self._lags[key] = out
        return self._lags[key]

    def prev_equal(self, name: str, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """Per row, the index of the previous row of its group with an equal, non-null value (-1: none);
        -1 for null rows. Equality is Python's (strings), or numeric with -0.0 == 0.0."""
        if name not in self._prev:
            if isinstance(x, _Strings):
                codes, n_codes = x.codes, x.n_codes
            else:
                vals = x + 0.0 if x.dtype.kind == "f" else x  # -0.0 and 0.0 are one value
                codes, uniques = pd.factorize(vals)
                codes, n_codes = codes.astype(np.int64), len(uniques)
            prev = np.full(self.n, -1, dtype=np.int64)
            use = ok & (codes >= 0)
            rows = np.flatnonzero(use)
            if len(rows):
                combo = self.gid[rows] * (n_codes + 1) + codes[rows]
                srt = np.argsort(combo, kind="stable")  # equal (group, value): positions ascending
                cs, rs = combo[srt], rows[srt]
                same = np.r_[False, cs[1:] == cs[:-1]]
                prev[rs[same]] = rs[np.flatnonzero(same) - 1]
            self._prev[name] = prev
        return self._prev[name]

    def cached(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


def aggregate(fs, events: Frame) -> pd.DataFrame:
    """The aggregation columns (hidden ones included) of every event, in the input's row order.

    Columns hold Python-comparable values: int64/float64/bool numpy dtypes where no null is
    possible, else object columns with None for null.
    """
    df = _frame(events, fs)
    return pd.DataFrame({name: _column(vals, valid, fs.declared[name]["dtype"], fs.declared[name]["nullable"])
                         for name, (vals, valid) in aggregate_arrays(fs, df).items()}, index=range(len(df)))


def aggregate_arrays(fs, df: pd.DataFrame) -> dict:
    """Per aggregation name, (values, valid) numpy arrays in ``df``'s row order (values of invalid
    rows are arbitrary): what ``aggregate`` puts into columns."""
    n = len(df)
    kinds = {c["name"]: c["type"] for c in fs.engine_spec()["columns"]}
    times = df["event_time"].astype("int64").to_numpy()
    order, group_codes = _sort_order(key_codes(df, fs.keys), times, df["event_id"])
    lay = _Layout(group_codes, times[order])
    pos, starts = lay.pos, lay.starts
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = pos

    def column(name):
        def make():
            if kinds[name] == "string":
                x = _Strings(df[name], order)
                return x, x.codes >= 0
            return _values(df[name].iloc[order].reset_index(drop=True), kinds[name])
        return lay.cached(("col", name), make)

    out = {}
    for agg in (it for it in fs.items if isinstance(it, Aggregation)):
        if agg.input is not None:
            x, ok = column(agg.input)
        else:
            x, ok = None, np.ones(n, dtype=bool)
        if agg.op == "last":
            has_prev = pos > starts
            prev = np.maximum(pos - 1, 0)
            vals = x[prev] if n else x
            valid = has_prev & ok[prev] if n else has_prev
        else:
            vals, valid = _OPS[agg.op](lay, agg, fs.windows[agg.window], x, ok)
        out[agg.name] = (vals[inverse], valid[inverse])
    return out


def _window_start(gid, t, starts, w, blocks):
    """First index of each row's group with time > t - w; a search over (group, time) keys, block by
    block (a block holds whole groups, so every answer lies in the row's own block)."""
    n = len(t)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rel = t - t.min()
    span = int(rel.max()) + 2
    if (int(gid[-1]) + 1) * span < 2 ** 62 and w < 2 ** 62:
        key = gid * span + rel
        q = gid * span + np.maximum(rel - w, -1)
        lo = np.empty(n, dtype=np.int64)
        for a, b in blocks:
            lo[a:b] = a + np.searchsorted(key[a:b], q[a:b], side="right")
        return lo
    lo = np.empty(n, dtype=np.int64)  # a time span too wide for one key: group by group
    bounds = np.flatnonzero(np.r_[True, starts[1:] != starts[:-1]])
    for b, e in zip(bounds, list(bounds[1:]) + [n]):
        lo[b:e] = b + np.searchsorted(t[b:e], t[b:e] - w, side="right")
    return lo


def _window(lay, agg, w):
    lo = lay.lo(w)
    return lo, (lay.pos - 1 if agg.prior else lay.pos)


def _nonnull_count(lay, agg, w, ok):
    def make():
        lo, hi = _window(lay, agg, w)
        if ok.all():
            return np.maximum(hi - lo + 1, 0)
        c = np.r_[0, np.cumsum(ok, dtype=np.int64)]
        return np.maximum(c[hi + 1] - c[lo], 0)
    return lay.cached(("nonnull", agg.input, w, agg.prior), make)


def _count(lay, agg, w, x, ok):
    lo, hi = _window(lay, agg, w)
    n = np.maximum(hi - lo + 1, 0)
    return n, n >= agg.min_count


def _sum_newest_first(lay, agg, w, x, ok):
    """The exact sum: e's own value first (when included), then prior values newest to oldest."""
    def make():
        xs = x.astype(np.float64)
        all_ok = bool(ok.all())
        res = np.zeros(lay.n, dtype=np.float64)
        for R, hiR, ck in lay.lags(w, agg.prior):
            acc = np.zeros(len(R), dtype=np.float64)  # in R order
            for k, c in enumerate(ck.tolist()):
                a, v = acc[:c], xs[hiR[:c] - k]
                own = k == 0 and not agg.prior  # e's own value is the start (not 0.0 + it: keeps a -0.0)
                if all_ok:
                    if own:
                        a[:] = v
                    else:
                        a += v
                else:
                    take = ok[hiR[:c] - k]
                    if own:
                        np.copyto(a, v, where=take)
                    else:
                        np.add(a, v, out=a, where=take)
            res[R] = acc
        return res
    return lay.cached(("sum", agg.input, w, agg.prior), make)


def _sum(lay, agg, w, x, ok):
    return _sum_newest_first(lay, agg, w, x, ok), _nonnull_count(lay, agg, w, ok) >= agg.min_count


def _mean_values(lay, agg, w, x, ok):
    def make():
        cnt = _nonnull_count(lay, agg, w, ok)
        with np.errstate(invalid="ignore", divide="ignore"):
            return _sum_newest_first(lay, agg, w, x, ok) / cnt
    return lay.cached(("mean", agg.input, w, agg.prior), make)


def _mean(lay, agg, w, x, ok):
    return _mean_values(lay, agg, w, x, ok), _nonnull_count(lay, agg, w, ok) >= agg.min_count


def decay_weights(gap_ms: np.ndarray, half_life_ms: int) -> np.ndarray:
    """``features.declare.decay_weight`` of every gap, vectorized with the same IEEE operations in
    the same order (numpy never fuses a multiply and an add), so the bits are the same."""
    y = gap_ms.astype(np.float64) / float(half_life_ms)
    with np.errstate(all="ignore"):
        n = np.floor(y + 0.5)
        z = (y - n) * LN2_NEG
        p = np.full(len(y), EXP_COEFFS[13])
        for c in EXP_COEFFS[12::-1]:
            p *= z
            p += c
        far = ~(y <= MAX_DECAY_HALF_LIVES)
        w = np.ldexp(p, -np.where(far, 0, n).astype(np.int64))
    w[far] = 0.0
    return w


def _ewma(lay, agg, w, x, ok):
    """num / den over the window newest to oldest, chained weights (features.declare, ewma)."""
    xs = x.astype(np.float64)
    t = lay.t
    # per row: the decay from its next newer non-null value of the group (unused for the newest)
    nxt = np.full(lay.n, -1, dtype=np.int64)
    rows = np.flatnonzero(ok)
    if len(rows) > 1:
        same = lay.gid[rows[1:]] == lay.gid[rows[:-1]]
        nxt[rows[:-1][same]] = rows[1:][same]
    has = nxt >= 0
    g = np.zeros(lay.n, dtype=np.float64)
    g[has] = decay_weights(t[nxt[has]] - t[has], agg.half_life_ms)
    all_ok = bool(ok.all())
    num_all = np.zeros(lay.n, dtype=np.float64)
    den_all = np.zeros(lay.n, dtype=np.float64)
    for R, hiR, ck in lay.lags(w, agg.prior):
        num = np.zeros(len(R), dtype=np.float64)  # in R order
        den = np.zeros(len(R), dtype=np.float64)
        wt = np.ones(len(R), dtype=np.float64)
        seen = np.zeros(len(R), dtype=bool)
        for k, c in enumerate(ck.tolist()):
            j = hiR[:c] - k
            v, a, d, ww = xs[j], num[:c], den[:c], wt[:c]
            if all_ok:
                if k:
                    ww *= g[j]
                a += ww * v
                d += ww
            else:
                take, s = ok[j], seen[:c]
                np.multiply(ww, g[j], out=ww, where=take & s)  # the newest value keeps w = 1.0
                np.add(a, ww * v, out=a, where=take)
                np.add(d, ww, out=d, where=take)
                s |= take
        num_all[R], den_all[R] = num, den
    with np.errstate(invalid="ignore", divide="ignore"):
        vals = num_all / den_all
    return vals, _nonnull_count(lay, agg, w, ok) >= agg.min_count


def _all_equal(lay, agg, w, x, ok):
    """Per row: are the non-null values of its window all equal (no value: True)? Consecutive
    non-null values inside the window never differ."""
    lo, hi = _window(lay, agg, w)
    c = np.r_[0, np.cumsum(ok, dtype=np.int64)]
    a, b = c[lo], c[np.maximum(hi + 1, lo)]  # the window's run [a, b) of the non-null values
    xo = x[ok].astype(np.float64)
    change = np.zeros(len(xo), dtype=np.int64)
    if len(xo) > 1:
        change[1:] = xo[1:] != xo[:-1]
    z = np.r_[0, np.cumsum(change)]
    inner = np.where(b > a, z[b] - z[np.minimum(a + 1, b)], 0)
    return inner == 0


def _std_pop(lay, agg, w, x, ok):
    mean = _mean_values(lay, agg, w, x, ok)
    valid = _nonnull_count(lay, agg, w, ok) >= agg.min_count
    cnt = _nonnull_count(lay, agg, w, ok)
    xs = x.astype(np.float64)
    all_ok = bool(ok.all())
    res = np.zeros(lay.n, dtype=np.float64)
    for R, hiR, ck in lay.lags(w, agg.prior):
        meanR = mean[R]
        sq = np.zeros(len(R), dtype=np.float64)  # in R order
        for k in range(len(ck) - 1, -1, -1):  # oldest to newest: lag k reaches the rows with span > k
            c = int(ck[k])
            j = hiR[:c] - k
            d = xs[j]
            d -= meanR[:c]
            d *= d
            s = sq[:c]
            if all_ok:
                s += d
            else:
                np.add(s, d, out=s, where=ok[j])
        res[R] = sq
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(res / cnt)
    return np.where(_all_equal(lay, agg, w, x, ok), 0.0, std), valid


def _extreme(fn):
    def op(lay, agg, w, x, ok):
        res = np.zeros(lay.n, dtype=x.dtype)
        for R, hiR, ck in lay.lags(w, agg.prior):
            acc = np.zeros(len(R), dtype=x.dtype)
            seen = np.zeros(len(R), dtype=bool)
            for k, c in enumerate(ck.tolist()):
                j = hiR[:c] - k
                a, s, v, take = acc[:c], seen[:c], x[j], ok[j]
                np.copyto(a, np.where(s, fn(a, v), v), where=take)
                s |= take
            res[R] = acc
        return res, _nonnull_count(lay, agg, w, ok) >= agg.min_count
    return op


def _distinct_count(lay, agg, w, x, ok):
    # Count each window's first occurrences: j counts for row r when j is in r's window and the
    # previous equal value prev[j] lies before the window's start. lo is non-decreasing over the
    # sorted rows, so the rows j counts for form one run [a_j, b_j]: a difference array.
    # Both searches stay in the block of j (whole groups): a window never reaches another group.
    n = lay.n
    lo = lay.lo(w)
    prev = lay.prev_equal(agg.input, x, ok)
    j = np.flatnonzero(ok)
    first, last = np.empty(len(j), dtype=np.int64), np.empty(len(j), dtype=np.int64)
    for a0, b0 in lay.blocks:
        s0, s1 = np.searchsorted(j, [a0, b0])
        blo = lo[a0:b0]
        first[s0:s1] = a0 + np.searchsorted(blo, prev[j[s0:s1]], side="right")
        last[s0:s1] = a0 + np.searchsorted(blo, j[s0:s1], side="right") - 1  # the last row whose window starts <= j
    a = np.maximum(j + (1 if agg.prior else 0), first)
    keep = a <= last
    a, b = a[keep], last[keep]
    diff = np.bincount(a, minlength=n + 1) - np.bincount(b + 1, minlength=n + 1)
    cnt = np.cumsum(diff[:n]).astype(np.int64)
    return cnt, cnt >= agg.min_count


def _first_seen(lay, agg, w, x, ok):
    lo, hi = _window(lay, agg, w)
    prev = lay.prev_equal(agg.input, x, ok)
    seen = ok & (prev >= lo) & (prev <= hi)
    return ~seen, ok.copy()


_OPS = {"count": _count, "sum": _sum, "mean": _mean, "std_pop": _std_pop,
        "min": _extreme(np.minimum), "max": _extreme(np.maximum),
        "distinct_count": _distinct_count, "first_seen": _first_seen, "ewma": _ewma}


def _column(vals, valid, dtype, nullable):
    np_type = {"int64": "int64", "float64": "float64", "bool": "bool"}.get(dtype)
    if not nullable and bool(np.all(valid)):
        return vals.astype(np_type) if np_type else vals
    out = (vals.astype(np_type) if np_type else vals).astype(object)  # Python int/float/bool scalars
    out[~np.asarray(valid, dtype=bool)] = None
    return out


def derived_inputs(fs, frame: pd.DataFrame, name: str):
    """The numpy array a Derived function gets for column ``name``: float64 with NaN for null
    (numbers and bools), object with None (strings)."""
    col = frame[name]
    kind = fs.declared[name]["dtype"] if name in fs.declared else \
        {f.name: f.type for f in fs.contract.all_fields}[name]
    if kind in ("string",):
        return col.to_numpy(dtype=object)
    if col.dtype.kind in "iufb" or isinstance(col.dtype, (pd.Int64Dtype, pd.Float64Dtype, pd.BooleanDtype)):
        # a typed column: the same float64 values pd.to_numeric gives, without a pass over objects
        return np.array(col.to_numpy(dtype="float64", na_value=np.nan), dtype=np.float64, copy=True)
    if col.dtype == object:
        v = col.to_numpy()
        plain = v[pd.notna(v)]
        if len(plain) == 0 or set(map(type, plain.tolist())) <= {int, float, bool}:
            return np.array(v, dtype=np.float64)  # None -> NaN, numbers as float() makes them
    return pd.to_numeric(col.astype(object).where(col.notna(), np.nan), errors="coerce").astype("float64").to_numpy()


def _as_input(vals, valid, dtype: str) -> np.ndarray:
    """What derived_inputs reads from a column ``_column(vals, valid, dtype, ...)`` would hold."""
    if dtype == "string":
        out = np.asarray(vals, dtype=object).copy()
        out[~valid] = None
        return out
    return np.where(valid, vals.astype(np.float64), np.nan)


def _derived(fs, inputs, n: int, computed=None) -> dict:
    """Per Derived item, (values, valid) over ``n`` rows. ``inputs(name)``: the array for a name that
    ``computed`` ({name: (values, valid)}, e.g. aggregations) does not hold; earlier derived results
    are inputs as their columns would give them."""
    done = dict(computed or {})
    out = {}

    def arg(name):
        if name in done:
            vals, valid = done[name]
            return _as_input(vals, valid, fs.declared[name]["dtype"])
        return inputs(name)

    for it in fs.items:
        if not isinstance(it, Derived):
            continue
        args = [arg(name) for name in it.inputs]
        with np.errstate(all="ignore"):
            res = np.asarray(it.fn(*args), dtype=np.float64)
        if res.shape != (n,):
            raise ValueError(f"derived {it.name}: returned shape {res.shape}, expected ({n},)")
        valid = ~np.isnan(res)
        if not it.nullable and not bool(valid.all()):
            raise ValueError(f"derived {it.name}: null result but declared nullable=False")
        if it.dtype == "float64":
            vals = res
        elif it.dtype == "int64":
            vals = np.where(valid, res, 0).astype(np.int64)
        else:
            vals = np.where(valid, res, 0) != 0
        done[it.name] = out[it.name] = (vals, valid)
    return out


def derive(fs, frame: pd.DataFrame) -> pd.DataFrame:
    """Add every Derived column of ``fs`` to a frame holding the contract fields and the
    aggregation columns; returns a new frame. NaN results are null (None in object columns)."""
    out = frame.copy(deep=False)  # new columns go to the copy only; existing ones are not written
    for name, (vals, valid) in _derived(fs, lambda nm: derived_inputs(fs, frame, nm), len(frame)).items():
        out[name] = _column(vals, valid, fs.declared[name]["dtype"], fs.declared[name]["nullable"])
    return out


def feature_arrays(fs, events: Frame) -> dict:
    """Per feature of ``fs`` (output order), (values, valid) numpy arrays in the events' row order:
    the values ``execute`` puts into its columns, before they become Python objects."""
    df = _frame(events, fs).reset_index(drop=True)
    aggs = aggregate_arrays(fs, df)
    derived = _derived(fs, lambda nm: derived_inputs(fs, df, nm), len(df), aggs)
    return {name: aggs[name] if name in aggs else derived[name] for name in fs.feature_names}


def execute(fs, events: Frame) -> pd.DataFrame:
    """The set's output columns (identity columns, then its features) of every event, in the
    input's row order, with None for null."""
    df = _frame(events, fs).reset_index(drop=True)
    out = {c: df[c] for c in fs.passthrough}
    for name, (vals, valid) in feature_arrays(fs, df).items():
        out[name] = _column(vals, valid, fs.declared[name]["dtype"], fs.declared[name]["nullable"])
    return pd.DataFrame(out)
