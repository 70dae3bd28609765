"""`streamscore backfill fraud --input PARQUET --out DIR`: the streaming job's own operators in
Flink BATCH mode over historical Parquet, writing the feature rows (plus labels when present)."""
from __future__ import annotations

from pathlib import Path

from jobs.run import (RunPlan, add_flink_args, add_stream_args, attach_plan, execute, flink_settings,
                      parquet_columns, stream_config)
from jobs.runtime import RUN_DIR

DOMAINS = ("fraud",)


def add_parser(sub) -> None:
    p = sub.add_parser("backfill", help="compute features over historical Parquet (Flink BATCH mode)",
                       description=__doc__)
    p.add_argument("domain", choices=DOMAINS)
    p.add_argument("--input", required=True, metavar="PARQUET", help="a Parquet file or a folder of them")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder of Parquet part files")
    p.add_argument("--dead-letters", default=None, metavar="SINK",
                   help="where refused rows go (default: json:<out>/../<name>-dead-letters)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the previous run's outputs: --out and the dead-letter files (json:/parquet:)")
    add_stream_args(p)
    add_flink_args(p)
    p.set_defaults(func=backfill)


def backfill(args) -> int:
    import shutil

    from jobs import fraud, ops
    from jobs.flinkenv import make_env
    from jobs.io import ParquetSource, SinkSpec
    from jobs.pipeline import source_columns

    cols = parquet_columns(args.input)
    contract = fraud.FS.contract
    missing = [c for c in contract.field_names if c not in cols]
    if missing:
        raise ValueError(f"{args.input} lacks payment columns {missing}")
    with_labels = all(lbl in cols for lbl in contract.label_names)
    out = Path(args.out)
    dl = SinkSpec.parse(args.dead_letters or f"json:{out.parent / (out.name + '-dead-letters')}")
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
        for f in old_dl:  # only Flink's part files: a user's --dead-letters folder may hold other things
            f.unlink()
    settings = flink_settings(args, batch=True, job="fraud-backfill")
    counts_dir = str(ops.new_counts_dir(RUN_DIR / "fraud-backfill" / "counts"))
    cfg = fraud.FraudJobConfig(stream=stream_config(args, with_labels=with_labels, counts_dir=counts_dir),
                               score=False)
    env, t_env = make_env(settings)
    source = ParquetSource(args.input, source_columns(contract, with_labels, raw="_raw" in cols))
    rows = t_env.to_data_stream(source.table(t_env))
    outputs = fraud.build(rows, t_env, cfg, kafka=False, source=source.name, batch=True)
    sinks = fraud.FraudSinks(features=SinkSpec("parquet", str(out)), dead_letters=dl)
    fraud.attach_sinks(t_env, outputs, sinks, with_labels=with_labels).attach_as_datastream()
    print(f"streamscore backfill fraud: {args.input} -> {out} (BATCH, labels {'kept' if with_labels else 'absent'},"
          f" dead letters {dl.kind}:{dl.target})", flush=True)
    attach_plan(RunPlan(env, settings, False, name="streamscore-fraud-backfill", counts_dir=counts_dir,
                        argv=getattr(args, "argv", None), summary="backfill",
                        outputs=(f"features parquet:{out}", f"dead letters {dl.kind}:{dl.target}")))
    return execute(env, "streamscore-fraud-backfill")


def previous_part_files(directory: Path) -> list:
    """Files a Flink filesystem sink wrote into ``directory`` (``part-*``, in-progress ``.part-*``)."""
    if not directory.is_dir():
        return []
    return sorted(f for f in directory.rglob("*") if f.is_file() and f.name.lstrip(".").startswith("part-"))
