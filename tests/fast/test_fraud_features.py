"""The fraud feature contract, checked on two independent implementations.

* ``tests.reference.card_history.compute_features``: the per-event logic (CardHistory);
* ``tests.reference.fraud_reference.reference_features``: the vectorised pandas/numpy check.

Hand-made cases carry their expected values written out here (never computed by either
implementation); every hand case runs against both.  A seeded random parity test then
compares the two implementations row by row.  Pure Python: no JVM, no Flink.

Timeline notation in the comments: ``|`` is an event, ``(`` an open and ``]`` a closed
window end; W windows are ``t - W < event_time <= t``, cut at e in (event_time, event_id) order.
"""
from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from features.featureset import DAY_MS, HOUR_MS
from features.fraud import FRAUD_FEATURES
from tests.reference.card_history import compute_features
from tests.reference.fraud_reference import OUTPUT_COLUMNS, reference_features

H = 3_600_000
D = 24 * H
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
# One degree of arc on a great circle, in km (earth radius 6371.0088 km).
DEG_KM = 6371.0088 * math.pi / 180.0

FEATURES = FRAUD_FEATURES.feature_names
FLOAT_FEATURES = tuple(f.name for f in FRAUD_FEATURES.features if f.dtype == "float64")
EXACT_FEATURES = tuple(f.name for f in FRAUD_FEATURES.features if f.dtype != "float64")


# --------------------------------------------------------------------------- helpers

def ev(eid, t, card="c1", merchant="m1", amount=10.0, lat=0.0, lon=0.0, device=None):
    return dict(event_id=eid, event_time=t, card_id=card, merchant_id=merchant, amount=float(amount),
                lat=float(lat), lon=float(lon), device_id=device)


def _py(v):
    """numpy/pandas scalar -> plain Python, NaN/NA -> None."""
    if v is None or v is pd.NA:
        return None
    if isinstance(v, (float, np.floating)) and math.isnan(v):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def run_production(events):
    return {r["event_id"]: r for r in compute_features([dict(e) for e in events])}


def run_reference(events):
    df = pd.DataFrame(events, columns=list(events[0]))
    out = reference_features(df)
    assert list(out.columns) == list(FRAUD_FEATURES.output_columns)
    assert len(out) == len(df)
    return {row["event_id"]: {k: _py(v) for k, v in row.items()} for row in out.to_dict("records")}


IMPLS = {"production": run_production, "reference": run_reference}


@pytest.fixture(params=sorted(IMPLS))
def features_of(request):
    return IMPLS[request.param]


def expect(rows, eid, **want):
    """Assert the listed features of event ``eid``: None exactly, bools exactly (as bool),
    ints exactly, floats to 1e-9 relative (1e-12 absolute around 0)."""
    got = rows[eid]
    for name, exp in want.items():
        assert name in FEATURES, name
        val = got[name]
        where = f"{eid}.{name}"
        if exp is None:
            assert val is None, f"{where}: expected None, got {val!r}"
        elif isinstance(exp, bool):
            assert isinstance(val, bool) and val is exp, f"{where}: expected {exp!r}, got {val!r}"
        elif isinstance(exp, int):
            assert val == exp and not isinstance(val, bool), f"{where}: expected {exp!r}, got {val!r}"
        else:
            assert val is not None and val == pytest.approx(exp, rel=1e-9, abs=1e-12), \
                f"{where}: expected {exp!r}, got {val!r}"


FIRST_EVENT_NULLS = dict(amount_mean_30d=None, amount_std_30d=None, amount_zscore_30d=None,
                         secs_since_prev=None, km_from_prev=None, kmh_from_prev=None)


# --------------------------------------------------------------------------- hand cases

def test_first_event_of_card(features_of):
    rows = features_of([ev("a", T0, amount=12.5, device="d1")])
    assert set(rows) == {"a"}
    assert rows["a"]["card_id"] == "c1" and rows["a"]["event_time"] == T0
    expect(rows, "a", txn_count_1h=1, txn_count_24h=1, txn_count_7d=1, amount_sum_1h=12.5,
           amount_sum_24h=12.5, distinct_merchants_24h=1, merchant_first_seen=True,
           device_first_seen=True, **FIRST_EVENT_NULLS)


def test_1h_boundary_is_exclusive(features_of):
    # T0          T0+1ms                                  T0+1h
    #  |a(10)      |b(20)                                  |e(40)
    #  (---------------------- 1h window of e ------------]
    # a is exactly 1h before e: t - W < event_time fails, so a is OUT of e's 1h window;
    # b is 1h - 1ms before e: IN.  Both are in the 24h / 7d / 30d windows.
    rows = features_of([ev("e", T0 + H, amount=40), ev("a", T0, amount=10), ev("b", T0 + 1, amount=20)])
    expect(rows, "a", txn_count_1h=1, amount_sum_1h=10.0, **FIRST_EVENT_NULLS)
    expect(rows, "b", txn_count_1h=2, amount_sum_1h=30.0, secs_since_prev=0.001,
           amount_mean_30d=10.0, amount_std_30d=None, amount_zscore_30d=None)
    expect(rows, "e", txn_count_1h=2, amount_sum_1h=60.0, txn_count_24h=3, amount_sum_24h=70.0,
           txn_count_7d=3, amount_mean_30d=15.0, amount_std_30d=5.0, amount_zscore_30d=5.0,
           secs_since_prev=3599.999, km_from_prev=0.0, kmh_from_prev=0.0)


def test_24h_and_7d_boundaries(features_of):
    # T0       T0+1ms              T0+6d      T0+6d+1ms   T0+7d
    #  |a(1)    |b(2)               |c(3)      |d(4)       |e(5)
    #  (-------------------- 7d window of e -------------]     a exactly 7d before: OUT
    #                               (---- 24h window -----]     c exactly 24h before: OUT
    # merchants: a m1, b m1, c mc, d md, e mc  -> distinct in e's 24h: {md, mc} = 2
    # 30d prior of e: a, b, c, d -> mean 2.5, population std sqrt(1.25), z = 2.5/sqrt(1.25)
    rows = features_of([
        ev("a", T0, merchant="m1", amount=1), ev("b", T0 + 1, merchant="m1", amount=2),
        ev("c", T0 + 6 * D, merchant="mc", amount=3), ev("d", T0 + 6 * D + 1, merchant="md", amount=4),
        ev("e", T0 + 7 * D, merchant="mc", amount=5),
    ])
    expect(rows, "e", txn_count_1h=1, txn_count_24h=2, txn_count_7d=4, amount_sum_1h=5.0,
           amount_sum_24h=9.0, amount_mean_30d=2.5, amount_std_30d=math.sqrt(1.25),
           amount_zscore_30d=math.sqrt(5.0), distinct_merchants_24h=2, merchant_first_seen=False,
           secs_since_prev=(D - 1) / 1000)
    # d: c is 1ms before d, so c is in d's 24h window -> {mc, md}
    expect(rows, "d", txn_count_24h=2, distinct_merchants_24h=2, merchant_first_seen=True)
    # b: a in every window of b
    expect(rows, "b", txn_count_1h=2, distinct_merchants_24h=1, merchant_first_seen=False)


def test_time_ties_ordered_by_event_id(features_of):
    # T0          T0+1min (three events at the same time, ordered by id: t1 < t2 < t3)
    #  |p(8,m3)    |t1(1,m1) |t2(2,m2, lat 1) |t3(4,m1)
    # e's windows end AT e in that order: t1 sees p,t1 (not t2, t3, although same time);
    # t2 sees p,t1,t2; t3 sees all.  t3's merchant m1 was seen at t1 (the smaller-id tie).
    events = [ev("t3", T0 + 60_000, merchant="m1", amount=4),
              ev("t1", T0 + 60_000, merchant="m1", amount=1),
              ev("p", T0, merchant="m3", amount=8),
              ev("t2", T0 + 60_000, merchant="m2", amount=2, lat=1.0)]
    rows = features_of(events)
    expect(rows, "t1", txn_count_1h=2, amount_sum_1h=9.0, amount_mean_30d=8.0, amount_std_30d=None,
           amount_zscore_30d=None, secs_since_prev=60.0, km_from_prev=0.0, kmh_from_prev=0.0,
           distinct_merchants_24h=2, merchant_first_seen=True)
    # t2: 0 s after t1 and 1 degree away: the 60 s floor gives km / (60/3600 h)
    expect(rows, "t2", txn_count_1h=3, amount_sum_1h=11.0, amount_mean_30d=4.5, amount_std_30d=3.5,
           amount_zscore_30d=-5.0 / 7.0, secs_since_prev=0.0, km_from_prev=DEG_KM,
           kmh_from_prev=DEG_KM * 60.0, distinct_merchants_24h=3, merchant_first_seen=True)
    # t3: prior 8, 1, 2 -> mean 11/3, var 258/27
    expect(rows, "t3", txn_count_1h=4, txn_count_24h=4, amount_sum_1h=15.0, amount_sum_24h=15.0,
           amount_mean_30d=11.0 / 3.0, amount_std_30d=math.sqrt(258.0 / 27.0),
           amount_zscore_30d=(1.0 / 3.0) / math.sqrt(258.0 / 27.0), secs_since_prev=0.0,
           km_from_prev=DEG_KM, kmh_from_prev=DEG_KM * 60.0, distinct_merchants_24h=3,
           merchant_first_seen=False)


def test_ties_use_string_order_of_event_id(features_of):
    # event_id is a string: "e10" < "e9", so at equal times e10 comes first.
    #  T0
    #  |e10(5) |e9(7)
    rows = features_of([ev("e9", T0, amount=7), ev("e10", T0, amount=5)])
    expect(rows, "e10", txn_count_1h=1, amount_sum_1h=5.0, **FIRST_EVENT_NULLS)
    expect(rows, "e9", txn_count_1h=2, amount_sum_1h=12.0, amount_mean_30d=5.0, secs_since_prev=0.0)


def test_device_first_seen(features_of):
    # card c1:  T0 a(d1)   T0+1h b(no device)   T0+2h c(d1)   T0+3h d(d2)
    # card c2:  T0 x(dX)   ......... exactly 30d later: y(dX)      -> x is outside y's window
    # card c3:  T0 u(dU)   ......... 30d - 1ms later:   v(dU)      -> u is inside v's window
    rows = features_of([
        ev("a", T0, device="d1"), ev("b", T0 + H, device=None), ev("c", T0 + 2 * H, device="d1"),
        ev("d", T0 + 3 * H, device="d2"),
        ev("x", T0, card="c2", device="dX"), ev("y", T0 + 30 * D, card="c2", device="dX"),
        ev("u", T0, card="c3", device="dU"), ev("v", T0 + 30 * D - 1, card="c3", device="dU"),
    ])
    expect(rows, "a", device_first_seen=True)
    expect(rows, "b", device_first_seen=None, merchant_first_seen=False, txn_count_1h=1)
    expect(rows, "c", device_first_seen=False)
    expect(rows, "d", device_first_seen=True)
    expect(rows, "y", device_first_seen=True)
    expect(rows, "v", device_first_seen=False)


def test_missing_device_never_matches(features_of):
    # T0 a(no device)  T0+1min b(no device)  T0+2min c(d7)
    # a null device is not "a device": b's is still null (not False), c's d7 is new.
    rows = features_of([ev("a", T0), ev("b", T0 + 60_000), ev("c", T0 + 120_000, device="d7")])
    expect(rows, "a", device_first_seen=None)
    expect(rows, "b", device_first_seen=None)
    expect(rows, "c", device_first_seen=True)


def test_merchant_seen_exactly_30d_ago_is_not_seen(features_of):
    # card c2:  T0 x(m1, 10)  ....  T0+30d y(m1, 20)        x exactly 30d before y: OUT
    # card c3:  T0 u(m1, 10)  ....  T0+30d-1ms v(m1, 20)    u 30d-1ms before v: IN
    rows = features_of([
        ev("x", T0, card="c2", amount=10), ev("y", T0 + 30 * D, card="c2", amount=20),
        ev("u", T0, card="c3", amount=10), ev("v", T0 + 30 * D - 1, card="c3", amount=20),
    ])
    expect(rows, "y", merchant_first_seen=True, amount_mean_30d=None, amount_std_30d=None,
           txn_count_7d=1, distinct_merchants_24h=1, secs_since_prev=30 * 86_400.0)
    expect(rows, "v", merchant_first_seen=False, amount_mean_30d=10.0, amount_std_30d=None,
           amount_zscore_30d=None, txn_count_7d=1, secs_since_prev=30 * 86_400.0 - 0.001)


def test_std_zero_gives_null_zscore_and_two_events_give_null_std(features_of):
    # T0 a(25)  +1min b(25)  +2min c(25)  +3min e(40)
    # b: one prior event -> mean 25, std null;  c: prior {25, 25} -> std 0 -> zscore null
    # e: prior {25, 25, 25} -> std 0 -> zscore null
    rows = features_of([ev("a", T0, amount=25), ev("b", T0 + 60_000, amount=25),
                        ev("c", T0 + 120_000, amount=25), ev("e", T0 + 180_000, amount=40)])
    expect(rows, "b", amount_mean_30d=25.0, amount_std_30d=None, amount_zscore_30d=None)
    expect(rows, "c", amount_mean_30d=25.0, amount_std_30d=0.0, amount_zscore_30d=None)
    expect(rows, "e", amount_mean_30d=25.0, amount_std_30d=0.0, amount_zscore_30d=None,
           amount_sum_1h=115.0)


# Found by this test: features.fraud once reported std 1.39e-17 (not 0) for prior amounts
# [0.1, 0.1, 0.1], so the zscore was -1.0 instead of null.
@pytest.mark.parametrize("impl", ["production", "reference"])
def test_std_of_equal_inexact_amounts_is_zero(impl):
    # T0 a(0.1)  +1min b(0.1)  +2min c(0.1)  +3min e(0.1)
    # e's prior amounts are all equal, so their population std is exactly 0 and the
    # zscore is null, even though 0.1 is not exactly representable (0.1+0.1+0.1 != 0.3).
    rows = IMPLS[impl]([ev(n, T0 + k * 60_000, amount=0.1) for k, n in enumerate("abce")])
    expect(rows, "c", amount_mean_30d=0.1, amount_std_30d=0.0, amount_zscore_30d=None)
    expect(rows, "e", amount_mean_30d=0.1, amount_std_30d=0.0, amount_zscore_30d=None)


def test_speed_has_a_60_second_floor(features_of):
    #  T0 a(0,0)   +30s b(1N,0)   +90s c(0,0)   +210s d(1N,0)
    #  b: 30 s -> floored to 60 s;  c: exactly 60 s;  d: 120 s (no floor)
    rows = features_of([ev("a", T0), ev("b", T0 + 30_000, lat=1.0), ev("c", T0 + 90_000),
                        ev("d", T0 + 210_000, lat=1.0)])
    expect(rows, "b", secs_since_prev=30.0, km_from_prev=DEG_KM, kmh_from_prev=DEG_KM * 60.0)
    expect(rows, "c", secs_since_prev=60.0, km_from_prev=DEG_KM, kmh_from_prev=DEG_KM * 60.0)
    expect(rows, "d", secs_since_prev=120.0, km_from_prev=DEG_KM, kmh_from_prev=DEG_KM * 30.0)


def test_distance_across_the_antimeridian(features_of):
    # On the equator, lon 179.5 -> lon -179.5 is 1 degree of arc (not 359), one hour apart.
    rows = features_of([ev("p", T0, lon=179.5), ev("q", T0 + H, lon=-179.5)])
    expect(rows, "q", secs_since_prev=3600.0, km_from_prev=DEG_KM, kmh_from_prev=DEG_KM)


def test_secs_since_prev_after_more_than_30_days_of_silence(features_of):
    # T0 a(10, m1, d1)  ...... 31 days + 5 ms of silence ......  b(20, m1, d1)
    # every window of b holds only b, but the previous event is still a.
    rows = features_of([ev("a", T0, amount=10, device="d1"),
                        ev("b", T0 + 31 * D + 5, amount=20, device="d1", lat=1.0)])
    expect(rows, "b", txn_count_1h=1, txn_count_24h=1, txn_count_7d=1, amount_sum_1h=20.0,
           amount_sum_24h=20.0, amount_mean_30d=None, amount_std_30d=None, amount_zscore_30d=None,
           secs_since_prev=31 * 86_400.0 + 0.005, km_from_prev=DEG_KM,
           kmh_from_prev=DEG_KM / ((31 * 86_400.0 + 0.005) / 3600.0),
           distinct_merchants_24h=1, merchant_first_seen=True, device_first_seen=True)


def test_interleaved_cards_do_not_affect_each_other(features_of):
    # T0     +10min    +20min (tie across cards)
    #  |a1     .         |a2           card c1 (amounts 10, 30; at 0,0; m1, d1)
    #  .       |b1       |b2           card c2 (amounts 100, 300; at 10,10; m1 then m2, d1)
    rows = features_of([
        ev("a1", T0, card="c1", amount=10, device="d1"),
        ev("b1", T0 + 600_000, card="c2", amount=100, lat=10, lon=10, device="d1"),
        ev("a2", T0 + 1_200_000, card="c1", amount=30, device="d1"),
        ev("b2", T0 + 1_200_000, card="c2", merchant="m2", amount=300, lat=10, lon=10, device="d1"),
    ])
    expect(rows, "a2", txn_count_1h=2, amount_sum_1h=40.0, amount_mean_30d=10.0, amount_std_30d=None,
           secs_since_prev=1200.0, km_from_prev=0.0, kmh_from_prev=0.0, distinct_merchants_24h=1,
           merchant_first_seen=False, device_first_seen=False)
    expect(rows, "b1", txn_count_1h=1, amount_sum_1h=100.0, distinct_merchants_24h=1,
           merchant_first_seen=True, device_first_seen=True, **FIRST_EVENT_NULLS)
    expect(rows, "b2", txn_count_1h=2, amount_sum_24h=400.0, amount_mean_30d=100.0, amount_std_30d=None,
           secs_since_prev=600.0, km_from_prev=0.0, distinct_merchants_24h=2,
           merchant_first_seen=True, device_first_seen=False)
    assert rows["b2"]["card_id"] == "c2" and rows["a2"]["card_id"] == "c1"


def test_zero_amounts(features_of):
    # T0 a(0)  +1min b(0)  +2min c(10)  +3min d(0)
    rows = features_of([ev("a", T0, amount=0), ev("b", T0 + 60_000, amount=0),
                        ev("c", T0 + 120_000, amount=10), ev("d", T0 + 180_000, amount=0)])
    expect(rows, "a", amount_sum_1h=0.0, amount_sum_24h=0.0, amount_mean_30d=None)
    expect(rows, "b", amount_sum_1h=0.0, amount_mean_30d=0.0, amount_std_30d=None, amount_zscore_30d=None)
    # c: prior {0, 0}: mean 0, std 0 -> zscore null (not +inf)
    expect(rows, "c", amount_sum_1h=10.0, amount_mean_30d=0.0, amount_std_30d=0.0, amount_zscore_30d=None)
    # d: prior {0, 0, 10}: mean 10/3, std (10/3)*sqrt(2), zscore -1/sqrt(2)
    expect(rows, "d", amount_sum_1h=10.0, amount_mean_30d=10.0 / 3.0,
           amount_std_30d=10.0 / 3.0 * math.sqrt(2.0), amount_zscore_30d=-1.0 / math.sqrt(2.0))


# --------------------------------------------------------------------------- reference output shape

def test_reference_output_dtypes_and_order():
    events = [ev("b", T0 + 1, device="d1"), ev("a", T0, card="c2"), ev("c", T0 + 2)]
    df = pd.DataFrame(events, index=[7, 3, 5])
    out = reference_features(df)
    assert tuple(out.columns) == OUTPUT_COLUMNS == FRAUD_FEATURES.output_columns
    assert list(out.index) == [7, 3, 5] and list(out["event_id"]) == ["b", "a", "c"]  # input order
    for f in FRAUD_FEATURES.features:
        kind = out[f.name].dtype
        if f.dtype == "int64":
            assert kind == np.int64, f.name
        elif f.dtype == "float64":
            assert kind == np.float64, f.name
        elif f.nullable:
            assert kind == object and set(map(type, out[f.name])) <= {bool, type(None)}, f.name
        else:
            assert kind == bool, f.name
    assert out["device_first_seen"].tolist() == [True, None, None]
    assert out["event_time"].dtype == np.int64


def test_reference_rejects_duplicate_event_ids():
    with pytest.raises(ValueError, match="event_id"):
        reference_features(pd.DataFrame([ev("a", T0), ev("a", T0 + 1)]))


# --------------------------------------------------------------------------- random parity

def random_payments(seed=20240611, n_cards=300, n_events=20_000):
    """Seeded payments built to stress the contract: times on a 30-minute grid (so window
    lengths are hit exactly) plus +-1 ms jitter, many same-card time ties, per-card pools of
    merchants and devices (repeats), 20% null devices, some zero and some constant amounts."""
    rng = np.random.default_rng(seed)
    card = np.sort(rng.integers(0, n_cards, n_events))
    slot = rng.integers(0, 60 * 48, n_events)  # 60 days of 30-minute slots
    t = T0 + slot.astype(np.int64) * 1_800_000 + rng.choice([0, 0, 0, 0, 1, -1], n_events)
    # ~30% of events share the time of the card's previous row (ties, ordered by event_id)
    tie = np.r_[False, (card[1:] == card[:-1]) & (rng.random(n_events - 1) < 0.3)]
    for i in np.flatnonzero(tie):
        t[i] = t[i - 1]
    merchant = np.array([f"m{(c * 13 + k) % 1500}" for c, k in zip(card, rng.integers(0, 8, n_events))])
    device = np.array([f"d{c}-{k}" for c, k in zip(card, rng.integers(0, 3, n_events))], dtype=object)
    device[rng.random(n_events) < 0.2] = None
    amount = np.round(rng.lognormal(3.5, 1.3, n_events), 2)
    amount[rng.random(n_events) < 0.05] = 0.0
    amount[card % 25 == 0] = 25.0  # constant-amount cards: std exactly 0, zscore null
    home = rng.uniform([-60, -170], [60, 170], (n_cards, 2))
    jump = rng.random(n_events) < 0.05
    lat = np.where(jump, rng.uniform(-80, 80, n_events), home[card, 0] + rng.normal(0, 0.05, n_events))
    lon = np.where(jump, rng.uniform(-179, 179, n_events), home[card, 1] + rng.normal(0, 0.05, n_events))
    for i in np.flatnonzero(tie & (rng.random(n_events) < 0.5)):  # some ties at the same place
        lat[i], lon[i] = lat[i - 1], lon[i - 1]
    ids = rng.permutation(n_events)
    df = pd.DataFrame({
        "event_id": [f"ev{i}" for i in ids],  # not zero-padded: string order != numeric order
        "event_time": t, "card_id": [f"card{c}" for c in card], "merchant_id": merchant,
        "amount": amount, "lat": lat, "lon": lon, "device_id": device,
    })
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # arrival order shuffled


def test_parity_production_vs_reference_on_random_data():
    df = random_payments()
    assert df.groupby(["card_id", "event_time"]).size().gt(1).sum() > 1000  # plenty of ties
    ref = reference_features(df).set_index("event_id")
    prod = pd.DataFrame(list(compute_features(df.to_dict("records")))).set_index("event_id")
    assert len(prod) == len(ref) == len(df) and set(prod.index) == set(ref.index)
    prod = prod.loc[ref.index]
    assert (prod["card_id"] == ref["card_id"]).all() and (prod["event_time"] == ref["event_time"]).all()

    problems = []
    for name in EXACT_FEATURES:
        a = [_py(v) for v in ref[name]]
        b = [_py(v) for v in prod[name]]
        bad = [i for i, (x, y) in enumerate(zip(a, b)) if x != y or type(x) is not type(y)]
        problems += [f"{name} @ {ref.index[i]}: reference {a[i]!r}, production {b[i]!r}" for i in bad[:5]]
    for name in FLOAT_FEATURES:
        a = ref[name].to_numpy(dtype=np.float64)
        b = prod[name].astype("float64").to_numpy()
        null_a, null_b = np.isnan(a), np.isnan(b)
        bad = np.flatnonzero(null_a != null_b)
        both = ~null_a & ~null_b
        with np.errstate(all="ignore"):
            off = both & ~(np.abs(a - b) <= 1e-9 * np.maximum(np.abs(a), np.abs(b)))
        bad = np.union1d(bad, np.flatnonzero(off))
        problems += [f"{name} @ {ref.index[i]}: reference {a[i]!r}, production {b[i]!r}" for i in bad[:5]]
    assert not problems, "\n".join(problems)
    # the data really exercised the nullable paths
    assert ref["device_first_seen"].isna().sum() > 1000
    assert ((ref["amount_std_30d"] == 0) & ref["amount_zscore_30d"].isna()).sum() > 100
    assert (ref["secs_since_prev"] == 0).sum() > 1000


def test_random_data_vs_slow_direct_check():
    """A third opinion on a small slice: the contract evaluated literally, event by event."""
    df = random_payments(seed=7, n_cards=15, n_events=600)
    ref = reference_features(df).set_index("event_id")
    recs = df.to_dict("records")
    by_card = {}
    for e in recs:
        by_card.setdefault(e["card_id"], []).append(e)
    for evs in by_card.values():
        evs.sort(key=lambda e: (e["event_time"], e["event_id"]))
        for i, e in enumerate(evs):
            t = e["event_time"]
            upto = evs[: i + 1]
            w1, w24, w7 = ([x for x in upto if t - w < x["event_time"]] for w in (H, D, 7 * D))
            prior = [x for x in evs[:i] if t - 30 * D < x["event_time"]]
            row = ref.loc[e["event_id"]]
            assert (row.txn_count_1h, row.txn_count_24h, row.txn_count_7d) == (len(w1), len(w24), len(w7))
            assert row.amount_sum_1h == pytest.approx(math.fsum(x["amount"] for x in w1), rel=1e-12, abs=1e-12)
            assert row.amount_sum_24h == pytest.approx(math.fsum(x["amount"] for x in w24), rel=1e-12, abs=1e-12)
            assert row.distinct_merchants_24h == len({x["merchant_id"] for x in w24})
            assert row.merchant_first_seen == all(x["merchant_id"] != e["merchant_id"] for x in prior)
            if e["device_id"] is None:
                assert row.device_first_seen is None
            else:
                assert row.device_first_seen == all(x["device_id"] != e["device_id"] for x in prior)
            amts = [x["amount"] for x in prior]
            if amts:
                assert row.amount_mean_30d == pytest.approx(math.fsum(amts) / len(amts), rel=1e-12)
            else:
                assert math.isnan(row.amount_mean_30d)
            if len(amts) >= 2:
                m = math.fsum(amts) / len(amts)
                std = 0.0 if len(set(amts)) == 1 else math.sqrt(math.fsum((a - m) ** 2 for a in amts) / len(amts))
                assert row.amount_std_30d == pytest.approx(std, rel=1e-10, abs=0)
            else:
                assert math.isnan(row.amount_std_30d)
            if i:
                assert row.secs_since_prev == (t - evs[i - 1]["event_time"]) / 1000.0
            else:
                assert math.isnan(row.secs_since_prev) and math.isnan(row.km_from_prev)


# --------------------------------------------------------------------------- the declaration

def test_definition_hash_is_stable():
    h = FRAUD_FEATURES.definition_hash
    assert h == FRAUD_FEATURES.definition_hash
    assert len(h) == 16 and int(h, 16) >= 0
    assert dataclasses.replace(FRAUD_FEATURES).definition_hash == h
    # docs are not part of the definition
    assert dataclasses.replace(FRAUD_FEATURES, doc="reworded").definition_hash == h
    # and it does not depend on the interpreter's string-hash seed
    code = "from features.fraud import FRAUD_FEATURES as F; print(F.definition_hash)"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for seed in ("1", "2"):
        got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             cwd=root, env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
        assert got == h


def test_definition_hash_changes_with_a_window():
    base = FRAUD_FEATURES.definition_hash
    for name, ms in (("1h", 2 * HOUR_MS), ("24h", DAY_MS - 1), ("30d", 31 * DAY_MS)):
        windows = {**FRAUD_FEATURES.windows, name: ms}
        changed = dataclasses.replace(FRAUD_FEATURES, windows=windows,
                                      retention_ms=max(FRAUD_FEATURES.retention_ms, ms))
        assert changed.definition_hash != base, name
    assert dataclasses.replace(FRAUD_FEATURES, version=FRAUD_FEATURES.version + 1).definition_hash != base


def test_windows_and_output_columns():
    assert dict(FRAUD_FEATURES.windows) == {"1h": 3_600_000, "24h": 86_400_000,
                                            "7d": 7 * 86_400_000, "30d": 30 * 86_400_000}
    assert FRAUD_FEATURES.order_by == ("event_time", "event_id")
    assert FRAUD_FEATURES.key == "card_id"
    assert FRAUD_FEATURES.output_columns == (
        "event_id", "card_id", "event_time",
        "txn_count_1h", "txn_count_24h", "txn_count_7d",
        "amount_sum_1h", "amount_sum_24h",
        "amount_mean_30d", "amount_std_30d", "amount_zscore_30d",
        "secs_since_prev", "km_from_prev", "kmh_from_prev",
        "distinct_merchants_24h", "merchant_first_seen", "device_first_seen",
    )
    nullable = {f.name for f in FRAUD_FEATURES.features if f.nullable}
    assert nullable == {"amount_mean_30d", "amount_std_30d", "amount_zscore_30d", "secs_since_prev",
                        "km_from_prev", "kmh_from_prev", "device_first_seen"}
