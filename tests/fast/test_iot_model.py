"""features.iot_model (the served iot anomaly model and its rules fallback), training.iot (fit),
the registry round trip, `streamscore train iot` / `evaluate iot`, and the causal NAB evaluation on
data/nab within stated bounds."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from features.alerts import AlertPolicy
from features.iot import IOT_FEATURES
from features.iot_model import (LEVELS, VIEW, ZSCORE_BOUND, IotModel, load_iot_model, rules_only, tail_rank,
                                view_matrix)
from features.registry import ModelIntegrityError, ModelMismatchError
from training.iot import ALERT_POLICY, ANOMALY_RATE, fit, train_iot

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
MIN5 = 300_000
HOUR = 3_600_000


def rows(machine: str, values, mean24=0.0, std24=1.0, ewma=None, t0=T0) -> pd.DataFrame:
    """Feature rows of one sensor: value_min_1h = value_max_1h = value, the 24 h mean/std given
    (so max_1h_above_24h = (value - mean24) / std24), ewma = the 24 h mean unless given."""
    n = len(values)
    v = np.asarray(values, float)
    df = pd.DataFrame({c: np.nan for c in IOT_FEATURES.output_columns}, index=range(n))
    df["event_id"] = [f"{machine}-{i:06d}" for i in range(n)]
    df["machine_id"], df["sensor_id"] = machine, "temperature"
    df["event_time"] = t0 + MIN5 * np.arange(n)
    df["value_min_1h"] = v
    df["value_max_1h"] = v
    df["value_mean_24h"] = mean24
    df["value_std_24h"] = std24
    df["value_ewma"] = mean24 if ewma is None else np.asarray(ewma, float)
    df["count_1h"] = 12
    return df


def served(df: pd.DataFrame) -> pd.DataFrame:
    """What udfs.engine.DeriveBatch hands the scorer: exactly IOT_FEATURES.feature_names, no keys."""
    return df[list(IOT_FEATURES.feature_names)]


def test_view_by_hand_and_std_floor():
    df = pd.DataFrame({"value_max_1h": [12.0, 100.5, np.nan], "value_min_1h": [7.0, 99.0, 1.0],
                       "value_ewma": [11.0, 100.0, 1.0], "value_mean_24h": [10.0, 100.0, 1.0],
                       "value_std_24h": [2.0, 0.0, 0.5]})
    X = view_matrix(df)
    # row 0: (12-10)/2 = 1, (10-7)/2 = 1.5, ewma (11-10)/2 = 0.5 and -0.5
    assert X[0].tolist() == [1.0, 1.5, 0.5, -0.5]
    # row 1: a flat 24 h (std 0): the scale is floored at 1e-3 * |100| = 0.1, so 0.5 above is 5 units
    assert X[1] == pytest.approx([5.0, 10.0, 0.0, 0.0])
    # row 2: a null max is no value, the others still are
    assert math.isnan(X[2, 0]) and X[2, 1:].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="value_ewma"):
        view_matrix(df.drop(columns=["value_ewma"]))


def test_tail_rank_by_hand():
    ref = np.array([0.0, 1.0, 1.0, 3.0])
    lv = np.array([0.0, 0.25, 0.5, 1.0])
    # share strictly below, read off the grid: 1.0 -> only the 0.0 entry below -> level 0.0;
    # 2.0 -> three entries below -> 0.5; beyond the largest -> 1.0
    assert tail_rank(np.array([0.0, 0.5, 1.0, 2.0, 3.0, 4.0]), ref, lv).tolist() == [0.0, 0.0, 0.0, 0.5, 0.5, 1.0]


def _model(threshold=0.99) -> IotModel:
    """A hand-made model: every view column's training values were uniform on [0, 10]."""
    grids = np.vstack([np.quantile(np.linspace(0, 10, 100_001), LEVELS)] * len(VIEW))
    return IotModel(feature_order=list(IOT_FEATURES.feature_names), feature_set=IOT_FEATURES.metadata(),
                    grids=grids, threshold=threshold, threshold_rule={"rule": "by hand"}, alert_policy=ALERT_POLICY)


def test_score_frame_by_hand_on_served_columns_only():
    m = _model()
    # grid entries are 0.0, 0.1, ... 9.9 (levels 0 .. 0.99), then steps of 1e-4 (levels 1e-5 apart);
    # rank = the level of the largest grid entry strictly below the value:
    #   5.01 -> entry 5.0 -> 0.50 (normal); 9.95335 -> entry 9.9533 -> 0.99533 (>= 0.99: alert)
    df = pd.concat([rows("a", [5.01, 9.95335, -9.95335]), rows("a", [0.0], ewma=[9.95335])], ignore_index=True)
    out = m.score_frame(served(df))
    assert list(out.columns) == ["score", "decision", "is_anomalous", "reasons"]
    assert out["score"].to_numpy() == pytest.approx([0.50, 0.99533, 0.99533, 0.99533], abs=1e-9)
    assert out["decision"].tolist() == ["normal", "alert", "alert", "alert"]
    assert out["is_anomalous"].tolist() == [False, True, True, True]
    assert out["reasons"].tolist() == ["", "max_1h_above_24h", "min_1h_below_24h", "ewma_above_24h"]
    # no identity columns are needed: a sensor nobody trained on is scored like any other
    other = m.score_frame(served(rows("never-seen-machine", [1e6 + 9953.35], mean24=1e6, std24=1e3)))
    assert other["decision"].tolist() == ["alert"] and other["score"][0] == pytest.approx(0.99533, abs=1e-9)
    # index kept, nulls are no evidence, a missing column is an error (ScoreBatch falls back to rules)
    odd = served(rows("a", [np.nan], mean24=np.nan, std24=np.nan))
    odd.index = [41]
    o = m.score_frame(odd)
    assert o.index.tolist() == [41] and o["score"].tolist() == [0.0] and o["reasons"].tolist() == [""]
    with pytest.raises(ValueError, match="value_std_24h"):
        m.score_frame(served(df).drop(columns=["value_std_24h"]))
    assert len(m.score_frame(served(df).iloc[:0])) == 0


def test_model_validation():
    with pytest.raises(ValueError, match="threshold"):
        _model(threshold=0.0)
    with pytest.raises(ValueError, match="AlertPolicy"):
        IotModel(feature_order=[], feature_set=IOT_FEATURES.metadata(), grids=_model().grids, threshold=0.9,
                 threshold_rule={}, alert_policy={"cooldown_ms": 0})
    with pytest.raises(ValueError, match="shape"):
        IotModel(feature_order=[], feature_set=IOT_FEATURES.metadata(), grids=np.zeros((2, 3)), threshold=0.9,
                 threshold_rule={}, alert_policy=ALERT_POLICY)


def test_rules_only_never_raises():
    df = pd.DataFrame({"value_zscore_1h": [ZSCORE_BOUND, -ZSCORE_BOUND - 1, ZSCORE_BOUND - 1e-9, np.nan, None],
                       "value_mean_1h": ["x", None, 1.0, 2.0, 3.0]}, index=[5, 6, 7, 8, 9])
    out = rules_only(df)
    assert out.index.tolist() == [5, 6, 7, 8, 9]
    assert out["decision"].tolist() == ["alert", "alert", "normal", "normal", "normal"]
    assert out["is_anomalous"].tolist() == [True, True, False, False, False]
    assert out["reasons"].tolist() == ["zscore_rule", "zscore_rule", "", "", ""]
    assert out["score"].tolist() == [0.9, 0.9, 0.0, 0.0, 0.0]
    # no column at all, an object column of text, an empty frame: all normal, no exception
    assert rules_only(pd.DataFrame(index=range(3)))["decision"].tolist() == ["normal"] * 3
    assert rules_only(pd.DataFrame({"value_zscore_1h": ["a", "7", None]}))["decision"].tolist() == \
        ["normal", "alert", "normal"]
    assert len(rules_only(pd.DataFrame(columns=["value_zscore_1h"]))) == 0


def test_fit_is_global_and_threshold_a_quantile_of_training_scores():
    rng = np.random.default_rng(3)
    # two sensors of very different level and spread: their scale-free views look alike
    a = rows("a", 50 + rng.standard_t(4, 5000), mean24=50.0, std24=1.0)
    b = rows("b", 5000 + 100 * rng.standard_t(4, 5000), mean24=5000.0, std24=100.0)
    df = pd.concat([a, b], ignore_index=True)
    m = fit(df, anomaly_rate=0.002)
    assert m.grids.shape == (len(VIEW), len(LEVELS)) and isinstance(m.alert_policy, AlertPolicy)
    s = m.score_frame(df)["score"].to_numpy()
    assert m.threshold == pytest.approx(np.quantile(s, 0.998))
    assert 0.001 <= float(np.mean(s >= m.threshold)) <= 0.004  # about 0.2 %, ties on the grid allowed
    assert m.threshold_rule["quantile"] == 0.998 and "no labels" in m.threshold_rule["rule"]
    # the same relative excursion scores the same on both sensors, and on a third nobody trained on
    probe = pd.concat([rows("a", [59.0], mean24=50.0), rows("b", [5900.0], mean24=5000.0, std24=100.0),
                       rows("c", [4.5], mean24=0.0, std24=0.5)], ignore_index=True)  # 9 std above, all three
    p = m.score_frame(served(probe))["score"].to_numpy()
    assert p[0] == p[1] == p[2] and p[0] >= m.threshold
    # labels are not read: adding them changes nothing
    df["is_anomaly"] = True
    assert fit(df, anomaly_rate=0.002).threshold == m.threshold
    with pytest.raises(ValueError, match="anomaly_rate"):
        fit(df, anomaly_rate=0.0)
    with pytest.raises(ValueError, match="lack columns"):
        fit(df.drop(columns=["value_ewma"]))
    with pytest.raises(ValueError, match="usable training rows"):
        fit(df.iloc[:100])
    with pytest.raises(ValueError, match="AlertPolicy"):
        fit(df, alert_policy={"quiet_ms": 1})


def test_save_load_metadata_and_refusals(tmp_path):
    rng = np.random.default_rng(1)
    df = rows("a", rng.normal(0, 1, 3000))
    vdir, model = train_iot(df, tmp_path / "reg", progress=False)
    meta = json.loads((vdir / "metadata.json").read_text())
    assert meta["definition_hash"] == IOT_FEATURES.definition_hash == model.definition_hash
    assert meta["feature_set"] == "iot_sensor_features" and meta["domain"] == "iot"
    assert meta["training_span"]["train"]["from_ms"] == T0
    assert meta["training_span"]["train"]["to_ms"] == T0 + MIN5 * 2999
    assert meta["training_span"]["train"]["rows"] == 3000
    assert meta["threshold"] == model.threshold and meta["threshold_rule"]["anomaly_rate"] == ANOMALY_RATE
    # the saved policy is an AlertPolicy's JSON: 0 / 24 h / 12 h (see training.iot for why)
    assert meta["alert_policy"] == {"min_duration_ms": 0, "cooldown_ms": 24 * HOUR, "quiet_ms": 12 * HOUR}
    back = load_iot_model(vdir, expected_hash=IOT_FEATURES.definition_hash)
    assert back.alert_policy == ALERT_POLICY
    pd.testing.assert_frame_equal(back.score_frame(served(df)), model.score_frame(df))
    with pytest.raises(ModelMismatchError, match="train iot"):
        load_iot_model(vdir, expected_hash="0000000000000000")
    (vdir / "model.joblib").write_bytes(b"not the pickle")
    with pytest.raises(ModelIntegrityError):
        load_iot_model(vdir)


def test_plugs_into_score_batch_unchanged(tmp_path):
    """udfs.scoring.ScoreBatch with the iot loader/rules: the model scores, a broken model falls back."""
    pytest.importorskip("pyflink")
    from udfs.scoring import ScoreBatch

    class Group:  # the metric group ScoreBatch.open asks for
        def counter(self, name):
            return type("C", (), {"inc": lambda self, n=1: None})()

    class Ctx:
        def get_metric_group(self):
            return Group()

    rng = np.random.default_rng(4)
    vdir, model = train_iot(rows("a", rng.normal(0, 1, 2000)), tmp_path / "reg", progress=False)
    feats = served(rows("a", [0.0, 50.0]))
    ingest = pd.Series([T0, T0])
    for path, fallback in ((str(vdir), False), (str(tmp_path / "nothing"), True)):
        sb = ScoreBatch(IOT_FEATURES.feature_names, path, IOT_FEATURES.definition_hash,
                        counts_dir=str(tmp_path / "counts"), loader=load_iot_model, rules=rules_only)
        sb.open(Ctx())
        out = sb.score(feats, ingest)
        sb.close()
        assert out["fallback"].tolist() == [fallback] * 2
        assert out["decision"].tolist() == (["normal", "normal"] if fallback else ["normal", "alert"])
        assert out["reasons"].tolist() == ([[], []] if fallback else [[], ["max_1h_above_24h"]])


def test_train_iot_command(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from streamscore.cli import main

    rng = np.random.default_rng(2)
    df = rows("a", rng.normal(0, 1, 1000))
    schema = IOT_FEATURES.arrow_schema()
    for fld in schema:  # columns the schema declares not null get a value
        if not fld.nullable and df[fld.name].isna().any():
            df[fld.name] = 0.0
    pq.write_table(pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False), tmp_path / "f.parquet")
    assert main(["train", "iot", "--features", str(tmp_path / "f.parquet"), "--model-dir", str(tmp_path / "m"),
                 "--quiet"]) == 0
    assert (tmp_path / "m" / "current").read_text().strip() == "v0001"
    assert "registered and promoted" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["train", "iot", "--features", "x", "--model-dir", "y", "--anomaly-rate", "2"])
    assert e.value.code == 2
    assert "--anomaly-rate" in capsys.readouterr().err


# --- NAB evaluation bounds (data/nab: 3 realKnownCause files, 7 windows, 381.8 days outside windows) ----
# Causal protocol "loo": each file scored by a model fitted (no labels) on the other two files only.
# Measured: NAB standard 18.83, reward_low_FP -52.50, reward_low_FN 45.89, 7/7 windows, 93 false alerts
# (0.244 per day). Stated bounds: standard within [12, 26], false alerts per day within [0.18, 0.31].
# This is BELOW Numenta HTM (52.47) and Twitter ADVec (33.85) re-scored on the same files.
# In-sample (fitted on the rows it scores; not comparable): standard 28.84, 0.115 false alerts/day.

@pytest.fixture(scope="module")
def nab_reports():
    from features.nab import nab_dir
    from training.iot_eval import evaluate_nab

    if not (nab_dir() / "data").is_dir():
        pytest.skip("no NAB sample")
    return {p: evaluate_nab(protocol=p, progress=False) for p in ("loo", "in-sample")}


def test_causal_nab_score_and_false_alert_rate_within_bounds(nab_reports):
    r = nab_reports["loo"]
    ov = r["overall"]
    assert r["protocol"] == "loo" and r["models"] == 3  # one model per held-out file
    assert 12.0 <= ov["nab"]["standard"] <= 26.0
    assert 0.18 <= ov["false_alerts_per_day"] <= 0.31
    assert ov["windows_detected"] >= 6 and ov["windows"] == 7
    # each fold's model scored only its held-out file: thresholds differ with the training files
    assert len({f["threshold"] for f in r["files"].values()}) == 3
    ins = nab_reports["in-sample"]
    assert ins["models"] == 1 and 22.0 <= ins["overall"]["nab"]["standard"] <= 35.0
    assert ins["overall"]["false_alerts_per_day"] <= 0.15


def test_nab_report_is_consistent(nab_reports):
    from features.alerts import run_alerts
    from training.iot_eval import detections, replay
    from training.nab_score import PROFILES, normalised

    r = nab_reports["loo"]
    files = r["files"]
    assert set(files) == {"ambient_temperature_system_failure", "cpu_utilization_asg_misconfiguration",
                          "machine_temperature_system_failure"}
    for p in PROFILES:  # overall = normalised over the files' own scores, not a mean of per-file scores
        assert r["overall"]["nab"][p] == pytest.approx(normalised(f["_scores"][p] for f in files.values()))
    for f in files.values():
        assert all(0 < e <= 1 for e in f["earliness"])
        assert len(f["earliness"]) == f["windows_detected"]
    assert r["throughput"]["readings"] == 48_012
    assert r["model"]["alert_policy"] == json.loads(ALERT_POLICY.to_json())
    # the evaluation's alerts are run_alerts under exactly the model's policy (not some other dict)
    _, feats, _ = replay()
    m = fit(feats)
    scored = m.score_frame(feats)
    mine = detections(feats, scored, m)
    frame = feats[["event_id", "machine_id", "sensor_id", "event_time"]].assign(
        score=scored["score"].to_numpy(), is_anomalous=scored["is_anomalous"].to_numpy(),
        reasons=scored["reasons"].to_numpy(), model_version="unsaved")
    ref, _ = run_alerts(frame[frame["is_anomalous"]], AlertPolicy(0, 24 * HOUR, 12 * HOUR))
    assert mine["event_id"].tolist() == ref["event_id"].tolist()
    assert len(mine) == nab_reports["in-sample"]["overall"]["alerts"]


def test_evaluate_iot_command(tmp_path, capsys):
    from features.nab import nab_dir
    from streamscore.cli import main

    if not (nab_dir() / "data").is_dir():
        pytest.skip("no NAB sample")
    assert main(["evaluate", "iot", "--nab", str(nab_dir()), "--protocol", "probation", "--quiet",
                 "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "Protocol: probation: causal" in text and "streamscore iot (probation)" in text
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["protocol"] == "probation" and rep["models"] == 1
    assert len(list((tmp_path / "out").glob("*.png"))) == 3
    with pytest.raises(SystemExit):
        main(["evaluate", "iot", "--nab", str(nab_dir()), "--protocol", "future"])
