"""Train the fraud risk model from labelled feature rows and register it.

Input: a DataFrame of feature rows (``FRAUD_FEATURES.output_columns``) with the ``is_fraud``
label, optionally ``fraud_pattern`` (for per-pattern recall in the report). Only the declared
features are used; the raw ``amount`` is not needed (the rules and the model read it through
``amount_sum_1h``/``amount_zscore_30d``).

Steps (``train_fraud``):

1. **Time-ordered split.** Rows are put in (event_time, event_id) order and cut at the
   event times found at 60 % and 80 % of the rows: train < t_val <= validation < t_test <= test.
   A boundary never falls inside one millisecond, so no split shares an event time with
   another, and no row of an earlier split is later than a row of a later one
   (``check_no_leakage``). Nothing is shuffled across time.
2. **IsolationForest** (``IFOREST_TREES`` trees) on the train rows (all of them: it is the
   label-free part), on ``features.scoring.anomaly_view`` (the features relative to the card's
   own habits), signed log1p, NaN replaced by the train medians.
3. **HistGradientBoostingClassifier** on the train rows and all declared features, NaN handled
   natively, fraud rows weighted up (``class_weight``: balanced, capped at
   ``MAX_POSITIVE_WEIGHT``); early stopping on a random 15 % of the train rows (inside the train
   period, so nothing crosses into validation or test).
4. **Combine** ``score = 1 - (1 - p)(1 - w a)`` (see ``features.scoring.RiskModel``): ``w`` is
   the largest of ``ANOMALY_WEIGHTS`` whose validation PR-AUC is within ``WEIGHT_TOLERANCE`` of
   the best. The label-free detector is the only part that can flag a pattern the labels never
   showed, which validation cannot measure, so it is kept as strong as validation allows.
5. **Thresholds on validation**: ``block`` is the lowest score at which precision is still
   >= ``block_precision`` (0.9) with at least ``MIN_BLOCKED`` frauds caught; ``step_up`` is the
   highest score at which recall reaches ``step_up_recall`` (0.8), or, where ``block`` already
   reaches that, half of the fraud ``block`` misses; never so low that the flagged share
   (step_up + block) of validation traffic exceeds ``max_flag_rate`` (2 %).
6. **Test evaluation** of what is served (``RiskModel.score_frame``: model + rules): PR-AUC and
   ROC-AUC of the score, precision/recall of ``block`` and of ``step_up-or-block``, decision
   mix, per-pattern recall, per-rule hits; the model alone for comparison.
7. **Register**: ``save_model`` writes ``vNNNN/``; ``report.md``, ``pr_curve.png`` and
   ``roc_curve.png`` are written next to the model. Promotion is the caller's choice.
"""
from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from features.fraud import FRAUD_FEATURES
from features.scoring import (ANOMALY_VIEW, BLOCK, DECISIONS, MODEL_REASON, RULES, STEP_UP, RiskModel,
                              combine, save_model)

LABEL = "is_fraud"
PATTERN = "fraud_pattern"
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
ANOMALY_WEIGHTS = (0.0, 0.05, 0.1, 0.2)
WEIGHT_TOLERANCE = 0.005
ANOMALY_FLOOR = 0.95  # only the most anomalous 5 % of training-like traffic adds risk
ANOMALY_REF_POINTS = 2001
IFOREST_TREES = 64  # 100 adds ~2 ms per 1000-row batch for no measurable gain in the served score
MAX_POSITIVE_WEIGHT = 50.0
MIN_BLOCKED = 5
BLOCK_PRECISION = 0.9
STEP_UP_RECALL = 0.8
MAX_FLAG_RATE = 0.02
TRAIN_THREADS = 1  # OpenMP threads; more is slower on a busy 2-core box (spin-waits)


class _Steps:
    """Numbered step lines with timings on stderr (training takes a while)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.n, self.t0 = total, enabled, 0, time.monotonic()
        self.t = self.t0

    def __call__(self, text: str) -> None:
        now = time.monotonic()
        self.n += 1
        if self.enabled:
            print(f"[{self.n}/{self.total}] {text} (+{now - self.t:.1f}s)", file=sys.stderr, flush=True)
        self.t = now


# -- input and split -----------------------------------------------------------------------

def prepare(features_df: pd.DataFrame, feature_set=FRAUD_FEATURES) -> pd.DataFrame:
    """Check the columns, drop unlabelled rows, order by (event_time, event_id)."""
    need = list(feature_set.output_columns) + [LABEL]
    missing = [c for c in need if c not in features_df.columns]
    if missing:
        raise ValueError(f"feature rows lack columns {missing}; expected {feature_set.name} "
                         f"v{feature_set.version} output columns plus {LABEL!r}")
    keep = need + ([PATTERN] if PATTERN in features_df.columns else [])
    df = features_df[keep]
    labelled = df[LABEL].notna()
    df = df[labelled].copy()
    if df.empty:
        raise ValueError(f"no labelled rows ({LABEL} is null everywhere)")
    values = set(pd.unique(df[LABEL].astype(object)).tolist())
    if not values <= {True, False}:  # 0/1 compare equal to False/True; "no" or 2 do not
        raise ValueError(f"{LABEL} must be boolean (or 0/1), found values like {sorted(map(repr, values))[:5]}")
    df[LABEL] = df[LABEL].astype(bool)
    df = df.sort_values(["event_time", "event_id"], kind="stable").reset_index(drop=True)
    df.attrs["unlabelled_dropped"] = int((~labelled).sum())
    return df


def time_split(df: pd.DataFrame, fractions=SPLIT_FRACTIONS) -> dict:
    """{"train"|"validation"|"test": row positions} of a frame sorted by event_time.

    Cut at the event times found at the cumulative row fractions; rows sharing the cut time
    all go to the later split.
    """
    t = df["event_time"].to_numpy()
    if len(t) and np.any(np.diff(t) < 0):
        raise ValueError("time_split needs rows sorted by event_time")
    n = len(t)
    c1, c2 = np.cumsum(fractions)[:2]
    t_val, t_test = t[min(int(n * c1), n - 1)], t[min(int(n * c2), n - 1)]
    i_val, i_test = np.searchsorted(t, t_val, "left"), np.searchsorted(t, t_test, "left")
    splits = {"train": np.arange(0, i_val), "validation": np.arange(i_val, i_test), "test": np.arange(i_test, n)}
    for name, idx in splits.items():
        if len(idx) == 0:
            raise ValueError(f"{name} split is empty: too few distinct event times ({n} rows)")
    return splits


def check_no_leakage(df: pd.DataFrame, splits: dict) -> None:
    """Every train time < every validation time < every test time; the splits are disjoint."""
    t = df["event_time"].to_numpy()
    order = ["train", "validation", "test"]
    for a, b in zip(order, order[1:]):
        if t[splits[a]].max() >= t[splits[b]].min():
            raise AssertionError(f"time leakage: {a} reaches {t[splits[a]].max()}, {b} starts {t[splits[b]].min()}")
    ids = np.concatenate([splits[s] for s in order])
    if len(np.unique(ids)) != len(ids):
        raise AssertionError("splits overlap")


# -- metrics -------------------------------------------------------------------------------

def precision_recall_at(y: np.ndarray, flagged: np.ndarray) -> dict:
    tp = int(np.sum(flagged & y))
    n_flag, n_pos = int(flagged.sum()), int(y.sum())
    return {"precision": tp / n_flag if n_flag else float("nan"),
            "recall": tp / n_pos if n_pos else float("nan"),
            "flagged": n_flag, "true_positives": tp, "rate": n_flag / len(y) if len(y) else float("nan")}


def curve_metrics(y: np.ndarray, score: np.ndarray) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    if y.all() or not y.any():
        return {"pr_auc": float("nan"), "roc_auc": float("nan")}
    return {"pr_auc": float(average_precision_score(y, score)), "roc_auc": float(roc_auc_score(y, score))}


def choose_thresholds(y: np.ndarray, score: np.ndarray, block_precision=BLOCK_PRECISION,
                      step_up_recall=STEP_UP_RECALL, max_flag_rate=MAX_FLAG_RATE) -> tuple:
    """(thresholds, notes) from validation labels and scores; see the module doc (step 5)."""
    notes = []
    order = np.argsort(-score, kind="stable")
    s, yy = score[order], y[order].astype(np.int64)
    # candidate cut k: flag the top k rows; only cut where the next score differs
    tp = np.cumsum(yy)
    k = np.arange(1, len(s) + 1)
    distinct = np.r_[s[1:] != s[:-1], True]
    prec, rec = tp / k, tp / max(int(yy.sum()), 1)

    ok = distinct & (prec >= block_precision) & (tp >= MIN_BLOCKED)
    if ok.any():
        kb = int(np.flatnonzero(ok).max())
        block = float(s[kb])
    else:
        block = 1.0
        notes.append(f"no validation score reaches precision {block_precision} with {MIN_BLOCKED}+ frauds; "
                     f"block only at score 1.0 (rules still block)")
        kb = -1

    if kb >= 0 and rec[kb] >= step_up_recall:
        target = rec[kb] + (1.0 - rec[kb]) / 2
        notes.append(f"block alone reaches recall {rec[kb]:.3f} on validation; step_up aims at {target:.3f}")
        step_up_recall = target
    ok = distinct & (rec >= step_up_recall - 1e-12)
    ku = int(np.flatnonzero(ok).min()) if ok.any() else len(s) - 1
    max_k = max(int(max_flag_rate * len(s)) - 1, 0)
    if ku > max_k:
        notes.append(f"recall {step_up_recall} needs {ku + 1} of {len(s)} validation rows flagged "
                     f"({(ku + 1) / len(s):.2%}); capped at {max_flag_rate:.0%} of traffic "
                     f"(recall there {rec[max_k]:.3f})")
        cand = np.flatnonzero(distinct[: max_k + 1])
        ku = int(cand.max()) if len(cand) else 0
    step_up = float(s[ku])
    if step_up > block:
        step_up = block
    return {STEP_UP: step_up, BLOCK: block}, notes


def decision_mix(decisions: pd.Series) -> dict:
    counts = decisions.value_counts()
    return {d: float(counts.get(d, 0) / len(decisions)) if len(decisions) else 0.0 for d in DECISIONS}


# -- training ------------------------------------------------------------------------------

def _span(t: np.ndarray) -> dict:
    iso = lambda ms: datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")  # noqa: E731
    return {"from_ms": int(t.min()), "to_ms": int(t.max()), "from": iso(t.min()), "to": iso(t.max()),
            "rows": int(len(t))}


def _fit_iforest(Xtr: np.ndarray, order: list, seed: int):
    from sklearn.ensemble import IsolationForest

    from features.scoring import _signed_log1p, anomaly_view

    Z = _signed_log1p(anomaly_view(Xtr, order))
    fill = np.nanmedian(Z, axis=0)
    fill = np.where(np.isnan(fill), 0.0, fill)  # a column null everywhere in train
    Z = np.where(np.isnan(Z), fill, Z)
    forest = IsolationForest(n_estimators=IFOREST_TREES, max_samples=256, random_state=seed, n_jobs=1).fit(Z.astype(np.float32))
    return forest, fill


def _fit_classifier(Xtr: np.ndarray, ytr: np.ndarray, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    pos = int(ytr.sum())
    if pos == 0:
        raise ValueError("no fraud in the train split; need labelled fraud to train the classifier")
    w_pos = min((len(ytr) - pos) / pos, MAX_POSITIVE_WEIGHT)
    clf = HistGradientBoostingClassifier(
        learning_rate=0.1, max_iter=300, max_leaf_nodes=31, min_samples_leaf=20, l2_regularization=1.0,
        early_stopping=True, validation_fraction=0.15, n_iter_no_change=20, scoring="loss",
        class_weight={False: 1.0, True: w_pos}, random_state=seed)
    return clf.fit(Xtr, ytr), w_pos


def train_fraud(features_df: pd.DataFrame, registry_dir, seed: int = 0, progress: bool = True,
                feature_set=FRAUD_FEATURES, block_precision: float = BLOCK_PRECISION,
                step_up_recall: float = STEP_UP_RECALL, max_flag_rate: float = MAX_FLAG_RATE,
                threads: Optional[int] = TRAIN_THREADS):
    """Train, evaluate and register a model; returns (version_dir, report dict). Not promoted.

    ``threads`` caps the OpenMP/BLAS threads while training (None: the libraries' default).
    """
    import sklearn.ensemble  # noqa: F401  (load its OpenMP runtime before limiting it)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        return _train(features_df, registry_dir, seed, progress, feature_set, block_precision,
                      step_up_recall, max_flag_rate)


def _train(features_df, registry_dir, seed, progress, feature_set, block_precision, step_up_recall,
           max_flag_rate):
    import sklearn

    step = _Steps(8, progress)
    df = prepare(features_df, feature_set)
    splits = time_split(df)
    check_no_leakage(df, splits)
    y_all = df[LABEL].to_numpy()
    t_all = df["event_time"].to_numpy()
    for name, idx in splits.items():
        if not y_all[idx].any():
            raise ValueError(f"no fraud in the {name} split ({len(idx)} rows); need more labelled data")
    step(f"split {len(df)} rows by time: " + ", ".join(
        f"{k} {len(v)} ({int(y_all[v].sum())} fraud)" for k, v in splits.items()))

    order = list(feature_set.feature_names)
    proto = RiskModel(feature_order=order, feature_set=feature_set.metadata(), classifier=None, iforest=None,
                      iforest_fill=np.zeros(len(ANOMALY_VIEW)), anomaly_ref=np.linspace(0, 1, 2), anomaly_weight=0.0,
                      anomaly_floor=ANOMALY_FLOOR, thresholds={STEP_UP: 0.5, BLOCK: 0.9})
    X_all = proto.matrix(df)
    tr, va, te = splits["train"], splits["validation"], splits["test"]

    forest, fill = _fit_iforest(X_all[tr], order, seed)
    proto.iforest, proto.iforest_fill = forest, fill
    raw_tr = proto.raw_anomaly(X_all[tr])
    proto.anomaly_ref = np.quantile(raw_tr, np.linspace(0, 1, ANOMALY_REF_POINTS))
    step(f"fitted IsolationForest on {len(tr)} train rows")

    clf, w_pos = _fit_classifier(X_all[tr], y_all[tr], seed)
    proto.classifier = clf
    step(f"fitted HistGradientBoosting ({clf.n_iter_} iterations, fraud weight {w_pos:.1f})")

    # blend weight on validation
    p_va = proto.fraud_probability(X_all[va])
    a_va = proto.anomaly(X_all[va])
    y_va = y_all[va]
    weight_pr = {w: curve_metrics(y_va, combine(p_va, a_va, w))["pr_auc"] for w in ANOMALY_WEIGHTS}
    top = max(weight_pr.values())
    best = max(w for w, v in weight_pr.items() if v >= top - WEIGHT_TOLERANCE)
    proto.anomaly_weight = float(best)
    step("anomaly weight " + f"{best} (validation PR-AUC by weight: "
         + ", ".join(f"{w}: {v:.3f}" for w, v in weight_pr.items()) + ")")

    s_va = combine(p_va, a_va, best)
    thresholds, notes = choose_thresholds(y_va, s_va, block_precision, step_up_recall, max_flag_rate)
    proto.thresholds = thresholds
    step(f"thresholds on validation: step_up >= {thresholds[STEP_UP]:.4f}, block >= {thresholds[BLOCK]:.4f}")

    test_df = df.iloc[te]
    t0 = time.perf_counter()
    served = proto.score_frame(test_df)
    score_secs = time.perf_counter() - t0
    y_te = y_all[te]
    X_te = X_all[te]
    p_te = proto.fraud_probability(X_te)
    a_te = proto.anomaly(X_te)
    model_te = combine(p_te, a_te, best)
    report = evaluate(test_df, y_te, served, model_te, p_te, a_te, thresholds)
    report["scoring_rows_per_sec_test"] = len(te) / score_secs if score_secs > 0 else float("nan")
    step(f"evaluated on {len(te)} test rows: PR-AUC {report['served']['pr_auc']:.3f}")

    report.update({
        "feature_set": feature_set.metadata(),
        "seed": seed,
        "rows": int(len(df)),
        "unlabelled_dropped": df.attrs.get("unlabelled_dropped", 0),
        "splits": {name: dict(_span(t_all[idx]), fraud=int(y_all[idx].sum())) for name, idx in splits.items()},
        "thresholds": thresholds,
        "threshold_policy": {"block_precision": block_precision, "step_up_recall": step_up_recall,
                             "max_flag_rate": max_flag_rate, "min_blocked": MIN_BLOCKED},
        "threshold_notes": notes,
        "validation": {"pr_auc_by_anomaly_weight": {str(k): v for k, v in weight_pr.items()},
                       "anomaly_weight": best, **curve_metrics(y_va, s_va)},
        "classifier": {"n_iter": int(clf.n_iter_), "fraud_weight": w_pos},
        "sklearn_version": sklearn.__version__,
    })
    proto.metrics = {
        "test_pr_auc": report["served"]["pr_auc"], "test_roc_auc": report["served"]["roc_auc"],
        "test_model_pr_auc": report["model"]["pr_auc"], "test_model_roc_auc": report["model"]["roc_auc"],
        "test_block": report["at_block"], "test_step_up_or_block": report["at_step_up"],
        "test_decision_mix": report["decision_mix"], "test_per_pattern_recall": report.get("per_pattern"),
        "validation_pr_auc": report["validation"]["pr_auc"],
    }
    proto.training_span = {name: report["splits"][name] for name in ("train", "validation", "test")}
    version_dir = save_model(proto, registry_dir)
    report["model_version"] = proto.model_version
    report["version_dir"] = str(version_dir)
    step(f"saved {version_dir}")

    write_plots(version_dir, y_te, {"served (model + rules)": served["score"].to_numpy(),
                                    "model": model_te, "classifier only": p_te, "isolation forest only": a_te},
                thresholds)
    (Path(version_dir) / "report.md").write_text(render_report(report))
    step("wrote report.md, pr_curve.png, roc_curve.png")
    if progress:
        print(summary_line(report), flush=True)
    return Path(version_dir), report


def evaluate(test_df: pd.DataFrame, y: np.ndarray, served: pd.DataFrame, model_score: np.ndarray,
             p: np.ndarray, a: np.ndarray, thresholds: dict) -> dict:
    """Test metrics of the served frame (model + rules) and of its parts."""
    dec = served["decision"].to_numpy()
    out = {
        "test_rows": int(len(y)), "test_fraud": int(y.sum()),
        "served": curve_metrics(y, served["score"].to_numpy()),
        "model": curve_metrics(y, model_score),
        "classifier_only": curve_metrics(y, p),
        "isolation_forest_only": curve_metrics(y, a),
        "at_block": precision_recall_at(y, dec == BLOCK),
        "at_step_up": precision_recall_at(y, dec != "approve"),
        "model_at_block": precision_recall_at(y, model_score >= thresholds[BLOCK]),
        "model_at_step_up": precision_recall_at(y, model_score >= thresholds[STEP_UP]),
        "decision_mix": decision_mix(served["decision"]),
    }
    if PATTERN in test_df.columns:
        pat = test_df[PATTERN].astype(object).where(test_df[PATTERN].notna(), "").to_numpy()
        per = {}
        for name in sorted({x for x in pat[y] if isinstance(x, str) and x}):
            m = y & (pat == name)
            per[name] = {"frauds": int(m.sum()), "recall_step_up_or_block": float(np.mean(dec[m] != "approve")),
                         "recall_block": float(np.mean(dec[m] == BLOCK))}
        out["per_pattern"] = per
    reasons = served["reasons"].to_numpy()
    rules = {}
    for code in [r.reason for r in RULES] + [MODEL_REASON]:
        hit = np.array([code in str(r).split(",") for r in reasons], dtype=bool)
        rules[code] = {"fired": int(hit.sum()), "precision": float(y[hit].mean()) if hit.any() else float("nan"),
                       "recall": float(np.mean(hit[y])) if y.any() else float("nan")}
    out["reasons"] = rules
    return out


# -- outputs -------------------------------------------------------------------------------

def write_plots(version_dir, y: np.ndarray, scores: dict, thresholds: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    vdir = Path(version_dir)
    fig, ax = plt.subplots(figsize=(6, 5))
    for label, s in scores.items():
        prec, rec, _ = precision_recall_curve(y, s)
        ax.plot(rec, prec, label=f"{label} (AP {average_precision_score(y, s):.3f})")
    served = next(iter(scores.values()))
    for name, thr in thresholds.items():
        pr = precision_recall_at(y, served >= thr)
        ax.plot([pr["recall"]], [pr["precision"]], "o", label=f"{name} >= {thr:.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, test split", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(vdir / "pr_curve.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 5))
    for label, s in scores.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{label} (AUC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test split")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(vdir / "roc_curve.png", dpi=100)
    plt.close(fig)


def summary_line(report: dict) -> str:
    mix = report["decision_mix"]
    return (f"model {report.get('model_version', '?')}: test PR-AUC {report['served']['pr_auc']:.3f} "
            f"(model alone {report['model']['pr_auc']:.3f}), ROC-AUC {report['served']['roc_auc']:.3f}; "
            f"block precision {report['at_block']['precision']:.3f} recall {report['at_block']['recall']:.3f}; "
            f"decisions approve {mix['approve']:.2%} / step_up {mix['step_up']:.2%} / block {mix['block']:.2%}")


def _f(x, pct=False) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n/a"
    return f"{x:.2%}" if pct else f"{x:.3f}"


def render_report(r: dict) -> str:
    fs = r["feature_set"]
    lines = [
        f"# Fraud model {r.get('model_version', '')}",
        "",
        f"Feature set `{fs['feature_set']}` v{fs['version']}, definition hash `{fs['definition_hash']}`; "
        f"sklearn {r['sklearn_version']}; seed {r['seed']}.",
        "",
        "## Data (time-ordered split, no shuffling across time)",
        "",
        "| split | rows | fraud | from | to |",
        "|---|---:|---:|---|---|",
    ]
    for name, s in r["splits"].items():
        lines.append(f"| {name} | {s['rows']} | {s['fraud']} | {s['from']} | {s['to']} |")
    if r.get("unlabelled_dropped"):
        lines.append(f"\n{r['unlabelled_dropped']} unlabelled rows dropped.")
    pol = r["threshold_policy"]
    th = r["thresholds"]
    lines += [
        "",
        "## Model",
        "",
        f"score = 1 - (1 - p) * (1 - w * a), p = P(fraud) from HistGradientBoosting, a = anomaly "
        f"(IsolationForest) in [0, 1], w = {r['validation']['anomaly_weight']} (largest weight within "
        f"{WEIGHT_TOLERANCE} of the best validation PR-AUC: "
        + ", ".join(f"w={k}: {_f(v)}" for k, v in r["validation"]["pr_auc_by_anomaly_weight"].items()) + ").",
        f"Classifier: {r['classifier']['n_iter']} boosting iterations, fraud rows weighted "
        f"{r['classifier']['fraud_weight']:.1f}.",
        "",
        "## Thresholds (chosen on validation)",
        "",
        f"- block: score >= {th[BLOCK]:.4f} (lowest score with precision >= {pol['block_precision']} "
        f"and >= {pol['min_blocked']} frauds caught)",
        f"- step_up: score >= {th[STEP_UP]:.4f} (highest score reaching recall {pol['step_up_recall']}, "
        f"flagging at most {pol['max_flag_rate']:.0%} of traffic)",
        "- rules escalate on top (see features/scoring.py RULES)",
    ]
    for n in r["threshold_notes"]:
        lines.append(f"- note: {n}")
    lines += [
        "",
        f"## Test ({r['test_rows']} rows, {r['test_fraud']} fraud)",
        "",
        "| scorer | PR-AUC | ROC-AUC |",
        "|---|---:|---:|",
    ]
    for key, label in (("served", "served (model + rules)"), ("model", "model (blend)"),
                       ("classifier_only", "classifier only"), ("isolation_forest_only", "isolation forest only")):
        lines.append(f"| {label} | {_f(r[key]['pr_auc'])} | {_f(r[key]['roc_auc'])} |")
    lines += ["", "| decision cut | precision | recall | flagged | share of traffic |", "|---|---:|---:|---:|---:|"]
    for key, label in (("at_block", "served: block"), ("at_step_up", "served: step_up or block"),
                       ("model_at_block", "model alone: >= block"), ("model_at_step_up", "model alone: >= step_up")):
        m = r[key]
        lines.append(f"| {label} | {_f(m['precision'])} | {_f(m['recall'])} | {m['flagged']} | {_f(m['rate'], True)} |")
    mix = r["decision_mix"]
    lines += ["", "Decision mix: " + ", ".join(f"{d} {_f(mix[d], True)}" for d in DECISIONS) + "."]
    if r.get("per_pattern"):
        lines += ["", "| pattern | frauds | recall (step_up or block) | recall (block) |", "|---|---:|---:|---:|"]
        for name, m in r["per_pattern"].items():
            lines.append(f"| {name} | {m['frauds']} | {_f(m['recall_step_up_or_block'])} | {_f(m['recall_block'])} |")
    lines += ["", "| reason code | fired | precision | recall |", "|---|---:|---:|---:|"]
    for code, m in r["reasons"].items():
        lines.append(f"| {code} | {m['fired']} | {_f(m['precision'])} | {_f(m['recall'])} |")
    lines += ["", "![precision-recall](pr_curve.png)", "", "![ROC](roc_curve.png)", ""]
    return "\n".join(lines)
