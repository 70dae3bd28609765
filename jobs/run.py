"""`streamscore run fraud`: the streaming job, from Kafka (or a Parquet file), on a local
MiniCluster or a standalone cluster (--cluster HOST:PORT)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from jobs import kafka_props
from jobs.runtime import DEFAULT_BOOTSTRAP, RUN_DIR

DOMAINS = ("fraud",)


def add_stream_args(p) -> None:
    """Event-time options shared by run and backfill."""
    g = p.add_argument_group("event time")
    g.add_argument("--ordering", choices=("arrival", "event-time"), default="arrival",
                   help="arrival: score each event as it comes; event-time: buffer until the watermark, "
                        "then process in event-time order (= backfill) (default: %(default)s)")
    g.add_argument("--max-disorder-ms", type=int, default=5_000, metavar="MS",
                   help="bounded out-of-orderness of the watermark (default: %(default)s)")
    g.add_argument("--idleness-ms", type=int, default=0, metavar="MS",
                   help="an idle input stops holding the watermark after this; 0 = never. Only for "
                        "parallelism above the partition count: on a replay it stalled watermarks "
                        "(default: %(default)s)")
    g.add_argument("--allowed-lateness-ms", type=int, default=0, metavar="MS",
                   help="events this far behind the watermark are still processed (default: %(default)s)")
    g.add_argument("--max-jump-ms", type=int, default=3_600_000, metavar="MS",
                   help="an event further ahead of the stream is dead-lettered (time_skew) unless the next "
                        "events confirm the jump; streaming only (default: %(default)s)")
    h = p.add_argument_group("hostile input")
    h.add_argument("--dedup-horizon-ms", type=int, default=7 * 86_400_000, metavar="MS",
                   help="a repeated event_id within this much event time gets no second decision; 0 = off "
                        "(default: %(default)s)")
    h.add_argument("--max-amount", type=float, default=1e7, metavar="X",
                   help="largest plausible payment amount; larger is out_of_range (default: %(default)s)")
    h.add_argument("--max-record-bytes", type=int, default=65_536, metavar="N",
                   help="larger payloads are dead-lettered as too_large (default: %(default)s)")


def add_flink_args(p) -> None:
    g = p.add_argument_group("flink")
    g.add_argument("-p", "--parallelism", type=int, default=1)
    g.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                   help="checkpoint storage (default: .run/checkpoints/<job>)")
    g.add_argument("--checkpoint-interval-ms", type=int, default=10_000, metavar="MS")
    g.add_argument("--state-backend", choices=("rocksdb", "hashmap"), default="rocksdb")
    g.add_argument("-s", "--from-savepoint", default=None, metavar="PATH",
                   help="restore state from a savepoint or retained checkpoint")
    g.add_argument("--cluster", default=None, metavar="HOST:PORT",
                   help="submit to a running Flink cluster's REST endpoint instead of a local MiniCluster")
    g.add_argument("-D", dest="flink_options", action="append", default=[], metavar="KEY=VALUE",
                   help="any Flink option, e.g. -D python.fn-execution.bundle.time=20")


def flink_settings(args, batch: bool, job: str):
    from jobs.flinkenv import FlinkSettings

    extra = {}
    for kv in args.flink_options:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise ValueError(f"-D takes KEY=VALUE, got {kv!r}")
        extra[k] = v
    ckpt = None if batch else (args.checkpoint_dir or str(RUN_DIR / "checkpoints" / job))
    return FlinkSettings(batch=batch, parallelism=args.parallelism, checkpoint_dir=ckpt,
                         checkpoint_interval_ms=args.checkpoint_interval_ms, state_backend=args.state_backend,
                         restore_from=getattr(args, "from_savepoint", None), cluster=args.cluster, extra=extra)


def stream_config(args, with_labels: bool):
    from jobs.pipeline import StreamConfig

    return StreamConfig(ordering=args.ordering, max_disorder_ms=args.max_disorder_ms,
                        idleness_ms=args.idleness_ms, allowed_lateness_ms=args.allowed_lateness_ms,
                        max_jump_ms=args.max_jump_ms, dedup_horizon_ms=args.dedup_horizon_ms,
                        max_amount=args.max_amount, max_record_bytes=args.max_record_bytes,
                        with_labels=with_labels)


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a streaming job", description=__doc__)
    p.add_argument("domain", choices=DOMAINS)
    kafka_props.add_args(p)
    src = p.add_argument_group("source")
    src.add_argument("--topic", default=None, help="input Kafka topic (default: <domain>-events)")
    src.add_argument("--input", default=None, metavar="PARQUET",
                     help="read a Parquet file/folder instead of Kafka (bounded)")
    src.add_argument("--bootstrap", default=DEFAULT_BOOTSTRAP, metavar="HOST:PORT")
    src.add_argument("--group-id", default="streamscore-fraud")
    src.add_argument("--start", default="earliest",
                     help="earliest | latest | committed | timestamp:MS | offsets:P:O[,P:O...] (default: %(default)s)")
    src.add_argument("--until", default=None,
                     help="stop at latest | committed | timestamp:MS | offsets:P:O[,...] (a bounded replay)")
    out = p.add_argument_group("outputs (kafka:TOPIC, parquet:DIR, json:DIR, print, none)")
    out.add_argument("--decisions", default=None, help="default: kafka:<domain>-decisions")
    out.add_argument("--features-out", default=None, help="served feature log (default: parquet:.run/<domain>/features)")
    out.add_argument("--dead-letters", default=None, help="default: kafka:<domain>-dead-letters")
    out.add_argument("--late", default=None, help="default: kafka:<domain>-late")
    out.add_argument("--delivery", choices=("at-least-once", "exactly-once"), default="at-least-once",
                     help="Kafka sink guarantee (exactly-once: transactions, visible after each checkpoint)")
    p.add_argument("--model", default=None, metavar="DIR",
                   help="model folder or registry (its current version); none: rules only")
    add_stream_args(p)
    add_flink_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    env, settings, detached = prepare(args)
    return execute(env, f"streamscore-{args.domain}", detached=detached)


def prepare(args):
    """Build the streaming job for parsed ``args``: (env, FlinkSettings, detach?). Not started."""
    from jobs import fraud
    from jobs.flinkenv import make_env
    from jobs.io import KafkaSinkOptions, KafkaSource, ParquetSource, SinkSpec, StartPosition
    from jobs.pipeline import source_columns

    d = args.domain
    if args.input and args.topic:
        raise ValueError("give --topic or --input, not both")
    props = tuple(kafka_props.from_args(args).items())  # security settings for the source and every sink
    start = StartPosition.parse(args.start)
    until = StartPosition.parse(args.until) if args.until else None
    sinks = fraud.FraudSinks(
        decisions=SinkSpec.parse(args.decisions or f"kafka:{d}-decisions"),
        features=SinkSpec.parse(args.features_out or f"parquet:{RUN_DIR / d / 'features'}"),
        dead_letters=SinkSpec.parse(args.dead_letters or f"kafka:{d}-dead-letters"),
        late=SinkSpec.parse(args.late or f"kafka:{d}-late"),
        kafka=KafkaSinkOptions(args.bootstrap, delivery=args.delivery, transactional_id_prefix=f"streamscore-{d}",
                               properties=props))
    model_meta = None
    if args.model:
        from udfs.scoring import check_model

        model_meta = check_model(args.model, fraud.FS)  # refuse a model of another feature definition now
    settings = flink_settings(args, batch=False, job=d)
    cfg = fraud.FraudJobConfig(stream=stream_config(args, with_labels=False), model=args.model)
    env, t_env = make_env(settings)
    if args.input:
        source = ParquetSource(args.input, source_columns(fraud.FS.contract, False, raw=_has_raw(args.input)))
        kafka = False
    else:
        source = KafkaSource(args.bootstrap, args.topic or f"{d}-events", start, until, args.group_id,
                             properties=props)
        kafka = True
    rows = t_env.to_data_stream(source.table(t_env))
    out = fraud.build(rows, t_env, cfg, kafka=kafka, source=source.name, batch=False)
    ss = fraud.attach_sinks(t_env, out, sinks, with_labels=False)
    ss.attach_as_datastream()
    print(f"streamscore run {d}: {source.name} -> decisions {_fmt(sinks.decisions)}, features "
          f"{_fmt(sinks.features)}, dead letters {_fmt(sinks.dead_letters)}, late {_fmt(sinks.late)}; "
          f"ordering {cfg.stream.ordering}, model {model_meta['model_version'] if model_meta else 'none (rules)'}, "
          f"{'cluster ' + settings.cluster if settings.cluster else 'local MiniCluster'}", flush=True)
    return env, settings, bool(settings.cluster) and not until and kafka


def _fmt(spec) -> str:
    return spec.kind if not spec.target else f"{spec.kind}:{spec.target}"


def _has_raw(path: str) -> bool:
    return "_raw" in parquet_columns(path)


def parquet_columns(path: str) -> set:
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith((".", "_")))
    if not files:
        raise ValueError(f"no Parquet files under {path}")
    return set(pq.read_schema(files[0]).names)


def execute(env, name: str, detached: bool = False) -> int:
    """Run the job; a Java failure becomes one line (the root cause), not a stack trace."""
    t0 = time.time()
    try:
        if detached:
            client = env.execute_async(name)
            print(f"submitted {name}: job id {client.get_job_id()}", flush=True)
            return 0
        result = env.execute(name)
    except Exception as e:  # py4j errors carry the whole Java trace
        sys.stderr.write(f"{name} failed: {root_cause(e)}\n")
        return 1
    print(f"{name} finished in {time.time() - t0:.1f} s (job id {result.get_job_id()})", flush=True)
    return 0


def root_cause(e: Exception) -> str:
    text = str(e)
    causes = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("Caused by:")]
    line = causes[-1] if causes else text.strip().splitlines()[0] if text.strip() else repr(e)
    return line[:500]
