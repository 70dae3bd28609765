"""The job commands refuse bad input before any JVM starts: one line, exit code 2."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from streamscore.cli import main


def run(capsys, *argv):
    rc = main(list(argv))
    err = capsys.readouterr().err.strip()
    return rc, err


@pytest.mark.parametrize("argv, needle", [
    (["run", "fraud", "--start", "yesterday"], "bad position 'yesterday'"),
    (["run", "fraud", "--until", "offsets:0"], "bad position"),
    (["run", "fraud", "--decisions", "s3:bucket"], "bad sink 's3:bucket'"),
    (["run", "fraud", "--topic", "t", "--input", "x.parquet"], "not both"),
    (["run", "fraud", "-p", "0"], "parallelism must be >= 1"),
    (["run", "fraud", "--from-savepoint", "/nonexistent/sp"], "does not exist"),
    (["run", "fraud", "--max-disorder-ms", "-1"], "max_disorder_ms must be >= 0"),
    (["run", "fraud", "-D", "novalue"], "-D takes KEY=VALUE"),
    (["backfill", "fraud", "--input", "/nonexistent.parquet", "--out", "/tmp/x"], "does not exist"),
])
def test_bad_job_arguments_are_one_line(capsys, argv, needle):
    rc, err = run(capsys, *argv)
    assert rc == 2
    assert needle in err and len(err.splitlines()) == 1, err


def test_unknown_option_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "fraud", "--frobnicate"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unrecognized arguments: --frobnicate" in err[0]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A real, small trained model registry (about 5 s of training)."""
    import pandas as pd

    from tests.reference.card_history import compute_features
    from features.contracts import PAYMENT
    from features.scoring import promote
    from features.synthetic import generate_payments, records
    from training.fraud import train_fraud

    events = generate_payments(30_000, seed=3)
    feats = pd.DataFrame(compute_features(records(events, PAYMENT)))
    feats = feats.merge(events[["event_id", "is_fraud", "fraud_pattern"]], on="event_id")
    reg = tmp_path_factory.mktemp("models")
    version_dir, _ = train_fraud(feats, reg, seed=0, progress=False)
    promote(reg, version_dir.name)
    return reg, version_dir, feats


def _with_hash(registry, tmp_path, new_hash):
    import shutil

    reg = tmp_path / "models"
    shutil.copytree(registry[0], reg)
    meta_path = reg / registry[1].name / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["definition_hash"] = new_hash
    meta_path.write_text(json.dumps(meta))
    return reg


def test_model_of_another_feature_definition_is_refused_at_start(capsys, tmp_path, registry):
    """A model whose definition hash differs from the job's stops the job before it runs."""
    from features.fraud import FRAUD_FEATURES

    reg = _with_hash(registry, tmp_path, "0" * 16)
    rc, err = run(capsys, "run", "fraud", "--model", str(reg))
    assert rc == 2
    assert "0000000000000000" in err and FRAUD_FEATURES.definition_hash in err
    assert len(err.splitlines()) == 1


class _Metrics:
    """The two calls ScoreBatch makes on Flink's metric group, counting."""

    def __init__(self):
        self.counts = {}

    def get_metric_group(self):
        return self

    def distribution(self, name):
        outer = self

        class D:
            def update(self, v):
                outer.counts[name] = outer.counts.get(name, 0) + 1
        return D()

    def counter(self, name):
        outer = self

        class C:
            def inc(self, n=1):
                outer.counts[name] = outer.counts.get(name, 0) + n
        return C()


def _score(model_path, feats):
    from features.fraud import FRAUD_FEATURES
    from udfs.scoring import ScoreBatch

    fn = ScoreBatch(FRAUD_FEATURES.feature_names, model_path, FRAUD_FEATURES.definition_hash)
    ctx = _Metrics()
    fn.open(ctx)
    cols = [feats[c].reset_index(drop=True) for c in FRAUD_FEATURES.feature_names]
    ingest = pd.Series([1_700_000_000_000] * len(feats), dtype="int64")
    return fn.eval(*cols, ingest), ctx.counts


def test_scoring_udf_uses_the_model(registry):
    out, counts = _score(str(registry[0]), registry[2].head(2000))
    assert not out["fallback"].any() and (out["model_version"] == registry[1].name).all()
    assert set(out["decision"]) <= {"approve", "step_up", "block"} and out["score"].between(0, 1).all()
    assert counts == {"decisions": 2000, "ingestToDecisionMs": 2000}


@pytest.mark.parametrize("broken", ["missing", "corrupt", "other_hash"])
def test_scoring_udf_falls_back_to_rules_and_says_so(registry, tmp_path, broken):
    feats = registry[2].head(500)
    if broken == "missing":
        path = str(tmp_path / "nowhere")
    elif broken == "corrupt":
        import shutil

        path = tmp_path / "models"
        shutil.copytree(registry[0], path)
        (path / registry[1].name / "model.joblib").write_bytes(b"not a model")
        path = str(path)
    else:
        path = str(_with_hash(registry, tmp_path, "f" * 16))
    out, counts = _score(path, feats)
    assert out["fallback"].all() and (out["model_version"] == "rules").all()
    assert counts["fallbackDecisions"] == 500 == counts["decisions"]
    from features.scoring import rules_only

    assert list(out["decision"]) == list(rules_only(feats.reset_index(drop=True))["decision"])


def test_running_scorer_picks_up_a_newly_promoted_model(registry, tmp_path):
    """Promote a new version while the UDF runs: the next batch is scored by it, no restart."""
    import shutil

    from features.fraud import FRAUD_FEATURES
    from features.scoring import load_model, promote, save_model
    from udfs.scoring import ScoreBatch

    reg = tmp_path / "models"
    shutil.copytree(registry[0], reg)
    fn = ScoreBatch(FRAUD_FEATURES.feature_names, str(reg), FRAUD_FEATURES.definition_hash, reload_interval_s=0)
    ctx = _Metrics()
    fn.open(ctx)
    feats = registry[2].head(300).reset_index(drop=True)
    cols = [feats[c] for c in FRAUD_FEATURES.feature_names] + [pd.Series([0] * 300)]
    assert set(fn.eval(*cols)["model_version"]) == {registry[1].name}

    v2 = save_model(load_model(reg), reg)
    promote(reg, v2.name)
    assert set(fn.eval(*cols)["model_version"]) == {v2.name} and ctx.counts["modelReloads"] == 1

    # a promoted version of another feature definition is refused; the serving one stays
    v3 = save_model(load_model(reg), reg)
    meta = json.loads((v3 / "metadata.json").read_text())
    meta["definition_hash"] = "f" * 16
    (v3 / "metadata.json").write_text(json.dumps(meta))
    promote(reg, v3.name)
    out = fn.eval(*cols)
    assert set(out["model_version"]) == {v2.name} and not out["fallback"].any()


def test_circuit_breaker_switches_to_rules_while_scoring_fails(registry):
    from features.fraud import FRAUD_FEATURES
    from udfs.scoring import ScoreBatch

    fn = ScoreBatch(FRAUD_FEATURES.feature_names, str(registry[0]), FRAUD_FEATURES.definition_hash,
                    breaker={"trip_after": 2, "cooldown_s": 3600})
    ctx = _Metrics()
    fn.open(ctx)
    calls = []

    def broken(df):
        calls.append(len(df))
        raise RuntimeError("model server on fire")
    fn.model.score_frame = broken
    feats = registry[2].head(100).reset_index(drop=True)
    cols = [feats[c] for c in FRAUD_FEATURES.feature_names] + [pd.Series([0] * 100)]
    outs = [fn.eval(*cols) for _ in range(5)]
    assert all(o["fallback"].all() for o in outs)
    assert len(calls) == 2  # tripped after two failures; the next three batches skip the model
    assert ctx.counts["breakerTrips"] == 1 and ctx.counts["fallbackDecisions"] == 500


class _Planted:
    """A pickle that, if ever unpickled, creates the file it names (what a malicious model does)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _tampered_copy(registry, tmp_path, marker):
    """A copy of the registry whose promoted model.joblib was replaced; its metadata untouched."""
    import shutil

    import joblib

    reg = tmp_path / "models"
    shutil.copytree(registry[0], reg)
    joblib.dump(_Planted(marker), reg / registry[1].name / "model.joblib")
    return reg


def test_metadata_records_the_model_files_sha256(registry):
    import hashlib

    meta = json.loads((registry[1] / "metadata.json").read_text())
    assert meta["model_sha256"] == hashlib.sha256((registry[1] / "model.joblib").read_bytes()).hexdigest()


def test_tampered_model_is_refused_at_start_without_unpickling(capsys, registry, tmp_path):
    from features.scoring import ModelIntegrityError, load_model

    marker = tmp_path / "pwned"
    reg = _tampered_copy(registry, tmp_path, marker)
    with pytest.raises(ModelIntegrityError, match="not unpickled"):
        load_model(reg)
    rc, err = run(capsys, "run", "fraud", "--model", str(reg))
    assert rc == 2 and "SHA-256" in err and len(err.splitlines()) == 1, err
    # a metadata without the hash is refused too: nothing to verify against
    meta_path = reg / registry[1].name / "metadata.json"
    meta = json.loads(meta_path.read_text())
    del meta["model_sha256"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelIntegrityError, match="records no model_sha256"):
        load_model(reg)
    assert not marker.exists()


def test_tampered_model_is_refused_on_hot_reload_without_unpickling(registry, tmp_path):
    import shutil

    import joblib

    from features.fraud import FRAUD_FEATURES
    from features.scoring import load_model, promote, save_model
    from udfs.scoring import ScoreBatch

    marker = tmp_path / "pwned"
    reg = tmp_path / "models"
    shutil.copytree(registry[0], reg)
    fn = ScoreBatch(FRAUD_FEATURES.feature_names, str(reg), FRAUD_FEATURES.definition_hash, reload_interval_s=0)
    fn.open(_Metrics())
    feats = registry[2].head(200).reset_index(drop=True)
    cols = [feats[c] for c in FRAUD_FEATURES.feature_names] + [pd.Series([0] * 200)]
    assert set(fn.eval(*cols)["model_version"]) == {registry[1].name}
    v2 = save_model(load_model(reg), reg)
    joblib.dump(_Planted(marker), v2 / "model.joblib")  # swapped after saving, metadata kept
    promote(reg, v2.name)
    out = fn.eval(*cols)
    assert set(out["model_version"]) == {registry[1].name} and not out["fallback"].any()
    assert not marker.exists()
