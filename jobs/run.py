"""`streamscore run <pipeline>`: a streaming job, from Kafka (or a Parquet file), on a local
MiniCluster or a standalone cluster (--cluster HOST:PORT)."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from jobs import kafka_props
from jobs.runtime import DEFAULT_BOOTSTRAP, RUN_DIR

DOMAINS = ("fraud", "iot")
# Every pipeline's outputs, by the flag that overrides its default sink; a flag the chosen job does
# not have is refused (one line). The jobs themselves are imported only once a command runs.
OUTPUT_FLAGS = {"decisions": "--decisions", "scores": "--scores", "alerts": "--alerts", "tickets": "--tickets",
                "features": "--features-out", "summaries": "--summaries", "sliding": "--sliding",
                "dead_letters": "--dead-letters", "late": "--late"}


# Flink-free: the pandas backfill reads these without importing the jobs.
FEATURE_SETS = {"fraud": ("features.fraud", "FRAUD_FEATURES"), "iot": ("features.iot", "IOT_FEATURES")}


def load_feature_set(domain: str):
    """A pipeline's FeatureSet, without importing Flink."""
    import importlib

    if domain not in FEATURE_SETS:
        raise ValueError(f"unknown pipeline {domain!r}; choose from {', '.join(FEATURE_SETS)}")
    module, name = FEATURE_SETS[domain]
    return getattr(importlib.import_module(module), name)


def load_job(domain: str):
    """The Job (jobs/graph.py) of a pipeline: ``jobs.<domain>.JOB``."""
    import importlib

    if domain not in DOMAINS:
        raise ValueError(f"unknown pipeline {domain!r}; choose from {', '.join(DOMAINS)}")
    return importlib.import_module(f"jobs.{domain}").JOB


def sink_specs(args, job) -> dict:
    """{output name: SinkSpec} from the output flags (default: each output's own default)."""
    from jobs.io import SinkSpec

    specs = {}
    for name, flag in OUTPUT_FLAGS.items():
        given = getattr(args, name, None)
        names = [o.name for o in job.outputs]
        if name not in names:
            if given is not None:
                raise ValueError(f"{flag}: the {job.domain} job has no such output (it has "
                                 f"{', '.join(OUTPUT_FLAGS[n] for n in names)})")
            continue
        specs[name] = SinkSpec.parse(given or job.output(name).default_for(job.domain))
    return specs


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


IOT_FLAGS = {"tumbling_ms": "--tumbling-ms", "min_duration_ms": "--min-duration-ms",
             "cooldown_ms": "--cooldown-ms", "quiet_ms": "--quiet-ms"}


def add_iot_args(p) -> None:
    g = p.add_argument_group("iot (alerts default to the served model's policy)")
    g.add_argument("--tumbling-ms", type=int, default=None, metavar="MS",
                   help="size of the tumbling summaries (default: 300000)")
    g.add_argument("--min-duration-ms", type=int, default=None, metavar="MS",
                   help="an incident this long opens a maintenance ticket")
    g.add_argument("--cooldown-ms", type=int, default=None, metavar="MS",
                   help="at most one alert per this much event time per incident")
    g.add_argument("--quiet-ms", type=int, default=None, metavar="MS",
                   help="this long without an anomalous reading ends an incident")


def job_options(args) -> dict:
    """The pipeline-specific options given on the command line (JobConfig.options)."""
    given = {k: getattr(args, k, None) for k in IOT_FLAGS}
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return {}
    if args.domain != "iot":
        raise ValueError(f"{', '.join(IOT_FLAGS[k] for k in given)}: iot options; the {args.domain} job has none")
    opts = {}
    if "tumbling_ms" in given:
        opts["tumbling_ms"] = given.pop("tumbling_ms")
    if given:
        from features.alerts import AlertPolicy

        base = AlertPolicy()
        if args.model:
            from features.iot_model import load_iot_model

            saved = load_iot_model(args.model).alert_policy
            base = saved if isinstance(saved, AlertPolicy) else AlertPolicy(**dict(saved))
        import dataclasses

        opts["alert_policy"] = dataclasses.replace(base, **given)
    return opts


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


def stream_config(args, with_labels: bool, counts_dir: Optional[str] = None, stop_offsets=None):
    from jobs.pipeline import StreamConfig

    return StreamConfig(ordering=args.ordering, max_disorder_ms=args.max_disorder_ms,
                        idleness_ms=args.idleness_ms, allowed_lateness_ms=args.allowed_lateness_ms,
                        max_jump_ms=args.max_jump_ms, dedup_horizon_ms=args.dedup_horizon_ms,
                        max_amount=args.max_amount, max_record_bytes=args.max_record_bytes,
                        with_labels=with_labels, counts_dir=counts_dir,
                        stop_offsets=None if stop_offsets is None else tuple(sorted(stop_offsets.items())))


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a streaming job", description=__doc__)
    p.add_argument("domain", choices=DOMAINS)
    kafka_props.add_args(p)
    src = p.add_argument_group("source")
    src.add_argument("--topic", default=None, help="input Kafka topic (default: <domain>-events)")
    src.add_argument("--input", default=None, metavar="PARQUET",
                     help="read a Parquet file/folder instead of Kafka (bounded)")
    src.add_argument("--bootstrap", default=DEFAULT_BOOTSTRAP, metavar="HOST:PORT")
    src.add_argument("--kafka-timeout-s", type=float, default=30.0, metavar="S",
                     help="before the job is built, the broker must answer a metadata request within "
                          "this; else one line and exit 1 (default: %(default)s)")
    src.add_argument("--broker-lost-s", type=float, default=120.0, metavar="S",
                     help="a broker silent this long while the job runs: cancel it, one line with the "
                          "resume command, exit 1; 0 = wait for it for ever (default: %(default)s)")
    src.add_argument("--group-id", default=None, help="Kafka consumer group (default: streamscore-<domain>)")
    src.add_argument("--start", default="earliest",
                     help="earliest | latest | committed | timestamp:MS | offsets:P:O[,P:O...] (default: %(default)s)")
    src.add_argument("--until", default=None,
                     help="stop at latest | committed | timestamp:MS | offsets:P:O[,...] (a bounded replay)")
    out = p.add_argument_group("outputs (kafka:TOPIC, parquet:DIR, json:DIR, print, none)")
    out.add_argument("--decisions", default=None, help="fraud: default kafka:fraud-decisions")
    out.add_argument("--scores", default=None, help="iot: every reading's score (default kafka:iot-scores)")
    out.add_argument("--alerts", default=None, help="iot: default kafka:iot-alerts")
    out.add_argument("--tickets", default=None, help="iot: maintenance tickets (default kafka:iot-tickets)")
    out.add_argument("--summaries", default=None, help="iot: tumbling per-sensor summaries (default none)")
    out.add_argument("--sliding", default=None, help="iot: 1 h summaries every 5 min (default none)")
    out.add_argument("--features-out", dest="features", default=None,
                     help="served feature log (default: parquet:.run/<domain>/features)")
    out.add_argument("--dead-letters", dest="dead_letters", default=None, help="default: kafka:<domain>-dead-letters")
    out.add_argument("--late", default=None, help="default: kafka:<domain>-late")
    out.add_argument("--delivery", choices=("at-least-once", "exactly-once"), default="at-least-once",
                     help="Kafka sink guarantee (exactly-once: transactions, visible after each checkpoint)")
    p.add_argument("--model", default=None, metavar="DIR",
                   help="model folder or registry (its current version); none: rules only")
    add_iot_args(p)
    add_stream_args(p)
    add_flink_args(p)
    p.add_argument("--resume", action="store_true",
                   help="restore from the newest retained checkpoint of this job (under --checkpoint-dir)")
    p.set_defaults(func=run)


@dataclass
class RunPlan:
    """A built, not yet started job and what execute() needs around it."""

    env: object
    settings: object
    detached: bool
    name: str = "streamscore-job"
    counts_dir: Optional[str] = None
    argv: Optional[list] = None  # the command line, to print the resume command on Ctrl-C
    stop_watch: object = None  # ops.StopWatch of a restored --until run
    broker_watch: object = None  # ops.BrokerWatch while the job runs
    summary: str = "run"  # run | backfill
    outputs: tuple = ()


def run(args) -> int:
    from features.scoring import ModelLoadError
    from jobs.runtime import SetupError

    try:
        plan = prepare_run(args)
    except (ValueError, FileNotFoundError, SetupError, ModelLoadError, KeyboardInterrupt):
        raise  # the CLI's one-line messages; none of them quotes a setting's value
    except Exception as e:  # a Java/Flink error building the job (e.g. "Table options are: ..." lists options)
        why = root_cause(e).removeprefix("Caused by: ")
        sys.stderr.write(f"streamscore run {args.domain}: the job could not be built: {why}\n")
        return 1
    return execute(plan.env, plan.name, detached=plan.detached)


def prepare(args):
    """Build the streaming job for parsed ``args``: (env, FlinkSettings, detach?). Not started."""
    plan = prepare_run(args)
    return plan.env, plan.settings, plan.detached


def prepare_run(args) -> RunPlan:
    """Build the streaming job for parsed ``args`` (a RunPlan). Not started."""
    from jobs import ops
    from jobs.flinkenv import make_env
    from jobs.graph import JobConfig, attach_outputs
    from jobs.io import KafkaSinkOptions, KafkaSource, ParquetSource, StartPosition
    from jobs.pipeline import source_columns

    d = args.domain
    job = load_job(d)
    args.group_id = args.group_id or f"streamscore-{d}"
    if args.input and args.topic:
        raise ValueError("give --topic or --input, not both")
    props = tuple(kafka_props.from_args(args).items())  # security settings for the source and every sink
    start = StartPosition.parse(args.start)
    until = StartPosition.parse(args.until) if args.until else None
    if getattr(args, "resume", False):
        if args.from_savepoint:
            raise ValueError("give --resume or --from-savepoint, not both")
        ckpt_dir = args.checkpoint_dir or str(RUN_DIR / "checkpoints" / d)
        newest = ops.newest_checkpoint(ckpt_dir)
        if newest is None:
            raise ValueError(f"--resume: no retained checkpoint under {ckpt_dir} (<job-id>/chk-N/_metadata)")
        args.from_savepoint = str(newest)
        print(f"streamscore run {d}: resuming from {newest}", flush=True)
    specs = sink_specs(args, job)
    options = job_options(args)  # refused now, before any broker is waited for
    kafka_opts = KafkaSinkOptions(args.bootstrap, delivery=args.delivery, transactional_id_prefix=f"streamscore-{d}",
                                  properties=props)
    model_meta = job.check_model(args.model) if args.model else None  # refuse a model of another definition now
    settings = flink_settings(args, batch=False, job=d)
    stream_config(args, with_labels=False)  # a bad option is refused before the broker is waited for
    kafka = not args.input
    topic = args.topic or f"{d}-events"
    uses_kafka = kafka or any(s.kind == "kafka" for s in specs.values())
    client_kwargs = kafka_props.kafka_python_kwargs(dict(props))  # the same security settings as the job's
    if uses_kafka:  # before the JVM starts: an absent broker is one line, not a stack trace a minute
        ops.check_brokers(args.bootstrap, args.kafka_timeout_s, client_kwargs)
    if args.broker_lost_s < 0:
        raise ValueError(f"--broker-lost-s must be >= 0, got {args.broker_lost_s}")
    broker_watch = ops.BrokerWatch(args.bootstrap, args.broker_lost_s, client_kwargs) \
        if uses_kafka and args.broker_lost_s > 0 else None
    stop_watch, stops = None, None
    if kafka and until is not None and settings.restore_from:
        # a restored source ignores --until (see jobs/ops.py): resolve it to offsets now, drop records
        # past them in parse, and stop the job once it committed them
        stops = ops.resolve_stops(args.bootstrap, topic, until, args.group_id, client_kwargs,
                                  timeout_s=args.kafka_timeout_s)
        stop_watch = ops.StopWatch(args.bootstrap, topic, args.group_id, stops, settings.checkpoint_dir,
                                   client_kwargs, stall_s=max(90.0, 9 * settings.checkpoint_interval_ms / 1000))
        until = None
    counts_dir = str(ops.new_counts_dir(RUN_DIR / d / "counts"))
    cfg = JobConfig(stream=stream_config(args, with_labels=False, counts_dir=counts_dir, stop_offsets=stops),
                    model=args.model, options=options)
    env, t_env = make_env(settings)
    if args.input:
        source = ParquetSource(args.input, source_columns(job.feature_set.contract, False, raw=_has_raw(args.input)))
    else:
        source = KafkaSource(args.bootstrap, topic, start, until, args.group_id, properties=props)
    rows = t_env.to_data_stream(source.table(t_env))
    built = job.build(rows, t_env, cfg, kafka=kafka, source=source.name, batch=False)
    attach_outputs(t_env, job, built, specs, kafka_opts, with_labels=False).attach_as_datastream()
    where = ", ".join(f"{n.replace('_', ' ')} {_fmt(spec)}" for n, spec in specs.items())
    print(f"streamscore run {d}: {source.name} -> {where}; "
          f"ordering {cfg.stream.ordering}, model {model_meta['model_version'] if model_meta else 'none (rules)'}, "
          f"{'cluster ' + settings.cluster if settings.cluster else 'local MiniCluster'}"
          + (f"; until offsets {stops} (restored)" if stops is not None else ""), flush=True)
    detached = bool(settings.cluster) and not args.until and kafka
    return attach_plan(RunPlan(env, settings, detached, name=f"streamscore-{d}", counts_dir=counts_dir,
                               argv=getattr(args, "argv", None), stop_watch=stop_watch,
                               broker_watch=broker_watch))


def attach_plan(plan: RunPlan) -> RunPlan:
    """execute() keeps its (env, name, detached) signature (bench/worker.py substitutes its own), so
    the rest of the plan travels on the environment object."""
    plan.env._streamscore_plan = plan
    return plan


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
    """Run the job and wait in Python; a Java failure becomes one line (the root cause), Ctrl-C one
    line naming the newest retained checkpoint and the command that resumes from it. A finished
    run prints its counts."""
    from jobs import ops

    plan: Optional[RunPlan] = getattr(env, "_streamscore_plan", None)
    detached = detached or not _attached(env)
    t0 = time.time()
    client = None
    try:
        client = env.execute_async(name)
        if detached:
            print(f"submitted {name}: job id {client.get_job_id()}", flush=True)
            return 0
        drain_dir = None
        if plan is not None and plan.stop_watch is not None:
            drain_dir = Path(plan.settings.checkpoint_dir) / f".until-drain-{int(t0)}"
        result = ops.wait_for(client, plan.stop_watch if plan else None, drain_dir,
                              broker_watch=plan.broker_watch if plan else None)
    except ops.BrokerLost as e:
        sys.stderr.write(f"{name} stopped: no Kafka broker answered at {e.bootstrap} for {e.silent_s:.0f} s "
                         f"(--broker-lost-s); " + interrupted_line(plan, e.job_id).split("; ", 1)[-1] + "\n")
        return 1
    except ops.UntilUnreachable as e:
        sys.stderr.write(f"{name} cancelled: {e}\n")
        return 1
    except ops.Interrupted as e:
        sys.stderr.write(interrupted_line(plan, e.job_id) + "\n")
        return 130
    except KeyboardInterrupt:  # Ctrl-C while the job was being submitted
        sys.stderr.write(f"{name}: interrupted before the job started; nothing to resume\n")
        return 130
    except Exception as e:  # py4j errors carry the whole Java trace
        sys.stderr.write(f"{name} failed: {root_cause(e)}\n")
        return 1
    print(f"{name} finished in {time.time() - t0:.1f} s (job id {result.getJobID().toString()})", flush=True)
    if plan is not None and plan.counts_dir:
        print_counts(plan)
    return 0


def _attached(env) -> bool:
    """False under `flink run -d` (execution.attached=false): submit and return, as env.execute() did."""
    try:
        from pyflink.java_gateway import get_gateway

        options = get_gateway().jvm.org.apache.flink.configuration.DeploymentOptions
        return bool(env._j_stream_execution_environment.getConfiguration().get(options.ATTACHED))
    except Exception:  # not a py4j-backed environment: wait, as for a local run
        return True


def interrupted_line(plan: Optional[RunPlan], job_id: str) -> str:
    from jobs import ops

    ckpt_dir = plan.settings.checkpoint_dir if plan is not None else None
    if not ckpt_dir:  # BATCH (backfill): nothing is checkpointed
        return "interrupted: the job was cancelled; a backfill keeps no checkpoints, run it again (--overwrite)"
    newest = ops.newest_checkpoint(ckpt_dir, job_id) or ops.newest_checkpoint(ckpt_dir)
    if newest is None:
        return (f"interrupted: the job was cancelled before its first checkpoint; nothing retained under "
                f"{ckpt_dir}, run the same command again")
    cmd = ops.resume_command(plan.argv, newest) if plan.argv else "the same command with --resume"
    cmd = kafka_props.scrub(cmd)  # a secret given with --kafka-property is not echoed (keep it in --kafka-config)
    return f"interrupted: the job was cancelled; newest retained checkpoint {newest}; resume with: {cmd}"


def print_counts(plan: RunPlan) -> None:
    from jobs import ops
    from udfs.counters import read_counts

    counts = read_counts(plan.counts_dir)
    if plan.summary == "backfill":
        lines = ops.backfill_summary(counts, plan.outputs)
    else:
        lines = ops.run_summary(counts)
    note = ops.attempts_note(plan.counts_dir, plan.settings.parallelism)
    print("\n".join(lines + ([note] if note else [])), flush=True)


def root_cause(e: Exception) -> str:
    text = str(e)
    causes = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("Caused by:")]
    line = causes[-1] if causes else text.strip().splitlines()[0] if text.strip() else repr(e)
    return kafka_props.scrub(line)[:500]  # a Java message may quote a (secret) Kafka setting
