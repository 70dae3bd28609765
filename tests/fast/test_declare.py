"""Declarations that compute (features/declare.py) and their pandas execution (features/execute.py).

The hand-made case, one card, a 1-hour window (minutes; b and c tie at 30, ordered by id):

    minute:   0     30    30    90
    event:    a     b     c     d
    amount:   10    20    20    40
    merchant: m1    m2    m1    m1
    device:   -     d1    -     d1

    1h window of c: (-30, 30] -> {a, b, c}
    1h window of d: (30, 90]  -> {d}        b and c sit exactly at t - 1h: out
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from features.contracts import PAYMENT
from features.declare import Aggregation, Derived
from features.execute import aggregate, derive, execute
from features.featureset import HOUR_MS, MINUTE_MS, FeatureSet
from features.fraud import FRAUD_FEATURES
from tests.reference.card_history import compute_features
from features.synthetic import generate_payments


def _event(eid, minute, amount, merchant, device):
    return dict(event_id=eid, event_time=minute * MINUTE_MS, card_id="c", merchant_id=merchant,
                amount=amount, device_id=device, lat=0.0, lon=0.0)


EVENTS = [_event("a", 0, 10.0, "m1", None), _event("b", 30, 20.0, "m2", "d1"),
          _event("c", 30, 20.0, "m1", None), _event("d", 90, 40.0, "m1", "d1")]


def _set(*items, name="hand_made"):
    return FeatureSet(name=name, version=1, contract=PAYMENT, key="card_id",
                      order_by=("event_time", "event_id"), windows={"1h": HOUR_MS},
                      retention_ms=HOUR_MS, items=items)


HAND = _set(
    Aggregation("n_1h", "count", window="1h"),
    Aggregation("sum_1h", "sum", "amount", "1h"),
    Aggregation("mean_prior_1h", "mean", "amount", "1h", prior=True),
    Aggregation("std_1h", "std_pop", "amount", "1h", min_count=2),
    Aggregation("min_1h", "min", "amount", "1h"),
    Aggregation("max_1h", "max", "amount", "1h"),
    Aggregation("merchants_1h", "distinct_count", "merchant_id", "1h"),
    Aggregation("devices_1h", "distinct_count", "device_id", "1h"),
    Aggregation("devices_or_0_1h", "distinct_count", "device_id", "1h", min_count=0),
    Aggregation("prev_amount", "last", "amount"),
    Aggregation("merchant_new", "first_seen", "merchant_id", "1h", prior=True),
    Aggregation("device_new", "first_seen", "device_id", "1h", prior=True),
    Derived("ratio_to_prev", "float64", ("amount", "prev_amount"), lambda a, p: a / p, nullable=True),
)

EXPECTED = {  # by hand, from the diagram
    "n_1h": [1, 2, 3, 1],
    "sum_1h": [10.0, 30.0, 50.0, 40.0],
    "mean_prior_1h": [None, 10.0, 15.0, None],
    "std_1h": [None, 5.0, math.sqrt(((10 - 50 / 3) ** 2 + (20 - 50 / 3) ** 2 + (20 - 50 / 3) ** 2) / 3), None],
    "min_1h": [10.0, 10.0, 10.0, 40.0],
    "max_1h": [10.0, 20.0, 20.0, 40.0],
    "merchants_1h": [1, 2, 2, 1],
    "devices_1h": [None, 1, 1, 1],  # no non-null value in a's window: below min_count 1
    "devices_or_0_1h": [0, 1, 1, 1],
    "prev_amount": [None, 10.0, 20.0, 20.0],
    "merchant_new": [True, True, False, True],
    "device_new": [None, True, None, True],
    "ratio_to_prev": [None, 2.0, 1.0, 2.0],
}


def _records(df):
    return df.to_dict("records")


@pytest.mark.parametrize("perm", [(0, 1, 2, 3), (3, 2, 1, 0), (2, 0, 3, 1)])
def test_hand_made_values_in_any_row_order(perm):
    out = execute(HAND, [EVENTS[i] for i in perm])
    by_id = {r["event_id"]: r for r in _records(out)}
    for name, want in EXPECTED.items():
        got = [by_id[e][name] for e in "abcd"]
        assert got == want, name
        assert [type(v) for v in got] == [type(v) for v in want], name


def test_output_columns_types_and_nullability_follow_the_declaration():
    f = {x.name: x for x in HAND.features}
    assert (f["n_1h"].dtype, f["n_1h"].nullable) == ("int64", False)
    assert (f["mean_prior_1h"].dtype, f["mean_prior_1h"].nullable) == ("float64", True)
    assert (f["std_1h"].nullable, f["min_1h"].nullable, f["sum_1h"].nullable) == (True, False, False)
    assert (f["devices_1h"].dtype, f["devices_1h"].nullable) == ("int64", True)
    assert f["devices_or_0_1h"].nullable is False
    assert (f["merchant_new"].nullable, f["device_new"].nullable) == (False, True)
    assert list(execute(HAND, EVENTS).columns) == list(HAND.output_columns)


def test_nulls_are_skipped_and_min_count_applies():
    s = _set(Aggregation("dev_count", "distinct_count", "device_id", "1h", min_count=2))
    assert execute(s, EVENTS)["dev_count"].tolist() == [None, None, None, None]
    s = _set(Aggregation("n", "count", window="1h", min_count=2))
    assert execute(s, EVENTS)["n"].tolist() == [None, 2, 3, None]


def test_a_negative_zero_amount_keeps_its_sign_in_an_inclusive_sum():
    s = _set(Aggregation("s", "sum", "amount", "1h"))
    v = execute(s, [dict(EVENTS[0], amount=-0.0)])["s"].iloc[0]
    assert v == 0.0 and math.copysign(1.0, v) == -1.0  # CardHistory starts from the amount itself


def test_ties_in_time_are_ordered_by_event_id_in_code_point_order():
    # U+E000 sorts after U+10000 in UTF-16 units but before it in code points (Python's order).
    evs = [dict(EVENTS[0], event_id="\U00010000"), dict(EVENTS[0], event_id="\ue000", amount=5.0)]
    out = execute(_set(Aggregation("prev", "last", "amount")), evs)
    assert out["prev"].tolist() == [5.0, None]


def test_equals_the_hand_written_fraud_logic_on_generated_payments_with_ties():
    df = generate_payments(6000, seed=11, days=10)
    df["event_time"] = df["event_time"] // 60_000 * 60_000  # whole minutes: many ties
    rows = pa.Table.from_pandas(df, preserve_index=False).to_pylist()
    want = {r["event_id"]: r for r in compute_features(rows)}
    got = _records(execute(FRAUD_FEATURES, df))
    assert len(got) == len(want) == 6000
    diff = [(r["event_id"], c, r[c], want[r["event_id"]][c]) for r in got for c in FRAUD_FEATURES.output_columns
            if not (r[c] == want[r["event_id"]][c] or r[c] is None is want[r["event_id"]][c])
            or (r[c] is None) != (want[r["event_id"]][c] is None)]
    assert diff == []


def test_adding_a_windowed_feature_is_one_line():
    plus = dataclasses.replace(FRAUD_FEATURES, name="fraud_plus",
                               items=FRAUD_FEATURES.items + (Aggregation("amount_max_24h", "max", "amount", "24h"),))
    assert plus.feature_names == FRAUD_FEATURES.feature_names + ("amount_max_24h",)
    df = generate_payments(3000, seed=12, days=5)
    out = execute(plus, df).set_index("event_id")
    base = execute(FRAUD_FEATURES, df).set_index("event_id")
    pd.testing.assert_frame_equal(out[list(base.columns)], base)
    # brute force: the max amount of the card's events in (t - 24h, t], at or before e in order
    ev = df.sort_values(["event_time", "event_id"]).to_dict("records")
    for i, e in enumerate(ev[:400]):
        window = [p["amount"] for p in ev[:i + 1] if p["card_id"] == e["card_id"]
                  and p["event_time"] > e["event_time"] - 24 * HOUR_MS]
        assert out.at[e["event_id"], "amount_max_24h"] == max(window)


def test_the_fraud_declaration_keeps_its_hash():
    # The values did not change, so neither may the version or the hash models are stamped with.
    assert (FRAUD_FEATURES.version, FRAUD_FEATURES.definition_hash) == (1, "e6e77efeaa8f90e9")


def test_engine_spec_lists_the_aggregations_and_their_columns():
    spec = HAND.engine_spec()
    read = {"merchant_id", "amount", "device_id"}  # in contract order, with engine types
    assert [(c["name"], c["type"]) for c in spec["columns"]] == \
        [(f.name, {"string": "string", "float64": "double"}[f.type]) for f in PAYMENT.all_fields if f.name in read]
    assert [a["name"] for a in spec["aggregations"]] == [n for n in EXPECTED if n != "ratio_to_prev"]
    assert spec["aggregations"][9] == {"name": "prev_amount", "op": "last", "input": "amount",
                                       "window_ms": None, "prior": False, "min_count": 1}


def test_derive_reads_nan_as_null_and_checks_its_result():
    frame = execute(HAND, EVENTS)
    bad = _set(Aggregation("prev_amount", "last", "amount"),
               Derived("r", "float64", ("prev_amount",), lambda p: p, nullable=False))
    with pytest.raises(ValueError, match="null result but declared nullable=False"):
        derive(bad, pd.concat([pd.DataFrame(EVENTS), aggregate(bad, EVENTS)], axis=1))
    short = _set(Aggregation("prev_amount", "last", "amount"),
                 Derived("r", "float64", ("prev_amount",), lambda p: p[:1], nullable=True))
    with pytest.raises(ValueError, match="returned shape"):
        derive(short, pd.concat([pd.DataFrame(EVENTS), aggregate(short, EVENTS)], axis=1))
    assert frame["ratio_to_prev"].iloc[0] is None


@pytest.mark.parametrize("make, message", [
    (lambda: Aggregation("x", "median", "amount", "1h"), "unknown op"),
    (lambda: Aggregation("x", "sum", window="1h"), "needs an input"),
    (lambda: Aggregation("x", "count", "amount", "1h"), "count takes no input"),
    (lambda: Aggregation("x", "mean", "amount"), "needs a window"),
    (lambda: Aggregation("x", "first_seen", "merchant_id", "1h"), "declare prior=True"),
    (lambda: Aggregation("x", "mean", "amount", "1h", min_count=0), "min_count must be >= 1"),
    (lambda: _set(Aggregation("x", "sum", "merchant_id", "1h")), "needs a numeric input"),
    (lambda: _set(Aggregation("x", "count", window="2h")), "unknown window"),
    (lambda: _set(Aggregation("x", "sum", "nope", "1h")), "unknown input"),
    (lambda: _set(Aggregation("amount", "count", window="1h")), "shadows a contract field"),
    (lambda: _set(Aggregation("x", "mean", "amount", "1h", prior=True, nullable=False)), "declared nullable=False"),
    (lambda: _set(Aggregation("x", "count", window="1h"), Aggregation("p", "last", "amount", hidden=True)),
     "hidden but no derived feature uses it"),
    (lambda: _set(Aggregation("x", "count", window="1h"), Aggregation("x", "count", window="1h")), "duplicate"),
    (lambda: _set(Derived("x", "float64", ("nope",), np.abs, nullable=True)), "unknown input"),
])
def test_bad_declarations_are_refused_with_the_reason(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def _iot_set(*items, key=("machine_id", "sensor_id")):
    from features.contracts import SENSOR

    return FeatureSet(name="iot_small", version=1, contract=SENSOR, key=key, order_by=("event_time", "event_id"),
                      windows={"1h": HOUR_MS}, retention_ms=HOUR_MS,
                      items=items or (Aggregation("n", "count", window="1h"),))


@pytest.mark.parametrize("make, message", [
    (lambda: Aggregation("x", "ewma", "amount", "1h"), "ewma needs half_life_ms"),
    (lambda: Aggregation("x", "ewma", "amount", "1h", half_life_ms=0), "ewma needs half_life_ms"),
    (lambda: Aggregation("x", "ewma", "amount", "1h", half_life_ms=1.5), "ewma needs half_life_ms"),
    (lambda: Aggregation("x", "ewma", "amount", "1h", half_life_ms=True), "ewma needs half_life_ms"),
    (lambda: Aggregation("x", "ewma", "amount", half_life_ms=60_000), "needs a window"),
    (lambda: Aggregation("x", "ewma", "amount", "1h", half_life_ms=60_000, min_count=0), "min_count must be >= 1"),
    (lambda: Aggregation("x", "mean", "amount", "1h", half_life_ms=60_000), "half_life_ms applies to ewma only"),
    (lambda: Aggregation("x", "last", "amount", half_life_ms=60_000), "half_life_ms applies to ewma only"),
    (lambda: _set(Aggregation("x", "ewma", "merchant_id", "1h", half_life_ms=60_000)), "needs a numeric input"),
    (lambda: _iot_set(key=()), "non-empty tuple"),
    (lambda: _iot_set(key=("machine_id", 3)), "non-empty tuple"),
    (lambda: _iot_set(key=("machine_id", "machine_id")), "repeated field in key"),
    (lambda: _iot_set(key=("machine_id", "plant")), "key 'plant' not in contract sensor"),
    (lambda: _iot_set(key=("machine_id", "event_time")), "identity column"),
    (lambda: _iot_set(key=("machine_id", "value")), "must be a non-nullable string field"),
    (lambda: FeatureSet(name="x", version=1, contract=PAYMENT, key=("card_id", "device_id"),
                        order_by=("event_time", "event_id"), windows={"1h": HOUR_MS}, retention_ms=HOUR_MS,
                        items=(Aggregation("n", "count", window="1h"),)),
     "'device_id' must be a non-nullable string field"),
    (lambda: _iot_set(Aggregation("sensor_id", "count", window="1h")), "shadows a contract field"),
])
def test_bad_ewma_and_key_declarations_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_composite_key_leads_the_rows_and_a_one_field_tuple_is_the_plain_key():
    s = _iot_set()
    assert s.keys == ("machine_id", "sensor_id") and s.key == ("machine_id", "sensor_id")
    assert s.passthrough == ("event_id", "machine_id", "sensor_id", "event_time")
    assert s.engine_spec()["keys"] == ["machine_id", "sensor_id"]
    assert s.definition()["key"] == ["machine_id", "sensor_id"]
    assert [f.name for f in s.arrow_schema()][:4] == list(s.passthrough)
    one = _iot_set(key=("machine_id",))
    assert one.key == "machine_id" and one.definition_hash == _iot_set(key="machine_id").definition_hash
    assert one.definition_hash != s.definition_hash
    assert FRAUD_FEATURES.engine_spec()["keys"] == ["card_id"]


def test_the_half_life_enters_the_hash_of_a_set_that_uses_it_only():
    a = _iot_set(Aggregation("e", "ewma", "value", "1h", half_life_ms=60_000))
    b = _iot_set(Aggregation("e", "ewma", "value", "1h", half_life_ms=120_000))
    assert a.definition()["half_life_ms"] == {"e": 60_000}
    assert a.definition_hash != b.definition_hash
    assert "half_life_ms" not in _iot_set().definition() and "half_life_ms" not in FRAUD_FEATURES.definition()
    assert a.engine_spec()["aggregations"][0]["half_life_ms"] == 60_000
    assert all("half_life_ms" not in x for x in FRAUD_FEATURES.engine_spec()["aggregations"])
