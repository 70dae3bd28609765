"""Pure statistics of the benchmark: percentiles, rates, ratios, and the Flink-vs-reference value check."""
from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, linear interpolation (numpy's default).

    >>> percentile([1, 2, 3, 4], 50), percentile([5.0], 99), percentile([0, 10], 95)
    (2.5, 5.0, 9.5)
    """
    n = len(sorted_values)
    if n == 0:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within [0, 100], got {q}")
    pos = (n - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return float(sorted_values[lo]) + (float(sorted_values[hi]) - float(sorted_values[lo])) * frac


def latency_summary(values_ms: Iterable[float]) -> dict:
    """n, mean, p50/p95/p99 and max of latencies in ms (None-valued stats for no values).

    >>> s = latency_summary(range(1, 101))
    >>> s["n"], s["p50"], s["p99"], s["max"]
    (100, 50.5, 99.01, 100.0)
    """
    vals = sorted(float(v) for v in values_ms)
    if not vals:
        return {"n": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    return {"n": len(vals), "mean": round(sum(vals) / len(vals), 3),
            "p50": round(percentile(vals, 50), 3), "p95": round(percentile(vals, 95), 3),
            "p99": round(percentile(vals, 99), 3), "max": round(vals[-1], 3)}


def per_second(count: float, seconds: Optional[float]) -> Optional[float]:
    """count / seconds, None when the duration is unknown or not positive.

    >>> per_second(1000, 4), per_second(5, 0), per_second(5, None)
    (250.0, None, None)
    """
    if seconds is None or seconds <= 0:
        return None
    return count / seconds


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """a / b, or None if either is missing or b is 0.

    >>> ratio(1.0, 4.0), ratio(None, 1.0), ratio(1.0, 0.0)
    (0.25, None, None)
    """
    if a is None or b is None or b == 0:
        return None
    return a / b


def compare_features(flink, ref, tol: float = 1e-9) -> dict:
    """Do two feature frames (``FRAUD_FEATURES`` columns, keyed by event_id) agree?

    Integers and booleans must be equal, floats within ``tol`` relative to max(1, |value|)
    (absolute below 1); a null must meet a null. Returns counts per column and a few examples.
    """
    import numpy as np
    import pandas as pd

    from features.fraud import FRAUD_FEATURES

    a = flink.drop_duplicates("event_id").set_index("event_id")
    b = ref.drop_duplicates("event_id").set_index("event_id")
    common = a.index.intersection(b.index)
    out = {"rows_flink": int(len(flink)), "rows_reference": int(len(ref)),
           "duplicates_flink": int(len(flink) - len(a)), "missing_in_flink": int(len(b.index.difference(a.index))),
           "extra_in_flink": int(len(a.index.difference(b.index))), "compared": int(len(common)),
           "tolerance": tol, "mismatches": {}, "examples": []}
    a, b = a.loc[common], b.loc[common]
    for f in FRAUD_FEATURES.features:
        x, y = a[f.name], b[f.name]
        xn, yn = x.isna().to_numpy(), y.isna().to_numpy()
        if f.dtype == "float64":
            xv = pd.to_numeric(x, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            yv = pd.to_numeric(y, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            with np.errstate(invalid="ignore"):
                close = np.abs(xv - yv) <= tol * np.maximum(1.0, np.maximum(np.abs(xv), np.abs(yv)))
            same = (xn & yn) | (~xn & ~yn & close)
        else:
            xo, yo = x.astype(object).to_numpy(), y.astype(object).to_numpy()
            eq = np.array([p == q for p, q in zip(xo, yo)], dtype=bool) if len(xo) else np.zeros(0, bool)
            same = (xn & yn) | (~xn & ~yn & eq)
        bad = int((~same).sum())
        out["mismatches"][f.name] = bad
        if bad and len(out["examples"]) < 5:
            i = int(np.flatnonzero(~same)[0])
            out["examples"].append({"event_id": str(common[i]), "feature": f.name,
                                    "flink": _jsonable(x.iloc[i]), "reference": _jsonable(y.iloc[i])})
    out["agree"] = (sum(out["mismatches"].values()) == 0 and out["missing_in_flink"] == 0
                    and out["extra_in_flink"] == 0 and out["duplicates_flink"] == 0)
    return out


def _jsonable(v):
    try:
        import numpy as np

        if isinstance(v, np.generic):
            v = v.item()
    except ImportError:  # pragma: no cover
        pass
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (bool, int, float, str)):
        return v
    return str(v)
