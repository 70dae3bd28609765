"""An independent, vectorised pandas/numpy implementation of the fraud feature contract.

This is the *check* on ``features.fraud`` (and the pandas baseline of the throughput
benchmark): it is written from the contract text alone, with a different design from the
per-event ``CardHistory``.  The contract, restated:

Per card, events are ordered by ``(event_time, event_id)``.  For an event e at time t,
"window W" means the same card's events with ``t - W < event_time <= t`` that are at or
before e in that order (e included); "prior" means strictly before e.

Design (all per card, but vectorised over every card at once):

* one stable sort by ``(card_id, event_time, event_id)``; a card is then a contiguous
  block ``[card_start, card_end)`` and "at or before e in the order" is "index <= i";
* window starts by ``numpy.searchsorted`` on a composite ``card * S + time`` key, so one
  call finds, for every event, the first index of its card with ``time > t - W``;
* counts are index differences; sums, means and variances come from per-card cumulative
  sums (amounts centred on a per-card reference for the variance).  Each window's
  rounding error is bounded from the prefix magnitudes; windows whose bound is not
  comfortably below 1e-11 relative are recomputed directly from their slice (sum, then
  two-pass variance), and a window whose amounts are all equal gets a variance of exactly 0;
* previous-event features by a shift inside the card;
* "previous occurrence of the same merchant (device) in the card" by a stable sort on a
  ``(card, merchant)`` code, which gives first-seen as ``prev_same < window_start`` and the
  distinct-merchant count by a difference array (each event adds 1 to the contiguous run
  of later events whose window starts after that merchant's previous occurrence).

Output rows are in **input order**, carrying the input frame's index, so
``reference_features(df)`` lines up with ``df`` row by row.

>>> import pandas as pd
>>> df = pd.DataFrame(dict(event_id=["b", "a"], event_time=[3_600_000, 0], card_id="c",
...                        merchant_id="m1", amount=[30.0, 10.0], lat=0.0, lon=0.0,
...                        device_id=[None, "d1"]))
>>> out = reference_features(df)
>>> out[["event_id", "txn_count_1h", "txn_count_24h", "amount_mean_30d"]].values.tolist()
[['b', 1, 2, 10.0], ['a', 1, 1, nan]]
>>> out["device_first_seen"].tolist(), out["merchant_first_seen"].tolist()
([None, True], [False, True])

Never imports Flink.
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np
import pandas as pd

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
W_1H, W_24H, W_7D, W_30D = HOUR_MS, DAY_MS, 7 * DAY_MS, 30 * DAY_MS
EARTH_RADIUS_KM = 6371.0088
MIN_SECS_FOR_SPEED = 60.0

INPUT_COLUMNS = ("event_id", "event_time", "card_id", "merchant_id", "amount", "lat", "lon", "device_id")
OUTPUT_COLUMNS = (
    "event_id", "card_id", "event_time",
    "txn_count_1h", "txn_count_24h", "txn_count_7d",
    "amount_sum_1h", "amount_sum_24h",
    "amount_mean_30d", "amount_std_30d", "amount_zscore_30d",
    "secs_since_prev", "km_from_prev", "kmh_from_prev",
    "distinct_merchants_24h", "merchant_first_seen", "device_first_seen",
)

_EPS = np.finfo(np.float64).eps
# Windows whose estimated relative rounding error exceeds this are recomputed directly.
_REL_TOL = 1e-11
# Rows per chunk when windows are expanded element by element (bounds the memory used).
_EXPAND_CHUNK = 4_000_000


# --------------------------------------------------------------------------- helpers

def _window_starts(card: np.ndarray, t: np.ndarray, w: int) -> np.ndarray:
    """For each sorted event i: the first index j of i's card with t[j] > t[i] - w.

    ``card`` (dense codes, non-decreasing) and ``t`` are sorted by (card, time).  One
    ``searchsorted`` on the composite key ``card * S + (t - tmin)``, with S larger than the
    time span, searches all cards at once; the query is clipped at the card's own range so
    it can never land in the previous card.
    """
    n = len(t)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rel = t - t.min()
    span = int(rel.max()) + 2
    ncards = int(card.max()) + 1
    if ncards * span < 2**62:
        key = card * span + rel
        q = card * span + np.maximum(rel - w, -1)
        return np.searchsorted(key, q, side="right").astype(np.int64)
    # Composite key would overflow int64 (absurd time span): search card by card.
    out = np.empty(n, dtype=np.int64)
    bounds = np.append(np.flatnonzero(np.r_[True, card[1:] != card[:-1]]), n)
    for a, b in zip(bounds[:-1], bounds[1:]):
        out[a:b] = a + np.searchsorted(t[a:b], t[a:b] - w, side="right")
    return out


def _sort_order(card_codes: np.ndarray, t: np.ndarray, event_id: np.ndarray) -> np.ndarray:
    """Row order by (card, event_time, event_id).

    Integer lexsort on (card, time) first; event ids (strings, compared by code point as
    Python and pandas do) are only sorted inside groups of equal (card, time).
    """
    order = np.lexsort((t, card_codes))
    if len(order) < 2:
        return order
    cs, ts = card_codes[order], t[order]
    tie = (cs[1:] == cs[:-1]) & (ts[1:] == ts[:-1])
    if tie.any():
        in_tie = np.r_[tie, False] | np.r_[False, tie]
        grp = np.cumsum(np.r_[True, ~tie])
        sub = np.flatnonzero(in_tie)
        rows = order[sub]
        perm = (pd.DataFrame({"g": grp[sub], "e": event_id[rows]})
                .sort_values(["g", "e"], kind="mergesort").index.to_numpy())
        order[sub] = rows[perm]
    return order


def _card_cumsum(x: np.ndarray, card: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum of ``x`` restarting at every card, as an exclusive prefix
    array ``P`` of length n + 1: ``P[k]`` is the sum of x over k-1's card up to and including k-1.

    Sum over ``x[a:b]`` (a, b in one card, a < b) is ``P[b] - P[a]`` with ``P[a]`` taken as 0
    where ``a`` is the card's start (see ``_range_sum``).  Restarting per card keeps the
    rounding error proportional to the card's own magnitudes, not the whole data set's.
    """
    c = pd.Series(x).groupby(card, sort=False).cumsum().to_numpy()
    return np.concatenate(([0.0], c))


def _range_sum(P: np.ndarray, a: np.ndarray, b: np.ndarray, card_start_of_a: np.ndarray) -> np.ndarray:
    """sum x[a:b] from the per-card prefix array P (0 where a == b)."""
    hi = P[b]
    lo = np.where(a == card_start_of_a, 0.0, P[a])
    return np.where(b > a, hi - lo, 0.0)


def _expand(a: np.ndarray, b: np.ndarray):
    """Flat element indices of the ranges [a_k, b_k) and the range number of each element."""
    lens = b - a
    owner = np.repeat(np.arange(len(a)), lens)
    offs = np.arange(owner.size) - np.repeat(np.cumsum(lens) - lens, lens)
    return a[owner] + offs, owner


def _direct_sum(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum x[a_k:b_k] computed from the slices themselves (no prefix differences)."""
    out = np.zeros(len(a))
    # Chunk by total expanded length.
    lens = b - a
    k = 0
    while k < len(a):
        stop = k + max(1, int(np.searchsorted(np.cumsum(lens[k:]), _EXPAND_CHUNK)))
        idx, owner = _expand(a[k:stop], b[k:stop])
        out[k:stop] = np.bincount(owner, weights=x[idx], minlength=stop - k)
        k = stop
    return out


def _direct_mean_var(x: np.ndarray, a: np.ndarray, b: np.ndarray):
    """Two-pass mean and population variance of x[a_k:b_k] (b_k > a_k) from the slices."""
    mean = np.zeros(len(a))
    var = np.zeros(len(a))
    lens = b - a
    k = 0
    while k < len(a):
        stop = k + max(1, int(np.searchsorted(np.cumsum(lens[k:]), _EXPAND_CHUNK)))
        idx, owner = _expand(a[k:stop], b[k:stop])
        n = lens[k:stop].astype(np.float64)
        vals = x[idx]
        m = np.bincount(owner, weights=vals, minlength=stop - k) / n
        d = vals - m[owner]
        # Two-pass with the usual correction term (sum of deviations is ~0 but not exactly).
        s1 = np.bincount(owner, weights=d, minlength=stop - k)
        s2 = np.bincount(owner, weights=d * d, minlength=stop - k)
        mean[k:stop] = m + s1 / n
        var[k:stop] = np.maximum(s2 / n - (s1 / n) ** 2, 0.0)
        k = stop
    return mean, var


def _careful_window_sum(x, P, A, a, b, card_start_i, pos_in_card_end):
    """Window sums sum(x[a:b]) by prefix differences, recomputed from the slice where the
    error bound (2 * m * eps * |prefix| with m terms accumulated) is not well below _REL_TOL."""
    s = _range_sum(P, a, b, card_start_i)
    bound = 2.0 * (pos_in_card_end + 1) * _EPS * A[b]
    bad = (b > a) & (bound > _REL_TOL * np.abs(s))
    if bad.any():
        s[bad] = _direct_sum(x, a[bad], b[bad])
    return s


def _prev_same(card: np.ndarray, values: pd.Series, valid: Optional[np.ndarray] = None) -> np.ndarray:
    """For sorted event i: index of the card's latest earlier event with the same value, else -1.

    Rows where ``valid`` is False (null values) neither get nor serve as a previous occurrence.
    """
    n = len(card)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    codes = codes.astype(np.int64)
    if valid is None:
        valid = codes >= 0
    nv = max(len(uniques), 1)
    key = card.astype(np.int64) * (nv + 1) + np.where(valid, codes, nv)
    order = np.argsort(key, kind="stable")  # stable: keeps the (time, id) order inside a key
    ks = key[order]
    same = ks[1:] == ks[:-1]
    prev = np.full(n, -1, dtype=np.int64)
    prev[order[1:][same]] = order[:-1][same]
    prev[~valid] = -1
    return prev


def _haversine_km(lat1, lon1, lat2, lon2):
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(lon2) - np.radians(lon1)
    h = np.sin(dphi / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


# --------------------------------------------------------------------------- the features

def reference_features(df: pd.DataFrame) -> pd.DataFrame:
    """Fraud features of every event in ``df``, per the contract, in input order.

    ``df`` holds the payment columns event_id, event_time (epoch ms, int), card_id,
    merchant_id, amount, lat, lon and device_id (nullable).  The result has the columns of
    ``FRAUD_FEATURES.output_columns``, one row per input row, in input order with the input's
    index.  int64 columns: the counts; float64 (NaN where null): sums, mean/std/zscore and the
    prev-event features; ``merchant_first_seen`` is bool; ``device_first_seen`` is object
    holding True / False / None (None where the event has no device).
    """
    missing = [c for c in INPUT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"missing input columns: {missing}")
    n = len(df)
    if df["event_id"].duplicated().any():
        raise ValueError("event_id must be unique (it breaks event_time ties)")

    # ---- sort by (card_id, event_time, event_id); `order[k]` = input row of sorted row k
    card_codes, _ = pd.factorize(df["card_id"], sort=False)
    ev_time = df["event_time"].to_numpy(dtype=np.int64)
    order = _sort_order(card_codes, ev_time, df["event_id"].to_numpy())

    card = card_codes[order].astype(np.int64)
    t = ev_time[order]
    amount = df["amount"].to_numpy(dtype=np.float64)[order]
    lat = df["lat"].to_numpy(dtype=np.float64)[order]
    lon = df["lon"].to_numpy(dtype=np.float64)[order]

    idx = np.arange(n, dtype=np.int64)
    new_card = np.r_[True, card[1:] != card[:-1]] if n else np.zeros(0, bool)
    card_start = np.maximum.accumulate(np.where(new_card, idx, 0)) if n else idx
    pos = idx - card_start  # 0-based position of the event inside its card

    # ---- window starts (first index inside the window, same card)
    s1h = _window_starts(card, t, W_1H)
    s24 = _window_starts(card, t, W_24H)
    s7d = _window_starts(card, t, W_7D)
    s30 = _window_starts(card, t, W_30D)
    end_incl = idx + 1  # windows with e included: [s, i]  -> [s, i+1)

    cnt_1h = end_incl - s1h
    cnt_24h = end_incl - s24
    cnt_7d = end_incl - s7d

    # ---- amount sums (e included), per-card prefix sums with a rounding-error guard
    P = _card_cumsum(amount, card)
    A = _card_cumsum(np.abs(amount), card)
    sum_1h = _careful_window_sum(amount, P, A, s1h, end_incl, card_start, pos)
    sum_24h = _careful_window_sum(amount, P, A, s24, end_incl, card_start, pos)

    # ---- 30-day mean / std over prior events: window [s30, i)
    n30 = (idx - s30).astype(np.int64)
    mean30 = np.full(n, np.nan)
    var30 = np.full(n, np.nan)
    has1 = n30 >= 1
    sum30 = _careful_window_sum(amount, P, A, s30, idx, card_start, np.maximum(pos - 1, 0))
    mean30[has1] = sum30[has1] / n30[has1]

    # Centre on a per-card reference (the card's median) before accumulating squares.
    ref = pd.Series(amount).groupby(card, sort=False).transform("median").to_numpy()
    y = amount - ref
    Py = _card_cumsum(y, card)
    Ay = _card_cumsum(np.abs(y), card)
    Pq = _card_cumsum(y * y, card)
    has2 = n30 >= 2
    a2, b2 = s30[has2], idx[has2]
    nn = n30[has2].astype(np.float64)
    S = _range_sum(Py, a2, b2, card_start[has2])
    Q = _range_sum(Pq, a2, b2, card_start[has2])
    v = Q / nn - (S / nn) ** 2
    # Error bound of v from the prefix magnitudes (m terms accumulated per prefix).
    m = pos[has2].astype(np.float64)
    err = (2.0 * m * _EPS * Pq[b2]) / nn + 2.0 * np.abs(S) / nn * (2.0 * m * _EPS * Ay[b2]) / nn \
        + 4.0 * _EPS * (Q / nn + (S / nn) ** 2)
    # A window whose amounts are all equal has variance exactly 0: detect it exactly by runs.
    run_start = np.maximum.accumulate(
        np.where(np.r_[True, (amount[1:] != amount[:-1]) | new_card[1:]] if n else new_card, idx, 0))
    constant = run_start[b2 - 1] <= a2
    bad = ~constant & ((v <= 0) | (err > _REL_TOL * v))
    if bad.any():
        _, v_direct = _direct_mean_var(amount, a2[bad], b2[bad])
        v[bad] = v_direct
    v[constant] = 0.0
    var30[has2] = np.maximum(v, 0.0)
    std30 = np.sqrt(var30)
    with np.errstate(divide="ignore", invalid="ignore"):
        z30 = np.where(std30 > 0, (amount - mean30) / std30, np.nan)

    # ---- previous event (any time ago)
    has_prev = ~new_card
    prev = np.where(has_prev, idx - 1, 0)
    secs = np.where(has_prev, (t - t[prev]) / 1000.0, np.nan)
    km = np.where(has_prev, _haversine_km(lat[prev], lon[prev], lat, lon), np.nan)
    kmh = km / (np.maximum(secs, MIN_SECS_FOR_SPEED) / 3600.0)

    # ---- merchants: first seen in 30 d (prior), distinct in 24 h (e included)
    merch = df["merchant_id"].iloc[order].reset_index(drop=True)
    prev_m = _prev_same(card, merch)
    merchant_first = prev_m < s30
    distinct_24h = _distinct_in_windows(s24, prev_m)

    # ---- devices: first seen in 30 d (prior), None where e has no device
    dev = df["device_id"].iloc[order].reset_index(drop=True)
    dev_valid = dev.notna().to_numpy()
    prev_d = _prev_same(card, dev, valid=dev_valid)
    device_first = np.empty(n, dtype=object)
    device_first[:] = None
    first_d = prev_d < s30
    device_first[dev_valid & first_d] = True
    device_first[dev_valid & ~first_d] = False

    # ---- assemble in sorted order, then put rows back in input order
    sorted_cols = {
        "txn_count_1h": cnt_1h, "txn_count_24h": cnt_24h, "txn_count_7d": cnt_7d,
        "amount_sum_1h": sum_1h, "amount_sum_24h": sum_24h,
        "amount_mean_30d": mean30, "amount_std_30d": std30, "amount_zscore_30d": z30,
        "secs_since_prev": secs, "km_from_prev": km, "kmh_from_prev": kmh,
        "distinct_merchants_24h": distinct_24h, "merchant_first_seen": merchant_first,
        "device_first_seen": device_first,
    }
    inv = np.empty(n, dtype=np.int64)
    inv[order] = idx
    out = {"event_id": df["event_id"].to_numpy(), "card_id": df["card_id"].to_numpy(), "event_time": ev_time}
    for name, col in sorted_cols.items():
        out[name] = col[inv]
    res = pd.DataFrame(out, index=df.index, columns=list(OUTPUT_COLUMNS))
    for c in ("txn_count_1h", "txn_count_24h", "txn_count_7d", "distinct_merchants_24h", "event_time"):
        res[c] = res[c].astype(np.int64)
    res["merchant_first_seen"] = res["merchant_first_seen"].astype(bool)
    return res


def _distinct_in_windows(start: np.ndarray, prev_same: np.ndarray) -> np.ndarray:
    """Distinct values in each window [start_i, i], from each event's previous occurrence.

    Event k is the first occurrence of its value inside window i exactly when
    ``start_i <= k <= i`` and ``prev_same[k] < start_i``.  ``start`` is non-decreasing (sorted
    by card then time), so the windows i that k counts in form one contiguous run:
    from ``max(k, first i with start_i > prev_same[k])`` to ``last i with start_i <= k``.
    A difference array over those runs, cumulated, gives the counts.  (Windows of another
    card never qualify: i >= k keeps i at or after k's card, and start_i <= k keeps it in it.)
    """
    n = len(start)
    k = np.arange(n, dtype=np.int64)
    lo = np.maximum(k, np.searchsorted(start, prev_same, side="right"))
    hi = np.searchsorted(start, k, side="right") - 1
    ok = lo <= hi
    diff = np.zeros(n + 1, dtype=np.int64)
    np.add.at(diff, lo[ok], 1)
    np.add.at(diff, hi[ok] + 1, -1)
    return np.cumsum(diff[:-1])


# --------------------------------------------------------------------------- benchmark

def synthetic_payments(n_events: int, n_cards: int, days: float = 60.0, seed: int = 0) -> pd.DataFrame:
    """Random payment events for tests and the throughput benchmark (no external data)."""
    rng = np.random.default_rng(seed)
    card_n = rng.integers(0, n_cards, n_events)
    span = int(days * DAY_MS)
    # Coarse times (whole minutes) so that event_time ties happen.
    t = rng.integers(0, span // 60_000, n_events) * 60_000 + 1_700_000_000_000
    merch_n = (card_n * 7 + rng.integers(0, 12, n_events)) % max(n_events // 20, 50)
    dev_n = card_n * 3 + rng.integers(0, 3, n_events)
    dev = np.array([f"d{d}" for d in dev_n], dtype=object)
    dev[rng.random(n_events) < 0.2] = None
    home_lat = rng.uniform(-60, 60, n_cards)
    home_lon = rng.uniform(-170, 170, n_cards)
    jump = rng.random(n_events) < 0.05
    return pd.DataFrame({
        "event_id": [f"e{i:08d}" for i in rng.permutation(n_events)],
        "event_time": t.astype(np.int64),
        "card_id": [f"c{c}" for c in card_n],
        "merchant_id": [f"m{m}" for m in merch_n],
        "amount": np.round(rng.lognormal(3.0, 1.2, n_events), 2),
        "lat": np.where(jump, rng.uniform(-80, 80, n_events), home_lat[card_n] + rng.normal(0, 0.05, n_events)),
        "lon": np.where(jump, rng.uniform(-179, 179, n_events), home_lon[card_n] + rng.normal(0, 0.05, n_events)),
        "device_id": dev,
    })


def _bench(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="throughput of reference_features on synthetic payments")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--cards", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    df = synthetic_payments(args.events, args.cards)
    best = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        reference_features(df)
        best = min(best, time.perf_counter() - t0)
    print(f"reference_features: {args.events} events, {args.cards} cards: best {best:.2f} s "
          f"= {args.events / best:,.0f} rows/s")


if __name__ == "__main__":
    _bench()
