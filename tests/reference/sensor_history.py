"""The iot features computed reading by reading in plain Python: a reference for the engine.

Written from the docstrings of features/iot.py and features/declare.py (``Aggregation``), not from
features/execute.py: one key's readings sorted by (event_time, event_id), and for each reading
its windows listed and aggregated directly. ``value_ewma`` is computed twice: ``ewma`` by the
declared chained weights (``decay_weight`` per value, the definition, so the engines must match
it bit for bit) and ``ewma_direct`` by ``2 ** (-(t - t_i) / h)`` with Python's pow per value (the
plain formula, which they match to a tolerance only).

>>> rows = [dict(event_id="a", event_time=0, machine_id="m", sensor_id="s", value=10.0),
...         dict(event_id="b", event_time=1_800_000, machine_id="m", sensor_id="s", value=20.0)]
>>> out = compute_features(rows)
>>> out["b"]["value_mean_1h"], out["b"]["value_ewma"], out["b"]["gap_s"]
(15.0, 16.666666666666668, 1800.0)
"""
from __future__ import annotations

import math
from bisect import bisect_right
from typing import Iterable

from features.declare import decay_weight
from features.iot import IOT_FEATURES

_H1, _H24 = IOT_FEATURES.windows["1h"], IOT_FEATURES.windows["24h"]


def _half_life(fs) -> int:
    return next(a.half_life_ms for a in fs.items if getattr(a, "op", None) == "ewma")


def _sum_newest_first(xs: list) -> float:
    """xs oldest to newest: the newest value first, then the older ones, newest to oldest."""
    total = xs[-1]
    for x in reversed(xs[:-1]):
        total += x
    return total


def _mean(xs: list):
    return _sum_newest_first(xs) / len(xs) if xs else None


def _std(xs: list):
    if not xs:
        return None
    if all(x == xs[0] for x in xs):
        return 0.0
    m = _mean(xs)
    sq = 0.0
    for x in xs:  # oldest to newest
        d = x - m
        sq += d * d
    return math.sqrt(sq / len(xs))


def _ewma_chained(ts: list, xs: list, h: int, memo: dict) -> float:
    num = den = 0.0
    w, newer = 1.0, None
    for t, x in zip(reversed(ts), reversed(xs)):  # newest to oldest
        if newer is not None:
            gap = newer - t
            d = memo.get(gap)
            if d is None:  # a pure function of the gap: computed once per distinct gap
                d = memo[gap] = decay_weight(gap, h)
            w = w * d
        num += w * x
        den += w
        newer = t
    return num / den


def _ewma_direct(t_e: int, ts: list, xs: list, h: int, memo: dict) -> float:
    ws = []
    for t in ts:
        w = memo.get(t_e - t)
        if w is None:
            w = memo[t_e - t] = 2.0 ** (-(t_e - t) / h)
        ws.append(w)
    return math.fsum(w * x for w, x in zip(ws, xs)) / math.fsum(ws)


def compute_features(rows: Iterable[dict], fs=IOT_FEATURES) -> dict:
    """{event_id: {feature: value, "ewma_direct": float}} of every reading (None for null)."""
    h = _half_life(fs)
    chained, direct = {}, {}
    by_key: dict = {}
    for r in rows:
        by_key.setdefault((r["machine_id"], r["sensor_id"]), []).append(r)
    out = {}
    for readings in by_key.values():
        readings.sort(key=lambda r: (r["event_time"], r["event_id"]))
        times = [int(r["event_time"]) for r in readings]
        vals = [float(r["value"]) for r in readings]
        for i, r in enumerate(readings):
            t = times[i]
            # the window: sorted times, so the readings with time > t - W up to i are one run
            in1 = range(bisect_right(times, t - _H1), i + 1)
            in24 = range(bisect_right(times, t - _H24), i + 1)
            w1 = [vals[j] for j in in1]
            w24 = [vals[j] for j in in24]
            prior = w1[:-1]
            f = {
                "value_mean_1h": _mean(w1), "value_std_1h": _std(w1), "value_min_1h": min(w1),
                "value_max_1h": max(w1), "count_1h": len(w1),
                "value_mean_24h": _mean(w24), "value_std_24h": _std(w24),
                "value_ewma": _ewma_chained([times[j] for j in in24], w24, h, chained),
                "ewma_direct": _ewma_direct(t, [times[j] for j in in24], w24, h, direct),
            }
            pm, ps = (_mean(prior), _std(prior)) if len(prior) >= 2 else (None, None)
            f["value_zscore_1h"] = (vals[i] - pm) / ps if ps is not None and ps > 0 else None
            if i == 0:
                f.update(delta_prev=None, rate_per_min=None, gap_s=None)
            else:
                gap = t - times[i - 1]
                delta = vals[i] - vals[i - 1]
                f.update(delta_prev=delta, gap_s=gap / 1000.0,
                         rate_per_min=delta / (gap / 60_000.0) if gap > 0 else None)
            out[r["event_id"]] = f
    return out
