"""Operations a user relies on, without a JVM: the broker pre-flight check (one line, exit 1, within
--kafka-timeout-s), finding the newest retained checkpoint (--resume), the printed resume command,
the end-of-run counts summary, and backfill --overwrite clearing the previous dead letters."""
from __future__ import annotations

import os
import shlex
import socket
import time
from pathlib import Path

import pytest

from jobs import ops
from streamscore.cli import build_parser, main
from udfs.counters import RunCounts, read_counts


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


# ------------------------------------------------------------------------------------- pre-flight
def test_unreachable_broker_is_one_line_and_exit_1_within_the_timeout(capsys, tmp_path):
    bootstrap = f"127.0.0.1:{closed_port()}"
    t0 = time.monotonic()
    rc = main(["run", "fraud", "--topic", "t", "--bootstrap", bootstrap, "--kafka-timeout-s", "2",
               "--checkpoint-dir", str(tmp_path / "ckpt")])
    took = time.monotonic() - t0
    out = capsys.readouterr()
    err = out.err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1 and bootstrap in err[0] and "within" in err[0], err
    assert "Traceback" not in out.err + out.out
    assert took < 2 + 3, f"took {took:.1f} s for a 2 s timeout"
    print(f"\n[preflight] unreachable {bootstrap}: one line after {took:.1f} s (timeout 2 s)")


def test_sinks_on_kafka_are_checked_even_with_a_parquet_input(capsys, tmp_path):
    import pandas as pd

    from features.contracts import PAYMENT
    from features.synthetic import generate_payments, to_arrow

    src = tmp_path / "in.parquet"
    import pyarrow.parquet as pq

    pq.write_table(to_arrow(generate_payments(10, seed=1), PAYMENT), src)
    bootstrap = f"127.0.0.1:{closed_port()}"
    rc = main(["run", "fraud", "--input", str(src), "--bootstrap", bootstrap, "--kafka-timeout-s", "1",
               "--decisions", "kafka:d", "--features-out", "none", "--dead-letters", "none", "--late", "none"])
    assert rc == 1 and bootstrap in capsys.readouterr().err
    assert pd  # (imported for the generator)


def test_preflight_passes_the_security_settings_to_kafka_python(monkeypatch, tmp_path):
    """--kafka-config's keys reach the pre-flight client as kafka-python arguments."""
    import kafka

    seen = {}

    class FakeAdmin:
        def __init__(self, **kw):
            seen.update(kw)

        def list_topics(self):
            raise kafka.errors.KafkaTimeoutError("stop here")

        def close(self):
            pass

    monkeypatch.setattr(kafka, "KafkaAdminClient", FakeAdmin)
    cfg = tmp_path / "client.properties"
    cfg.write_text("security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\n"
                   'sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required '
                   'username="u" password="s3cret-pw";\n')
    rc = main(["run", "fraud", "--topic", "t", "--bootstrap", "b:1", "--kafka-timeout-s", "1",
               "--kafka-config", str(cfg)])
    assert rc == 1
    assert seen["security_protocol"] == "SASL_SSL" and seen["sasl_plain_password"] == "s3cret-pw"
    assert seen["bootstrap_servers"] == "b:1"


def test_kafka_timeout_must_be_positive():
    with pytest.raises(ValueError, match="must be > 0"):
        ops.check_brokers("127.0.0.1:1", 0)


# ------------------------------------------------------------------------------------ checkpoints
def make_checkpoint(root: Path, job: str, n: int, mtime: float) -> Path:
    d = root / job / f"chk-{n}"
    d.mkdir(parents=True)
    (d / "_metadata").write_bytes(b"x")
    import os

    os.utime(d / "_metadata", (mtime, mtime))
    return d


def test_newest_checkpoint_is_the_most_recent_completed_one(tmp_path):
    assert ops.newest_checkpoint(str(tmp_path / "none")) is None
    make_checkpoint(tmp_path, "job-a", 7, 1000)
    newest = make_checkpoint(tmp_path, "job-b", 2, 2000)  # a later job restarts numbering lower
    (tmp_path / "job-b" / "chk-3").mkdir()  # in progress: no _metadata yet
    (tmp_path / "job-b" / "shared").mkdir()
    assert ops.newest_checkpoint(str(tmp_path)) == newest
    assert ops.newest_checkpoint(str(tmp_path), "job-a") == tmp_path / "job-a" / "chk-7"
    assert ops.checkpoints_of_job(str(tmp_path), "job-b") == {2}


def test_resume_without_a_checkpoint_is_one_line(capsys, tmp_path):
    rc = main(["run", "fraud", "--topic", "t", "--resume", "--checkpoint-dir", str(tmp_path / "ckpt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no retained checkpoint" in err[0], err


def test_resume_and_from_savepoint_exclude_each_other(capsys, tmp_path):
    make_checkpoint(tmp_path, "j", 1, 1000)
    rc = main(["run", "fraud", "--topic", "t", "--resume", "-s", str(tmp_path / "j" / "chk-1"),
               "--checkpoint-dir", str(tmp_path)])
    assert rc == 2 and "not both" in capsys.readouterr().err


def test_resume_command_restores_from_the_checkpoint_and_parses_back(tmp_path):
    chk = tmp_path / "my ckpt" / "abc" / "chk-4"
    argv = ["run", "fraud", "--topic", "t", "--from-savepoint=/old", "--resume", "--bootstrap", "h:1"]
    cmd = ops.resume_command(argv, chk, prog="streamscore")
    words = shlex.split(cmd)
    assert words[0] == "streamscore" and "--resume" not in words and "--from-savepoint=/old" not in words
    args = build_parser().parse_args(words[1:])
    assert args.from_savepoint == str(chk) and args.topic == "t" and args.bootstrap == "h:1"


def test_interrupted_line_names_the_checkpoint_and_the_command(tmp_path):
    from jobs.flinkenv import FlinkSettings
    from jobs.run import RunPlan, interrupted_line

    settings = FlinkSettings(checkpoint_dir=str(tmp_path))
    plan = RunPlan(env=None, settings=settings, detached=False, argv=["run", "fraud", "--topic", "t"])
    assert "before its first checkpoint" in interrupted_line(plan, "job1")
    chk = make_checkpoint(tmp_path, "job1", 3, 1000)
    line = interrupted_line(plan, "job1")
    assert "\n" not in line and str(chk) in line
    assert line.split("resume with: ", 1)[1].endswith(f"run fraud --topic t --from-savepoint {chk}")


# ------------------------------------------------------------------------------------ counts
def test_run_summary_checks_in_equals_decided_plus_dead_letters_plus_late(tmp_path):
    d = str(tmp_path)
    for op, counts in [("parse", {"accepted": 10, "dead_letter.malformed_json": 2, "dead_letter.too_large": 1}),
                       ("parse", {"accepted": 5}),  # a second parallel instance
                       ("dedup", {"duplicate": 1, "duplicate_id_conflict": 1}),
                       ("features", {"feature_rows": 12, "late": 1}),
                       ("score", {"decision.approve": 10, "decision.block": 2, "fallback": 2})]:
        c = RunCounts(d, op)
        for k, v in counts.items():
            c.inc(k, v)
        c.close()
    lines = ops.run_summary(read_counts(d))
    assert lines[0] == "counts: in 18 = decided 12 + dead letters 5 + late 1 (holds)"
    assert lines[1] == "  decided: approve 10, block 2 (fallback 2)"
    assert lines[2] == "  dead letters: malformed_json 2, duplicate 1, duplicate_id_conflict 1, too_large 1"
    assert ops.attempts_note(d, parallelism=2) is None
    assert "restarted attempts" in ops.attempts_note(d, parallelism=1)


def test_run_summary_says_when_the_invariant_does_not_hold():
    lines = ops.run_summary({"parse": {"accepted": 10}, "features": {"feature_rows": 10},
                             "score": {"decision.approve": 9}})
    assert "DOES NOT HOLD" in lines[0] and "-1" not in lines[0] and "+1" in lines[0]


def test_run_summary_without_scoring_counts_feature_rows():
    lines = ops.run_summary({"parse": {"accepted": 3}, "features": {"feature_rows": 3}})
    assert lines == ["counts: in 3 = feature rows 3 + dead letters 0 + late 0 (holds)"]


def test_backfill_summary_lists_outputs():
    lines = ops.backfill_summary({"parse": {"accepted": 4, "dead_letter.bad_timestamp": 1},
                                  "dedup": {"duplicate": 1}, "features": {"feature_rows": 3}},
                                 ["features parquet:/o", "dead letters json:/o-dl"])
    assert lines[0] == "counts: rows read 5, feature rows written 3, dead letters 2, late 0 (holds)"
    assert lines[-1] == "  outputs: features parquet:/o; dead letters json:/o-dl"


# ------------------------------------------------------------------------------ backfill outputs
def test_backfill_refuses_old_dead_letters_without_overwrite(capsys, tmp_path):
    from features.contracts import PAYMENT
    from features.synthetic import generate_payments, to_arrow
    import pyarrow.parquet as pq

    src = tmp_path / "in.parquet"
    pq.write_table(to_arrow(generate_payments(10, seed=1), PAYMENT), src)
    dl = tmp_path / "out-dead-letters"
    dl.mkdir()
    (dl / "part-abc-0-0").write_text("{}\n")
    rc = main(["backfill", "fraud", "--input", str(src), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "out-dead-letters is not empty" in err and "--overwrite" in err


def test_previous_part_files_are_only_flinks(tmp_path):
    from jobs.backfill import previous_part_files

    (tmp_path / "part-1-0-0").write_text("x")
    (tmp_path / ".part-2-0-0.inprogress.abc").write_text("x")
    (tmp_path / "README.txt").write_text("mine")
    assert [f.name for f in previous_part_files(tmp_path)] == [".part-2-0-0.inprogress.abc", "part-1-0-0"]
    assert previous_part_files(tmp_path / "absent") == []


# ------------------------------------------------------------------- ending a restored --until run
class FakeGroup:
    """Committed offsets of a consumer group, as kafka-python's KafkaConsumer.committed gives them."""

    def __init__(self, offsets):
        self.offsets = offsets

    def committed(self, tp):
        return self.offsets.get(tp.partition)

    def close(self):
        pass


def test_stop_watch_waits_for_two_checkpoints_then_the_committed_stops(tmp_path):
    w = ops.StopWatch("b:1", "t", "g", {0: 10, 1: 0}, str(tmp_path), poll_s=0)
    w._consumer = FakeGroup({0: 10})  # an earlier run's commit: not trusted before this job's commits
    make_checkpoint(tmp_path, "job", 5, 1000)
    assert not w.reached("job")
    make_checkpoint(tmp_path, "job", 6, 1001)
    assert w.reached("job")  # partition 1 has nothing to read (stop 0)
    w._consumer = FakeGroup({0: 9})
    assert not w.reached("job")


def test_stop_watch_reports_a_restored_bound_it_cannot_pass(tmp_path):
    w = ops.StopWatch("b:1", "t", "g", {0: 10}, str(tmp_path), poll_s=0, stall_s=0)
    w._consumer = FakeGroup({0: 4})
    for n in (1, 2):
        make_checkpoint(tmp_path, "job", n, 1000 + n)
    assert not w.reached("job")  # first look: offsets noted
    assert not w.reached("job")  # unchanged, but no further checkpoints completed (a slow job)
    for n in (3, 4, 5):
        make_checkpoint(tmp_path, "job", n, 1000 + n)
    with pytest.raises(ops.UntilUnreachable, match="t:0 at offset 4, before --until's 10"):
        w.reached("job")


# -- JAVA_HOME ---------------------------------------------------------------------------------
# Flink's config.sh exports JAVA_HOME="" when it was unset; PyFlink then runs "bin/java" relative to
# the working directory. A process started under Flink's scripts (a CI runner's, a job's) inherits it.

def test_an_empty_java_home_is_replaced_by_the_java_on_path(monkeypatch, tmp_path):
    import shutil

    from jobs.runtime import ensure_java_home

    fake = tmp_path / "jdk"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "java").write_text("#!/bin/sh\n")
    (fake / "bin" / "java").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake / "bin"))
    assert shutil.which("java") == str(fake / "bin" / "java")
    for bad in ("", "relative/jdk", str(tmp_path / "no-such-jdk")):
        monkeypatch.setenv("JAVA_HOME", bad)
        ensure_java_home()
        assert os.environ["JAVA_HOME"] == str(fake.resolve()), bad


def test_a_usable_java_home_is_kept_and_a_useless_one_without_java_removed(monkeypatch, tmp_path):
    from jobs.runtime import ensure_java_home

    good = tmp_path / "jdk"
    (good / "bin").mkdir(parents=True)
    (good / "bin" / "java").write_text("")
    monkeypatch.setenv("JAVA_HOME", str(good))
    ensure_java_home()
    assert os.environ["JAVA_HOME"] == str(good)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("JAVA_HOME", "")
    ensure_java_home()
    assert "JAVA_HOME" not in os.environ
