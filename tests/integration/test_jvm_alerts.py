"""The JVM alerts operator (jvm/engine Incidents / Alerts, udfs/alerts.py) against the pure reference
(features/alerts.py), row for row: on the hand-made streams of tests/fast/test_alerts.py and on a
few hundred random streams, in STREAMING (arrival order shuffled within the watermark's bound,
watermarks every few ms, so most readings are handled on the way and not at end of input) and in
BATCH; then a job stopped with a savepoint mid-incident and restored gives what one run gives,
and a reading sent once the watermark has passed it leaves on the late output.

    arrival order (STREAMING): each reading arrives at event_time + jitter, jitter in [0, DISORDER];
    the watermark (newest - DISORDER - 1) is then behind every later arrival: nothing is late, and
    the operator must put each sensor's readings back into (event_time, event_id) order itself.
"""
from __future__ import annotations

import json
import math
import random
import time

import pandas as pd
import pytest

from features.alerts import ALERT_COLUMNS, SCORED_COLUMNS, TICKET_COLUMNS, AlertPolicy, run_alerts
from tests.fast.test_alerts import M, POLICY, T0, rd, series

pytestmark = pytest.mark.integration

DISORDER = 7 * M + 123
COLUMNS = list(SCORED_COLUMNS)
NAMES = [n for n, _ in COLUMNS]
POLICIES = {
    "default": POLICY,
    "edge": AlertPolicy(min_duration_ms=10 * M, cooldown_ms=10 * M, quiet_ms=10 * M),
    "zero": AlertPolicy(min_duration_ms=0, cooldown_ms=0, quiet_ms=1),
    "long": AlertPolicy(min_duration_ms=5 * M, cooldown_ms=5 * M, quiet_ms=60 * M),
}
CASES_PER_POLICY = 75


def hand_made() -> dict:
    """The hand-made streams of tests/fast/test_alerts.py, each under its own machine."""
    def on(machine, rows):
        return [dict(r, machine_id=machine, event_id=f"{machine}-{r['event_id']}") for r in rows]

    default = (on("incident", series("..XXXXXXX..........")) +
               on("flapping", series("X.X..XX...X....X....X" + "." * 8)) +
               on("silent", series("XXXXX") + series("." * 25, sensor="vib")) +
               on("end", series("." * 20 + "XXXXX")) +
               on("apart", series("X...X") + [rd(10, True, "vib")]) + on("apart2", [rd(5, True, "temp")]) +
               on("ties", [rd(0, True, eid="b", score=0.8), rd(0, True, eid="a", score=0.7)]))
    edge = on("bounds", [rd(0, True, "a"), rd(5, True, "a"), rd(10, True, "a"), rd(0, True, "b"), rd(5, True, "b"),
                         rd(9, True, "b"), rd(0, True, "c"), rd(10, True, "c"), rd(20, True, "c")])
    return {"default": default, "edge": edge, "zero": [], "long": []}


def random_case(rnd: random.Random, case: int) -> list:
    """1-4 sensors of 1-2 machines, 1-30 readings each: regular 5-minute readings, bursts, same-ms
    ties, silences; anomaly rates from rare to most."""
    rows = []
    for k in range(rnd.randint(1, 4)):
        t, p_anom = T0 + rnd.randint(0, 10 * M), rnd.choice([0.05, 0.3, 0.6, 0.9])
        for i in range(rnd.randint(1, 30)):
            t += rnd.choice([0, 1, M, 5 * M, 5 * M, 5 * M, 10 * M, 10 * M + 1, 40 * M, 3 * 60 * M])
            score = rnd.choice([round(rnd.random(), 4), None]) if rnd.random() < 0.1 else round(rnd.random(), 4)
            anomalous = None if rnd.random() < 0.03 else rnd.random() < p_anom
            rows.append(dict(event_id=f"r{case}-{k}-{i:02d}{rnd.choice('ab')}", machine_id=f"r{case}-m{k // 2}",
                             sensor_id=f"s{k % 2}", event_time=t, score=score, is_anomalous=anomalous,
                             reasons=rnd.choice(["", "z_high", "gap"]), model_version=rnd.choice(["v1", "v2"])))
    return rows


@pytest.fixture(scope="module")
def streams() -> dict:
    rnd = random.Random(2026)
    out = hand_made()
    for k, p in enumerate(POLICIES):
        for c in range(CASES_PER_POLICY):
            out[p] += random_case(rnd, k * CASES_PER_POLICY + c)
    return out


def arrival_order(rows: list, seed: int) -> list:
    rnd = random.Random(seed)
    keyed = [(r["event_time"] + rnd.randint(0, DISORDER), i, r) for i, r in enumerate(rows)]
    return [r for _, _, r in sorted(keyed, key=lambda x: (x[0], x[1]))]


def _norm(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v


def as_set(frame: pd.DataFrame) -> list:
    return sorted((tuple(_norm(v) for v in r) for r in frame.itertuples(index=False, name=None)), key=repr)


class Pace:
    """Sleeps a little every few rows, so periodic watermarks interleave with the readings."""

    def __init__(self, every: int):
        self.every, self.n = every, 0

    def __call__(self, r):
        self.n += 1
        if self.n % self.every == 0:
            time.sleep(0.002)
        return r


def run_job(streams: dict, *, batch: bool, counts_dir: str) -> dict:
    """Each policy's readings through its own operator, in one job; {policy: (alerts, tickets, late)}."""
    from pyflink.common import Row, Types

    from jobs.flinkenv import FlinkSettings, make_env
    from udfs.alerts import raise_alerts
    from udfs.types import row_type
    from udfs.watermarks import with_watermarks

    env, _ = make_env(FlinkSettings(batch=batch, parallelism=1, extra={
        "python.operator-chaining.enabled": "false", "pipeline.auto-watermark-interval": "5 ms"}))
    tagged = None
    for k, (p, rows) in enumerate(streams.items()):
        order = arrival_order(rows, k) if not batch else random.Random(k).sample(rows, len(rows))
        stream = env.from_collection([Row(*(r[n] for n in NAMES)) for r in order], type_info=row_type(COLUMNS))
        if not batch:
            stream = stream.map(Pace(25), output_type=row_type(COLUMNS)).name(f"t/{p}/pace")
            stream = with_watermarks(stream, COLUMNS, DISORDER, 0, f"t/{p}/wm")
        res = raise_alerts(stream, NAMES, POLICIES[p], uid=f"t/{p}/alerts", source="t", counts_dir=counts_dir)
        parts = [s.map(lambda r, p=p, kind=kind: json.dumps([p, kind, list(r)]), output_type=Types.STRING())
                 for kind, s in (("alert", res.alerts), ("ticket", res.tickets), ("late", res.late))]
        both = parts[0].union(parts[1], parts[2])
        tagged = both if tagged is None else tagged.union(both)
    out = {p: ([], [], []) for p in streams}
    with tagged.execute_and_collect() as results:
        for line in results:
            p, kind, row = json.loads(line)
            out[p][("alert", "ticket", "late").index(kind)].append(row)
    return out


def expected(streams: dict) -> dict:
    return {p: run_alerts(pd.DataFrame(rows, columns=NAMES), POLICIES[p]) for p, rows in streams.items()}


def check(got: dict, want: dict) -> int:
    n = 0
    for p, (alerts, tickets, late) in got.items():
        a = pd.DataFrame(alerts, columns=[c for c, _ in ALERT_COLUMNS])
        t = pd.DataFrame(tickets, columns=[c for c, _ in TICKET_COLUMNS])
        assert late == [], (p, late[:3])
        assert as_set(a) == as_set(want[p][0]), p
        assert as_set(t) == as_set(want[p][1]), p
        assert len(a) == len(want[p][0]) and len(t) == len(want[p][1])  # nothing doubled
        n += len(a) + len(t)
    return n


@pytest.mark.parametrize("batch", [False, True], ids=["streaming", "batch"])
def test_operator_equals_the_reference(streams, tmp_path, batch):
    from udfs.counters import read_counts

    start = time.time()
    got = run_job(streams, batch=batch, counts_dir=str(tmp_path))
    took = time.time() - start
    want = expected(streams)
    n_out = check(got, want)
    counts = read_counts(str(tmp_path))["alerts"]
    n_in = sum(len(r) for r in streams.values())
    print(f"\n[alerts {'batch' if batch else 'streaming'}] {n_in} readings -> {n_out} alert/ticket rows in {took:.1f} s;"
          f" counts {counts}")
    assert counts["alerts"] == sum(len(w[0]) for w in want.values())
    assert counts.get("late", 0) == 0
    at_end = counts.get("end_of_input_readings", 0)
    if batch:
        assert at_end == n_in  # BATCH: every reading waits for its key's end
    else:
        assert at_end < n_in // 4, "the watermark did not advance during the run: only end of input was tested"
    hand = {p: [r for r in rows if not r["machine_id"].startswith("r")] for p, rows in streams.items()}
    # the hand-made streams are in there, with the rows the fast tests spell out
    flapping = [r for r in got["default"][1] if r[2] == "flapping"]
    assert sorted((r[4], (r[5] - T0) // M) for r in flapping) == [("closed", 130), ("open", 25)]
    assert sum(len(v) for v in hand.values()) > 80


# --- restore: stopped with a savepoint mid-incident, restored, the same rows as one run -------------------
#
#   arrival   [r1 .............. rk] savepoint | restore [rk+1 ............... rN]
#   emitted   what the reference emits at W1   |  the rest of what it emits at W2
#   W1 = newest of part 1 - DISORDER - 1 (readings after W1 wait in the savepoint's state, with the open
#   incidents and their close timers); W2 likewise for the whole input (the job never ends, so later
#   incidents stay open). Once all of that has arrived the operator's watermark is exactly W2: a reading
#   at or before W2 sent then (part 3) is late, deterministically.

class WriteLines:
    """Appends each output (a JSON line) to a file: exactly once across a stop-with-savepoint, at
    parallelism 1 (what was written before the barrier is in the savepoint's past)."""

    def __init__(self, path: str):
        self.path = path

    def open(self, runtime_context):
        self.f = open(self.path, "a")

    def close(self):
        self.f.close()

    def map(self, line):
        self.f.write(line + "\n")
        self.f.flush()
        return line


def _readings_job(in_dir, out_file, restore_from=None):
    from pyflink.common import Duration, Row, Types
    from pyflink.common.watermark_strategy import WatermarkStrategy
    from pyflink.datastream import MapFunction
    from pyflink.datastream.connectors import Sink
    from pyflink.datastream.connectors.file_system import FileSource, StreamFormat

    from jobs.flinkenv import FlinkSettings, make_env
    from udfs.alerts import raise_alerts
    from udfs.types import row_type
    from udfs.watermarks import with_watermarks

    class Writer(WriteLines, MapFunction):
        pass

    env, _ = make_env(FlinkSettings(batch=False, parallelism=1, restore_from=restore_from, extra={
        "python.operator-chaining.enabled": "false", "pipeline.auto-watermark-interval": "5 ms"}))
    src = (FileSource.for_record_stream_format(StreamFormat.text_line_format(), str(in_dir))
           .monitor_continuously(Duration.of_millis(200)).build())
    lines = env.from_source(src, WatermarkStrategy.no_watermarks(), "readings").uid("t/files")
    rows = lines.map(lambda s: Row(*(json.loads(s)[n] for n in NAMES)), output_type=row_type(COLUMNS)).uid("t/parse")
    res = raise_alerts(with_watermarks(rows, COLUMNS, DISORDER, 0, "t/wm"), NAMES, POLICY, uid="t/alerts", source="t")
    parts = [s.map(lambda r, kind=kind: json.dumps([kind, list(r)]), output_type=Types.STRING()).uid(f"t/{kind}")
             for kind, s in (("alert", res.alerts), ("ticket", res.tickets), ("late", res.late))]
    (parts[0].union(parts[1], parts[2]).map(Writer(str(out_file)), output_type=Types.STRING()).uid("t/write")
     .sink_to(Sink("org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink")).uid("t/sink"))
    return env


def _outputs(out_file) -> list:
    if not out_file.exists():
        return []
    return [json.loads(x) for x in out_file.read_text().splitlines() if x.endswith("]")]


def _wait_for(out_file, n: int, timeout_s: float = 120) -> list:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        got = _outputs(out_file)
        if len(got) >= n:
            time.sleep(1.0)  # and nothing more comes
            return _outputs(out_file)
        time.sleep(0.2)
    return _outputs(out_file)


def _reference_rows(rows, watermark) -> list:
    a, t = run_alerts(pd.DataFrame(rows, columns=NAMES), POLICY, watermark=watermark)
    return sorted([["alert", [_norm(v) for v in r]] for r in a.itertuples(index=False, name=None)] +
                  [["ticket", [_norm(v) for v in r]] for r in t.itertuples(index=False, name=None)], key=repr)


def test_restore_from_a_savepoint_mid_incident_gives_one_run(streams, tmp_path):
    from tests.integration.test_fraud_recovery import stop_with_savepoint

    rows = arrival_order(streams["default"], 99)
    cut = len(rows) // 2
    w1 = max(r["event_time"] for r in rows[:cut]) - DISORDER - 1
    w2 = max(r["event_time"] for r in rows) - DISORDER - 1
    want1, want2 = _reference_rows(rows[:cut], w1), _reference_rows(rows, w2)
    waiting = sum(1 for r in rows[:cut] if r["event_time"] > w1)
    open1 = {r[1][0] for r in want1 if r[0] == "ticket" and r[1][4] == "open"}
    closed1 = {r[1][0] for r in want1 if r[0] == "ticket" and r[1][4] == "closed"}
    spanning = open1 - closed1  # tickets open at the savepoint
    assert waiting > 0 and spanning, "pick another cut: nothing in flight at the savepoint"

    in_dir, out_file = tmp_path / "in", tmp_path / "out.jsonl"
    in_dir.mkdir()
    (in_dir / "part-1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:cut]))
    client = _readings_job(in_dir, out_file).execute_async("alerts-first-part")
    first = _wait_for(out_file, len(want1))
    assert sorted(first, key=repr) == want1, "part 1 before the savepoint"
    savepoint = stop_with_savepoint(client, (tmp_path / "savepoints").as_uri())

    (in_dir / "part-2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[cut:]))
    client = _readings_job(in_dir, out_file, restore_from=savepoint).execute_async("alerts-second-part")
    try:
        got = _wait_for(out_file, len(want2))
        late = dict(rows[-1], event_id="late-1", event_time=w2, is_anomalous=True)
        (in_dir / "part-3.jsonl").write_text(json.dumps(late) + "\n")
        after = _wait_for(out_file, len(got) + 1, timeout_s=30)[len(got):]
    finally:
        client.cancel().result()
    print(f"\n[alerts restore] {cut} + {len(rows) - cut} readings, {waiting} buffered and {len(spanning)} tickets "
          f"open at the savepoint; {len(first)} + {len(got) - len(first)} output rows")
    assert sorted(got, key=repr) == want2  # nothing lost, nothing twice, no incident split in two
    closed_after = {r[1][0] for r in got[len(first):] if r[0] == "ticket" and r[1][4] == "closed"}
    assert spanning & closed_after, "no incident was carried across the restore"
    from udfs.types import REJECT_COLUMNS

    assert [kind for kind, _ in after] == ["late"], after  # the late reading, and nothing else
    rej = dict(zip([c for c, _ in REJECT_COLUMNS], after[0][1]))
    assert rej["reason"] == "late" and json.loads(rej["raw"])["event_id"] == "late-1"
    assert rej["detail"].startswith(f"scored reading at event_time {w2} is 0 ms behind the watermark {w2}")
