"""Hostile input at the intake (features.intake): every record ends in exactly one outcome.

Hand-made cases for each hostile record of issue 7, then property tests (hypothesis): any bytes
and any JSON give one event or one dead letter, and never an exception.
"""
from __future__ import annotations

import base64
import hashlib
import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contracts import (MAX_RAW_KEPT, PAYMENT, REASONS, SENSOR, bounded_raw, json_depth)
from features.intake import CONFIRM_JUMP, Intake

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z: "now" for every case, so nothing depends on the clock
HOUR = 3_600_000
GOOD = {"event_id": "e-1", "event_time": T0, "card_id": "c-1", "merchant_id": "m-1", "mcc": "5411",
        "amount": 12.5, "currency": "EUR", "lat": 52.5, "lon": 13.4, "device_id": None}


def payment(**changes) -> bytes:
    return json.dumps({**GOOD, **changes}, allow_nan=True).encode()


def outcome(raw, intake=None, now=T0):
    return (intake or Intake(PAYMENT)).payload(raw, now)


def test_a_good_payment_is_accepted():
    out = outcome(payment())
    assert out.ok and out.reason is None and out.event["amount"] == 12.5


@pytest.mark.parametrize("raw, reason, detail", [
    # a JSON object nested 1,000 levels deep in an extra field: refused before the parser recurses
    (payment()[:-1] + b',"extra":' + b'{"a":' * 999 + b"1" + b"}" * 999 + b"}", "malformed_json",
     "nested 1000 levels deep"),
    (payment()[:-1] + b',"x":' + b"[" * 60_000 + b"}", "malformed_json", "nested 60001 levels"),
    # a 400-digit integer amount: no OverflowError
    (payment()[:-1] + b',"amount":' + b"9" * 400 + b"}", "malformed_json", "appears twice"),
    (json.dumps({**GOOD, "amount": 0}).replace('"amount": 0', '"amount": ' + "9" * 400).encode(),
     "out_of_range", "too large for a float"),
    (payment(amount=1e300), "out_of_range", "amount"),
    (payment(amount=1e15), "out_of_range", "amount"),
    (payment(amount=-0.01), "out_of_range", "amount"),
    (b"x" * 1_040_000, "too_large", "1040000 bytes"),
    (payment(event_id="e" * 500_000, card_id="c" * 500_000), "too_large", "bytes"),
    (payment(event_id="e" * 200), "out_of_range", "event_id is 200 characters long"),
    (payment(card_id="   "), "out_of_range", "card_id must not be blank"),
    (payment(card_id="c\x00d"), "out_of_range", "control character"),
    (payment(event_id="e\u0007"), "out_of_range", "control character"),
    (payment(currency="💰💰"), "out_of_range", "currency"),
    (payment(currency="eur"), "out_of_range", "currency"),
    (payment(mcc="ABCDEFG"), "out_of_range", "mcc"),
    (payment(mcc="541"), "out_of_range", "mcc"),
    (b'{"event_id": "\\ud800"}'[:-1] + b',' + payment()[1:], "malformed_json", "appears twice"),
    (payment(merchant_id="\ud800"), "out_of_range", "not valid Unicode"),
    (b"\xff\xfe{not utf-8", "malformed_json", "not UTF-8"),
    (payment(event_time="9" * 5000), "bad_timestamp", "5000-character"),
    (payment(event_time=10 ** 400), "bad_timestamp", "outside 2000..2100"),
    (payment(lat=float("nan")), "non_finite", "NaN"),
    (b"[]", "not_an_object", "list"),
    (b"", "malformed_json", ""),
])
def test_hostile_records_are_dead_lettered_with_their_reason(raw, reason, detail):
    out = outcome(raw)
    assert not out.ok and out.event is None
    assert (out.reason, detail in out.detail) == (reason, True), out


def test_depth_counts_brackets_outside_strings_only():
    assert json_depth('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}') == 1
    assert outcome(payment(device_id="[" * 40)).ok


def test_dead_letter_payloads_are_bounded_and_keep_the_original_recoverable():
    big = b"<" + b"x" * 1_040_000
    text, enc, size, sha = bounded_raw(big)
    assert (enc, size, sha) == ("utf-8", len(big), hashlib.sha256(big).hexdigest())
    assert len(text.encode()) == MAX_RAW_KEPT and big.startswith(text.encode())
    bad = b"\xff\xfe{not utf-8"
    text, enc, size, sha = bounded_raw(bad)
    assert enc == "base64" and base64.b64decode(text) == bad and size == len(bad)
    # a multi-byte character cut by the prefix does not turn a UTF-8 payload into base64
    text, enc, _, _ = bounded_raw("é" * 20_000)
    assert enc == "utf-8" and set(text) == {"é"}


# ---------------------------------------------------------------------- time guards
#   stream time:  T0 ........ T0+1s ...... T0+2s
#   hostile:                         T0+20h  (one event far ahead)  -> time_skew
#   the valid events after it keep their place; the watermark never saw T0+20h
def test_one_event_far_ahead_of_the_stream_is_refused_and_does_not_move_stream_time():
    intake = Intake(PAYMENT)
    assert outcome(payment(event_time=T0), intake, now=T0 + 25 * HOUR).ok
    ahead = outcome(payment(event_id="far", event_time=T0 + 20 * HOUR), intake, now=T0 + 25 * HOUR)
    assert ahead.reason == "time_skew" and "ahead of the stream" in ahead.detail
    for i in range(1, 50):
        assert outcome(payment(event_id=f"e{i}", event_time=T0 + i * 1000), intake, now=T0 + 25 * HOUR).ok
    assert intake.newest == T0 + 49_000


#   a real jump (a quiet period, a replay of another day): CONFIRM_JUMP events in a row beyond the
#   bound; the first CONFIRM_JUMP - 1 wait in the dead letters, from the last on they are accepted
def test_a_confirmed_jump_is_accepted():
    intake = Intake(PAYMENT, max_jump_ms=HOUR)
    now = T0 + 10 * 24 * HOUR
    assert outcome(payment(event_time=T0), intake, now).ok
    later = [outcome(payment(event_id=f"j{i}", event_time=T0 + 5 * HOUR + i), intake, now) for i in range(5)]
    assert [o.reason for o in later] == ["time_skew"] * (CONFIRM_JUMP - 1) + [None] * (5 - CONFIRM_JUMP + 1)


def test_hostile_jumps_in_different_eras_do_not_confirm_each_other():
    intake = Intake(PAYMENT, max_jump_ms=HOUR)
    now = T0 + 100 * HOUR
    assert outcome(payment(event_time=T0), intake, now).ok
    for k, h in enumerate((20, 40, 60, 80)):
        assert outcome(payment(event_id=f"x{k}", event_time=T0 + h * HOUR), intake, now).reason == "time_skew"
    assert intake.newest == T0


def test_wall_clock_bound_applies_to_the_first_event_too():
    out = outcome(payment(event_time=T0 + 25 * HOUR), Intake(PAYMENT), now=T0)
    assert out.reason == "time_skew" and "wall clock" in out.detail


def test_backfill_has_no_arrival_order_guards():
    """Any row order of a historical file gives the same outcomes (no time_skew from order)."""
    rows = [{**GOOD, "event_id": f"e{i}", "event_time": T0 - i * 13 * 24 * HOUR} for i in range(60)]
    rng = random.Random(3)
    outcomes = []
    for _ in range(3):
        rng.shuffle(rows)
        intake = Intake(PAYMENT, stream_guards=False)
        outcomes.append(sorted((r["event_id"], intake.row(r, T0).reason) for r in rows))
    assert outcomes[0] == outcomes[1] == outcomes[2]
    assert {reason for _, reason in outcomes[0]} == {None}
    streaming = Intake(PAYMENT)
    assert any(streaming.row(r, T0).reason == "time_skew" for r in rows)  # the guard the batch skips


def test_typed_rows_with_huge_strings_are_too_large():
    out = Intake(PAYMENT).row({**GOOD, "card_id": "c" * 500_000}, T0)
    assert out.reason == "too_large"


def test_configured_amount_range():
    strict = PAYMENT.with_range("amount", max_value=100.0)
    assert not outcome(payment(amount=100.5), Intake(strict)).ok
    assert outcome(payment(amount=100.0), Intake(strict)).ok
    with pytest.raises(ValueError, match="no field"):
        PAYMENT.with_range("price", max_value=1.0)


# ---------------------------------------------------------------------- properties
def _one_outcome(out) -> None:
    assert (out.event is None) != (out.reason is None)
    if out.ok:
        # an accepted event can always be carried on: every string encodes, JSON round-trips
        json.dumps(out.event, allow_nan=False).encode("utf-8")
    else:
        assert out.reason in REASONS


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_any_bytes_give_exactly_one_outcome(raw):
    _one_outcome(outcome(raw))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_any_json_gives_exactly_one_outcome(value):
    _one_outcome(outcome(json.dumps(value, allow_nan=True).encode("utf-8", errors="surrogatepass")))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(GOOD)), json_values, max_size=4), st.integers(-10**20, 10**20))
def test_any_mutation_of_a_payment_gives_exactly_one_outcome(changes, now):
    raw = json.dumps({**GOOD, **changes}, allow_nan=True).encode("utf-8", errors="surrogatepass")
    _one_outcome(outcome(raw, now=now))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-2 * 24 * HOUR, 2 * 24 * HOUR), st.binary(max_size=64)), max_size=30))
def test_any_stream_of_times_and_junk_gives_one_outcome_each(items):
    """Interleaved valid payments at arbitrary times and junk: the guards' state never breaks."""
    intake = Intake(PAYMENT)
    for i, (dt, junk) in enumerate(items):
        for raw in (payment(event_id=f"e{i}", event_time=T0 + dt), junk):
            _one_outcome(intake.payload(raw, T0))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([f.name for f in SENSOR.all_fields] + ["_raw", "x"]),
                       st.none() | st.integers() | st.floats() | st.text() | st.booleans(), max_size=8))
def test_any_typed_row_gives_exactly_one_outcome(row):
    _one_outcome(Intake(SENSOR, stream_guards=False).row(row, T0))
