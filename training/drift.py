"""Feature drift: Population Stability Index (PSI) of served features against the training set.

Pure pandas/numpy (no Flink). ``psi_report`` compares, feature by feature, a **reference**
sample (the feature rows the model was trained on: the backfill output) with the **served**
feature log the streaming job writes, and ``retrain_event`` turns a report into the
``retrain_requested`` record that ``streamscore monitor fraud`` emits.

**PSI.** With the same bins on both sides, ``r_i`` and ``s_i`` the reference and served shares
of bin ``i``::

    PSI = sum_i (s_i - r_i) * ln(s_i / r_i)

It is 0 for identical distributions and grows with every share that moves; it is symmetric in
the two samples. Usual reading: below 0.1 stable (``ok``), 0.1 up to the threshold (default
0.2) ``watch``, at or above the threshold ``drift``.

**Bins** come from the reference alone, so the served sample is measured against fixed bins:

* numeric features (int64, float64): the reference's non-null values are cut at its 10 %, 20 %,
  ... 90 % quantiles (``method="lower"``, so every cut is an observed value). Bins are
  right-closed, ``(-inf, q1], (q1, q2], ..., (q9, inf)``; repeated cut points are merged and a
  cut at the reference's maximum is dropped, so every bin holds reference rows and a discrete
  feature (``txn_count_1h`` is mostly 1) gets one bin per frequent value instead of ten bins of
  which most are empty. Served values outside the reference range fall into the two
  open-ended bins.
* booleans: the categories ``false`` and ``true``.
* nulls (None/NaN) are always a category of their own, for every feature, so a feature that
  turns null (a broken upstream field, a lost state) shows up as drift even when the
  declaration says it is never null.

**Empty bins.** ``ln(s/r)`` is undefined where a share is 0, so every share below ``EPSILON``
(1e-4, i.e. 0.01 % of the rows) is raised to ``EPSILON`` before the sum; the shares are not
renormalised. A bin empty on both sides then contributes exactly 0; a bin empty on one side
only contributes ``(s - eps) ln(s / eps)``, e.g. about 2.4 for s = 0.3 (10 % of rows landing
in a bin the reference never saw is 0.1 * ln(0.1/1e-4) = 0.69, a clear drift by itself).

**Sample size.** Sampling noise alone gives a PSI of about ``(bins - 1) * (1/n_ref + 1/n_served)``
for identical distributions (0.01 at 1000 served rows and 10 bins), so judge a few hundred
served rows with care. A card's rows are correlated, so for the per-card amount features the
effective sample is nearer the number of cards: two seeds of ``generate_payments`` (20k events,
1000 cards) differ by PSI ~0.03 on ``amount_mean_30d``; with 250 or 500 cards 0.08 and 0.16
were seen.

>>> ref = pd.DataFrame({"x": [1.0, 1.0, 2.0, 2.0], "b": [True, False, True, False]})
>>> srv = pd.DataFrame({"x": [1.0, 2.0, 2.0, 2.0], "b": [True, False, True, False]})
>>> rep = psi_report(ref, srv, features={"x": "float64", "b": "bool"})
>>> rep[["feature", "psi", "status"]].round(4).values.tolist()
[['x', 0.2747, 'drift'], ['b', 0.0, 'ok']]
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from features.scoring import as_float  # noqa: F401  (also part of this module's API)

BINS = 10
EPSILON = 1e-4
WATCH = 0.1
THRESHOLD = 0.2
OK, WATCH_STATUS, DRIFT = "ok", "watch", "drift"
NULL_LABEL = "null"
EVENT_TYPE = "retrain_requested"

REPORT_COLUMNS = ("feature", "psi", "status", "reference_null_rate", "served_null_rate",
                  "reference_mean", "served_mean")


# -- the index -----------------------------------------------------------------------------

def psi(reference_shares: Sequence[float], served_shares: Sequence[float], eps: float = EPSILON) -> float:
    """PSI of two share vectors over the same bins; shares below ``eps`` count as ``eps``.

    >>> round(psi([0.5, 0.5], [0.5, 0.5]), 12)
    0.0
    >>> round(psi([0.5, 0.5], [0.25, 0.75]), 4)  # 0.25 ln(1.5) - 0.25 ln(0.5)
    0.2747
    """
    r = np.maximum(np.asarray(reference_shares, dtype=float), eps)
    s = np.maximum(np.asarray(served_shares, dtype=float), eps)
    if r.shape != s.shape:
        raise ValueError(f"PSI needs shares over the same bins, got {r.shape} and {s.shape}")
    return float(np.sum((s - r) * np.log(s / r)))


def status_of(value: float, threshold: float = THRESHOLD, watch: float = WATCH) -> str:
    """``ok`` below ``watch``, ``drift`` at or above ``threshold``, ``watch`` in between.

    >>> [status_of(v) for v in (0.05, 0.1, 0.19, 0.2)]
    ['ok', 'watch', 'watch', 'drift']
    """
    if value >= threshold:
        return DRIFT
    if value >= watch:
        return WATCH_STATUS
    return OK


def check_threshold(threshold: float) -> float:
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"the PSI threshold must be a number > 0, got {threshold!r}")
    return float(threshold)


# -- bins ----------------------------------------------------------------------------------



def cut_points(reference: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Sorted, distinct inner cut points: the reference's non-null quantiles at 1/bins .. (bins-1)/bins,
    below its maximum.

    >>> cut_points(np.array([1, 1, 1, 1, 1, 1, 1, 2, 2, 3], dtype=float)).tolist()  # discrete
    [1.0, 2.0]
    >>> cut_points(np.arange(100, dtype=float)).tolist()
    [9.0, 19.0, 29.0, 39.0, 49.0, 59.0, 69.0, 79.0, 89.0]
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    x = reference[~np.isnan(reference)]
    if x.size == 0 or bins == 1:
        return np.empty(0)
    q = np.unique(np.quantile(x, np.arange(1, bins) / bins, method="lower"))
    return q[q < x.max()]  # a cut at the maximum would leave the top bin empty


@dataclass(frozen=True)
class FeatureBins:
    """One feature's bins and the two samples' shares in them (the null category last)."""

    feature: str
    kind: str  # "numeric" or "bool"
    labels: tuple
    edges: tuple  # numeric: the inner cut points; bool: ()
    reference_shares: tuple
    served_shares: tuple
    reference_counts: tuple
    served_counts: tuple
    psi: float

    def to_dict(self) -> dict:
        return {"kind": self.kind, "edges": list(self.edges), "labels": list(self.labels),
                "reference_shares": list(self.reference_shares), "served_shares": list(self.served_shares),
                "reference_counts": list(self.reference_counts), "served_counts": list(self.served_counts)}


def _numeric_labels(edges: np.ndarray) -> list:
    if edges.size == 0:
        return ["all values", NULL_LABEL]
    g = lambda v: f"{v:.6g}"  # noqa: E731
    labels = [f"<= {g(edges[0])}"]
    labels += [f"({g(a)}, {g(b)}]" for a, b in zip(edges[:-1], edges[1:])]
    labels.append(f"> {g(edges[-1])}")
    return labels + [NULL_LABEL]


def _counts(x: np.ndarray, kind: str, edges: np.ndarray) -> np.ndarray:
    """Counts per bin; the null category last."""
    null = np.isnan(x)
    v = x[~null]
    if kind == "bool":
        body = np.array([np.count_nonzero(v == 0.0), np.count_nonzero(v != 0.0)])
    else:
        # right-closed bins: edges[i-1] < v <= edges[i]
        body = np.bincount(np.searchsorted(edges, v, side="left"), minlength=edges.size + 1)
    return np.append(body, np.count_nonzero(null))


def feature_bins(name: str, reference, served, kind: str = "numeric", bins: int = BINS,
                 eps: float = EPSILON) -> FeatureBins:
    """Bin one feature on the reference and measure both samples in those bins.

    ``kind`` is ``"bool"`` for booleans (categories false / true), anything else is numeric.

    >>> fb = feature_bins("f", [True, True, None, False], [None, None, None, None], kind="bool")
    >>> fb.labels, fb.reference_shares, fb.served_shares
    (('false', 'true', 'null'), (0.25, 0.5, 0.25), (0.0, 0.0, 1.0))
    >>> round(fb.psi, 3)  # shares of 0 count as 1e-4
    7.253
    """
    kind = "bool" if kind == "bool" else "numeric"
    r, s = as_float(reference), as_float(served)
    if r.size == 0 or s.size == 0:
        raise ValueError(f"feature {name}: PSI needs rows on both sides "
                         f"({r.size} reference, {s.size} served)")
    edges = np.empty(0) if kind == "bool" else cut_points(r, bins)
    labels = ["false", "true", NULL_LABEL] if kind == "bool" else _numeric_labels(edges)
    rc, sc = _counts(r, kind, edges), _counts(s, kind, edges)
    rs, ss = rc / r.size, sc / s.size
    return FeatureBins(name, kind, tuple(labels), tuple(float(e) for e in edges),
                       tuple(float(v) for v in rs), tuple(float(v) for v in ss),
                       tuple(int(v) for v in rc), tuple(int(v) for v in sc), psi(rs, ss, eps))


# -- the report ----------------------------------------------------------------------------

def _declared(feature_set=None, features: Optional[Mapping[str, str]] = None) -> dict:
    """{feature name: dtype} from a FeatureSet or an explicit mapping."""
    if features is not None:
        return dict(features)
    if feature_set is None:
        from features.fraud import FRAUD_FEATURES

        feature_set = FRAUD_FEATURES
    return {f.name: f.dtype for f in feature_set.features}


def _mean(x: np.ndarray) -> float:
    v = x[~np.isnan(x)]
    return float(v.mean()) if v.size else float("nan")


def psi_report(reference: pd.DataFrame, served: pd.DataFrame, feature_set=None,
               threshold: float = THRESHOLD, bins: int = BINS, eps: float = EPSILON,
               features: Optional[Mapping[str, str]] = None) -> pd.DataFrame:
    """PSI of every declared feature, served against reference, in declaration order.

    ``feature_set`` defaults to ``FRAUD_FEATURES``; ``features`` ({name: dtype}) overrides it.
    Columns: ``REPORT_COLUMNS`` (means ignore nulls; a boolean's mean is its share of true).
    The bins of each feature are in ``report.attrs["bins"]`` ({name: FeatureBins}).
    """
    threshold = check_threshold(threshold)
    declared = _declared(feature_set, features)
    for side, df in (("reference", reference), ("served", served)):
        missing = [c for c in declared if c not in df.columns]
        if missing:
            raise ValueError(f"{side} rows lack feature columns {missing}")
        if df.empty:
            raise ValueError(f"{side} holds no rows")
    rows, details = [], {}
    for name, dtype in declared.items():
        fb = feature_bins(name, reference[name], served[name], kind=dtype, bins=bins, eps=eps)
        r, s = as_float(reference[name]), as_float(served[name])
        details[name] = fb
        rows.append({"feature": name, "psi": fb.psi, "status": status_of(fb.psi, threshold),
                     "reference_null_rate": float(np.isnan(r).mean()), "served_null_rate": float(np.isnan(s).mean()),
                     "reference_mean": _mean(r), "served_mean": _mean(s)})
    report = pd.DataFrame(rows, columns=list(REPORT_COLUMNS))
    report.attrs.update(bins=details, threshold=threshold, watch=WATCH, eps=eps, n_bins=bins,
                        reference_rows=len(reference), served_rows=len(served))
    return report


# -- the retrain decision ------------------------------------------------------------------

def drifted(report: pd.DataFrame, threshold: float = THRESHOLD) -> list:
    """[{"feature", "psi"}] of the features at or above ``threshold``, largest PSI first."""
    threshold = check_threshold(threshold)
    hit = report[report["psi"] >= threshold].sort_values("psi", ascending=False, kind="stable")
    return [{"feature": str(f), "psi": float(p)} for f, p in zip(hit["feature"], hit["psi"])]


def should_retrain(report: pd.DataFrame, threshold: float = THRESHOLD) -> bool:
    """True when any feature's PSI reaches ``threshold``."""
    return bool(drifted(report, threshold))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")


def time_span(event_time, ingest_ms=None) -> dict:
    """{"from_ms", "to_ms", "from", "to"} of event times (epoch ms, UTC), plus the ingest-time
    range (``ingest_from_ms`` / ``ingest_to_ms``) when given; {} for no rows.

    >>> time_span([1_767_225_600_000, 1_767_229_200_000])["to"]
    '2026-01-01T01:00:00+00:00'
    """
    t = np.asarray(event_time, dtype="int64")
    if t.size == 0:
        return {}
    span = {"from_ms": int(t.min()), "to_ms": int(t.max()), "from": _iso(int(t.min())), "to": _iso(int(t.max()))}
    if ingest_ms is not None:
        i = as_float(ingest_ms)
        i = i[~np.isnan(i)]
        if i.size:
            span.update(ingest_from_ms=int(i.min()), ingest_to_ms=int(i.max()))
    return span


def retrain_event(report: pd.DataFrame, feature_set: Union[object, Mapping], model_version: Optional[str],
                  served_rows: int, served_span: Mapping, threshold: float = THRESHOLD,
                  created_at: Optional[str] = None) -> Optional[dict]:
    """The ``retrain_requested`` record when any feature drifted (PSI >= threshold), else None.

    ``feature_set`` is a FeatureSet or a mapping with ``feature_set``/``name`` and
    ``definition_hash`` (a model's metadata works).

    >>> rep = pd.DataFrame({"feature": ["a", "b"], "psi": [0.05, 0.31]})
    >>> ev = retrain_event(rep, {"feature_set": "fs", "definition_hash": "abc"}, "v0001", 10, {},
    ...                    created_at="2026-02-01T00:00:00+00:00")
    >>> ev["type"], ev["drifted"]
    ('retrain_requested', [{'feature': 'b', 'psi': 0.31}])
    >>> retrain_event(rep, {"feature_set": "fs", "definition_hash": "abc"}, "v0001", 10, {}, threshold=0.5) is None
    True
    """
    threshold = check_threshold(threshold)
    hits = drifted(report, threshold)
    if not hits:
        return None
    if isinstance(feature_set, Mapping):
        name = feature_set.get("feature_set") or feature_set.get("name")
        dhash = feature_set.get("definition_hash")
    else:
        name, dhash = feature_set.name, feature_set.definition_hash
    return {
        "type": EVENT_TYPE,
        "feature_set": name,
        "definition_hash": dhash,
        "model_version": model_version,
        "drifted": [{"feature": h["feature"], "psi": round(h["psi"], 6)} for h in hits],
        "threshold": threshold,
        "served_rows": int(served_rows),
        "served_span": dict(served_span),
        "created_at": created_at or datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def verdict(report: pd.DataFrame, threshold: float = THRESHOLD) -> str:
    """One line: how many features drifted / are to watch, and the worst one.

    >>> verdict(pd.DataFrame({"feature": ["a", "b"], "psi": [0.05, 0.31], "status": ["ok", "drift"]}))
    'DRIFT: 1 of 2 features at PSI >= 0.2 (b 0.310); retrain requested'
    """
    threshold = check_threshold(threshold)
    hits = drifted(report, threshold)
    n = len(report)
    if hits:
        names = ", ".join(f"{h['feature']} {h['psi']:.3f}" for h in hits[:5])
        more = f" and {len(hits) - 5} more" if len(hits) > 5 else ""
        return f"DRIFT: {len(hits)} of {n} features at PSI >= {threshold:g} ({names}{more}); retrain requested"
    watch = report[report["psi"] >= min(WATCH, threshold)]
    worst = report.loc[report["psi"].idxmax()] if n else None
    tail = f"; largest {worst['feature']} {worst['psi']:.3f}" if worst is not None else ""
    if len(watch):
        return f"WATCH: no feature at PSI >= {threshold:g}, {len(watch)} of {n} at >= {WATCH:g}{tail}; no retrain"
    return f"OK: all {n} features below PSI {WATCH:g}{tail}; no retrain"
