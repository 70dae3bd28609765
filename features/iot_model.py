"""Serving the iot anomaly model: what the streaming job's pandas UDF imports. Pure (no Flink).

Both scorers take a pandas batch holding the ``IOT_FEATURES.feature_names`` columns (what
udfs.engine.DeriveBatch hands udfs.scoring.ScoreBatch: no identity columns, no raw value) and
return one row per input row, index kept:

* ``score``        float in [0, 1], higher is more anomalous;
* ``decision``     ``"alert"`` or ``"normal"``;
* ``is_anomalous`` bool, ``decision == "alert"`` (what features.alerts.run_alerts reads);
* ``reasons``      reason codes joined by ``","`` (features.scoring.REASON_SEP; here at most one
  code per row), ``""`` when none.

``IotModel.score_frame(df)``: the trained model (fitting lives in training/iot.py). It needs no
sensor identity and no per-sensor state, so a sensor it has never seen is scored like any
other:

1. **Scale-free view** (``view_matrix``, ``VIEW``): each reading's 1 h extremes and its
   30-min ewma relative to the sensor's own last 24 h, in units of the 24 h std (floored at
   ``REL_STD_FLOOR`` of the 24 h mean's magnitude, so a flat line is not infinitely sensitive):
   ``max_1h_above_24h = (value_max_1h - value_mean_24h) / s``, ``min_1h_below_24h =
   (value_mean_24h - value_min_1h) / s``, ``ewma_above_24h = (value_ewma - value_mean_24h) / s``
   and ``ewma_below_24h`` = its negative.
2. **Global tail ranks**: per view column, a quantile grid of the training rows' values, pooled
   over all training sensors (``LEVELS``, fine in the top 1 %). A reading's rank in a column is
   the share of training values strictly below it (0 for NaN: a missing feature is no
   evidence); the score is the largest rank over the view, the reason the column that set it.
3. **Threshold**: ``score >= threshold`` alerts; the threshold is a quantile of the training
   rows' scores (training/iot.py: no labels).

The model also carries the ``features.alerts.AlertPolicy`` its evaluation thinned alerts with
(``alert_policy``), so the pipeline's alert stream and the NAB evaluation use one policy.

``rules_only(df)``: the fallback when no model loads or a batch fails to score; a label-free
rule over the served features, never raising on nulls or missing columns:
``|value_zscore_1h| >= ZSCORE_BOUND`` -> alert, reason ``zscore_rule``.

>>> import math
>>> rules_only(pd.DataFrame({"value_zscore_1h": [9.0, -7.5, 1.0, math.nan, None]}))[["decision", "reasons"]].values.tolist()
[['alert', 'zscore_rule'], ['alert', 'zscore_rule'], ['normal', ''], ['normal', ''], ['normal', '']]
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd

from features.alerts import AlertPolicy
from features.registry import load_model
from features.scoring import col

ALERT, NORMAL = "alert", "normal"
OUTPUT_COLUMNS = ("score", "decision", "is_anomalous", "reasons")
VIEW = ("max_1h_above_24h", "min_1h_below_24h", "ewma_above_24h", "ewma_below_24h")
VIEW_INPUTS = ("value_max_1h", "value_min_1h", "value_ewma", "value_mean_24h", "value_std_24h")
REL_STD_FLOOR = 1e-3  # the 24 h std counts as at least 0.1 % of |24 h mean| (and 1e-9)
LEVELS = np.r_[np.linspace(0.0, 0.99, 100), np.linspace(0.99, 1.0, 1001)[1:]]  # 1e-5 steps in the top 1 %

ZSCORE_BOUND = 6.0  # rules_only: 6 std from the prior hour's mean (Chebyshev: at most 1/36 of any distribution)
ZSCORE_REASON = "zscore_rule"
RULE_SCORES = {NORMAL: 0.0, ALERT: 0.9}  # rules give no calibrated score

_DECISIONS = np.array([NORMAL, ALERT], dtype=object)


def view_matrix(df: pd.DataFrame) -> np.ndarray:
    """(rows, len(VIEW)) float64; NaN where an input is null or missing, or the result not finite."""
    missing = [c for c in VIEW_INPUTS if c not in df.columns]
    if missing:
        raise ValueError(f"feature rows lack columns {missing}; the iot model reads {list(VIEW_INPUTS)}")
    mean24 = col(df, "value_mean_24h")
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        scale = np.maximum(col(df, "value_std_24h"), np.maximum(REL_STD_FLOOR * np.abs(mean24), 1e-9))
        ewma = (col(df, "value_ewma") - mean24) / scale
        X = np.column_stack([(col(df, "value_max_1h") - mean24) / scale,
                             (mean24 - col(df, "value_min_1h")) / scale, ewma, -ewma])
    X[~np.isfinite(X)] = np.nan
    return X


def tail_rank(x: np.ndarray, ref: np.ndarray, levels: np.ndarray = LEVELS) -> np.ndarray:
    """Share of training values strictly below ``x``, read off the quantile grid ``ref`` (at ``levels``);
    0 for NaN.

    >>> tail_rank(np.array([0.0, 1.5, 9.0, np.nan]), np.array([0.0, 1.0, 2.0]), np.array([0.0, 0.5, 1.0])).tolist()
    [0.0, 0.5, 1.0, 0.0]
    """
    idx = np.searchsorted(ref, np.nan_to_num(x, nan=-np.inf), side="left")
    out = np.where(idx > 0, levels[np.maximum(idx - 1, 0)], 0.0)
    return np.where(np.isnan(x), 0.0, out)


def _policy_dict(p: AlertPolicy) -> dict:
    return json.loads(p.to_json())


@dataclass
class IotModel:
    """A trained iot anomaly model (see the module doc); picklable, scored with ``score_frame``.

    ``grids``: (len(view), len(levels)) ascending quantiles of the training view values."""

    feature_order: list
    feature_set: dict  # FeatureSet.metadata()
    grids: np.ndarray
    threshold: float
    threshold_rule: dict
    alert_policy: AlertPolicy
    view: tuple = VIEW
    levels: np.ndarray = field(default_factory=lambda: LEVELS.copy())
    training_span: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    model_version: str = ""
    created_at: str = ""
    sklearn_version: str = ""

    def __post_init__(self):
        if not 0.0 < float(self.threshold) <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold!r}")
        if not isinstance(self.alert_policy, AlertPolicy):
            raise ValueError(f"alert_policy must be a features.alerts.AlertPolicy, got {type(self.alert_policy).__name__}")
        if tuple(self.view) != VIEW:
            raise ValueError(f"view must be {VIEW} (what view_matrix computes), got {tuple(self.view)}")
        g = np.asarray(self.grids, dtype=np.float64)
        if g.shape != (len(VIEW), len(self.levels)):
            raise ValueError(f"grids must have shape {(len(VIEW), len(self.levels))}, got {g.shape}")
        if not np.all(np.diff(g, axis=1) >= 0):
            raise ValueError("every grid must be ascending")
        self.grids = g

    @property
    def definition_hash(self) -> str:
        return self.feature_set["definition_hash"]

    def scores(self, df: pd.DataFrame) -> tuple:
        """(score, index of the view column that set it; -1 where the score is 0) per row."""
        X = view_matrix(df)
        ranks = np.column_stack([tail_rank(X[:, j], self.grids[j], self.levels) for j in range(len(VIEW))]) \
            if len(X) else np.zeros((0, len(VIEW)))
        score = ranks.max(axis=1) if len(X) else np.zeros(0)
        which = np.where(score > 0, ranks.argmax(axis=1) if len(X) else 0, -1)
        return score, which

    def score_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """score / decision / is_anomalous / reasons for a batch of feature rows (index preserved).
        Raises ValueError if a view input column is missing (ScoreBatch then uses rules_only)."""
        score, which = self.scores(df)
        alert = score >= self.threshold
        names = np.array(list(VIEW) + [""], dtype=object)
        reasons = np.where(alert, names[np.where(which >= 0, which, len(VIEW))], "")
        return _frame(score, alert, reasons, df.index)

    def metadata(self) -> dict:
        return {
            "model_version": self.model_version,
            "domain": "iot",
            "feature_set": self.feature_set["feature_set"],
            "feature_set_version": self.feature_set["version"],
            "definition_hash": self.definition_hash,
            "feature_order": list(self.feature_order),
            "view": list(self.view),
            "rel_std_floor": REL_STD_FLOOR,
            "threshold": float(self.threshold),
            "threshold_rule": self.threshold_rule,
            "alert_policy": _policy_dict(self.alert_policy),
            "training_span": self.training_span,
            "metrics": self.metrics,
            "created_at": self.created_at,
            "sklearn_version": self.sklearn_version,
        }


def _frame(score: np.ndarray, alert: np.ndarray, reasons: np.ndarray, index) -> pd.DataFrame:
    alert = np.asarray(alert, dtype=bool)
    return pd.DataFrame({"score": np.asarray(score, dtype=np.float64), "decision": _DECISIONS[alert.astype(np.int8)],
                         "is_anomalous": alert, "reasons": np.asarray(reasons, dtype=object)}, index=index)


def rules_only(df: pd.DataFrame) -> pd.DataFrame:
    """The fallback scorer (module doc); a missing column or a null fires nothing."""
    with np.errstate(invalid="ignore"):
        alert = np.abs(col(df, "value_zscore_1h")) >= ZSCORE_BOUND  # NaN compares False
    score = np.where(alert, RULE_SCORES[ALERT], RULE_SCORES[NORMAL])
    reasons = np.where(alert, ZSCORE_REASON, "").astype(object)
    return _frame(score, alert, reasons, df.index)


def load_iot_model(path_or_registry, expected_hash: Optional[str] = None) -> IotModel:
    """A version directory or a registry's promoted version (features.registry.load_model): refuses
    (``ModelMismatchError``) a feature-definition hash other than ``expected_hash`` before unpickling,
    and a model file whose SHA-256 differs from its metadata (``ModelIntegrityError``)."""
    return load_model(path_or_registry, expected_hash, model_type=IotModel, domain="iot")
