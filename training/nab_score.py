"""The NAB score (Numenta Anomaly Benchmark), implemented from its definition. Pure numpy.

NAB (github.com/numenta/NAB, MIT) scores a detector's detections on one file of rows
``t_0 < t_1 < ...`` against labelled anomaly windows ``[start, end]`` (both row timestamps):

* **Probationary period**: the first ``min(floor(0.15 n), 0.15 * 5000)`` rows are not scored at
  all (a detector needs time to learn).
* **Windows**: a row belongs to window k from the row whose time equals the window's start up to
  the row whose time equals its end. Width ``w`` = number of rows, counting from the start row to
  the *first* row whose time equals the end.
* **Sigmoid of the relative position**: ``sigma(y) = 2 / (1 + exp(5 y)) - 1`` (and ``-1`` for
  ``y > 3``). Inside window k, row i has ``y = -(right_k - i + 1) / w`` (-1 at the left edge,
  about 0 at the right edge): a detection there is worth ``A_tp * sigma(y) / sigma(-1)``
  (``A_tp`` at the left edge, falling towards 0 at the end). Outside windows, a row after the
  end of window k has ``y = |right_k - i| / (w_k - 1)`` and a detection there costs
  ``A_fp * sigma(y)`` (just after a window a little, later up to ``-A_fp``); before the first
  window every detection costs ``-A_fp``.
* **Raw score** of a file at a set of detections: each window scores the value of its
  *first* (highest-valued) detection, or ``-A_fn`` if nothing was detected in it; every
  detection outside windows adds its (negative) value. A detection is ``anomaly_score >=
  threshold``; every detected row counts (NAB merges nothing: a detector must keep its
  detections sparse itself).
* **Normalised score**: ``100 (S - S_null) / (S_perfect - S_null)`` over a set of files, where
  ``S_null`` is the score of the detector that detects nothing (``-A_fn`` per window) and
  ``S_perfect = A_tp * number of windows``.

Profiles (NAB config/profiles.json): standard ``A_tp=1, A_fp=0.11, A_fn=1``;
reward_low_FP_rate ``A_fp=0.22``; reward_low_FN_rate ``A_fn=2``.

NAB optimises one threshold per detector and profile over its whole corpus (58 files) and
normalises over the corpus. ``normalised`` here takes whatever set of files it is given: on a
subset (e.g. the three files in data/nab) the null and perfect scores are those of that subset.

>>> round(float(scaled_sigmoid(-1.0)), 5), round(float(scaled_sigmoid(-0.5)), 5), float(scaled_sigmoid(0.0))
(0.98661, 0.84828, 0.0)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

PROBATIONARY_PERCENT = 0.15
PROBATIONARY_CAP_ROWS = 5000  # NAB: the period is at most 15 % of 5000 rows


@dataclass(frozen=True)
class Profile:
    """A NAB cost matrix (the true-negative weight plays no part in the score)."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float

    def __post_init__(self):
        for k in ("tp_weight", "fp_weight", "fn_weight"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"profile {self.name}: {k} must be a finite number >= 0, not {v!r}")
        if self.tp_weight == 0:
            raise ValueError(f"profile {self.name}: tp_weight must be > 0")


PROFILES = {
    "standard": Profile("standard", 1.0, 0.11, 1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
}


def scaled_sigmoid(y) -> np.ndarray:
    """NAB's ``2 sigmoid(-5 y) - 1``, and exactly -1 beyond ``y > 3`` (vectorised)."""
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(over="ignore"):
        val = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.where(y > 3.0, -1.0, val)


MAX_TP = float(scaled_sigmoid(-1.0))


def probationary_length(n: int, percent: float = PROBATIONARY_PERCENT) -> int:
    """Rows at the start of a file that are never scored (a float cap in NAB; here the row count)."""
    return int(math.ceil(min(math.floor(percent * n), percent * PROBATIONARY_CAP_ROWS)))


@dataclass(frozen=True)
class Layout:
    """Where each row of one file stands: ``window`` is the window index, -1 outside any window;
    ``tp_value``/``fp_value`` are the unweighted sigmoid values a detection there would earn;
    ``scored`` is False in the probationary period. ``bounds`` = (left, right, last) row indices
    per window (``right``: first row at the end time, ``last``: the row where the window is left)."""

    n: int
    probation: int
    window: np.ndarray
    unweighted: np.ndarray
    scored: np.ndarray
    bounds: tuple = field(default=())

    def __post_init__(self):
        if self.window.shape != (self.n,) or self.unweighted.shape != (self.n,):
            raise ValueError("layout arrays must have one entry per row")

    @property
    def n_windows(self) -> int:
        return len(self.bounds)


def layout(timestamps: Sequence, windows: Iterable, probationary_percent: float = PROBATIONARY_PERCENT) -> Layout:
    """The rows of one file (timestamps in file order, any comparable type, e.g. epoch ms) and its
    windows ``[(start, end), ...]`` (sorted, not overlapping, each boundary a row's timestamp)."""
    t = np.asarray(timestamps)
    n = len(t)
    win = np.full(n, -1, dtype=np.int64)
    unweighted = np.full(n, -1.0)
    bounds = []
    cursor = 0
    for k, (start, end) in enumerate(windows):
        hit = np.flatnonzero(t[cursor:] == start)
        if len(hit) == 0:
            raise ValueError(f"window {k} starts at {start!r}, which is not a timestamp of the file "
                             f"(after row {cursor}); NAB windows begin and end on rows")
        left = cursor + int(hit[0])
        ends = np.flatnonzero(t == end)
        after = ends[ends >= left]
        if len(after) == 0:
            raise ValueError(f"window {k} ends at {end!r}, which is not a timestamp at or after its start")
        right, last = int(ends[0]), int(after[0])  # NAB: width from the first row at `end`
        width = right - left + 1
        if width < 1:
            raise ValueError(f"window {k}: end row {right} before start row {left}")
        i = np.arange(left, last + 1)
        win[left:last + 1] = k
        unweighted[left:last + 1] = scaled_sigmoid(-(right - i + 1) / width)
        bounds.append((left, right, last))
        cursor = last + 1
        # every row after this window counts as "after window k" until a later window overwrites it
        j = np.arange(cursor, n)
        if len(j):
            unweighted[cursor:] = (scaled_sigmoid(np.abs(right - j) / (width - 1)) if width > 1
                                   else -1.0)  # NAB divides by zero here; treat as far away
    probation = probationary_length(n, probationary_percent)
    scored = np.arange(n) >= probation
    return Layout(n=n, probation=probation, window=win, unweighted=unweighted, scored=scored,
                  bounds=tuple(bounds))


def weighted_values(lay: Layout, profile: Profile) -> np.ndarray:
    """What a detection on each row would add: ``A_tp sigma / sigma(-1)`` in a window,
    ``A_fp sigma`` (negative) outside."""
    inside = lay.window >= 0
    return np.where(inside, lay.unweighted * profile.tp_weight / MAX_TP, lay.unweighted * profile.fp_weight)


@dataclass(frozen=True)
class FileScore:
    """One file's NAB outcome for one profile. ``first_detection`` is the row index of each
    scored window's first detection (-1: missed); ``tp``..``tn`` count scored rows as NAB does."""

    profile: str
    raw: float
    null: float
    perfect: float
    tp: int
    fp: int
    fn: int
    tn: int
    windows: int
    windows_detected: int
    first_detection: tuple
    fp_rows: tuple
    window_scores: tuple


def score_detections(lay: Layout, detected, profile: Profile) -> FileScore:
    """The raw NAB score of boolean ``detected`` (one per row) on a file's layout."""
    d = np.asarray(detected, dtype=bool)
    if d.shape != (lay.n,):
        raise ValueError(f"need one detection flag per row ({lay.n}), got shape {d.shape}")
    values = weighted_values(lay, profile)
    live = d & lay.scored
    inside = lay.window >= 0
    fp_mask = live & ~inside
    total = float(values[fp_mask].sum())
    firsts, wscores, counted = [], [], 0
    for k in range(lay.n_windows):
        rows = lay.scored & (lay.window == k)
        if not rows.any():
            continue  # a window wholly inside the probationary period is not scored (as NAB)
        counted += 1
        hit = np.flatnonzero(live & (lay.window == k))
        if len(hit):
            s = float(values[hit].max())  # the first detection: values fall along the window
            firsts.append(int(hit[0]))
        else:
            s = -profile.fn_weight
            firsts.append(-1)
        wscores.append(s)
        total += s
    scored_inside = lay.scored & inside
    tp = int((live & inside).sum())
    fp = int(fp_mask.sum())
    return FileScore(profile=profile.name, raw=total, null=-profile.fn_weight * counted,
                     perfect=profile.tp_weight * lay.n_windows, tp=tp, fp=fp,
                     fn=int(scored_inside.sum()) - tp, tn=int((lay.scored & ~inside).sum()) - fp,
                     windows=counted, windows_detected=sum(f >= 0 for f in firsts),
                     first_detection=tuple(firsts), fp_rows=tuple(np.flatnonzero(fp_mask).tolist()),
                     window_scores=tuple(wscores))


def score_file(timestamps, anomaly_scores, windows, threshold: float, profile: Profile,
               probationary_percent: float = PROBATIONARY_PERCENT) -> FileScore:
    """NAB's per-file score: detections are ``anomaly_score >= threshold`` (NaN never detects)."""
    s = np.asarray(anomaly_scores, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        det = s >= threshold
    return score_detections(layout(timestamps, windows, probationary_percent), det, profile)


def normalised(scores: Iterable[FileScore]) -> float:
    """``100 (sum raw - sum null) / (sum perfect - sum null)`` over the given files (one profile)."""
    scores = list(scores)
    if not scores:
        raise ValueError("no file scores to normalise")
    if len({s.profile for s in scores}) != 1:
        raise ValueError("normalise scores of one profile at a time")
    raw = sum(s.raw for s in scores)
    null = sum(s.null for s in scores)
    perfect = sum(s.perfect for s in scores)
    if perfect == null:
        raise ValueError("no windows in these files: the normalised NAB score is undefined")
    return 100.0 * (raw - null) / (perfect - null)


def normalise_raw(raw: float, n_windows: int, profile: Profile) -> float:
    """The normalised score of a raw total over files with ``n_windows`` scored windows."""
    null, perfect = -profile.fn_weight * n_windows, profile.tp_weight * n_windows
    if perfect == null:
        raise ValueError("no windows: the normalised NAB score is undefined")
    return 100.0 * (raw - null) / (perfect - null)


def best_threshold(layouts: Mapping[str, Layout], scores: Mapping[str, np.ndarray], profile: Profile,
                   candidates: Optional[np.ndarray] = None) -> tuple:
    """(threshold, normalised score) maximising the summed score over files, as NAB's optimiser
    does. It looks at the labels: use it for reference figures, never to set a served threshold."""
    if candidates is None:
        allv = np.concatenate([np.asarray(scores[k], float)[layouts[k].scored] for k in layouts])
        allv = allv[np.isfinite(allv)]
        candidates = np.unique(np.quantile(allv, np.linspace(0.9, 1.0, 401))) if len(allv) else np.array([1.0])
    best = (None, -np.inf)
    for thr in candidates:
        with np.errstate(invalid="ignore"):
            fs = [score_detections(layouts[k], np.asarray(scores[k], float) >= thr, profile) for k in layouts]
        v = normalised(fs)
        if v > best[1]:
            best = (float(thr), v)
    return best
