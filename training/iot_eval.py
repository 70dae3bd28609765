"""Evaluate the iot anomaly model on NAB files replayed as sensor streams (pure, no Flink).

``evaluate_nab(root, model=None, protocol="loo")``: every file of a NAB-format folder (features.nab)
goes through the job's pandas backfill (intake, de-duplication, ``IOT_FEATURES``), is scored by a
model (features.iot_model), and the anomalous readings go through the alert stream
(``features.alerts.run_alerts``) with exactly the scoring model's saved ``alert_policy``. The
alerts are the detections NAB scores (``training.nab_score``). Which model scores which file is
the protocol (``PROTOCOLS``); labels are never read to fit anything:

* ``loo`` (causal, the default): each file is scored by a model fitted on the *other* files of
  the folder only, so nothing of the scored file, past or future, went into its model;
* ``probation`` (causal): one model fitted on the pooled probationary periods (NAB's first 15 %,
  which NAB lets a detector learn from) of all files; it scores every file;
* ``in-sample`` (transductive, NOT a fair comparison with NAB's online detectors): one model
  fitted on every row of every file, then scored on those same rows;
* a given ``model`` (``streamscore evaluate iot --model-dir``): causal if it was trained on other data.

Per file and overall: the NAB score (three profiles, normalised over the files evaluated),
windows detected, earliness of the first alert in each window (share of the window still ahead,
1 = at its left edge; hours after the window opened), false alerts per day outside windows (after
the probationary period). The published reference detectors are re-scored beside ours where the
files are those of the vendored fixture (training.iot_nab_reference).
"""
from __future__ import annotations

import sys
import time
from typing import Optional

import numpy as np
import pandas as pd

from features.iot import IOT_FEATURES
from training.nab_score import PROFILES, layout, normalised, probationary_length, score_detections

DAY_MS = 86_400_000
PROTOCOLS = {
    "loo": "causal, leave one file out: each file scored by a model fitted (unlabelled) on the other files only",
    "probation": "causal: one model fitted (unlabelled) on every file's probationary period (NAB's first 15 %)",
    "in-sample": "TRANSDUCTIVE (not comparable with NAB's online detectors): fitted on every row it then scores",
}


def _log(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def replay(root=None, names=None):
    """(events, features, seconds): NAB files as SENSOR events and their backfilled feature rows."""
    from features.backfill import backfill_frame
    from features.nab import load_nab

    events = load_nab(names, root=root)
    t0 = time.perf_counter()
    feats, dead = backfill_frame(IOT_FEATURES, events, now_ms=int(events["event_time"].max()) + 1,
                                 with_labels=True, source="nab")
    secs = time.perf_counter() - t0
    if len(dead):
        reasons = pd.Series(dead["reason"]).value_counts().to_dict() if "reason" in dead else {}
        raise ValueError(f"the backfill refused {len(dead)} NAB rows ({reasons}); the scores would not line up")
    return events, feats, secs


def file_rows(event_ids: pd.Series) -> np.ndarray:
    """Row number in its file (from 0) of ``nab-<stem>-<row from 1>`` ids."""
    return event_ids.astype(str).str.rsplit("-", n=1).str[-1].astype(np.int64).to_numpy() - 1


def detections(feats: pd.DataFrame, scored: pd.DataFrame, model) -> pd.DataFrame:
    """The alert stream over the scored readings under the model's saved ``alert_policy``
    (features.alerts), with each alert's file row."""
    from features.alerts import run_alerts

    frame = pd.DataFrame({"event_id": feats["event_id"].astype(str), "machine_id": feats["machine_id"].astype(str),
                          "sensor_id": feats["sensor_id"].astype(str),
                          "event_time": pd.to_numeric(feats["event_time"]).astype(np.int64),
                          "score": scored["score"].to_numpy(), "is_anomalous": scored["is_anomalous"].to_numpy(),
                          "reasons": scored["reasons"].to_numpy(), "model_version": model.model_version or "unsaved"})
    alerts, _ = run_alerts(frame[frame["is_anomalous"].to_numpy()], model.alert_policy)
    alerts["row"] = file_rows(alerts["event_id"])
    return alerts


def _outside_days(lay, t: np.ndarray) -> float:
    """Days of scored time outside windows (from the first scored row to the last)."""
    if lay.probation >= lay.n:
        return 0.0
    total = t[-1] - t[lay.probation]
    for left, right, last in lay.bounds:
        a, b = max(left, lay.probation), last
        if b >= a:
            total -= t[b] - t[a]
    return max(total, 0) / DAY_MS


def file_report(stem: str, t: np.ndarray, windows: list, det_rows: np.ndarray) -> dict:
    lay = layout(t, windows)
    d = np.zeros(lay.n, dtype=bool)
    d[det_rows] = True
    fs = {p: score_detections(lay, d, prof) for p, prof in PROFILES.items()}
    std = fs["standard"]
    early, lead_h = [], []
    scored_windows = [b for b in lay.bounds if b[2] >= lay.probation]
    for (left, right, _), first in zip(scored_windows, std.first_detection):
        if first >= 0:
            width = right - left + 1
            early.append((right - first + 1) / width)
            lead_h.append((t[first] - t[left]) / 3_600_000)
    days = _outside_days(lay, t)
    return {"file": stem, "rows": lay.n, "probation_rows": lay.probation, "windows": std.windows,
            "windows_detected": std.windows_detected, "alerts": int(d[lay.scored].sum()),
            "false_alerts": std.fp, "outside_days": days,
            "false_alerts_per_day": std.fp / days if days > 0 else float("nan"),
            "earliness": early, "hours_after_window_start": lead_h,
            "raw": {p: s.raw for p, s in fs.items()},
            "nab": {p: normalised([s]) if s.windows else float("nan") for p, s in fs.items()},
            "_scores": fs, "_layout": lay}


def probation_mask(feats: pd.DataFrame) -> np.ndarray:
    """True for rows in their file's NAB probationary period (first min(15 %, 750) rows)."""
    rows = file_rows(feats["event_id"])
    n = feats.groupby("machine_id")["event_id"].transform("size").to_numpy()
    limit = np.array([probationary_length(int(k)) for k in n]) if len(n) else np.zeros(0, int)
    return rows < limit


def fold_models(feats: pd.DataFrame, protocol: str, anomaly_rate: Optional[float] = None) -> dict:
    """{file stem: the model that scores it} under ``protocol`` (see the module doc)."""
    from training.iot import ANOMALY_RATE, fit

    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")
    rate = ANOMALY_RATE if anomaly_rate is None else anomaly_rate
    mids = feats["machine_id"].astype(str).to_numpy()
    stems = sorted(pd.unique(mids))
    if protocol == "in-sample":
        m = fit(feats, anomaly_rate=rate)
        return {s: m for s in stems}
    if protocol == "probation":
        m = fit(feats[probation_mask(feats)], anomaly_rate=rate)
        return {s: m for s in stems}
    if len(stems) < 2:
        raise ValueError("protocol loo needs at least 2 files (each is scored by a model of the others)")
    return {s: fit(feats[mids != s], anomaly_rate=rate) for s in stems}


def evaluate_nab(root=None, model=None, names=None, protocol: str = "loo", progress: bool = True,
                 anomaly_rate: Optional[float] = None) -> dict:
    """The whole evaluation as a dict (see the module doc); ``_``-keys hold objects for plots.
    ``model`` given: it scores every file (``protocol`` is then ignored)."""
    from features.nab import load_windows

    t_all = time.perf_counter()
    events, feats, backfill_s = replay(root, names)
    _log(progress, f"[1/4] backfilled {len(feats)} readings of {feats['machine_id'].nunique()} series "
                   f"in {backfill_s:.2f}s ({len(feats) / max(backfill_s, 1e-9):,.0f} readings/s)")
    mids = feats["machine_id"].astype(str).to_numpy()
    t0 = time.perf_counter()
    if model is not None:
        if model.definition_hash != IOT_FEATURES.definition_hash:
            raise ValueError(f"model {model.model_version} was trained on feature definition "
                             f"{model.definition_hash}, the replay computes {IOT_FEATURES.definition_hash}")
        protocol_text = f"model given ({model.model_version or '?'}): causal if it was trained on other data"
        models = {s: model for s in pd.unique(mids)}
    else:
        protocol_text = f"{protocol}: {PROTOCOLS.get(protocol, '?')}"
        models = fold_models(feats, protocol, anomaly_rate)
    fit_s = time.perf_counter() - t0
    distinct = list({id(m): m for m in models.values()}.values())
    _log(progress, f"[2/4] {protocol_text}; {len(distinct)} model(s) in {fit_s:.2f}s")
    score = np.zeros(len(feats))
    parts, score_s, alert_s = [], 0.0, 0.0
    for m in distinct:
        k = np.flatnonzero(np.isin(mids, [s for s, mm in models.items() if mm is m]))
        sub = feats.iloc[k]
        t0 = time.perf_counter()
        scored = m.score_frame(sub)
        score_s += time.perf_counter() - t0
        score[k] = scored["score"].to_numpy()
        t0 = time.perf_counter()
        parts.append(detections(sub, scored, m))
        alert_s += time.perf_counter() - t0
    alerts = pd.concat(parts, ignore_index=True)
    _log(progress, f"[3/4] scored in {score_s:.2f}s, {len(alerts)} alerts in {alert_s:.2f}s")

    windows = load_windows(root)
    rows = file_rows(feats["event_id"])
    times = pd.to_numeric(feats["event_time"]).to_numpy(dtype=np.int64)
    value_of = pd.to_numeric(events.set_index("event_id")["value"])
    files, series, unlabelled = {}, {}, []
    for stem in sorted(pd.unique(mids)):
        k = np.flatnonzero(mids == stem)
        order = k[np.argsort(rows[k], kind="stable")]
        t = times[order]
        if not np.array_equal(rows[order], np.arange(len(order))):
            raise ValueError(f"{stem}: the replay lost or reordered rows; cannot line up with NAB's rows")
        det = alerts.loc[alerts["machine_id"] == stem, "row"].to_numpy()
        series[stem] = {"t": t, "score": score[order], "threshold": models[stem].threshold, "alerts": det,
                        "value": value_of.loc[feats["event_id"].to_numpy()[order]].to_numpy(float)}
        if stem not in windows:
            unlabelled.append(stem)
            continue
        files[stem] = file_report(stem, t, windows[stem], det)
        files[stem]["threshold"] = models[stem].threshold
    if not files:
        raise ValueError("none of the files has labelled windows (labels/combined_windows.json)")
    overall = {p: normalised(f["_scores"][p] for f in files.values()) for p in PROFILES}
    fa = sum(f["false_alerts"] for f in files.values())
    days = sum(f["outside_days"] for f in files.values())
    early = [e for f in files.values() for e in f["earliness"]]
    hours = [h for f in files.values() for h in f["hours_after_window_start"]]
    n = len(feats)
    report = {
        "nab_dir": str(events.attrs.get("nab_dir", root)), "protocol": protocol if model is None else "model",
        "protocol_text": protocol_text, "model": distinct[0].metadata(), "models": len(distinct),
        "files": files, "unlabelled_files": unlabelled,
        "overall": {"nab": overall, "windows": sum(f["windows"] for f in files.values()),
                    "windows_detected": sum(f["windows_detected"] for f in files.values()),
                    "mean_earliness": float(np.mean(early)) if early else float("nan"),
                    "mean_hours_after_window_start": float(np.mean(hours)) if hours else float("nan"),
                    "false_alerts": fa, "outside_days": days,
                    "false_alerts_per_day": fa / days if days > 0 else float("nan"), "alerts": len(alerts)},
        "throughput": {"readings": n, "backfill_s": backfill_s, "fit_s": fit_s, "score_s": score_s,
                       "alerts_s": alert_s, "score_readings_per_s": n / max(score_s, 1e-9),
                       "backfill_and_score_readings_per_s": n / max(backfill_s + score_s, 1e-9),
                       "wall_s": time.perf_counter() - t_all},
        "_series": series, "_windows": windows,
    }
    report["reference"] = reference(files)
    _log(progress, f"[4/4] NAB standard {overall['standard']:.2f} over {len(files)} files ({report['protocol']}), "
                   f"{report['overall']['windows_detected']}/{report['overall']['windows']} windows, "
                   f"{report['overall']['false_alerts_per_day']:.3f} false alerts/day")
    return report


def reference(files: dict) -> Optional[dict]:
    """NAB's reference detectors re-scored on these files (None if the fixture lacks any of them)."""
    from training.iot_nab_reference import DISPLAY, load_reference, reference_table

    try:
        ref = load_reference()
    except FileNotFoundError:
        return None
    if not set(files) <= set(ref["files"]):
        return {"note": "the vendored NAB results cover only " + ", ".join(sorted(ref["files"]))
                        + "; corpus-wide published scores only", "corpus": ref["corpus_normalised"]}
    tab = reference_table(ref, {s: f["_layout"] for s, f in files.items()})
    return {d: {"name": DISPLAY.get(d, d), "nab": v["normalised"], "corpus": v["corpus"],
                "windows_detected": sum(v["files"][s]["standard"].windows_detected for s in files),
                "false_positives": sum(v["files"][s]["standard"].fp for s in files)} for d, v in tab.items()}
