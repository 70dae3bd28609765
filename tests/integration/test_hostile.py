"""Issue 7's table, all in ONE topic, through the real fraud job (real broker, MiniCluster, the
`streamscore` CLI as a subprocess): 4,400 valid payments, dense in event time, with every hostile
record of the issue interleaved. One bounded run (`--until latest`) must go through all of them
without a restart, give every valid payment exactly one decision, put each hostile record in the
dead letters with its reason (found by its Kafka offset: one partition, offset = send position),
send nothing late, keep every output record small, and print in = decided + dead-lettered + late
holding exactly.

    valid[0:2200] with hostile records between them | +20 h payment | valid[2200:4400]

Each test below checks one row of the table (or the invariant) on that one run.
"""
from __future__ import annotations

import base64
import hashlib
import json
import time
from collections import Counter

import pandas as pd
import pytest
from kafka import KafkaConsumer

from features.contracts import (DUPLICATE, DUPLICATE_ID_CONFLICT, MALFORMED_JSON, MAX_DETAIL_CHARS, MAX_RAW_KEPT,
                                MAX_RECORD_BYTES, OUT_OF_RANGE, PAYMENT, RAW_PAYLOAD, TIME_SKEW, TOO_LARGE)
from tests.reference.card_history import compute_features
from features.synthetic import generate_payments, records
from streamscore.kafka_broker import ensure_topic
from jobs.kafka_limits import MAX_DEAD_LETTER_BYTES
from streamscore.produce import produce_rows
from tests.integration.test_dedup import assert_same_features, feature_frame, read_dir
from tests.integration.test_operations import BAD_LINE, counts_line, finish, start

pytestmark = pytest.mark.integration

N, CUT = 4400, 2200  # valid payments; the +20 h record sits between valid[CUT-1] and valid[CUT]
HOUR = 3_600_000
JOB_TIMEOUT_S = 420


def _payment(template: dict, event_id: str, **changes) -> dict:
    """A contract-valid payment like ``template`` (time and place), with its own id."""
    ev = {k: v for k, v in template.items() if k != RAW_PAYLOAD}
    ev.update(event_id=event_id, **changes)
    return ev


def _raw(payload) -> dict:
    """A record sent verbatim (str or bytes), no key (streamscore/produce.py RAW_PAYLOAD)."""
    return {RAW_PAYLOAD: payload}


def _json(ev: dict) -> str:
    return json.dumps(ev, separators=(",", ":"))


def hostile_after(valid: list) -> dict:
    """{index i of a valid payment: [(tag, record, expected reason)]} sent right after valid[i].
    Every hostile record is stamped with the time of the valid payment before it (so none is a
    time skew or late by accident), except the +20 h one."""
    t = lambda i: valid[i]["event_time"]
    # the card with the most payments gets the absurd amounts; its later payments must be unpoisoned
    card = Counter(v["card_id"] for v in valid).most_common(1)[0][0]
    on_card = [i for i, v in enumerate(valid) if v["card_id"] == card]
    i_1e300, i_1e15 = on_card[10], on_card[30]
    assert i_1e15 < CUT and len([i for i in on_card if i > i_1e15]) >= 20
    deep = "{\"a\":" * 1000 + "1" + "}" * 1000
    dup = valid[300]
    bad_utf8 = _json(_payment(valid[900], "h-utf8-XX")).encode().replace(b"XX", b"\xff\xfe\xc3(")
    h = {
        100: [("deep", _raw(_json(_payment(valid[100], "h-deep")).replace("}", f',"extra":{deep}}}')),
               MALFORMED_JSON)],
        200: [("bigint", _raw(_json(_payment(valid[200], "h-bigint", amount=0)).replace(
            '"amount":0', '"amount":' + "9" * 400)), OUT_OF_RANGE)],
        400: [("megabyte", _raw("<html>not json " + "x" * 1_040_000), TOO_LARGE)],
        # Contract-valid in shape, but the payload (~1 MB) is over --max-record-bytes (64 KiB), so it is
        # refused as too_large before parsing; the 128-character id bound (out_of_range) is only reached by
        # payloads under 64 KiB, which the "longid" record below checks.
        450: [("huge_ids", _raw(_json(_payment(valid[450], "e" * 500_000, card_id="c" * 500_000))), TOO_LARGE),
              ("longid", _payment(valid[450], "h-" + "l" * 200), OUT_OF_RANGE)],
        # the same event_id twice, identical (valid[300] itself is the first copy), then with other content
        500: [("dup_identical", dict(dup), DUPLICATE)],
        700: [("dup_conflict", dict(dup, amount=round(dup["amount"] + 1.0, 2)), DUPLICATE_ID_CONFLICT)],
        i_1e300: [("amount_1e300", _payment(valid[i_1e300], "h-1e300", card_id=card, amount=1e300), OUT_OF_RANGE)],
        i_1e15: [("amount_1e15", _payment(valid[i_1e15], "h-1e15", card_id=card, amount=1e15), OUT_OF_RANGE)],
        800: [("blank_card", _payment(valid[800], "h-blank-card", card_id="    "), OUT_OF_RANGE),
              ("nul_event_id", _payment(valid[800], "h-nul\u0000id"), OUT_OF_RANGE),
              ("nul_card_id", _payment(valid[800], "h-nul-card", card_id="c-000001\u0000"), OUT_OF_RANGE),
              ("currency_emoji", _payment(valid[800], "h-money", currency="\U0001F4B0\U0001F4B0"), OUT_OF_RANGE),
              ("mcc_letters", _payment(valid[800], "h-mcc", mcc="ABCDEFG"), OUT_OF_RANGE)],
        900: [("bad_utf8", _raw(bad_utf8), MALFORMED_JSON)],
        # a single payment 20 h ahead of the stream (well within the wall-clock bound: the stream is in
        # January 2026): the 1 h jump guard dead-letters it, and the 2,200 payments after it are on time
        CUT - 1: [("ahead_20h", _payment(valid[CUT - 1], "h-ahead-20h", event_time=t(CUT - 1) + 20 * HOUR),
                   TIME_SKEW)],
    }
    return dict(h=h, card=card, i_1e15=i_1e15)


def read_topic(bootstrap: str, topic: str) -> list:
    """Every record of a finished output topic: (value bytes, parsed JSON)."""
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=5000, max_partition_fetch_bytes=4 * 1024 * 1024)
    try:
        return [(m.value, json.loads(m.value)) for m in c]
    finally:
        c.close()


@pytest.fixture(scope="module")
def hostile_run(kafka_broker, tmp_path_factory):
    bootstrap, out = kafka_broker.bootstrap, tmp_path_factory.mktemp("hostile")
    frame = generate_payments(N, seed=71, days=0.5)  # one payment every ~10 s, largest gap ~4 min
    assert frame["event_time"].is_monotonic_increasing and frame["event_time"].diff().max() < HOUR / 4
    valid = records(frame, PAYMENT)
    plan = hostile_after(valid)
    rows, hostile = [], {}  # hostile: tag -> (offset, record, reason)
    for i, ev in enumerate(valid):
        rows.append(ev)
        for tag, rec, reason in plan["h"].get(i, []):
            hostile[tag] = (len(rows), rec, reason)
            rows.append(rec)
    topic = f"hostile-{int(time.time())}"
    ensure_topic(bootstrap, topic, partitions=1)  # one partition: a record's offset is its send position
    stats = produce_rows(bootstrap, topic, rows, PAYMENT)
    assert stats["sent"] == len(rows) and not stats["not_sent"], stats

    names = {k: f"{topic}.{k}" for k in ("decisions", "dead", "late")}
    argv = ["run", "fraud", "--topic", topic, "--bootstrap", bootstrap, "--until", "latest", "--group-id", topic,
            "--decisions", f"kafka:{names['decisions']}", "--dead-letters", f"kafka:{names['dead']}",
            "--late", f"kafka:{names['late']}", "--features-out", f"parquet:{out / 'features'}",
            "--checkpoint-dir", str(out / "ckpt")]
    t0 = time.time()
    rc, stdout, stderr = finish(start(argv), timeout=JOB_TIMEOUT_S)
    took = time.time() - t0
    got = {k: read_topic(bootstrap, name) for k, name in names.items()}
    print(f"\n[hostile] {len(rows)} records in, job ran {took:.1f} s (exit {rc}); "
          + ", ".join(f"{k} {len(v)}" for k, v in got.items()))
    assert rc == 0, f"exit {rc}\nstdout:\n{stdout[-3000:]}\nstderr:\n{stderr[-3000:]}"
    dead_by_offset = {}
    for _, d in got["dead"]:
        dead_by_offset.setdefault(d["src_offset"], []).append(d)
    return dict(rows=rows, valid=valid, hostile=hostile, card=plan["card"], stdout=stdout, stderr=stderr,
                decisions=[d for _, d in got["decisions"]], dead=[d for _, d in got["dead"]],
                late=[x for _, x in got["late"]], raw_out=got, dead_by_offset=dead_by_offset,
                features=read_dir(out / "features", "parquet"), took=took)


def dead_of(run: dict, tag: str) -> dict:
    """The one dead letter of hostile record ``tag`` (by its Kafka offset), checked for its reason."""
    offset, rec, reason = run["hostile"][tag]
    found = run["dead_by_offset"].get(offset, [])
    assert len(found) == 1, f"{tag} at offset {offset}: {len(found)} dead letters"
    d = found[0]
    assert d["reason"] == reason, f"{tag}: {d['reason']} ({d['detail']}), expected {reason}"
    assert d["src_partition"] == 0 and len(d["detail"]) <= MAX_DETAIL_CHARS
    return d


def _sent_bytes(rec: dict) -> bytes:
    raw = rec.get(RAW_PAYLOAD)
    if raw is None:
        return PAYMENT.to_json(rec).encode("utf-8")
    return raw if isinstance(raw, bytes) else raw.encode("utf-8")


# -- the run as a whole ---------------------------------------------------------------------------

def test_in_equals_decided_plus_dead_lettered_plus_late_exactly(hostile_run):
    r = hostile_run
    n_in, n_hostile = len(r["rows"]), len(r["hostile"])
    assert len(r["decisions"]) == N and len(r["dead"]) == n_hostile and r["late"] == []
    assert len(r["decisions"]) + len(r["dead"]) + len(r["late"]) == n_in
    # the job's own end-of-run count says the same
    assert counts_line(r["stdout"]) == (f"counts: in {n_in} = decided {N} + dead letters {n_hostile} + late 0 "
                                        f"(holds)")
    # exactly the hostile offsets are dead-lettered, each with its expected reason
    assert sorted(r["dead_by_offset"]) == sorted(off for off, _, _ in r["hostile"].values())
    assert Counter(d["reason"] for d in r["dead"]) == Counter(reason for _, _, reason in r["hostile"].values())


def test_the_job_ran_through_everything_without_a_restart(hostile_run):
    r = hostile_run
    # a restarted attempt (fixed-delay restarts) replays from the last checkpoint: decisions twice,
    # and its counts file makes the summary add a note
    per_id = Counter(d["event_id"] for d in r["decisions"])
    assert set(per_id) == {v["event_id"] for v in r["valid"]} and set(per_id.values()) == {1}
    assert len([ln for ln in r["stdout"].splitlines() if ln.startswith("counts: ")]) == 1, r["stdout"]
    assert "restarted attempts" not in r["stdout"], r["stdout"]
    assert not [ln for ln in (r["stdout"] + r["stderr"]).splitlines() if BAD_LINE.search(ln)], r["stderr"][-3000:]


def test_every_output_record_fits_its_sink(hostile_run):
    sizes = {k: max((len(v) for v, _ in recs), default=0) for k, recs in hostile_run["raw_out"].items()}
    print(f"\n[hostile] largest output record, bytes: {sizes} (bound {MAX_DEAD_LETTER_BYTES:,})")
    assert max(sizes.values()) < MAX_DEAD_LETTER_BYTES
    assert sizes["decisions"] < 4096  # ids and strings are bounded: a decision stays small


# -- one test per row of the table ---------------------------------------------------------

def test_object_nested_1000_levels_deep(hostile_run):
    d = dead_of(hostile_run, "deep")
    assert "nested" in d["detail"] and d["raw_encoding"] == "utf-8"


def test_amount_with_400_digits(hostile_run):
    d = dead_of(hostile_run, "bigint")
    assert "too large for a float" in d["detail"] and "9" * 400 in d["raw"]


def test_megabyte_non_json_payload_keeps_a_bounded_prefix(hostile_run):
    _, rec, _ = hostile_run["hostile"]["megabyte"]
    d = dead_of(hostile_run, "megabyte")
    sent = _sent_bytes(rec)
    assert len(sent) > 1_000_000 and d["raw_size"] == len(sent)
    assert d["raw_sha256"] == hashlib.sha256(sent).hexdigest()
    assert d["raw_encoding"] == "utf-8" and d["raw"].encode() == sent[:MAX_RAW_KEPT]


def test_contract_valid_payment_with_500kb_ids(hostile_run):
    _, rec, _ = hostile_run["hostile"]["huge_ids"]
    d = dead_of(hostile_run, "huge_ids")
    sent = _sent_bytes(rec)
    assert len(sent) > MAX_RECORD_BYTES and d["raw_size"] == len(sent)
    assert d["raw_sha256"] == hashlib.sha256(sent).hexdigest() and len(d["raw"].encode()) <= MAX_RAW_KEPT
    # under the size limit, an id over 128 characters is out of range: no decision carries it
    d = dead_of(hostile_run, "longid")
    assert "event_id" in d["detail"]
    assert max(len(x["event_id"]) for x in hostile_run["decisions"]) <= 128


def test_one_payment_20h_ahead_moves_no_watermark(hostile_run):
    r = hostile_run
    d = dead_of(r, "ahead_20h")
    assert json.loads(d["raw"])["event_id"] == "h-ahead-20h" and f"is {20 * HOUR} ms ahead of the stream" in d["detail"]
    # the 2,200 valid payments after it are all decided (none late), their features those of the clean stream
    after = {v["event_id"] for v in r["valid"][CUT:]}
    assert len(after) >= 2000 and after <= {x["event_id"] for x in r["decisions"]}
    assert r["late"] == []


def test_same_event_id_twice_identical_and_once_changed(hostile_run):
    r = hostile_run
    dup_id = r["hostile"]["dup_identical"][1]["event_id"]
    assert [x["event_id"] for x in r["decisions"]].count(dup_id) == 1
    # a copy's dead letter holds the event's content as JSON (udfs/dedup.py: the payload's bytes are not
    # carried past parsing), here exactly the contract fields that were sent
    for tag in ("dup_identical", "dup_conflict"):
        sent = r["hostile"][tag][1]
        assert json.loads(dead_of(r, tag)["raw"]) == {k: sent[k] for k in PAYMENT.field_names}, tag
    decided = next(x for x in r["decisions"] if x["event_id"] == dup_id)
    assert decided["card_id"] == r["hostile"]["dup_identical"][1]["card_id"]


def test_absurd_amounts_stay_out_of_the_cards_history(hostile_run):
    r = hostile_run
    assert "1e+300" in dead_of(r, "amount_1e300")["detail"]
    assert dead_of(r, "amount_1e15")["reason"] == OUT_OF_RANGE  # the later 1e15 payment is not approved either
    decided_ids = {x["event_id"] for x in r["decisions"]}
    assert not {"h-1e300", "h-1e15"} & decided_ids
    # every served feature row, that card's later ones included, is the one of the clean stream
    want = pd.DataFrame(list(compute_features(r["valid"]))).sort_values("event_id").reset_index(drop=True)
    got = feature_frame(r["features"])
    assert_same_features(got, want)
    later = got[got["event_id"].isin([v["event_id"] for v in r["valid"] if v["card_id"] == r["card"]])]
    assert len(later) > 50 and later["amount_mean_30d"].max() < 1e7 and later["amount_sum_24h"].max() < 1e7


def test_blank_and_control_character_ids_bad_currency_and_mcc(hostile_run):
    details = {tag: dead_of(hostile_run, tag)["detail"]
               for tag in ("blank_card", "nul_event_id", "nul_card_id", "currency_emoji", "mcc_letters")}
    assert "card_id must not be blank" in details["blank_card"] and "event_id" in details["nul_event_id"]
    assert "card_id" in details["nul_card_id"] and "currency" in details["currency_emoji"]
    assert "mcc" in details["mcc_letters"]
    decided = {x["event_id"] for x in hostile_run["decisions"]}
    assert not decided & {"h-blank-card", "h-nul\u0000id", "h-nul-card", "h-money", "h-mcc"}


def test_invalid_utf8_keeps_the_original_bytes(hostile_run):
    _, rec, _ = hostile_run["hostile"]["bad_utf8"]
    d = dead_of(hostile_run, "bad_utf8")
    sent = rec[RAW_PAYLOAD]
    assert d["raw_encoding"] == "base64" and base64.b64decode(d["raw"]) == sent
    assert d["raw_sha256"] == hashlib.sha256(sent).hexdigest() and d["raw_size"] == len(sent)
