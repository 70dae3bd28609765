"""Issue 8, backfill target: `streamscore backfill fraud --engine pandas` vs tests.reference.fraud_reference, same
script, same file, runs interleaved, read + compute + write both.

    flock /tmp/streamscore-it.lock .venv/bin/python bench/spikes/backfill_pandas_engine.py [EVENTS] [RUNS]

The data is the bench's (bench/data.py: 20,000 cards, 7 days, seed 8). The engine runs in this process
through the CLI's main (imports already loaded, as the reference's are) with -p 1 and -p 2 (two
threads for the features), and once as a subprocess (interpreter start-up and imports included).
Every run's feature rows are checked against the reference (bench.stats.compare_features).
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.data import payments_frame, write_payments  # noqa: E402
from bench.stats import compare_features  # noqa: E402
from tests.reference.fraud_reference import INPUT_COLUMNS, reference_features  # noqa: E402
from streamscore.cli import main  # noqa: E402


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the -p 2 workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def engine(data: Path, out: Path, p: int, cpu: list) -> float:
    for d in (out, out.parent / (out.name + "-dead-letters")):
        shutil.rmtree(d, ignore_errors=True)
    c0, t0 = _cpu(), time.perf_counter()
    rc = main(["backfill", "fraud", "--engine", "pandas", "--input", str(data), "--out", str(out), "-p", str(p)])
    secs = time.perf_counter() - t0
    cpu.append(round(_cpu() - c0, 2))
    assert rc == 0
    return secs


def reference(data: Path, out: Path, cpu: list):
    c0, t0 = _cpu(), time.perf_counter()
    df = pq.read_table(data, columns=list(INPUT_COLUMNS)).to_pandas()
    ref = reference_features(df)
    pq.write_table(pa.Table.from_pandas(ref, preserve_index=False), out)
    secs = time.perf_counter() - t0
    cpu.append(round(_cpu() - c0, 2))
    return secs, ref


def check(out: Path, ref) -> dict:
    got = pa.concat_tables([pq.read_table(f) for f in sorted(out.iterdir())]).to_pandas()  # every part file
    c = compare_features(got, ref)
    return {"agree": c["agree"], "compared": c["compared"], "mismatches": {k: v for k, v in c["mismatches"].items() if v}}


def run(n: int, runs: int) -> dict:
    work = Path("/tmp/streamscore-backfill-bench")
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"payments-{n}.parquet"
    write_payments(payments_frame(n, 20_000, 7.0, 8), data)
    res = {"events": n, "runs": runs, "pandas_p1": [], "pandas_p2": [], "reference": [], "checks": [],
           "cpu_pandas_p1": [], "cpu_pandas_p2": [], "cpu_reference": [], "loadavg": [os.getloadavg()]}
    engine(data, work / "out-p1", 1, [])  # warm-up, untimed: first calls import and compile what they use
    reference(data, work / "reference.parquet", [])
    for _ in range(runs):
        res["pandas_p1"].append(engine(data, work / "out-p1", 1, res["cpu_pandas_p1"]))
        secs, ref = reference(data, work / "reference.parquet", res["cpu_reference"])
        res["reference"].append(secs)
        res["pandas_p2"].append(engine(data, work / "out-p2", 2, res["cpu_pandas_p2"]))
        res["checks"].append({"p1": check(work / "out-p1", ref), "p2": check(work / "out-p2", ref)})
        res["loadavg"].append(os.getloadavg())
    # features.execute.execute alone (no I/O, no intake) over the same events, 3 runs
    from features.execute import execute
    from features.fraud import FRAUD_FEATURES

    ev = pq.read_table(data, columns=list(FRAUD_FEATURES.contract.field_names)).to_pandas()
    res["execute"] = []
    for _ in range(3):
        t0 = time.perf_counter()
        execute(FRAUD_FEATURES, ev)
        res["execute"].append(round(time.perf_counter() - t0, 2))
    del ev
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "streamscore.cli", "backfill", "fraud", "--input", str(data), "--out",
                    str(work / "out-sub"), "--overwrite"], check=True, stdout=subprocess.DEVNULL)
    res["subprocess_p1_wall"] = time.perf_counter() - t0
    for k in ("pandas_p1", "pandas_p2", "reference"):
        res[k + "_median"] = statistics.median(res[k])
        res[k + "_rows_per_s"] = n / res[k + "_median"]
    res["ratio_p1"] = res["pandas_p1_rows_per_s"] / res["reference_rows_per_s"]
    res["ratio_p2"] = res["pandas_p2_rows_per_s"] / res["reference_rows_per_s"]
    shutil.rmtree(work, ignore_errors=True)
    return res


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    print(json.dumps(run(n, runs), indent=1))
