"""Watching a running job from outside: output topic offsets, the REST API, checkpoint folder size."""
from __future__ import annotations

import json
import math
import os
import socket
import time
from pathlib import Path
from typing import Optional


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


class TopicWatch:
    """Record counts (end offsets) and first/last record timestamps of a topic (kafka-python)."""

    def __init__(self, bootstrap: str, topic: str, read_committed: bool = False):
        from kafka import KafkaConsumer

        self.topic = topic
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      client_id="streamscore-bench-watch",
                                      isolation_level="read_committed" if read_committed else "read_uncommitted")
        self._parts = None

    def partitions(self):
        from kafka import TopicPartition

        if not self._parts:
            ps = self.consumer.partitions_for_topic(self.topic) or set()
            self._parts = [TopicPartition(self.topic, p) for p in sorted(ps)]
        return self._parts

    def count(self) -> int:
        parts = self.partitions()
        if not parts:
            self._parts = None
            return 0
        return int(sum(self.consumer.end_offsets(parts).values()))

    def time_span(self) -> tuple:
        """(first, last) record timestamps in ms over all partitions; (None, None) if empty."""
        parts = self.partitions()
        if not parts:
            return None, None
        ends = self.consumer.end_offsets(parts)
        begins = self.consumer.beginning_offsets(parts)
        first, last = None, None
        for tp in parts:
            if ends[tp] <= begins[tp]:
                continue
            self.consumer.assign([tp])
            self.consumer.seek(tp, begins[tp])
            r = self._poll_some(tp)
            if r:
                first = r[0].timestamp if first is None else min(first, r[0].timestamp)
            # the last offsets may be transaction markers: read a short tail, take the newest record
            self.consumer.seek(tp, max(begins[tp], ends[tp] - 20))
            tail = self._poll_some(tp, until=ends[tp])
            if tail:
                ts = max(m.timestamp for m in tail)
                last = ts if last is None else max(last, ts)
        return first, last

    def _poll_some(self, tp, until: Optional[int] = None, timeout_s: float = 10.0) -> list:
        got = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = self.consumer.poll(timeout_ms=500, max_records=50)
            got += batch.get(tp, [])
            if got and (until is None or got[-1].offset >= until - 1 or not batch):
                break
        return got

    def close(self) -> None:
        self.consumer.close()


def _rest_get(port: int, path: str, timeout: float = 2.0):
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return json.loads(r.read().decode())


def rest_snapshot(port: int) -> Optional[dict]:
    """Job id, start time and per-vertex accumulated busy/back-pressured/idle ms of the running job."""
    try:
        jobs = _rest_get(port, "/jobs/overview").get("jobs", [])
        running = [j for j in jobs if j.get("state") == "RUNNING"]
        if not running:
            return None
        jid = running[0]["jid"]
        job = _rest_get(port, f"/jobs/{jid}")
        out = {"jid": jid, "start_time_ms": job.get("start-time"), "now_ms": job.get("now"), "vertices": []}
        names = ("accumulateBusyTimeMs", "accumulateBackPressuredTimeMs", "accumulateIdleTimeMs")
        for v in job.get("vertices", []):
            ms = _rest_get(port, f"/jobs/{jid}/vertices/{v['id']}/subtasks/metrics?get={','.join(names)}")
            vals = {m["id"]: float(m.get("sum", 0.0)) for m in ms}
            vals = {k: (0.0 if math.isnan(v) else v) for k, v in vals.items()}  # not reported yet
            out["vertices"].append({"name": v["name"], "parallelism": v.get("parallelism"),
                                    "busy_ms": vals.get(names[0], 0.0), "backpressured_ms": vals.get(names[1], 0.0),
                                    "idle_ms": vals.get(names[2], 0.0),
                                    "records_in": (v.get("metrics") or {}).get("read-records")})
        return out
    except Exception:  # the job may be starting or finishing: try again next time
        return None


def operator_shares(snapshot: Optional[dict]) -> list:
    """Per vertex busy/back-pressured/idle percentages from a REST snapshot.

    >>> operator_shares({"vertices": [{"name": "a", "busy_ms": 30.0, "backpressured_ms": 60.0, "idle_ms": 10.0}]})
    [{'name': 'a', 'busy_pct': 30.0, 'backpressured_pct': 60.0, 'idle_pct': 10.0}]
    """
    out = []
    for v in (snapshot or {}).get("vertices", []):
        total = v["busy_ms"] + v["backpressured_ms"] + v["idle_ms"]
        if total <= 0:
            continue
        out.append({"name": v["name"], "busy_pct": round(100 * v["busy_ms"] / total, 1),
                    "backpressured_pct": round(100 * v["backpressured_ms"] / total, 1),
                    "idle_pct": round(100 * v["idle_ms"] / total, 1)})
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def checkpoint_history(port: Optional[int]) -> list:
    """Trigger time (s), end-to-end duration and size of the running job's recent checkpoints (REST)."""
    if not port:
        return []
    try:
        jobs = _rest_get(port, "/jobs/overview").get("jobs", [])
        running = [j for j in jobs if j.get("state") == "RUNNING"]
        if not running:
            return []
        hist = _rest_get(port, f"/jobs/{running[0]['jid']}/checkpoints").get("history", [])
    except Exception:
        return []
    return sorted(({"trigger_s": h.get("trigger_timestamp", 0) / 1000, "duration_ms": h.get("end_to_end_duration"),
                    "state_bytes": h.get("state_size"), "persisted_bytes": h.get("checkpointed_size"),
                    "status": h.get("status")}
                   for h in hist), key=lambda c: c["trigger_s"])
