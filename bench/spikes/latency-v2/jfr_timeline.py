"""Issue 8 spike: JFR (jfr print --json, slimmed) -> per-thread blocking timeline of the fraud job's task threads.

    .venv/bin/python bench/spikes/latency-v2/jfr_timeline.py TRACE_DIR JFR_FILE
Writes TRACE_DIR/jfr-slim.pickle: (type, start s, duration s, thread, top frames, state, name).
"""
import datetime, json, pickle, subprocess, sys
from pathlib import Path


def dur(s):
    if not s:
        return 0.0
    s, tot, num = s[2:], 0.0, ""
    for ch in s:
        if ch in "HMS":
            tot += float(num) * {"H": 3600, "M": 60, "S": 1}[ch]
            num = ""
        else:
            num += ch
    return tot


def ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def slim(trace: Path, jfr: str) -> list:
    out = trace / "jfr-slim.pickle"
    if out.exists():
        return pickle.loads(out.read_bytes())
    events = ("jdk.ThreadPark,jdk.JavaMonitorWait,jdk.JavaMonitorEnter,jdk.SocketRead,jdk.SocketWrite,jdk.ExecutionSample,"
              "jdk.NativeMethodSample,jdk.GarbageCollection,jdk.SafepointBegin,jdk.ExecuteVMOperation,jdk.ThreadSleep")
    raw = subprocess.run(["jfr", "print", "--json", "--stack-depth", "40", "--events", events, jfr], capture_output=True, text=True).stdout
    res = []
    for e in json.loads(raw)["recording"]["events"]:
        v = e["values"]
        t = v.get("eventThread") or v.get("sampledThread") or {}
        st = v.get("stackTrace") or {}
        fr = [f["method"]["type"]["name"].split("/")[-1] + "." + f["method"]["name"] for f in (st.get("frames") or [])[:40]]
        if v.get("startTime"):
            res.append((e["type"], ts(v["startTime"]), dur(v.get("duration")), t.get("javaName") or t.get("osName"), fr,
                        v.get("state"), v.get("name") or v.get("operation")))
    out.write_bytes(pickle.dumps(res))
    return res


if __name__ == "__main__":
    slim(Path(sys.argv[1]), sys.argv[2])
