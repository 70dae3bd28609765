"""`streamscore bench`: the fraud job measured against a reference in the same run.

Sections (``--sections``; all by default, ``--quick`` runs small versions of the first three):

* throughput  N payments pre-loaded into Kafka; the fraud job (``streamscore run fraud --until
              latest``, decisions to Kafka) vs a Java-only Flink SQL job computing the velocity
              features with OVER RANGE windows over the same topic.
* backfill    ``streamscore backfill fraud`` (pandas engine and Flink BATCH) vs ``tests.reference.fraud_reference``
              (pandas) on the same Parquet file, and whether their values agree.
* latency     event-to-decision latency at fixed producer rates, consumer-observed and
              job-internal, per delivery guarantee and Flink option set.
* scaling     throughput at parallelism 1 and 2 over a 2-partition topic (fraud and SQL).
* memory      a stream 10x longer with the same cards: RSS and checkpoint size over time.
* profile     where the fraud job's time goes: per-operator busy/back-pressure (REST), CPU per
              process and JVM thread, a cProfile of the Python per-event path, and ablations.

Every Flink job runs in its own process (``python -m bench --worker SPEC``) on a local
MiniCluster, one at a time, against a broker this command starts on ``--port`` (19392) and stops
again. Results go to ``--out`` as results.json, results.md and PNG plots.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from bench.cpu import loadavg
from bench.options import parse_options, resolve_defaults
from bench.plots import make_plots
from bench.progress import Progress
from bench.pyprofile import section_profile
from bench.report import render_markdown, _slim
from bench.runner import Bench
from bench.settings import LOW_LATENCY, QUICK_SECTIONS, SECTIONS
from bench.stats import _jsonable
from jobs.runtime import ROOT, RUN_DIR, SetupError

# bench_main finds section_<name> by name in globals()
from bench.backfill import section_backfill  # noqa: F401
from bench.latency import section_latency  # noqa: F401
from bench.memory import section_memory  # noqa: F401
from bench.throughput import section_scaling, section_throughput  # noqa: F401


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark the fraud job against Java SQL / pandas references",
                       description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, throughput + backfill + latency (~5 min)")
    p.add_argument("--sections", default=None, help=f"comma list of {', '.join(SECTIONS)} (default: all; quick: "
                                                    f"{', '.join(QUICK_SECTIONS)})")
    p.add_argument("--events", type=int, default=None, help="payments in the Kafka throughput run (default 200,000; quick 20,000)")
    p.add_argument("--cards", type=int, default=None, help="distinct cards (default 20,000; quick 2,000)")
    p.add_argument("--days", type=float, default=7.0, help="event-time span of the generated streams (default 7)")
    p.add_argument("--backfill-events", type=int, default=None, help="default 1,000,000; quick 50,000")
    p.add_argument("--rates", default=None, help="producer rates of the latency runs, events/s (default 250,1000,2000,5000; quick 1000,2000)")
    p.add_argument("--latency-seconds", type=float, default=None, help="seconds per rate (default 20; quick 6)")
    p.add_argument("--delivery", default=None,
                   help="latency runs: at-least-once and/or exactly-once (default both; quick at-least-once)")
    p.add_argument("--latency-variant", action="append", default=[], metavar="NAME[:KEY=VALUE,...]",
                   help="a Flink option set for the latency runs (repeatable; default: 'default' and 'low-latency:"
                        + ",".join(f"{k}={v}" for k, v in LOW_LATENCY.items()) + "')")
    p.add_argument("--eo-checkpoint-ms", type=int, default=1000, help="checkpoint interval of exactly-once runs")
    p.add_argument("--memory-factor", type=int, default=10, help="memory section: stream length multiple (default 10)")
    p.add_argument("--ablations", dest="ablations", action="store_true", default=None,
                   help="profile: also run the fraud job without scoring, with big bundles, with the other state "
                        "backend, and SQL with the other backend (default: on; off with --quick)")
    p.add_argument("--no-ablations", dest="ablations", action="store_false")
    p.add_argument("--model", default=None, metavar="DIR", help="score with this model (default: rules only)")
    p.add_argument("--state-backend", choices=("rocksdb", "hashmap"), default="rocksdb",
                   help="state backend of every Flink job (default: the project's rocksdb)")
    p.add_argument("-D", dest="flink_options", action="append", default=[], metavar="KEY=VALUE",
                   help="a Flink option for every job (fraud and reference)")
    p.add_argument("--loader", choices=("auto", "python", "flink"), default="auto",
                   help="how topics are pre-loaded: kafka-python, a Flink SQL job, or auto (Flink above 300k)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--port", type=int, default=19392, help="port of the benchmark's own Kafka broker")
    p.add_argument("--out", default=None, help="results folder (default bench/results; quick bench/results/quick)")
    p.add_argument("--work-dir", default=str(RUN_DIR / "bench"), help="scratch space (default .run/bench)")
    p.add_argument("--warmup-timeout", type=float, default=180.0, help=argparse_suppress())
    p.add_argument("--drain-seconds", type=float, default=10.0, help=argparse_suppress())
    p.add_argument("--warmup-seconds", type=float, default=None,
                   help="latency runs: seconds at the first rate before measuring (default 30; quick 10)")
    p.add_argument("--quiet-load", type=float, default=1.5,
                   help="before each measurement wait for the 1-min load average to drop below this (default 1.5)")
    p.add_argument("--quiet-wait", type=float, default=None, metavar="SECONDS",
                   help="... for at most this long per measurement (default 240; quick 0 = never wait)")
    p.add_argument("--keep-topics", action="store_true", help="do not delete the benchmark's topics")
    p.add_argument("--merge", action="store_true",
                   help="update the sections run in an existing OUT/results.json, keep the others")
    p.set_defaults(func=bench_main)


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def bench_main(args) -> int:
    from streamscore.kafka_broker import KafkaBroker, delete_topics

    resolve_defaults(args)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    options = parse_options(args.flink_options)
    steps = {"throughput": 3, "backfill": 5, "latency": len(args.latency_variant) + ("exactly-once" in args.delivery),
             "scaling": 5, "memory": 3, "profile": 1 + (4 if args.ablations and "throughput" in sections else 0)}
    progress = Progress(2 + sum(steps[s] for s in sections))
    argv = sys.argv[1:] if sys.argv and sys.argv[0].endswith("streamscore") else ["bench"]
    command = "streamscore " + " ".join(shlex.quote(a) for a in argv)
    results: dict = {}
    if args.merge and (out / "results.json").exists():
        results = json.loads((out / "results.json").read_text())
        results.pop("figures", None)
        merged = results.setdefault("meta", {}).setdefault("merged", [])
        if command not in merged and command != results["meta"].get("command"):
            merged.append(command)
    first = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "commit": _git_commit(), "cpus": os.cpu_count(),
             "loadavg_start": loadavg(), "state_backend": args.state_backend, "quick": bool(args.quick),
             "command": command}
    merging = bool(results.get("meta", {}).get("command"))
    for k, v in first.items():  # a merge keeps the first run's header; each section says when it ran
        results.setdefault("meta", {}).setdefault(k, v)
    progress.step(f"Kafka broker on 127.0.0.1:{args.port}")
    broker = KafkaBroker(port=args.port, data_dir=work / f"kafka-{args.port}")
    ours = broker.pid() is None
    broker.start(timeout=120)
    progress.info(broker.describe() + ("" if ours else " (already running: left running afterwards)"))
    bench = Bench(bootstrap=broker.bootstrap, work=work, out=out, progress=progress, options=options,
                  state_backend=args.state_backend, broker_pid=broker.pid(), quiet_load=args.quiet_load,
                  quiet_wait_s=args.quiet_wait)
    rc = 0
    try:
        for s in sections:
            section_meta = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                            "loadavg_start": loadavg(), "flink_options": options}
            try:
                if s == "profile":
                    results[s] = section_profile(bench, args, results)
                else:
                    results[s] = globals()[f"section_{s}"](bench, args)
            except SetupError as e:
                results[s] = {"error": str(e)}
                sys.stderr.write(f"bench {s}: {e}\n")
                rc = 1
            section_meta["loadavg_end"] = loadavg()
            results[s]["run"] = section_meta
            _write_results(results, out, plots=False)
    finally:
        progress.step("writing results, cleaning up")
        if not args.keep_topics and bench.topics:
            try:
                delete_topics(bench.bootstrap, bench.topics)
            except Exception as e:  # the broker may be gone; the data dir is scratch anyway
                sys.stderr.write(f"bench: could not delete topics: {e}\n")
        if ours:
            broker.stop()
        if not merging:
            results["meta"]["loadavg_end"] = loadavg()
        if not merging:
            results["meta"]["seconds"] = round(time.monotonic() - progress.t0, 1)
        paths = _write_results(results, out, plots=True)
    print(f"results: {', '.join(str(p) for p in paths)}")
    print((out / "results.md").read_text().split("\n## ")[0])
    return rc


def _write_results(results: dict, out: Path, plots: bool) -> list:
    paths = []
    if plots:
        try:
            results["figures"] = [Path(f).name for f in make_plots(results, out)]
        except Exception as e:  # a plot must not lose the numbers
            results["plot_error"] = repr(e)
    slim = _slim(results)
    (out / "results.json").write_text(json.dumps(slim, indent=1, default=_jsonable))
    (out / "results.md").write_text(render_markdown(results))
    paths += [out / "results.json", out / "results.md"] + [out / f for f in results.get("figures", [])]
    return paths
