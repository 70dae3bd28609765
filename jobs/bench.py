"""`streamscore bench`: the fraud job measured against a reference in the same run.

Sections (``--sections``; all by default, ``--quick`` runs small versions of the first three):

* throughput  N payments pre-loaded into Kafka; the fraud job (``streamscore run fraud --until
              latest``, decisions to Kafka) vs a Java-only Flink SQL job computing the velocity
              features with OVER RANGE windows over the same topic.
* backfill    ``streamscore backfill fraud`` (Flink BATCH) vs ``features.fraud_reference``
              (pandas) on the same Parquet file, and whether their values agree.
* latency     event-to-decision latency at fixed producer rates, consumer-observed and
              job-internal, per delivery guarantee and Flink option set.
* scaling     throughput at parallelism 1 and 2 over a 2-partition topic (fraud and SQL).
* memory      a stream 10x longer with the same cards: RSS and checkpoint size over time.
* profile     where the fraud job's time goes: per-operator busy/back-pressure (REST), CPU per
              process and JVM thread, a cProfile of the Python per-event path, and ablations.

Every Flink job runs in its own process (``python -m jobs.bench --worker SPEC``) on a local
MiniCluster, one at a time, against a broker this command starts on ``--port`` (19392) and stops
again. Results go to ``--out`` as results.json, results.md and PNG plots.
"""
from __future__ import annotations

import json
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from jobs.runtime import ROOT, RUN_DIR, SetupError

RESULTS_DIR = ROOT / "bench" / "results"
SECTIONS = ("throughput", "backfill", "latency", "scaling", "memory", "profile")
QUICK_SECTIONS = ("throughput", "backfill", "latency", "profile")
VELOCITY_COLUMNS = (("txn_count_1h", "BIGINT"), ("txn_count_24h", "BIGINT"), ("txn_count_7d", "BIGINT"),
                    ("amount_sum_1h", "DOUBLE"), ("amount_sum_24h", "DOUBLE"))
PAYMENT_SQL = (("event_id", "STRING"), ("event_time", "BIGINT"), ("card_id", "STRING"),
               ("merchant_id", "STRING"), ("mcc", "STRING"), ("amount", "DOUBLE"), ("currency", "STRING"),
               ("lat", "DOUBLE"), ("lon", "DOUBLE"), ("device_id", "STRING"))
# Shorter flush timeouts: the network buffer between the keyBy'd tasks (default 100 ms) and the pandas
# UDF's bundle (50 ms in flink-conf). Smaller bundle/arrow *sizes* were tried and cost more throughput
# than they saved in waiting (see bench/README.md).
LOW_LATENCY = {"execution.buffer-timeout.interval": "10 ms", "python.fn-execution.bundle.time": "10"}
TARGETS = {"throughput_ratio": 0.5, "backfill_ratio": 0.5, "latency_p99_ms": 100.0, "latency_rate": 2000}
# Below this many events a job's net runtime is mostly task deployment and Python worker start-up:
# the ratios are shown but not judged against the targets (--quick).
MIN_EVENTS_FOR_TARGET = 100_000


# =============================================================================================
# Pure helpers: statistics, options, comparison, rendering (tested in tests/fast/test_bench.py)
# =============================================================================================
def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, linear interpolation (numpy's default).

    >>> percentile([1, 2, 3, 4], 50), percentile([5.0], 99), percentile([0, 10], 95)
    (2.5, 5.0, 9.5)
    """
    n = len(sorted_values)
    if n == 0:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within [0, 100], got {q}")
    pos = (n - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return float(sorted_values[lo]) + (float(sorted_values[hi]) - float(sorted_values[lo])) * frac


def latency_summary(values_ms: Iterable[float]) -> dict:
    """n, mean, p50/p95/p99 and max of latencies in ms (None-valued stats for no values).

    >>> s = latency_summary(range(1, 101))
    >>> s["n"], s["p50"], s["p99"], s["max"]
    (100, 50.5, 99.01, 100.0)
    """
    vals = sorted(float(v) for v in values_ms)
    if not vals:
        return {"n": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    return {"n": len(vals), "mean": round(sum(vals) / len(vals), 3),
            "p50": round(percentile(vals, 50), 3), "p95": round(percentile(vals, 95), 3),
            "p99": round(percentile(vals, 99), 3), "max": round(vals[-1], 3)}


def per_second(count: float, seconds: Optional[float]) -> Optional[float]:
    """count / seconds, None when the duration is unknown or not positive.

    >>> per_second(1000, 4), per_second(5, 0), per_second(5, None)
    (250.0, None, None)
    """
    if seconds is None or seconds <= 0:
        return None
    return count / seconds


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """a / b, or None if either is missing or b is 0.

    >>> ratio(1.0, 4.0), ratio(None, 1.0), ratio(1.0, 0.0)
    (0.25, None, None)
    """
    if a is None or b is None or b == 0:
        return None
    return a / b


def parse_rates(text: str) -> list:
    """Producer rates from "1000,5000" (events/s, each > 0).

    >>> parse_rates("1000, 2k,5000")
    [1000, 2000, 5000]
    """
    rates = []
    for part in text.split(","):
        p = part.strip().lower()
        if not p:
            continue
        mult = 1000 if p.endswith("k") else 1
        try:
            r = int(float(p.rstrip("k")) * mult)
        except ValueError:
            raise ValueError(f"bad rate {part!r} in --rates (use e.g. 1000,5000)") from None
        if r <= 0:
            raise ValueError(f"rates must be > 0, got {part!r}")
        rates.append(r)
    if not rates:
        raise ValueError("--rates needs at least one rate")
    return rates


def parse_variant(text: str) -> tuple:
    """A latency option set: "NAME" or "NAME:KEY=VALUE,KEY=VALUE" -> (name, {key: value}).

    >>> parse_variant("small-bundles:python.fn-execution.bundle.time=5,python.fn-execution.bundle.size=100")
    ('small-bundles', {'python.fn-execution.bundle.time': '5', 'python.fn-execution.bundle.size': '100'})
    >>> parse_variant("default")
    ('default', {})
    """
    name, _, opts = text.partition(":")
    name = name.strip()
    if not name or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"bad --latency-variant {text!r}: use NAME or NAME:KEY=VALUE[,KEY=VALUE...]")
    out = {}
    for kv in filter(None, (s.strip() for s in opts.split(","))):
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise ValueError(f"bad option {kv!r} in --latency-variant {text!r}: use KEY=VALUE")
        out[k.strip()] = v.strip()
    return name, out


def parse_options(pairs: Sequence[str]) -> dict:
    """-D KEY=VALUE pairs -> dict.

    >>> parse_options(["a.b=1", "c=x=y"])
    {'a.b': '1', 'c': 'x=y'}
    """
    out = {}
    for kv in pairs:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise ValueError(f"-D takes KEY=VALUE, got {kv!r}")
        out[k] = v
    return out


def compare_features(flink, ref, tol: float = 1e-9) -> dict:
    """Do two feature frames (``FRAUD_FEATURES`` columns, keyed by event_id) agree?

    Integers and booleans must be equal, floats within ``tol`` relative to max(1, |value|)
    (absolute below 1); a null must meet a null. Returns counts per column and a few examples.
    """
    import numpy as np
    import pandas as pd

    from features.fraud import FRAUD_FEATURES

    a = flink.drop_duplicates("event_id").set_index("event_id")
    b = ref.drop_duplicates("event_id").set_index("event_id")
    common = a.index.intersection(b.index)
    out = {"rows_flink": int(len(flink)), "rows_reference": int(len(ref)),
           "duplicates_flink": int(len(flink) - len(a)), "missing_in_flink": int(len(b.index.difference(a.index))),
           "extra_in_flink": int(len(a.index.difference(b.index))), "compared": int(len(common)),
           "tolerance": tol, "mismatches": {}, "examples": []}
    a, b = a.loc[common], b.loc[common]
    for f in FRAUD_FEATURES.features:
        x, y = a[f.name], b[f.name]
        xn, yn = x.isna().to_numpy(), y.isna().to_numpy()
        if f.dtype == "float64":
            xv = pd.to_numeric(x, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            yv = pd.to_numeric(y, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            with np.errstate(invalid="ignore"):
                close = np.abs(xv - yv) <= tol * np.maximum(1.0, np.maximum(np.abs(xv), np.abs(yv)))
            same = (xn & yn) | (~xn & ~yn & close)
        else:
            xo, yo = x.astype(object).to_numpy(), y.astype(object).to_numpy()
            eq = np.array([p == q for p, q in zip(xo, yo)], dtype=bool) if len(xo) else np.zeros(0, bool)
            same = (xn & yn) | (~xn & ~yn & eq)
        bad = int((~same).sum())
        out["mismatches"][f.name] = bad
        if bad and len(out["examples"]) < 5:
            i = int(np.flatnonzero(~same)[0])
            out["examples"].append({"event_id": str(common[i]), "feature": f.name,
                                    "flink": _jsonable(x.iloc[i]), "reference": _jsonable(y.iloc[i])})
    out["agree"] = (sum(out["mismatches"].values()) == 0 and out["missing_in_flink"] == 0
                    and out["extra_in_flink"] == 0 and out["duplicates_flink"] == 0)
    return out


def _jsonable(v):
    try:
        import numpy as np

        if isinstance(v, np.generic):
            v = v.item()
    except ImportError:  # pragma: no cover
        pass
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def fmt_num(v, digits: int = 0) -> str:
    """Thousands separators; "–" for a missing value.

    >>> fmt_num(12345.678), fmt_num(0.4567, 2), fmt_num(None)
    ('12,346', '0.46', '–')
    """
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:,.{digits}f}"


def md_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub Markdown table; cells are str()-ed, "|" escaped.

    >>> print(md_table(["a", "b"], [[1, "x|y"]]))
    | a | b |
    |---|---|
    | 1 | x\\|y |
    """
    def cell(v):
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _verdict(ok: Optional[bool]) -> str:
    return "–" if ok is None else ("yes" if ok else "**no**")


def summary_rows(results: dict) -> list:
    """The headline rows: (figure, streamscore, reference, ratio, target, met)."""
    rows = []
    tp = results.get("throughput")
    if tp and tp.get("fraud") and tp.get("sql"):
        f, s = tp["fraud"], tp["sql"]
        r = ratio(f.get("events_per_s"), s.get("events_per_s"))
        judged = r is not None and tp["events"] >= MIN_EVENTS_FOR_TARGET
        small = "" if tp["events"] >= MIN_EVENTS_FOR_TARGET else "; too few events to judge"
        rows.append([f"Kafka→Kafka throughput, {tp['events']:,} events (events/s, net job runtime{small})",
                     fmt_num(f.get("events_per_s")), f"SQL {fmt_num(s.get('events_per_s'))}",
                     fmt_num(r, 2), f"≥ {TARGETS['throughput_ratio']}",
                     _verdict(r >= TARGETS["throughput_ratio"] if judged else None)])
        r2 = ratio(f.get("events_per_s_span"), s.get("events_per_s_span"))
        rows.append(["same, steady state (events/s between first and last output record)",
                     fmt_num(f.get("events_per_s_span")), f"SQL {fmt_num(s.get('events_per_s_span'))}",
                     fmt_num(r2, 2), "", ""])
        r3 = ratio(f.get("events_per_cpu_s"), s.get("events_per_cpu_s"))
        rows.append(["same, per CPU second of the job's processes (contention-proof)",
                     fmt_num(f.get("events_per_cpu_s")), f"SQL {fmt_num(s.get('events_per_cpu_s'))}",
                     fmt_num(r3, 2), "", ""])
    bf = results.get("backfill")
    if bf and bf.get("flink") and bf.get("reference"):
        f, p = bf["flink"], bf["reference"]
        r = ratio(f.get("rows_per_s"), p.get("rows_per_s"))
        judged = r is not None and bf["events"] >= MIN_EVENTS_FOR_TARGET
        small = "" if bf["events"] >= MIN_EVENTS_FOR_TARGET else "; too few events to judge"
        rows.append([f"Backfill, {bf['events']:,} events (rows/s, net job runtime{small})",
                     fmt_num(f.get("rows_per_s")), f"pandas {fmt_num(p.get('rows_per_s'))}", fmt_num(r, 3),
                     f"≥ {TARGETS['backfill_ratio']}", _verdict(r >= TARGETS["backfill_ratio"] if judged else None)])
        agree = (bf.get("check") or {}).get("agree")
        rows.append(["Backfill values agree with the pandas reference (ints exact, floats 1e-9)",
                     "", "", "", "all rows", _verdict(agree)])
    lat = results.get("latency")
    if lat and lat.get("runs"):
        for run in lat["runs"]:
            for ph in run.get("phases", []):
                c = ph.get("consumer") or {}
                target = ""
                met = None
                if run["delivery"] == "at-least-once" and ph["rate"] <= TARGETS["latency_rate"] \
                        and c.get("p99") is not None:
                    target = f"p99 < {TARGETS['latency_p99_ms']:.0f} ms (at {TARGETS['latency_rate']:,}/s)"
                    met = c["p99"] < TARGETS["latency_p99_ms"] if ph["rate"] == TARGETS["latency_rate"] else None
                rows.append([f"Latency p50/p95/p99 ms, {ph['rate']:,}/s, {run['delivery']}, {run['variant']}",
                             f"{fmt_num(c.get('p50'), 1)} / {fmt_num(c.get('p95'), 1)} / {fmt_num(c.get('p99'), 1)}",
                             "", "", target, _verdict(met)])
    return rows


def render_markdown(results: dict) -> str:
    """results.json as a Markdown report: headline table, then one table per section."""
    meta = results.get("meta", {})
    out = ["# streamscore bench results", ""]
    if meta:
        out.append(f"`{meta.get('command', 'streamscore bench')}`, {meta.get('date', '?')}, repository at "
                   f"{meta.get('commit', '?')}, {meta.get('cpus', '?')} CPUs; load average at start "
                   f"{meta.get('loadavg_start', '?')}, at end {meta.get('loadavg_end', '?')}.")
        for m in meta.get("merged", []):
            out.append(f"Sections updated later with `{m}`.")
        out.append("")
    rows = summary_rows(results)
    if rows:
        out += [md_table(["figure", "streamscore", "reference", "ratio", "target", "met"], rows), ""]

    tp = results.get("throughput")
    if tp:
        out += ["## Throughput, Kafka to Kafka", "", _run_line(tp), tp.get("note", ""), ""]
        out.append(md_table(
            ["job", "events", "wall s (process)", "execute s", "net runtime s", "first→last output s",
             "events/s (net)", "events/s (span)", "CPU s", "events/CPU s", "peak RSS MB", "load avg"],
            [_job_row(name, tp.get(k)) for k, name in (("fraud", "fraud job"), ("sql", "Java SQL velocity"))
             if tp.get(k)]))
        out.append("")
    sc = results.get("scaling")
    if sc and sc.get("runs"):
        out += ["## Scaling (2-partition topic)", "", _run_line(sc), ""]
        out.append(md_table(["job", "parallelism", "events/s (net)", "events/s (span)", "events/CPU s",
                             "speed-up (net)"],
                            [[r["job"], r["parallelism"], fmt_num(r.get("events_per_s")),
                              fmt_num(r.get("events_per_s_span")), fmt_num(r.get("events_per_cpu_s")),
                              fmt_num(r.get("speedup"), 2)] for r in sc["runs"]]))
        out.append("")
    bf = results.get("backfill")
    if bf:
        out += ["## Backfill", "", _run_line(bf), ""]
        rows = []
        if bf.get("flink"):
            f = bf["flink"]
            rows.append(["streamscore backfill fraud (Flink BATCH)", fmt_num(f.get("wall_s"), 1),
                         fmt_num(f.get("net_s"), 1), fmt_num(f.get("rows_per_s")), fmt_num(f.get("rows_per_s_wall")),
                         fmt_num(f.get("cpu_s"), 1)])
        if bf.get("reference"):
            p = bf["reference"]
            rows.append(["features.fraud_reference (pandas, read + compute + write)", fmt_num(p.get("seconds"), 1),
                         fmt_num(p.get("seconds"), 1), fmt_num(p.get("rows_per_s")), fmt_num(p.get("rows_per_s")),
                         fmt_num(p.get("cpu_s"), 1)])
        out.append(md_table(["pipeline", "wall s", "net s", "rows/s (net)", "rows/s (wall)", "CPU s"], rows))
        chk = bf.get("check")
        if chk:
            bad = {k: v for k, v in chk["mismatches"].items() if v}
            out += ["", f"Value check: {chk['compared']:,} rows compared, missing {chk['missing_in_flink']}, "
                        f"extra {chk['extra_in_flink']}, mismatching columns: {bad or 'none'}; "
                        f"agree: **{chk['agree']}**."]
        out.append("")
    lat = results.get("latency")
    if lat and lat.get("runs"):
        out += ["## Latency (event to decision)", "", _run_line(lat), lat.get("note", ""), ""]
        rows = []
        for run in lat["runs"]:
            for ph in run.get("phases", []):
                c, j = ph.get("consumer") or {}, ph.get("internal") or {}
                rows.append([run["variant"], run["delivery"], _fmt_opts(run.get("options")), f"{ph['rate']:,}",
                             fmt_num(ph.get("achieved_rate")), f"{c.get('n', 0):,}/{ph.get('sent', 0):,}",
                             fmt_num(c.get("p50"), 1), fmt_num(c.get("p95"), 1), fmt_num(c.get("p99"), 1),
                             fmt_num(c.get("max"), 0), fmt_num(j.get("p50"), 1), fmt_num(j.get("p99"), 1)])
            if run.get("error"):
                rows.append([run["variant"], run["delivery"], _fmt_opts(run.get("options")), "", "", "",
                             "", "", "", "", "", f"error: {run['error'][:120]}"])
        out.append(md_table(["variant", "delivery", "Flink options", "rate/s", "sent/s", "received",
                             "p50 ms", "p95 ms", "p99 ms", "max ms", "internal p50", "internal p99"], rows))
        out.append("")
    mem = results.get("memory")
    if mem and mem.get("runs"):
        out += ["## State and memory over a longer stream", "", _run_line(mem), mem.get("note", ""), ""]
        rows = []
        for r in mem["runs"]:
            cp = r.get("checkpoint_mb_at") or {}
            st = r.get("state_mb_at") or {}
            rows.append([r["job"], f"{r['events']:,}", fmt_num(r.get("events_per_s")),
                         fmt_num(r.get("rss_peak_mb")), fmt_num(r.get("rss_end_mb")),
                         " / ".join(fmt_num(st.get(k), 1) for k in ("25%", "50%", "75%", "100%")),
                         " / ".join(fmt_num(cp.get(k), 1) for k in ("25%", "50%", "75%", "100%"))])
        out.append(md_table(["job", "events", "events/s (net)", "peak RSS MB", "RSS at end MB",
                             "checkpointed state MB at 25/50/75/100 %",
                             "checkpoint folder MB at 25/50/75/100 %"], rows))
        out.append("")
    prof = results.get("profile")
    if prof:
        out += ["## Profile of the fraud job", "", _run_line(prof), ""]
        if prof.get("operators"):
            out.append("Per operator chain (Flink REST, accumulated over the throughput run):")
            out.append("")
            out.append(md_table(["task (operator chain)", "busy %", "back-pressured %", "idle %"],
                                [[o["name"][:110], fmt_num(o.get("busy_pct"), 0), fmt_num(o.get("backpressured_pct"), 0),
                                  fmt_num(o.get("idle_pct"), 0)] for o in prof["operators"]]))
            out.append("")
        if prof.get("cpu"):
            out.append("CPU seconds by process / JVM thread during the throughput run:")
            out.append("")
            out.append(md_table(["where", "CPU s", "share"],
                                [[k, fmt_num(v, 1), f"{fmt_num(100 * v / max(prof['cpu_total'], 1e-9), 0)} %"]
                                 for k, v in prof["cpu"]]))
            out.append("")
        py = prof.get("python")
        if py:
            out.append(f"Python per-event path outside Flink ({py['events']:,} events, cProfile off): "
                       + ", ".join(f"{k} {v:.1f} µs" for k, v in py["us_per_event"].items())
                       + f"; together {py['us_total']:.1f} µs/event = at most {fmt_num(py['max_events_per_s'])} events/s "
                         "on one core for the Python work alone.")
            out.append("")
        if prof.get("ablations"):
            out.append(md_table(["variant (same topic)", "events/s (net)", "events/s (span)", "events/CPU s"],
                                [[a["variant"], fmt_num(a.get("events_per_s")), fmt_num(a.get("events_per_s_span")),
                                  fmt_num(a.get("events_per_cpu_s"))] for a in prof["ablations"]]))
            out.append("")
    figs = results.get("figures") or []
    if figs:
        out += ["## Plots", ""] + [f"![{Path(f).stem}]({Path(f).name})" for f in figs] + [""]
    return "\n".join(out).rstrip() + "\n"


def _run_line(section: dict) -> str:
    r = section.get("run") or {}
    if not r:
        return ""
    return (f"Measured by `{r.get('command')}` on {r.get('date')}; load average {r.get('loadavg_start')} → "
            f"{r.get('loadavg_end')}.\n")


def _fmt_opts(opts: Optional[dict]) -> str:
    if not opts:
        return "project defaults"
    return ", ".join(f"{k.replace('python.fn-execution.', '')}={v}" for k, v in opts.items())


def _job_row(name: str, r: dict) -> list:
    return [name, fmt_num(r.get("events")), fmt_num(r.get("wall_s"), 1), fmt_num(r.get("execute_s"), 1),
            fmt_num(r.get("net_s"), 1), fmt_num(r.get("span_s"), 1), fmt_num(r.get("events_per_s")),
            fmt_num(r.get("events_per_s_span")), fmt_num(r.get("cpu_s"), 1), fmt_num(r.get("events_per_cpu_s")),
            fmt_num(r.get("rss_peak_mb")), r.get("loadavg", "")]


def cpu_breakdown(proc_cpu: dict, thread_cpu: dict, broker_cpu: Optional[float] = None, top: int = 8) -> list:
    """Group CPU seconds into readable buckets: JVM task threads by name, JIT, GC, other JVM,
    Python UDF workers, the job's Python client, the broker. Returns [(label, seconds)], largest first.

    >>> cpu_breakdown({"java": 10.0, "python-udf": 2.0, "python": 1.0},
    ...               {"fraud_card_feat": 5.0, "C2 CompilerThre": 2.0, "GC Thread#0": 1.0})
    [('JVM thread fraud_card_feat', 5.0), ('JVM JIT compiler', 2.0), ('JVM other', 2.0), ('Python UDF worker (process mode)', 2.0), ('JVM GC', 1.0), ('job client (python)', 1.0)]
    """
    buckets: dict = {}
    java_threads = 0.0
    for name, secs in thread_cpu.items():
        java_threads += secs
        if "Compiler" in name:
            key = "JVM JIT compiler"
        elif name.startswith(("GC ", "G1 ")):
            key = "JVM GC"
        else:
            key = f"JVM thread {name}"
        buckets[key] = buckets.get(key, 0.0) + secs
    named = sorted(((k, v) for k, v in buckets.items() if k.startswith("JVM thread")), key=lambda kv: -kv[1])
    keep = dict(named[:top])
    other = sum(v for k, v in named[top:])
    out = dict(keep)
    for k in ("JVM JIT compiler", "JVM GC"):
        if k in buckets:
            out[k] = buckets[k]
    java_total = proc_cpu.get("java", 0.0)
    out["JVM other"] = other + max(0.0, java_total - java_threads)
    if proc_cpu.get("python-udf"):
        out["Python UDF worker (process mode)"] = proc_cpu["python-udf"]
    if proc_cpu.get("python"):
        out["job client (python)"] = proc_cpu["python"]
    if broker_cpu:
        out["Kafka broker"] = broker_cpu
    return sorted(((k, round(v, 3)) for k, v in out.items() if v > 0), key=lambda kv: -kv[1])


def resolve_defaults(args) -> None:
    """Fill the size options the user left unset, from --quick or the full defaults (in place)."""
    quick = bool(args.quick)
    defaults = dict(events=20_000 if quick else 200_000, cards=2_000 if quick else 20_000,
                    backfill_events=50_000 if quick else 1_000_000,
                    rates="1000,2000" if quick else "250,1000,2000,5000", latency_seconds=6.0 if quick else 20.0,
                    warmup_seconds=10.0 if quick else 30.0,
                    delivery="at-least-once" if quick else "at-least-once,exactly-once",
                    sections=",".join(QUICK_SECTIONS if quick else SECTIONS), quiet_wait=0.0 if quick else 240.0,
                    out=str(RESULTS_DIR / "quick") if quick else str(RESULTS_DIR))
    defaults["ablations"] = not quick
    for k, v in defaults.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    if not args.latency_variant:
        args.latency_variant = ["default"] if quick else [
            "default", "low-latency:" + ",".join(f"{k}={v}" for k, v in LOW_LATENCY.items())]
    bad = [s for s in args.sections.split(",") if s.strip() and s.strip() not in SECTIONS]
    if bad:
        raise ValueError(f"unknown --sections {bad}; choose from {', '.join(SECTIONS)}")
    for d in args.delivery.split(","):
        if d.strip() not in ("at-least-once", "exactly-once"):
            raise ValueError(f"--delivery takes at-least-once and/or exactly-once, got {d!r}")
    for name in ("events", "cards", "backfill_events"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0")


# =============================================================================================
# Progress
# =============================================================================================
class Progress:
    """Step headers on stdout; a bar on stderr (tqdm on a terminal, a line every 15 s otherwise)."""

    def __init__(self, total_steps: int, quiet: bool = False):
        self.total = total_steps
        self.n = 0
        self.quiet = quiet
        self.t0 = time.monotonic()

    def step(self, text: str) -> None:
        self.n += 1
        el = time.monotonic() - self.t0
        print(f"[{self.n}/{self.total}] {text}  (+{el:.0f} s)", flush=True)

    def info(self, text: str) -> None:
        print(f"    {text}", flush=True)

    def bar(self, desc: str, total: Optional[int], unit: str = " events"):
        return _Bar(desc, total, unit, self.quiet)


class _Bar:
    def __init__(self, desc, total, unit, quiet):
        self.desc, self.total, self.unit, self.n = desc, total, unit, 0
        self.t0 = self.last_print = time.monotonic()
        self.tqdm = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.tqdm = tqdm(total=total, desc=f"    {desc}", unit=unit, unit_scale=True, leave=False,
                             file=sys.stderr, dynamic_ncols=True)
        self.quiet = quiet

    def set(self, n: int, extra: str = "") -> None:
        n = int(n)
        if self.tqdm is not None:
            self.tqdm.update(max(0, n - self.n))
            if extra:
                self.tqdm.set_postfix_str(extra, refresh=False)
        elif not self.quiet and time.monotonic() - self.last_print >= 15:
            self.last_print = time.monotonic()
            el = time.monotonic() - self.t0
            if self.total:
                sys.stderr.write(f"    {self.desc}: {100 * n / self.total:.0f}% {n:,}/{self.total:,}{self.unit} "
                                 f"after {el:.0f} s {extra}\n")
            else:
                sys.stderr.write(f"    {self.desc}: running for {el:.0f} s {extra}\n")
            sys.stderr.flush()
        self.n = max(self.n, n)

    def close(self) -> None:
        if self.tqdm is not None:
            self.tqdm.close()


# =============================================================================================
# Process and Kafka observation
# =============================================================================================
_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _read_stat(path: str):
    """(comm, fields after the command) of a /proc stat file, or None."""
    try:
        with open(path, "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    lp, rp = data.find("("), data.rfind(")")
    if lp < 0 or rp < 0:
        return None
    return data[lp + 1:rp], data[rp + 2:].split()


def _proc_kind(pid: int, comm: str) -> str:
    if comm == "java":
        return "java"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        cmd = b""
    if b"beam_boot" in cmd or b"pyflink.fn_execution" in cmd:
        return "python-udf"
    if comm.startswith("python") or b"python" in cmd[:200]:
        return "python"
    return "other"


def _load1() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):  # pragma: no cover
        return 0.0


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:  # pragma: no cover
        return "?"


def pid_cpu_seconds(pid: int) -> Optional[float]:
    st = _read_stat(f"/proc/{pid}/stat")
    if st is None:
        return None
    f = st[1]
    return (int(f[11]) + int(f[12])) / _CLK


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


class GroupSampler:
    """Samples a process group (a job we started in its own session): RSS, CPU per process
    and per JVM thread. CPU counters are cumulative; the last value seen per pid/tid is kept."""

    def __init__(self, pgid: int):
        self.pgid = pgid
        self.proc_cpu: dict = {}  # (pid, starttime) -> (kind, seconds)
        self.thread_cpu: dict = {}  # (pid, tid) -> (comm, seconds)
        self.rss_bytes = 0

    def sample(self, threads: bool = True) -> int:
        rss = 0
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            st = _read_stat(f"/proc/{d}/stat")
            if st is None:
                continue
            comm, f = st
            try:
                if int(f[2]) != self.pgid:
                    continue
                pid = int(d)
                cpu = (int(f[11]) + int(f[12])) / _CLK
                rss += int(f[21]) * _PAGE
                key = (pid, f[19])
            except (IndexError, ValueError):
                continue
            kind = self.proc_cpu.get(key, (None,))[0] or _proc_kind(pid, comm)
            self.proc_cpu[key] = (kind, cpu)
            if threads and kind == "java":
                try:
                    tids = os.listdir(f"/proc/{d}/task")
                except OSError:
                    continue
                for tid in tids:
                    ts = _read_stat(f"/proc/{d}/task/{tid}/stat")
                    if ts is None:
                        continue
                    try:
                        self.thread_cpu[(pid, int(tid))] = (ts[0], (int(ts[1][11]) + int(ts[1][12])) / _CLK)
                    except (IndexError, ValueError):
                        continue
        self.rss_bytes = rss
        return rss

    def cpu_by_kind(self) -> dict:
        out: dict = {}
        for kind, secs in self.proc_cpu.values():
            out[kind] = out.get(kind, 0.0) + secs
        return out

    def cpu_by_thread(self) -> dict:
        out: dict = {}
        for comm, secs in self.thread_cpu.values():
            out[comm] = out.get(comm, 0.0) + secs
        return out

    @property
    def cpu_total(self) -> float:
        return sum(s for _, s in self.proc_cpu.values())


class TopicWatch:
    """Record counts (end offsets) and first/last record timestamps of a topic (kafka-python)."""

    def __init__(self, bootstrap: str, topic: str, read_committed: bool = False):
        from kafka import KafkaConsumer

        self.topic = topic
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      client_id="streamscore-bench-watch",
                                      isolation_level="read_committed" if read_committed else "read_uncommitted")
        self._parts = None

    def partitions(self):
        from kafka import TopicPartition

        if not self._parts:
            ps = self.consumer.partitions_for_topic(self.topic) or set()
            self._parts = [TopicPartition(self.topic, p) for p in sorted(ps)]
        return self._parts

    def count(self) -> int:
        parts = self.partitions()
        if not parts:
            self._parts = None
            return 0
        return int(sum(self.consumer.end_offsets(parts).values()))

    def time_span(self) -> tuple:
        """(first, last) record timestamps in ms over all partitions; (None, None) if empty."""
        parts = self.partitions()
        if not parts:
            return None, None
        ends = self.consumer.end_offsets(parts)
        begins = self.consumer.beginning_offsets(parts)
        first, last = None, None
        for tp in parts:
            if ends[tp] <= begins[tp]:
                continue
            self.consumer.assign([tp])
            self.consumer.seek(tp, begins[tp])
            r = self._poll_some(tp)
            if r:
                first = r[0].timestamp if first is None else min(first, r[0].timestamp)
            # the last offsets may be transaction markers: read a short tail, take the newest record
            self.consumer.seek(tp, max(begins[tp], ends[tp] - 20))
            tail = self._poll_some(tp, until=ends[tp])
            if tail:
                ts = max(m.timestamp for m in tail)
                last = ts if last is None else max(last, ts)
        return first, last

    def _poll_some(self, tp, until: Optional[int] = None, timeout_s: float = 10.0) -> list:
        got = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = self.consumer.poll(timeout_ms=500, max_records=50)
            got += batch.get(tp, [])
            if got and (until is None or got[-1].offset >= until - 1 or not batch):
                break
        return got

    def close(self) -> None:
        self.consumer.close()


def _rest_get(port: int, path: str, timeout: float = 2.0):
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return json.loads(r.read().decode())


def rest_snapshot(port: int) -> Optional[dict]:
    """Job id, start time and per-vertex accumulated busy/back-pressured/idle ms of the running job."""
    try:
        jobs = _rest_get(port, "/jobs/overview").get("jobs", [])
        running = [j for j in jobs if j.get("state") == "RUNNING"]
        if not running:
            return None
        jid = running[0]["jid"]
        job = _rest_get(port, f"/jobs/{jid}")
        out = {"jid": jid, "start_time_ms": job.get("start-time"), "now_ms": job.get("now"), "vertices": []}
        names = ("accumulateBusyTimeMs", "accumulateBackPressuredTimeMs", "accumulateIdleTimeMs")
        for v in job.get("vertices", []):
            ms = _rest_get(port, f"/jobs/{jid}/vertices/{v['id']}/subtasks/metrics?get={','.join(names)}")
            vals = {m["id"]: float(m.get("sum", 0.0)) for m in ms}
            vals = {k: (0.0 if math.isnan(v) else v) for k, v in vals.items()}  # not reported yet
            out["vertices"].append({"name": v["name"], "parallelism": v.get("parallelism"),
                                    "busy_ms": vals.get(names[0], 0.0), "backpressured_ms": vals.get(names[1], 0.0),
                                    "idle_ms": vals.get(names[2], 0.0),
                                    "records_in": (v.get("metrics") or {}).get("read-records")})
        return out
    except Exception:  # the job may be starting or finishing: try again next time
        return None


def operator_shares(snapshot: Optional[dict]) -> list:
    """Per vertex busy/back-pressured/idle percentages from a REST snapshot.

    >>> operator_shares({"vertices": [{"name": "a", "busy_ms": 30.0, "backpressured_ms": 60.0, "idle_ms": 10.0}]})
    [{'name': 'a', 'busy_pct': 30.0, 'backpressured_pct': 60.0, 'idle_pct': 10.0}]
    """
    out = []
    for v in (snapshot or {}).get("vertices", []):
        total = v["busy_ms"] + v["backpressured_ms"] + v["idle_ms"]
        if total <= 0:
            continue
        out.append({"name": v["name"], "busy_pct": round(100 * v["busy_ms"] / total, 1),
                    "backpressured_pct": round(100 * v["backpressured_ms"] / total, 1),
                    "idle_pct": round(100 * v["idle_ms"] / total, 1)})
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# =============================================================================================
# Running one Flink job in its own process
# =============================================================================================
@dataclass
class Bench:
    """What every section shares: the broker, folders, options, progress."""

    bootstrap: str
    work: Path
    out: Path
    progress: Progress
    options: dict  # -D options for every Flink job
    state_backend: str = "rocksdb"
    broker_pid: Optional[int] = None
    quiet_load: float = 0.0  # wait for the 1-min load average to drop below this before a measurement
    quiet_wait_s: float = 0.0  # ... for at most this long (0: never wait)
    seq: int = 0
    topics: list = field(default_factory=list)

    def wait_quiet(self) -> dict:
        """Let other people's jobs finish before a measurement (a shared 2-core box): wait until the
        1-minute load average is below ``quiet_load``, at most ``quiet_wait_s``. Returns what happened."""
        t0 = time.monotonic()
        load = _load1()
        if self.quiet_wait_s <= 0 or load < self.quiet_load:
            return {"waited_s": 0.0, "load1": load}
        self.progress.info(f"load average {load:.2f} >= {self.quiet_load}: waiting up to {self.quiet_wait_s:.0f} s "
                           f"for the machine to calm down")
        while time.monotonic() - t0 < self.quiet_wait_s:
            time.sleep(5)
            load = _load1()
            if load < self.quiet_load:
                break
        waited = round(time.monotonic() - t0, 1)
        if load >= self.quiet_load:
            self.progress.info(f"still {load:.2f} after {waited:.0f} s: measuring anyway (flagged in the results)")
        return {"waited_s": waited, "load1": load}

    def name(self, stem: str) -> str:
        self.seq += 1
        return f"bench-{stem}-{os.getpid()}-{self.seq}"


class JobProcess:
    """A Flink job (the worker) in its own session, watched by a sampling thread."""

    def __init__(self, bench: Bench, label: str, spec: dict, out_topic: Optional[str] = None,
                 ckpt_dir: Optional[Path] = None, read_committed: bool = False, threads: bool = True,
                 rest: bool = True, sample_every: float = 0.5):
        self.bench, self.label, self.spec = bench, label, dict(spec)
        self.out_topic, self.ckpt_dir = out_topic, ckpt_dir
        self.read_committed, self.threads, self.sample_every = read_committed, threads, sample_every
        self.rest_port = free_port() if rest else None
        self.timeline: list = []  # (t since start, output records, rss bytes, checkpoint bytes or None)
        self.rest_last = None
        self.track_checkpoints = False
        self.checkpoints: list = []
        self.proc = None
        self.sampler = None
        self._stop = threading.Event()
        self._thread = None
        self.t_start = None
        self.loadavg_start = None

    def start(self, quiet: bool = True) -> "JobProcess":
        b = self.bench
        self.quiet = b.wait_quiet() if quiet else None
        logs = b.work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.label)
        self.result_path = logs / f"{slug}-{b.seq}.result.json"
        self.log_path = logs / f"{slug}-{b.seq}.log"
        self.result_path.unlink(missing_ok=True)
        spec = dict(self.spec, result=str(self.result_path))
        opts = dict(b.options)
        if self.rest_port:
            opts.update({"rest.port": str(self.rest_port), "rest.address": "127.0.0.1",
                         "rest.bind-address": "127.0.0.1"})
        opts.update(spec.get("options") or {})
        spec["options"] = opts
        spec_path = logs / f"{slug}-{b.seq}.spec.json"
        spec_path.write_text(json.dumps(spec, indent=1))
        self.loadavg_start = loadavg()
        self.t_start = time.time()
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "jobs.bench", "--worker", str(spec_path)],
                                     cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.sampler = GroupSampler(self.proc.pid)
        self.broker_cpu0 = pid_cpu_seconds(b.broker_pid) if b.broker_pid else None
        self.watch = TopicWatch(b.bootstrap, self.out_topic, self.read_committed) if self.out_topic else None
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        last_rest = 0.0
        while not self._stop.is_set():
            t = time.time() - self.t_start
            rss = self.sampler.sample(threads=self.threads)
            n = None
            if self.watch is not None:
                try:
                    n = self.watch.count()
                except Exception:
                    n = None
            ck = dir_bytes(self.ckpt_dir) if self.ckpt_dir and self.ckpt_dir.exists() else None
            self.timeline.append((round(t, 2), n, rss, ck))
            if self.rest_port and time.monotonic() - last_rest > 2.0:
                last_rest = time.monotonic()
                snap = rest_snapshot(self.rest_port)
                if snap is not None:
                    self.rest_last = snap
                if self.track_checkpoints:
                    hist = checkpoint_history(self.rest_port)
                    known = {c["trigger_s"] for c in self.checkpoints}
                    self.checkpoints += [c for c in hist if c["trigger_s"] not in known and c["status"] == "COMPLETED"]
            self._stop.wait(self.sample_every)

    @property
    def outputs(self) -> int:
        for _, n, _, _ in reversed(self.timeline):
            if n is not None:
                return n
        return 0

    def wait(self, expected: Optional[int] = None, timeout: Optional[float] = None, desc: str = "") -> dict:
        bar = self.bench.progress.bar(desc or self.label, expected, unit=" outputs")
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while self.proc.poll() is None:
                if deadline is not None and time.monotonic() > deadline:
                    self.kill()
                    raise SetupError(f"{self.label} did not finish within {timeout:.0f} s; see {self.log_path}")
                if self.watch is not None:
                    bar.set(self.outputs, f"{loadavg().split()[0]} load")
                time.sleep(0.5)
        finally:
            bar.close()
        return self.finish()

    def kill(self) -> None:
        """End the job: SIGTERM to its process group (ours), SIGKILL after 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # the JVM is in the same group; make sure nothing of ours is left
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def finish(self) -> dict:
        """Stop sampling and collect what we know about the run."""
        wall = time.time() - self.t_start
        self.sampler.sample(threads=self.threads)
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self._log.close()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftovers of a finished job (none expected)
        except (ProcessLookupError, PermissionError):
            pass
        res = {"label": self.label, "wall_s": round(wall, 2), "returncode": self.proc.returncode,
               "loadavg": f"{self.loadavg_start} → {loadavg()}", "log": str(self.log_path), "quiet": self.quiet}
        if self.result_path.exists():
            res.update(json.loads(self.result_path.read_text()))
        cpu = self.sampler.cpu_by_kind()
        res["cpu_s"] = round(self.sampler.cpu_total, 2)
        res["cpu_by_process"] = {k: round(v, 2) for k, v in cpu.items()}
        broker_cpu = None
        if self.broker_cpu0 is not None:
            now = pid_cpu_seconds(self.bench.broker_pid)
            if now is not None:
                broker_cpu = round(now - self.broker_cpu0, 2)
        res["broker_cpu_s"] = broker_cpu
        res["cpu_breakdown"] = cpu_breakdown(cpu, self.sampler.cpu_by_thread() if self.threads else {}, broker_cpu)
        rss = [r for _, _, r, _ in self.timeline if r]
        res["rss_peak_mb"] = round(max(rss) / 2**20, 1) if rss else None
        res["rest"] = self.rest_last
        res["timeline"] = self.timeline
        if self.track_checkpoints:
            res["checkpoints"] = [dict(c, t=round(c["trigger_s"] - self.t_start, 2)) for c in self.checkpoints]
        if self.watch is not None:
            try:
                first, last = self.watch.time_span()
                res["outputs"] = self.watch.count()
            except Exception as e:  # pragma: no cover
                first = last = None
                res["outputs_error"] = str(e)
            res["first_output_ms"], res["last_output_ms"] = first, last
            res["span_s"] = (last - first) / 1000 if first is not None and last is not None else None
            self.watch.close()
        if self.returncode_failed(res):
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
            res["error"] = res.get("error") or " / ".join(tail)[:500]
        return res

    def returncode_failed(self, res) -> bool:
        return res.get("returncode") not in (0, None, -signal.SIGTERM, -signal.SIGKILL) or "error" in res


def throughput_fields(res: dict, events: int) -> dict:
    """events/s by net runtime (primary), by output span and per CPU second; added to ``res``."""
    net = res.get("net_runtime_ms")
    res["events"] = events
    res["net_s"] = round(net / 1000, 2) if net else None
    res["events_per_s"] = _r(per_second(events, res["net_s"]))
    res["events_per_s_span"] = _r(per_second(events, res.get("span_s")))
    res["events_per_s_wall"] = _r(per_second(events, res.get("wall_s")))
    res["events_per_cpu_s"] = _r(per_second(events, res.get("cpu_s")))
    return res


def _r(v, digits: int = 1):
    return None if v is None else round(v, digits)


# =============================================================================================
# The worker: one Flink job per process (python -m jobs.bench --worker SPEC.json)
# =============================================================================================
def _timed_execute_factory(result_path: str):
    def timed_execute(env, name: str, detached: bool = False) -> int:
        from jobs.run import root_cause

        t0 = time.time()
        try:
            result = env.execute(name)
        except Exception as e:
            _write_json(result_path, {"error": root_cause(e), "execute_s": round(time.time() - t0, 2)})
            sys.stderr.write(f"{name} failed: {root_cause(e)}\n")
            return 1
        t1 = time.time()
        net = result.get_net_runtime()
        _write_json(result_path, {"execute_s": round(t1 - t0, 2), "net_runtime_ms": int(net),
                                  "job_id": str(result.get_job_id()), "execute_start": t0, "execute_end": t1})
        print(f"{name} finished in {t1 - t0:.1f} s, net runtime {net / 1000:.1f} s", flush=True)
        return 0

    return timed_execute


def _write_json(path: str, obj: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def _worker(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    timed = _timed_execute_factory(spec["result"])
    kind = spec["kind"]
    if kind == "cli":
        import jobs.backfill
        import jobs.run
        from jobs.cli import main

        jobs.run.execute = timed  # run() and backfill() call these by name: time the job itself
        jobs.backfill.execute = timed
        argv = list(spec["argv"])
        for k, v in (spec.get("options") or {}).items():
            argv += ["-D", f"{k}={v}"]
        return main(argv)
    if kind in ("sql", "load"):
        from jobs.flinkenv import FlinkSettings, make_env

        settings = FlinkSettings(parallelism=spec.get("parallelism", 1), checkpoint_dir=spec.get("checkpoint_dir"),
                                 state_backend=spec.get("state_backend", "rocksdb"), extra=spec.get("options") or {})
        env, t_env = make_env(settings)
        statements = velocity_sql(spec) if kind == "sql" else loader_sql(spec)
        for ddl in statements[:-1]:
            t_env.execute_sql(ddl)
        ss = t_env.create_statement_set()
        ss.add_insert_sql(statements[-1])
        ss.attach_as_datastream()
        print(f"bench {kind} job: {spec.get('topic') or spec.get('input')} -> {spec.get('out_topic') or spec.get('topic')}",
              flush=True)
        return timed(env, f"bench-{kind}")
    raise ValueError(f"unknown worker kind {kind!r}")


def _ddl_cols(cols) -> str:
    return ", ".join(f"`{n}` {t}" for n, t in cols)


def velocity_sql(spec: dict) -> list:
    """DDL + INSERT of the Java-only reference: per-card velocity features as chained OVER RANGE
    windows (Flink allows one window frame per SELECT) over the rowtime of the Kafka timestamp."""
    bs, topic, out = spec["bootstrap"], spec["topic"], spec["out_topic"]
    group = spec.get("group_id", "bench-sql")
    src = (f"CREATE TEMPORARY TABLE payments ({_ddl_cols(PAYMENT_SQL)}, "
           f"`ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL, "
           f"WATERMARK FOR `ts` AS `ts` - INTERVAL '{int(spec.get('max_disorder_ms', 5000)) / 1000:.3f}' SECOND) WITH ("
           f"'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bs}', "
           f"'properties.group.id' = '{group}', 'scan.startup.mode' = 'earliest-offset', "
           f"'scan.bounded.mode' = 'latest-offset', 'format' = 'json', 'json.ignore-parse-errors' = 'true')")
    cols = [("event_id", "STRING"), ("card_id", "STRING"), ("event_time", "BIGINT")] + list(VELOCITY_COLUMNS)
    if out:
        sink = (f"CREATE TEMPORARY TABLE velocity ({_ddl_cols(cols)}) WITH ('connector' = 'kafka', "
                f"'topic' = '{out}', 'properties.bootstrap.servers' = '{bs}', 'format' = 'json', "
                f"'sink.delivery-guarantee' = 'at-least-once')")
    else:
        sink = f"CREATE TEMPORARY TABLE velocity ({_ddl_cols(cols)}) WITH ('connector' = 'blackhole')"

    def over(w):
        return f"OVER (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL {w} PRECEDING AND CURRENT ROW)"

    query = f"""INSERT INTO velocity
WITH w1h AS (
  SELECT event_id, card_id, event_time, amount, ts,
         COUNT(*) {over("'1' HOUR")} AS txn_count_1h,
         SUM(amount) {over("'1' HOUR")} AS amount_sum_1h
  FROM payments),
w24h AS (
  SELECT event_id, card_id, event_time, ts, txn_count_1h, amount_sum_1h,
         COUNT(*) {over("'24' HOUR")} AS txn_count_24h,
         SUM(amount) {over("'24' HOUR")} AS amount_sum_24h
  FROM w1h)
SELECT event_id, card_id, event_time, txn_count_1h, txn_count_24h,
       COUNT(*) {over("'7' DAY")} AS txn_count_7d,
       amount_sum_1h, amount_sum_24h
FROM w24h"""
    return [src, sink, query]


def loader_sql(spec: dict) -> list:
    """DDL + INSERT of a bulk loader: a Parquet file of payments -> Kafka, as produce_rows writes it
    (JSON value of the payment fields, key card_id, record timestamp = event_time)."""
    src = (f"CREATE TEMPORARY TABLE pq ({_ddl_cols(PAYMENT_SQL)}) WITH ('connector' = 'filesystem', "
           f"'path' = '{Path(spec['input']).resolve().as_uri()}', 'format' = 'parquet')")
    sink = (f"CREATE TEMPORARY TABLE kout ({_ddl_cols(PAYMENT_SQL)}, `ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp') "
            f"WITH ('connector' = 'kafka', 'topic' = '{spec['topic']}', "
            f"'properties.bootstrap.servers' = '{spec['bootstrap']}', 'key.format' = 'raw', "
            f"'key.fields' = 'card_id', 'value.format' = 'json', 'value.fields-include' = 'ALL', "
            f"'sink.delivery-guarantee' = 'at-least-once', 'properties.linger.ms' = '20', "
            f"'properties.batch.size' = '524288')")
    names = ", ".join(f"`{n}`" for n, _ in PAYMENT_SQL)
    query = f"INSERT INTO kout SELECT {names}, TO_TIMESTAMP_LTZ(`event_time`, 3) FROM pq"
    return [src, sink, query]


# =============================================================================================
# Data
# =============================================================================================
def payments_frame(n: int, cards: int, days: float, seed: int):
    from features.synthetic import generate_payments

    return generate_payments(n, seed=seed, n_cards=cards, days=days)


def write_payments(df, path: Path) -> Path:
    import pyarrow.parquet as pq

    from features.contracts import PAYMENT
    from features.synthetic import to_arrow

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_arrow(df, PAYMENT), path)
    return path


def load_topic(bench: Bench, df, topic: str, partitions: int, loader: str, label: str) -> dict:
    """Pre-load ``topic`` with the payments of ``df`` (file order; key card_id; timestamp event_time)."""
    from features.contracts import PAYMENT
    from features.synthetic import to_arrow
    from jobs.kafka_broker import ensure_topic
    from jobs.produce import produce_rows

    ensure_topic(bench.bootstrap, topic, partitions=partitions)
    bench.topics.append(topic)
    use_flink = loader == "flink" or (loader == "auto" and len(df) > 300_000)
    t0 = time.time()
    if use_flink:
        path = write_payments(df, bench.work / "data" / f"{topic}.parquet")
        job = JobProcess(bench, f"load-{label}", {"kind": "load", "input": str(path), "topic": topic,
                                                  "bootstrap": bench.bootstrap, "parallelism": 1},
                         out_topic=topic, threads=False, rest=False).start(quiet=False)
        res = job.wait(expected=len(df), desc=f"loading {topic}")
        path.unlink(missing_ok=True)
        if res.get("error") or res.get("outputs") != len(df):
            raise SetupError(f"loading {topic} failed ({res.get('outputs')} of {len(df)} records): "
                             f"{res.get('error')}; see {res['log']}")
        how = "Flink SQL loader"
    else:
        table = to_arrow(df, PAYMENT, with_raw=False).drop(list(PAYMENT.label_names))
        produce_rows(bench.bootstrap, topic, table, PAYMENT, progress=sys.stderr.isatty())
        how = "kafka-python (jobs.produce.produce_rows)"
    secs = time.time() - t0
    bench.progress.info(f"loaded {len(df):,} events into {topic} ({partitions} partition(s)) with {how} "
                        f"in {secs:.1f} s")
    return {"topic": topic, "events": len(df), "partitions": partitions, "loader": how, "seconds": round(secs, 1)}


# =============================================================================================
# Sections
# =============================================================================================
def fraud_argv(bench: Bench, topic: str, decisions: Optional[str], ckpt: Path, parallelism: int = 1,
               model: Optional[str] = None, until: Optional[str] = "latest", delivery: str = "at-least-once",
               extra: Sequence[str] = (), features_out: str = "none") -> list:
    argv = ["run", "fraud", "--topic", topic, "--bootstrap", bench.bootstrap,
            "--decisions", f"kafka:{decisions}" if decisions else "none", "--features-out", features_out,
            "--dead-letters", "none", "--late", "none", "--delivery", delivery,
            "--group-id", f"bench-{topic}", "--checkpoint-dir", str(ckpt), "-p", str(parallelism),
            "--state-backend", bench.state_backend,
            # the generated streams are clean, but a small run spread over days has gaps of hours
            # in event time, which the default 1 h jump guard would dead-letter as time_skew
            "--max-jump-ms", str(7 * 86_400_000)]
    if until:
        argv += ["--until", until]
    if model:
        argv += ["--model", model]
    return argv + list(extra)


def run_fraud(bench: Bench, topic: str, events: int, label: str, parallelism: int = 1, model=None,
              extra: Sequence[str] = (), features_only: bool = False, sample_ckpt: bool = False) -> dict:
    out = bench.name(label)
    bench.topics.append(out)
    ckpt = bench.work / "ckpt" / out
    if features_only:
        argv = fraud_argv(bench, topic, None, ckpt, parallelism, model, extra=extra, features_out=f"kafka:{out}")
    else:
        argv = fraud_argv(bench, topic, out, ckpt, parallelism, model, extra=extra)
    job = JobProcess(bench, label, {"kind": "cli", "argv": argv,
                                    "options": {"web.checkpoints.history": "1000"} if sample_ckpt else {}},
                     out_topic=out, ckpt_dir=ckpt if sample_ckpt else None)
    job.track_checkpoints = sample_ckpt
    job.start()
    res = throughput_fields(job.wait(expected=events, desc=label), events)
    res["command"] = "streamscore " + " ".join(shlex.quote(a) for a in argv + _dflags(job.spec))
    _cleanup_dir(ckpt, keep=sample_ckpt)
    _check_run(res, events, label)
    return res


def run_sql(bench: Bench, topic: str, events: int, label: str, parallelism: int = 1,
            sample_ckpt: bool = False) -> dict:
    out = bench.name(label)
    bench.topics.append(out)
    ckpt = bench.work / "ckpt" / out
    spec = {"kind": "sql", "bootstrap": bench.bootstrap, "topic": topic, "out_topic": out,
            "parallelism": parallelism, "checkpoint_dir": str(ckpt), "state_backend": bench.state_backend,
            "group_id": f"bench-sql-{out}"}
    if sample_ckpt:
        spec["options"] = {"web.checkpoints.history": "1000"}
    job = JobProcess(bench, label, spec, out_topic=out, ckpt_dir=ckpt if sample_ckpt else None)
    job.track_checkpoints = sample_ckpt
    job.start()
    res = throughput_fields(job.wait(expected=events, desc=label), events)
    res["sql"] = velocity_sql(spec)[-1]
    _cleanup_dir(ckpt, keep=sample_ckpt)
    _check_run(res, events, label)
    return res


def _dflags(spec: dict) -> list:
    out = []
    for k, v in (spec.get("options") or {}).items():
        if not k.startswith(("rest.", "web.")):
            out += ["-D", f"{k}={v}"]
    return out


def _check_run(res: dict, events: int, label: str) -> None:
    if res.get("error"):
        raise SetupError(f"{label} failed: {res['error']} (log {res.get('log')})")
    if res.get("outputs") is not None and res["outputs"] < events:
        res["warning"] = f"only {res['outputs']:,} of {events:,} outputs"


def _cleanup_dir(path: Path, keep: bool = False) -> None:
    import shutil

    if not keep and path.exists():
        shutil.rmtree(path, ignore_errors=True)


def section_throughput(bench: Bench, args) -> dict:
    p = bench.progress
    p.step(f"throughput: generate {args.events:,} payments ({args.cards:,} cards, {args.days} days) "
           f"and pre-load a Kafka topic")
    df = payments_frame(args.events, args.cards, args.days, args.seed)
    topic = bench.name("events")
    load = load_topic(bench, df, topic, 1, args.loader, "throughput")
    del df
    p.step(f"throughput: fraud job over {args.events:,} events (rules{' + model' if args.model else ''}, "
           f"decisions to Kafka)")
    fraud = run_fraud(bench, topic, args.events, "fraud", model=args.model)
    p.info(_tp_line("fraud job", fraud))
    p.step(f"throughput: Java-only Flink SQL velocity job over the same {args.events:,} events")
    sql = run_sql(bench, topic, args.events, "sql-velocity")
    p.info(_tp_line("SQL job", sql))
    r = ratio(fraud["events_per_s"], sql["events_per_s"])
    p.info(f"ratio fraud/SQL {fmt_num(r, 2)} (target >= {TARGETS['throughput_ratio']})")
    return {"events": args.events, "cards": args.cards, "days": args.days, "load": load, "topic": topic,
            "fraud": fraud, "sql": sql, "ratio": r, "ratio_span": ratio(fraud["events_per_s_span"], sql["events_per_s_span"]),
            "ratio_cpu": ratio(fraud["events_per_cpu_s"], sql["events_per_cpu_s"]),
            "note": ("events/s (net) = events / JobExecutionResult.getNetRuntime(): from job submission to "
                     "finish inside the MiniCluster, so JVM and MiniCluster start-up are excluded, task "
                     "deployment and Python worker start are included. events/s (span) = events / time "
                     "between the first and the last output record's Kafka timestamp (steady state). "
                     "events/CPU s = events / CPU seconds of every process of the job (JVM, Python workers, "
                     "client), which is what matters on a shared machine. Both jobs: parallelism 1, "
                     f"{bench.state_backend} state, checkpoints every 10 s, Kafka sink at-least-once.")}


def _tp_line(name: str, r: dict) -> str:
    return (f"{name}: {fmt_num(r.get('events_per_s'))} events/s (net {fmt_num(r.get('net_s'), 1)} s), "
            f"{fmt_num(r.get('events_per_s_span'))} events/s steady, {fmt_num(r.get('events_per_cpu_s'))} "
            f"events/CPU s, wall {fmt_num(r.get('wall_s'), 1)} s, load {r.get('loadavg')}")


def section_scaling(bench: Bench, args) -> dict:
    p = bench.progress
    p.step(f"scaling: pre-load {args.events:,} events into a 2-partition topic")
    df = payments_frame(args.events, args.cards, args.days, args.seed)
    topic = bench.name("events2p")
    load = load_topic(bench, df, topic, 2, args.loader, "scaling")
    del df
    runs = []
    for job, par in (("fraud", 1), ("fraud", 2), ("sql", 1), ("sql", 2)):
        p.step(f"scaling: {job} job, parallelism {par}")
        if job == "fraud":
            r = run_fraud(bench, topic, args.events, f"fraud-p{par}", parallelism=par, model=args.model)
        else:
            r = run_sql(bench, topic, args.events, f"sql-p{par}", parallelism=par)
        p.info(_tp_line(f"{job} p{par}", r))
        base = next((x for x in runs if x["job"] == job and x["parallelism"] == 1), None)
        runs.append({"job": job, "parallelism": par, "events_per_s": r["events_per_s"],
                     "events_per_s_span": r["events_per_s_span"], "events_per_cpu_s": r["events_per_cpu_s"],
                     "speedup": ratio(r["events_per_s"], base["events_per_s"]) if base else 1.0,
                     "net_s": r["net_s"], "cpu_s": r["cpu_s"], "loadavg": r["loadavg"],
                     "timeline": r["timeline"], "rest": r.get("rest")})
    return {"events": args.events, "load": load, "runs": runs}


def section_backfill(bench: Bench, args) -> dict:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from features.fraud_reference import INPUT_COLUMNS, reference_features

    p = bench.progress
    n = args.backfill_events
    p.step(f"backfill: generate {n:,} payments ({args.cards:,} cards, {args.days} days) into Parquet")
    data = bench.work / "data" / f"backfill-{n}-{args.seed}.parquet"
    write_payments(payments_frame(n, args.cards, args.days, args.seed + 1), data)
    out = bench.work / "backfill-out"
    p.step(f"backfill: streamscore backfill fraud (Flink BATCH) over {n:,} events")
    argv = ["backfill", "fraud", "--input", str(data), "--out", str(out), "--overwrite",
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

    p.step("backfill: compare the two outputs value by value")
    files = sorted(f for f in out.rglob("*") if f.is_file() and not f.name.startswith((".", "_")))
    got = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True) if files else pd.DataFrame()
    check = compare_features(got, ref) if len(got) else {"agree": False, "error": "no backfill output",
                                                          "mismatches": {}, "compared": 0,
                                                          "missing_in_flink": n, "extra_in_flink": 0}
    p.info(f"agree: {check['agree']} ({check.get('compared', 0):,} rows compared; mismatches "
           f"{ {k: v for k, v in check['mismatches'].items() if v} or 'none'})")
    del got, ref, df
    data.unlink(missing_ok=True)
    ref_path.unlink(missing_ok=True)
    _cleanup_dir(out)
    _cleanup_dir(out.parent / (out.name + "-dead-letters"))
    return {"events": n, "cards": args.cards, "flink": flink, "reference": reference, "check": check,
            "ratio": ratio(flink["rows_per_s"], reference["rows_per_s"])}


# ---------------------------------------------------------------------------------------- latency
_INGEST = re.compile(rb'"ingest_ms":(\d+)')
_DECIDE = re.compile(rb'"decide_ms":(\d+)')


def _consume_decisions(bootstrap: str, topic: str, read_committed: bool, out_path: str, ready, stop, counter) -> None:
    """Runs in its own process: records (event_id, arrival wall time, ingest_ms, decide_ms)."""
    import pickle

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             client_id="streamscore-bench-latency", fetch_max_wait_ms=100,
                             isolation_level="read_committed" if read_committed else "read_uncommitted")
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    ready.set()
    raw = []
    n = 0
    while not stop.is_set():
        batch = consumer.poll(timeout_ms=20)
        now = time.time()
        for msgs in batch.values():
            for m in msgs:
                raw.append((m.key, now, m.value))
            n += len(msgs)
        counter.value = n
    consumer.close()
    rows = []
    for key, arrived, value in raw:
        i, d = _INGEST.search(value or b""), _DECIDE.search(value or b"")
        rows.append(((key or b"").decode(), arrived, int(i.group(1)) if i else None, int(d.group(1)) if d else None))
    with open(out_path, "wb") as f:
        pickle.dump(rows, f)


class PacedProducer:
    """Sends payment events at a fixed rate, stamping event_time/timestamp with the wall clock
    and remembering each event_id's send time."""

    def __init__(self, bootstrap: str, topic: str, templates: list):
        from jobs.produce import make_producer

        self.topic = topic
        self.producer = make_producer(bootstrap, linger_ms=0, acks=1, batch_size=64 * 1024)
        self.templates = templates  # (card_id bytes, JSON text after event_time)
        self.sent: dict = {}
        self.i = 0
        self.producer.partitions_for(topic)

    def send_one(self, prefix: str) -> None:
        card, tail = self.templates[self.i % len(self.templates)]
        self.i += 1
        eid = f"{prefix}-{self.i:08d}"
        now = time.time()
        ms = int(now * 1000)
        value = f'{{"event_id":"{eid}","event_time":{ms},{tail}'.encode()
        self.producer.send(self.topic, value=value, key=card, timestamp_ms=ms, partition=0)
        self.sent[eid] = now

    def run(self, rate: float, seconds: float, prefix: str, stop_when: Optional[Callable[[], bool]] = None) -> dict:
        total = max(1, int(rate * seconds))
        t0 = time.perf_counter()
        n = 0
        while n < total:
            due = min(total, int((time.perf_counter() - t0) * rate) + 1)
            while n < due:
                self.send_one(prefix)
                n += 1
            if stop_when is not None and stop_when():
                break
            ahead = t0 + n / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        self.producer.flush()
        secs = time.perf_counter() - t0
        return {"sent": n, "seconds": round(secs, 3), "achieved_rate": round(n / secs, 1) if secs > 0 else None}

    def close(self) -> None:
        self.producer.close()


def _templates(df) -> list:
    cols = ("card_id", "merchant_id", "mcc", "amount", "currency", "lat", "lon", "device_id")
    out = []
    for row in df[list(cols)].itertuples(index=False):
        d = dict(zip(cols, row))
        dev = d["device_id"]
        d["device_id"] = None if not isinstance(dev, str) else dev
        body = json.dumps({k: (float(v) if k in ("amount", "lat", "lon") else v) for k, v in d.items()},
                          separators=(",", ":"))
        out.append((d["card_id"].encode(), body[1:]))
    return out


def latency_run(bench: Bench, args, variant: str, options: dict, delivery: str, rates: list, templates: list) -> dict:
    import multiprocessing as mp
    import pickle

    from jobs.kafka_broker import ensure_topic

    p = bench.progress
    in_topic, out_topic = bench.name(f"lat-in-{variant}"), bench.name(f"lat-out-{variant}")
    for t in (in_topic, out_topic):
        ensure_topic(bench.bootstrap, t, partitions=1)
        bench.topics.append(t)
    ckpt = bench.work / "ckpt" / in_topic
    extra = []
    if delivery == "exactly-once":
        extra += ["--checkpoint-interval-ms", str(args.eo_checkpoint_ms)]
    argv = fraud_argv(bench, in_topic, out_topic, ckpt, 1, args.model, until=None, delivery=delivery, extra=extra)
    run = {"variant": variant, "delivery": delivery, "options": options, "phases": [],
           "checkpoint_interval_ms": args.eo_checkpoint_ms if delivery == "exactly-once" else 10_000}
    ctx = mp.get_context("spawn")
    ready, stop, counter = ctx.Event(), ctx.Event(), ctx.Value("q", 0)
    dump = bench.work / "logs" / f"{out_topic}.pickle"
    dump.parent.mkdir(parents=True, exist_ok=True)
    consumer = ctx.Process(target=_consume_decisions, args=(bench.bootstrap, out_topic, delivery == "exactly-once",
                                                            str(dump), ready, stop, counter), daemon=True)
    consumer.start()
    ready.wait(60)
    producer = PacedProducer(bench.bootstrap, in_topic, templates)
    job = JobProcess(bench, f"latency-{variant}-{delivery}",
                     {"kind": "cli", "argv": argv, "options": dict(options, **{"web.checkpoints.history": "100"})},
                     threads=False).start()
    run["command"] = "streamscore " + " ".join(shlex.quote(a) for a in argv + _dflags(job.spec))
    try:
        # warm-up: a trickle until the first decision comes back, then a few seconds at the first rate
        t0 = time.monotonic()
        bar = p.bar(f"latency {variant}/{delivery}: waiting for the first decision", None, unit=" s")
        while counter.value == 0:
            if job.proc.poll() is not None:
                raise SetupError(f"the fraud job exited during warm-up (see {job.log_path})")
            if time.monotonic() - t0 > args.warmup_timeout:
                raise SetupError(f"no decision within {args.warmup_timeout:.0f} s of starting the job "
                                 f"(see {job.log_path})")
            producer.run(50, 0.5, "warm")
            bar.set(int(time.monotonic() - t0))
        bar.close()
        run["first_decision_after_s"] = round(time.monotonic() - t0, 1)
        # JIT compilation of a fresh JVM burns a core for tens of seconds: measure after it
        producer.run(rates[0], args.warmup_seconds, "warm")
        time.sleep(2)
        for rate in rates:
            prefix = f"r{rate}"
            p.info(f"{variant}/{delivery}: {rate:,} events/s for {args.latency_seconds:.0f} s")
            before = counter.value
            ph = producer.run(rate, args.latency_seconds, prefix)
            # drain: wait until everything sent came back, or the deadline
            deadline = time.monotonic() + args.drain_seconds + (run["checkpoint_interval_ms"] / 1000
                                                                if delivery == "exactly-once" else 0)
            want = before + ph["sent"]
            while counter.value < want and time.monotonic() < deadline and job.proc.poll() is None:
                time.sleep(0.2)
            ph.update({"rate": rate, "received_by_drain": counter.value - before, "loadavg": loadavg()})
            run["phases"].append(ph)
            time.sleep(1)
    except SetupError as e:
        run["error"] = str(e)
    finally:
        run["checkpoints"] = checkpoint_history(job.rest_port)
        job.kill()
        jr = job.finish()
        stop.set()
        consumer.join(120)
        producer.close()
        _cleanup_dir(ckpt)
    run["cpu_s"] = jr.get("cpu_s")
    run["loadavg"] = jr.get("loadavg")
    rows = pickle.loads(dump.read_bytes()) if dump.exists() else []
    dump.unlink(missing_ok=True)
    arrivals = {}
    internal = {}
    for eid, arrived, ingest, decide in rows:
        if eid not in arrivals:  # at-least-once may duplicate: the first arrival counts
            arrivals[eid] = arrived
            if ingest is not None and decide is not None:
                internal[eid] = decide - ingest
    for ph in run["phases"]:
        prefix = f"r{ph['rate']}-"
        ids = [e for e in producer.sent if e.startswith(prefix)]
        lat = [1000 * (arrivals[e] - producer.sent[e]) for e in ids if e in arrivals]
        ph["consumer"] = latency_summary(lat)
        ph["internal"] = latency_summary(internal[e] for e in ids if e in internal)
        ph["missing"] = len(ids) - len(lat)
        ph["samples"] = _downsample(sorted(lat), 400)
        ph["series"] = latency_series([(producer.sent[e], 1000 * (arrivals[e] - producer.sent[e]))
                                       for e in ids if e in arrivals])
        p.info(f"  {ph['rate']:,}/s: consumer p50/p95/p99 {fmt_num(ph['consumer']['p50'], 1)}/"
               f"{fmt_num(ph['consumer']['p95'], 1)}/{fmt_num(ph['consumer']['p99'], 1)} ms, internal p99 "
               f"{fmt_num(ph['internal']['p99'], 1)} ms, missing {ph['missing']}")
    return run


def latency_series(points: list, bins: int = 400) -> list:
    """(send wall time s, latency ms) thinned to at most ``bins`` points, keeping each bin's worst.

    >>> latency_series([(0.0, 5.0), (1.0, 50.0), (3.0, 7.0), (4.0, 9.0)], bins=2)
    [[1.0, 50.0], [4.0, 9.0]]
    """
    if not points:
        return []
    points = sorted(points)
    t0, t1 = points[0][0], points[-1][0]
    width = (t1 - t0) / bins or 1.0
    worst: dict = {}
    for t, v in points:
        b = min(int((t - t0) / width), bins - 1)
        if b not in worst or v > worst[b][1]:
            worst[b] = (t, v)
    return [[round(t, 3), round(v, 2)] for _, (t, v) in sorted(worst.items())]


def checkpoint_history(port: Optional[int]) -> list:
    """Trigger time (s), end-to-end duration and size of the running job's recent checkpoints (REST)."""
    if not port:
        return []
    try:
        jobs = _rest_get(port, "/jobs/overview").get("jobs", [])
        running = [j for j in jobs if j.get("state") == "RUNNING"]
        if not running:
            return []
        hist = _rest_get(port, f"/jobs/{running[0]['jid']}/checkpoints").get("history", [])
    except Exception:
        return []
    return sorted(({"trigger_s": h.get("trigger_timestamp", 0) / 1000, "duration_ms": h.get("end_to_end_duration"),
                    "state_bytes": h.get("state_size"), "persisted_bytes": h.get("checkpointed_size"),
                    "status": h.get("status")}
                   for h in hist), key=lambda c: c["trigger_s"])


def _downsample(sorted_vals: list, k: int) -> list:
    """k evenly spaced quantiles of a sorted list (for CDF plots)."""
    if len(sorted_vals) <= k:
        return [round(v, 2) for v in sorted_vals]
    return [round(sorted_vals[int(i * (len(sorted_vals) - 1) / (k - 1))], 2) for i in range(k)]


def section_latency(bench: Bench, args) -> dict:
    p = bench.progress
    rates = parse_rates(args.rates)
    variants = [parse_variant(v) for v in args.latency_variant]
    deliveries = [d.strip() for d in args.delivery.split(",") if d.strip()]
    df = payments_frame(20_000, min(args.cards, 20_000), args.days, args.seed + 2)
    templates = _templates(df)
    runs = []
    plan = [(v, o, "at-least-once") for v, o in variants if "at-least-once" in deliveries]
    if "exactly-once" in deliveries:
        plan.append((variants[0][0], variants[0][1], "exactly-once"))
    for variant, options, delivery in plan:
        p.step(f"latency: fraud job, {delivery}, {variant} ({_fmt_opts(options)}), rates {rates}")
        runs.append(latency_run(bench, args, variant, options, delivery, rates, templates))
    return {"rates": rates, "seconds_per_rate": args.latency_seconds, "runs": runs,
            "note": ("Consumer-observed: a kafka-python consumer (own process) on the decisions topic stamps each "
                     "arrival with the wall clock, minus the producer's wall clock just before send() of that "
                     "event_id (producer linger 0, acks=1). Internal: decide_ms - ingest_ms from the decision "
                     "record (the parse operator's clock to the scoring UDF's). Events carry event_time = send "
                     "time; each rate runs against the same job after a warm-up. Exactly-once output is only "
                     f"visible after a checkpoint ({args.eo_checkpoint_ms} ms interval there), read_committed.")}


def section_memory(bench: Bench, args) -> dict:
    p = bench.progress
    n = args.events * args.memory_factor
    days = args.days * args.memory_factor
    p.step(f"memory: pre-load {n:,} events ({args.memory_factor}x the stream: {days:g} days, same {args.cards:,} cards)")
    df = payments_frame(n, args.cards, days, args.seed + 3)
    topic = bench.name("events-long")
    load = load_topic(bench, df, topic, 1, args.loader, "memory")
    del df
    runs = []
    for job in ("fraud", "sql"):
        p.step(f"memory: {job} job over {n:,} events, sampling RSS and the checkpoint folder")
        if job == "fraud":
            r = run_fraud(bench, topic, n, "fraud-long", model=args.model, sample_ckpt=True)
        else:
            r = run_sql(bench, topic, n, "sql-long", sample_ckpt=True)
        p.info(_tp_line(job, r))
        tl = r["timeline"]
        ckpts = checkpoint_progress(r.get("checkpoints") or [], tl)
        runs.append({"job": job, "events": n, "events_per_s": r["events_per_s"], "rss_peak_mb": r["rss_peak_mb"],
                     "rss_end_mb": _last_rss_mb(tl), "checkpoint_mb_at": _ckpt_at(tl, n),
                     "state_mb_at": _state_at(ckpts, n), "checkpoints": ckpts, "timeline": tl,
                     "net_s": r["net_s"], "loadavg": r["loadavg"]})
        _cleanup_dir(bench.work / "ckpt")
    return {"events": n, "days": days, "cards": args.cards, "load": load, "runs": runs,
            "note": ("Stream length x10 at the same event rate per day, so per-card history must plateau once the "
                     "30-day retention is reached. RSS: all processes of the job (JVM incl. RocksDB, Python "
                     "workers). State: the full state size of each completed checkpoint (REST checkpoint history); the "
                     "checkpoint folder (2 retained incremental RocksDB checkpoints, compacted now and then) "
                     "is shown too.")}


def _last_rss_mb(tl: list) -> Optional[float]:
    """RSS at the last sample with output before the job wound down."""
    vals = [(t, n, r) for t, n, r, _ in tl if r]
    if not vals:
        return None
    mx = max((n or 0) for _, n, _ in vals)
    for t, n, r in vals:
        if (n or 0) >= mx:
            return round(r / 2**20, 1)
    return round(vals[-1][2] / 2**20, 1)


def checkpoint_progress(ckpts: list, tl: list) -> list:
    """Completed checkpoints with the output count at their trigger time: [(events, state MB, persisted MB)].

    >>> checkpoint_progress([{"t": 1.5, "state_bytes": 2**20, "persisted_bytes": 2**19}],
    ...                     [(0.0, 0, 1, None), (1.0, 10, 1, None), (2.0, 30, 1, None)])
    [[10, 1.0, 0.5]]
    """
    out = []
    for c in ckpts:
        n = 0
        for t, k, _, _ in tl:
            if t > c["t"]:
                break
            n = k if k is not None else n
        if c.get("state_bytes") is not None:
            out.append([n, round(c["state_bytes"] / 2**20, 2),
                        round((c.get("persisted_bytes") or 0) / 2**20, 2)])
    return out


def _state_at(ckpts: list, total: int) -> dict:
    """Full state size (MB) of the last checkpoint before 25/50/75/100 % of the stream."""
    out = {}
    for frac in (0.25, 0.5, 0.75, 1.0):
        before = [mb for n, mb, _ in ckpts if n <= frac * total]
        out[f"{int(frac * 100)}%"] = before[-1] if before else None
    return out


def _ckpt_at(tl: list, total: int) -> dict:
    """Checkpoint folder size (MB) when the output reached 25/50/75/100 % of ``total``."""
    out = {}
    for frac in (0.25, 0.5, 0.75, 1.0):
        val = None
        for _, n, _, ck in tl:
            if ck is not None:
                val = ck
            if n is not None and n >= frac * total and val is not None:
                break
        out[f"{int(frac * 100)}%"] = round(val / 2**20, 2) if val is not None else None
    return out


# ---------------------------------------------------------------------------------------- profile
def python_path_profile(n: int, seed: int, out_dir: Path) -> dict:
    """The fraud job's Python per-event work without Flink: parse + validate, keyed features with a
    pickled state round trip per event, scoring in batches of 1,000. Times each stage, then writes a
    cProfile of the whole path (top functions) to ``out_dir/profile-python.txt``."""
    import cProfile
    import io
    import pickle
    import pstats

    import pandas as pd

    from features.contracts import PAYMENT
    from features.fraud import FRAUD_FEATURES, CardHistory
    from features.synthetic import generate_payments, records
    from udfs.keyed import KeyedFeatures
    from udfs.parse import ParseEvents
    from udfs.scoring import ScoreBatch
    from udfs.types import event_columns

    df = generate_payments(n, seed=seed, n_cards=max(20, n // 10), days=7)
    payloads = [PAYMENT.to_json({k: r[k] for k in PAYMENT.field_names}) for r in records(df, PAYMENT)]

    class _Counter:
        def inc(self, n=1):
            pass

    class _Metrics:
        def counter(self, name):
            return _Counter()

    pickling = [0.0]

    class _State:  # a ValueState that pickles like Flink's PICKLED_BYTE_ARRAY
        def __init__(self, store, key):
            self.store, self.key = store, key

        def value(self):
            t = time.perf_counter()
            b = self.store.get(self.key[0])
            v = None if b is None else pickle.loads(b)
            pickling[0] += time.perf_counter() - t
            return v

        def update(self, v):
            t = time.perf_counter()
            self.store[self.key[0]] = pickle.dumps(v)
            pickling[0] += time.perf_counter() - t

    class _Runtime:
        def __init__(self, store, key):
            self.store, self.key = store, key

        def get_metrics_group(self):
            return _Metrics()

        def get_metric_group(self):
            return _Metrics()

        def get_state(self, desc):
            return _State(self.store, self.key)

    class _Timers:
        def current_watermark(self):
            return -(2 ** 63)

    class _Ctx:
        def timer_service(self):
            return _Timers()

    key = [None]
    parse = ParseEvents(PAYMENT, kafka=True, with_labels=False, source="bench", max_future_ms=10 ** 12,
                        max_past_ms=10 ** 12)
    parse.open(_Runtime({}, key))
    names = [c for c, _ in event_columns(PAYMENT, False)]
    keyed = KeyedFeatures(CardHistory, names, "card_id", "arrival", 0, (), "bench")
    store: dict = {}
    keyed.open(_Runtime(store, key))
    scorer = ScoreBatch(FRAUD_FEATURES.feature_names, None, FRAUD_FEATURES.definition_hash)
    scorer.open(_Runtime({}, key))
    ctx = _Ctx()
    card_index = names.index("card_id")

    def stage_parse():
        return [r for p in payloads for r in parse.process_element((p, "t", 0, 0), ctx)]

    def stage_keyed(rows):
        store.clear()
        out = []
        for r in rows:
            key[0] = r[card_index]
            out.extend(keyed.process_element(r, ctx))
        return out

    def stage_score(rows):
        k = len(FRAUD_FEATURES.feature_names)
        feats = pd.DataFrame([tuple(r)[3:3 + k + 1] for r in rows],
                             columns=list(FRAUD_FEATURES.feature_names) + ["ingest_ms"])
        for i in range(0, len(feats), 1000):
            part = feats.iloc[i:i + 1000]
            scorer.eval(*[part[c] for c in part.columns])  # the features, then ingest_ms

    times = {}
    t = time.perf_counter()
    rows = stage_parse()
    times["parse + validate JSON"] = time.perf_counter() - t
    t = time.perf_counter()
    pickling[0] = 0.0
    feats = stage_keyed(rows)
    times["keyed features (incl. state pickling)"] = time.perf_counter() - t
    times["  of which: state unpickle + pickle"] = pickling[0]
    t = time.perf_counter()
    stage_score(feats)
    times["score (pandas, batches of 1,000)"] = time.perf_counter() - t

    prof = cProfile.Profile()
    prof.enable()
    stage_score(stage_keyed(stage_parse()))
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
    text = buf.getvalue()
    text = text.replace(str(ROOT) + "/", "").replace(sys.prefix + "/", "")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "profile-python.txt").write_text(
        f"cProfile of the fraud job's Python per-event path outside Flink, {n:,} events, sorted by own time\n\n{text}")
    us = {k: round(1e6 * v / n, 2) for k, v in times.items()}
    total = sum(v for k, v in us.items() if not k.startswith("  "))
    return {"events": n, "us_per_event": us, "us_total": round(total, 2),
            "max_events_per_s": round(1e6 / total) if total else None,
            "cprofile": str(out_dir / "profile-python.txt")}


def section_profile(bench: Bench, args, results: dict) -> dict:
    p = bench.progress
    p.step("profile: Python per-event path of the fraud job outside Flink (cProfile)")
    n = 20_000 if not args.quick else 5_000
    py = python_path_profile(n, args.seed, Path(args.out))
    p.info(f"Python work {py['us_total']:.1f} µs/event -> at most {fmt_num(py['max_events_per_s'])} events/s "
           f"on one core ({', '.join(f'{k.strip()} {v}' for k, v in py['us_per_event'].items())})")
    out: dict = {"python": py}
    tp = results.get("throughput") or {}
    fraud = tp.get("fraud")
    if fraud:
        out["operators"] = operator_shares(fraud.get("rest"))
        out["cpu"] = fraud.get("cpu_breakdown")
        out["cpu_total"] = sum(v for _, v in fraud.get("cpu_breakdown") or [])
        out["per_event_cpu_us"] = _r(1e6 * fraud["cpu_s"] / fraud["events"]) if fraud.get("cpu_s") else None
        out["per_event_wall_us"] = _r(1e6 * fraud["net_s"] / fraud["events"]) if fraud.get("net_s") else None
    if args.ablations and tp.get("topic"):
        topic, events = tp["topic"], tp["events"]
        abl = [{"variant": f"fraud job as measured ({bench.state_backend})", **_abl(fraud)},
               {"variant": f"Java SQL velocity as measured ({bench.state_backend})", **_abl(tp.get("sql"))}]
        other = "hashmap" if bench.state_backend == "rocksdb" else "rocksdb"
        plan = [("fraud job, features only: no scoring UDF (features to Kafka)", "fraud", dict(features_only=True)),
                ("fraud job, bigger Python bundles (bundle.size, arrow.batch.size 10000, bundle.time 1 s)", "fraud",
                 dict(extra=["-D", "python.fn-execution.bundle.size=10000", "-D",
                             "python.fn-execution.arrow.batch.size=10000", "-D", "python.fn-execution.bundle.time=1000"])),
                (f"fraud job, {other} state backend", "fraud", dict(backend=other)),
                (f"Java SQL velocity, {other} state backend", "sql", dict(backend=other))]
        for name, job, kw in plan:
            p.step(f"profile ablation: {name}")
            saved = bench.state_backend
            bench.state_backend = kw.pop("backend", saved)
            try:
                if job == "fraud":
                    r = run_fraud(bench, topic, events, "fraud-ablation", model=args.model, **kw)
                else:
                    r = run_sql(bench, topic, events, "sql-ablation")
            except SetupError as e:
                abl.append({"variant": name, "error": str(e)})
                continue
            finally:
                bench.state_backend = saved
            p.info(_tp_line(name, r))
            abl.append({"variant": name, **_abl(r), "operators": operator_shares(r.get("rest")),
                        "cpu": r.get("cpu_breakdown")})
        out["ablations"] = abl
    return out


def _abl(r: Optional[dict]) -> dict:
    r = r or {}
    return {k: r.get(k) for k in ("events_per_s", "events_per_s_span", "events_per_cpu_s", "net_s", "cpu_s", "loadavg")}


# =============================================================================================
# Plots
# =============================================================================================
def make_plots(results: dict, out: Path) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    tp = results.get("throughput")
    if tp and tp.get("fraud") and tp.get("sql"):
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
        jobs = [("fraud job", tp["fraud"]), ("Java SQL velocity", tp["sql"])]
        kinds = [("events_per_s", "net runtime"), ("events_per_s_span", "first→last output"),
                 ("events_per_cpu_s", "per CPU second")]
        w = 0.25
        for i, (key, lab) in enumerate(kinds):
            ax1.bar([j + (i - 1) * w for j in range(len(jobs))], [r.get(key) or 0 for _, r in jobs], w, label=lab)
        ax1.set_xticks(range(len(jobs)), [n for n, _ in jobs])
        ax1.set_ylabel("events/s")
        ax1.set_title(f"Kafka→Kafka throughput, {tp['events']:,} events")
        ax1.legend()
        for name, r in jobs:
            tl = [(t, n) for t, n, _, _ in r.get("timeline", []) if n is not None]
            if tl:
                ax2.plot([t for t, _ in tl], [n for _, n in tl], label=name)
        ax2.set_xlabel("seconds since the job process started (incl. JVM start-up)")
        ax2.set_ylabel("output records")
        ax2.set_title("progress")
        ax2.legend()
        fig.tight_layout()
        files.append(_save(fig, out / "throughput.png"))
    sc = results.get("scaling")
    if sc and sc.get("runs"):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for job in ("fraud", "sql"):
            rs = [r for r in sc["runs"] if r["job"] == job]
            ax.plot([r["parallelism"] for r in rs], [r.get("events_per_s") or 0 for r in rs], "o-", label=f"{job} (net)")
        ax.set_xticks([1, 2])
        ax.set_xlabel("parallelism (2-partition topic)")
        ax.set_ylabel("events/s")
        ax.set_title("Scaling")
        ax.legend()
        fig.tight_layout()
        files.append(_save(fig, out / "scaling.png"))
    bf = results.get("backfill")
    if bf and bf.get("flink") and bf.get("reference"):
        fig, ax = plt.subplots(figsize=(6, 4.5))
        vals = [bf["flink"].get("rows_per_s") or 0, bf["flink"].get("rows_per_s_wall") or 0,
                bf["reference"].get("rows_per_s") or 0]
        ax.bar(["Flink BATCH\n(net runtime)", "Flink BATCH\n(process wall)", "pandas reference\n(read+compute+write)"],
               vals, color=["C0", "C0", "C1"])
        ax.set_ylabel("rows/s")
        ax.set_title(f"Backfill, {bf['events']:,} events")
        fig.tight_layout()
        files.append(_save(fig, out / "backfill.png"))
    lat = results.get("latency")
    if lat and lat.get("runs"):
        series_plot(lat, out, plt, files)
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
        styles = ["-", "--", ":", "-."]
        for k, run in enumerate(lat["runs"]):
            phases = [ph for ph in run.get("phases", []) if (ph.get("consumer") or {}).get("p99") is not None]
            if not phases:
                continue
            lab = f"{run['variant']}, {run['delivery']}"
            color = f"C{k}"
            ax1.plot([ph["rate"] for ph in phases], [ph["consumer"]["p99"] for ph in phases], "o-", color=color,
                     label=f"p99 {lab}")
            ax1.plot([ph["rate"] for ph in phases], [ph["consumer"]["p50"] for ph in phases], "x--", color=color,
                     label=f"p50 {lab}")
            for j, ph in enumerate(phases):
                s = ph.get("samples") or []
                if s:
                    ax2.plot(s, [i / max(1, len(s) - 1) for i in range(len(s))], color=color,
                             ls=styles[j % len(styles)], label=f"{ph['rate']:,}/s {lab}")
        ax1.axhline(TARGETS["latency_p99_ms"], color="grey", ls=":", label="p99 target")
        ax1.set_xlabel("producer rate (events/s)")
        ax1.set_ylabel("ms, consumer-observed")
        ax1.set_yscale("log")
        ax1.set_title("Event-to-decision latency")
        ax1.legend(fontsize=7)
        ax2.set_xscale("log")
        ax2.set_xlabel("latency ms (consumer-observed)")
        ax2.set_ylabel("fraction of events")
        ax2.set_title("CDF")
        ax2.legend(fontsize=6)
        fig.tight_layout()
        files.append(_save(fig, out / "latency.png"))
    mem = results.get("memory")
    if mem and mem.get("runs"):
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
        for r in mem["runs"]:
            tl = r["timeline"]
            last_n = 0
            xs, rss, xs2, ck = [], [], [], []
            for t, n, b, c in tl:
                last_n = n if n is not None else last_n
                if b:
                    xs.append(last_n)
                    rss.append(b / 2**20)
                if c is not None:
                    xs2.append(last_n)
                    ck.append(c / 2**20)
            line = ax1.plot(xs, rss, label=r["job"])[0]
            ax2.plot(xs2, ck, color=line.get_color(), alpha=0.35, label=f"{r['job']}: checkpoint folder")
            cps = r.get("checkpoints") or []
            if cps:
                ax2.plot([c[0] for c in cps], [c[1] for c in cps], "o-", ms=3, color=line.get_color(),
                         label=f"{r['job']}: checkpointed state (REST)")
        ax1.set_xlabel("events processed")
        ax1.set_ylabel("RSS MB (all job processes)")
        ax1.set_title(f"Memory, {mem['events']:,} events, {mem['cards']:,} cards, {mem['days']:g} days")
        ax2.set_xlabel("events processed")
        ax2.set_ylabel("MB")
        ax2.set_title("State (checkpoint size)")
        ax1.legend()
        ax2.legend()
        fig.tight_layout()
        files.append(_save(fig, out / "memory.png"))
    return files


def series_plot(lat: dict, out: Path, plt, files: list) -> None:
    """Latency of every event over time per run, with the checkpoints the job took."""
    runs = [r for r in lat["runs"] if any(ph.get("series") for ph in r.get("phases", []))]
    if not runs:
        return
    fig, axes = plt.subplots(len(runs), 1, figsize=(12, 2.6 * len(runs)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs):
        t0 = min(ph["series"][0][0] for ph in run["phases"] if ph.get("series"))
        for ph in run["phases"]:
            s = ph.get("series") or []
            if s:
                ax.plot([t - t0 for t, _ in s], [v for _, v in s], ".", ms=2, label=f"{ph['rate']:,}/s")
        for c in run.get("checkpoints") or []:
            if c["trigger_s"] >= t0:
                ax.axvline(c["trigger_s"] - t0, color="grey", lw=0.6, ls=":")
        ax.set_yscale("log")
        ax.set_ylabel("ms (worst per bin)")
        ax.set_title(f"{run['variant']}, {run['delivery']}: latency over time (dotted: checkpoints)", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("seconds since the first measured event")
    fig.tight_layout()
    files.append(_save(fig, out / "latency-over-time.png"))


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


# =============================================================================================
# The command
# =============================================================================================
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
    from jobs.kafka_broker import KafkaBroker, delete_topics

    resolve_defaults(args)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    options = parse_options(args.flink_options)
    steps = {"throughput": 3, "backfill": 4, "latency": len(args.latency_variant) + ("exactly-once" in args.delivery),
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


def _slim(results: dict) -> dict:
    """results without the bulky per-sample timelines (kept for the plots only, thinned)."""
    def thin(tl):
        step = max(1, len(tl) // 300)
        return tl[::step]

    def walk(o):
        if isinstance(o, dict):
            return {k: (thin(v) if k == "timeline" and isinstance(v, list) else walk(v)) for k, v in o.items()}
        if isinstance(o, list):
            return [walk(v) for v in o]
        return o

    return walk(results)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(_worker(sys.argv[2]))
    from jobs.cli import main as _main

    sys.exit(_main(["bench"] + sys.argv[1:]))
