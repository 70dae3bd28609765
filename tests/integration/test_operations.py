"""Operations a user relies on, for real (broker + MiniCluster, `streamscore` as a subprocess):

- Ctrl-C (SIGINT to the whole process group, as a terminal sends it) gives no traceback, one line
  naming the newest retained checkpoint and the command resuming from it; that command, with
  --until latest, ends by itself and decides exactly the events after the checkpoint;
- a job restored from a savepoint with --until latest ends by itself (the connector alone never
  ends it) and decides every event once, with the end-of-run counts printed;
- a broker that goes away mid-run ends the run with one line and exit 1 within --broker-lost-s;
- backfill --overwrite leaves only the new run's dead letters.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from features.contracts import PAYMENT
from features.synthetic import generate_payments, to_arrow
from streamscore.produce import produce_rows
from jobs.runtime import ROOT
from tests.integration.test_fraud_recovery import decisions, stop_with_savepoint

pytestmark = pytest.mark.integration

N, CUT = 3000, 1500
STREAMSCORE = str(Path(sys.executable).parent / "streamscore")
BAD_LINE = re.compile(r"Traceback|Exception")


def job_argv(bootstrap, topic, out_topic, ckpt, *extra):
    return ["run", "fraud", "--topic", topic, "--bootstrap", bootstrap, "--decisions", f"kafka:{out_topic}",
            "--features-out", "none", "--dead-letters", "none", "--late", "none", "--group-id", out_topic,
            "--checkpoint-dir", str(ckpt), "--checkpoint-interval-ms", "2000", *extra]


def start(argv) -> subprocess.Popen:
    # a session of its own, so SIGINT can go to the whole group like a terminal's Ctrl-C
    return subprocess.Popen([STREAMSCORE, *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def finish(p: subprocess.Popen, timeout: float):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"did not end within {timeout:.0f} s\nstdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}")
    return p.returncode, out, err


def checkpoints(ckpt: Path) -> list:
    return sorted(ckpt.glob("*/chk-*/_metadata"), key=lambda m: m.stat().st_mtime)


def wait_for_checkpoint_after(ckpt: Path, t: float, p: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert p.poll() is None, f"the job ended early: {p.communicate()}"
        done = [m for m in checkpoints(ckpt) if m.stat().st_mtime > t]
        if done:
            return done[-1].parent
        time.sleep(0.5)
    pytest.fail(f"no checkpoint under {ckpt} within {timeout} s")


def counts_line(out: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.startswith("counts: ")]
    assert lines, f"no counts summary in:\n{out}"
    return lines[-1]


def test_ctrl_c_names_the_checkpoint_and_its_resume_command_works(kafka_broker, unique_topic, tmp_path):
    bootstrap = kafka_broker.bootstrap
    table = to_arrow(generate_payments(N, seed=31), PAYMENT)
    topic, out_topic, ckpt = unique_topic("in"), unique_topic("decisions"), tmp_path / "ckpt"
    produce_rows(bootstrap, topic, table.slice(0, CUT), PAYMENT)
    p = start(job_argv(bootstrap, topic, out_topic, ckpt))
    try:
        assert len(decisions(bootstrap, out_topic, CUT, timeout_s=240)) == CUT
        seen = time.time()
        chk = wait_for_checkpoint_after(ckpt, seen, p)  # its source position is past the first part
        os.killpg(p.pid, signal.SIGINT)
        t0 = time.time()
        rc, out, err = finish(p, timeout=90)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    took = time.time() - t0
    print(f"\n[ctrl-c] exit {rc} {took:.1f} s after SIGINT; stderr: {err.strip()}")
    assert rc == 130
    assert not [ln for ln in (out + err).splitlines() if BAD_LINE.search(ln)], out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "newest retained checkpoint" in lines[0], err
    named = Path(lines[0].split("newest retained checkpoint ", 1)[1].split(";", 1)[0])
    assert (named / "_metadata").is_file() and named.parent == chk.parent
    cmd = shlex.split(lines[0].split("resume with: ", 1)[1])
    assert cmd[cmd.index("--from-savepoint") + 1] == str(named)

    # the rest arrives while the job is down; the printed command resumes and ends by itself
    produce_rows(bootstrap, topic, table.slice(CUT), PAYMENT)
    t0 = time.time()
    rc, out, err = finish(subprocess.Popen(cmd + ["--until", "latest"], cwd=ROOT, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True), timeout=400)
    took = time.time() - t0
    print(f"[ctrl-c] resumed run with --until latest ended in {took:.1f} s: {counts_line(out)}")
    assert rc == 0, err
    assert not [ln for ln in (out + err).splitlines() if BAD_LINE.search(ln)], out + err
    ids = [d["event_id"] for d in decisions(bootstrap, out_topic, N, timeout_s=60)]
    assert len(ids) == len(set(ids)) == N, "a decision is missing or twice"
    assert counts_line(out).startswith(f"counts: in {N - CUT} = decided {N - CUT} + dead letters 0 + late 0 (holds)")


def test_restored_savepoint_with_until_latest_ends_by_itself(kafka_broker, unique_topic, tmp_path):
    from streamscore.cli import build_parser
    from jobs.run import prepare

    bootstrap = kafka_broker.bootstrap
    table = to_arrow(generate_payments(N, seed=32), PAYMENT)
    topic, out_topic = unique_topic("in"), unique_topic("decisions")
    produce_rows(bootstrap, topic, table.slice(0, CUT), PAYMENT)
    env, _, _ = prepare(build_parser().parse_args(job_argv(bootstrap, topic, out_topic, tmp_path / "a")))
    client = env.execute_async("operations-first-part")
    assert len(decisions(bootstrap, out_topic, CUT, timeout_s=240)) == CUT
    savepoint = stop_with_savepoint(client, (tmp_path / "savepoints").as_uri())
    produce_rows(bootstrap, topic, table.slice(CUT), PAYMENT)

    t0 = time.time()
    rc, out, err = finish(start(job_argv(bootstrap, topic, out_topic, tmp_path / "b", "-s", savepoint,
                                         "--until", "latest")), timeout=400)
    took = time.time() - t0
    print(f"\n[savepoint+until] restored run ended in {took:.1f} s: {counts_line(out)}")
    assert rc == 0, err
    ids = [d["event_id"] for d in decisions(bootstrap, out_topic, N, timeout_s=60)]
    assert len(ids) == len(set(ids)) == N, "a decision is missing or twice"
    assert counts_line(out) == f"counts: in {N - CUT} = decided {N - CUT} + dead letters 0 + late 0 (holds)"
    assert not list((tmp_path / "b").glob(".until-drain-*")), "the drained savepoint was left behind"


def test_a_broker_lost_mid_run_ends_it_with_one_line(tmp_path, unique_topic):
    from streamscore.kafka_broker import KafkaBroker
    from tests.conftest import free_port_pair

    broker = KafkaBroker(port=free_port_pair(), data_dir=tmp_path / "kafka").start(timeout=90)
    topic = unique_topic("in")
    try:
        produce_rows(broker.bootstrap, topic, to_arrow(generate_payments(500, seed=33), PAYMENT), PAYMENT)
        ckpt = tmp_path / "ckpt"
        p = start(job_argv(broker.bootstrap, topic, unique_topic("decisions"), ckpt, "--broker-lost-s", "20"))
        try:
            wait_for_checkpoint_after(ckpt, 0, p, timeout=240)
            broker.stop()
            t0 = time.time()
            rc, out, err = finish(p, timeout=120)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    finally:
        broker.stop()
    took = time.time() - t0
    print(f"\n[broker lost] exit {rc} {took:.1f} s after the broker stopped: {err.strip()}")
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and broker.bootstrap in lines[0] and "resume with: " in lines[0], err
    assert not [ln for ln in (out + err).splitlines() if BAD_LINE.search(ln)], out + err
    assert 20 - 5 <= took < 20 + 5 + 30, f"{took:.0f} s"  # the bound, plus one look (5 s) and the cancel


def test_backfill_overwrite_replaces_the_dead_letters_too(tmp_path, capsys):
    from streamscore.cli import main

    frame = generate_payments(400, seed=34)
    runs = {"first": [5, 50, 100], "second": [7, 70]}
    out, dl = tmp_path / "features", tmp_path / "features-dead-letters"
    for name, bad in runs.items():
        f = frame.copy()
        f.loc[bad, "amount"] = -1.0  # out_of_range
        src = tmp_path / f"{name}.parquet"
        pq.write_table(to_arrow(f, PAYMENT), src)
        argv = ["backfill", "fraud", "--input", str(src), "--out", str(out)]
        assert main(argv + (["--overwrite"] if name == "second" else [])) == 0
    printed = capsys.readouterr().out
    assert counts_line(printed) == "counts: rows read 400, feature rows written 398, dead letters 2, late 0 (holds)"
    assert f"outputs: features parquet:{out}; dead letters json:{dl}" in printed
    rows = [json.loads(line) for f in sorted(dl.rglob("part-*")) for line in f.read_text().splitlines() if line]
    ids = sorted(json.loads(r["raw"])["event_id"] if r["raw"].startswith("{") else r["raw"] for r in rows)
    assert len(rows) == 2 and {r["reason"] for r in rows} == {"out_of_range"}, rows
    assert ids == sorted(frame["event_id"].iloc[runs["second"]]), ids
    assert len(pq.read_table(out).to_pandas()) == 400 - 2
