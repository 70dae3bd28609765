"""PNG plots of the benchmark results."""
from __future__ import annotations

from pathlib import Path

from bench.settings import TARGETS


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
        fig, ax = plt.subplots(figsize=(8 if bf.get("pandas") else 6, 4.5))
        vals = [bf["flink"].get("rows_per_s") or 0, bf["flink"].get("rows_per_s_wall") or 0,
                bf["reference"].get("rows_per_s") or 0]
        names = ["Flink BATCH\n(net runtime)", "Flink BATCH\n(process wall)", "pandas reference\n(read+compute+write)"]
        colors = ["C0", "C0", "C1"]
        if bf.get("pandas"):
            vals.insert(0, bf["pandas"].get("rows_per_s") or 0)
            names.insert(0, "pandas engine\n(read+compute+write)")
            colors.insert(0, "C2")
        ax.bar(names, vals, color=colors)
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
