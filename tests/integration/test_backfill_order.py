"""Backfill is not a stream: a historical file in any row order gives the same features and the
same (empty) dead letters through `streamscore backfill` (Flink BATCH mode, MiniCluster).

Before issue 7 the streaming skew guard ran in BATCH mode too: a shuffled month of payments put
rows "ahead of" or "behind" whatever happened to be read before them in the time_skew dead letters.

    sorted file:    t1 t2 t3 ... tN                 -> features F, no dead letters
    shuffled file:  t17 t3 tN t1 ...  (days apart)  -> the same F, no dead letters
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.contracts import PAYMENT
from features.fraud import FRAUD_FEATURES
from features.synthetic import generate_payments, to_arrow
from streamscore.cli import main as cli

pytestmark = pytest.mark.integration


def _features(path: Path) -> pd.DataFrame:
    files = sorted(p for p in path.rglob("part-*") if not p.name.startswith("."))
    df = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    return df.sort_values("event_id").reset_index(drop=True)


def _dead(path: Path) -> list:
    if not path.exists():
        return []
    return [json.loads(line) for f in sorted(path.rglob("part-*")) if not f.name.startswith(".")
            for line in f.read_text().splitlines() if line.strip()]


def test_shuffled_history_gives_the_sorted_files_features(tmp_path):
    # 30 days, so a shuffle puts rows weeks apart next to each other (the old guard's 7-day jump)
    frame = generate_payments(6000, seed=23, days=30.0)
    shuffled = frame.sample(frac=1.0, random_state=5).reset_index(drop=True)
    assert (shuffled["event_time"].diff().abs() > 7 * 86_400_000).sum() > 100  # the order is really hostile
    runs = {}
    for name, df in (("sorted", frame), ("shuffled", shuffled)):
        src = tmp_path / f"{name}.parquet"
        pq.write_table(to_arrow(df, PAYMENT), src)
        out = tmp_path / f"{name}-features"
        assert cli(["backfill", "fraud", "--input", str(src), "--out", str(out),
                    "--dead-letters", f"json:{tmp_path / (name + '-dead')}"]) == 0
        runs[name] = (_features(out), _dead(tmp_path / f"{name}-dead"))
    (f_sorted, d_sorted), (f_shuffled, d_shuffled) = runs["sorted"], runs["shuffled"]
    assert d_sorted == [] and d_shuffled == [], {d["reason"] for d in d_sorted + d_shuffled}
    assert len(f_sorted) == len(frame)
    cols = ["event_id", "card_id", "event_time", *FRAUD_FEATURES.feature_names]
    pd.testing.assert_frame_equal(f_sorted[cols], f_shuffled[cols])
