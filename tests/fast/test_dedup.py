"""De-duplication by event_id: the pure rules (features/dedup.py). The JVM operator that applies
them is tested on Flink, against these rules, in tests/integration/test_jvm_dedup.py."""
from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from features.contracts import DUPLICATE, DUPLICATE_ID_CONFLICT, PAYMENT, REASONS
from features.dedup import fingerprint, is_copy, resolve, verdict
from udfs.types import EVENT_EXTRAS

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000
NAMES = list(PAYMENT.field_names) + [n for n, _ in EVENT_EXTRAS]
CONTENT = list(PAYMENT.field_names)


def event(eid="p-1-000000001", t=T0, card="c-000001", amount=12.5, offset=0, ingest=T0 + 5):
    ev = dict(event_id=eid, event_time=t, card_id=card, merchant_id="m-0001", mcc="5411", amount=amount,
              currency="EUR", lat=52.5, lon=13.4, device_id=None, ingest_ms=ingest, src_partition=0,
              src_offset=offset)
    return tuple(ev[n] for n in NAMES)


def content_fp(row) -> bytes:
    return fingerprint(row[NAMES.index(n)] for n in CONTENT)


def test_reasons_are_declared():
    assert {DUPLICATE, DUPLICATE_ID_CONFLICT} <= set(REASONS)
    assert (DUPLICATE, DUPLICATE_ID_CONFLICT) == ("duplicate", "duplicate_id_conflict")


def test_fingerprint_covers_every_content_field_and_nothing_else():
    base = event()
    assert content_fp(base) == content_fp(event(offset=99, ingest=T0 + 1_000))  # lineage is not content
    changed = [event(t=T0 + 1), event(card="c-000002"), event(amount=12.50001), event(eid="p-1-000000002")]
    fps = {content_fp(base)} | {content_fp(e) for e in changed}
    assert len(fps) == 1 + len(changed)
    assert len(content_fp(base)) == 16
    # None, numbers and strings are told apart (no text coincidence between types)
    assert len({fingerprint([None]), fingerprint(["None"]), fingerprint([1]), fingerprint(["1"]),
                fingerprint([1.0])}) == 5


def test_fingerprint_encoding_written_out_by_hand():
    """The typed binary encoding the Java twin (jvm/engine Fingerprint) reproduces byte for byte."""
    def sha(b: bytes) -> bytes:
        return hashlib.sha256(b).digest()[:16]

    assert fingerprint([None]) == sha(b"N")
    assert fingerprint([True, False]) == sha(b"TF")
    assert fingerprint([1]) == sha(b"I\x00\x00\x00\x00\x00\x00\x00\x01")
    assert fingerprint([-2]) == sha(b"I\xff\xff\xff\xff\xff\xff\xff\xfe")
    assert fingerprint([1.0]) == sha(b"D\x3f\xf0\x00\x00\x00\x00\x00\x00")
    assert fingerprint([-0.0]) != fingerprint([0.0])
    assert fingerprint(["é"]) == sha(b"S\x00\x00\x00\x02\xc3\xa9")
    assert fingerprint(["ab", "c"]) != fingerprint(["a", "bc"])  # lengths keep fields apart


def test_horizon_is_a_strict_distance_in_event_time():
    assert is_copy(T0, T0, 1) and is_copy(T0, T0 + 99, 100) and is_copy(T0 + 99, T0, 100)
    assert not is_copy(T0, T0 + 100, 100) and not is_copy(T0 + 100, T0, 100)


def test_verdict_detail_names_the_first_copy():
    a, b = fingerprint(["a"]), fingerprint(["b"])
    reason, detail = verdict(T0, a, T0, a)
    assert reason == DUPLICATE and str(T0) in detail
    reason, detail = verdict(T0, a, T0 + 7, b)
    assert reason == DUPLICATE_ID_CONFLICT
    assert str(T0) in detail and str(T0 + 7) in detail and a[:8].hex() in detail and b[:8].hex() in detail


def test_resolve_keeps_the_smallest_time_then_fingerprint():
    a, b = sorted([fingerprint(["a"]), fingerprint(["b"])])
    copies = [(T0 + 5, a), (T0, b), (T0, a), (T0, a)]
    out = resolve(copies, horizon_ms=HOUR)
    assert out[2] is None  # (T0, a) is the smallest
    assert [o[0] for i, o in enumerate(out) if i != 2] == [DUPLICATE_ID_CONFLICT, DUPLICATE_ID_CONFLICT, DUPLICATE]


def test_resolve_keeps_ids_reused_beyond_the_horizon():
    a, b = fingerprint(["a"]), fingerprint(["b"])
    out = resolve([(T0 + 2 * HOUR, b), (T0, a), (T0 + HOUR - 1, b), (T0 + 3 * HOUR - 1, a)], horizon_ms=HOUR)
    # kept: T0; T0+HOUR-1 is within T0's horizon; T0+2h is a new use; T0+3h-1 within that one's horizon
    assert [o and o[0] for o in out] == [None, None, DUPLICATE_ID_CONFLICT, DUPLICATE_ID_CONFLICT]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10), st.sampled_from([b"\x01" * 16, b"\x02" * 16, b"\x03" * 16])),
                min_size=1, max_size=6), st.integers(1, 12), st.randoms(use_true_random=False))
def test_resolve_does_not_depend_on_order(copies, horizon, rnd):
    """The outcome of each distinct record is the same in any order (BATCH: row order means nothing)."""
    shuffled = copies[:]
    rnd.shuffle(shuffled)
    mine = sorted(zip(copies, resolve(copies, horizon)), key=repr)
    theirs = sorted(zip(shuffled, resolve(shuffled, horizon)), key=repr)
    assert mine == theirs
    assert sum(o is None for o in resolve(copies, horizon)) >= 1
