"""De-duplication by event_id: the pure rules (features/dedup.py) and the operator's logic
(udfs/dedup.py) driven without a JVM through stand-ins for Flink's state, timers and context."""
from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.contracts import DUPLICATE, DUPLICATE_ID_CONFLICT, PAYMENT, REASONS
from features.dedup import fingerprint, is_copy, resolve, verdict
from udfs.counters import read_counts
from udfs.dedup import DUPLICATES, Dedup
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


# -- the operator, with stand-ins for Flink -------------------------------------------------------
class FakeState:
    def __init__(self):
        self.v = None

    def value(self):
        return self.v

    def update(self, v):
        self.v = v

    def clear(self):
        self.v = None


class FakeRuntime:
    def __init__(self):
        self.states = {}
        self.key = None

    def get_state(self, descriptor):
        runtime = self

        class Keyed:  # one value per current key, like Flink's keyed state
            def value(self):
                return runtime.states.get(runtime.key)

            def update(self, v):
                runtime.states[runtime.key] = v

            def clear(self):
                runtime.states.pop(runtime.key, None)
        return Keyed()

    def get_metrics_group(self):
        class Counter:
            def inc(self, n=1):
                pass

        class Group:
            def counter(self, name):
                return Counter()
        return Group()


class FakeCtx:
    """Keyed context: the current key, and every event-time timer per key."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.timers = []  # (timestamp, key)

    def get_current_key(self):
        return self.runtime.key

    def timer_service(self):
        ctx = self

        class Timers:
            def register_event_time_timer(self, ts):
                ctx.timers.append((ts, ctx.runtime.key))
        return Timers()


class Harness:
    def __init__(self, horizon_ms, batch=False, counts_dir=None):
        self.op = Dedup(NAMES, CONTENT, horizon_ms, source="t", batch=batch, counts_dir=counts_dir)
        self.rt = FakeRuntime()
        self.op.open(self.rt)
        self.ctx = FakeCtx(self.rt)
        self.kept, self.dead = [], []

    def _collect(self, out):
        for item in out or ():
            if isinstance(item, tuple) and len(item) == 2 and item[0] is DUPLICATES:
                self.dead.append(item[1])
            else:
                self.kept.append(item)

    def send(self, row):
        self.rt.key = row[0]
        self._collect(self.op.process_element(row, self.ctx))

    def watermark(self, wm):
        due = sorted(t for t in self.ctx.timers if t[0] <= wm)
        self.ctx.timers = [t for t in self.ctx.timers if t[0] > wm]
        for ts, key in due:
            self.rt.key = key
            self._collect(self.op.on_timer(ts, self.ctx))

    def end_batch_key(self, key):  # BATCH: the key's timers fire when its input is exhausted
        due = [t for t in self.ctx.timers if t[1] == key]
        self.ctx.timers = [t for t in self.ctx.timers if t[1] != key]
        for ts, k in due:
            self.rt.key = k
            self._collect(self.op.on_timer(ts, self.ctx))


def test_stream_keeps_first_copy_and_dead_letters_the_rest(tmp_path):
    h = Harness(HOUR, counts_dir=str(tmp_path))
    first = event(offset=0)
    h.send(first)
    h.send(event(offset=1, ingest=T0 + 9))  # identical content, another delivery
    h.send(event(offset=2, amount=99.0))  # other content
    h.send(event(eid="p-1-000000002", offset=3))  # another event
    assert h.kept == [first, event(eid="p-1-000000002", offset=3)]
    assert [d[0] for d in h.dead] == [DUPLICATE, DUPLICATE_ID_CONFLICT]
    dup = h.dead[0]
    assert json.loads(dup[2]) == {n: first[NAMES.index(n)] for n in CONTENT}  # raw = the event, no lineage
    assert (dup[6], dup[7], dup[8], dup[9]) == ("t", 0, 1, T0 + 9)  # source, partition, offset, ingest
    assert str(T0) in h.dead[1][1]
    h.op.close()
    assert read_counts(str(tmp_path))["dedup"] == {DUPLICATE: 1, DUPLICATE_ID_CONFLICT: 1}


def test_stream_state_is_cleared_by_event_time():
    h = Harness(HOUR)
    h.send(event())
    h.watermark(T0 + HOUR - 1)
    h.send(event(offset=1))
    assert len(h.kept) == 1 and len(h.dead) == 1  # still within the horizon
    h.watermark(T0 + HOUR)
    assert h.rt.states == {}  # nothing kept beyond the horizon
    h.send(event(offset=2))  # after the horizon: no memory of it (it would be late downstream)
    assert len(h.kept) == 2


def test_stream_distinct_use_of_an_id_beyond_the_horizon():
    h = Harness(HOUR)
    h.send(event())
    h.send(event(t=T0 + 2 * HOUR, amount=1.0))  # same id, a horizon later: a new event
    h.send(event(t=T0 + 2 * HOUR + 5, amount=2.0))  # within the new one's horizon: a conflict
    h.send(event(t=T0 - 2 * HOUR, amount=3.0))  # an older, distinct use: kept
    assert [r[NAMES.index("amount")] for r in h.kept] == [12.5, 1.0, 3.0]
    assert [d[0] for d in h.dead] == [DUPLICATE_ID_CONFLICT]
    h.watermark(T0 + HOUR)  # the first use's timer must not clear the second's state
    assert h.rt.states["p-1-000000001"][0] == T0 + 2 * HOUR
    h.watermark(T0 + 3 * HOUR)
    assert h.rt.states == {}


def test_huge_horizon_does_not_overflow_a_timer():
    h = Harness(2 ** 63 - 1)
    h.send(event())
    assert h.ctx.timers[0][0] < 2 ** 63 - 2


def batch_run(rows, horizon=HOUR):
    """Feed rows the way BATCH does (grouped by key, keys in sorted order), return (kept, dead)."""
    h = Harness(horizon, batch=True)
    for key, group in itertools.groupby(sorted(rows, key=lambda r: r[0]), key=lambda r: r[0]):
        for r in [r for r in rows if r[0] == key]:  # within a key: the given row order
            h.send(r)
        h.end_batch_key(key)
    return h.kept, h.dead


def test_batch_outcome_does_not_depend_on_row_order():
    rows = [event(offset=None), event(amount=7.0, offset=None), event(t=T0 - 5, card="c-9", offset=None),
            event(offset=None), event(eid="p-1-000000002", offset=None),
            event(eid="p-1-000000003", t=T0 + 1, offset=None), event(eid="p-1-000000003", offset=None)]
    outcomes = set()
    for perm in itertools.permutations(range(len(rows))):
        kept, dead = batch_run([rows[i] for i in perm])
        outcomes.add((tuple(sorted(kept, key=repr)), tuple(sorted((tuple(d) for d in dead), key=repr))))
        if len(outcomes) > 1:
            break
    assert len(outcomes) == 1
    kept, dead = batch_run(rows)
    assert sorted(r[0] for r in kept) == ["p-1-000000001", "p-1-000000002", "p-1-000000003"]
    winner = next(r for r in kept if r[0] == "p-1-000000001")
    assert winner[NAMES.index("event_time")] == T0 - 5  # the earliest copy is the one kept
    assert sorted(d[0] for d in dead) == [DUPLICATE_ID_CONFLICT] * 4


def test_batch_single_copies_pass_untouched_without_fingerprinting(monkeypatch):
    import udfs.dedup as mod

    monkeypatch.setattr(mod, "fingerprint", lambda values: pytest.fail("fingerprinted a unique id"))
    rows = [event(eid=f"p-1-{i:09d}") for i in range(5)]
    kept, dead = batch_run(rows)
    assert kept == sorted(rows) and dead == []


def test_operator_refuses_a_zero_horizon():
    with pytest.raises(ValueError, match="horizon"):
        Dedup(NAMES, CONTENT, 0)
