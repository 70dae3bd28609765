"""Fraud scoring: declared rules and the risk model. Pure (no Flink).

This is what the streaming job's pandas UDF imports. Everything here is vectorised over a
pandas batch of feature rows (``FRAUD_FEATURES.output_columns``) and returns one row per
input row with

* ``score``    float in [0, 1], higher is riskier;
* ``decision`` ``"approve"``, ``"step_up"`` or ``"block"``;
* ``reasons``  a compact string of reason codes joined by ``","`` (``""`` when nothing fired),
  for instance ``"card_testing,model_score"``.

Two scorers produce that frame:

* ``RiskModel.score_frame(df)``: the trained model (training lives in ``training/fraud.py``)
  plus the rules, which can only escalate a decision;
* ``rules_only(df)``: the rules alone; the fallback when no model can be loaded or scoring
  fails. It never raises on odd input: missing columns and nulls simply fire no rule.

Decisions are ordered approve < step_up < block, and a row gets the strongest decision any
of its reasons implies. The score is kept consistent with the decision: a rule that implies
``block`` lifts the score to at least the ``block`` threshold.

>>> import math
>>> df = pd.DataFrame({"kmh_from_prev": [5000.0, 10.0, math.nan], "km_from_prev": [2000.0, 1.0, None],
...                    "merchant_first_seen": [True, True, None]})
>>> rules_only(df)[["decision", "reasons"]].values.tolist()
[['step_up', 'impossible_travel'], ['approve', ''], ['approve', '']]

Models are saved and loaded through the registry (features/registry.py, re-exported here);
``load_model`` here loads a RiskModel.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from features import registry as _registry
from features.registry import (  # noqa: F401  the registry's names, where callers have always found them
    CURRENT_FILE, METADATA_FILE, MODEL_FILE, MODEL_SHA256, ModelIntegrityError, ModelLoadError, ModelMismatchError,
    current_version, list_versions, promote, read_metadata, resolve_model_dir, save_model)

APPROVE, STEP_UP, BLOCK = "approve", "step_up", "block"
DECISIONS = (APPROVE, STEP_UP, BLOCK)  # index = severity
OUTPUT_COLUMNS = ("score", "decision", "reasons")
MODEL_REASON = "model_score"  # reason code when the model's score crossed a threshold
REASON_SEP = ","

# Scores rules_only gives each decision (no model, so no calibrated probability to offer).
RULE_SCORES = {APPROVE: 0.0, STEP_UP: 0.5, BLOCK: 0.9}

_DECISION_NAMES = np.array(DECISIONS, dtype=object)


# -- rules ---------------------------------------------------------------------------------

def col(df: pd.DataFrame, name: str) -> np.ndarray:
    """Column ``name`` as float64 with NaN for nulls (bools become 0/1); all-NaN if absent."""
    if name not in df.columns:
        return np.full(len(df), np.nan)
    return as_float(df[name])


def as_float(values) -> np.ndarray:
    """A column (Series, array, list) as float64 with NaN for nulls; booleans become 0/1."""
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    if s.dtype == np.float64:
        return s.to_numpy()
    try:
        return s.to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError):
        return pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


@dataclass(frozen=True)
class Rule:
    """A declared rule: where ``predicate(df)`` is true the row gets at least ``decision``."""

    name: str
    predicate: Callable[[pd.DataFrame], np.ndarray]
    decision: str
    reason: str
    doc: str = ""

    def __post_init__(self):
        if self.decision not in (STEP_UP, BLOCK):
            raise ValueError(f"rule {self.name}: decision must be step_up or block, not {self.decision!r}")

    def fires(self, df: pd.DataFrame) -> np.ndarray:
        """Boolean array; NaN comparisons are False, so null features never fire a rule."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(self.predicate(df), dtype=bool)


def amount_ratio(df: pd.DataFrame) -> np.ndarray:
    """The payment's amount over the card's 30 d mean, recovered from the z-score.

    ``amount = mean + z * std``, so ``amount / mean = 1 + z * std / mean``; NaN where the card
    has fewer than 2 prior payments in 30 d or their amounts are all equal (z is null).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 + col(df, "amount_zscore_30d") * col(df, "amount_std_30d") / col(df, "amount_mean_30d")


def _impossible_travel(df):
    return ((col(df, "kmh_from_prev") > 900.0) & (col(df, "km_from_prev") > 300.0)
            & (col(df, "merchant_first_seen") == 1.0))


def _card_testing(df):
    n1h = col(df, "txn_count_1h")
    mean_1h = col(df, "amount_sum_1h") / n1h
    return (n1h >= 5) & (col(df, "secs_since_prev") < 120.0) & (mean_1h < 0.2 * col(df, "amount_mean_30d"))


def _new_device_high_amount(df):
    return ((col(df, "device_first_seen") == 1.0) & (col(df, "amount_zscore_30d") > 3.0)
            & (amount_ratio(df) > 4.0) & (col(df, "txn_count_7d") >= 5))


def _extreme_amount(df):
    return ((col(df, "amount_zscore_30d") > 8.0) & (amount_ratio(df) > 15.0)
            & (col(df, "txn_count_7d") >= 5))


# Tuned on generate_payments(300_000, seed=1) feature rows (not the seed the tests use); the
# precision there is in each doc. Rules are the fallback and an escalation on top of the model,
# so each is kept simple and reasonably precise rather than broad.
RULES: tuple = (
    Rule("impossible_travel", _impossible_travel, STEP_UP, "impossible_travel",
         "over 900 km/h from the card's previous payment, over 300 km away, at a merchant new to "
         "the card (the flight home, back at known merchants, is not flagged). Precision ~0.65."),
    Rule("card_testing", _card_testing, BLOCK, "card_testing",
         "5+ payments in 1 h, under 2 min since the previous one, averaging under 1/5 of the card's "
         "30 d mean amount. Precision ~0.93; catches only the later part of a burst, as the burst's "
         "own small amounts pull the 30 d mean down."),
    Rule("new_device_high_amount", _new_device_high_amount, STEP_UP, "new_device_high_amount",
         "a device the card has not used in 30 d, paying over 3 std and 4x above the card's 30 d "
         "mean, on a card with 5+ payments in 7 d. Precision ~0.3."),
    Rule("extreme_amount", _extreme_amount, STEP_UP, "extreme_amount",
         "over 8 std and 15x above the card's 30 d mean amount, on a card with 5+ payments in 7 d. "
         "Precision ~0.55."),
)


def evaluate_rules(df: pd.DataFrame, rules: Sequence[Rule] = RULES):
    """(severity per row: 0/1/2, reason bit mask per row: bit i = rules[i] fired)."""
    n = len(df)
    severity = np.zeros(n, dtype=np.int8)
    bits = np.zeros(n, dtype=np.int64)
    for i, rule in enumerate(rules):
        hit = rule.fires(df)
        if hit.any():
            bits |= hit.astype(np.int64) << i
            np.maximum(severity, np.where(hit, DECISIONS.index(rule.decision), 0).astype(np.int8),
                       out=severity)
    return severity, bits


def _reason_strings(bits: np.ndarray, codes: Sequence[str]) -> np.ndarray:
    """Object array of joined reason codes, built once per distinct combination of bits."""
    if len(bits) == 0:
        return np.empty(0, dtype=object)
    uniq, inverse = np.unique(bits, return_inverse=True)
    texts = np.empty(len(uniq), dtype=object)
    for j, u in enumerate(uniq.tolist()):
        texts[j] = REASON_SEP.join(c for i, c in enumerate(codes) if u >> i & 1)
    return texts[inverse.reshape(-1)]


def _frame(score: np.ndarray, severity: np.ndarray, reasons: np.ndarray, index) -> pd.DataFrame:
    return pd.DataFrame({"score": score.astype(np.float64, copy=False),
                         "decision": _DECISION_NAMES[severity],
                         "reasons": reasons}, index=index)


def rules_only(df: pd.DataFrame, rules: Sequence[Rule] = RULES) -> pd.DataFrame:
    """Score a batch by the rules alone (the fallback). Never raises on missing columns/nulls."""
    severity, bits = evaluate_rules(df, rules)
    score = np.array([RULE_SCORES[d] for d in DECISIONS])[severity]
    return _frame(score, severity, _reason_strings(bits, [r.reason for r in rules]), df.index)


# -- the model -----------------------------------------------------------------------------

def _signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


SCORING_THREADS = 1
_CONTROLLER = None


def _thread_limit(threads: Optional[int]):
    """A context capping OpenMP threads (about 20 us once the controller is built)."""
    global _CONTROLLER
    if threads is None:
        return contextlib.nullcontext()
    if _CONTROLLER is None:
        import sklearn.ensemble  # noqa: F401  (its OpenMP runtime must be loaded to be found)
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=threads, user_api="openmp")


@dataclass
class RiskModel:
    """An IsolationForest and a gradient-boosted classifier, combined into one risk score.

    ``score = 1 - (1 - p) * (1 - w * a)`` (see ``combine``): ``p`` is the classifier's fraud
    probability; ``a`` in [0, 1] is how anomalous the row is relative to training traffic (the
    IsolationForest score's rank among training rows, rescaled so that rows below the
    ``anomaly_floor`` quantile count 0: only the unusual tail adds risk); ``w`` is
    ``anomaly_weight``. The anomaly detector is an independent alarm of strength at most ``w``:
    it can lift a row the classifier does not know (a pattern absent from the labels) but never
    lowers what the classifier sees.

    ``thresholds``: ``score >= step_up`` -> step_up, ``score >= block`` -> block. Rules can
    only escalate. Null features: the classifier handles NaN natively; the IsolationForest
    sees NaN replaced by the training medians (``iforest_fill``), after a signed log1p
    (isolation trees split uniformly between min and max, so heavy tails would dominate).
    """

    feature_order: list
    feature_set: dict  # FeatureSet.metadata(): feature_set, version, definition_hash, feature_order
    classifier: object  # HistGradientBoostingClassifier
    iforest: object  # IsolationForest
    iforest_fill: np.ndarray  # per-feature fill for NaN, in the transformed space
    anomaly_ref: np.ndarray  # sorted quantiles of the training anomaly scores (for ranking)
    anomaly_weight: float
    anomaly_floor: float
    thresholds: dict  # {"step_up": float, "block": float}
    model_version: str = ""
    metrics: dict = field(default_factory=dict)
    training_span: dict = field(default_factory=dict)
    created_at: str = ""
    sklearn_version: str = ""
    rule_names: list = field(default_factory=lambda: [r.name for r in RULES])

    def __post_init__(self):
        t = self.thresholds
        if not (0.0 <= t[STEP_UP] <= t[BLOCK] <= 1.0):
            raise ValueError(f"thresholds must satisfy 0 <= step_up <= block <= 1, got {t}")

    @property
    def definition_hash(self) -> str:
        return self.feature_set["definition_hash"]

    # matrices ------------------------------------------------------------------------
    def matrix(self, df: pd.DataFrame) -> np.ndarray:
        """The feature columns in ``feature_order`` as float64 (NaN for nulls)."""
        missing = [c for c in self.feature_order if c not in df.columns]
        if missing:
            raise ValueError(f"feature rows lack columns {missing} (model {self.model_version or '?'} "
                             f"needs {self.feature_order})")
        return np.column_stack([col(df, c) for c in self.feature_order]) if len(df) else \
            np.empty((0, len(self.feature_order)))

    def iforest_matrix(self, X: np.ndarray) -> np.ndarray:
        """The IsolationForest's input: ``anomaly_view`` of X, signed log1p, NaN filled."""
        Z = _signed_log1p(anomaly_view(X, self.feature_order))
        nan = np.isnan(Z)
        if nan.any():
            Z = np.where(nan, self.iforest_fill, Z)
        return Z.astype(np.float32)  # the trees' dtype: spares sklearn a copy per call

    # scores ---------------------------------------------------------------------------
    def fraud_probability(self, X: np.ndarray) -> np.ndarray:
        return self.classifier.predict_proba(X)[:, 1]

    def raw_anomaly(self, X: np.ndarray) -> np.ndarray:
        """IsolationForest anomaly score, higher = more anomalous (about 0.3 .. 0.8): scikit-learn's
        ``-score_samples``. (A hand-written tree walk was 3.3 us/event cheaper on 1000-row batches,
        about 1 % of the job's 336 us of CPU per event: not worth a copy of library internals;
        bench/README.md.)"""
        return -self.iforest.score_samples(self.iforest_matrix(X))

    def anomaly(self, X: np.ndarray) -> np.ndarray:
        """Anomaly in [0, 1]: rank among training rows, 0 below the ``anomaly_floor`` quantile."""
        return anomaly_from_raw(self.raw_anomaly(X), self.anomaly_ref, self.anomaly_floor)

    def model_score(self, df: pd.DataFrame) -> np.ndarray:
        """The blended score before rules."""
        X = self.matrix(df)
        if len(X) == 0:
            return np.empty(0)
        p = self.fraud_probability(X)
        w = self.anomaly_weight
        if w <= 0.0:
            return p
        return combine(p, self.anomaly(X), w)

    def score_frame(self, df: pd.DataFrame, threads: Optional[int] = SCORING_THREADS) -> pd.DataFrame:
        """score / decision / reasons for a batch of feature rows (index preserved).

        ``threads`` caps the OpenMP threads of the classifier while scoring (None: leave the
        process setting alone). One thread is the default: a UDF worker shares its cores with
        Flink and other workers, and idle OpenMP threads spin-wait (10x slower on a busy box).
        """
        with _thread_limit(threads):
            score = np.clip(self.model_score(df), 0.0, 1.0)
        step_up, block = self.thresholds[STEP_UP], self.thresholds[BLOCK]
        model_sev = (score >= step_up).astype(np.int8) + (score >= block).astype(np.int8)
        rule_sev, bits = evaluate_rules(df, RULES)
        severity = np.maximum(model_sev, rule_sev)
        # keep score and decision consistent: a rule's decision lifts the score to its threshold
        floor = np.array([0.0, step_up, block])[rule_sev]
        score = np.maximum(score, floor)
        bits = bits | (model_sev > 0).astype(np.int64) << len(RULES)
        codes = [r.reason for r in RULES] + [MODEL_REASON]
        return _frame(score, severity, _reason_strings(bits, codes), df.index)

    def metadata(self) -> dict:
        return {
            "model_version": self.model_version,
            "feature_set": self.feature_set["feature_set"],
            "feature_set_version": self.feature_set["version"],
            "definition_hash": self.definition_hash,
            "feature_order": list(self.feature_order),
            "thresholds": dict(self.thresholds),
            "anomaly_weight": self.anomaly_weight,
            "anomaly_floor": self.anomaly_floor,
            "rules": list(self.rule_names),
            "metrics": self.metrics,
            "training_span": self.training_span,
            "created_at": self.created_at,
            "sklearn_version": self.sklearn_version,
        }


ANOMALY_VIEW = ("amount_ratio_30d", "amount_zscore_30d", "kmh_from_prev", "km_from_prev",
                "merchant_first_seen", "device_first_seen", "share_24h_in_1h", "mean_1h_over_30d")


def anomaly_view(X: np.ndarray, order: Sequence[str]) -> np.ndarray:
    """What the IsolationForest looks at (columns ``ANOMALY_VIEW``): features relative to the
    card's own habits. Raw counts and sums mostly tell heavy cards from light ones, which is
    not what makes a payment suspicious, so they enter only as ratios."""
    ix = {name: i for i, name in enumerate(order)}
    c = lambda name: X[:, ix[name]]  # noqa: E731
    with np.errstate(invalid="ignore", divide="ignore"):
        mean30 = c("amount_mean_30d")
        ratio = 1.0 + c("amount_zscore_30d") * c("amount_std_30d") / mean30
        share = c("txn_count_1h") / c("txn_count_24h")
        mean1h_rel = c("amount_sum_1h") / c("txn_count_1h") / mean30
    out = np.column_stack([ratio, c("amount_zscore_30d"), c("kmh_from_prev"), c("km_from_prev"),
                           c("merchant_first_seen"), c("device_first_seen"), share, mean1h_rel])
    out[~np.isfinite(out)] = np.nan
    return out


def combine(p: np.ndarray, a: np.ndarray, weight: float) -> np.ndarray:
    """Noisy-or of the classifier probability and the weighted anomaly: 1 - (1-p)(1-w a).

    >>> combine(np.array([0.0, 0.5, 1.0]), np.array([1.0, 0.0, 1.0]), 0.2).tolist()
    [0.2, 0.5, 1.0]
    """
    return p + weight * (1.0 - p) * a


def anomaly_from_raw(raw: np.ndarray, ref: np.ndarray, floor: float) -> np.ndarray:
    """Map raw anomaly scores to [0, 1] by their rank in ``ref`` (sorted), zero below ``floor``."""
    rank = np.interp(raw, ref, np.linspace(0.0, 1.0, len(ref)))
    if floor >= 1.0:
        return np.zeros_like(rank)
    return np.clip((rank - floor) / (1.0 - floor), 0.0, 1.0)


# -- registry (features/registry.py) --------------------------------------------------------
def load_model(path_or_registry, expected_hash: Optional[str] = None) -> RiskModel:
    """Load a fraud RiskModel from a version directory or a registry's promoted version (see
    features.registry.load_model)."""
    return _registry.load_model(path_or_registry, expected_hash, model_type=RiskModel, domain="fraud")
