"""`streamscore bench` and its results: the fraud job measured against a reference in the same run.

The command is ``bench.command`` (``add_parser``, ``bench_main``); one module per section
(throughput, backfill, latency, memory, pyprofile), the job runner and worker, the Java-only SQL
reference (``bench.sql``), data, CPU accounting, observation, statistics, options, report and plots.
Results live beside the code in bench/results/; bench/spikes/ holds one-off experiment scripts.
"""
