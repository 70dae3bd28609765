"""`streamscore generate`: write a synthetic event stream (or the real NAB series) to Parquet.

    streamscore generate fraud  --events 1000000 --seed 7 --out out/payments.parquet
    streamscore generate recsys --events 200000 --days 7 --out-of-order 0.05 --late 0.01 --malformed 0.001
    streamscore generate iot --nab --out out/nab.parquet

Files are written with the contract's explicit schema, labels and the ``_raw`` column included
(``contract.arrow_schema(with_labels=True, with_raw=True)``), rows in arrival order. The same
arguments give a byte-identical file. See docs/data.md.
"""
from __future__ import annotations

import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from jobs.progress import PROGRESS_FROM, Progress

DOMAINS = ("fraud", "recsys", "iot")
ROW_GROUP = 262_144


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "generate", help="write a synthetic event stream (or the real NAB series) to Parquet",
        description="Write a deterministic synthetic event stream of DOMAIN to Parquet, in arrival order, "
                    "with labels; or, with `iot --nab`, the real NAB sensor series.")
    p.add_argument("domain", choices=DOMAINS, help="fraud (payments), recsys (shopper behaviour), iot (sensors)")
    p.add_argument("--events", type=int, metavar="N", help="number of events (rows) to generate")
    p.add_argument("--seed", type=int, metavar="S", help="random seed (default 0); same seed, same file")
    p.add_argument("--out", metavar="FILE.parquet", help="output file (default out/<domain>.parquet in the repo)")
    p.add_argument("--start", metavar="ISO-8601", help="first instant of the span (default 2026-01-01T00:00:00Z)")
    p.add_argument("--days", type=float, metavar="D", help="length of the span in days (default 1)")
    p.add_argument("--out-of-order", type=float, dest="out_of_order", metavar="F",
                   help="fraction of events delayed by at most --max-disorder-ms (default 0)")
    p.add_argument("--late", type=float, metavar="F", help="fraction of events sent --late-by-ms or more late (default 0)")
    p.add_argument("--malformed", type=float, metavar="F", help="fraction of events replaced by broken payloads (default 0)")
    p.add_argument("--max-disorder-ms", type=int, dest="max_disorder_ms", metavar="MS",
                   help="bound of out-of-order delays (default 5000)")
    p.add_argument("--late-by-ms", type=int, dest="late_by_ms", metavar="MS",
                   help="minimum lateness of late events (default 600000)")
    p.add_argument("--entities", type=int, metavar="K", help="cards / users / machines (default: from N)")
    p.add_argument("--nab", action="store_true", help="iot only: the real NAB series instead of synthetic data")
    p.add_argument("--nab-dir", dest="nab_dir", metavar="DIR",
                   help="NAB directory (default $STREAMSCORE_NAB_DIR or <repo>/../shared/data/nab)")
    p.set_defaults(func=run)


_SYNTHETIC_ONLY = ("events", "seed", "start", "days", "out_of_order", "late", "malformed", "max_disorder_ms",
                   "late_by_ms", "entities")


def _fraction(name: str, v) -> float:
    if v is None:
        return 0.0
    if not (math.isfinite(v) and 0.0 <= v < 1.0):
        raise ValueError(f"--{name} must be a fraction in [0, 1), got {v}")
    return float(v)


def options(args) -> dict:
    """Checked keyword arguments for the generator of args.domain (ValueError if bad)."""
    from features.contracts import InvalidEvent, parse_event_time
    from features.synthetic import DEFAULT_START_MS

    if args.events is None:
        raise ValueError("--events N is required (or `generate iot --nab` for the real NAB series)")
    if args.events <= 0:
        raise ValueError(f"--events must be > 0, got {args.events}")
    seed = 0 if args.seed is None else args.seed
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    days = 1.0 if args.days is None else args.days
    if not (math.isfinite(days) and days > 0):
        raise ValueError(f"--days must be > 0, got {args.days}")
    start = DEFAULT_START_MS
    if args.start is not None:
        try:
            start = parse_event_time(args.start)
        except InvalidEvent as e:
            raise ValueError(f"--start {args.start!r} is not an ISO-8601 time or epoch ms ({e.detail})") from None
    kw = dict(n_events=args.events, seed=seed, start_ms=start, days=days,
              out_of_order=_fraction("out-of-order", args.out_of_order), late=_fraction("late", args.late),
              malformed=_fraction("malformed", args.malformed))
    if args.max_disorder_ms is not None:
        if args.max_disorder_ms < 1:
            raise ValueError(f"--max-disorder-ms must be >= 1, got {args.max_disorder_ms}")
        kw["max_disorder_ms"] = args.max_disorder_ms
    if args.late_by_ms is not None:
        if args.late_by_ms < 1:
            raise ValueError(f"--late-by-ms must be >= 1, got {args.late_by_ms}")
        kw["late_by_ms"] = args.late_by_ms
    if args.entities is not None:
        if args.entities <= 0:
            raise ValueError(f"--entities must be > 0, got {args.entities}")
        kw[{"fraud": "n_cards", "recsys": "n_users", "iot": "n_machines"}[args.domain]] = args.entities
    return kw


def write_parquet(df, contract, path: Path, progress: Progress = None) -> None:
    """Write df with the contract's explicit schema (+ `_raw`), atomically, in row groups."""
    import pyarrow.parquet as pq

    from features.synthetic import to_arrow

    table = to_arrow(df, contract, with_raw=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with pq.ParquetWriter(tmp, table.schema) as w:
            n = table.num_rows
            for off in range(0, max(n, 1), ROW_GROUP):
                w.write_table(table.slice(off, ROW_GROUP))
                if progress:
                    progress.stage("writing", min(1.0, (off + ROW_GROUP) / max(n, 1)), 70.0, 100.0)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def summary(df, domain: str) -> str:
    """The one-line description of a generated frame (rates over well-formed rows)."""
    from features.contracts import RAW_PAYLOAD

    good = df[RAW_PAYLOAD].isna().to_numpy()
    n_good = int(good.sum())
    parts = []
    if domain == "fraud":
        fraud = df["is_fraud"].to_numpy(dtype=bool, na_value=False)
        counts = df.loc[fraud, "fraud_pattern"].value_counts()
        from features.synthetic import FRAUD_PATTERNS

        per = ", ".join(f"{p} {int(counts.get(p, 0)):,}" for p in FRAUD_PATTERNS)
        parts.append(f"fraud {fraud.sum() / max(n_good, 1):.2%} ({per})")
    elif domain == "recsys":
        c = df["action"].value_counts()
        v = int(c.get("view", 0))
        parts.append(f"views {v:,}, carts {int(c.get('cart', 0)):,} ({c.get('cart', 0) / max(v, 1):.1%} of views), "
                     f"purchases {int(c.get('purchase', 0)):,} ({c.get('purchase', 0) / max(v, 1):.1%})")
    else:
        anom = df["is_anomaly"].to_numpy(dtype=bool, na_value=False)
        text = f"anomalies {anom.sum() / max(n_good, 1):.2%}"
        kinds = df.attrs.get("anomaly_readings")
        if kinds:
            text += " (" + ", ".join(f"{k} {v:,}" for k, v in kinds.items()) + " readings)"
        parts.append(text)
        parts.append(f"{df['machine_id'].nunique():,} machines, "
                     f"{df[['machine_id', 'sensor_id']].drop_duplicates().shape[0]:,} sensors")
    if df.attrs.get("source") != "nab":
        parts.append(f"out-of-order {df.attrs.get('n_out_of_order', 0):,}, late {df.attrs.get('n_late', 0):,}, "
                     f"malformed {df.attrs.get('n_malformed', 0):,}")
    return "; ".join(parts)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(args) -> int:
    from features.contracts import contract_for

    contract = contract_for(args.domain)
    t0 = time.monotonic()
    if args.nab:
        if args.domain != "iot":
            raise ValueError("--nab is real sensor data: use `streamscore generate iot --nab`")
        given = [o for o in _SYNTHETIC_ONLY if getattr(args, o, None) is not None]
        if given:
            raise ValueError("--nab replays the real NAB series as they are; "
                             f"drop --{', --'.join(g.replace('_', '-') for g in given)}")
        from features.nab import load_nab

        df = load_nab(root=args.nab_dir)
        what = f"{len(df):,} sensor events from {len(df.attrs['series'])} NAB series"
        name = "nab"
        progress = Progress(False, "")
    else:
        if args.nab_dir is not None:
            raise ValueError("--nab-dir only applies with --nab")
        from features.synthetic import GENERATORS

        kw = options(args)
        progress = Progress(kw["n_events"] >= PROGRESS_FROM,
                             f"generate: {kw['n_events']:,} {contract.name} events")
        try:
            df = GENERATORS[args.domain](progress=progress.stage, **kw)
        except BaseException:
            progress.close()
            raise
        what = (f"{len(df):,} {contract.name} events (seed {kw['seed']}, {kw['days']:g} d from "
                f"{_iso(kw['start_ms'])})")
        name = args.domain
    if args.out:
        out = Path(args.out)
    else:
        from jobs.runtime import ROOT

        out = ROOT / "out" / f"{name}.parquet"
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give a file name")
    try:
        write_parquet(df, contract, out, progress)
    finally:
        progress.close()
    secs = time.monotonic() - t0
    print(f"generate: wrote {what} to {out}: {summary(df, args.domain)}; {secs:.1f} s")
    return 0
