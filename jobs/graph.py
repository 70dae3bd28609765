"""What every job definition shares: its named outputs, and one statement set that sends each to its sink.

A pipeline module (jobs/fraud.py, jobs/iot.py) declares a ``Job``: its feature set, its outputs
(name, default sink, columns, Kafka key) and a pure ``build(rows, t_env, cfg, ...)`` that returns a
table or stream per output name. The command line (jobs/run.py, jobs/backfill.py) wires sources,
sinks and checkpoints around it, the same for every pipeline.

>>> Output("alerts", "kafka:{d}-alerts", lambda labels: [("event_id", "STRING")]).default_for("iot")
'kafka:iot-alerts'
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

from jobs.io import KafkaSinkOptions, SinkSpec, create_sink


@dataclass(frozen=True)
class Output:
    """One output of a job: ``columns(with_labels)`` -> [(name, SQL type)], ``key`` its Kafka message key."""

    name: str
    default: str  # sink spec; "{d}" = the domain, "{run}" = the run folder: "kafka:{d}-decisions"
    columns: Callable[[bool], list]
    key: Optional[str] = None
    flag: str = ""  # the command-line flag that overrides the default (default: --<name with dashes>)
    help: str = ""

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"output name {self.name!r} is not an identifier")
        if not self.flag:
            object.__setattr__(self, "flag", "--" + self.name.replace("_", "-"))
        SinkSpec.parse(self.default.format(d="x", run="r"))  # a bad default is a programming error: fail at import

    def default_for(self, domain: str) -> str:
        from jobs.runtime import RUN_DIR

        return self.default.format(d=domain, run=RUN_DIR)


@dataclass(frozen=True)
class JobConfig:
    """One job's settings: event-time behaviour, the model to serve and whether to score at all."""

    stream: object  # jobs.pipeline.StreamConfig
    model: Optional[str] = None  # a model folder or a registry (its current version); None: rules only
    score: bool = True  # False: features only (backfill)
    options: Mapping = field(default_factory=dict)  # pipeline-specific settings (validated by the pipeline)


@dataclass(frozen=True)
class Job:
    """A pipeline as the command line sees it."""

    domain: str
    feature_set: object  # features.featureset.FeatureSet
    outputs: Sequence[Output]
    build: Callable  # (rows, t_env, JobConfig, *, kafka, source, batch) -> {output name: Table | DataStream}
    check_model: Callable  # (model path) -> metadata dict; raises ModelLoadError on a model of another definition
    doc: str = ""

    def output(self, name: str) -> Output:
        for o in self.outputs:
            if o.name == name:
                return o
        raise KeyError(name)


def feature_log(fs) -> Output:
    """The served feature log every pipeline writes (default: Parquet under the run folder)."""
    from udfs.types import feature_columns

    return Output("features", "parquet:{run}/{d}/features", lambda labels: feature_columns(fs, labels),
                  flag="--features-out", help="the served feature log")


def _rejects(with_labels: bool) -> list:
    from udfs.types import REJECT_COLUMNS

    return list(REJECT_COLUMNS)


# Refused records with their reason, and events behind the watermark: every pipeline has both.
REJECT_OUTPUTS = (Output("dead_letters", "kafka:{d}-dead-letters", _rejects),
                  Output("late", "kafka:{d}-late", _rejects))


def attach_outputs(t_env, job: Job, built: Mapping, specs: Mapping, kafka: Optional[KafkaSinkOptions],
                   with_labels: bool):
    """Declare a sink per output and add every built output to one statement set (one job).

    ``built``: {output name: Table or DataStream}, outputs missing there (e.g. decisions of a job that
    does not score) are skipped; ``specs``: {output name: SinkSpec}."""
    from pyflink.datastream import DataStream

    ss = t_env.create_statement_set()
    n = 0
    for out in job.outputs:
        if out.name not in built or built[out.name] is None:
            continue
        spec = specs.get(out.name, SinkSpec("none"))
        table = built[out.name]
        if isinstance(table, DataStream):
            table = t_env.from_data_stream(table)
        name = create_sink(t_env, spec, out.columns(with_labels), kafka, key=out.key, stem=out.name)
        if name is not None:
            ss.add_insert(name, table)
            n += 1
    if n == 0:
        raise ValueError("every output is 'none': nothing to run")
    return ss
