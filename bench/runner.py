"""Running one Flink job in its own process (``python -m bench --worker SPEC``) and what it measures;
the fraud and SQL job specs every section starts from."""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from bench.cpu import cpu_breakdown, GroupSampler, _load1, loadavg, pid_cpu_seconds
from bench.observe import checkpoint_history, dir_bytes, free_port, rest_snapshot, TopicWatch
from bench.progress import Progress
from bench.sql import velocity_sql
from bench.stats import per_second
from jobs.runtime import ROOT, SetupError


@dataclass
class Bench:
    """What every section shares: the broker, folders, options, progress."""

    bootstrap: str
    work: Path
    out: Path
    progress: Progress
    options: dict  # -D options for every Flink job
    state_backend: str = "rocksdb"
    broker_pid: Optional[int] = None
    quiet_load: float = 0.0  # wait for the 1-min load average to drop below this before a measurement
    quiet_wait_s: float = 0.0  # ... for at most this long (0: never wait)
    seq: int = 0
    topics: list = field(default_factory=list)

    def wait_quiet(self) -> dict:
        """Let other people's jobs finish before a measurement (a shared 2-core box): wait until the
        1-minute load average is below ``quiet_load``, at most ``quiet_wait_s``. Returns what happened."""
        t0 = time.monotonic()
        load = _load1()
        if self.quiet_wait_s <= 0 or load < self.quiet_load:
            return {"waited_s": 0.0, "load1": load}
        self.progress.info(f"load average {load:.2f} >= {self.quiet_load}: waiting up to {self.quiet_wait_s:.0f} s "
                           f"for the machine to calm down")
        while time.monotonic() - t0 < self.quiet_wait_s:
            time.sleep(5)
            load = _load1()
            if load < self.quiet_load:
                break
        waited = round(time.monotonic() - t0, 1)
        if load >= self.quiet_load:
            self.progress.info(f"still {load:.2f} after {waited:.0f} s: measuring anyway (flagged in the results)")
        return {"waited_s": waited, "load1": load}

    def name(self, stem: str) -> str:
        self.seq += 1
        return f"bench-{stem}-{os.getpid()}-{self.seq}"


class JobProcess:
    """A Flink job (the worker) in its own session, watched by a sampling thread."""

    def __init__(self, bench: Bench, label: str, spec: dict, out_topic: Optional[str] = None,
                 ckpt_dir: Optional[Path] = None, read_committed: bool = False, threads: bool = True,
                 rest: bool = True, sample_every: float = 0.5):
        self.bench, self.label, self.spec = bench, label, dict(spec)
        self.out_topic, self.ckpt_dir = out_topic, ckpt_dir
        self.read_committed, self.threads, self.sample_every = read_committed, threads, sample_every
        self.rest_port = free_port() if rest else None
        self.timeline: list = []  # (t since start, output records, rss bytes, checkpoint bytes or None)
        self.rest_last = None
        self.track_checkpoints = False
        self.checkpoints: list = []
        self.proc = None
        self.sampler = None
        self._stop = threading.Event()
        self._thread = None
        self.t_start = None
        self.loadavg_start = None

    def start(self, quiet: bool = True) -> "JobProcess":
        b = self.bench
        self.quiet = b.wait_quiet() if quiet else None
        logs = b.work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.label)
        self.result_path = logs / f"{slug}-{b.seq}.result.json"
        self.log_path = logs / f"{slug}-{b.seq}.log"
        self.result_path.unlink(missing_ok=True)
        spec = dict(self.spec, result=str(self.result_path))
        opts = dict(b.options)
        if self.rest_port:
            opts.update({"rest.port": str(self.rest_port), "rest.address": "127.0.0.1",
                         "rest.bind-address": "127.0.0.1"})
        opts.update(spec.get("options") or {})
        spec["options"] = opts
        spec_path = logs / f"{slug}-{b.seq}.spec.json"
        spec_path.write_text(json.dumps(spec, indent=1))
        self.loadavg_start = loadavg()
        self.t_start = time.time()
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "bench", "--worker", str(spec_path)],
                                     cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.sampler = GroupSampler(self.proc.pid)
        self.broker_cpu0 = pid_cpu_seconds(b.broker_pid) if b.broker_pid else None
        self.watch = TopicWatch(b.bootstrap, self.out_topic, self.read_committed) if self.out_topic else None
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        last_rest = 0.0
        while not self._stop.is_set():
            t = time.time() - self.t_start
            rss = self.sampler.sample(threads=self.threads)
            n = None
            if self.watch is not None:
                try:
                    n = self.watch.count()
                except Exception:
                    n = None
            ck = dir_bytes(self.ckpt_dir) if self.ckpt_dir and self.ckpt_dir.exists() else None
            self.timeline.append((round(t, 2), n, rss, ck))
            if self.rest_port and time.monotonic() - last_rest > 2.0:
                last_rest = time.monotonic()
                snap = rest_snapshot(self.rest_port)
                if snap is not None:
                    self.rest_last = snap
                if self.track_checkpoints:
                    hist = checkpoint_history(self.rest_port)
                    known = {c["trigger_s"] for c in self.checkpoints}
                    self.checkpoints += [c for c in hist if c["trigger_s"] not in known and c["status"] == "COMPLETED"]
            self._stop.wait(self.sample_every)

    @property
    def outputs(self) -> int:
        for _, n, _, _ in reversed(self.timeline):
            if n is not None:
                return n
        return 0

    def wait(self, expected: Optional[int] = None, timeout: Optional[float] = None, desc: str = "") -> dict:
        bar = self.bench.progress.bar(desc or self.label, expected, unit=" outputs")
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while self.proc.poll() is None:
                if deadline is not None and time.monotonic() > deadline:
                    self.kill()
                    raise SetupError(f"{self.label} did not finish within {timeout:.0f} s; see {self.log_path}")
                if self.watch is not None:
                    bar.set(self.outputs, f"{loadavg().split()[0]} load")
                time.sleep(0.5)
        finally:
            bar.close()
        return self.finish()

    def kill(self) -> None:
        """End the job: SIGTERM to its process group (ours), SIGKILL after 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # the JVM is in the same group; make sure nothing of ours is left
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def finish(self) -> dict:
        """Stop sampling and collect what we know about the run."""
        wall = time.time() - self.t_start
        self.sampler.sample(threads=self.threads)
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self._log.close()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftovers of a finished job (none expected)
        except (ProcessLookupError, PermissionError):
            pass
        res = {"label": self.label, "wall_s": round(wall, 2), "returncode": self.proc.returncode,
               "loadavg": f"{self.loadavg_start} → {loadavg()}", "log": str(self.log_path), "quiet": self.quiet}
        if self.result_path.exists():
            res.update(json.loads(self.result_path.read_text()))
        cpu = self.sampler.cpu_by_kind()
        res["cpu_s"] = round(self.sampler.cpu_total, 2)
        res["cpu_by_process"] = {k: round(v, 2) for k, v in cpu.items()}
        broker_cpu = None
        if self.broker_cpu0 is not None:
            now = pid_cpu_seconds(self.bench.broker_pid)
            if now is not None:
                broker_cpu = round(now - self.broker_cpu0, 2)
        res["broker_cpu_s"] = broker_cpu
        res["cpu_breakdown"] = cpu_breakdown(cpu, self.sampler.cpu_by_thread() if self.threads else {}, broker_cpu)
        rss = [r for _, _, r, _ in self.timeline if r]
        res["rss_peak_mb"] = round(max(rss) / 2**20, 1) if rss else None
        res["rest"] = self.rest_last
        res["timeline"] = self.timeline
        if self.track_checkpoints:
            res["checkpoints"] = [dict(c, t=round(c["trigger_s"] - self.t_start, 2)) for c in self.checkpoints]
        if self.watch is not None:
            try:
                first, last = self.watch.time_span()
                res["outputs"] = self.watch.count()
            except Exception as e:  # pragma: no cover
                first = last = None
                res["outputs_error"] = str(e)
            res["first_output_ms"], res["last_output_ms"] = first, last
            res["span_s"] = (last - first) / 1000 if first is not None and last is not None else None
            self.watch.close()
        if self.returncode_failed(res):
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
            res["error"] = res.get("error") or " / ".join(tail)[:500]
        return res

    def returncode_failed(self, res) -> bool:
        return res.get("returncode") not in (0, None, -signal.SIGTERM, -signal.SIGKILL) or "error" in res


def throughput_fields(res: dict, events: int) -> dict:
    """events/s by net runtime (primary), by output span and per CPU second; added to ``res``."""
    net = res.get("net_runtime_ms")
    res["events"] = events
    res["net_s"] = round(net / 1000, 2) if net else None
    res["events_per_s"] = _r(per_second(events, res["net_s"]))
    res["events_per_s_span"] = _r(per_second(events, res.get("span_s")))
    res["events_per_s_wall"] = _r(per_second(events, res.get("wall_s")))
    res["events_per_cpu_s"] = _r(per_second(events, res.get("cpu_s")))
    return res


def _r(v, digits: int = 1):
    return None if v is None else round(v, digits)


def fraud_argv(bench: Bench, topic: str, decisions: Optional[str], ckpt: Path, parallelism: int = 1,
               model: Optional[str] = None, until: Optional[str] = "latest", delivery: str = "at-least-once",
               extra: Sequence[str] = (), features_out: str = "none") -> list:
    argv = ["run", "fraud", "--topic", topic, "--bootstrap", bench.bootstrap,
            "--decisions", f"kafka:{decisions}" if decisions else "none", "--features-out", features_out,
            "--dead-letters", "none", "--late", "none", "--delivery", delivery,
            "--group-id", f"bench-{topic}", "--checkpoint-dir", str(ckpt), "-p", str(parallelism),
            "--state-backend", bench.state_backend,
            # the generated streams are clean, but a small run spread over days has gaps of hours
            # in event time, which the default 1 h jump guard would dead-letter as time_skew
            "--max-jump-ms", str(7 * 86_400_000)]
    if until:
        argv += ["--until", until]
    if model:
        argv += ["--model", model]
    return argv + list(extra)


def run_fraud(bench: Bench, topic: str, events: int, label: str, parallelism: int = 1, model=None,
              extra: Sequence[str] = (), features_only: bool = False, sample_ckpt: bool = False) -> dict:
    out = bench.name(label)
    bench.topics.append(out)
    ckpt = bench.work / "ckpt" / out
    if features_only:
        argv = fraud_argv(bench, topic, None, ckpt, parallelism, model, extra=extra, features_out=f"kafka:{out}")
    else:
        argv = fraud_argv(bench, topic, out, ckpt, parallelism, model, extra=extra)
    job = JobProcess(bench, label, {"kind": "cli", "argv": argv,
                                    "options": {"web.checkpoints.history": "1000"} if sample_ckpt else {}},
                     out_topic=out, ckpt_dir=ckpt if sample_ckpt else None)
    job.track_checkpoints = sample_ckpt
    job.start()
    res = throughput_fields(job.wait(expected=events, desc=label), events)
    res["command"] = "streamscore " + " ".join(shlex.quote(a) for a in argv + _dflags(job.spec))
    _cleanup_dir(ckpt, keep=sample_ckpt)
    _check_run(res, events, label)
    return res


def run_sql(bench: Bench, topic: str, events: int, label: str, parallelism: int = 1,
            sample_ckpt: bool = False) -> dict:
    out = bench.name(label)
    bench.topics.append(out)
    ckpt = bench.work / "ckpt" / out
    spec = {"kind": "sql", "bootstrap": bench.bootstrap, "topic": topic, "out_topic": out,
            "parallelism": parallelism, "checkpoint_dir": str(ckpt), "state_backend": bench.state_backend,
            "group_id": f"bench-sql-{out}"}
    if sample_ckpt:
        spec["options"] = {"web.checkpoints.history": "1000"}
    job = JobProcess(bench, label, spec, out_topic=out, ckpt_dir=ckpt if sample_ckpt else None)
    job.track_checkpoints = sample_ckpt
    job.start()
    res = throughput_fields(job.wait(expected=events, desc=label), events)
    res["sql"] = velocity_sql(spec)[-1]
    _cleanup_dir(ckpt, keep=sample_ckpt)
    _check_run(res, events, label)
    return res


def _dflags(spec: dict) -> list:
    out = []
    for k, v in (spec.get("options") or {}).items():
        if not k.startswith(("rest.", "web.")):
            out += ["-D", f"{k}={v}"]
    return out


def _check_run(res: dict, events: int, label: str) -> None:
    if res.get("error"):
        raise SetupError(f"{label} failed: {res['error']} (log {res.get('log')})")
    if res.get("outputs") is not None and res["outputs"] < events:
        res["warning"] = f"only {res['outputs']:,} of {events:,} outputs"


def _cleanup_dir(path: Path, keep: bool = False) -> None:
    import shutil

    if not keep and path.exists():
        shutil.rmtree(path, ignore_errors=True)
