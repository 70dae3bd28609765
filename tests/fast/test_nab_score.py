"""training.nab_score: hand-computed tiny cases, and NAB's published results reproduced.

The published numbers are vendored in tests/fixtures/nab_reference.json (numbers only, from
github.com/numenta/NAB at the commit it names; built by training.iot_nab_reference).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.nab_score import (MAX_TP, PROFILES, Profile, layout, normalise_raw, normalised,
                                probationary_length, scaled_sigmoid, score_detections, score_file)

STD, LOW_FP, LOW_FN = PROFILES["standard"], PROFILES["reward_low_FP_rate"], PROFILES["reward_low_FN_rate"]
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "nab_reference.json"
NAB = Path(__file__).resolve().parent.parent.parent / "data" / "nab"


def sig(y):  # the definition, written out independently of the module
    return -1.0 if y > 3 else 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def test_scaled_sigmoid_values_by_hand():
    # 2/(1+e^-5) - 1 = 0.986614..., 2/(1+e^-2.5) - 1 = 0.848283..., 0 at the right edge
    assert float(scaled_sigmoid(-1.0)) == pytest.approx(0.9866142981514303, abs=1e-15)
    assert float(scaled_sigmoid(-0.5)) == pytest.approx(0.8482836399575129, abs=1e-15)
    assert float(scaled_sigmoid(0.0)) == 0.0
    assert float(scaled_sigmoid(1.0)) == pytest.approx(-0.9866142981514303, abs=1e-15)
    assert float(scaled_sigmoid(3.0)) == pytest.approx(2 / (1 + math.exp(15)) - 1)
    assert float(scaled_sigmoid(3.0001)) == -1.0


def test_probationary_length():
    assert probationary_length(100) == 15
    assert probationary_length(4999) == 749      # floor(749.85)
    assert probationary_length(22_695) == 750    # capped at 15 % of 5000
    assert probationary_length(0) == 0


def test_tiny_file_by_hand():
    # rows 0..19, probation = floor(0.15 * 20) = 3; one window rows 10..13 (width 4)
    #   row:  0 1 2 | 3 4 5 6 7 8 9 | 10 11 12 13 | 14 15 ... 19
    #         prob. |  before: -1    |   window    | after: sigma(|13 - i| / 3)
    t = np.arange(20) * 1000
    lay = layout(t, [(10_000, 13_000)])
    assert lay.probation == 3 and lay.bounds == ((10, 13, 13),)
    det = np.zeros(20, bool)
    det[[1, 5, 11, 12, 15]] = True   # 1: probationary, ignored; 5: FP before; 11: first in window; 12: ignored
    fs = score_detections(lay, det, STD)
    # row 11: y = -(13 - 11 + 1) / 4 = -0.75 -> sigma = 2/(1+e^-3.75) - 1 = 0.954829...; / sigma(-1)
    tp = (2 / (1 + math.exp(-3.75)) - 1) / 0.9866142981514303
    # row 15: y = |13 - 15| / (4 - 1) = 2/3 -> sigma = 2/(1+e^(10/3)) - 1 = -0.931951...
    fp_after = 0.11 * (2 / (1 + math.exp(10 / 3)) - 1)
    assert fs.raw == pytest.approx(tp - 0.11 + fp_after, abs=1e-12)
    assert (fs.tp, fs.fp, fs.fn, fs.tn) == (2, 2, 2, 17 - 4 - 2)
    assert fs.first_detection == (11,) and fs.windows_detected == 1 and fs.fp_rows == (5, 15)
    # nothing detected: the window costs A_fn; the profile's weights matter
    none = np.zeros(20, bool)
    assert score_detections(lay, none, STD).raw == -1.0
    assert score_detections(lay, none, LOW_FN).raw == -2.0
    assert score_detections(lay, det, LOW_FP).raw == pytest.approx(tp - 0.22 + 2 * fp_after, abs=1e-12)
    # left edge is worth exactly A_tp
    edge = np.zeros(20, bool)
    edge[10] = True
    assert score_detections(lay, edge, STD).raw == pytest.approx(1.0, abs=1e-15)


def test_two_windows_and_threshold():
    # windows rows 4..5 (width 2) and 8..10 (width 3) of 12 rows; probation 1
    t = np.arange(12)
    assert layout(t, [(4, 5), (8, 10)]).bounds == ((4, 5, 5), (8, 10, 10))
    scores = np.array([0, 0, 0, 0.2, 0, 0.9, 0.7, 0, 0, 0, 0.5, 0.6])
    fs = score_file(t, scores, [(4, 5), (8, 10)], threshold=0.5, profile=STD)
    # row 5: y = -(5 - 5 + 1)/2 = -0.5; row 6 after window 1: y = |5 - 6| / (2 - 1) = 1
    # row 10: y = -(10 - 10 + 1)/3; row 11 after window 2: y = 1/2
    expect = (sig(-0.5) / sig(-1) + sig(-1 / 3) / sig(-1) + 0.11 * sig(1.0) + 0.11 * sig(0.5))
    assert fs.raw == pytest.approx(expect, abs=1e-12)
    assert fs.first_detection == (5, 10)
    # a 0.2 score is not a detection at 0.5, but is at 0.2 (FP before the first window: -A_fp)
    assert score_file(t, scores, [(4, 5), (8, 10)], 0.2, STD).raw == pytest.approx(expect - 0.11, abs=1e-12)


def test_layout_refuses_windows_off_the_rows():
    with pytest.raises(ValueError, match="not a timestamp"):
        layout(np.arange(10), [(2.5, 4)])
    with pytest.raises(ValueError, match="not a timestamp"):
        layout(np.arange(10), [(2, 40)])
    with pytest.raises(ValueError):
        Profile("bad", 1.0, -0.1, 1.0)


def test_normalisation():
    # perfect = 7, null = -7 on 7 windows (standard): raw 0 is halfway
    assert normalise_raw(0.0, 7, STD) == 50.0
    assert normalise_raw(-7.0, 7, STD) == 0.0 and normalise_raw(7.0, 7, STD) == 100.0
    assert normalise_raw(0.0, 7, LOW_FN) == pytest.approx(100 * 14 / 21)
    lay = layout(np.arange(20), [(10, 13)])
    perfect = np.zeros(20, bool)
    perfect[10] = True
    assert normalised([score_detections(lay, perfect, STD)]) == pytest.approx(100.0)
    assert normalised([score_detections(lay, np.zeros(20, bool), STD)]) == 0.0


# --- NAB's published results ---------------------------------------------------------------

@pytest.fixture(scope="module")
def ref():
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def layouts(ref):
    windows = json.loads((NAB / "labels" / "combined_windows.json").read_text())
    out = {}
    for stem, info in ref["files"].items():
        t = pd.read_csv(NAB / "data" / info["set"] / f"{stem}.csv")["timestamp"].to_numpy()
        assert len(t) == info["rows"]
        out[stem] = layout(t, [(a[:19], b[:19]) for a, b in windows[f"{info['set']}/{stem}.csv"]])
    return out


def _detected(entry, stem, profile, n):
    d = np.zeros(n, bool)
    thr = entry["thresholds"][profile]
    for i, s in entry["files"][stem]["detections_candidates"]:
        d[i] = s >= thr
    return d


# `random` is re-scored against its per-file S(t) columns only: its published *_scores.csv rows come
# from another run of the random detector than the per-file anomaly_score columns (TN counts differ).
STALE_SCORE_ROWS = {"random"}


@pytest.mark.parametrize("detector", ["numenta", "twitterADVec", "null", "htmjava", "numentaTM", "ARTime",
                                      "earthgeckoSkyline", "contextOSE", "knncad", "relativeEntropy", "skyline",
                                      "windowedGaussian", "bayesChangePt", "expose", "randomCutForest", "random"])
def test_reproduces_published_per_file_scores(ref, layouts, detector):
    entry = ref["detectors"][detector]
    for stem, lay in layouts.items():
        for p, prof in PROFILES.items():
            fs = score_detections(lay, _detected(entry, stem, p, lay.n), prof)
            pub = entry["files"][stem]["published"][p]
            if detector not in STALE_SCORE_ROWS:
                assert fs.raw == pytest.approx(pub["score"], abs=1e-6), (stem, p)
                assert (fs.tp, fs.fp, fs.fn, fs.tn) == (pub["tp"], pub["fp"], pub["fn"], pub["tn"]), (stem, p)
            if detector != "ARTime":  # ARTime's S(t) columns are per-row values (next test), not contributions
                assert fs.raw == pytest.approx(pub["s_t_sum"], abs=1e-6), (stem, p)


def test_reproduces_artime_per_row_values(ref, layouts):
    """NAB's newest results store, on every row, what a detection there would add."""
    from training.nab_score import weighted_values

    cols = ref["s_t_columns"]
    checked = 0
    for stem, lay in layouts.items():
        vals = {p: weighted_values(lay, PROFILES[p]) for p in cols}
        for row, *published in ref["detectors"]["ARTime"]["files"][stem]["s_t_rows"]:
            for p, v in zip(cols, published):
                assert vals[p][row] == pytest.approx(v, abs=1e-9), (stem, row, p)
                checked += 1
    assert checked > 1000


def test_reference_subset_scores(ref, layouts):
    """Normalised over the 3 files: Numenta HTM 52.47, Twitter ADVec 33.85 (standard)."""
    from training.iot_nab_reference import reference_table

    tab = reference_table(ref, layouts, ["numenta", "twitterADVec", "null"])
    # by hand from the published per-file raw scores: (sum + 7) / 14
    htm = sum(ref["detectors"]["numenta"]["files"][s]["published"]["standard"]["score"] for s in layouts)
    assert tab["numenta"]["normalised"]["standard"] == pytest.approx(100 * (htm + 7) / 14, abs=1e-9)
    assert tab["numenta"]["normalised"]["standard"] == pytest.approx(52.47, abs=0.01)
    assert tab["twitterADVec"]["normalised"]["standard"] == pytest.approx(33.85, abs=0.01)
    assert tab["null"]["normalised"] == {p: 0.0 for p in PROFILES}
    assert tab["numenta"]["corpus"]["standard"] == pytest.approx(70.10, abs=0.01)
    assert MAX_TP == pytest.approx(0.9866142981514303)
