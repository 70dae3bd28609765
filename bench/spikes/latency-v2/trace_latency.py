"""Issue 8 spike: `streamscore bench --sections latency` with tracing of the fraud job (not part of the bench).

    flock /tmp/streamscore-it.lock .venv/bin/python bench/spikes/latency-v2/trace_latency.py TRACE_DIR \
        [--jfr] [--gclog] [--pyspy] [--jstack HZ] -- <streamscore bench arguments>

Runs the unchanged bench CLI in this process and, on the side:
* keeps the raw per-event data (event_id -> send wall time; consumer rows: event_id, arrival, ingest_ms,
  decide_ms) as TRACE_DIR/<run>-sent.pickle / <run>-rows.pickle (the bench deletes its copy);
* samples /proc at 20 Hz: per-thread CPU ticks and state of the job's JVM, Python UDF worker(s), the
  broker and this process' children (thread-samples.jsonl);
* optionally: JFR (profile settings, started with jcmd, dumped after each measured phase), a GC +
  safepoint log via JVM_ARGS, py-spy (chrometrace, 100 Hz, --idle, --nonblocking) on the UDF worker,
  `jcmd Thread.print` at HZ during the measured phases.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
VENV_BIN = ROOT / ".venv" / "bin"


def _children() -> dict:
    """pid -> (ppid, comm, cmdline) of every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        rp = stat.rfind(")")
        ppid = int(stat[rp + 2:].split()[1])
        out[int(d)] = (ppid, stat[stat.find("(") + 1:rp], cmd)
    return out


def _descendants(root: int, procs: dict) -> list:
    kids, todo = [], [root]
    while todo:
        p = todo.pop()
        for pid, (ppid, _, _) in procs.items():
            if ppid == p:
                kids.append(pid)
                todo.append(pid)
    return kids


class Tracer:
    def __init__(self, out: Path, opts: dict):
        self.out, self.opts = out, opts
        self.stop = threading.Event()
        self.jvms: dict = {}  # pid -> info
        self.workers: dict = {}
        self.measuring = threading.Event()
        self.lock = threading.Lock()
        self.samples = open(out / "thread-samples.jsonl", "w")
        self.pyspy: list = []

    # --- discovery -------------------------------------------------------------------------
    def roles(self) -> dict:
        procs = _children()
        me = os.getpid()
        roles = {}
        for pid in _descendants(me, procs):
            ppid, comm, cmd = procs[pid]
            if comm == "java" and "GatewayServer" in cmd or ("java" in comm and "pyflink" in cmd and "Gateway" in cmd):
                roles[pid] = "jvm"
            elif comm == "java" and "kafka.Kafka" in cmd:
                roles[pid] = "broker"
            elif comm == "java":
                roles[pid] = "java-other"
            elif "python" in comm or "python" in cmd.split(" ")[0]:
                if "beam" in cmd or "fn_execution" in cmd or "pyflink-udf" in cmd:
                    roles[pid] = "udf"
                elif "--worker" in cmd:
                    roles[pid] = "job-client"
                elif "multiprocessing" in cmd:
                    roles[pid] = "consumer"
                else:
                    roles[pid] = "python:" + cmd[:60]
            else:
                roles[pid] = comm
        return roles

    def loop(self) -> None:
        last_roles = 0.0
        roles: dict = {}
        while not self.stop.is_set():
            now = time.time()
            if now - last_roles > 1.0:
                roles = self.roles()
                last_roles = now
                for pid, r in roles.items():
                    if r == "jvm" and pid not in self.jvms:
                        self.jvms[pid] = {"seen": now}
                        self._start_jvm(pid)
                    if r == "job-client" and pid not in self.workers:
                        self.workers[pid] = {"seen": now}
                        self._start_pyspy(pid)
            rec = {"t": round(now, 3), "load": Path("/proc/loadavg").read_text().split()[:3],
                   "cpu": Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8], "procs": {}}
            for pid, r in list(roles.items()) + [(os.getpid(), "driver")]:
                if r.startswith("python:") or r in ("java-other", "sh", "bash"):
                    continue
                if r not in ("jvm", "job-client"):
                    try:
                        s = Path(f"/proc/{pid}/stat").read_text()
                        f = s[s.rfind(")") + 2:].split()
                        rec["procs"][str(pid)] = {"role": r, "threads": {"all": [r, f[0], int(f[11]) + int(f[12])]}}
                    except OSError:
                        pass
                    continue
                th = {}
                try:
                    for tid in os.listdir(f"/proc/{pid}/task"):
                        try:
                            s = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
                        except OSError:
                            continue
                        rp = s.rfind(")")
                        f = s[rp + 2:].split()
                        th[tid] = [s[s.find("(") + 1:rp], f[0], int(f[11]) + int(f[12])]
                except OSError:
                    continue
                rec["procs"][str(pid)] = {"role": r, "threads": th}
            self.samples.write(json.dumps(rec) + "\n")
            self.stop.wait(0.05)

    def _start_jvm(self, pid: int) -> None:
        if self.opts.get("jfr"):
            time.sleep(0.5)
            r = subprocess.run(["jcmd", str(pid), "JFR.start", "name=trace", "settings=profile",
                                f"filename={self.out}/jvm-{pid}.jfr", "dumponexit=true"],
                               capture_output=True, text=True)
            self.jvms[pid]["jfr"] = (r.stdout + r.stderr).strip()[-300:]

    def dump_jfr(self, tag: str) -> None:
        if not self.opts.get("jfr"):
            return
        for pid in list(self.jvms):
            subprocess.run(["jcmd", str(pid), "JFR.dump", "name=trace", f"filename={self.out}/jvm-{pid}-{tag}.jfr"],
                           capture_output=True, text=True)

    def _start_pyspy(self, pid: int) -> None:
        if not self.opts.get("pyspy"):
            return
        log = open(self.out / f"pyspy-{pid}.log", "w")
        t0 = time.time()
        p = subprocess.Popen([str(VENV_BIN / "py-spy"), "record", "--pid", str(pid), "--rate", "100", "--idle",
                              "--nonblocking", "--format", "chrometrace", "-o", str(self.out / f"pyspy-{pid}.json")],
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.workers[pid]["pyspy_start"] = t0
        self.pyspy.append(p)

    def jstack_loop(self, hz: float) -> None:
        f = open(self.out / "jstack.txt", "w")
        while not self.stop.is_set():
            if not self.measuring.is_set() or not self.jvms:
                time.sleep(0.05)
                continue
            pid = max(self.jvms)
            t0 = time.time()
            r = subprocess.run(["jcmd", str(pid), "Thread.print"], capture_output=True, text=True)
            t1 = time.time()
            f.write(f"=== {t0:.3f} {t1:.3f} pid {pid}\n{r.stdout}\n")
            time.sleep(max(0.0, 1.0 / hz - (t1 - t0)))
        f.close()


def main() -> int:
    args = sys.argv[1:]
    sep = args.index("--")
    mine, bench_args = args[:sep], args[sep + 1:]
    out = Path(mine[0])
    out.mkdir(parents=True, exist_ok=True)
    opts = {"jfr": "--jfr" in mine, "pyspy": "--pyspy" in mine, "gclog": "--gclog" in mine}
    jstack_hz = float(mine[mine.index("--jstack") + 1]) if "--jstack" in mine else 0.0
    if opts["gclog"]:
        os.environ["JVM_ARGS"] = (os.environ.get("JVM_ARGS", "") +
                                  f" -Xlog:gc*,safepoint:file={out}/gc-%p.log:time,uptime,tid").strip()
    os.environ["LAT_TRACE_DIR"] = str(out.resolve())
    os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent / "site"),
                                                *filter(None, [os.environ.get("PYTHONPATH")])])
    tracer = Tracer(out, opts)

    import bench.latency as lat

    class TracedProducer(lat.PacedProducer):
        seq = 0

        def run(self, rate, seconds, prefix, stop_when=None):
            measured = prefix.startswith("r")
            if measured:
                tracer.measuring.set()
                t0 = time.time()
            res = super().run(rate, seconds, prefix, stop_when)
            if measured:
                time.sleep(3)  # let the phase drain into the recording
                tracer.measuring.clear()
                with tracer.lock:
                    (out / "phases.jsonl").open("a").write(json.dumps(
                        {"prefix": prefix, "rate": rate, "t0": t0, "t1": time.time(), **res}) + "\n")
                tracer.dump_jfr(f"{TracedProducer.seq}-{prefix}")
            return res

        def close(self):
            TracedProducer.seq += 1
            tag = f"run{TracedProducer.seq}"
            (out / f"{tag}-sent.pickle").write_bytes(pickle.dumps(self.sent))
            logs = Path(os.environ.get("TRACE_WORK", str(ROOT / ".run" / "bench"))) / "logs"
            for p in logs.glob("*.pickle"):
                shutil.copy(p, out / f"{tag}-rows.pickle")
            super().close()

    lat.PacedProducer = TracedProducer
    threads = [threading.Thread(target=tracer.loop, daemon=True)]
    if jstack_hz:
        threads.append(threading.Thread(target=tracer.jstack_loop, args=(jstack_hz,), daemon=True))
    for t in threads:
        t.start()
    from streamscore.cli import main as cli_main

    try:
        rc = cli_main(list(bench_args))
    finally:
        tracer.stop.set()
        for t in threads:
            t.join(5)
        tracer.samples.close()
        for p in tracer.pyspy:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.terminate()
        (out / "tracer.json").write_text(json.dumps({"jvms": tracer.jvms, "workers": tracer.workers}, indent=1,
                                                    default=str))
    return rc


if __name__ == "__main__":
    sys.exit(main())
