"""The time-skew guard of the parse step (features.intake; pure logic, no Flink runtime needed).

    stream:  ... 10:00  10:01 | 2 weeks later: J1  J2  J3  J4 ...
    J1, J2: dead letters (time_skew), J3 confirms the jump and is accepted, J4 accepted.
"""
import pytest

from features.contracts import PAYMENT, TIME_SKEW, InvalidEvent
from features.intake import CONFIRM_JUMP, Intake

DAY = 86_400_000
NOW = 1_800_000_000_000


def guard():
    return Intake(PAYMENT, max_future_ms=DAY, max_past_ms=365 * DAY, max_jump_ms=7 * DAY)


def accept(p, t):
    p._check_time(t, NOW)
    p.newest = t if p.newest is None else max(p.newest, t)


def test_ahead_of_the_wall_clock_is_refused_even_first():
    p = guard()
    with pytest.raises(InvalidEvent) as e:
        p._check_time(NOW + DAY + 1, NOW)
    assert e.value.reason == TIME_SKEW and "wall clock" in str(e.value)
    accept(p, NOW + DAY)  # exactly the bound is fine


def test_a_lone_jump_ahead_is_refused_and_does_not_move_the_stream():
    p = guard()
    t0 = NOW - 30 * DAY
    accept(p, t0)
    with pytest.raises(InvalidEvent, match="ahead of the stream"):
        p._check_time(t0 + 8 * DAY, NOW)
    accept(p, t0 + 1000)  # the stream goes on; the outlier is forgotten
    assert p.jumps == [] and p.newest == t0 + 1000


def test_a_confirmed_jump_is_accepted():
    p = guard()
    t0 = NOW - 30 * DAY
    accept(p, t0)
    j = t0 + 14 * DAY
    for k in range(CONFIRM_JUMP - 1):
        with pytest.raises(InvalidEvent):
            p._check_time(j + k, NOW)
    accept(p, j + 5)  # the third in a row: the stream moved on
    accept(p, j + 6)
    assert p.newest == j + 6


def test_far_behind_the_stream_is_refused():
    p = guard()
    accept(p, NOW)
    accept(p, NOW - 365 * DAY)  # exactly at the bound
    with pytest.raises(InvalidEvent, match="behind the stream"):
        p._check_time(NOW - 365 * DAY - 1, NOW)
