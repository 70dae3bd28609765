"""`streamscore monitor fraud`: feature drift of the served feature log against the training set.

    streamscore monitor fraud --served .run/fraud/features --reference history-features \\
        [--model-dir models] [--threshold 0.2] [--out .run/fraud/monitor] \\
        [--events-to kafka:fraud-retrain | json:DIR | print | none] [--bootstrap HOST:PORT]

``--served`` is the Parquet feature log the streaming job writes (``--features-out``);
``--reference`` is the feature rows the model was trained on (the backfill output given to
``streamscore train fraud``). Both are a Parquet file or a folder of part files; hidden and
``_``-prefixed files (a running Flink sink's in-progress parts, ``_SUCCESS``) are skipped, so
the log of a running job can be read at any time. Files stamped with feature-set metadata must
carry the current definition hash; all need the declared feature columns.

With ``--model-dir`` (a version folder or a registry: its current version) the model's
definition hash must match the features', its version goes into the event, and the reference
is restricted to the model's training span (metadata ``training_span``: train .. test), so the
baseline is exactly the rows the model was fitted and evaluated on.

A served log from a job started without state (no ``--from-savepoint``) holds warm-up rows
for its first days: the 7 d and 30 d windows are still filling, so ``txn_count_7d``, the 30 d
amount features, ``merchant_first_seen`` and ``secs_since_prev`` (more nulls) drift against a
training set computed over full history; that is drift the model really sees.

Prints the PSI of every feature (``training.drift``) and a one-line verdict, writes
``drift.json`` and ``psi.png`` into ``--out``, and when a feature's PSI reaches ``--threshold``
emits a ``retrain_requested`` event to ``--events-to`` (a Kafka topic, keyed by the feature
set, or one JSON-lines file per event in a folder). Drift is a finding, not a failure: exit 0
either way; bad input is one line and exit 2, an unreachable broker exit 1.
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import uuid
from pathlib import Path

from jobs.runtime import DEFAULT_BOOTSTRAP, RUN_DIR, SetupError

DOMAINS = ("fraud",)
REPORT_FILE = "drift.json"
PLOT_FILE = "psi.png"
INGEST = "ingest_ms"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("monitor", help="feature drift (PSI) of served features vs the training set",
                              description="Feature drift (PSI) of the served feature log against the training set.")
    domains = p.add_subparsers(dest="domain", metavar="DOMAIN")
    domains.required = True
    f = domains.add_parser("fraud", help="the fraud feature set",
                           description="PSI per feature of the served fraud feature log against the model's "
                                       "training features; emits a retrain_requested event on drift.")
    f.add_argument("--served", required=True, metavar="DIR",
                   help="served feature log: a Parquet file or folder of part files (run --features-out)")
    f.add_argument("--reference", required=True, metavar="PARQUET",
                   help="training feature rows (the backfill output the model was trained on)")
    f.add_argument("--model-dir", default=None, metavar="DIR",
                   help="model version folder or registry (its current version): version, hash check, "
                        "training span")
    f.add_argument("--threshold", type=float, default=0.2,
                   help="PSI at or above which a feature has drifted (default: %(default)s; 'watch' from 0.1)")
    f.add_argument("--out", default=None, metavar="DIR",
                   help=f"where drift.json and psi.png go (default: {RUN_DIR / 'fraud' / 'monitor'})")
    f.add_argument("--events-to", default=None, metavar="SINK",
                   help="retrain events: kafka:TOPIC, json:DIR, print or none (default: kafka:fraud-retrain)")
    f.add_argument("--bootstrap", default=DEFAULT_BOOTSTRAP, metavar="HOST:PORT",
                   help=f"Kafka bootstrap servers (default {DEFAULT_BOOTSTRAP})")
    f.set_defaults(func=run_fraud)


# -- input ---------------------------------------------------------------------------------

def _check_files(files: list, feature_set, what: str) -> None:
    """Each file's feature-set metadata (if stamped), columns and types; ValueError naming the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    expected = feature_set.arrow_schema()
    needed = ["event_time"] + list(feature_set.feature_names)
    for f in files:
        try:
            schema = pq.read_schema(f)
        except (pa.ArrowInvalid, OSError) as e:
            raise ValueError(f"{what} {f} is not a readable Parquet file: {e}") from None
        meta = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in (schema.metadata or {}).items()}
        if "definition_hash" in meta:
            if meta.get("feature_set") != feature_set.name:
                raise ValueError(f"{what} {f} holds feature set {meta.get('feature_set')!r}, "
                                 f"not {feature_set.name!r}")
            if meta["definition_hash"] != feature_set.definition_hash:
                raise ValueError(f"{what} {f} was computed with feature definition {meta['definition_hash']}, "
                                 f"but {feature_set.name} is now {feature_set.definition_hash}")
        missing = [c for c in needed if c not in schema.names]
        if missing:
            raise ValueError(f"{what} {f} lacks columns {missing}; expected {feature_set.name} feature rows")
        for name in needed:
            got, want = schema.field(name).type, expected.field(name).type
            if got != want and not (pa.types.is_integer(got) and pa.types.is_integer(want)) \
                    and not (pa.types.is_floating(got) and pa.types.is_floating(want)) \
                    and not (pa.types.is_integer(got) and pa.types.is_floating(want)):
                raise ValueError(f"{what} {f}: column {name} is {got}, expected {want}")


def read_feature_rows(path, feature_set, what: str):
    """(DataFrame of event_time, the features and ingest_ms if present, list of files read)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from streamscore.train import parquet_files

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} {path}: no such file or folder")
    files = parquet_files(p)
    _check_files(files, feature_set, what)
    wanted = ["event_time"] + list(feature_set.feature_names)
    tables = []
    for f in files:
        names = pq.read_schema(f).names
        cols = wanted + ([INGEST] if INGEST in names else [])
        tables.append(pq.read_table(f, columns=cols).replace_schema_metadata(None))
    try:
        table = pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise ValueError(f"{what} {path}: part files disagree on their schema: {e}") from None
    df = table.to_pandas()
    if df.empty:
        raise ValueError(f"{what} {path} holds no rows")
    return df, files


def model_info(model_dir, feature_set) -> dict:
    """{"version", "dir", "training_span"} of a version folder or a registry's current version."""
    from features.scoring import resolve_model_dir, read_metadata

    vdir = resolve_model_dir(model_dir)
    meta = read_metadata(vdir)
    if meta.get("definition_hash") != feature_set.definition_hash:
        raise ValueError(f"model {vdir} was trained on feature definition {meta.get('definition_hash')}, "
                         f"but {feature_set.name} is now {feature_set.definition_hash}; its drift would "
                         f"compare different features")
    return {"version": meta.get("model_version") or vdir.name, "dir": str(vdir),
            "training_span": meta.get("training_span") or {}}


def restrict_to_span(reference, training_span: dict, version: str):
    """The reference rows inside the model's training span (earliest from_ms .. latest to_ms)."""
    spans = [s for s in training_span.values() if isinstance(s, dict) and "from_ms" in s and "to_ms" in s]
    if not spans:
        return reference, 0, None
    lo, hi = min(s["from_ms"] for s in spans), max(s["to_ms"] for s in spans)
    inside = reference["event_time"].between(lo, hi)
    kept = reference[inside]
    if kept.empty:
        from training.drift import time_span

        raise ValueError(f"the reference holds no rows inside model {version}'s training span "
                         f"({time_span([lo, hi]).get('from')} .. {time_span([lo, hi]).get('to')}); pass the "
                         f"features that model was trained on as --reference")
    return kept, int((~inside).sum()), {"from_ms": int(lo), "to_ms": int(hi)}


# -- output --------------------------------------------------------------------------------

def _clean(o):
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if hasattr(o, "item") and not isinstance(o, (str, bytes)):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def format_table(report) -> str:
    lines = [f"{'feature':<24} {'PSI':>8}  {'status':<6}  {'null ref':>8} {'null srv':>8}"]
    for r in report.itertuples(index=False):
        lines.append(f"{r.feature:<24} {r.psi:>8.4f}  {r.status:<6}  {r.reference_null_rate:>8.1%} "
                     f"{r.served_null_rate:>8.1%}")
    return "\n".join(lines)


def plot_psi(report, threshold: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.drift import WATCH

    floor = 1e-4
    colors = {"ok": "#4c9a2a", "watch": "#e0a100", "drift": "#c0392b"}
    names = list(report["feature"])[::-1]
    values = [max(v, floor) for v in report["psi"]][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) + 1.6))
    ax.barh(names, values, color=[colors.get(s, "grey") for s in report["status"]][::-1])
    ax.set_xscale("log")
    ax.axvline(threshold, color="#c0392b", linestyle="-", linewidth=1.5, label=f"threshold {threshold:g}")
    if WATCH < threshold:
        ax.axvline(WATCH, color="grey", linestyle="--", linewidth=1, label=f"watch {WATCH:g}")
    for y, (v, raw) in enumerate(zip(values, list(report["psi"])[::-1])):
        ax.text(v * 1.08, y, f"{raw:.3g}", va="center", fontsize=8)
    ax.set_xlim(floor, max(max(values) * 4, threshold * 4))
    ax.set_xlabel(f"PSI (log scale; values below {floor:g} drawn at {floor:g})")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def events_sink(text: str):
    from jobs.io import SinkSpec

    spec = SinkSpec.parse(text)
    if spec.kind == "parquet":
        raise ValueError(f"--events-to {text!r}: retrain events go to kafka:TOPIC, json:DIR, print or none")
    return spec


def emit_event(event: dict, spec, bootstrap: str, key: str) -> str:
    """Send ``event`` to ``spec``; returns where it went (a file path, topic@partition:offset, ...)."""
    line = json.dumps(_clean(event), sort_keys=False, separators=(",", ":"))
    if spec.kind == "none":
        return "not sent (--events-to none)"
    if spec.kind == "print":
        print(line, flush=True)
        return "stdout"
    if spec.kind == "json":
        d = Path(spec.target)
        d.mkdir(parents=True, exist_ok=True)
        stamp = event["created_at"].replace(":", "").replace("-", "").replace("+0000", "Z")
        path = d / f"{event['type']}-{stamp}-{uuid.uuid4().hex[:8]}.json"
        _write_atomic(path, (line + "\n").encode())  # JSON lines, as Flink's json:DIR sinks write
        return str(path)
    from kafka.errors import KafkaError

    from streamscore.produce import make_producer

    producer = make_producer(bootstrap, client_id="streamscore-monitor", linger_ms=0, batch_size=16384)
    try:
        meta = producer.send(spec.target, key=key.encode(), value=line.encode()).get(timeout=30)
    except KafkaError as e:
        raise SetupError(f"sending the retrain event to {spec.target} on {bootstrap} failed: {e}") from None
    finally:
        producer.close(timeout=10)
    return f"kafka:{spec.target} partition {meta.partition} offset {meta.offset}"


# -- the command ---------------------------------------------------------------------------

def run_fraud(args) -> int:
    from datetime import datetime, timezone

    from features.fraud import FRAUD_FEATURES as FS
    from training import drift

    threshold = drift.check_threshold(args.threshold)
    spec = events_sink(args.events_to or "kafka:fraud-retrain")
    out = Path(args.out) if args.out else RUN_DIR / "fraud" / "monitor"
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    model = model_info(args.model_dir, FS) if args.model_dir else None

    served, served_files = read_feature_rows(args.served, FS, "served log")
    reference, ref_files = read_feature_rows(args.reference, FS, "reference")
    ref_total, outside, span_used = len(reference), 0, None
    if model:
        reference, outside, span_used = restrict_to_span(reference, model["training_span"], model["version"])
        if outside:
            print(f"streamscore monitor: {outside} of {ref_total} reference rows lie outside model "
                  f"{model['version']}'s training span and are left out", file=sys.stderr)

    report = drift.psi_report(reference, served, FS, threshold=threshold)
    served_span = drift.time_span(served["event_time"], served[INGEST] if INGEST in served else None)
    created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    model_version = model["version"] if model else None
    event = drift.retrain_event(report, FS, model_version, len(served), served_span, threshold, created_at)
    verdict = drift.verdict(report, threshold)

    print(f"{FS.name} ({FS.definition_hash}): served {len(served):,} rows "
          f"({served_span['from']} .. {served_span['to']}) vs reference {len(reference):,} rows"
          f"{' of model ' + model_version if model_version else ''}")
    print(format_table(report))
    print(verdict)

    out.mkdir(parents=True, exist_ok=True)
    bins = report.attrs["bins"]
    doc = {
        "created_at": created_at,
        "feature_set": FS.name,
        "definition_hash": FS.definition_hash,
        "model_version": model_version,
        "model_dir": model["dir"] if model else None,
        "threshold": threshold,
        "watch": drift.WATCH,
        "bins": drift.BINS,
        "epsilon": drift.EPSILON,
        "verdict": verdict,
        "retrain": event is not None,
        "reference": {"path": str(args.reference), "files": len(ref_files), "rows": len(reference),
                      "rows_outside_training_span": outside, "training_span": span_used,
                      "span": drift.time_span(reference["event_time"])},
        "served": {"path": str(args.served), "files": len(served_files), "rows": len(served), "span": served_span},
        "features": [dict(row, bins=bins[row["feature"]].to_dict()) for row in report.to_dict(orient="records")],
        "event": event,
        "event_to": (f"{spec.kind}:{spec.target}" if spec.target else spec.kind) if event else None,
    }
    _write_atomic(out / REPORT_FILE, (json.dumps(_clean(doc), indent=2) + "\n").encode())
    plot_psi(report, threshold, out / PLOT_FILE,
             f"{FS.name} PSI: {len(served):,} served vs {len(reference):,} reference rows"
             f"{' (model ' + model_version + ')' if model_version else ''}")
    print(f"wrote {out / REPORT_FILE} and {out / PLOT_FILE}")
    if event is not None:
        where = emit_event(event, spec, args.bootstrap, key=FS.name)
        print(f"retrain_requested -> {where}")
    return 0
