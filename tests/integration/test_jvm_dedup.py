"""The JVM de-duplication operator (jvm/engine Dedup, udfs/dedup.py) against the pure rules of
features/dedup.py: its fingerprint and rules through py4j, value for value, and the operator on a
Flink MiniCluster in STREAMING and BATCH.

Streaming, one event_id (horizon 1 h, T0 = 2026-01-01T00:00Z), in arrival order::

    arrival   event_time   content   outcome
    1         T0           A         kept (remembered: T0, fp(A))
    2         T0           A         duplicate               (same time and content)
    3         T0           B         duplicate_id_conflict   (other content)
    4         T0 + 2 h     C         kept: a horizon later, a new use of the id (remembered: T0 + 2 h)
    5         T0 + 2 h + 5 D         duplicate_id_conflict   (within the new use's horizon)
    6         T0 - 2 h     E         kept: an older, distinct use; T0 + 2 h stays remembered
"""
from __future__ import annotations

import itertools
import json
import math
import random

import pytest

from features.contracts import DUPLICATE, DUPLICATE_ID_CONFLICT, PAYMENT
from features.dedup import fingerprint, is_copy, resolve, verdict
from udfs.types import EVENT_EXTRAS, REJECT_COLUMNS

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000
HOUR = 3_600_000
COLUMNS = PAYMENT.flink_sql_columns(with_labels=False) + list(EVENT_EXTRAS)
NAMES = [n for n, _ in COLUMNS]
CONTENT = list(PAYMENT.field_names)


@pytest.fixture(scope="module")
def jvm():
    from jobs.flinkenv import FlinkSettings, make_env
    from pyflink.java_gateway import get_gateway

    make_env(FlinkSettings(batch=False, parallelism=1))  # puts the project's jars on the gateway's classpath
    gw = get_gateway()
    return gw, gw.jvm.io.streamscore.engine


def _values(rnd: random.Random) -> list:
    pool = [None, True, False, 0, 1, -1, 2 ** 31, -2 ** 63, 2 ** 63 - 1, 0.0, -0.0, 1.5, 1e-300, 5e-324,
            math.inf, -math.inf, 1767225600000.25, "", "a", "é", "日本", "\U0001F600", "x" * 300, "a\nb\"c"]
    return [rnd.choice(pool) if rnd.random() < 0.6 else rnd.choice([rnd.random() * 1e6, rnd.randint(-10 ** 12, 10 ** 12),
                                                                     "s" + str(rnd.random())])
            for _ in range(rnd.randint(0, 12))]


def test_fingerprint_is_byte_identical(jvm):
    gw, eng = jvm
    rnd = random.Random(5)
    for _ in range(300):
        vals = _values(rnd)
        arr = gw.new_array(gw.jvm.Object, len(vals))
        for i, v in enumerate(vals):
            # py4j passes small ints as Integer: send longs where Java rows hold them
            arr[i] = gw.jvm.java.lang.Long(v) if isinstance(v, int) and not isinstance(v, bool) else v
        assert bytes(eng.Fingerprint.of(arr)) == fingerprint(vals), vals


def _java_resolve(gw, eng, copies, horizon):
    times = gw.new_array(gw.jvm.long, len(copies))
    fps = gw.new_array(gw.jvm.byte, len(copies), 16)
    for i, (t, fp) in enumerate(copies):
        times[i] = t
        fps[i] = bytearray(fp)
    out = eng.DedupRules.resolve(times, fps, horizon)
    return [None if o is None else (o[0], o[1]) for o in out]


def test_rules_agree_with_the_python_ones(jvm):
    gw, eng = jvm
    rnd = random.Random(11)
    fps = [fingerprint([c]) for c in "abc"]
    for _ in range(150):
        copies = [(T0 + rnd.randint(0, 10), rnd.choice(fps)) for _ in range(rnd.randint(1, 6))]
        horizon = rnd.randint(1, 12)
        assert _java_resolve(gw, eng, copies, horizon) == resolve(copies, horizon), (copies, horizon)
    a, b = fps[:2]
    for t0, t, fa, fb in [(T0, T0, a, a), (T0, T0, a, b), (T0, T0 + 7, a, a), (T0 + 7, T0, b, a)]:
        assert tuple(eng.DedupRules.verdict(t0, bytearray(fa), t, bytearray(fb))) == verdict(t0, fa, t, fb)
    edges = [(0, 99, 100), (100, 1, 100), (0, 100, 100), (-2 ** 63, 2 ** 63 - 1, 2 ** 63 - 1), (5, 5, 1)]
    for first, t, h in edges:
        assert eng.DedupRules.isCopy(first, t, h) == is_copy(first, t, h), (first, t, h)


def _event(eid="p-1-000000001", t=T0, card="c-000001", amount=12.5, offset=0):
    ev = dict(event_id=eid, event_time=t, card_id=card, merchant_id="m-0001", mcc="5411", amount=amount,
              currency="EUR", lat=52.5, lon=13.4, device_id=None, ingest_ms=T0 + 5, src_partition=0,
              src_offset=offset)
    return tuple(ev[n] for n in NAMES)


def _run(rows_by_part: dict, *, batch: bool, horizon: int, counts_dir=None, horizons=None) -> dict:
    """Each part's rows through its own dedup operator (``horizons[part]`` or ``horizon``), in one job;
    {part: (kept, dead)}."""
    from pyflink.common import Row, Types

    from jobs.flinkenv import FlinkSettings, make_env
    from udfs.dedup import deduplicate
    from udfs.types import row_type
    from udfs.watermarks import with_watermarks

    # the test's own tagging maps stay apart from the operator's (fused Python maps would share its uid)
    env, _ = make_env(FlinkSettings(batch=batch, parallelism=1, extra={"python.operator-chaining.enabled": "false"}))
    tagged = None
    for part, rows in rows_by_part.items():
        stream = env.from_collection([Row(*r) for r in rows], type_info=row_type(COLUMNS))
        if not batch:
            stream = with_watermarks(stream, COLUMNS, 0, 0, f"t/{part}/wm")
        res = deduplicate(stream, COLUMNS, CONTENT, (horizons or {}).get(part, horizon), batch=batch, uid=f"t/{part}/dedup", source="t",
                          counts_dir=counts_dir)
        kept = res.kept.map(lambda r, p=part: json.dumps([p, "kept", list(r)]), output_type=Types.STRING())
        dead = res.duplicates.map(lambda r, p=part: json.dumps([p, "dead", list(r)]), output_type=Types.STRING())
        both = kept.union(dead)
        tagged = both if tagged is None else tagged.union(both)
    out = {p: ([], []) for p in rows_by_part}
    with tagged.execute_and_collect() as results:
        for line in results:
            part, kind, row = json.loads(line)
            out[part][0 if kind == "kept" else 1].append(tuple(row))
    return out


def test_streaming_operator_keeps_the_first_copy(tmp_path):
    from udfs.counters import read_counts

    first = _event()
    rows = [first, _event(offset=1), _event(offset=2, amount=99.0), _event(t=T0 + 2 * HOUR, amount=1.0, offset=3),
            _event(t=T0 + 2 * HOUR + 5, amount=2.0, offset=4), _event(t=T0 - 2 * HOUR, amount=3.0, offset=5),
            _event(eid="p-1-000000002", offset=6)]
    huge = [_event(eid="p-9")]  # a horizon of 2**63 - 1 must not overflow the cleanup timer
    out = _run({"main": rows, "huge": huge}, batch=False, horizon=HOUR, counts_dir=str(tmp_path),
               horizons={"huge": 2 ** 63 - 1})
    kept, dead = out["main"]
    assert [r[NAMES.index("src_offset")] for r in kept] == [0, 3, 5, 6]  # the diagram's kept rows, in order
    assert [d[0] for d in dead] == [DUPLICATE, DUPLICATE_ID_CONFLICT, DUPLICATE_ID_CONFLICT]
    dup = dict(zip([n for n, _ in REJECT_COLUMNS], dead[0]))
    assert json.loads(dup["raw"]) == {n: first[NAMES.index(n)] for n in CONTENT}  # raw = content, no lineage
    assert (dup["source"], dup["src_partition"], dup["src_offset"], dup["ingest_ms"]) == ("t", 0, 1, T0 + 5)
    fa = fingerprint(first[NAMES.index(n)] for n in CONTENT)
    fb = fingerprint(_event(amount=99.0)[NAMES.index(n)] for n in CONTENT)
    assert dead[1][1] == verdict(T0, fa, T0, fb)[1]  # the Java detail is the Python one, word for word
    assert out["huge"] == (huge, [])
    assert read_counts(str(tmp_path))["dedup"] == {DUPLICATE: 1, DUPLICATE_ID_CONFLICT: 2}


def test_batch_outcome_does_not_depend_on_row_order():
    rows = [_event(offset=None), _event(amount=7.0, offset=None), _event(t=T0 - 5, card="c-9", offset=None),
            _event(offset=None), _event(eid="p-1-000000002", offset=None),
            _event(eid="p-1-000000003", t=T0 + 1, offset=None), _event(eid="p-1-000000003", offset=None)]
    perms = list(itertools.permutations(range(len(rows))))
    picks = [perms[0], perms[-1]] + random.Random(2).sample(perms, 3)
    out = _run({f"p{k}": [rows[i] for i in p] for k, p in enumerate(picks)}, batch=True, horizon=HOUR)
    outcomes = {(tuple(sorted(kept)), tuple(sorted(dead))) for kept, dead in out.values()}
    assert len(outcomes) == 1
    kept, dead = out["p0"]
    assert sorted(r[0] for r in kept) == ["p-1-000000001", "p-1-000000002", "p-1-000000003"]
    winner = next(r for r in kept if r[0] == "p-1-000000001")
    assert winner[NAMES.index("event_time")] == T0 - 5  # the earliest copy is the one kept
    assert sorted(d[0] for d in dead) == [DUPLICATE_ID_CONFLICT] * 4
    # the same outcome as the pure rules give for that id
    ids = [r for r in rows if r[0] == "p-1-000000001"]
    want = resolve([(r[1], fingerprint(r[NAMES.index(n)] for n in CONTENT)) for r in ids], HOUR)
    assert sorted(o[0] for o in want if o) == [DUPLICATE_ID_CONFLICT] * 3
