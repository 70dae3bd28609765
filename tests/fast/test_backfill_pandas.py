"""The pandas backfill engine (features/backfill.py) and its CLI (`streamscore backfill --engine pandas`).

The vectorized mask must never accept a row ``Intake.row`` would refuse (hypothesis over hostile
typed values), every refused row gets the per-record reason and detail, copies follow the BATCH
dedup rule, and the feature rows equal an independent implementation (``CardHistory``).

Hand-made dedup case (one event_id "d", horizon 1 h; A/B are two contents):

    event_time:  t0-5s   t0    t0    t0+2h
    content:     B       A     A     A
    outcome:     kept    conflict (first copy is B at t0-5s)
                               conflict
                                     kept (2 h later: another event reusing the id)
"""
from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contracts import bounded_detail
from features.backfill import (REJECT_NAMES, backfill_contract, backfill_frame, certainly_valid,
                               counts_of, dead_letter_row, source_names)
from features.contracts import MAX_DETAIL_CHARS, PAYMENT, RAW_PAYLOAD
from features.dedup import fingerprint
from features.fraud import FRAUD_FEATURES
from tests.reference.card_history import compute_features
from features.intake import Intake
from features.synthetic import generate_payments, to_arrow

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the wall clock of every case
HOUR = 3_600_000
DAY = 24 * HOUR
OK = dict(event_id="e1", event_time=NOW - HOUR, card_id="c1", merchant_id="m1", mcc="5411", amount=9.5,
          currency="EUR", lat=52.5, lon=13.4, device_id=None)
SCHEMA = PAYMENT.arrow_schema(with_labels=True, with_raw=True)


def table(rows, labels: bool = False, raw: bool = True):
    names = source_names(PAYMENT, labels, raw)
    full = [{n: r.get(n) for n in names} for r in rows]
    return pa.Table.from_pylist(full, schema=pa.schema([SCHEMA.field(n) for n in names]))


def run(rows, **kw):
    kw.setdefault("now_ms", NOW)
    return backfill_frame(FRAUD_FEATURES, table(rows, labels=kw.get("with_labels", False)), **kw)


def test_reject_names_are_the_flink_dead_letter_columns():
    # udfs/types.py imports pyflink; read its REJECT_COLUMNS without importing it
    src = (Path(__file__).parents[2] / "udfs" / "types.py").read_text()
    node = next(n for n in ast.parse(src).body if isinstance(n, ast.Assign)
                and getattr(n.targets[0], "id", None) == "REJECT_COLUMNS")
    assert tuple(name for name, _ in ast.literal_eval(node.value)) == REJECT_NAMES


# -- every dead-letter reason, with the per-record detail and raw text ------------------------------

TYPED_CASES = [  # (changes to OK, reason, detail), written out by hand
    (dict(amount=-1.0), "out_of_range", "amount -1.0 must be within [0.0, 10000000.0]"),
    (dict(amount=float("nan")), "non_finite", "amount is nan"),
    (dict(amount=float("inf")), "non_finite", "amount is inf"),
    (dict(card_id=None), "missing_field", "card_id"),
    (dict(event_time=5), "bad_timestamp", "event_time 5 outside 2000..2100"),
    (dict(event_time=NOW + DAY + 1), "time_skew",
     f"event_time {NOW + DAY + 1} is {DAY + 1} ms ahead of the wall clock (max {DAY})"),
    (dict(mcc="54a1"), "out_of_range", "mcc must be 4 digits"),
    (dict(currency="eur"), "out_of_range", "currency must be an ISO 4217 code (3 capital letters)"),
    (dict(card_id="  "), "out_of_range", "card_id must not be blank"),
    (dict(device_id=" "), "out_of_range", "device_id must not be blank"),
    (dict(merchant_id="m\x00"), "out_of_range", "merchant_id contains a control character at 1"),
    (dict(lat=90.5), "out_of_range", "lat 90.5 must be within [-90.0, 90.0]"),
    (dict(event_id="x" * 200), "out_of_range", "event_id is 200 characters long (max 128)"),
]


@pytest.mark.parametrize("change,reason,detail", TYPED_CASES, ids=[c[1] + ":" + next(iter(c[0])) for c in TYPED_CASES])
def test_a_typed_row_breaking_the_contract_is_a_dead_letter_with_its_reason(change, reason, detail):
    bad = dict(OK, event_id="bad", **change) if "event_id" not in change else dict(OK, **change)
    feats, dead = run([OK, bad])
    assert feats["event_id"].tolist() == ["e1"] and len(dead) == 1
    d = dead.iloc[0]
    assert (d["reason"], d["detail"]) == (reason, detail)
    # the raw text is the row as JSON, as the Flink parse operator writes it (json.dumps defaults)
    assert d["raw"] == json.dumps(bad) and d["raw_encoding"] == "utf-8" and d["raw_size"] == len(d["raw"].encode())
    assert d["src_partition"] is None and d["src_offset"] is None and d["ingest_ms"] == NOW


def test_the_raw_text_of_a_typed_row_by_hand():
    _, dead = run([dict(OK, event_id="e2", amount=-1.0)])
    assert dead["raw"][0] == ('{"event_id": "e2", "event_time": 1767222000000, "card_id": "c1", "merchant_id": "m1", '
                              '"mcc": "5411", "amount": -1.0, "currency": "EUR", "lat": 52.5, "lon": 13.4, '
                              '"device_id": null}')


def test_a_column_over_the_record_bound_is_too_large():
    feats, dead = run([dict(OK, event_id="x" * 2000)], max_record_bytes=1024)
    assert len(feats) == 0 and dead["reason"].tolist() == ["too_large"]
    assert dead["detail"][0] == "column event_id is 2000 long (max 1024)"


def test_max_amount_is_the_amounts_maximum():
    feats, dead = run([OK, dict(OK, event_id="e2", amount=100.5)], max_amount=100.0)
    assert feats["event_id"].tolist() == ["e1"]
    assert dead["detail"].tolist() == ["amount 100.5 must be within [0.0, 100.0]"]


RAW_CASES = [
    ('{"event_id":', "malformed_json", "Expecting value: line 1 column 13 (char 12)"),
    ("[1,2]", "not_an_object", "got list"),
    ('{"event_id":"r3","event_time":1767225600000,"card_id":7,"merchant_id":"m","mcc":"5411","amount":1,'
     '"currency":"EUR","lat":0,"lon":0}', "wrong_type", "card_id must be a string, got int"),
    ('{"event_id":"r4","event_time":1767225600000,"card_id":"c","merchant_id":"m","mcc":"5411","amount":NaN,'
     '"currency":"EUR","lat":0,"lon":0}', "non_finite", "JSON constant NaN"),
]


@pytest.mark.parametrize("payload,reason,detail", RAW_CASES, ids=[c[1] for c in RAW_CASES])
def test_a_raw_payload_row_is_parsed_as_a_payload(payload, reason, detail):
    feats, dead = run([OK, {RAW_PAYLOAD: payload}])
    assert feats["event_id"].tolist() == ["e1"]
    assert dead[["reason", "detail", "raw"]].values.tolist() == [[reason, detail, payload]]


def test_a_valid_raw_payload_is_an_event_like_a_typed_row():
    payload = json.dumps(dict(OK, event_id="r1", amount=12))  # an integer amount: a float after validation
    feats, dead = run([{RAW_PAYLOAD: payload}, dict(OK, event_id="t1")])
    assert len(dead) == 0 and sorted(feats["event_id"]) == ["r1", "t1"]
    assert feats.set_index("event_id").loc["r1", "amount_sum_1h"] == 12.0


def test_unusual_but_valid_strings_take_the_per_record_path_and_are_accepted():
    rows = [dict(OK, event_id="é-1", card_id="карта"), dict(OK, event_id="e2", device_id="d\u00a0x")]
    assert not certainly_valid(PAYMENT, table(rows), source_names(PAYMENT, False, True), now_ms=NOW).any()
    feats, dead = run(rows)
    assert len(dead) == 0 and sorted(feats["event_id"]) == ["e2", "é-1"]


# -- duplicates -------------------------------------------------------------------------------------

def test_copies_follow_the_batch_rule_by_hand():
    a = dict(OK, event_id="d", event_time=NOW - 3 * HOUR)
    b = dict(a, event_time=a["event_time"] - 5_000, amount=10.5)  # other content, 5 s earlier: kept
    later = dict(a, event_time=a["event_time"] + 2 * HOUR)  # beyond the 1 h horizon: another event
    feats, dead = run([a, a, b, later, OK], dedup_horizon_ms=HOUR)
    assert sorted(zip(feats["event_id"], feats["event_time"])) == [("d", b["event_time"]), ("d", later["event_time"]),
                                                                   ("e1", OK["event_time"])]
    fp = lambda ev: fingerprint([ev[n] for n in PAYMENT.field_names]).hex()[:16]
    detail = (f"event_id seen before with other content: first copy event_time {b['event_time']} (fingerprint "
              f"{fp(b)}), this copy event_time {a['event_time']} (fingerprint {fp(a)})")
    assert dead[["reason", "detail"]].values.tolist() == [["duplicate_id_conflict", detail]] * 2
    # a copy's raw text is its content as compact JSON, as udfs/dedup.py writes it
    assert json.loads(dead["raw"][0]) == a and dead["raw"][0] == json.dumps(a, separators=(",", ":"))


def test_identical_copies_are_duplicates_and_horizon_0_keeps_them_all():
    _, dead = run([OK, dict(OK)])
    assert dead[["reason", "detail"]].values.tolist() == [
        ["duplicate", f"event_id seen before with the same content (event_time {OK['event_time']})"]]
    feats, dead = run([OK, dict(OK)], dedup_horizon_ms=0)
    assert len(feats) == 2 and len(dead) == 0


def test_labels_are_kept_and_are_part_of_a_copys_content():
    a = dict(OK, is_fraud=True, fraud_pattern="card_testing")
    feats, dead = run([a, dict(a, is_fraud=False)], with_labels=True)
    # the fingerprints differ (labels are content): the larger one is the conflict
    assert dead["reason"].tolist() == ["duplicate_id_conflict"]
    assert list(feats.columns[-3:]) == ["ingest_ms", "is_fraud", "fraud_pattern"]
    kept = feats.iloc[0]
    assert (kept["is_fraud"], kept["fraud_pattern"]) in ((True, "card_testing"), (False, "card_testing"))
    assert json.loads(dead["raw"][0])["is_fraud"] is not kept["is_fraud"]


# -- features ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def generated():
    frame = generate_payments(3000, seed=44, n_cards=150, malformed=0.02)
    return frame, to_arrow(frame, PAYMENT)


def test_features_equal_the_per_event_engine_and_split_work_changes_nothing(generated):
    frame, tbl = generated
    feats, dead = backfill_frame(FRAUD_FEATURES, tbl, now_ms=NOW, with_labels=True)
    assert len(feats) + len(dead) == len(frame) and set(dead["reason"]) <= {
        "malformed_json", "not_an_object", "missing_field", "wrong_type", "non_finite", "out_of_range",
        "bad_timestamp"}
    good = frame[frame[RAW_PAYLOAD].isna()]
    assert len(feats) == len(good)
    events = to_arrow(good, PAYMENT, with_raw=False).to_pylist()
    want = pd.DataFrame(list(compute_features(events))).sort_values("event_id").reset_index(drop=True)
    got = feats.sort_values("event_id").reset_index(drop=True)
    for c in FRAUD_FEATURES.output_columns:
        x, y = got[c].astype(object).tolist(), want[c].astype(object).tolist()
        assert all((p is None and (q is None or q != q)) or p == q for p, q in zip(x, y)), c
    split, dead2 = backfill_frame(FRAUD_FEATURES, tbl, now_ms=NOW, with_labels=True, parts=3)
    pd.testing.assert_frame_equal(split.sort_values("event_id").reset_index(drop=True), got)
    assert dead2.sort_values("detail").values.tolist() == dead.sort_values("detail").values.tolist()


def test_counts_of_add_up():
    c = counts_of(7, ["duplicate", "out_of_range", "out_of_range", "duplicate_id_conflict"])
    assert c == {"parse": {"accepted": 9, "dead_letter.out_of_range": 2}, "features": {"feature_rows": 7},
                 "dedup": {"duplicate": 1, "duplicate_id_conflict": 1}}


def test_dead_letter_rows_bound_detail_and_raw():
    row = dead_letter_row("too_large", "d" * 5000, "r" * 20_000, "parquet:f", ingest_ms=1)
    assert row[1] == "d" * MAX_DETAIL_CHARS + "..." and len(row[2]) == 16_384 and row[4] == 20_000
    assert bounded_detail("short") == "short" and dict(zip(REJECT_NAMES, row))["ingest_ms"] == 1


# -- the mask never accepts what the per-record intake refuses -------------------------------------

def _strings(max_size=140):
    return st.one_of(st.sampled_from(["c1", "m-000001", " ", "", "  x ", "a\tb", "x\x7f", "\u00a0", "é", "a\x00",
                                      "\U0001F4B0", "A" * 128, "A" * 129, "ab\n", "5411", "EUR"]),
                     st.text(max_size=max_size), st.text(alphabet=st.characters(max_codepoint=0x7f), max_size=max_size))


def _floats():
    return st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                     st.sampled_from([0.0, -0.0, 1e7, 1e7 + 2e-9 * 1e7, 90.0, -90.0, 180.0, -180.0, 180.00000000000003,
                                      5e-324, -5e-324, 100.0]))


def _times():
    bounds = [946_684_800_000, 4_102_444_800_000, NOW + DAY, NOW + DAY + 1]
    return st.one_of(st.sampled_from(bounds + [b - 1 for b in bounds] + [b + 1 for b in bounds] + [0, -1]),
                     st.integers(-2 ** 63, 2 ** 63 - 1), st.integers(NOW - 400 * DAY, NOW + 2 * DAY))


def _maybe(s, p_none=0.15):
    return st.one_of(st.none(), s) if p_none else s


FIELDS = {
    "event_id": _maybe(_strings()), "event_time": _maybe(_times()), "card_id": _maybe(_strings()),
    "merchant_id": _maybe(_strings()),
    "mcc": _maybe(st.one_of(_strings(8), st.sampled_from(["5411", "0000", "９９９９", "541", "54111", "54a1"]))),
    "amount": _maybe(_floats()),
    "currency": _maybe(st.one_of(_strings(6), st.sampled_from(["EUR", "USD", "eur", "EU", "EURO", "ÉUR"]))),
    "lat": _maybe(_floats()), "lon": _maybe(_floats()), "device_id": _maybe(_strings()),
    "is_fraud": _maybe(st.booleans()), "fraud_pattern": _maybe(_strings(300)),
    RAW_PAYLOAD: st.one_of(st.none(), st.none(), st.none(), st.sampled_from(['{"a":1}', json.dumps(OK)])),
}
ROW = st.fixed_dictionaries(FIELDS)


BASE = dict(OK, is_fraud=None, fraud_pattern=None, _raw=None)
# an everyday row with one field hostile: the mask's decision then rests on that one field
ONE_OFF = st.sampled_from(sorted(FIELDS)).flatmap(lambda name: FIELDS[name].map(lambda v: dict(BASE, **{name: v})))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rows=st.lists(st.one_of(ROW, ONE_OFF, ONE_OFF, st.just(BASE)), min_size=1, max_size=25),
       labels=st.booleans(), max_amount=st.sampled_from([1e7, 100.0]), max_record_bytes=st.sampled_from([65_536, 64]))
def test_the_mask_only_accepts_rows_the_intake_accepts_unchanged(rows, labels, max_amount, max_record_bytes):
    contract = backfill_contract(PAYMENT, max_amount)
    names = source_names(PAYMENT, labels, True)
    tbl = table(rows, labels=labels)
    mask = certainly_valid(contract, tbl, names, now_ms=NOW, max_future_ms=DAY, max_record_bytes=max_record_bytes)
    intake = Intake(contract, max_record_bytes=max_record_bytes, max_future_ms=DAY, stream_guards=False)
    for ok, row in zip(mask, tbl.to_pylist()):
        if not ok:
            continue
        out = intake.row(row, NOW)
        assert out.ok, (row, out)
        for n in names:  # the values pass unchanged (floats bit for bit, types too)
            if n != RAW_PAYLOAD:
                v, w = row[n], out.event.get(n)
                assert type(v) is type(w) and (v == w or (isinstance(v, float) and math.isnan(v) and math.isnan(w)))
                if isinstance(v, float):
                    assert math.copysign(1, v) == math.copysign(1, w)


def test_the_mask_accepts_everyday_rows(generated):
    frame, tbl = generated
    names = source_names(PAYMENT, True, True)
    mask = certainly_valid(PAYMENT, tbl.select(names), names, now_ms=NOW)
    assert mask.sum() == frame[RAW_PAYLOAD].isna().sum()  # every generated well-formed payment


# -- the CLI ----------------------------------------------------------------------------------------

def _write(path: Path, rows, labels=True):
    pq.write_table(table(rows, labels=labels), path)
    return path


def test_cli_writes_parts_and_prints_the_flink_summary(tmp_path, capsys):
    from streamscore.cli import main

    src = _write(tmp_path / "in.parquet", [OK, dict(OK), dict(OK, event_id="e2", amount=-1.0),
                                          dict(OK, event_id="e3", event_time=NOW - 2 * HOUR)])
    out = tmp_path / "feats"
    assert main(["backfill", "fraud", "--input", str(src), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert ("counts: rows read 4, feature rows written 2, dead letters 2, late 0 (holds)\n"
            "  dead letters: duplicate 1, out_of_range 1\n"
            f"  outputs: features parquet:{out}; dead letters json:{tmp_path / 'feats-dead-letters'}") in text
    parts = [p for p in out.iterdir()]
    assert len(parts) == 1 and parts[0].name.startswith("part-")
    t = pq.read_table(parts[0])
    assert t.schema.names == list(FRAUD_FEATURES.output_columns) + ["ingest_ms", "is_fraud", "fraud_pattern"]
    assert sorted(t["event_id"].to_pylist()) == ["e1", "e3"]
    dl = [json.loads(line) for f in (tmp_path / "feats-dead-letters").iterdir() for line in f.read_text().splitlines()]
    assert sorted(d["reason"] for d in dl) == ["duplicate", "out_of_range"] and list(dl[0]) == list(REJECT_NAMES)
    assert all(d["source"] == f"parquet:{src}" for d in dl)

    # a second run refuses the non-empty --out, --overwrite replaces both outputs
    assert main(["backfill", "fraud", "--input", str(src), "--out", str(out)]) == 2
    assert "is not empty (use --overwrite" in capsys.readouterr().err
    assert main(["backfill", "fraud", "--input", str(src), "--out", str(out), "--overwrite"]) == 0
    assert len(list(out.iterdir())) == 1 and len(list((tmp_path / "feats-dead-letters").iterdir())) == 1


def test_cli_reads_a_folder_and_parquet_dead_letters(tmp_path, capsys):
    from streamscore.cli import main

    d = tmp_path / "in"
    d.mkdir()
    _write(d / "a.parquet", [OK], labels=False)
    _write(d / "b.parquet", [dict(OK, event_id="e2", mcc="x")], labels=False)
    (d / "_SUCCESS").write_text("")
    out = tmp_path / "o"
    assert main(["backfill", "fraud", "--input", str(d), "--out", str(out), "--dead-letters",
                 f"parquet:{tmp_path / 'dl'}", "--engine", "pandas"]) == 0
    assert "labels absent" in capsys.readouterr().out
    t = pq.read_table(next(out.iterdir()))
    assert "is_fraud" not in t.schema.names and t["event_id"].to_pylist() == ["e1"]
    dl = pq.read_table(next((tmp_path / "dl").iterdir()))
    assert dl.schema.names == list(REJECT_NAMES) and dl["reason"].to_pylist() == ["out_of_range"]


def test_cli_refuses_a_wrongly_typed_file_and_kafka_dead_letters(tmp_path, capsys):
    from streamscore.cli import main

    bad = tmp_path / "bad.parquet"
    pq.write_table(table([OK], raw=False).set_column(5, "amount", pa.array(["9.5"])), bad)
    assert main(["backfill", "fraud", "--input", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "column amount is string, the contract says double" in capsys.readouterr().err
    ok = _write(tmp_path / "ok.parquet", [OK])
    assert main(["backfill", "fraud", "--input", str(ok), "--out", str(tmp_path / "o2"),
                 "--dead-letters", "kafka:t"]) == 2
    assert "--engine flink" in capsys.readouterr().err
    assert main(["backfill", "fraud", "--input", str(ok), "--out", str(tmp_path / "o3"), "--engine", "pandas",
                 "--cluster", "localhost:8081"]) == 2


def test_bench_report_shows_both_engines_against_the_reference():
    from bench.report import render_markdown, summary_rows

    bf = {"events": 1_000_000, "reference": {"seconds": 2.5, "rows_per_s": 400_000.0, "cpu_s": 2.5},
          "pandas": {"seconds": 4.0, "rows_per_s": 250_000.0, "cpu_s": 4.0},
          "flink": {"wall_s": 160.0, "net_s": 150.0, "rows_per_s": 6_667.0, "rows_per_s_wall": 6_250.0, "cpu_s": 170.0},
          "check": {"agree": True, "compared": 10, "missing_in_flink": 0, "extra_in_flink": 0, "mismatches": {}},
          "check_pandas": {"agree": False, "compared": 10, "missing_in_flink": 0, "extra_in_flink": 0,
                           "mismatches": {"txn_count_1h": 1}}}
    rows = summary_rows({"backfill": bf})
    assert [r[0].split(",")[1].strip() for r in rows[::2]] == ["pandas engine", "Flink BATCH"]
    assert rows[0][1:] == ["250,000", "pandas 400,000", "0.625", "≥ 0.5", "yes"]
    assert rows[1][5] == "**no**" and rows[2][3] == "0.017" and rows[2][5] == "**no**" and rows[3][5] == "yes"
    md = render_markdown({"backfill": bf})
    assert ("| streamscore backfill fraud --engine pandas (in process, read + compute + write) | 4.0 | 4.0 | "
            "250,000 |") in md
    assert "Value check, pandas engine: 10 rows compared" in md and "{'txn_count_1h': 1}" in md


def test_cli_with_two_processes_writes_the_same_rows(tmp_path, generated, capsys):
    from streamscore.cli import main

    _, tbl = generated
    src = tmp_path / "in.parquet"
    pq.write_table(tbl, src)
    got = {}
    for p in (1, 2):
        out = tmp_path / f"p{p}"
        assert main(["backfill", "fraud", "--input", str(src), "--out", str(out), "-p", str(p)]) == 0
        files = sorted(out.iterdir())
        assert len(files) == p and all(f.name.startswith("part-") for f in files)
        rows = [r for f in files for r in pq.read_table(f).drop(["ingest_ms"]).to_pylist()]
        got[p] = sorted(rows, key=lambda r: r["event_id"])
    assert got[1] == got[2] and len(got[1]) > 2900
    counts = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("counts:")]
    assert len(counts) == 2 and counts[0] == counts[1]


def test_execute_in_small_blocks_gives_the_same_features(generated, monkeypatch):
    import features.execute as ex

    frame, _ = generated
    events = frame[frame[RAW_PAYLOAD].isna()][list(PAYMENT.field_names)].reset_index(drop=True)
    whole = ex.execute(FRAUD_FEATURES, events)
    monkeypatch.setattr(ex, "BLOCK_ROWS", 5)  # many blocks of whole cards (some cards are longer than 5)
    blocked = ex.execute(FRAUD_FEATURES, events)
    pd.testing.assert_frame_equal(whole, blocked)


def test_vectorized_km_is_haversine_km_bit_for_bit():
    # features/fraud.py _km (the derived feature, vectorized for the backfill) against the scalar
    # haversine_km that CardHistory uses: nearby points (where pow(x, 2) != x * x shows), antipodes,
    # equal points, poles and the date line, -0.0
    from features.fraud import _km, haversine_km

    rng = np.random.default_rng(5)
    n = 120_000
    lat1, lon1 = rng.uniform(-90, 90, n), rng.uniform(-180, 180, n)
    lat2, lon2 = rng.uniform(-90, 90, n), rng.uniform(-180, 180, n)
    m = n // 4
    lat2[:m], lon2[:m] = lat1[:m] + rng.normal(0, 1e-3, m), lon1[:m] + rng.normal(0, 1e-3, m)
    lat2[m:2 * m], lon2[m:2 * m] = -lat1[m:2 * m], lon1[m:2 * m] + 180.0
    lat2[2 * m:2 * m + 100], lon2[2 * m:2 * m + 100] = lat1[2 * m:2 * m + 100], lon1[2 * m:2 * m + 100]
    for a in (lat1, lon1, lat2, lon2):
        a[-500:] = rng.choice([0.0, -0.0, 90.0, -90.0, 180.0, -180.0, 5e-324], 500)
    lat1[7] = np.nan
    got = _km(lat1, lon1, lat2, lon2)
    want = np.array([np.nan if math.isnan(p[0]) else haversine_km(*p)
                     for p in zip(lat1.tolist(), lon1.tolist(), lat2.tolist(), lon2.tolist())])
    assert np.isnan(got[7]) and np.array_equal(np.delete(got, 7).view(np.int64), np.delete(want, 7).view(np.int64))
