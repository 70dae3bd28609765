"""NAB's published results for its reference detectors, vendored as numbers, and re-scored here.

``build_fixture(nab_tree)`` reads a NAB checkout (github.com/numenta/NAB; only ``config/`` and
``results/`` are read: ``results/<detector>/<set>/<detector>_<file>.csv`` with the published
``anomaly_score`` and ``S(t)_<profile>`` columns, ``results/<detector>/<detector>_<profile>_scores.csv``,
``results/final_results.json``, ``config/thresholds.json``) and keeps, for each file of interest:
the row count, every row whose published ``anomaly_score`` reaches the detector's lowest
threshold (the only rows that can be detections at NAB's thresholds), the sums of the S(t)
columns and the per-file score / TP / FP / FN / TN rows. That is all ``tests/fixtures/nab_reference.json``
holds: numbers, no NAB code.

``reference_table`` re-scores those detections with ``training.nab_score`` and normalises
them over the chosen files (null and perfect detectors of those files only). NAB's thresholds
were optimised over the whole 58-file corpus and are kept as published: nothing is re-tuned
on the subset.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Iterable, Mapping, Optional

from training.nab_score import PROFILES, Layout, normalised, score_detections

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "nab_reference.json"
NAB_COMMIT = "ea702d75cc2258d9d7dd35ca8e5e2539d71f3140"
PER_ROW_DETECTOR = "ARTime"  # newest results: S(t)_<profile> = the value of a detection on every row
SAMPLE_EVERY = 97
DEFAULT_FILES = ("realKnownCause/ambient_temperature_system_failure",
                 "realKnownCause/cpu_utilization_asg_misconfiguration",
                 "realKnownCause/machine_temperature_system_failure")
# NAB's scoreboard names (README) for the detector folders shown first in tables
DISPLAY = {"numenta": "Numenta HTM", "twitterADVec": "Twitter ADVec", "null": "null", "random": "random",
           "htmjava": "HTM Java", "numentaTM": "Numenta TM", "ARTime": "ARTime", "contextOSE": "CAD OSE",
           "knncad": "KNN CAD", "earthgeckoSkyline": "earthgecko Skyline", "skyline": "Skyline",
           "relativeEntropy": "Relative Entropy", "windowedGaussian": "Windowed Gaussian",
           "bayesChangePt": "Bayesian Changepoint", "expose": "EXPoSE", "randomCutForest": "Random Cut Forest"}


def _rows(path: Path) -> list:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def build_fixture(nab_tree, files: Iterable[str] = DEFAULT_FILES, commit: str = NAB_COMMIT) -> dict:
    """The fixture dict from a NAB checkout (see the module doc)."""
    root = Path(nab_tree)
    thresholds = json.loads((root / "config" / "thresholds.json").read_text())
    final = json.loads((root / "results" / "final_results.json").read_text())
    out = {"_source": {"repository": "github.com/numenta/NAB", "commit": commit, "licence": "MIT",
                       "read": ["config/thresholds.json", "config/profiles.json", "results/final_results.json",
                                "results/<detector>/<detector>_<profile>_scores.csv",
                                "results/<detector>/realKnownCause/<detector>_<file>.csv"],
                       "s_t_rows": f"{PER_ROW_DETECTOR} only: [row] + S(t) in s_t_columns order at "
                                   f"every {SAMPLE_EVERY}th row and 3 rows around each label edge",
                       "rows_kept": "rows whose anomaly_score >= the detector's lowest threshold, "
                                    "as [row index from 0, anomaly_score]"},
           "profiles": {k: {"tp": p.tp_weight, "fp": p.fp_weight, "fn": p.fn_weight} for k, p in PROFILES.items()},
           "corpus_normalised": final, "files": {}, "detectors": {}, "s_t_columns": list(PROFILES)}
    for det in sorted(thresholds):
        thr = {p: thresholds[det][p]["threshold"] for p in PROFILES}
        lo = min(thr.values())
        entry = {"thresholds": thr, "files": {}}
        per_profile = {p: {r["File"]: r for r in _rows(root / "results" / det / f"{det}_{p}_scores.csv")}
                       for p in PROFILES}
        for rel in files:
            set_name, stem = rel.split("/")
            rows = _rows(root / "results" / det / set_name / f"{det}_{stem}.csv")
            out["files"].setdefault(stem, {"rows": len(rows), "set": set_name})
            if out["files"][stem]["rows"] != len(rows):
                raise ValueError(f"{det}: {stem} has {len(rows)} rows, other detectors {out['files'][stem]['rows']}")
            kept = [[i, float(r["anomaly_score"])] for i, r in enumerate(rows)
                    if r["anomaly_score"] not in ("", "nan") and float(r["anomaly_score"]) >= lo]
            pub = {}
            for p in PROFILES:
                s = per_profile[p][f"{rel}.csv"]
                pub[p] = {"score": float(s["Score"]), "threshold_csv": float(s["Threshold"]),
                          "tp": int(s["TP"]), "fp": int(s["FP"]), "fn": int(s["FN"]), "tn": int(s["TN"]),
                          "s_t_sum": sum(float(r[f"S(t)_{p}"]) for r in rows)}
            entry["files"][stem] = {"detections_candidates": kept, "published": pub}
            if det == PER_ROW_DETECTOR:  # its S(t) columns are the per-row values of NAB's current scorer
                lab = [r.get("label") == "1" for r in rows]
                edges = {i for i in range(1, len(rows)) if lab[i] != lab[i - 1]}
                pick = sorted({j for e in edges for j in range(e - 3, e + 4) if 0 <= j < len(rows)}
                              | set(range(0, len(rows), SAMPLE_EVERY)))
                entry["files"][stem]["s_t_rows"] = [[j] + [float(rows[j][f"S(t)_{p}"]) for p in PROFILES]
                                                    for j in pick]
        out["detectors"][det] = entry
    return out


def load_reference(path: Optional[Path] = None) -> dict:
    p = Path(path) if path is not None else FIXTURE
    if not p.is_file():
        raise FileNotFoundError(f"no NAB reference fixture at {p}")
    return json.loads(p.read_text())


def detections(ref: dict, detector: str, stem: str, profile: str, n: int):
    """Boolean detections of a published detector on one file at NAB's threshold."""
    import numpy as np

    entry = ref["detectors"][detector]
    thr = entry["thresholds"][profile]
    d = np.zeros(n, dtype=bool)
    for i, s in entry["files"][stem]["detections_candidates"]:
        if s >= thr:
            d[int(i)] = True
    return d


def reference_table(ref: dict, layouts: Mapping[str, Layout], detectors: Optional[Iterable[str]] = None) -> dict:
    """{detector: {"files": {stem: {profile: FileScore}}, "normalised": {profile: subset score},
    "corpus": {profile: NAB's published corpus score}}} re-scored on ``layouts`` (stem -> Layout)."""
    out = {}
    for det in detectors or ref["detectors"]:
        files = {}
        for stem, lay in layouts.items():
            if stem not in ref["detectors"][det]["files"]:
                raise ValueError(f"the fixture has no published {det} results for {stem}")
            if ref["files"][stem]["rows"] != lay.n:
                raise ValueError(f"{stem}: NAB's results have {ref['files'][stem]['rows']} rows, the data {lay.n}")
            files[stem] = {p: score_detections(lay, detections(ref, det, stem, p, lay.n), prof)
                           for p, prof in PROFILES.items()}
        out[det] = {"files": files,
                    "normalised": {p: normalised(files[s][p] for s in files) for p in PROFILES},
                    "corpus": ref.get("corpus_normalised", {}).get(det, {})}
    return out


if __name__ == "__main__":  # python -m training.iot_nab_reference NAB_TREE [OUT]
    import sys

    fx = build_fixture(sys.argv[1])
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else FIXTURE
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(fx, indent=1, sort_keys=True)
    text = re.sub(r"\[\s+([-\d.e, \n]+?)\s+\]", lambda m: "[" + re.sub(r"\s+", "", m.group(1)) + "]", text)
    target.write_text(text + "\n")
    print(f"wrote {target} ({target.stat().st_size} bytes)")
