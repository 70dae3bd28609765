"""Alerts, incidents, tickets and cool-down: the pure reference (features/alerts.py) on hand-made
streams, expected rows written out by hand, and against an independent segment-based formulation
on random streams. The JVM operator is held to the same reference in
tests/integration/test_jvm_alerts.py.

Times are minutes after T0 = 2026-01-01T00:00Z; readings every 5 minutes; default policy
(ticket after 15 min, cool-down 30 min, quiet 30 min) unless a test says otherwise.
Legend of the diagrams: X anomalous, . normal, (blank) no reading.
"""
from __future__ import annotations

import math
import random

import pandas as pd
import pytest

from features.alerts import ALERT_COLUMNS, TICKET_COLUMNS, AlertPolicy, incident_hex, run_alerts
from features.dedup import fingerprint

T0 = 1_767_225_600_000
M = 60_000
POLICY = AlertPolicy()


def rd(minute, anomalous, sensor="temp", machine="m1", score=None, eid=None, model="v1"):
    """One scored reading at T0 + minute."""
    return dict(event_id=eid or f"{machine}-{sensor}-{minute:04d}", machine_id=machine, sensor_id=sensor,
                event_time=T0 + minute * M, score=(0.9 if anomalous else 0.1) if score is None else score,
                is_anomalous=anomalous, reasons="value_high" if anomalous else "", model_version=model)


def series(pattern: str, sensor="temp", machine="m1", step=5, start=0):
    """Readings from a pattern string, one character per ``step`` minutes: X anomalous, . normal, ' ' none."""
    return [rd(start + i * step, c == "X", sensor, machine) for i, c in enumerate(pattern) if c != " "]


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows)


def inc(machine, sensor, minute):
    return "inc-" + incident_hex(machine, sensor, f"{machine}-{sensor}-{minute:04d}")


def alert_view(alerts) -> list:
    """(sensor, minute, alert_seq, incident_id) of each alert."""
    return [(r.sensor_id, (r.event_time - T0) // M, r.alert_seq, r.incident_id) for r in alerts.itertuples()]


def ticket_view(tickets) -> list:
    """(sensor, status, minute, started, last anomalous, ended, anomalous readings, alerts, close reason)."""
    def m(v):
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else (v - T0) // M
    return [(r.sensor_id, r.status, m(r.event_time), m(r.started_at), m(r.last_anomalous_at), m(r.ended_at),
             r.anomalous_readings, r.alerts, r.close_reason) for r in tickets.itertuples()]


def test_one_incident_opens_tickets_and_closes_after_quiet():
    #  minute     0  5 10 15 20 25 30 35 40 45 50 55 60 65 70 75 80 85 90
    #  reading    .  .  X  X  X  X  X  X  X  .  .  .  .  .  .  .  .  .  .
    #  alert            A1                   A2            (cool-down 30: 10, then 40)
    #  ticket                    open                    closed
    #                            25 - 10 >= 15           70 = last 40 + quiet 30 (recovered: normals after 40)
    rows = series("..XXXXXXX..........")
    rows[4]["score"] = 0.97  # minute 20: the incident's highest score
    alerts, tickets = run_alerts(frame(rows), POLICY)
    i = inc("m1", "temp", 10)
    assert alert_view(alerts) == [("temp", 10, 1, i), ("temp", 40, 2, i)]
    assert ticket_view(tickets) == [("temp", "open", 25, 10, 25, None, 4, 1, None),
                                    ("temp", "closed", 70, 10, 40, 70, 7, 2, "recovered")]
    assert tickets["ticket_id"].tolist() == ["tkt-" + i[4:]] * 2
    assert tickets["max_score"].tolist() == [0.97, 0.97]
    assert alerts[["score", "reasons", "model_version"]].values.tolist() == [[0.9, "value_high", "v1"]] * 2
    assert list(alerts.columns) == [n for n, _ in ALERT_COLUMNS]
    assert list(tickets.columns) == [n for n, _ in TICKET_COLUMNS]


def test_the_ids_are_the_fingerprint_of_key_and_first_event():
    assert incident_hex("m1", "temp", "m1-temp-0010") == fingerprint(["m1", "temp", "m1-temp-0010"]).hex()
    assert len(incident_hex("m1", "temp", "e")) == 32
    assert incident_hex("m1", "temp", "e") != incident_hex("m1", "tem", "pe")


def test_a_flapping_sensor_is_one_incident_with_alerts_limited_by_the_cooldown():
    #  minute     0  5 10 15 20 25 30 35 40 45 50 55 60 65 70 75 80 85 90 95 100 ... 125 130 135 140
    #  reading    X  .  X  .  .  X  X  .  .  .  X  .  .  .  .  X  .  .  .  .  X   ...  .   .   .   .
    #  gaps between X: 10 15 5 20 25 25, all < quiet 30: one incident
    #  alert      A1                A2             (50-30 < 30)   A3 (75-30 >= 30)  (100-75 < 30)
    #  ticket                    open (25 - 0 >= 15)                                    closed at 130
    rows = series("X.X..XX...X....X....X" + "." * 8)
    alerts, tickets = run_alerts(frame(rows), POLICY)
    i = inc("m1", "temp", 0)
    assert alert_view(alerts) == [("temp", 0, 1, i), ("temp", 30, 2, i), ("temp", 75, 3, i)]
    assert ticket_view(tickets) == [("temp", "open", 25, 0, 25, None, 3, 1, None),
                                    ("temp", "closed", 130, 0, 100, 130, 7, 3, "recovered")]


def test_a_silent_sensor_closes_on_the_watermark_of_the_others_and_never_alerts_for_silence():
    #  minute     0  5 10 15 20 25 30 35 40 45 50 55 60 ... 120
    #  temp       X  X  X  X  X  (silent from here on)
    #  vib        .  .  .  .  .  .  .  .  .  .  .  .  .  ...  .      (drives the watermark)
    #  temp:      A1       open                  closed at 50 = 20 + 30, "silent"
    rows = series("XXXXX") + series("." * 25, sensor="vib")
    i = inc("m1", "temp", 0)
    alerts, tickets = run_alerts(frame(rows), POLICY)
    assert alert_view(alerts) == [("temp", 0, 1, i)]  # silence raises nothing
    assert ticket_view(tickets) == [("temp", "open", 15, 0, 15, None, 4, 1, None),
                                    ("temp", "closed", 50, 0, 20, 50, 5, 1, "silent")]
    # once the watermark (from vib) is at 49 the incident is open; at 50 it is closed
    _, t49 = run_alerts(frame(rows), POLICY, watermark=T0 + 50 * M - 1)
    _, t50 = run_alerts(frame(rows), POLICY, watermark=T0 + 50 * M)
    assert [r[1] for r in ticket_view(t49)] == ["open"]
    assert [r[1:3] for r in ticket_view(t50)] == [("open", 15), ("closed", 50)]


def test_an_incident_open_at_end_of_input_closes_at_its_end_after_the_data():
    #  minute   ... 100 105 110 115 120 | end of input
    #  temp          X   X   X   X   X  |  closes at 150 = 120 + 30, after the last reading of the file
    rows = series("." * 20 + "XXXXX")
    alerts, tickets = run_alerts(frame(rows), POLICY)
    assert ticket_view(tickets) == [("temp", "open", 115, 100, 115, None, 4, 1, None),
                                    ("temp", "closed", 150, 100, 120, 150, 5, 1, "silent")]
    _, live = run_alerts(frame(rows), POLICY, watermark=T0 + 120 * M)  # a live stream: still open
    assert [r[1] for r in ticket_view(live)] == ["open"]


def test_sensors_of_one_machine_and_one_sensor_id_on_two_machines_are_kept_apart():
    #  minute        0  5 10 15 20
    #  m1/temp       X  .  .  .  X        one incident, A1 at 0 (20 < cool-down)
    #  m1/vib              X              its own incident: A1 at 10, no cool-down across sensors
    #  m2/temp          X                 another machine: its own incident
    rows = series("X...X") + [rd(10, True, "vib"), rd(5, True, "temp", "m2")]
    alerts, tickets = run_alerts(frame(rows), POLICY)
    got = sorted((r.machine_id, r.sensor_id, (r.event_time - T0) // M, r.alert_seq, r.incident_id)
                 for r in alerts.itertuples())
    assert got == [("m1", "temp", 0, 1, inc("m1", "temp", 0)), ("m1", "vib", 10, 1, inc("m1", "vib", 10)),
                   ("m2", "temp", 5, 1, inc("m2", "temp", 5))]
    # m1/temp lasted 20 min (0 .. 20, the gap of 20 < quiet 30), across normals: a ticket at 20; the
    # single readings of m1/vib and m2/temp lasted 0 min: none
    assert ticket_view(tickets) == [("temp", "open", 20, 0, 20, None, 2, 1, None),
                                    ("temp", "closed", 50, 0, 20, 50, 2, 1, "silent")]
    assert set(tickets["machine_id"]) == {"m1"}


def test_boundaries_exactly_quiet_cooldown_and_duration():
    p = AlertPolicy(min_duration_ms=10 * M, cooldown_ms=10 * M, quiet_ms=10 * M)
    #  minute       0  5  9 10 20
    #  a            X  X     X           10 - 0 = cool-down: A2 at 10; 10 - 0 = duration: ticket at 10;
    #                                    closes at 20 (silent)
    #  b            X  X  X              9 - 0 < duration: no ticket; alerts only at 0
    #  c            X           X  X     10 - 0 = quiet: a new incident at 10 (alerts again); 20 - 10 = quiet:
    #                                    a third one at 20
    rows = ([rd(0, True, "a"), rd(5, True, "a"), rd(10, True, "a")] +
            [rd(0, True, "b"), rd(5, True, "b"), rd(9, True, "b")] +
            [rd(0, True, "c"), rd(10, True, "c"), rd(20, True, "c")])
    alerts, tickets = run_alerts(frame(rows), p)
    assert alert_view(alerts) == [("a", 0, 1, inc("m1", "a", 0)), ("a", 10, 2, inc("m1", "a", 0)),
                                  ("b", 0, 1, inc("m1", "b", 0)),
                                  ("c", 0, 1, inc("m1", "c", 0)), ("c", 10, 1, inc("m1", "c", 10)),
                                  ("c", 20, 1, inc("m1", "c", 20))]
    assert ticket_view(tickets) == [("a", "open", 10, 0, 10, None, 3, 2, None),
                                    ("a", "closed", 20, 0, 10, 20, 3, 2, "silent")]
    # the close itself: end = 20 is closed at watermark 20, open at 19
    assert len(run_alerts(frame(rows), p, watermark=T0 + 20 * M)[1]) == 2
    assert len(run_alerts(frame(rows), p, watermark=T0 + 20 * M - 1)[1]) == 1


def test_a_normal_reading_exactly_at_the_end_closes_as_recovered_and_one_just_before_counts():
    p = AlertPolicy(min_duration_ms=0, cooldown_ms=0, quiet_ms=10 * M)
    # D = 0: a ticket at the first reading; C = 0: every anomalous reading alerts
    _, t = run_alerts(frame([rd(0, True), rd(10, False)]), p)  # the normal at 10 is not before the end (10)
    assert ticket_view(t) == [("temp", "open", 0, 0, 0, None, 1, 1, None),
                              ("temp", "closed", 10, 0, 0, 10, 1, 1, "silent")]
    a, t = run_alerts(frame([rd(0, True), rd(3, True), rd(9, False)]), p)
    assert [r.alert_seq for r in a.itertuples()] == [1, 2]
    assert ticket_view(t)[1] == ("temp", "closed", 13, 0, 3, 13, 2, 2, "recovered")


def test_same_millisecond_readings_go_in_event_id_order():
    p = AlertPolicy(min_duration_ms=0, cooldown_ms=5 * M, quiet_ms=10 * M)
    rows = [rd(0, True, eid="b", score=0.8), rd(0, True, eid="a", score=0.7)]
    alerts, tickets = run_alerts(frame(rows), p)
    assert alerts["event_id"].tolist() == ["a"]  # "a" opens the incident, "b" is within the cool-down
    assert tickets["incident_id"].tolist() == ["inc-" + incident_hex("m1", "temp", "a")] * 2
    assert tickets["max_score"].tolist() == [0.7, 0.8]


def test_row_order_does_not_matter():
    rows = series("X.X..XX...X....X....X" + "." * 8) + series("..XXXXX", sensor="vib") + series("XXXX", machine="m2")
    want = run_alerts(frame(rows), POLICY)
    for seed in range(5):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        got = run_alerts(frame(shuffled), POLICY)
        pd.testing.assert_frame_equal(got[0], want[0])
        pd.testing.assert_frame_equal(got[1], want[1])


def test_null_and_nan_inputs():
    rows = [rd(0, True, score=float("nan")), rd(5, None), rd(10, True, score=0.5), rd(15, True)]
    rows[1]["is_anomalous"] = None  # null decision: not anomalous
    rows[3]["score"] = None
    p = AlertPolicy(min_duration_ms=15 * M, cooldown_ms=0, quiet_ms=30 * M)
    alerts, tickets = run_alerts(frame(rows), p)
    assert [(r.event_time - T0) // M for r in alerts.itertuples()] == [0, 10, 15]
    assert tickets["max_score"].tolist() == [0.5, 0.5]  # NaN and null are not scores
    assert tickets["close_reason"].tolist()[1] == "silent"


def test_input_validation():
    good = frame([rd(0, True)])
    with pytest.raises(ValueError, match="lack the columns"):
        run_alerts(good.drop(columns=["model_version"]), POLICY)
    with pytest.raises(ValueError, match="unique"):
        run_alerts(frame([rd(0, True), rd(0, True)]), POLICY)
    bad = frame([rd(0, True)])
    bad.loc[0, "sensor_id"] = None
    with pytest.raises(ValueError, match="sensor_id must not be null"):
        run_alerts(bad, POLICY)
    a, t = run_alerts(good.iloc[:0], POLICY)
    assert a.empty and t.empty and list(t.columns) == [n for n, _ in TICKET_COLUMNS]


@pytest.mark.parametrize("kwargs, message", [
    (dict(min_duration_ms=-1), "min_duration_ms must be >= 0"),
    (dict(cooldown_ms=-5), "cooldown_ms must be >= 0"),
    (dict(quiet_ms=0), "quiet_ms must be >= 1"),
    (dict(quiet_ms=1.5), "integer number of ms"),
    (dict(cooldown_ms=True), "integer number of ms"),
    (dict(min_duration_ms="15m"), "integer number of ms"),
    (dict(quiet_ms=31 * 24 * 60 * M), "at most"),
])
def test_policy_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AlertPolicy(**kwargs)


def test_policy_defaults_and_json():
    p = AlertPolicy()
    assert (p.min_duration_ms, p.cooldown_ms, p.quiet_ms) == (15 * M, 30 * M, 30 * M)
    assert p.to_json() == '{"cooldown_ms": 1800000, "min_duration_ms": 900000, "quiet_ms": 1800000}'
    with pytest.raises(Exception):
        p.quiet_ms = 5  # frozen


# --- an independent formulation: incidents as segments of the anomalous readings ----------------------

def segments_oracle(rows, p: AlertPolicy):
    """Incidents = maximal runs of a sensor's anomalous readings (in (time, id) order) whose
    consecutive gaps are < quiet; alerts by a greedy cool-down over each run; the ticket at the first
    reading >= min_duration after the run's start; the close at last + quiet."""
    alerts, tickets = set(), set()
    keys = sorted({(r["machine_id"], r["sensor_id"]) for r in rows})
    for m, s in keys:
        mine = sorted((r for r in rows if (r["machine_id"], r["sensor_id"]) == (m, s)),
                      key=lambda r: (r["event_time"], r["event_id"]))
        anom = [r for r in mine if r["is_anomalous"]]
        runs, cur = [], []
        for r in anom:
            if cur and r["event_time"] - cur[-1]["event_time"] >= p.quiet_ms:
                runs.append(cur)
                cur = []
            cur.append(r)
        if cur:
            runs.append(cur)
        for run in runs:
            start, iid = run[0]["event_time"], "inc-" + incident_hex(m, s, run[0]["event_id"])
            sent = []
            for r in run:
                if not sent or r["event_time"] - sent[-1] >= p.cooldown_ms:
                    sent.append(r["event_time"])
                    alerts.add((r["event_id"], iid, len(sent)))
            opener = next((k for k, r in enumerate(run) if r["event_time"] - start >= p.min_duration_ms), None)
            if opener is None:
                continue
            t_open = run[opener]["event_time"]
            tickets.add((iid, "open", t_open, opener + 1, sum(1 for a in sent if a <= t_open)))
            last, end = run[-1], run[-1]["event_time"] + p.quiet_ms
            after = [r for r in mine if (r["event_time"], r["event_id"]) > (last["event_time"], last["event_id"])
                     and r["event_time"] < end]
            tickets.add((iid, "closed", end, len(run), len(sent), "recovered" if after else "silent"))
    return alerts, tickets


def random_rows(rnd: random.Random, n_sensors: int, n: int) -> list:
    rows = []
    for k in range(n_sensors):
        t, p_anom = rnd.randint(0, 10), rnd.choice([0.05, 0.3, 0.6])
        for i in range(n):
            t += rnd.choice([1, 2, 5, 5, 5, 10, 40])  # minutes: regular, bursts, silences
            rows.append(rd(t, rnd.random() < p_anom, sensor=f"s{k % 2}", machine=f"m{k // 2}",
                           score=round(rnd.random(), 3), eid=f"e{k}-{i:03d}"))
    return rows


def test_reference_equals_the_segment_oracle_on_random_streams():
    rnd = random.Random(7)
    for case in range(200):
        p = AlertPolicy(min_duration_ms=rnd.choice([0, 5, 15, 30]) * M, cooldown_ms=rnd.choice([0, 5, 10, 30]) * M,
                        quiet_ms=rnd.choice([1, 5, 10, 30, 60]) * M)
        rows = random_rows(rnd, rnd.randint(1, 4), rnd.randint(1, 40))
        alerts, tickets = run_alerts(frame(rows), p)
        want_alerts, want_tickets = segments_oracle(rows, p)
        assert {(r.event_id, r.incident_id, r.alert_seq) for r in alerts.itertuples()} == want_alerts, case
        got_tickets = set()
        for r in tickets.itertuples():
            if r.status == "open":
                got_tickets.add((r.incident_id, "open", r.event_time, r.anomalous_readings, r.alerts))
            else:
                got_tickets.add((r.incident_id, "closed", r.event_time, r.anomalous_readings, r.alerts, r.close_reason))
        assert got_tickets == want_tickets, case
        assert len(tickets) == len(want_tickets) and len(alerts) == len(want_alerts)
