"""Issue 8 spike: wall and CPU time of one call of the fraud job's pandas UDF body (udfs.engine.DeriveBatch.eval
with the scorer, model loaded) per batch size, outside Flink. No JVM.

    .venv/bin/python bench/spikes/latency-v2/udf_batch_cost.py MODEL_DIR [--profile N]
"""
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, ".")
from features.declare import Aggregation, Derived  # noqa: E402
from features.execute import aggregate  # noqa: E402
from features.fraud import FRAUD_FEATURES as FS  # noqa: E402
from features.synthetic import generate_payments  # noqa: E402
from udfs.engine import DeriveBatch  # noqa: E402
from udfs.scoring import scorer  # noqa: E402


class _Metrics:
    def counter(self, name):
        return type("C", (), {"inc": lambda self, n=1: None})()

    def distribution(self, name):
        return type("D", (), {"update": lambda self, v: None})()


class _Ctx:
    def get_metric_group(self):
        return _Metrics()


def udf_inputs(events: pd.DataFrame):
    """The DeriveBatch's input columns (as udfs.engine.with_derived chooses them) from the reference features."""
    aggs = aggregate(FS, events)
    derived = [it for it in FS.items if isinstance(it, Derived)]
    dnames = {it.name for it in derived}
    needed = {n for it in derived for n in it.inputs} - dnames
    needed |= (set(FS.feature_names) - dnames) | {"ingest_ms"}
    names = list(events.columns) + [a.name for a in FS.items if isinstance(a, Aggregation)]
    order = names + ["ingest_ms"]
    inputs = sorted(needed, key=order.index)
    full = pd.concat([events.reset_index(drop=True), aggs], axis=1)
    full["ingest_ms"] = np.int64(1_796_000_000_000)
    return inputs, full


def main():
    model = sys.argv[1]
    events = generate_payments(20_000, seed=9, n_cards=2_000, days=7)
    inputs, full = udf_inputs(events)
    fn = DeriveBatch(FS, inputs, scorer(FS, model))
    fn.open(_Ctx())
    cols = [full[c] for c in inputs]
    for n in (1, 10, 50, 100, 300, 1000):
        reps = max(20, 3000 // n)
        batch = [c.iloc[:n].reset_index(drop=True) for c in cols]
        fn.eval(*batch)
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(reps):
            fn.eval(*batch)
        w, c = (time.perf_counter() - w0) / reps, (time.process_time() - c0) / reps
        print(f"batch {n:5d}: {1000 * w:7.2f} ms wall, {1000 * c:7.2f} ms CPU per call, {1e6 * c / n:8.1f} us CPU/row")
    if "--profile" in sys.argv:
        import cProfile
        import pstats

        n = int(sys.argv[sys.argv.index("--profile") + 1])
        batch = [c.iloc[:n].reset_index(drop=True) for c in cols]
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(200):
            fn.eval(*batch)
        pr.disable()
        pstats.Stats(pr).sort_stats("cumulative").print_stats(35)


if __name__ == "__main__":
    main()
