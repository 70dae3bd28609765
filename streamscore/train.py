"""`streamscore train fraud|iot`: train a model from backfilled feature rows (Parquet).

    streamscore train fraud --features out/features --model-dir models/fraud [--seed 0] [--no-promote]
    streamscore train iot --features out/iot-features --model-dir models/iot [--anomaly-rate 0.014]

``--features`` is a Parquet file or a folder of part files (hidden and ``_``-prefixed files,
such as Flink's in-progress parts and ``_SUCCESS``, are skipped). Every file's schema metadata
must name the fraud feature set with the current definition hash (files without the metadata
are accepted with a warning when their columns match), and the fraud rows need the ``is_fraud`` label
(iot rows need no label: the iot model, training/iot.py, is fitted without labels).
The new version is promoted (the registry's ``current`` file) unless ``--no-promote``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model from backfilled feature rows",
                              description="Train a model from backfilled feature rows.")
    domains = p.add_subparsers(dest="domain", metavar="DOMAIN")
    domains.required = True
    f = domains.add_parser("fraud", help="the fraud risk model (IsolationForest + gradient boosting)",
                           description="Train the fraud risk model from backfilled feature rows (Parquet), "
                                       "register it under --model-dir and, unless --no-promote, promote it.")
    f.add_argument("--features", required=True, metavar="PARQUET",
                   help="feature rows with is_fraud: a Parquet file or a folder of part files")
    f.add_argument("--model-dir", required=True, metavar="DIR", help="model registry directory (vNNNN/ + current)")
    f.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    f.add_argument("--no-promote", action="store_true", help="register the version without promoting it")
    f.add_argument("--quiet", action="store_true", help="no progress lines")
    f.set_defaults(func=run_fraud)
    i = domains.add_parser("iot", help="the iot anomaly model (global tail ranks of scale-free features, no labels)",
                           description="Train the iot anomaly model from backfilled iot feature rows (Parquet; "
                                       "labels, if any, are ignored), register it under --model-dir and, "
                                       "unless --no-promote, promote it.")
    i.add_argument("--features", required=True, metavar="PARQUET",
                   help="iot feature rows: a Parquet file or a folder of part files")
    i.add_argument("--model-dir", required=True, metavar="DIR", help="model registry directory (vNNNN/ + current)")
    i.add_argument("--anomaly-rate", type=_rate, default=None, metavar="R",
                   help="share of training readings called anomalous; sets the threshold (default 0.014, "
                        "training.iot.ANOMALY_RATE)")
    i.add_argument("--no-promote", action="store_true", help="register the version without promoting it")
    i.add_argument("--quiet", action="store_true", help="no progress lines")
    i.set_defaults(func=run_iot)


def _rate(text: str) -> float:
    import argparse

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < v < 0.5:
        raise argparse.ArgumentTypeError(f"must be between 0 and 0.5 (exclusive), got {text}")
    return v


def parquet_files(path: Path) -> list:
    if path.is_file():
        return [path]
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    files = sorted(p for p in path.rglob("*")
                   if p.is_file() and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts))
    if not files:
        raise ValueError(f"{path} holds no Parquet part files")
    return files


def check_schema(files: list, feature_set, label: str) -> None:
    """Each file's metadata and columns against ``feature_set``; ValueError naming the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    expected = feature_set.arrow_schema()
    unstamped = []
    for f in files:
        try:
            schema = pq.read_schema(f)
        except (pa.ArrowInvalid, OSError) as e:
            raise ValueError(f"{f} is not a readable Parquet file: {e}") from None
        meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
        if "definition_hash" in meta:
            if meta.get("feature_set") != feature_set.name:
                raise ValueError(f"{f} holds feature set {meta.get('feature_set')!r}, not {feature_set.name!r}")
            if meta["definition_hash"] != feature_set.definition_hash:
                raise ValueError(
                    f"{f} was computed with feature definition {meta['definition_hash']} "
                    f"(version {meta.get('version', '?')}), but {feature_set.name} is now "
                    f"{feature_set.definition_hash} (version {feature_set.version}); re-run the backfill")
        else:
            unstamped.append(f)
        missing = [c for c in expected.names + ([label] if label else []) if c not in schema.names]
        if missing:
            raise ValueError(f"{f} lacks columns {missing}")
        lt = schema.field(label).type if label else pa.bool_()
        if not (pa.types.is_boolean(lt) or pa.types.is_integer(lt)):
            raise ValueError(f"{f}: label column {label} is {lt}, expected bool")
        for fld in expected:
            got = schema.field(fld.name).type
            if got != fld.type and not (pa.types.is_integer(got) and pa.types.is_integer(fld.type)) \
                    and not (pa.types.is_floating(got) and pa.types.is_floating(fld.type)):
                raise ValueError(f"{f}: column {fld.name} is {got}, expected {fld.type}")
    if unstamped:
        print(f"streamscore train: warning: {len(unstamped)} file(s) carry no feature-set metadata "
              f"(e.g. {unstamped[0]}); columns match, definition hash not verified", file=sys.stderr)


def read_features(path, feature_set, label: Optional[str] = "is_fraud"):
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = parquet_files(Path(path))
    check_schema(files, feature_set, label)
    wanted = list(feature_set.output_columns) + ([label] if label else [])
    tables = []
    for f in files:
        names = pq.read_schema(f).names
        cols = wanted + (["fraud_pattern"] if "fraud_pattern" in names else [])
        tables.append(pq.read_table(f, columns=cols).replace_schema_metadata(None))
    table = pa.concat_tables(tables, promote_options="default")
    return table.to_pandas()


def run_fraud(args) -> int:
    from features.fraud import FRAUD_FEATURES
    from training.fraud import train_fraud

    progress = not args.quiet
    df = read_features(args.features, FRAUD_FEATURES)
    if df.empty:
        raise ValueError(f"{args.features} holds no rows")
    if progress:
        print(f"read {len(df)} feature rows from {args.features}", file=sys.stderr)
    version_dir, report = train_fraud(df, args.model_dir, seed=args.seed, progress=progress)
    return _register(args, version_dir)


def run_iot(args) -> int:
    from features.iot import IOT_FEATURES
    from training.iot import ANOMALY_RATE, train_iot

    progress = not args.quiet
    df = read_features(args.features, IOT_FEATURES, label=None)
    if df.empty:
        raise ValueError(f"{args.features} holds no rows")
    if progress:
        print(f"read {len(df)} feature rows from {args.features}", file=sys.stderr)
    rate = ANOMALY_RATE if args.anomaly_rate is None else args.anomaly_rate
    version_dir, model = train_iot(df, args.model_dir, anomaly_rate=rate, progress=progress)
    return _register(args, version_dir)


def _register(args, version_dir) -> int:
    """Promote the new version unless --no-promote; one line either way."""
    from features.registry import promote

    if args.no_promote:
        print(f"registered {version_dir} (not promoted)")
    else:
        promote(args.model_dir, version_dir.name)
        print(f"registered and promoted {version_dir}")
    return 0
