"""Sections, targets and the low-latency option set shared by the benchmark's modules."""
from __future__ import annotations

from jobs.runtime import ROOT


RESULTS_DIR = ROOT / "bench" / "results"
SECTIONS = ("throughput", "backfill", "latency", "scaling", "memory", "profile")
QUICK_SECTIONS = ("throughput", "backfill", "latency", "profile")


# Shorter flush timeouts: the network buffer between the keyBy'd tasks (default 100 ms) and the pandas
# UDF's bundle (50 ms in flink-conf). Smaller bundle/arrow *sizes* were tried and cost more throughput
# than they saved in waiting (see bench/README.md).
LOW_LATENCY = {"execution.buffer-timeout.interval": "10 ms", "python.fn-execution.bundle.time": "10"}
TARGETS = {"throughput_ratio": 0.5, "backfill_ratio": 0.5, "latency_p99_ms": 100.0, "latency_rate": 2000}
# Below this many events a job's net runtime is mostly task deployment and Python worker start-up:
# the ratios are shown but not judged against the targets (--quick).
MIN_EVENTS_FOR_TARGET = 100_000
