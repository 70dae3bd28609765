"""The declared-feature engine in the Flink graph: aggregations on the JVM, derived features vectorized.

``declared_features`` keys a stream of event rows by the set's key and runs the set's
aggregations in the Java operator of jvm/engine (``io.streamscore.engine.Engine``: per-key
history in checkpointed state, `arrival` / `event-time` orderings, late side output), from
``FeatureSet.engine_spec()``. No Python runs per record there. The derived features then run
in one pandas UDF over Arrow batches, with the same ``features.execute.derive`` the pandas
reference uses, so the two cannot drift.

Late events leave the Java operator with the watermark they were behind and become reject
rows here; they are rare, so the per-record Python of that branch is off the hot path.
"""
from __future__ import annotations

import json
from typing import NamedTuple, Optional, Sequence

import pandas as pd
from pyflink.datastream import DataStream
from pyflink.table import DataTypes
from pyflink.table.expressions import col
from pyflink.table.udf import ScalarFunction, udf

from features.contracts import LATE
from features.declare import Aggregation, Derived
from features.execute import derive
from features.featureset import FeatureSet
from udfs.types import REJECT_COLUMNS, reject_row, row_type

ORDERINGS = ("arrival", "event-time")
_DATA_TYPES = {"int64": DataTypes.BIGINT(), "float64": DataTypes.DOUBLE(), "bool": DataTypes.BOOLEAN()}


class EngineStreams(NamedTuple):
    features: object  # a Table: identity columns, features, ingest_ms, labels
    late: DataStream  # REJECT_COLUMNS rows


def engine_jar_class():
    """The Java entry point; a clear error where the jar is not on the classpath."""
    from py4j.java_gateway import JavaClass
    from pyflink.java_gateway import get_gateway

    engine = get_gateway().jvm.io.streamscore.engine.Engine
    if not isinstance(engine, JavaClass):  # py4j answers a JavaPackage for a class it cannot find
        raise RuntimeError("the streamscore engine jar (.jars/flink/streamscore-engine-*.jar) is not on "
                           "the classpath; run `make jars`")
    return engine


def declared_features(events: DataStream, t_env, fs: FeatureSet, event_columns: Sequence, *, ordering: str,
                      allowed_lateness_ms: int, uid: str, source: str, label_names: Sequence[str] = (),
                      counts_dir: Optional[str] = None) -> EngineStreams:
    """Features of every on-time event of ``events`` (rows of ``event_columns``, (name, SQL type))."""
    if ordering not in ORDERINGS:
        raise ValueError(f"ordering must be one of {ORDERINGS}, got {ordering!r}")
    names = [n for n, _ in event_columns]
    res = engine_jar_class().features(events._j_data_stream, row_type(event_columns).get_java_type_info(),
                                      json.dumps(fs.engine_spec()), ordering, int(allowed_lateness_ms), uid,
                                      counts_dir)
    aggregated = t_env.from_data_stream(DataStream(res.features()))
    table = with_derived(aggregated, fs, names)
    out = [col(n) for n in fs.output_columns] + [col("ingest_ms")] + [col(n) for n in label_names]
    late = DataStream(res.late()).map(LateRow(names, allowed_lateness_ms, source),
                                      output_type=row_type(REJECT_COLUMNS)).name(f"{uid}/late").uid(f"{uid}/late")
    return EngineStreams(table.select(*out), late)


def with_derived(table, fs: FeatureSet, event_names: Sequence[str]):
    """``table`` (event fields + aggregation columns) with the set's derived columns added."""
    derived = [it for it in fs.items if isinstance(it, Derived)]
    if not derived:
        return table
    inputs = sorted({n for it in derived for n in it.inputs} - {it.name for it in derived},
                    key=lambda n: ([*event_names, *(a.name for a in fs.items if isinstance(a, Aggregation))]).index(n))
    fn = udf(DeriveBatch(fs, inputs), func_type="pandas",
             result_type=DataTypes.ROW([DataTypes.FIELD(it.name, _DATA_TYPES[it.dtype]) for it in derived]))
    keep = [n for n in _columns(table) if n not in {it.name for it in derived}]
    return (table.add_columns(fn(*[col(n) for n in inputs]).alias("_derived"))
            .select(*[col(n) for n in keep], *[col("_derived").get(it.name).alias(it.name) for it in derived]))


def _columns(table) -> list:
    return list(table.get_schema().get_field_names())


class DeriveBatch(ScalarFunction):
    """The pandas UDF body: one batch of input columns -> a frame of the derived columns.

    The feature set travels with the function (cloudpickle: its derived functions by reference
    where they live in a module, by value where they are lambdas of a test)."""

    def __init__(self, fs: FeatureSet, inputs: Sequence[str]):
        self.fs = fs
        self.inputs = list(inputs)

    def eval(self, *columns):
        frame = pd.concat(columns, axis=1)
        frame.columns = self.inputs
        full = derive(self.fs, frame)
        return pd.DataFrame({it.name: full[it.name].astype("float64") if it.dtype == "float64" else full[it.name]
                             for it in self.fs.items if isinstance(it, Derived)})


class LateRow:
    """A late event (the event row + the watermark it was behind) -> a REJECT_COLUMNS row."""

    def __init__(self, names: Sequence[str], lateness_ms: int, source: str):
        self.names = list(names)
        self.lateness = lateness_ms
        self.source = source

    def __call__(self, value):
        ev = dict(zip(self.names, value))
        wm = value[len(self.names)]
        t = ev["event_time"]
        raw = json.dumps({k: v for k, v in ev.items() if k not in ("src_partition", "src_offset")})
        return reject_row(LATE, f"event_time {t} is {wm - t} ms behind the watermark {wm} "
                          f"(allowed lateness {self.lateness} ms)", raw, self.source,
                          ev.get("src_partition"), ev.get("src_offset"), ev.get("ingest_ms"))
