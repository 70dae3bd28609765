"""What a user relies on around a job, outside the graph: the broker pre-flight check, waiting for the
job so Ctrl-C becomes one line with the resume command, finding the newest retained checkpoint
(``--resume``), ending a restored ``--until`` run by itself, and the end-of-run counts summary.

Why a restored bounded run needs help (measured, and read in flink-connector-kafka 5.0.0): a split
restored from a savepoint/checkpoint keeps the stopping offset serialized by the run that took it
(KafkaPartitionSplitSerializer writes it; an unbounded run writes "none"), so the new ``--until`` is
ignored for every restored partition; and the restored bounded enumerator never sends
NoMoreSplits (FLINK-31006: ``checkPartitionChanges`` returns early on an empty change). So after a
restore the job runs unbounded: the parse operator drops records at or past the stop offsets
resolved here, and ``StopWatch`` stops the job with ``drain`` (the end-of-input watermark, like a
bounded run's end) once the job has committed offsets at the stops on every partition.
"""
from __future__ import annotations

import shlex
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from jobs.runtime import SetupError


# ------------------------------------------------------------------------------------- pre-flight
def check_brokers(bootstrap: str, timeout_s: float, client_kwargs: Optional[dict] = None) -> None:
    """A metadata request to ``bootstrap`` within ``timeout_s``, else SetupError (one line).

    Flink's own clients retry an absent broker for ever (60 s timeouts, a stack trace each), so
    the job is not even built until the broker answered.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    if timeout_s <= 0:
        raise ValueError(f"--kafka-timeout-s must be > 0, got {timeout_s}")
    t0 = time.monotonic()
    ms = max(int(timeout_s * 1000), 1)
    admin = None
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="streamscore-preflight",
                                 bootstrap_timeout_ms=ms, request_timeout_ms=ms, **(client_kwargs or {}))
        admin.list_topics()  # a metadata request: the broker answers, with these security settings
    except (KafkaError, OSError, ValueError) as e:
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise SetupError(f"no Kafka broker answered at {bootstrap} within {time.monotonic() - t0:.0f} s "
                         f"(--kafka-timeout-s {timeout_s:g}): {reason}; check --bootstrap and the "
                         f"broker (`streamscore kafka status`)") from None
    finally:
        if admin is not None:
            admin.close()


# ------------------------------------------------------------------------------------ checkpoints
def retained_checkpoints(checkpoint_dir: str) -> List[Path]:
    """Completed checkpoints under ``checkpoint_dir`` (``<dir>/<job-id>/chk-N/_metadata``), oldest first."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    found = []
    for meta in root.glob("*/chk-*/_metadata"):
        try:
            n = int(meta.parent.name.split("-", 1)[1])
            found.append((meta.stat().st_mtime, n, meta.parent))
        except (ValueError, OSError):  # not a checkpoint, or deleted (subsumed) while we looked
            continue
    return [p for _, _, p in sorted(found)]


def newest_checkpoint(checkpoint_dir: str, job_id: Optional[str] = None) -> Optional[Path]:
    chk = retained_checkpoints(checkpoint_dir)
    if job_id:
        chk = [p for p in chk if p.parent.name == job_id]
    return chk[-1] if chk else None


def checkpoints_of_job(checkpoint_dir: str, job_id: str) -> set:
    d = Path(checkpoint_dir) / job_id
    out = set()
    for meta in d.glob("chk-*/_metadata"):
        try:
            out.add(int(meta.parent.name.split("-", 1)[1]))
        except ValueError:
            continue
    return out


_RESTORE_FLAGS = ("-s", "--from-savepoint")


def resume_command(argv: Sequence[str], checkpoint: Path, prog: Optional[str] = None) -> str:
    """``argv`` (the CLI arguments after the program name) restoring from ``checkpoint`` instead of
    what it restored before.

    >>> resume_command(["run", "fraud", "--topic", "t", "-s", "old", "--resume"], Path("/c/chk-3"), "streamscore")
    'streamscore run fraud --topic t --from-savepoint /c/chk-3'
    """
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in _RESTORE_FLAGS:
            skip = True
            continue
        if a == "--resume" or a.startswith("--from-savepoint=") or (a.startswith("-s") and len(a) > 2):
            continue
        out.append(a)
    return shlex.join([*(shlex.split(prog) if prog else [program_name()]), *out,
                       "--from-savepoint", str(checkpoint)])


def program_name() -> str:
    """How the user can type this CLI again: `streamscore` when that is on PATH, else its path."""
    on_path = shutil.which("streamscore")
    me = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if on_path and me is not None and me.name == "streamscore" and Path(on_path).resolve() == me.resolve():
        return "streamscore"
    if me is not None and me.name == "streamscore":
        return str(me)
    exe = Path(sys.executable).parent / "streamscore"
    return str(exe) if exe.exists() else "streamscore"


# ---------------------------------------------------------------------- a restored --until run
def resolve_stops(bootstrap: str, topic: str, until, group_id: str, client_kwargs: Optional[dict] = None,
                  timeout_s: float = 30) -> Dict[int, int]:
    """``--until`` as explicit stop offsets per partition (exclusive), resolved now with kafka-python."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id if until.kind == "committed" else None,
                      enable_auto_commit=False, client_id="streamscore-until",
                      bootstrap_timeout_ms=int(timeout_s * 1000), **(client_kwargs or {}))
    try:
        parts = c.partitions_for_topic(topic)
        if not parts:
            raise ValueError(f"topic {topic} does not exist (needed to resolve --until)")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        end = c.end_offsets(tps)
        if until.kind == "latest":
            return {tp.partition: end[tp] for tp in tps}
        if until.kind == "timestamp":
            found = c.offsets_for_times({tp: until.timestamp_ms for tp in tps})
            return {tp.partition: (found[tp].offset if found.get(tp) else end[tp]) for tp in tps}
        if until.kind == "offsets":
            given = dict(until.offsets)
            return {tp.partition: min(given.get(tp.partition, 0), end[tp]) for tp in tps}
        if until.kind == "committed":
            out = {}
            for tp in tps:
                off = c.committed(tp)
                if off is None:
                    raise ValueError(f"--until committed: group {group_id} has no committed offset "
                                     f"for {topic}:{tp.partition}")
                out[tp.partition] = off
            return out
        raise ValueError(f"--until {until.kind} cannot be resolved")
    finally:
        c.close()


@dataclass
class StopWatch:
    """Ends a job restored with ``--until``: once its committed offsets (Flink commits its position
    after each completed checkpoint) reach ``stops`` on every partition, the job is stopped with
    drain, which runs the end of input (all event-time timers fire) exactly as a bounded run does.

    The group's committed offsets may come from another, earlier run; they count only after this
    job completed two checkpoints (its first commit has then landed). A checkpoint taken by a
    bounded run restores that run's stop offset into the split: the job then stops reading there,
    short of ``stops``; offsets that do not move for ``stall_s`` while checkpoints complete raise
    UntilUnreachable instead of waiting for ever.
    """

    bootstrap: str
    topic: str
    group_id: str
    stops: Dict[int, int]
    checkpoint_dir: str
    client_kwargs: dict = field(default_factory=dict)
    poll_s: float = 2.0
    stall_s: float = 90.0
    _consumer: object = None
    _next: float = 0.0
    _last: object = None  # (committed offsets, since when unchanged, newest checkpoint id then)

    def reached(self, job_id: str) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.poll_s
        done = checkpoints_of_job(self.checkpoint_dir, job_id)
        if len(done) < 2:
            return False
        from kafka import KafkaConsumer, TopicPartition

        if self._consumer is None:
            self._consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group_id,
                                           enable_auto_commit=False, client_id="streamscore-until-watch",
                                           **self.client_kwargs)
        committed = {p: self._consumer.committed(TopicPartition(self.topic, p)) for p in self.stops}
        short = {p: (committed[p], stop) for p, stop in self.stops.items()
                 if stop > 0 and (committed[p] or 0) < stop}
        if not short:
            return True
        newest = max(done)
        if self._last is None or self._last[0] != committed:
            self._last = (committed, now, newest)
        elif now - self._last[1] > self.stall_s and newest - self._last[2] >= 3:  # checkpoints went on
            p, (off, stop) = sorted(short.items())[0]
            raise UntilUnreachable(
                f"the restored job stopped reading {self.topic}:{p} at offset {off}, before --until's {stop} "
                f"(no progress for {self.stall_s:.0f} s): the checkpoint/savepoint was taken by a bounded run, "
                f"and a restored Kafka split keeps that run's stop offset; restore without --until, then stop it")
        return False

    def close(self):
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class UntilUnreachable(RuntimeError):
    pass


def stop_with_drain(client, directory: Path) -> None:
    """Stop-with-savepoint, draining (end of input). PyFlink 2.2's JobClient.stop_with_savepoint
    calls a Java signature that no longer exists (no savepoint format), so call the Java client."""
    from pyflink.java_gateway import get_gateway

    fmt = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
    client._j_job_client.stopWithSavepoint(True, directory.resolve().as_uri(), fmt).get()


# ------------------------------------------------------------------------------------ waiting
class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) while waiting for a job; the job has been cancelled."""

    def __init__(self, job_id: str):
        super().__init__(job_id)
        self.job_id = job_id


class BrokerLost(Interrupted):
    """The broker stopped answering for longer than allowed while the job ran; the job was cancelled."""

    def __init__(self, job_id: str, bootstrap: str, silent_s: float):
        super().__init__(job_id)
        self.bootstrap = bootstrap
        self.silent_s = silent_s


class BrokerWatch:
    """Asks the broker for metadata every ``every_s`` in a background thread while the job runs.

    Measured: with the broker gone mid-run, Flink's Kafka clients retry for ever and the job sits
    there printing nothing (the log fills with reconnect warnings and, every 60 s, the enumerator's
    admin-client timeouts); when the periodic partition discovery fails, the job restarts, which
    repeats. No Flink or Kafka option bounds the consumer's retrying. So the client gives up after
    ``lost_after_s`` without an answer: cancel, one line, resume command.
    """

    def __init__(self, bootstrap: str, lost_after_s: float, client_kwargs: Optional[dict] = None,
                 every_s: float = 10.0):
        import threading

        self.bootstrap = bootstrap
        self.lost_after_s = lost_after_s
        self.client_kwargs = dict(client_kwargs or {})
        self.every_s = max(0.5, min(every_s, lost_after_s / 4))  # several looks within the bound
        self.last_ok = time.monotonic()
        self.failing = False  # the latest look got no answer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="streamscore-broker-watch", daemon=True)

    def start(self) -> "BrokerWatch":
        self.last_ok = time.monotonic()  # the job is just submitted: the pre-flight check answered
        self._thread.start()
        return self

    def _loop(self):
        timeout = max(1.0, self.every_s)
        while not self._stop.wait(self.every_s):
            try:
                check_brokers(self.bootstrap, timeout, self.client_kwargs)
                self.last_ok, self.failing = time.monotonic(), False
            except SetupError:
                self.failing = True  # silent_s grows; wait_for decides

    def silent_s(self) -> float:
        return time.monotonic() - self.last_ok

    def lost(self) -> bool:
        return self.failing and self.silent_s() > self.lost_after_s

    def close(self):
        self._stop.set()


class _Signals:
    """While waiting, SIGINT/SIGTERM set a flag instead of raising KeyboardInterrupt somewhere inside
    a py4j call (which leaves the gateway connection half-read and prints tracebacks). The gateway
    JVM itself ignores SIGINT (pyflink_gateway_server.py starts it with SIG_IGN)."""

    def __init__(self):
        self.hit = 0
        self._old = {}

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        self.hit += 1

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def _cancel(j_client) -> None:
    try:
        j_client.cancel().get()
    except Exception:  # already finishing or failed: nothing more to stop
        pass


def wait_for(client, stop_watch: Optional[StopWatch] = None, drain_dir: Optional[Path] = None,
             poll_s: float = 0.2, broker_watch: Optional[BrokerWatch] = None):
    """Wait for ``client``'s job; returns its JobExecutionResult (Java errors raise as py4j errors).
    Raises Interrupted (after cancelling the job) on Ctrl-C, BrokerLost when ``broker_watch`` says so."""
    j_client = client._j_job_client
    job_id = str(j_client.getJobID().toString())
    future = j_client.getJobExecutionResult()
    drained = False
    if broker_watch is not None:
        broker_watch.start()
    try:
        with _Signals() as sig:
            while not future.isDone():
                if sig.hit:
                    _cancel(j_client)
                    raise Interrupted(job_id)
                if broker_watch is not None and broker_watch.lost():
                    _cancel(j_client)
                    raise BrokerLost(job_id, broker_watch.bootstrap, broker_watch.silent_s())
                try:
                    reached = stop_watch is not None and not drained and stop_watch.reached(job_id)
                except UntilUnreachable:
                    _cancel(j_client)
                    raise
                if reached:
                    drained = True
                    stop_watch.close()
                    stop_with_drain(client, drain_dir)
                time.sleep(poll_s)
    finally:
        if broker_watch is not None:
            broker_watch.close()
        if stop_watch is not None:
            stop_watch.close()
    if drain_dir is not None and drained:
        shutil.rmtree(drain_dir, ignore_errors=True)  # a drained savepoint is no place to resume from
    return future.get()


# ------------------------------------------------------------------------------------ counts
def _split(counts: dict, prefix: str) -> Dict[str, int]:
    return {k[len(prefix):]: v for k, v in counts.items() if k.startswith(prefix)}


def _fmt_kinds(kinds: Dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))


def run_summary(counts: dict) -> List[str]:
    """Lines for a streaming run's counts (udfs.counters.read_counts output).

    >>> for line in run_summary({"parse": {"accepted": 9, "dead_letter.malformed_json": 1},
    ...                          "dedup": {"duplicate": 1}, "features": {"feature_rows": 7, "late": 1},
    ...                          "score": {"decision.approve": 6, "decision.block": 1, "fallback": 0}}):
    ...     print(line)
    counts: in 10 = decided 7 + dead letters 2 + late 1 (holds)
      decided: approve 6, block 1 (fallback 0)
      dead letters: duplicate 1, malformed_json 1
    >>> run_summary({"parse": {"accepted": 5}, "features": {"feature_rows": 5},
    ...              "score": {"decision.alert": 2, "decision.normal": 3},
    ...              "alerts": {"incidents": 1, "alerts": 2, "tickets_opened": 1, "late": 1}})[-1]
    '  alerts: 2 in 1 incident(s); tickets opened 1, closed 0; 1 scored reading(s) too late for incidents (also in the late output)'
    """
    parse, dedup = counts.get("parse", {}), counts.get("dedup", {})
    feats, score = counts.get("features", {}), counts.get("score", {})
    dl = dict(_split(parse, "dead_letter."))
    for k, v in dedup.items():
        dl[k] = dl.get(k, 0) + v
    n_in = parse.get("accepted", 0) + sum(_split(parse, "dead_letter.").values())
    by_decision = _split(score, "decision.")
    if score:
        decided, what = sum(by_decision.values()), "decided"
    else:  # decisions not sunk (--decisions none): the feature rows are what was processed
        decided, what = feats.get("feature_rows", 0), "feature rows"
    late = feats.get("late", 0)
    total = decided + sum(dl.values()) + late
    check = "holds" if total == n_in else f"DOES NOT HOLD: {total} accounted for, {n_in - total:+d}"
    lines = [f"counts: in {n_in} = {what} {decided} + dead letters {sum(dl.values())} + late {late} ({check})"]
    if by_decision:
        lines.append(f"  decided: {_fmt_kinds(by_decision)} (fallback {score.get('fallback', 0)})")
    if dl:
        lines.append(f"  dead letters: {_fmt_kinds(dl)}")
    alerts = counts.get("alerts")
    if alerts:  # iot: the JVM incidents operator (features/alerts.py)
        line = (f"  alerts: {alerts.get('alerts', 0)} in {alerts.get('incidents', 0)} incident(s); tickets opened "
                f"{alerts.get('tickets_opened', 0)}, closed {alerts.get('tickets_closed', 0)}")
        if alerts.get("late"):
            # scored (counted above), but behind the alerts stage's watermark: their late rows are extra
            line += f"; {alerts['late']} scored reading(s) too late for incidents (also in the late output)"
        lines.append(line)
    return lines


def backfill_summary(counts: dict, outputs: Sequence[str]) -> List[str]:
    """Lines for a backfill's counts.

    >>> print("\\n".join(backfill_summary({"parse": {"accepted": 5, "dead_letter.too_large": 1},
    ...     "features": {"feature_rows": 5}}, ["features parquet:out"])))
    counts: rows read 6, feature rows written 5, dead letters 1, late 0 (holds)
      dead letters: too_large 1
      outputs: features parquet:out
    """
    parse, dedup, feats = counts.get("parse", {}), counts.get("dedup", {}), counts.get("features", {})
    dl = dict(_split(parse, "dead_letter."))
    for k, v in dedup.items():
        dl[k] = dl.get(k, 0) + v
    n_in = parse.get("accepted", 0) + sum(_split(parse, "dead_letter.").values())
    rows, late = feats.get("feature_rows", 0), feats.get("late", 0)
    total = rows + sum(dl.values()) + late
    check = "holds" if total == n_in else f"DOES NOT HOLD: {total} accounted for, {n_in - total:+d}"
    lines = [f"counts: rows read {n_in}, feature rows written {rows}, dead letters {sum(dl.values())}, "
             f"late {late} ({check})"]
    if dl:
        lines.append(f"  dead letters: {_fmt_kinds(dl)}")
    lines.append(f"  outputs: {'; '.join(outputs)}")
    return lines


def attempts_note(directory: str, parallelism: int) -> Optional[str]:
    """A restarted attempt writes its own counts file: say so when an operator wrote more files
    than it has parallel instances."""
    d = Path(directory)
    per_op: Dict[str, int] = {}
    for f in d.glob("*.json"):
        op = f.name.rsplit("-", 2)[0]
        per_op[op] = per_op.get(op, 0) + 1
    extra = {op: n for op, n in per_op.items() if n > parallelism}
    if not extra:
        return None
    return ("  note: counts include restarted attempts (files per operator: "
            + ", ".join(f"{op} {n}" for op, n in sorted(extra.items())) + f"; parallelism {parallelism})")


def new_counts_dir(root: Path) -> Path:
    """A fresh folder for one run's counts (``root/<UTC time>-<pid>``)."""
    import os

    d = root / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}"
    d.mkdir(parents=True, exist_ok=True)
    return d
