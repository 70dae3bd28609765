"""Both backfill engines through the CLI, on the same hostile files: `--engine pandas`
(features/backfill.py) and `--engine flink` (the job's operators in Flink BATCH mode) must write the
same feature rows (every cell) and the same dead letters (reason, detail, raw, ... as multisets), and
print the same counts.

The inputs are the ones the streaming tests use, by import: issue 7's hostile records
(tests/integration/test_hostile.py ``hostile_after``; the invalid-UTF-8 payload is left out, a Parquet
string column cannot hold it) between generated payments with every malformed kind, typed rows
breaking each contract rule, and test_dedup.py's file of identical and changed copies.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.contracts import PAYMENT, RAW_PAYLOAD
from features.synthetic import generate_payments, records
from streamscore.cli import main as cli
from tests.integration.test_dedup import dup_file, read_dir  # noqa: F401 - dup_file: a fixture
from tests.integration.test_hostile import _payment, hostile_after

pytestmark = pytest.mark.integration

HOUR = 3_600_000
_AHEAD = re.compile(r"is -?\d+ ms ahead of the wall clock")


def hostile_rows() -> list:
    """Generated payments with issue 7's hostile records between them (as test_hostile sends them),
    the generator's malformed payloads (2 %), typed rows breaking one rule each, and copies."""
    frame = generate_payments(4400, seed=71, days=0.5, malformed=0.02)
    rows = records(frame, PAYMENT)
    valid = [r for r in rows if r[RAW_PAYLOAD] is None]
    plan = hostile_after(valid)["h"]
    out = []
    for i, ev in enumerate(valid):
        out.append(ev)
        out += [rec for _, rec, _ in plan.get(i, []) if not isinstance(rec.get(RAW_PAYLOAD), bytes)]
    out += [r for r in rows if r[RAW_PAYLOAD] is not None]
    t = valid[123]
    broken = [dict(amount=float("nan")), dict(amount=float("-inf")), dict(amount=-0.01), dict(amount=1e7 + 1),
              dict(card_id=None), dict(event_time=None), dict(event_time=5),
              dict(event_time=t["event_time"] + 400 * 24 * HOUR), dict(mcc="54a1"),
              dict(mcc="\uff15\uff14\uff11\uff11"),
              dict(currency="eur"), dict(lat=None), dict(lon=180.5), dict(device_id=" "), dict(merchant_id="m\x1f"),
              dict(card_id="карта-1"), dict(fraud_pattern="x\ny"), dict(amount=-0.0),
              dict(event_time=t["event_time"] + 30 * 24 * HOUR)]
    out += [_payment(t, f"typed-{k}", **change) for k, change in enumerate(broken)]
    out += [dict(valid[7]), dict(valid[8], amount=valid[8]["amount"] + 1.0),
            dict(valid[9], event_time=valid[9]["event_time"] - 1_000)]
    return out


def _run(engine: str, path: Path, out: Path, capsys, *extra) -> dict:
    rc = cli(["backfill", "fraud", "--engine", engine, "--input", str(path), "--out", str(out / "features"),
              "--dead-letters", f"json:{out / 'dead'}", *extra])
    text = capsys.readouterr().out
    assert rc == 0, text
    counts = [ln.replace(str(out), "OUT") for ln in text.splitlines()
              if ln.startswith(("counts:", "  dead letters:", "  outputs:"))]
    return {"features": read_dir(out / "features", "parquet"), "dead": read_dir(out / "dead", "json"),
            "counts": counts}


def _cell(v):
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    return (type(v).__name__, repr(v))  # 0.0 vs -0.0 and 1 vs 1.0 differ


def assert_same_outputs(a: dict, b: dict) -> None:
    fa = sorted(([(k, _cell(v)) for k, v in r.items() if k != "ingest_ms"] for r in a["features"]), key=str)
    fb = sorted(([(k, _cell(v)) for k, v in r.items() if k != "ingest_ms"] for r in b["features"]), key=str)
    assert len(fa) == len(fb)
    diff = [(x, y) for x, y in zip(fa, fb) if x != y]
    assert not diff, diff[:3]

    def dead(rows):  # ingest time and "N ms ahead of the wall clock" depend on when a run ran, not on the engine
        return Counter(_AHEAD.sub("is N ms ahead of the wall clock",
                                  json.dumps({k: v for k, v in r.items() if k != "ingest_ms"}, sort_keys=True))
                       for r in rows)
    da, db = dead(a["dead"]), dead(b["dead"])
    assert da == db, (list((da - db).items())[:3], list((db - da).items())[:3])
    assert a["counts"] == b["counts"]


@pytest.fixture(scope="module")
def hostile_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("engines")
    rows = hostile_rows()
    path = d / "hostile.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=PAYMENT.arrow_schema(with_labels=True, with_raw=True)), path)
    return dict(dir=d, path=path, n=len(rows))


def test_hostile_file_gives_the_same_rows_and_dead_letters_in_both_engines(hostile_file, capsys):
    d = hostile_file["dir"]
    flink = _run("flink", hostile_file["path"], d / "flink", capsys)
    pandas = _run("pandas", hostile_file["path"], d / "pandas", capsys)
    assert_same_outputs(pandas, flink)
    reasons = Counter(x["reason"] for x in pandas["dead"])
    print(f"\n[engines] {hostile_file['n']} rows: {len(pandas['features'])} feature rows, dead letters {dict(reasons)}")
    # every kind of refusal is in the comparison
    assert {"malformed_json", "not_an_object", "missing_field", "wrong_type", "non_finite", "out_of_range",
            "bad_timestamp", "time_skew", "too_large", "duplicate", "duplicate_id_conflict"} <= set(reasons)
    assert re.match(rf"counts: rows read {hostile_file['n']}, .* \(holds\)", pandas["counts"][0])


def test_dedup_file_in_both_row_orders_and_engines(dup_file, capsys):
    runs = {(engine, order): _run(engine, dup_file["paths"][order], dup_file["dir"] / f"{engine}-{order}", capsys,
                                  "--dedup-horizon-ms", str(24 * HOUR))
            for engine in ("flink", "pandas") for order in ("ordered", "shuffled")}
    for order in ("ordered", "shuffled"):
        assert_same_outputs(runs[("pandas", order)], runs[("flink", order)])
    reasons = Counter(x["reason"] for x in runs[("pandas", "ordered")]["dead"])
    assert reasons == {"duplicate": dup_file["n_identical"], "duplicate_id_conflict": len(dup_file["changed"])}
