"""results.md: the summary table and per-section Markdown of the benchmark results."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

from bench.settings import MIN_EVENTS_FOR_TARGET, TARGETS
from bench.stats import ratio


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
    if bf and bf.get("reference") and (bf.get("flink") or bf.get("pandas")):
        p = bf["reference"]
        judged_n = bf["events"] >= MIN_EVENTS_FOR_TARGET
        small = "" if judged_n else "; too few events to judge"
        engines = [("pandas", "Backfill, pandas engine", "read + compute + write, in process", "check_pandas"),
                   ("flink", "Backfill, Flink BATCH", "net job runtime", "check")]
        for key, label, how, check in engines:
            f = bf.get(key)
            if not f:
                continue
            r = ratio(f.get("rows_per_s"), p.get("rows_per_s"))
            judged = r is not None and judged_n
            met = _verdict(r >= TARGETS["backfill_ratio"] if judged else None)
            rows.append([f"{label}, {bf['events']:,} events (rows/s, {how}{small})",
                         fmt_num(f.get("rows_per_s")), f"pandas {fmt_num(p.get('rows_per_s'))}", fmt_num(r, 3),
                         f"≥ {TARGETS['backfill_ratio']}", met])
            agree = (bf.get(check) or {}).get("agree")
            rows.append([f"{label}: values agree with the pandas reference (ints exact, floats 1e-9)",
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
        if bf.get("pandas"):
            g = bf["pandas"]
            rows.append(["streamscore backfill fraud --engine pandas (in process, read + compute + write)",
                         fmt_num(g.get("seconds"), 1), fmt_num(g.get("seconds"), 1), fmt_num(g.get("rows_per_s")),
                         fmt_num(g.get("rows_per_s")), fmt_num(g.get("cpu_s"), 1)])
        if bf.get("flink"):
            f = bf["flink"]
            rows.append(["streamscore backfill fraud (Flink BATCH)", fmt_num(f.get("wall_s"), 1),
                         fmt_num(f.get("net_s"), 1), fmt_num(f.get("rows_per_s")), fmt_num(f.get("rows_per_s_wall")),
                         fmt_num(f.get("cpu_s"), 1)])
        if bf.get("reference"):
            p = bf["reference"]
            rows.append(["tests.reference.fraud_reference (pandas, read + compute + write)", fmt_num(p.get("seconds"), 1),
                         fmt_num(p.get("seconds"), 1), fmt_num(p.get("rows_per_s")), fmt_num(p.get("rows_per_s")),
                         fmt_num(p.get("cpu_s"), 1)])
        out.append(md_table(["pipeline", "wall s", "net s", "rows/s (net)", "rows/s (wall)", "CPU s"], rows))
        for key, label in (("check_pandas", "pandas engine"), ("check", "Flink BATCH")):
            chk = bf.get(key)
            if chk:
                bad = {k: v for k, v in chk["mismatches"].items() if v}
                out += ["", f"Value check, {label}: {chk['compared']:,} rows compared, missing "
                            f"{chk['missing_in_flink']}, extra {chk['extra_in_flink']}, mismatching columns: "
                            f"{bad or 'none'}; agree: **{chk['agree']}**."]
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
