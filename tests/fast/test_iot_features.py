"""IOT_FEATURES (features/iot.py) and the ewma op: hand-made cases, the real out-of-order NAB reading,
and the per-reading reference (tests/reference/sensor_history.py) on NAB and generated sensors.

Hand-made case, one sensor (m1, s1), half-life 30 min, T0 = 2026-01-01T00:00Z (epoch ms below):

    minute:   0     30    60    60    90          c and d tie at 60: ordered by id, c first
    reading:  a     b     c     d     e
    value:    10    20    30    40    10

    1h window (t - 60 min, t], lower end EXCLUSIVE:
      a: (-60, 0]  {a}        b: (-30, 30] {a, b}
      c: (0, 60]   {b, c}     a sits exactly at t - 1h: out
      d: (0, 60]   {b, c, d}  the tie: c is before d, so d sees c (and c does not see d)
      e: (30, 90]  {c, d, e}  b sits exactly at t - 1h: out
    prior (for the z-score): the window without the reading itself.
    ewma weights, newest first, each older = newer * 2**(-gap / 30 min):
      e: e 1, d 1/2, c 1/2 (gap 0 to d), b 1/4, a 1/8
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from features.contracts import SENSOR, Field, FLOAT64
from features.declare import Aggregation, decay_weight
from features.execute import decay_weights, execute
from features.featureset import HOUR_MS, MINUTE_MS, FeatureSet
from features.iot import IOT_FEATURES, IOT_SLIDING, IOT_TUMBLING, iot_features, iot_windows
from features.nab import load_nab
from features.synthetic import generate_sensors
from features.windows import execute_windows
from tests.reference.sensor_history import compute_features

T0 = 1_767_225_600_000
MIN = MINUTE_MS


def _r(eid, minute, value, machine="m1", sensor="s1"):
    return dict(event_id=eid, event_time=T0 + minute * MIN, machine_id=machine, sensor_id=sensor,
                value=float(value), unit="degC")


HAND = [_r("a", 0, 10), _r("b", 30, 20), _r("c", 60, 30), _r("d", 60, 40), _r("e", 90, 10)]
_M = 80 / 3  # e's 1h mean

EXPECTED = {  # by hand, from the diagram
    "value_mean_1h": [10.0, 15.0, 25.0, 30.0, 80 / 3],
    "value_std_1h": [0.0, 5.0, 5.0, math.sqrt(200 / 3),
                     math.sqrt(((30 - _M) * (30 - _M) + (40 - _M) * (40 - _M) + (10 - _M) * (10 - _M)) / 3)],
    "value_min_1h": [10.0, 10.0, 20.0, 20.0, 10.0],
    "value_max_1h": [10.0, 20.0, 30.0, 40.0, 40.0],
    "count_1h": [1, 2, 2, 3, 3],
    # d: prior {b, c} mean 25 std 5 -> (40 - 25) / 5; e: prior {c, d} mean 35 std 5 -> (10 - 35) / 5
    "value_zscore_1h": [None, None, None, 3.0, -5.0],
    "value_mean_24h": [10.0, 15.0, 20.0, 25.0, 22.0],
    "value_std_24h": [0.0, 5.0, math.sqrt(200 / 3), math.sqrt(125.0), math.sqrt(136.0)],
    # b: (20 + 10/2) / 1.5; c: (30 + 20/2 + 10/4) / 1.75; d: (40 + 30 + 20/2 + 10/4) / 2.75
    # e: (10 + 40/2 + 30/2 + 20/4 + 10/8) / (1 + 1/2 + 1/2 + 1/4 + 1/8)
    "value_ewma": [10.0, 25 / 1.5, 42.5 / 1.75, 82.5 / 2.75, 51.25 / 2.375],
    "delta_prev": [None, 10.0, 10.0, 10.0, -30.0],
    "rate_per_min": [None, 10 / 30, 10 / 30, None, -1.0],  # d: zero gap to c -> null
    "gap_s": [None, 1800.0, 1800.0, 0.0, 1800.0],
}


@pytest.mark.parametrize("perm", [(0, 1, 2, 3, 4), (4, 3, 2, 1, 0), (3, 0, 4, 2, 1)])
def test_hand_made_values_in_any_row_order(perm):
    out = execute(IOT_FEATURES, [HAND[i] for i in perm])
    assert list(out.columns) == list(IOT_FEATURES.output_columns)
    by_id = {r["event_id"]: r for r in out.to_dict("records")}
    for name, want in EXPECTED.items():
        assert [by_id[e][name] for e in "abcde"] == want, name


def test_the_reference_agrees_on_the_hand_made_case():
    ref = compute_features(HAND)
    for name, want in EXPECTED.items():
        assert [ref[e][name] for e in "abcde"] == want, name


def test_two_sensors_of_one_machine_and_one_sensor_name_on_two_machines_are_kept_apart():
    rows = [_r("a", 0, 10), _r("x", 10, 100, sensor="s2"), _r("b", 20, 20), _r("y", 25, 300, machine="m2"),
            _r("z", 30, 200, sensor="s2")]
    out = execute(IOT_FEATURES, rows).set_index("event_id")
    assert out.loc[["a", "b", "x", "z", "y"], "count_1h"].tolist() == [1, 2, 1, 2, 1]
    assert out.loc[["b", "z"], "value_mean_1h"].tolist() == [15.0, 150.0]
    assert out.loc[["b", "z"], "delta_prev"].tolist() == [10.0, 100.0]
    assert out.loc[["b", "z"], "gap_s"].tolist() == [1200.0, 1200.0]
    assert out.loc["y", "gap_s"] is None and out.loc["y", "value_ewma"] == 300.0
    assert out.loc[["a", "b", "x"], "sensor_id"].tolist() == ["s1", "s1", "s2"]


def test_ewma_decays_by_exact_powers_of_two_and_is_null_below_min_count():
    # the newest prior value weighs 1; gaps of 1 and 2 half-lives: 1, 1/2, 1/8
    nullable = dataclasses.replace(SENSOR, fields=tuple(
        Field("value", FLOAT64, required=False, nullable=True) if f.name == "value" else f for f in SENSOR.fields))
    fs = FeatureSet(name="ewma_prior", version=1, contract=nullable, key=("machine_id", "sensor_id"),
                    order_by=("event_time", "event_id"), windows={"1h": HOUR_MS}, retention_ms=HOUR_MS,
                    items=(Aggregation("p", "ewma", "value", "1h", prior=True, half_life_ms=10 * MIN),
                           Aggregation("q", "ewma", "value", "1h", half_life_ms=10 * MIN, min_count=2)))
    rows = [_r("a", 0, 8), _r("b", 20, 16), _r("c", 30, 32), _r("n", 35, 0), _r("d", 40, 1)]
    rows[3]["value"] = None  # a null reading: skipped, and the chain runs from c to b over it
    out = execute(fs, rows).set_index("event_id")
    # p of c: b (w 1), a (1/4: gap 20 min); of n and d: c (1), b (1/2: gap 10 min), a (1/8)
    assert out["p"].tolist() == [None, 8.0, (16 + 8 / 4) / 1.25, (32 + 8 + 8 / 8) / (1 + 0.5 + 0.125),
                                 (32 + 8 + 1) / 1.625]
    # q (e included, min_count 2): a alone -> null; b: b 1, a 1/4; c and n (null: c is its newest
    # value): c 1, b 1/2, a 1/8; d: d 1, c 1/2, b 1/4, a 1/16
    assert out["q"].tolist() == [None, (16 + 8 / 4) / 1.25, (32 + 8 + 1) / 1.625, (32 + 8 + 1) / 1.625,
                                 (1 + 32 / 2 + 16 / 4 + 8 / 16) / (1 + 0.5 + 0.25 + 0.0625)]


def test_decay_weight_is_the_numpy_weight_bit_for_bit_and_near_pow():
    gaps = np.r_[np.arange(0, 5000), np.random.default_rng(4).integers(0, 10 ** 9, 20000), [1000 * 1800_000 + 1]]
    want = np.array([decay_weight(int(g), 1_800_000) for g in gaps])
    got = decay_weights(gaps, 1_800_000)
    assert np.array_equal(got.view(np.int64), want.view(np.int64))
    assert got[-1] == 0.0  # beyond 1000 half-lives
    near = gaps[:-1] / 1_800_000.0
    pw = 2.0 ** -near
    assert np.max(np.abs(got[:-1] - pw) / pw) <= 2.3e-16  # 1 ulp (measured: 11 % of weights are 1 ulp off)
    assert [decay_weight(k * 600, 600) for k in range(5)] == [1.0, 0.5, 0.25, 0.125, 0.0625]


# --------------------------------------------------------------- the real out-of-order reading of NAB
@pytest.fixture(scope="module")
def machine():
    df = load_nab(["machine_temperature_system_failure"])
    return df, execute(IOT_FEATURES, df).set_index("event_id")


def _nid(row: int) -> str:
    return f"nab-machine_temperature_system_failure-{row:06d}"


# Rows 10126 .. 10162 of the file (5-min readings, 2014-01-07 01:00 .. 03:00): after 02:55 (row
# 10149) the file steps back 55 min to 02:00 (row 10150) and repeats 02:00 .. 02:55 with other values.
V = {10126: 95.64495982, 10127: 94.08361759, 10128: 95.70831521, 10129: 93.76695945, 10130: 95.48122678,
     10131: 95.28585184, 10132: 93.81745012, 10133: 93.44409689, 10134: 93.99057637, 10135: 95.56326697,
     10136: 95.18144942, 10137: 94.22027707, 10138: 94.42340604, 10139: 94.69872971, 10140: 95.33282414,
     10141: 95.07919855, 10142: 94.88120842, 10143: 94.56396095, 10144: 93.43092219, 10145: 93.72966342,
     10146: 93.19298719, 10147: 93.96787143, 10148: 93.39737409, 10149: 92.85599879, 10150: 94.13972336,
     10151: 94.11196982, 10152: 94.63872322, 10153: 93.27090748, 10154: 93.89024852, 10155: 93.39662733,
     10156: 94.19930008, 10157: 94.12541985, 10158: 93.53082695, 10159: 92.78472036, 10160: 93.25472354,
     10161: 93.65604154, 10162: 91.4571636}
T_0200 = 1389060000000  # 2014-01-07T02:00Z


def test_the_file_steps_back_55_minutes_once(machine):
    df, _ = machine
    t = df["event_time"].to_numpy(dtype=np.int64)
    back = np.flatnonzero(np.diff(t) < 0)
    assert back.tolist() == [10148] and int(t[10148] - t[10149]) == 55 * MIN  # rows 10149 -> 10150 (from 1)
    assert df["event_id"].iloc[10149] == _nid(10150) and t[10149] == T_0200
    assert {r: float(df["value"].iloc[r - 1]) for r in V} == V


def test_features_around_the_step_back_in_event_time_order(machine):
    _, out = machine
    # event-time order at 02:00 .. 02:55: the two readings of each 5 minutes, the earlier row first
    # (ids tie-break): ..., 10137 (01:55), 10138 (02:00), 10150 (02:00), 10139 (02:05), 10151, ...
    # 10149 (02:55), 10161 (02:55), 10162 (03:00)
    f = out.loc
    assert f[_nid(10138), "count_1h"] == 12  # (01:00, 02:00]: 01:05 .. 02:00, once each
    assert f[_nid(10150), "count_1h"] == 13  # ... and row 10138, its tie at 02:00
    assert f[_nid(10139), "count_1h"] == 13  # (01:05, 02:05]: 01:10 .. 01:55 (10), 2 x 02:00, itself
    assert f[_nid(10161), "count_1h"] == 24  # (01:55, 02:55]: 2 x 11 readings 02:00 .. 02:50, 10149, itself
    assert f[_nid(10162), "count_1h"] == 23  # (02:00, 03:00]: 2 x 11 readings 02:05 .. 02:55, itself
    # previous reading in event-time order, not in file order
    assert f[_nid(10150), "delta_prev"] == V[10150] - V[10138] and f[_nid(10150), "gap_s"] == 0.0
    assert f[_nid(10150), "rate_per_min"] is None  # zero gap
    assert f[_nid(10139), "delta_prev"] == V[10139] - V[10150] and f[_nid(10139), "gap_s"] == 300.0
    assert f[_nid(10139), "rate_per_min"] == (V[10139] - V[10150]) / 5.0
    assert f[_nid(10149), "delta_prev"] == V[10149] - V[10160] and f[_nid(10149), "gap_s"] == 300.0
    assert f[_nid(10161), "delta_prev"] == V[10161] - V[10149] and f[_nid(10161), "gap_s"] == 0.0
    assert f[_nid(10162), "delta_prev"] == V[10162] - V[10161] and f[_nid(10162), "gap_s"] == 300.0
    # row 10150 at 02:00: window 01:05 .. 02:00 plus row 10138; its prior: without itself
    w = [V[r] for r in range(10127, 10139)] + [V[10150]]
    assert f[_nid(10150), "value_min_1h"] == min(w) == 93.44409689
    assert f[_nid(10150), "value_max_1h"] == max(w) == 95.70831521
    assert f[_nid(10150), "value_mean_1h"] == pytest.approx(sum(w) / 13, rel=1e-14)
    m = sum(w[:-1]) / 12
    s = math.sqrt(sum((x - m) ** 2 for x in w[:-1]) / 12)
    assert f[_nid(10150), "value_zscore_1h"] == pytest.approx((V[10150] - m) / s, rel=1e-12)
    # row 10162 at 03:00: both copies of 02:05 .. 02:55, and itself (the window's minimum)
    w = [V[r] for r in range(10139, 10150)] + [V[r] for r in range(10151, 10163)]
    assert f[_nid(10162), "value_min_1h"] == 91.4571636 and f[_nid(10162), "value_max_1h"] == 95.33282414
    assert f[_nid(10162), "value_mean_1h"] == pytest.approx(sum(w) / 23, rel=1e-14)


# ------------------------------------------------------------------ the per-reading reference
def _compare(fs, df, ref) -> tuple:
    out = execute(fs, df).to_dict("records")
    diffs, ewma_rel = [], 0.0
    for r in out:
        w = ref[r["event_id"]]
        for c in fs.feature_names:
            if (r[c] is None) != (w[c] is None) or (r[c] is not None and r[c] != w[c]):
                diffs.append((r["event_id"], c, r[c], w[c]))
        ewma_rel = max(ewma_rel, abs(r["value_ewma"] - w["ewma_direct"]) / abs(w["ewma_direct"]))
    return len(out), diffs, ewma_rel


def test_execute_equals_the_reference_on_all_of_nab():
    df = load_nab()
    n, diffs, ewma_rel = _compare(IOT_FEATURES, df, compute_features(df.to_dict("records")))
    assert n == 48012 and diffs == []
    # the chained weights against the plain 2**(-(t - t_i)/h) (fsum): measured 3.6e-15
    assert ewma_rel < 1e-13


@pytest.mark.parametrize("half_life_ms", [30 * MIN, 7 * MIN + 1])
def test_execute_equals_the_reference_on_generated_sensors_with_ties_and_disorder(half_life_ms):
    df = generate_sensors(6000, seed=9, days=0.3, n_machines=3, out_of_order=0.05)
    df["event_time"] = df["event_time"] // 120_000 * 120_000  # 2-min grid: ties within a sensor
    fs = iot_features(half_life_ms=half_life_ms)
    assert df.duplicated(["machine_id", "sensor_id", "event_time"]).any()
    n, diffs, ewma_rel = _compare(fs, df, compute_features(df.to_dict("records"), fs))
    assert n == 6000 and diffs == []
    assert ewma_rel < 1e-13


def test_iot_features_validates_its_half_life_and_the_hash_follows_it():
    with pytest.raises(ValueError, match="half_life_ms"):
        iot_features(half_life_ms=0)
    with pytest.raises(ValueError, match="half_life_ms"):
        iot_features(half_life_ms=25 * HOUR_MS)
    assert iot_features(30 * MIN).definition_hash == IOT_FEATURES.definition_hash
    assert iot_features(10 * MIN).definition_hash != IOT_FEATURES.definition_hash
    assert IOT_FEATURES.feature_names == (
        "value_mean_1h", "value_std_1h", "value_min_1h", "value_max_1h", "count_1h", "value_zscore_1h",
        "value_mean_24h", "value_std_24h", "value_ewma", "delta_prev", "rate_per_min", "gap_s")


def test_window_summaries_per_sensor():
    # tumbling 5 min: a (0), b (30) ... each alone; the tie c/d at 60 shares [60, 65)
    tum = execute_windows(IOT_TUMBLING, HAND)
    assert tum["window_start"].tolist() == [T0 + m * MIN for m in (0, 30, 60, 90)]
    assert tum["count"].tolist() == [1, 1, 2, 1] and tum["value_mean"].tolist() == [10.0, 20.0, 35.0, 10.0]
    assert tum["value_std"].tolist() == [0.0, 0.0, 5.0, 0.0] and tum["value_max"].tolist() == [10.0, 20.0, 40.0, 10.0]
    assert tum.columns.tolist()[:4] == ["machine_id", "sensor_id", "window_start", "window_end"]
    ten, _ = iot_windows(10 * MIN)
    assert ten.window.size_ms == 10 * MIN
    # sliding 1 h every 5 min: the window [T0 + 5 min, T0 + 65 min) holds b, c, d
    sl = execute_windows(IOT_SLIDING, HAND).set_index("window_start")
    assert len(sl) == 12 + 6 + 6 + 6  # a: starts -55 .. 0 min; b, c/d and e: 6 new starts each
    assert sl.loc[T0 + 5 * MIN, "value_mean"] == 30.0
    assert sl.loc[T0 + 5 * MIN, "value_std"] == math.sqrt(200 / 3)


def test_the_pandas_backfill_splits_by_the_composite_key():
    from features.backfill import backfill_tables, split_by_key
    from features.synthetic import to_arrow

    df = generate_sensors(3000, seed=3, days=0.2, n_machines=2)
    table = to_arrow(df, SENSOR, with_raw=False)
    parts = split_by_key(table, IOT_FEATURES.key, 3)  # a tuple key, as jobs/backfill.py passes fs.key
    seen = [set(zip(p["machine_id"].to_pylist(), p["sensor_id"].to_pylist())) for p in parts]
    assert sum(map(len, seen)) == len(set().union(*seen)) == df.groupby(["machine_id", "sensor_id"]).ngroups
    one, _ = backfill_tables(IOT_FEATURES, table, now_ms=T0)
    three, _ = backfill_tables(IOT_FEATURES, table, now_ms=T0, parts=3)
    a, b = (t.to_pandas().sort_values("event_id").reset_index(drop=True) for t in (one, three))
    pd.testing.assert_frame_equal(a, b)
    want = execute(IOT_FEATURES, df).sort_values("event_id").reset_index(drop=True)
    assert a.columns.tolist()[:-1] == list(IOT_FEATURES.output_columns)  # then ingest_ms
    assert a["value_ewma"].tolist() == want["value_ewma"].tolist()
