"""The JVM intake (jvm/engine Intake, TimeGuards; udfs/parse.py) against the Python intake
(features/intake.py), through py4j, record for record.

The JVM path may only accept what the Python intake accepts, with the same values (type, sign of
zero and all); everything else it must leave to Python ("not certain"). Checked on every hostile
record kind of issue 7, on thousands of mutations of valid payments, on random bytes and JSON
(hypothesis), and on typed rows. Everyday records must take the JVM path: all of a generated stream.
The time guards are checked as sequences: the refusal details of Java and Python agree one by one.
"""
from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contracts import BEHAVIOUR, PAYMENT, SENSOR
from features.intake import Intake
from features.synthetic import generate_payments, records

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000
HOUR = 3_600_000
MAX_BYTES = 65_536
GOOD = {"event_id": "e-1", "event_time": T0, "card_id": "c-1", "merchant_id": "m-1", "mcc": "5411",
        "amount": 12.5, "currency": "EUR", "lat": 52.5, "lon": 13.4, "device_id": None}


@pytest.fixture(scope="module")
def engine():
    from jobs.flinkenv import FlinkSettings, make_env
    from pyflink.java_gateway import get_gateway

    make_env(FlinkSettings(batch=False, parallelism=1))  # the project's jars on the gateway's classpath
    gw = get_gateway()
    return gw, gw.jvm.io.streamscore.engine


def _same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return a == b


class Checker:
    """Java vs Python on one contract; counts how many records each path took."""

    def __init__(self, engine, contract, with_labels=False):
        self.gw, self.eng = engine
        self.contract = contract
        self.spec = json.dumps(contract.intake_spec(with_labels))
        self.names = contract.field_names + (contract.label_names if with_labels else ())
        self.python = Intake(contract, max_record_bytes=MAX_BYTES, stream_guards=False, time_guards=False)
        self.java_took = self.python_ok = 0

    def payload(self, raw: bytes):
        java = self.eng.Intake.tryPayload(self.spec, MAX_BYTES, bytearray(raw))
        self._compare(java, self.python.payload(raw, T0), raw)

    def typed(self, row: dict):
        every = [f.name for f in self.contract.all_fields]  # the JVM checks labels wherever present
        vals = self.gw.new_array(self.gw.jvm.Object, len(every))
        for i, n in enumerate(every):
            v = row.get(n)
            vals[i] = self.gw.jvm.java.lang.Long(v) if isinstance(v, int) and not isinstance(v, bool) else v
        java = self.eng.Intake.tryTyped(self.spec, MAX_BYTES, vals)
        self._compare(java, self.python.row(row, T0), row)

    def _compare(self, java, py, what):
        self.python_ok += py.ok
        if java is None:
            return
        self.java_took += 1
        assert py.ok, f"JVM accepted what Python refuses ({py.reason}: {py.detail}): {what!r}"[:2000]
        got = list(java)
        want = [py.event.get(n) for n in self.names]
        bad = [(n, g, w) for n, g, w in zip(self.names, got, want) if not _same(g, w)]
        assert not bad, f"{bad} for {what!r}"[:2000]


def _dumps(obj) -> bytes:
    return json.dumps(obj, allow_nan=True, ensure_ascii=False).encode("utf-8", errors="surrogatepass")


HOSTILE_VALUES = [None, True, False, 0, -0.0, 1, -1, 2 ** 53, 2 ** 53 + 1, 2 ** 63, 10 ** 400, 1.5, 1e15, 1e300,
                  float("nan"), float("inf"), "", " ", "   ", "a", "5411", "541", "EUR", "eur", "e\u0007", "c\x00d",
                  "\ud800", "é", "💰", "x" * 129, "1767225600000", "2026-01-01T00:00:00Z", [], {}, [1], {"a": 1}]


def test_every_mutation_of_a_payment_agrees(engine):
    c = Checker(engine, PAYMENT)
    c.payload(_dumps(GOOD))
    assert c.java_took == 1
    for name in list(GOOD) + ["extra", "is_fraud"]:
        for v in HOSTILE_VALUES:
            c.payload(_dumps({**GOOD, name: v}))
        c.payload(_dumps({k: x for k, x in GOOD.items() if k != name}))  # the field missing
    raw = _dumps(GOOD)
    texts = [raw[:-1] + b',"amount":1}', raw[:-1] + b',"extra":1}', b" \t\n" + raw + b"\r\n", raw + b"x", raw + b"{}",
             b"\xef\xbb\xbf" + raw, raw.replace(b'"amount":12.5', b'"amount":1.25e1'),
             raw.replace(b'"amount":12.5', b'"amount":1E400'), raw.replace(b'"amount":12.5', b'"amount":NaN'),
             raw.replace(b'"amount":12.5', b'"amount":-0'), raw.replace(b'"amount":12.5', b'"amount":12.50'),
             raw.replace(b'"amount":12.5', b'"amount":012.5'), raw.replace(b'"event_time":' + str(T0).encode(),
                                                                             b'"event_time":' + str(T0).encode() + b'.0'),
             raw.replace(b'"card_id"', b'"card\\u005fid"'), raw.replace(b'"c-1"', b'"c\\u002d1"'),
             raw.replace(b'"c-1"', b"'c-1'"), raw.replace(b'"c-1"', b'"c-1" /* x */'),
             b"\xff\xfe" + raw, b"[]", b"", b"null", b'"x"', b"{", b"{}", raw.replace(b",", b" ,")]
    for t in texts:
        c.payload(t)
    # the Python intake accepts many of these; the JVM must never disagree on one it takes
    assert c.python_ok > c.java_took > 50


def test_a_generated_stream_takes_the_jvm_path_entirely(engine):
    c = Checker(engine, PAYMENT)
    frame = generate_payments(3000, seed=4, days=2, n_cards=50)
    for ev in records(frame, PAYMENT):
        c.payload(PAYMENT.to_json(ev).encode())
    assert c.python_ok == 3000 and c.java_took == 3000


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=512))
def test_any_bytes_agree(engine, raw):
    Checker(engine, PAYMENT).payload(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
    max_leaves=12)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(sorted(GOOD)), json_values, max_size=3))
def test_any_json_mutation_agrees(engine, changes):
    Checker(engine, PAYMENT).payload(_dumps({**GOOD, **changes}))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.sampled_from([PAYMENT, BEHAVIOUR, SENSOR]), st.booleans(), st.data())
def test_typed_rows_agree(engine, contract, with_labels, data):
    c = Checker(engine, contract, with_labels)
    good = {f.name: {"string": "ab", "int64": 7, "float64": 1.5, "bool": True, "timestamp_ms": T0}[f.type]
            for f in contract.all_fields}
    if contract is BEHAVIOUR:
        good["action"] = "view"
    if contract is PAYMENT:
        good.update(mcc="5411", currency="EUR")
    c.typed(good)
    assert c.java_took == 1
    values = st.none() | st.integers(-2 ** 63, 2 ** 63 - 1) | st.floats() | st.text(max_size=6) | st.booleans()
    row = {**good, **data.draw(st.dictionaries(st.sampled_from(list(good)), values, max_size=3))}
    c.typed(row)


def test_time_guards_agree_sequence_by_sequence(engine):
    gw, eng = engine
    rnd = random.Random(9)
    refused = 0
    for trial in range(60):
        n = rnd.randint(1, 40)
        bounds = dict(max_future_ms=rnd.choice([HOUR, 24 * HOUR]), max_jump_ms=rnd.choice([HOUR, 3 * HOUR]),
                      max_past_ms=rnd.choice([2 * HOUR, 24 * HOUR]))
        guards = trial % 5 != 0
        times = [T0 + rnd.choice([0, 1, -1, 5, 30, 61, 200, -150, 1500, -3000]) * 60_000 * rnd.randint(0, 3)
                 for _ in range(n)]
        nows = [T0 + rnd.choice([0, 0, 0, -30 * HOUR]) for _ in range(n)]
        py = Intake(PAYMENT, stream_guards=guards, **bounds)
        want = [py.payload(_dumps({**GOOD, "event_time": t}), now).detail or None for t, now in zip(times, nows)]
        jt, jn = gw.new_array(gw.jvm.long, n), gw.new_array(gw.jvm.long, n)
        for i in range(n):
            jt[i], jn[i] = times[i], nows[i]
        got = list(eng.TimeGuards.trace(jt, jn, bounds["max_future_ms"], bounds["max_jump_ms"],
                                        bounds["max_past_ms"], guards))
        assert got == want, (times, nows, bounds, guards)
        refused += sum(w is not None for w in want)
    assert refused > 20  # the sequences do reach the guards
