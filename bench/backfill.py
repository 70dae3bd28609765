"""Backfill section: ``streamscore backfill fraud`` with both engines (pandas, Flink BATCH) vs the pandas
reference, each output checked value by value against the reference."""
from __future__ import annotations

import shlex
import time

from bench.cpu import loadavg
from bench.data import payments_frame, write_payments
from bench.report import fmt_num
from bench.runner import Bench, _cleanup_dir, _dflags, JobProcess, _r
from bench.stats import compare_features, per_second, ratio
from jobs.runtime import SetupError


def _read_parts(out):
    import pandas as pd
    import pyarrow.parquet as pq

    files = sorted(f for f in out.rglob("*") if f.is_file() and not f.name.startswith((".", "_")))
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True) if files else pd.DataFrame()


def _check(out, ref, n: int) -> dict:
    got = _read_parts(out)
    if not len(got):
        return {"agree": False, "error": "no backfill output", "mismatches": {}, "compared": 0,
                "missing_in_flink": n, "extra_in_flink": 0}
    return compare_features(got, ref)


def run_pandas_engine(bench: Bench, data, out, n: int) -> dict:
    """``streamscore backfill fraud --engine pandas`` in this process (as the reference runs: read,
    compute and write, no interpreter start-up), timed by wall clock and CPU."""
    import pyarrow.parquet as pq

    from streamscore.cli import main

    # warm-up on 1,000 rows, untimed: the first call imports and sets up what the engine uses (the
    # reference is timed warm too)
    warm = data.with_name("backfill-warmup.parquet")
    pq.write_table(pq.read_table(data).slice(0, 1000), warm)
    main(["backfill", "fraud", "--input", str(warm), "--out", str(out), "--overwrite", "--engine", "pandas",
          "--dead-letters", "none"])
    warm.unlink()
    argv = ["backfill", "fraud", "--input", str(data), "--out", str(out), "--overwrite", "--engine", "pandas"]
    quiet = bench.wait_quiet()
    c0, t0 = time.process_time(), time.perf_counter()
    rc = main(argv)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    if rc != 0:
        raise SetupError(f"streamscore backfill fraud --engine pandas failed (exit {rc})")
    return {"seconds": round(secs, 2), "cpu_s": round(cpu, 2), "rows_per_s": _r(per_second(n, secs)),
            "loadavg": loadavg(), "quiet": quiet, "command": "streamscore " + " ".join(shlex.quote(a) for a in argv)}


def section_backfill(bench: Bench, args) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.reference.fraud_reference import INPUT_COLUMNS, reference_features

    p = bench.progress
    n = args.backfill_events
    p.step(f"backfill: generate {n:,} payments ({args.cards:,} cards, {args.days} days) into Parquet")
    data = bench.work / "data" / f"backfill-{n}-{args.seed}.parquet"
    write_payments(payments_frame(n, args.cards, args.days, args.seed + 1), data)
    out = bench.work / "backfill-out"
    out_pd = bench.work / "backfill-pandas-out"

    p.step(f"backfill: streamscore backfill fraud --engine pandas over {n:,} events (in this process)")
    pandas_run = run_pandas_engine(bench, data, out_pd, n)
    p.info(f"pandas engine: {fmt_num(pandas_run['rows_per_s'])} rows/s ({pandas_run['seconds']:.1f} s, "
           f"CPU {pandas_run['cpu_s']:.1f} s)")

    p.step(f"backfill: streamscore backfill fraud --engine flink (Flink BATCH) over {n:,} events")
    argv = ["backfill", "fraud", "--input", str(data), "--out", str(out), "--overwrite", "--engine", "flink",
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

    p.step("backfill: compare both engines' outputs with the reference value by value")
    check, check_pd = _check(out, ref, n), _check(out_pd, ref, n)
    for name, c in (("Flink BATCH", check), ("pandas engine", check_pd)):
        p.info(f"{name} agrees: {c['agree']} ({c.get('compared', 0):,} rows compared; mismatches "
               f"{ {k: v for k, v in c['mismatches'].items() if v} or 'none'})")
    del ref, df
    data.unlink(missing_ok=True)
    ref_path.unlink(missing_ok=True)
    for d in (out, out_pd):
        _cleanup_dir(d)
        _cleanup_dir(d.parent / (d.name + "-dead-letters"))
    return {"events": n, "cards": args.cards, "flink": flink, "pandas": pandas_run, "reference": reference,
            "check": check, "check_pandas": check_pd,
            "ratio": ratio(flink["rows_per_s"], reference["rows_per_s"]),
            "ratio_pandas": ratio(pandas_run["rows_per_s"], reference["rows_per_s"])}
