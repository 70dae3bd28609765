"""Training the iot anomaly model (served by features.iot_model, which holds the model class).

``fit(features_df)`` learns, from ``IOT_FEATURES`` rows and without labels:

1. the global quantile grid of each view column (features.iot_model.VIEW: scale-free, each
   reading relative to its own sensor's last 24 h), pooled over every training row of every
   sensor: nothing is per sensor, so the model scores sensors it has never seen;
2. the threshold: the ``1 - anomaly_rate`` quantile of the training rows' scores
   (``ANOMALY_RATE`` = 1.4 %; labels, where present, are never read);
3. the alert policy the evaluation thins detections with (``ALERT_POLICY``), saved in the model.

``ANOMALY_RATE`` and ``ALERT_POLICY`` were chosen by leave-one-file-out NAB scores on the 55
NAB corpus files that are *not* the three of data/nab (training.iot_eval, protocol ``loo``):
rates 0.7-2.8 %, policies (cool-down/quiet) 12 h/6 h, 24 h/6 h, 24 h/12 h, 3 d/1 d; best 24 h/12 h at
1.4 % (NAB standard 48.7 on those 55 files). AlertPolicy's defaults (15 min/30 min/30 min) suit a
maintenance crew watching 5-minute readings; NAB counts every alert outside a window as a false
positive and only the first one inside, so a NAB-scored detector must keep alerts to about one per
incident per day: cool-down 24 h, and 12 h without an anomalous reading end an incident.

The registry layout and integrity checks are features.registry's (``save_model``).
"""
from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from features.alerts import AlertPolicy
from features.iot import IOT_FEATURES
from features.iot_model import LEVELS, VIEW, IotModel, load_iot_model, tail_rank, view_matrix  # noqa: F401
from features.registry import save_model

ANOMALY_RATE = 0.014
MIN_TRAIN_ROWS = 500  # per view column: fewer usable values make a 1100-level grid meaningless
HOUR_MS = 3_600_000
ALERT_POLICY = AlertPolicy(min_duration_ms=0, cooldown_ms=24 * HOUR_MS, quiet_ms=12 * HOUR_MS)


def _span(t: np.ndarray) -> dict:
    iso = lambda ms: datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")  # noqa: E731
    return {"from_ms": int(t.min()), "to_ms": int(t.max()), "from": iso(t.min()), "to": iso(t.max()),
            "rows": int(len(t))}


def fit(features_df: pd.DataFrame, feature_set=IOT_FEATURES, anomaly_rate: float = ANOMALY_RATE,
        alert_policy: AlertPolicy = ALERT_POLICY, min_rows: int = MIN_TRAIN_ROWS) -> IotModel:
    """An ``IotModel`` from feature rows (labels ignored); see the module doc for the steps."""
    if not 0.0 < anomaly_rate < 0.5:
        raise ValueError(f"anomaly_rate must be in (0, 0.5), got {anomaly_rate!r}")
    if not isinstance(alert_policy, AlertPolicy):
        raise ValueError(f"alert_policy must be a features.alerts.AlertPolicy, got {type(alert_policy).__name__}")
    missing = [c for c in feature_set.output_columns if c not in features_df.columns]
    if missing:
        raise ValueError(f"feature rows lack columns {missing}; expected {feature_set.name} "
                         f"v{feature_set.version} output columns")
    if features_df.empty:
        raise ValueError("no feature rows to train on")
    X = view_matrix(features_df)
    usable = np.isfinite(X).sum(axis=0)
    if usable.min() < min_rows:
        raise ValueError(f"need {min_rows} usable training rows per view column, found "
                         f"{dict(zip(VIEW, usable.tolist()))}")
    grids = np.vstack([np.quantile(X[np.isfinite(X[:, j]), j], LEVELS) for j in range(len(VIEW))])
    proto = IotModel(feature_order=list(feature_set.feature_names), feature_set=feature_set.metadata(),
                     grids=grids, threshold=1.0, threshold_rule={}, alert_policy=alert_policy)
    train_score, _ = proto.scores(features_df)
    q = 1.0 - anomaly_rate
    proto.threshold = float(max(np.quantile(train_score, q), LEVELS[1]))
    proto.threshold_rule = {
        "rule": "quantile of the training rows' scores; no labels used",
        "quantile": q, "anomaly_rate": anomaly_rate,
        "training_rows_at_or_above": int((train_score >= proto.threshold).sum()),
        "training_rows_scored": int(len(train_score))}
    t = pd.to_numeric(features_df["event_time"]).to_numpy(dtype=np.int64)
    sensors = features_df[["machine_id", "sensor_id"]].drop_duplicates() if "machine_id" in features_df else None
    proto.training_span = {"train": _span(t), "sensors": 0 if sensors is None else int(len(sensors))}
    return proto


def train_iot(features_df: pd.DataFrame, registry_dir, feature_set=IOT_FEATURES, anomaly_rate: float = ANOMALY_RATE,
              progress: bool = True):
    """Fit, register (not promote) and return (version_dir, model)."""
    t0 = time.monotonic()
    model = fit(features_df, feature_set, anomaly_rate)
    if progress:
        print(f"[1/2] fitted on {len(features_df)} rows of {model.training_span['sensors']} sensors: threshold "
              f"{model.threshold:.6f} ({model.threshold_rule['training_rows_at_or_above']} training rows at or "
              f"above) (+{time.monotonic() - t0:.1f}s)", file=sys.stderr, flush=True)
    version_dir = save_model(model, registry_dir)
    if progress:
        print(f"[2/2] saved {version_dir}", file=sys.stderr, flush=True)
    return Path(version_dir), model
