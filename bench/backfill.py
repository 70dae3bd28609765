"""Backfill section: ``streamscore backfill fraud`` (Flink BATCH) vs the pandas reference."""
from __future__ import annotations

import shlex
import time

from bench.cpu import loadavg
from bench.data import payments_frame, write_payments
from bench.report import fmt_num
from bench.runner import Bench, _cleanup_dir, _dflags, JobProcess, _r
from bench.stats import compare_features, per_second, ratio
from jobs.runtime import SetupError


def section_backfill(bench: Bench, args) -> dict:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from features.fraud_reference import INPUT_COLUMNS, reference_features

    p = bench.progress
    n = args.backfill_events
    p.step(f"backfill: generate {n:,} payments ({args.cards:,} cards, {args.days} days) into Parquet")
    data = bench.work / "data" / f"backfill-{n}-{args.seed}.parquet"
    write_payments(payments_frame(n, args.cards, args.days, args.seed + 1), data)
    out = bench.work / "backfill-out"
    p.step(f"backfill: streamscore backfill fraud (Flink BATCH) over {n:,} events")
    argv = ["backfill", "fraud", "--input", str(data), "--out", str(out), "--overwrite",
            "--state-backend", bench.state_backend]
    job = JobProcess(bench, "backfill", {"kind": "cli", "argv": argv}).start()
    bar = p.bar("backfill (Flink BATCH)", None)
    while job.proc.poll() is None:
        bar.set(0, f"(output written at the end), load {loadavg().split()[0]}")
        time.sleep(1)
    bar.close()
    flink = job.finish()
    if flink.get("error"):
        raise SetupError(f"backfill failed: {flink['error']} (log {flink['log']})")
    net = flink.get("net_runtime_ms")
    flink["net_s"] = round(net / 1000, 2) if net else None
    flink["rows_per_s"] = _r(per_second(n, flink["net_s"]))
    flink["rows_per_s_wall"] = _r(per_second(n, flink["wall_s"]))
    flink["command"] = "streamscore " + " ".join(shlex.quote(a) for a in argv + _dflags(job.spec))
    p.info(f"Flink BATCH backfill: {fmt_num(flink['rows_per_s'])} rows/s (net {fmt_num(flink['net_s'], 1)} s, "
           f"wall {fmt_num(flink['wall_s'], 1)} s, CPU {fmt_num(flink['cpu_s'], 1)} s)")

    p.step(f"backfill: pandas reference (read Parquet + reference_features + write Parquet) over {n:,} events")
    ref_path = bench.work / "backfill-reference.parquet"
    quiet = bench.wait_quiet()
    c0, t0 = time.process_time(), time.perf_counter()
    df = pq.read_table(data, columns=list(INPUT_COLUMNS)).to_pandas()
    ref = reference_features(df)
    pq.write_table(pa.Table.from_pandas(ref, preserve_index=False), ref_path)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    reference = {"seconds": round(secs, 2), "cpu_s": round(cpu, 2), "rows_per_s": _r(per_second(n, secs)),
                 "loadavg": loadavg(), "quiet": quiet}
    p.info(f"pandas reference: {fmt_num(reference['rows_per_s'])} rows/s ({secs:.1f} s)")

    p.step("backfill: compare the two outputs value by value")
    files = sorted(f for f in out.rglob("*") if f.is_file() and not f.name.startswith((".", "_")))
    got = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True) if files else pd.DataFrame()
    check = compare_features(got, ref) if len(got) else {"agree": False, "error": "no backfill output",
                                                          "mismatches": {}, "compared": 0,
                                                          "missing_in_flink": n, "extra_in_flink": 0}
    p.info(f"agree: {check['agree']} ({check.get('compared', 0):,} rows compared; mismatches "
           f"{ {k: v for k, v in check['mismatches'].items() if v} or 'none'})")
    del got, ref, df
    data.unlink(missing_ok=True)
    ref_path.unlink(missing_ok=True)
    _cleanup_dir(out)
    _cleanup_dir(out.parent / (out.name + "-dead-letters"))
    return {"events": n, "cards": args.cards, "flink": flink, "reference": reference, "check": check,
            "ratio": ratio(flink["rows_per_s"], reference["rows_per_s"])}
