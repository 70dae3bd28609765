"""CPU accounting from /proc: per process and JVM thread of a job's process group, grouped into buckets."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional


def cpu_breakdown(proc_cpu: dict, thread_cpu: dict, broker_cpu: Optional[float] = None, top: int = 8) -> list:
    """Group CPU seconds into readable buckets: JVM task threads by name, JIT, GC, other JVM,
    Python UDF workers, the job's Python client, the broker. Returns [(label, seconds)], largest first.

    >>> cpu_breakdown({"java": 10.0, "python-udf": 2.0, "python": 1.0},
    ...               {"fraud_card_feat": 5.0, "C2 CompilerThre": 2.0, "GC Thread#0": 1.0})
    [('JVM thread fraud_card_feat', 5.0), ('JVM JIT compiler', 2.0), ('JVM other', 2.0), ('Python UDF worker (process mode)', 2.0), ('JVM GC', 1.0), ('job client (python)', 1.0)]
    """
    buckets: dict = {}
    java_threads = 0.0
    for name, secs in thread_cpu.items():
        java_threads += secs
        if "Compiler" in name:
            key = "JVM JIT compiler"
        elif name.startswith(("GC ", "G1 ")):
            key = "JVM GC"
        else:
            key = f"JVM thread {name}"
        buckets[key] = buckets.get(key, 0.0) + secs
    named = sorted(((k, v) for k, v in buckets.items() if k.startswith("JVM thread")), key=lambda kv: -kv[1])
    keep = dict(named[:top])
    other = sum(v for k, v in named[top:])
    out = dict(keep)
    for k in ("JVM JIT compiler", "JVM GC"):
        if k in buckets:
            out[k] = buckets[k]
    java_total = proc_cpu.get("java", 0.0)
    out["JVM other"] = other + max(0.0, java_total - java_threads)
    if proc_cpu.get("python-udf"):
        out["Python UDF worker (process mode)"] = proc_cpu["python-udf"]
    if proc_cpu.get("python"):
        out["job client (python)"] = proc_cpu["python"]
    if broker_cpu:
        out["Kafka broker"] = broker_cpu
    return sorted(((k, round(v, 3)) for k, v in out.items() if v > 0), key=lambda kv: -kv[1])


_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _read_stat(path: str):
    """(comm, fields after the command) of a /proc stat file, or None."""
    try:
        with open(path, "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    lp, rp = data.find("("), data.rfind(")")
    if lp < 0 or rp < 0:
        return None
    return data[lp + 1:rp], data[rp + 2:].split()


def _proc_kind(pid: int, comm: str) -> str:
    if comm == "java":
        return "java"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        cmd = b""
    if b"beam_boot" in cmd or b"pyflink.fn_execution" in cmd:
        return "python-udf"
    if comm.startswith("python") or b"python" in cmd[:200]:
        return "python"
    return "other"


def _load1() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):  # pragma: no cover
        return 0.0


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:  # pragma: no cover
        return "?"


def pid_cpu_seconds(pid: int) -> Optional[float]:
    st = _read_stat(f"/proc/{pid}/stat")
    if st is None:
        return None
    f = st[1]
    return (int(f[11]) + int(f[12])) / _CLK


class GroupSampler:
    """Samples a process group (a job we started in its own session): RSS, CPU per process
    and per JVM thread. CPU counters are cumulative; the last value seen per pid/tid is kept."""

    def __init__(self, pgid: int):
        self.pgid = pgid
        self.proc_cpu: dict = {}  # (pid, starttime) -> (kind, seconds)
        self.thread_cpu: dict = {}  # (pid, tid) -> (comm, seconds)
        self.rss_bytes = 0

    def sample(self, threads: bool = True) -> int:
        rss = 0
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            st = _read_stat(f"/proc/{d}/stat")
            if st is None:
                continue
            comm, f = st
            try:
                if int(f[2]) != self.pgid:
                    continue
                pid = int(d)
                cpu = (int(f[11]) + int(f[12])) / _CLK
                rss += int(f[21]) * _PAGE
                key = (pid, f[19])
            except (IndexError, ValueError):
                continue
            kind = self.proc_cpu.get(key, (None,))[0] or _proc_kind(pid, comm)
            self.proc_cpu[key] = (kind, cpu)
            if threads and kind == "java":
                try:
                    tids = os.listdir(f"/proc/{d}/task")
                except OSError:
                    continue
                for tid in tids:
                    ts = _read_stat(f"/proc/{d}/task/{tid}/stat")
                    if ts is None:
                        continue
                    try:
                        self.thread_cpu[(pid, int(tid))] = (ts[0], (int(ts[1][11]) + int(ts[1][12])) / _CLK)
                    except (IndexError, ValueError):
                        continue
        self.rss_bytes = rss
        return rss

    def cpu_by_kind(self) -> dict:
        out: dict = {}
        for kind, secs in self.proc_cpu.values():
            out[kind] = out.get(kind, 0.0) + secs
        return out

    def cpu_by_thread(self) -> dict:
        out: dict = {}
        for comm, secs in self.thread_cpu.values():
            out[comm] = out.get(comm, 0.0) + secs
        return out

    @property
    def cpu_total(self) -> float:
        return sum(s for _, s in self.proc_cpu.values())
