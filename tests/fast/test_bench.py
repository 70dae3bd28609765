"""The bench package without Flink or Kafka: statistics, option parsing, the value check, rendering."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

import bench.command
import bench.cpu
import bench.memory
import bench.observe
import bench.options
import bench.plots
import bench.report
import bench.settings
import bench.sql
import bench.stats
from streamscore.cli import build_parser


def test_percentile_matches_numpy():
    rng = np.random.default_rng(3)
    vals = sorted(rng.exponential(20, 1001).tolist())
    for q in (0, 1, 50, 95, 99, 99.9, 100):
        assert bench.stats.percentile(vals, q) == pytest.approx(np.percentile(vals, q))
    with pytest.raises(ValueError):
        bench.stats.percentile([], 50)
    with pytest.raises(ValueError):
        bench.stats.percentile([1.0], 101)


def test_latency_summary():
    s = bench.stats.latency_summary([30.0, 10.0, 20.0])
    assert s == {"n": 3, "mean": 20.0, "p50": 20.0, "p95": 29.0, "p99": 29.8, "max": 30.0}
    assert bench.stats.latency_summary([])["p99"] is None


def test_rates_and_ratios():
    assert bench.stats.per_second(10, 2) == 5
    assert bench.stats.per_second(10, None) is None
    assert bench.stats.ratio(3, 6) == 0.5
    assert bench.stats.ratio(3, None) is None
    assert bench.options.parse_rates("1000,5k") == [1000, 5000]
    for bad in ("", "0", "fast", "-5"):
        with pytest.raises(ValueError):
            bench.options.parse_rates(bad)


def test_variants_and_options():
    assert bench.options.parse_variant("x:a=1,b=2") == ("x", {"a": "1", "b": "2"})
    with pytest.raises(ValueError):
        bench.options.parse_variant("bad name:a=1")
    with pytest.raises(ValueError):
        bench.options.parse_variant("x:novalue")
    assert bench.options.parse_options(["python.fn-execution.bundle.time=5"]) == {"python.fn-execution.bundle.time": "5"}
    with pytest.raises(ValueError):
        bench.options.parse_options(["nokey"])


def _args(*argv):
    return build_parser().parse_args(["bench", *argv])


def test_quick_and_full_defaults():
    q = _args("--quick")
    bench.options.resolve_defaults(q)
    assert (q.events, q.cards, q.backfill_events) == (20_000, 2_000, 50_000)
    assert q.sections.split(",") == list(bench.settings.QUICK_SECTIONS)
    assert q.delivery == "at-least-once" and q.latency_variant == ["default"] and q.ablations is False
    assert q.out.endswith("bench/results/quick")
    f = _args("--events", "1234", "--rates", "500")
    bench.options.resolve_defaults(f)
    assert (f.events, f.backfill_events, f.rates) == (1234, 1_000_000, "500")
    assert f.sections.split(",") == list(bench.settings.SECTIONS)
    assert f.delivery == "at-least-once,exactly-once" and len(f.latency_variant) == 2 and f.ablations is True
    a = _args("--quick", "--ablations")
    bench.options.resolve_defaults(a)
    assert a.ablations is True
    for bad in (["--sections", "speed"], ["--delivery", "maybe"], ["--events", "0"]):
        a = _args(*bad)
        with pytest.raises(ValueError):
            bench.options.resolve_defaults(a)


def _features(n=4, seed=0):
    from features.fraud import FRAUD_FEATURES

    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"event_id": [f"e{i}" for i in range(n)], "card_id": "c", "event_time": np.arange(n)})
    for f in FRAUD_FEATURES.features:
        if f.dtype == "int64":
            df[f.name] = rng.integers(0, 10, n)
        elif f.dtype == "float64":
            df[f.name] = rng.normal(1e6, 1e5, n)
        else:
            df[f.name] = rng.random(n) < 0.5
    df.loc[1, "amount_std_30d"] = np.nan
    df["device_first_seen"] = pd.array([True, None, False, True], dtype="object")
    return df


def test_compare_features_tolerance_nulls_and_rows():
    ref = _features()
    same = ref.copy()
    same["amount_sum_24h"] = same["amount_sum_24h"] * (1 + 5e-10)  # within 1e-9 relative
    same["device_first_seen"] = pd.array([True, pd.NA, False, True], dtype="boolean")  # Flink's nullable bool
    out = bench.stats.compare_features(same.iloc[::-1], ref)  # row order does not matter
    assert out["agree"], out
    assert out["compared"] == 4

    bad = ref.copy()
    bad.loc[0, "txn_count_1h"] += 1
    bad.loc[2, "amount_sum_1h"] *= 1 + 1e-8
    bad.loc[1, "amount_std_30d"] = 0.0  # a value where the reference has a null
    bad.loc[3, "device_first_seen"] = None
    out = bench.stats.compare_features(bad, ref)
    assert not out["agree"]
    assert {k: v for k, v in out["mismatches"].items() if v} == {
        "txn_count_1h": 1, "amount_sum_1h": 1, "amount_std_30d": 1, "device_first_seen": 1}
    assert out["examples"][0]["feature"] == "txn_count_1h"
    json.dumps(out)  # JSON-able as it goes into results.json

    short = bench.stats.compare_features(ref.iloc[:3], ref)
    assert short["missing_in_flink"] == 1 and not short["agree"]
    dup = bench.stats.compare_features(pd.concat([ref, ref.iloc[:1]]), ref)
    assert dup["duplicates_flink"] == 1 and not dup["agree"]


def test_small_absolute_differences_pass_below_one():
    ref = _features()
    ref["amount_zscore_30d"] = [0.5, -0.25, 1e-12, 0.0]
    got = ref.copy()
    got["amount_zscore_30d"] = [0.5 + 5e-10, -0.25, 0.0, 9e-10]
    assert bench.stats.compare_features(got, ref)["agree"]


def test_operator_shares_and_cpu_breakdown():
    snap = {"vertices": [{"name": "src -> parse", "busy_ms": 600.0, "backpressured_ms": 350.0, "idle_ms": 50.0},
                         {"name": "features -> score", "busy_ms": 1000.0, "backpressured_ms": 0.0, "idle_ms": 0.0},
                         {"name": "not reported yet", "busy_ms": 0.0, "backpressured_ms": 0.0, "idle_ms": 0.0}]}
    shares = bench.observe.operator_shares(snap)
    assert [s["busy_pct"] for s in shares] == [60.0, 100.0]
    assert bench.observe.operator_shares(None) == []
    rows = dict(bench.cpu.cpu_breakdown({"java": 20.0, "python-udf": 3.0, "python": 1.0},
                                    {"fraud_card_feat": 9.0, "Source: src_1": 6.0, "C1 CompilerThre": 2.0,
                                     "G1 Conc#0": 0.5}, broker_cpu=1.5))
    assert rows["JVM thread fraud_card_feat"] == 9.0
    assert rows["JVM JIT compiler"] == 2.0 and rows["JVM GC"] == 0.5
    assert rows["JVM other"] == pytest.approx(20.0 - 17.5)
    assert rows["Kafka broker"] == 1.5 and rows["Python UDF worker (process mode)"] == 3.0


def test_checkpoint_sizes_along_the_stream():
    tl = [(0.0, 0, 100, None), (1.0, 20, 100, 1 * 2**20), (2.0, 60, 100, 3 * 2**20), (3.0, 100, 100, 4 * 2**20)]
    assert bench.memory._ckpt_at(tl, 100) == {"25%": 3.0, "50%": 3.0, "75%": 4.0, "100%": 4.0}
    assert bench.memory._last_rss_mb([(0.0, 5, 2**20, None), (1.0, 10, 3 * 2**20, None), (2.0, 10, 2**19, None)]) == 3.0


def _results():
    tl = [(0.0, 0, 100 * 2**20, None), (5.0, 500, 200 * 2**20, 2**20)]
    fraud = {"events": 1000, "wall_s": 30.0, "execute_s": 20.0, "net_s": 10.0, "span_s": 5.0, "events_per_s": 100.0,
             "events_per_s_span": 200.0, "cpu_s": 20.0, "events_per_cpu_s": 50.0, "rss_peak_mb": 900.0,
             "loadavg": "1 1 1 → 2 2 2", "timeline": tl,
             "cpu_breakdown": [["JVM thread fraud_card_feat", 12.0], ["JVM other", 8.0]],
             "rest": {"vertices": [{"name": "features", "busy_ms": 9.0, "backpressured_ms": 0.0, "idle_ms": 1.0}]}}
    sql = dict(fraud, events_per_s=400.0, events_per_s_span=500.0, events_per_cpu_s=300.0)
    phase = {"rate": 2000, "sent": 4000, "achieved_rate": 1998.0, "missing": 0,
             "consumer": bench.stats.latency_summary([10, 20, 30, 150]), "internal": bench.stats.latency_summary([5, 6, 7]),
             "samples": [10, 20, 30, 150], "series": [[100.0, 10.0], [100.5, 150.0], [101.0, 20.0]]}
    return {
        "meta": {"command": "streamscore bench --quick", "date": "2026-11-22", "commit": "abc", "cpus": 2,
                 "loadavg_start": "1 1 1", "loadavg_end": "2 2 2"},
        "throughput": {"events": 200_000, "fraud": fraud, "sql": sql, "note": "how it was measured"},
        "scaling": {"runs": [{"job": "fraud", "parallelism": 1, "events_per_s": 100.0, "speedup": 1.0},
                             {"job": "fraud", "parallelism": 2, "events_per_s": 150.0, "speedup": 1.5},
                             {"job": "sql", "parallelism": 1, "events_per_s": 400.0, "speedup": 1.0},
                             {"job": "sql", "parallelism": 2, "events_per_s": 700.0, "speedup": 1.75}]},
        "backfill": {"events": 1_000_000, "flink": {"wall_s": 40.0, "net_s": 25.0, "rows_per_s": 200.0,
                                               "rows_per_s_wall": 125.0, "cpu_s": 30.0},
                     "reference": {"seconds": 1.0, "rows_per_s": 5000.0, "cpu_s": 1.0},
                     "check": {"agree": True, "compared": 5000, "missing_in_flink": 0, "extra_in_flink": 0,
                               "mismatches": {"txn_count_1h": 0}}},
        "latency": {"note": "consumer-observed", "runs": [
            {"variant": "default", "delivery": "at-least-once", "options": {}, "phases": [phase],
             "checkpoints": [{"trigger_s": 100.2, "duration_ms": 300, "size_bytes": 1000, "status": "COMPLETED"}]},
            {"variant": "low-latency", "delivery": "at-least-once",
             "options": {"python.fn-execution.bundle.time": "5"}, "phases": [dict(phase, rate=5000)]},
            {"variant": "default", "delivery": "exactly-once", "options": {}, "phases": [],
             "error": "no decision within 180 s"}]},
        "memory": {"events": 10000, "days": 70, "cards": 100, "note": "x10", "runs": [
            {"job": "fraud", "events": 10000, "events_per_s": 90.0, "rss_peak_mb": 1000.0, "rss_end_mb": 950.0,
             "checkpoint_mb_at": {"25%": 1.0, "50%": 2.0, "75%": 2.5, "100%": 2.5}, "timeline": tl}]},
        "profile": {"operators": [{"name": "features", "busy_pct": 90.0, "backpressured_pct": 0.0, "idle_pct": 10.0}],
                    "cpu": [["JVM thread fraud_card_feat", 12.0]], "cpu_total": 20.0,
                    "python": {"events": 100, "us_per_event": {"parse": 20.0, "keyed": 30.0}, "us_total": 50.0,
                               "max_events_per_s": 20000},
                    "ablations": [{"variant": "as measured", "events_per_s": 100.0}]},
        "figures": ["throughput.png"],
    }


def test_summary_rows_state_targets():
    rows = bench.report.summary_rows(_results())
    tp = rows[0]
    assert tp[1] == "100" and tp[2] == "SQL 400" and tp[3] == "0.25" and tp[5] == "**no**"
    bf = next(r for r in rows if r[0].startswith("Backfill, "))
    assert bf[3] == "0.040" and bf[5] == "**no**"
    agree = next(r for r in rows if "agree" in r[0])
    assert agree[5] == "yes"
    lat = [r for r in rows if r[0].startswith("Latency")]
    assert lat[0][1] == "25.0 / 132.0 / 146.4" and lat[0][5] == "**no**"  # p99 146 ms at 2,000/s
    assert lat[1][5] == "–"  # 5,000/s has no target


def test_small_runs_are_not_judged():
    res = _results()
    res["throughput"]["events"] = 20_000
    res["backfill"]["events"] = 50_000
    rows = bench.report.summary_rows(res)
    assert rows[0][5] == "–" and "too few events" in rows[0][0]
    bf = next(r for r in rows if r[0].startswith("Backfill, "))
    assert bf[5] == "–"


def test_render_markdown_has_every_section():
    md = bench.report.render_markdown(_results())
    for heading in ("# streamscore bench results", "## Throughput, Kafka to Kafka", "## Scaling",
                    "## Backfill", "## Latency", "## State and memory", "## Profile of the fraud job", "## Plots"):
        assert heading in md
    assert "`streamscore bench --quick`" in md
    assert "bundle.time=5" in md  # which options gave which latency
    assert "error: no decision within 180 s" in md
    assert "![throughput](throughput.png)" in md
    # every table row has as many cells as its header
    for block in md.split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.startswith("|")]
        if lines:
            widths = {ln.count(" | ") for ln in lines if not ln.startswith("|---")}
            assert len(widths) == 1, block


def test_render_markdown_of_partial_results():
    md = bench.report.render_markdown({"meta": {}, "throughput": {"error": "broker down"}})
    assert md.startswith("# streamscore bench results")


def test_slim_thins_timelines():
    res = {"a": {"timeline": [(i, i, i, None) for i in range(3000)], "x": 1}}
    slim = bench.report._slim(res)
    assert len(slim["a"]["timeline"]) <= 300 and slim["a"]["x"] == 1
    assert len(res["a"]["timeline"]) == 3000


def test_velocity_sql_is_chained_over_windows():
    src, sink, query = bench.sql.velocity_sql({"bootstrap": "b:1", "topic": "t", "out_topic": "o"})
    assert "METADATA FROM 'timestamp'" in src and "'scan.bounded.mode' = 'latest-offset'" in src
    assert "INTERVAL '5.000' SECOND" in src
    assert "'topic' = 'o'" in sink
    for w in ("'1' HOUR", "'24' HOUR", "'7' DAY"):
        assert f"RANGE BETWEEN INTERVAL {w} PRECEDING AND CURRENT ROW" in query
    assert all(c in query for c, _ in bench.sql.VELOCITY_COLUMNS)
    _, blackhole, _ = bench.sql.velocity_sql({"bootstrap": "b:1", "topic": "t", "out_topic": None})
    assert "'blackhole'" in blackhole


def test_plots_render_without_a_display(tmp_path):
    files = bench.plots.make_plots(_results(), tmp_path)
    assert {p.split("/")[-1] for p in files} == {"throughput.png", "scaling.png", "backfill.png", "latency.png",
                                                 "latency-over-time.png", "memory.png"}
    assert all((tmp_path / p.split("/")[-1]).stat().st_size > 1000 for p in files)


def test_bench_is_a_command():
    args = build_parser().parse_args(["bench", "--quick"])
    assert args.func is bench.command.bench_main
    assert isinstance(args, argparse.Namespace)
