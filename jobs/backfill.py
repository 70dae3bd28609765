"""`streamscore backfill <pipeline> --input PARQUET --out DIR`: the streaming job's outcomes over historical
Parquet, written as feature rows (plus labels when present) and dead letters.

Two engines, one declaration and one set of outcomes: ``pandas`` (the default; features.backfill,
vectorized, no JVM) and ``flink`` (the streaming job's own operators in Flink BATCH mode; the
default with --cluster)."""
from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

from jobs.run import (DOMAINS, RunPlan, add_flink_args, add_stream_args, attach_plan, execute,
                      flink_settings, load_feature_set, parquet_columns, stream_config)
from jobs.runtime import RUN_DIR

ENGINES = ("pandas", "flink")
ROWS_PER_GROUP = 131_072


def add_parser(sub) -> None:
    p = sub.add_parser("backfill", help="compute features over historical Parquet (pandas, or Flink BATCH mode)",
                       description=__doc__)
    p.add_argument("domain", choices=DOMAINS)
    p.add_argument("--input", required=True, metavar="PARQUET", help="a Parquet file or a folder of them")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder of Parquet part files")
    p.add_argument("--dead-letters", default=None, metavar="SINK",
                   help="where refused rows go (default: json:<out>/../<name>-dead-letters)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the previous run's outputs: --out and the dead-letter files (json:/parquet:)")
    p.add_argument("--engine", choices=ENGINES, default=None,
                   help="pandas: vectorized, no JVM (-p N: N processes for the features); flink: the job's "
                        "operators in Flink BATCH mode (default: pandas, flink with --cluster)")
    add_stream_args(p)
    add_flink_args(p)
    p.set_defaults(func=backfill)


def backfill(args) -> int:
    engine = args.engine or ("flink" if args.cluster else "pandas")
    if engine == "pandas" and args.cluster:
        raise ValueError("--engine pandas runs in this process; --cluster needs --engine flink")
    cols, with_labels, out, dl, dl_dir = prepare_outputs(args, engine)
    if engine == "pandas":
        return backfill_pandas(args, cols, with_labels, out, dl)
    return backfill_flink(args, cols, with_labels, out, dl)


def prepare_outputs(args, engine: str):
    """Check the input and the output folders (the same refusals for both engines); with --overwrite,
    remove the previous run's outputs. Returns (input columns, labels?, out, dead-letter sink, its folder)."""
    import shutil

    from jobs.io import SinkSpec

    cols = parquet_columns(args.input)
    contract = load_feature_set(args.domain).contract
    missing = [c for c in contract.field_names if c not in cols]
    if missing:
        raise ValueError(f"{args.input} lacks {contract.name} columns {missing}")
    with_labels = all(lbl in cols for lbl in contract.label_names)
    out = Path(args.out)
    dl = SinkSpec.parse(args.dead_letters or f"json:{out.parent / (out.name + '-dead-letters')}")
    if engine == "pandas" and dl.kind == "kafka":
        raise ValueError("--engine pandas writes dead letters to json:, parquet:, print or none; "
                         "for kafka: use --engine flink")
    dl_dir = Path(dl.target) if dl.kind in ("json", "parquet") else None
    if dl_dir is not None and dl_dir.resolve() == out.resolve():
        raise ValueError("--dead-letters must not be the --out folder")
    old_dl = previous_part_files(dl_dir) if dl_dir is not None else []
    if (out.exists() and any(out.iterdir())) or old_dl:
        if not args.overwrite:
            raise ValueError(f"{out if out.exists() and any(out.iterdir()) else dl_dir} is not empty "
                             f"(use --overwrite to replace the previous run's outputs)")
        if out.exists():
            shutil.rmtree(out)
        for f in old_dl:  # only part files: a user's --dead-letters folder may hold other things
            f.unlink()
    return cols, with_labels, out, dl, dl_dir


def backfill_flink(args, cols, with_labels, out, dl) -> int:
    from jobs import ops
    from jobs.flinkenv import make_env
    from jobs.graph import JobConfig, attach_outputs
    from jobs.io import ParquetSource, SinkSpec
    from jobs.pipeline import source_columns
    from jobs.run import load_job

    d = args.domain
    job = load_job(d)
    contract = job.feature_set.contract
    settings = flink_settings(args, batch=True, job=f"{d}-backfill")
    counts_dir = str(ops.new_counts_dir(RUN_DIR / f"{d}-backfill" / "counts"))
    cfg = JobConfig(stream=stream_config(args, with_labels=with_labels, counts_dir=counts_dir), score=False)
    env, t_env = make_env(settings)
    source = ParquetSource(args.input, source_columns(contract, with_labels, raw="_raw" in cols))
    rows = t_env.to_data_stream(source.table(t_env))
    built = job.build(rows, t_env, cfg, kafka=False, source=source.name, batch=True)
    built = {k: built.get(k) for k in ("features", "dead_letters")}
    specs = {"features": SinkSpec("parquet", str(out)), "dead_letters": dl}
    attach_outputs(t_env, job, built, specs, None, with_labels=with_labels).attach_as_datastream()
    print(f"streamscore backfill {d}: {args.input} -> {out} (BATCH, labels {'kept' if with_labels else 'absent'},"
          f" dead letters {dl.kind}:{dl.target})", flush=True)
    name = f"streamscore-{d}-backfill"
    attach_plan(RunPlan(env, settings, False, name=name, counts_dir=counts_dir,
                        argv=getattr(args, "argv", None), summary="backfill",
                        outputs=(f"features parquet:{out}", f"dead letters {dl.kind}:{dl.target}")))
    return execute(env, name)


def backfill_pandas(args, cols, with_labels, out, dl) -> int:
    """features.backfill over the whole input in this process; the same outputs and summary as Flink's."""
    from features.backfill import counts_of, prepare_events
    from features.intake import DAY_MS
    from jobs import ops
    from jobs.progress import PROGRESS_FROM, Progress

    check_options(args)
    fs = load_feature_set(args.domain)
    name = f"streamscore-{args.domain}-backfill"
    print(f"streamscore backfill {args.domain}: {args.input} -> {out} (pandas engine, labels "
          f"{'kept' if with_labels else 'absent'}, dead letters {dl.kind}:{dl.target})", flush=True)
    t0 = time.time()
    names = [c for c in [*fs.contract.field_names, *fs.contract.label_names, "_raw"]
             if c in cols and (with_labels or c not in fs.contract.label_names)]
    files = input_files(args.input)
    n_rows = sum(_num_rows(f) for f in files)
    bar = Progress(n_rows >= PROGRESS_FROM, f"backfill: {n_rows:,} rows")
    stages = {"read": (0, 10), "validate": (10, 25), "features": (25, 85), "write": (85, 100)}

    def progress(stage: str, fraction: float) -> None:
        lo, hi = stages.get(stage, (0, 100))
        bar.stage(stage, fraction, lo, hi)

    try:
        table = read_input(files, fs.contract, names, progress)
        now = int(time.time() * 1000)
        events, dead = prepare_events(fs, table, now_ms=now, max_future_ms=DAY_MS,  # StreamConfig's
                                      dedup_horizon_ms=args.dedup_horizon_ms, max_record_bytes=args.max_record_bytes,
                                      max_amount=args.max_amount, with_labels=with_labels,
                                      source=f"parquet:{args.input}", progress=progress)
        del table
        n_features = features_to_parquet(fs, events, out, with_labels, now, args.parallelism, progress)
        write_dead_letters(dead, dl)
    except KeyboardInterrupt:
        bar.close()
        sys.stderr.write(f"{name}: interrupted; a backfill keeps no checkpoints, run it again (--overwrite)\n")
        return 130
    finally:
        bar.close()
    print(f"{name} finished in {time.time() - t0:.1f} s (pandas engine)", flush=True)
    lines = ops.backfill_summary(counts_of(n_features, [d[0] for d in dead]),
                                 (f"features parquet:{out}", f"dead letters {dl.kind}:{dl.target}"))
    print("\n".join(lines), flush=True)
    return 0


def check_options(args) -> None:
    """The option checks of jobs.pipeline.StreamConfig that a pandas backfill uses (same messages)."""
    if args.dedup_horizon_ms < 0:
        raise ValueError("dedup_horizon_ms must be >= 0 (0 turns de-duplication off)")
    if not args.max_amount > 0:
        raise ValueError("max_amount must be > 0")
    if args.max_record_bytes < 1024:
        raise ValueError("max_record_bytes must be at least 1024")


def input_files(path: str) -> list:
    """The Parquet files of ``path`` (a file, or a folder read recursively; hidden and ``_`` files skipped)."""
    p = Path(path)
    if p.is_file():
        return [p]
    return sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith((".", "_")))


def _num_rows(f: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(f).metadata.num_rows


def read_input(files: list, contract, names: list, progress=None):
    """One pyarrow Table of ``names`` over every file, each column checked against the contract's type."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from features.backfill import as_table

    tables = []
    for i, f in enumerate(files):
        t = pq.read_table(f, columns=[n for n in names if n in pq.read_schema(f).names])
        try:
            tables.append(as_table(t, contract, names))
        except ValueError as e:
            raise ValueError(f"{f}: {e}") from None
        if progress:
            progress("read", (i + 1) / len(files))
    return pa.concat_tables(tables) if len(tables) != 1 else tables[0]


_FORKED = None  # what the forked feature workers share (features_to_parquet)


def features_to_parquet(fs, events, out: Path, with_labels: bool, ingest_ms: int, workers: int,
                        progress=None) -> int:
    """The feature rows of ``events`` as Parquet part files in ``out``; returns how many rows.

    ``workers`` > 1: the keys are split into that many parts (features.backfill.split_by_key), each
    computed and written by a forked process (-p: the box's other core), one part file each."""
    import multiprocessing

    from features.backfill import features_table, split_by_key

    global _FORKED
    parts = split_by_key(events, fs.key, workers)
    if len(parts) == 1:
        if progress:
            progress("features", 0.0)
        table = features_table(fs, events, with_labels=with_labels, ingest_ms=ingest_ms)
        if progress:
            progress("features", 1.0)
        write_features(table, out, progress)
        return table.num_rows
    _FORKED = (fs, parts, out, with_labels, ingest_ms)
    try:
        with multiprocessing.get_context("fork").Pool(len(parts)) as pool:  # children inherit _FORKED
            rows = pool.map(_features_part, range(len(parts)))
    finally:
        _FORKED = None
    if progress:
        progress("write", 1.0)
    return sum(rows)


def _features_part(i: int) -> int:
    from features.backfill import features_table

    fs, parts, out, with_labels, ingest_ms = _FORKED
    table = features_table(fs, parts[i], with_labels=with_labels, ingest_ms=ingest_ms)
    write_features(table, out, task=i)
    return table.num_rows


def _part_name(task: int) -> str:
    return f"part-{uuid.uuid4()}-task-{task}-file-0"


def _write_atomic(directory: Path, write, task: int = 0) -> Path:
    """Write a part file under a hidden name, then rename it (a reader never sees half a file)."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / _part_name(task)
    tmp = directory / f".{final.name}.inprogress"
    try:
        write(tmp)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    return final


def write_features(table, out: Path, progress=None, task: int = 0) -> None:
    """The feature rows as one Parquet part file in ``out`` (row groups of ROWS_PER_GROUP)."""
    import pyarrow.parquet as pq

    # dictionary pages where values repeat (keys, counts, flags, labels), not for ids, times and
    # amounts: writing takes about half the time
    repeat = [f.name for f in table.schema
              if f.name not in ("event_id", "event_time") and f.type in ("bool", "string", "int64")]

    def write(path):
        with pq.ParquetWriter(path, table.schema, use_dictionary=repeat) as w:
            for off in range(0, max(table.num_rows, 1), ROWS_PER_GROUP):
                w.write_table(table.slice(off, ROWS_PER_GROUP))
                if progress:
                    progress("write", min(1.0, (off + ROWS_PER_GROUP) / max(table.num_rows, 1)))
    out.mkdir(parents=True, exist_ok=True)
    if table.num_rows:
        _write_atomic(out, write, task)


def write_dead_letters(dead, spec) -> None:
    """Dead letters to json:DIR (one JSON object a line, as Flink's json format), parquet:DIR, print or none."""
    import json

    if spec.kind == "none" or len(dead) == 0:
        if spec.kind in ("json", "parquet"):
            Path(spec.target).mkdir(parents=True, exist_ok=True)
        return
    from features.backfill import REJECT_NAMES

    records = [dict(zip(REJECT_NAMES, r)) for r in dead]
    if spec.kind == "print":
        for r in records:
            print(json.dumps(r, ensure_ascii=False, separators=(",", ":")))
        return
    if spec.kind == "json":
        text = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)
        _write_atomic(Path(spec.target), lambda p: Path(p).write_text(text, encoding="utf-8"))
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("reason", pa.string()), ("detail", pa.string()), ("raw", pa.string()),
                        ("raw_encoding", pa.string()), ("raw_size", pa.int64()), ("raw_sha256", pa.string()),
                        ("source", pa.string()), ("src_partition", pa.int32()), ("src_offset", pa.int64()),
                        ("ingest_ms", pa.int64())])
    table = pa.Table.from_pylist(records, schema=schema)
    _write_atomic(Path(spec.target), lambda p: pq.write_table(table, p))


def previous_part_files(directory: Path) -> list:
    """Files a Flink filesystem sink wrote into ``directory`` (``part-*``, in-progress ``.part-*``)."""
    if not directory.is_dir():
        return []
    return sorted(f for f in directory.rglob("*") if f.is_file() and f.name.lstrip(".").startswith("part-"))
