"""Windowed-feature declarations (features/windows.py) and their pandas execution, by hand.

Times are offsets in ms from T = 2026-01-01T00:00:00Z (a multiple of every window size here).
Expected rows are written out from the diagrams; Flink's execution is compared with the same
pandas code in tests/integration/test_windows.py.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.contracts import BEHAVIOUR, PAYMENT, SENSOR
from features.windows import (MAX_WINDOW_MS, Session, Sliding, Tumbling, WindowAgg, WindowColumn,
                              WindowedFeatures, execute_windows)
from udfs.windows import interval, watermark_delay_ms, window_sql

T = 1_767_225_600_000

AGGS = (WindowAgg("n", "count"), WindowAgg("total", "sum", "value"), WindowAgg("avg", "mean", "value"),
        WindowAgg("sd", "std_pop", "value"), WindowAgg("lo", "min", "value"), WindowAgg("hi", "max", "value"),
        WindowAgg("sensors", "distinct_count", "sensor_id"), WindowAgg("first_v", "first", "value"),
        WindowAgg("last_s", "last", "sensor_id"), WindowAgg("latest", "max", "event_time"))


def _decl(window, aggs=AGGS, key="machine_id", contract=SENSOR):
    return WindowedFeatures("w", 1, contract, key, window, aggs)


def _ev(eid, ms, machine, value, sensor="t1"):
    return dict(event_id=eid, event_time=T + ms, machine_id=machine, sensor_id=sensor, value=value, unit="C")


def _rows(df, columns):
    return [tuple(r) for r in df[list(columns)].itertuples(index=False)]


# ------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("make, message", [
    (lambda: Tumbling(0), "size_ms must be within 1"),
    (lambda: Tumbling(1.5), "must be an int of milliseconds"),
    (lambda: Tumbling(True), "must be an int of milliseconds"),
    (lambda: Tumbling(MAX_WINDOW_MS + 1), "size_ms must be within 1"),
    (lambda: Sliding(300_000, 120_000), "must be a multiple of slide_ms 120000"),
    (lambda: Sliding(300_000, 0), "slide_ms must be within 1"),
    (lambda: Session(-5), "gap_ms must be within 1"),
    (lambda: WindowAgg("n", "median", "value"), "unknown op 'median'"),
    (lambda: WindowAgg("n", "count", "value"), "count takes no input"),
    (lambda: WindowAgg("s", "sum"), "sum needs an input field"),
    (lambda: WindowAgg("2x", "count"), "is not an identifier"),
    (lambda: _decl(Tumbling(10), key="plant"), "key 'plant' is not a field"),
    (lambda: _decl(Tumbling(10), key=("machine_id", "machine_id")), "repeated key field"),
    (lambda: _decl(Tumbling(10), key="event_time"), "cannot also be a key"),
    (lambda: _decl(Tumbling(10), key=()), "non-empty sequence"),
    (lambda: _decl(Tumbling(10), key="session_hint", contract=BEHAVIOUR), "is nullable"),
    (lambda: WindowedFeatures("w", 1, SENSOR, "machine_id", Tumbling(10), AGGS, time_field="unit"),
     "time_field 'unit' must be a non-nullable epoch-ms field"),
    (lambda: _decl(Tumbling(10), aggs=()), "no aggregations"),
    (lambda: _decl(Tumbling(10), aggs=(WindowAgg("n", "count"), WindowAgg("n", "max", "value"))), "used twice"),
    (lambda: _decl(Tumbling(10), aggs=(WindowAgg("window_end", "count"),)), "'window_end' is used twice"),
    (lambda: _decl(Tumbling(10), aggs=(WindowAgg("machine_id", "count"),)), "'machine_id' is used twice"),
    (lambda: _decl(Tumbling(10), aggs=(WindowAgg("s", "sum", "unit"),)), "sum needs a numeric input, unit is string"),
    (lambda: _decl(Tumbling(10), aggs=(WindowAgg("s", "max", "is_anomaly"),)), "max needs a numeric input"),
    (lambda: _decl(Tumbling(10), aggs=(WindowAgg("s", "sum", "volume"),)), "unknown input 'volume'"),
    (lambda: _decl(60_000), "window must be Tumbling, Sliding or Session"),
    (lambda: WindowedFeatures("w", 0, SENSOR, "machine_id", Tumbling(10), AGGS), "version must be an int >= 1"),
])
def test_invalid_declarations_are_refused(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        make()


def test_declarations_are_frozen_and_keys_normalised():
    d = _decl(Sliding(20, 10), key=["machine_id", "sensor_id"])
    assert d.key == ("machine_id", "sensor_id")
    with pytest.raises(AttributeError):
        d.window = Tumbling(5)  # type: ignore[misc]
    assert d.output_columns[:4] == ("machine_id", "sensor_id", "window_start", "window_end")


def test_output_types_are_inferred():
    d = _decl(Tumbling(10), aggs=AGGS + (WindowAgg("ts_sum", "sum", "event_time"), WindowAgg("anom", "last", "is_anomaly")))
    assert d.columns == (
        WindowColumn("machine_id", "string", False), WindowColumn("window_start", "int64", False),
        WindowColumn("window_end", "int64", False), WindowColumn("n", "int64", False),
        WindowColumn("total", "float64", False), WindowColumn("avg", "float64", False),
        WindowColumn("sd", "float64", False), WindowColumn("lo", "float64", False),
        WindowColumn("hi", "float64", False), WindowColumn("sensors", "int64", False),
        WindowColumn("first_v", "float64", False), WindowColumn("last_s", "string", False),
        WindowColumn("latest", "int64", False), WindowColumn("ts_sum", "float64", False),
        WindowColumn("anom", "bool", True))  # is_anomaly is a nullable label
    b = WindowedFeatures("b", 1, BEHAVIOUR, "user_id", Session(5),
                         [WindowAgg("hints", "distinct_count", "session_hint"), WindowAgg("hint", "last", "session_hint")])
    assert b.columns[-2:] == (WindowColumn("hints", "int64", False), WindowColumn("hint", "string", True))


def test_definition_hash_changes_with_the_window():
    a, b = _decl(Tumbling(10)), _decl(Tumbling(20))
    assert a.definition_hash != b.definition_hash and len(a.definition_hash) == 16
    assert a.definition_hash == _decl(Tumbling(10)).definition_hash
    assert a.arrow_schema().names == list(a.output_columns)


# ------------------------------------------------------------------------------------- tumbling
def test_tumbling_boundaries_ties_and_two_keys():
    """Tumbling(10 s). Offsets in ms; c and d tie at 10_000 (ordered by event_id: c, then d).

        window:  [0, 10_000)              [10_000, 20_000)            [20_000, 30_000)  [30_000, 40_000)
        m1:      a@0 (1.0)  b@9_999 (2.0) c@10_000 (4.0) d@10_000 (6.0)   (nothing)      e@35_000 (7.5)
        m2:      x@5_000 (3.0)            y@19_999 (3.0)

    a sits exactly on a boundary (window 0), b at end - 1 (window 0), c and d exactly on the
    next boundary (window 1). No row for m1's empty [20_000, 30_000).
    """
    events = [_ev("d", 10_000, "m1", 6.0, "t3"), _ev("y", 19_999, "m2", 3.0), _ev("e", 35_000, "m1", 7.5, "t2"),
              _ev("b", 9_999, "m1", 2.0, "t2"), _ev("x", 5_000, "m2", 3.0), _ev("c", 10_000, "m1", 4.0),
              _ev("a", 0, "m1", 1.0)]
    out = execute_windows(_decl(Tumbling(10_000)), events)
    assert list(out.columns) == list(_decl(Tumbling(10_000)).output_columns)
    #        key   start       end          n  total avg  sd   lo   hi   sensors first last latest
    assert _rows(out, out.columns) == [
        ("m1", T, T + 10_000, 2, 3.0, 1.5, 0.5, 1.0, 2.0, 2, 1.0, "t2", T + 9_999),
        ("m1", T + 10_000, T + 20_000, 2, 10.0, 5.0, 1.0, 4.0, 6.0, 2, 4.0, "t3", T + 10_000),
        ("m1", T + 30_000, T + 40_000, 1, 7.5, 7.5, 0.0, 7.5, 7.5, 1, 7.5, "t2", T + 35_000),
        ("m2", T, T + 10_000, 1, 3.0, 3.0, 0.0, 3.0, 3.0, 1, 3.0, "t1", T + 5_000),
        ("m2", T + 10_000, T + 20_000, 1, 3.0, 3.0, 0.0, 3.0, 3.0, 1, 3.0, "t1", T + 19_999),
    ]
    assert out["n"].dtype == np.int64 and out["total"].dtype == np.float64 and out["latest"].dtype == np.int64


def test_row_order_of_the_input_does_not_matter():
    rng = np.random.default_rng(7)
    events = pd.DataFrame([_ev(f"e{i:03d}", int(t), f"m{i % 3}", float(v), f"t{i % 4}")
                           for i, (t, v) in enumerate(zip(rng.integers(0, 100_000, 300) // 1000 * 1000,
                                                          rng.normal(50, 5, 300)))])
    for w in (Tumbling(7_000), Sliding(9_000, 3_000), Session(2_500)):
        a = execute_windows(_decl(w), events)
        b = execute_windows(_decl(w), events.sample(frac=1.0, random_state=1))
        pd.testing.assert_frame_equal(a, b)
        assert a["n"].sum() == 300 * (3 if isinstance(w, Sliding) else 1)


def test_std_pop_is_exactly_zero_when_all_values_are_equal():
    """Three 0.1 in one window: a two-pass std of them is about 1.4e-17, the rule says 0.0."""
    mean = (0.1 + 0.1 + 0.1) / 3
    assert math.sqrt(3 * (0.1 - mean) ** 2 / 3) != 0.0  # why the rule is needed
    out = execute_windows(_decl(Tumbling(10)), [_ev(e, 1, "m", 0.1) for e in "abc"])
    assert out["sd"].tolist() == [0.0] and out["total"].tolist() == [0.1 + 0.1 + 0.1]


# -------------------------------------------------------------------------------------- sliding
def test_sliding_puts_each_event_in_size_over_slide_windows():
    """Sliding(30 s, slide 10 s); p at 25_000, q exactly at 30_000 (a window start).

        window [0, 30_000)       p
        window [10_000, 40_000)  p q
        window [20_000, 50_000)  p q
        window [30_000, 60_000)    q        (q is not in [0, 30_000): end is exclusive)
    """
    d = _decl(Sliding(30_000, 10_000), aggs=(WindowAgg("n", "count"), WindowAgg("total", "sum", "value"),
                                             WindowAgg("first_v", "first", "value")))
    out = execute_windows(d, [_ev("q", 30_000, "m1", 2.0), _ev("p", 25_000, "m1", 1.0)])
    assert _rows(out, out.columns) == [
        ("m1", T, T + 30_000, 1, 1.0, 1.0),
        ("m1", T + 10_000, T + 40_000, 2, 3.0, 1.0),
        ("m1", T + 20_000, T + 50_000, 2, 3.0, 1.0),
        ("m1", T + 30_000, T + 60_000, 1, 2.0, 2.0),
    ]


def test_sliding_with_slide_equal_to_size_is_tumbling():
    events = [_ev("a", 0, "m", 1.0), _ev("b", 9_999, "m", 2.0), _ev("c", 10_000, "m", 3.0)]
    pd.testing.assert_frame_equal(execute_windows(_decl(Sliding(10_000, 10_000)), events),
                                  execute_windows(_decl(Tumbling(10_000)), events))


# -------------------------------------------------------------------------------------- session
def test_session_gap_rule_and_interleaved_keys():
    """Session(gap 10 s). Flink's rule (tests/integration/test_windows.py checks it on Flink):
    an event at most gap ms after the previous one joins the session; end = last event + gap.

        m1:  a@0   b@9_999 (gap - 1 after a)   c@19_999 (exactly gap after b)   d@30_000 (gap + 1 after c)
             [0 ----------------------------------------------- 29_999)        [30_000 ---- 40_000)
        m2:       x@5_000                     y@15_001 (gap + 1 after x)
                  [5_000 ---- 15_000)         [15_001 ---- 25_001)
    """
    d = _decl(Session(10_000), aggs=(WindowAgg("n", "count"), WindowAgg("last_v", "last", "value"),
                                     WindowAgg("sensors", "distinct_count", "sensor_id")))
    events = [_ev("y", 15_001, "m2", 6.0), _ev("a", 0, "m1", 1.0), _ev("x", 5_000, "m2", 5.0, "t2"),
              _ev("b", 9_999, "m1", 2.0, "t2"), _ev("d", 30_000, "m1", 4.0), _ev("c", 19_999, "m1", 3.0)]
    out = execute_windows(d, events)
    assert _rows(out, out.columns) == [
        ("m1", T, T + 29_999, 3, 3.0, 2),
        ("m1", T + 30_000, T + 40_000, 1, 4.0, 1),
        ("m2", T + 5_000, T + 15_000, 1, 5.0, 1),
        ("m2", T + 15_001, T + 25_001, 1, 6.0, 1),
    ]


def test_a_late_bridging_event_merges_two_sessions():
    """b arrives last but falls between a and c: one session [0, 20_000 + gap)."""
    events = [_ev("a", 0, "m", 1.0), _ev("c", 20_000, "m", 3.0), _ev("b", 10_000, "m", 2.0)]
    out = execute_windows(_decl(Session(10_000), aggs=(WindowAgg("n", "count"),)), events)
    assert _rows(out, out.columns) == [("m", T, T + 30_000, 3)]


def test_session_ties_stay_together_and_keys_can_be_tuples():
    d = _decl(Session(1_000), key=("machine_id", "sensor_id"), aggs=(WindowAgg("n", "count"),))
    events = [_ev("a", 0, "m", 1.0, "t1"), _ev("b", 0, "m", 1.0, "t1"), _ev("c", 0, "m", 1.0, "t2"),
              _ev("d", 1_001, "m", 1.0, "t1")]
    out = execute_windows(d, events)
    assert _rows(out, out.columns) == [("m", "t1", T, T + 1_000, 2), ("m", "t1", T + 1_001, T + 2_001, 1),
                                       ("m", "t2", T, T + 1_000, 1)]


# -------------------------------------------------------------------------------- nulls, strings
def test_null_inputs_are_skipped_and_all_null_windows_give_null():
    """Tumbling(10) over behaviour events; session_hint is nullable.

        window [0, 10):   u1: p@1 hint -, q@2 hint h1, r@2 hint -      -> first/last h1, 1 distinct
        window [10, 20):  u1: s@15 hint -                              -> null, 0 distinct
    """
    d = WindowedFeatures("b", 1, BEHAVIOUR, "user_id", Tumbling(10),
                         [WindowAgg("n", "count"), WindowAgg("hints", "distinct_count", "session_hint"),
                          WindowAgg("first_hint", "first", "session_hint"), WindowAgg("last_hint", "last", "session_hint"),
                          WindowAgg("spend", "sum", "price")])

    def ev(eid, ms, hint, price):
        return dict(event_id=eid, event_time=T + ms, user_id="u1", session_hint=hint, item_id="i",
                    category="c", action="view", price=price)

    out = execute_windows(d, [ev("p", 1, None, 1.0), ev("q", 2, "h1", 2.0), ev("r", 2, np.nan, 4.0),
                              ev("s", 15, None, 8.0)])
    assert _rows(out, out.columns) == [("u1", T, T + 10, 3, 1, "h1", "h1", 7.0),
                                       ("u1", T + 10, T + 20, 1, 0, None, None, 8.0)]
    assert out["last_hint"].dtype == object


def test_signed_zeros_count_as_one_distinct_value():
    d = _decl(Tumbling(10), aggs=(WindowAgg("dv", "distinct_count", "value"),))
    out = execute_windows(d, [_ev("a", 1, "m", -0.0), _ev("b", 2, "m", 0.0), _ev("c", 3, "m", 1.0)])
    assert out["dv"].tolist() == [2]


def test_no_events_give_no_rows_and_missing_columns_are_refused():
    d = _decl(Tumbling(10))
    empty = pd.DataFrame({c: [] for c in SENSOR.field_names})
    out = execute_windows(d, empty)
    assert len(out) == 0 and list(out.columns) == list(d.output_columns)
    with pytest.raises(ValueError, match=r"lack columns \['sensor_id'\]"):
        execute_windows(d, empty.drop(columns=["sensor_id"]))
    with pytest.raises(ValueError, match="machine_id is null"):
        execute_windows(d, [_ev("a", 1, None, 1.0)])


def test_payments_min_max_keep_the_input_type():
    d = WindowedFeatures("p", 1, PAYMENT, "card_id", Tumbling(60_000),
                         [WindowAgg("first_at", "min", "event_time"), WindowAgg("big", "max", "amount")])
    ev = dict(event_id="e", event_time=T + 5, card_id="c", merchant_id="m", mcc="5411", amount=12.5,
              currency="EUR", lat=0.0, lon=0.0, device_id=None)
    out = execute_windows(d, [ev])
    assert _rows(out, out.columns) == [("c", T, T + 60_000, T + 5, 12.5)]
    assert out["first_at"].dtype == np.int64


# ------------------------------------------------------------------------- Flink SQL (no Flink)
def test_interval_literals_and_watermark_delay():
    assert interval(1) == "INTERVAL '0 00:00:00.001' DAY TO SECOND(3)"
    assert interval(MAX_WINDOW_MS) == "INTERVAL '99 23:59:59.999' DAY TO SECOND(3)"
    with pytest.raises(ValueError):
        interval(MAX_WINDOW_MS + 1)
    assert watermark_delay_ms(0) == 2
    with pytest.raises(ValueError):
        watermark_delay_ms(-1)


def test_the_session_query_differs_per_mode():
    d = _decl(Session(10_000))
    streaming, batch = window_sql(d, "v", batch=False), window_sql(d, "v", batch=True)
    assert "SESSION(TABLE `v` PARTITION BY `machine_id`" in streaming and "LAG(" not in streaming
    assert "SESSION(" not in batch and "LAG(`event_time`)" in batch and ">= `event_time` - 10000" in batch
    assert "TUMBLE(TABLE `v`" in window_sql(_decl(Tumbling(5)), "v", batch=True)
    assert "STDDEV_POP" not in streaming and "AVG(" not in streaming
