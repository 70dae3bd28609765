"""Feature drift (training.drift) and `streamscore monitor fraud` (streamscore.monitor). Pure Python, no JVM.

The generator cases compute features with the production logic (``compute_features``) over
``generate_payments`` output: one seed is the reference (the "training" features), another seed
of the same generator is a same-distribution served log, and that seed with every amount tripled
is a shifted one.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from features.contracts import PAYMENT
from features.fraud import FRAUD_FEATURES
from tests.reference.card_history import compute_features
from features.synthetic import generate_payments, records
from streamscore.cli import main
from training import drift

N_EVENTS = 20_000  # 1000 cards; at 5000 events (250 cards) seeds differ by PSI ~0.1 on amount_mean_30d
AMOUNT_FEATURES = ("amount_sum_1h", "amount_sum_24h", "amount_mean_30d", "amount_std_30d")


def feature_rows(seed: int, amount_scale: float = 1.0) -> pd.DataFrame:
    events = generate_payments(N_EVENTS, seed=seed)
    events["amount"] = events["amount"] * amount_scale
    return pd.DataFrame(compute_features(records(events, PAYMENT)))


@pytest.fixture(scope="module")
def reference():
    return feature_rows(seed=1)


@pytest.fixture(scope="module")
def same_distribution():
    return feature_rows(seed=2)


@pytest.fixture(scope="module")
def shifted():
    return feature_rows(seed=2, amount_scale=3.0)


# ---------------------------------------------------------------------------- the index

def test_identical_samples_have_zero_psi(reference):
    rep = drift.psi_report(reference, reference.copy())
    assert list(rep["feature"]) == list(FRAUD_FEATURES.feature_names)
    assert rep["psi"].abs().max() < 1e-12
    assert set(rep["status"]) == {"ok"}
    assert not drift.should_retrain(rep)


def test_two_bin_psi_by_hand():
    # Reference: 0 0 0 0 0 0 1 1 1 1 -> deciles 0 (x6), 1 (x3); deduplicated and the cut at the
    #   maximum dropped: cut points [0], bins "<= 0" and "> 0" (+ null).
    # Served:    0 0 0 1 1 1 1 1 1 1
    #   shares ref (0.6, 0.4, 0), served (0.3, 0.7, 0); the empty null bin counts eps on both sides.
    #   PSI = (0.3 - 0.6) ln(0.3/0.6) + (0.7 - 0.4) ln(0.7/0.4) + 0
    #       = -0.3 * -0.693147 + 0.3 * 0.559616 = 0.207944 + 0.167885 = 0.375829
    ref = pd.DataFrame({"x": [0] * 6 + [1] * 4})
    srv = pd.DataFrame({"x": [0] * 3 + [1] * 7})
    rep = drift.psi_report(ref, srv, features={"x": "int64"})
    fb = rep.attrs["bins"]["x"]
    assert fb.labels == ("<= 0", "> 0", "null")
    assert fb.reference_shares == (0.6, 0.4, 0.0) and fb.served_shares == (0.3, 0.7, 0.0)
    assert rep.loc[0, "psi"] == pytest.approx(0.375829, abs=1e-6)
    assert rep.loc[0, "status"] == "drift"
    # symmetric, and the same via psi() on the shares
    assert drift.psi([0.3, 0.7], [0.6, 0.4]) == pytest.approx(0.375829, abs=1e-6)


def test_empty_bin_uses_epsilon():
    # served lands 10 % in a bin the reference never saw: 0.1 ln(0.1 / 1e-4) with eps = 1e-4 ...
    value = drift.psi([1.0, 0.0], [0.9, 0.1])
    expected = (0.9 - 1.0) * math.log(0.9 / 1.0) + (0.1 - 1e-4) * math.log(0.1 / 1e-4)
    assert value == pytest.approx(expected, rel=1e-12)
    assert value > 0.2


def test_discrete_feature_bins_are_deduplicated():
    ref = np.array([1] * 70 + [2] * 20 + [3] * 10, dtype=float)
    assert drift.cut_points(ref).tolist() == [1.0, 2.0]
    fb = drift.feature_bins("n", ref, ref)
    assert fb.labels == ("<= 1", "(1, 2]", "> 2", "null")
    assert fb.reference_counts == (70, 20, 10, 0)


def test_status_boundaries():
    rep = pd.DataFrame({"feature": list("abcd"), "psi": [0.099, 0.1, 0.25, 0.3]})
    assert [drift.status_of(v, threshold=0.25) for v in rep["psi"]] == ["ok", "watch", "drift", "drift"]
    assert [d["feature"] for d in drift.drifted(rep, 0.25)] == ["d", "c"]  # largest first
    with pytest.raises(ValueError, match="threshold"):
        drift.check_threshold(0.0)


# ---------------------------------------------------------------------------- generator cases

def test_same_generator_other_seed_stays_below_threshold(reference, same_distribution):
    rep = drift.psi_report(reference, same_distribution)
    worst = rep.loc[rep["psi"].idxmax()]
    assert worst["psi"] < drift.THRESHOLD, rep
    assert not drift.should_retrain(rep)
    assert drift.retrain_event(rep, FRAUD_FEATURES, "v0001", len(same_distribution), {}) is None
    assert drift.verdict(rep).startswith(("OK", "WATCH"))


def test_amounts_times_three_cross_the_threshold(reference, same_distribution, shifted):
    rep = drift.psi_report(reference, shifted).set_index("feature")
    for name in AMOUNT_FEATURES:
        assert rep.loc[name, "psi"] >= drift.THRESHOLD and rep.loc[name, "status"] == "drift", name
        assert rep.loc[name, "served_mean"] == pytest.approx(3 * same_distribution[name].mean(), rel=1e-9)
    # scale-free and non-amount features do not move more than between seeds
    for name in ("amount_zscore_30d", "txn_count_1h", "secs_since_prev", "merchant_first_seen"):
        assert rep.loc[name, "psi"] < drift.WATCH, name
    event = drift.retrain_event(rep.reset_index(), FRAUD_FEATURES, "v0007", len(shifted),
                                drift.time_span(shifted["event_time"]))
    assert event["type"] == "retrain_requested"
    assert event["feature_set"] == FRAUD_FEATURES.name
    assert event["definition_hash"] == FRAUD_FEATURES.definition_hash
    assert event["model_version"] == "v0007" and event["served_rows"] == N_EVENTS
    assert {d["feature"] for d in event["drifted"]} == set(AMOUNT_FEATURES)
    psis = [d["psi"] for d in event["drifted"]]
    assert psis == sorted(psis, reverse=True)
    assert event["served_span"]["from_ms"] == int(shifted["event_time"].min())
    json.dumps(event)  # a JSON record as it stands


def test_feature_turning_all_null_is_flagged(reference, same_distribution):
    served = same_distribution.copy()
    served["km_from_prev"] = np.nan  # declared nullable, normally ~5 % null
    served["txn_count_1h"] = pd.array([pd.NA] * len(served), dtype="Int64")  # declared never null
    served["merchant_first_seen"] = None  # a boolean
    rep = drift.psi_report(reference, served).set_index("feature")
    for name in ("km_from_prev", "txn_count_1h", "merchant_first_seen"):
        assert rep.loc[name, "status"] == "drift", name
        assert rep.loc[name, "psi"] > 5  # ~all mass moves into a bin that held ~0
        assert rep.loc[name, "served_null_rate"] == 1.0 and math.isnan(rep.loc[name, "served_mean"])
    assert rep.loc["amount_sum_1h", "status"] != "drift"
    assert {d["feature"] for d in drift.drifted(rep.reset_index())} == {"km_from_prev", "txn_count_1h",
                                                                        "merchant_first_seen"}


# ---------------------------------------------------------------------------- the CLI

def write_parts(df: pd.DataFrame, folder, parts: int = 2, in_progress: bool = False):
    """Feature rows as a folder of Parquet part files, like the Flink sinks write them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    schema = FRAUD_FEATURES.arrow_schema()
    cols = list(FRAUD_FEATURES.output_columns)
    if "ingest_ms" in df.columns:  # the served log's extra column
        cols.append("ingest_ms")
        schema = schema.append(pa.field("ingest_ms", pa.int64()))
    for i, chunk in enumerate(np.array_split(np.arange(len(df)), parts)):
        table = pa.Table.from_pandas(df.iloc[chunk][cols], schema=schema, preserve_index=False)
        pq.write_table(table, folder / f"part-{i}")
    if in_progress:  # a running sink's half-written file and a marker: must be skipped
        (folder / ".part-9.inprogress.0123").write_bytes(b"PAR1 not yet complete")
        (folder / "_SUCCESS").write_bytes(b"")
    return folder


def test_cli_writes_report_and_event_on_drift(tmp_path, capsys, reference, shifted):
    ref = write_parts(reference, tmp_path / "reference")
    served = write_parts(shifted.assign(ingest_ms=1_800_000_000_000), tmp_path / "served", parts=3,
                         in_progress=True)
    out, events = tmp_path / "monitor", tmp_path / "events"
    rc = main(["monitor", "fraud", "--served", str(served), "--reference", str(ref), "--out", str(out),
               "--events-to", f"json:{events}"])
    stdout = capsys.readouterr().out
    assert rc == 0  # drift is a finding, not an error
    assert "DRIFT:" in stdout and "amount_mean_30d" in stdout
    report = json.loads((out / "drift.json").read_text())
    assert report["retrain"] is True and report["served"]["rows"] == N_EVENTS and report["served"]["files"] == 3
    by_name = {f["feature"]: f for f in report["features"]}
    assert by_name["amount_mean_30d"]["status"] == "drift"
    assert len(by_name["amount_mean_30d"]["bins"]["labels"]) == 11  # 10 value bins + null
    assert (out / "psi.png").stat().st_size > 1000
    files = list(events.iterdir())
    assert len(files) == 1
    lines = files[0].read_text().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event == report["event"]
    assert event["type"] == "retrain_requested" and event["model_version"] is None
    assert {d["feature"] for d in event["drifted"]} >= set(AMOUNT_FEATURES)
    assert event["served_span"]["ingest_from_ms"] == 1_800_000_000_000
    for key in ("feature_set", "definition_hash", "served_rows", "created_at"):
        assert event[key]


def test_cli_no_drift_no_event(tmp_path, capsys, reference, same_distribution):
    ref = write_parts(reference, tmp_path / "reference", parts=1)
    served = write_parts(same_distribution, tmp_path / "served")
    events = tmp_path / "events"
    rc = main(["monitor", "fraud", "--served", str(served), "--reference", str(ref / "part-0"),
               "--out", str(tmp_path / "m"), "--events-to", f"json:{events}"])
    stdout = capsys.readouterr().out
    assert rc == 0 and "no retrain" in stdout
    report = json.loads((tmp_path / "m" / "drift.json").read_text())
    assert report["retrain"] is False and report["event"] is None
    assert not events.exists()


def test_cli_model_dir_gives_version_and_training_span(tmp_path, capsys, reference, shifted):
    from features.scoring import METADATA_FILE, MODEL_FILE

    registry = tmp_path / "models"
    vdir = registry / "v0003"
    vdir.mkdir(parents=True)
    (vdir / MODEL_FILE).write_bytes(b"")  # never unpickled by the monitor
    t = reference["event_time"].sort_values().to_numpy()
    cut = int(t[len(t) // 2])  # the model saw only the first half of the reference
    span = {"train": {"from_ms": int(t[0]), "to_ms": cut}}
    (vdir / METADATA_FILE).write_text(json.dumps({"model_version": "v0003", "training_span": span,
                                                  **FRAUD_FEATURES.metadata()}))
    (registry / "current").write_text("v0003\n")
    ref = write_parts(reference, tmp_path / "reference")
    served = write_parts(shifted, tmp_path / "served")
    rc = main(["monitor", "fraud", "--served", str(served), "--reference", str(ref), "--model-dir",
               str(registry), "--out", str(tmp_path / "m"), "--events-to", f"json:{tmp_path / 'ev'}"])
    captured = capsys.readouterr()
    assert rc == 0
    assert "outside model v0003's training span" in captured.err
    report = json.loads((tmp_path / "m" / "drift.json").read_text())
    assert report["model_version"] == "v0003" and report["event"]["model_version"] == "v0003"
    assert report["reference"]["rows"] == int((reference["event_time"] <= cut).sum())


@pytest.mark.parametrize("argv, needle", [
    (["--served", "/nonexistent/served", "--reference", "{ref}"], "no such file or folder"),
    (["--served", "{ref}", "--reference", "/nonexistent/ref.parquet"], "no such file or folder"),
    (["--served", "{empty}", "--reference", "{ref}"], "holds no Parquet part files"),
    (["--served", "{junk}", "--reference", "{ref}"], "is not a readable Parquet file"),
    (["--served", "{ref}", "--reference", "{ref}", "--threshold", "-1"], "threshold must be a number > 0"),
    (["--served", "{ref}", "--reference", "{ref}", "--events-to", "parquet:x"], "retrain events go to"),
    (["--served", "{ref}", "--reference", "{ref}", "--events-to", "s3:bucket"], "bad sink 's3:bucket'"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, reference, argv, needle):
    ref = write_parts(reference.head(500), tmp_path / "ref", parts=1)
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "part-0").write_text("not parquet")
    paths = {"ref": str(ref), "empty": str(tmp_path / "empty"), "junk": str(tmp_path / "junk")}
    argv = [a.format(**paths) for a in argv] + ["--out", str(tmp_path / "m")]
    if "--events-to" not in argv:
        argv += ["--events-to", "none"]
    rc = main(["monitor", "fraud", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert needle in err and len(err.splitlines()) == 1, err
    assert err.startswith("streamscore monitor: error: ")


def test_columns_missing_is_one_line(tmp_path, capsys, reference):
    import pyarrow as pa
    import pyarrow.parquet as pq

    ref = write_parts(reference.head(500), tmp_path / "ref", parts=1)
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pandas(reference.head(10).drop(columns=["km_from_prev"]), preserve_index=False), bad)
    rc = main(["monitor", "fraud", "--served", str(bad), "--reference", str(ref), "--out", str(tmp_path / "m"),
               "--events-to", "none"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "lacks columns ['km_from_prev']" in err and len(err.splitlines()) == 1
