"""`streamscore evaluate iot --nab DIR [--protocol loo|probation|in-sample] [--model-dir DIR] [--out DIR]`.

Replays every file of a NAB-format folder (a NAB checkout, or ``timestamp,value`` CSVs with
``combined_windows.json``) through the job's pandas backfill, scores it with the model given by
``--model-dir`` (a version or a registry) or, by default, with models fitted under ``--protocol``
(training.iot_eval.PROTOCOLS; default ``loo``: each file scored by a model of the other files),
turns the anomalous readings into alerts (features.alerts, the model's saved policy) and
reports the NAB score (standard, reward_low_FP_rate, reward_low_FN_rate) per file and overall,
windows detected, earliness, false alerts per day outside windows, and NAB's reference detectors
re-scored on the same files. ``--out`` gets report.md, report.json and one PNG per series.
"""
from __future__ import annotations

import json
import math
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="evaluate a model on a benchmark (iot: NAB)",
                              description="Evaluate a model on a labelled benchmark.")
    domains = p.add_subparsers(dest="domain", metavar="DOMAIN")
    domains.required = True
    i = domains.add_parser("iot", help="the iot anomaly model on NAB files",
                           description=__doc__.split("\n\n")[1].replace("\n", " "))
    i.add_argument("--nab", required=True, metavar="DIR", help="a NAB-format folder")
    i.add_argument("--out", default=None, metavar="DIR", help="write report.md, report.json and PNGs here")
    i.add_argument("--model-dir", default=None, metavar="DIR",
                   help="a trained iot model (version directory or registry); default: fit per --protocol")
    i.add_argument("--protocol", default="loo", choices=("loo", "probation", "in-sample"),
                   help="how models are fitted when no --model-dir is given: loo (causal, default: each file "
                        "scored by a model of the other files), probation (causal: fitted on every file's first "
                        "15 %%), in-sample (transductive: fitted on the rows it scores)")
    i.add_argument("--files", default=None, metavar="NAMES", help="comma-separated file stems (default: all)")
    i.add_argument("--quiet", action="store_true", help="no progress lines")
    i.set_defaults(func=run_iot)


def run_iot(args) -> int:
    from features.iot import IOT_FEATURES
    from features.iot_model import load_iot_model
    from training.iot_eval import evaluate_nab

    nab = Path(args.nab)
    if not nab.is_dir():
        raise FileNotFoundError(f"--nab {nab}: no such folder")
    model = load_iot_model(args.model_dir, IOT_FEATURES.definition_hash) if args.model_dir else None
    names = [n.strip() for n in args.files.split(",") if n.strip()] if args.files else None
    report = evaluate_nab(nab, model=model, names=names, protocol=args.protocol, progress=not args.quiet)
    text = render(report)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(text + "\n")
        (out / "report.json").write_text(json.dumps(public(report), indent=2, sort_keys=True, default=_plain) + "\n")
        for stem in report["files"]:
            plot_series(report, stem, out / f"{stem}.png")
        if not args.quiet:
            print(f"wrote {out}/report.md, report.json and {len(report['files'])} PNGs")
    return 0


def _plain(o):
    from features.registry import json_default

    return json_default(o, strict=False)


def public(report: dict) -> dict:
    """The report without the objects kept for plotting (``_``-keys)."""
    if isinstance(report, dict):
        return {k: public(v) for k, v in report.items() if not str(k).startswith("_")}
    return report


def _f(x, digits=2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def render(r: dict) -> str:
    profiles = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
    ov = r["overall"]
    lines = [f"# NAB evaluation of the iot anomaly model ({r['nab_dir']})", "",
             f"Protocol: {r['protocol_text']}.",
             f"{r['models']} model(s); threshold = {r['model']['threshold_rule'].get('rule', '')} "
             f"(anomaly rate {r['model']['threshold_rule'].get('anomaly_rate')}), alert policy "
             f"{r['model']['alert_policy']}.", "",
             "| file | standard | low FP | low FN | windows detected | mean earliness | false alerts | per day "
             "| threshold |",
             "|---|---|---|---|---|---|---|---|---|"]
    for stem, f in r["files"].items():
        e = sum(f["earliness"]) / len(f["earliness"]) if f["earliness"] else float("nan")
        lines.append(f"| {stem} | " + " | ".join(_f(f["nab"][p]) for p in profiles)
                     + f" | {f['windows_detected']}/{f['windows']} | {_f(e)} | {f['false_alerts']} | "
                       f"{_f(f['false_alerts_per_day'], 3)} | {f['threshold']:.5f} |")
    lines.append("| **overall** | " + " | ".join(f"**{_f(ov['nab'][p])}**" for p in profiles)
                 + f" | {ov['windows_detected']}/{ov['windows']} | {_f(ov['mean_earliness'])} | {ov['false_alerts']} | "
                   f"{_f(ov['false_alerts_per_day'], 3)} | |")
    lines += ["", "Earliness: share of the window still ahead at the first alert (1 = its left edge); mean "
                  f"{_f(ov['mean_hours_after_window_start'], 1)} h after the window opened. False alerts: alerts "
                  f"outside windows after the probationary period, over {_f(ov['outside_days'], 1)} days.", ""]
    ref = r.get("reference")
    if ref and "note" not in ref:
        lines += ["NAB's reference detectors on the same files (their published anomaly scores at NAB's "
                  "corpus-optimised thresholds, re-scored here and normalised over these files; corpus = "
                  "NAB's published score over all 58 files):", "",
                  "| detector | standard | low FP | low FN | windows | false positives | corpus standard |",
                  "|---|---|---|---|---|---|---|",
                  f"| **streamscore iot ({r['protocol']})** | " + " | ".join(f"**{_f(ov['nab'][p])}**" for p in profiles)
                  + f" | {ov['windows_detected']}/{ov['windows']} | {ov['false_alerts']} | |"]
        for d, v in sorted(ref.items(), key=lambda kv: -kv[1]["nab"]["standard"]):
            lines.append(f"| {v['name']} | " + " | ".join(_f(v["nab"][p]) for p in profiles)
                         + f" | {v['windows_detected']}/{ov['windows']} | {v['false_positives']} | "
                           f"{_f(v['corpus'].get('standard'))} |")
    elif ref:
        lines += [ref["note"]]
    tp = r["throughput"]
    lines += ["", f"Throughput: {tp['readings']} readings, backfill {tp['backfill_s']:.2f} s + scoring "
                  f"{tp['score_s']:.2f} s ({tp['score_readings_per_s']:,.0f} readings/s) = "
                  f"{tp['backfill_and_score_readings_per_s']:,.0f} readings/s (fit {tp['fit_s']:.2f} s, alerts "
                  f"{tp['alerts_s']:.2f} s; wall {tp['wall_s']:.1f} s)."]
    if r["unlabelled_files"]:
        lines.append(f"Not scored (no windows in the labels file): {', '.join(r['unlabelled_files'])}.")
    return "\n".join(lines)


def plot_series(r: dict, stem: str, path: Path) -> None:
    """Value with windows shaded and alerts marked; score and threshold below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    s, f = r["_series"][stem], r["files"][stem]
    lay = f["_layout"]
    t = s["t"].astype("datetime64[ms]")
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(14, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]})
    ax.plot(t, s["value"], lw=0.5, color="tab:blue", label="value")
    for i, (left, right, last) in enumerate(lay.bounds):
        for a in (ax, ax2):
            a.axvspan(t[left], t[last], color="tab:red", alpha=0.15, label="NAB window" if i == 0 and a is ax else None)
    if lay.probation < lay.n:
        for a in (ax, ax2):
            a.axvline(t[lay.probation], color="grey", ls=":", lw=1)
    rows = np.asarray(s["alerts"], dtype=np.int64)
    inside = lay.window[rows] >= 0 if len(rows) else np.zeros(0, bool)
    early = rows < lay.probation
    ax.plot(t[rows[early]], s["value"][rows[early]], "x", color="grey", ms=8, label="alert, probationary (not scored)")
    inside, rows = inside[~early], rows[~early]
    ax.plot(t[rows[inside]], s["value"][rows[inside]], "v", color="tab:green", ms=9, label="alert in window")
    ax.plot(t[rows[~inside]], s["value"][rows[~inside]], "x", color="black", ms=9, mew=2,
            label="alert outside (false)")
    ax.set_title(f"{stem}: NAB standard {_f(f['nab']['standard'])}, {f['windows_detected']}/{f['windows']} windows, "
                 f"{f['false_alerts']} false alerts ({_f(f['false_alerts_per_day'], 3)}/day)")
    ax.legend(loc="lower left", fontsize=8)
    rarity = lambda x: -np.log10(np.maximum(1.0 - np.asarray(x, float), 1e-6))  # noqa: E731  (ranks crowd at 1)
    ax2.plot(t, rarity(s["score"]), lw=0.5, color="tab:purple", label="score")
    ax2.axhline(rarity(s["threshold"]), color="tab:orange", lw=1, label=f"threshold {s['threshold']:.5f}")
    ax2.set_ylabel("-log10(1 - score)")
    ax2.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
