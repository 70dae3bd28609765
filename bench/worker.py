"""The worker: one Flink job per process (``python -m bench --worker SPEC.json``)."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from bench.sql import loader_sql, velocity_sql


def _timed_execute_factory(result_path: str):
    def timed_execute(env, name: str, detached: bool = False) -> int:
        from jobs.run import root_cause

        t0 = time.time()
        try:
            result = env.execute(name)
        except Exception as e:
            _write_json(result_path, {"error": root_cause(e), "execute_s": round(time.time() - t0, 2)})
            sys.stderr.write(f"{name} failed: {root_cause(e)}\n")
            return 1
        t1 = time.time()
        net = result.get_net_runtime()
        _write_json(result_path, {"execute_s": round(t1 - t0, 2), "net_runtime_ms": int(net),
                                  "job_id": str(result.get_job_id()), "execute_start": t0, "execute_end": t1})
        print(f"{name} finished in {t1 - t0:.1f} s, net runtime {net / 1000:.1f} s", flush=True)
        return 0

    return timed_execute


def _write_json(path: str, obj: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def _worker(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    timed = _timed_execute_factory(spec["result"])
    kind = spec["kind"]
    if kind == "cli":
        import jobs.backfill
        import jobs.run
        from streamscore.cli import main

        jobs.run.execute = timed  # run() and backfill() call these by name: time the job itself
        jobs.backfill.execute = timed
        argv = list(spec["argv"])
        for k, v in (spec.get("options") or {}).items():
            argv += ["-D", f"{k}={v}"]
        return main(argv)
    if kind in ("sql", "load"):
        from jobs.flinkenv import FlinkSettings, make_env

        settings = FlinkSettings(parallelism=spec.get("parallelism", 1), checkpoint_dir=spec.get("checkpoint_dir"),
                                 state_backend=spec.get("state_backend", "rocksdb"), extra=spec.get("options") or {})
        env, t_env = make_env(settings)
        statements = velocity_sql(spec) if kind == "sql" else loader_sql(spec)
        for ddl in statements[:-1]:
            t_env.execute_sql(ddl)
        ss = t_env.create_statement_set()
        ss.add_insert_sql(statements[-1])
        ss.attach_as_datastream()
        print(f"bench {kind} job: {spec.get('topic') or spec.get('input')} -> {spec.get('out_topic') or spec.get('topic')}",
              flush=True)
        return timed(env, f"bench-{kind}")
    raise ValueError(f"unknown worker kind {kind!r}")
