"""The declared-feature engine in the Flink graph: aggregations on the JVM, derived features vectorized.

``declared_features`` keys a stream of event rows by the set's key (``fs.keys``: one field, or
several as one length-prefixed string, ``Engine.CompositeKey``) and runs the set's
aggregations in the Java operator of jvm/engine (``io.streamscore.engine.Engine``: per-key
history in checkpointed state, `arrival` / `event-time` orderings, late side output), from
``FeatureSet.engine_spec()``. No Python runs per record there. The derived features then run
in one pandas UDF over Arrow batches, with the same ``features.execute.derive`` the pandas
reference uses, so the two cannot drift; a job that scores runs its scorer in that same UDF
(one Arrow round trip per batch for derived features and decision, not two).

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
from udfs.scoring import RESULT_FIELDS, result_fields
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
                      counts_dir: Optional[str] = None, scorer=None) -> EngineStreams:
    """Features of every on-time event of ``events`` (rows of ``event_columns``, (name, SQL type)).

    ``scorer`` (udfs.scoring.ScoreBatch, or None): also score each row; its RESULT_FIELDS are then
    columns of the features table too (``verdict_columns``)."""
    if ordering not in ORDERINGS:
        raise ValueError(f"ordering must be one of {ORDERINGS}, got {ordering!r}")
    names = [n for n, _ in event_columns]
    res = engine_jar_class().features(events._j_data_stream, row_type(event_columns).get_java_type_info(),
                                      json.dumps(fs.engine_spec()), ordering, int(allowed_lateness_ms), uid,
                                      counts_dir)
    aggregated = t_env.from_data_stream(DataStream(res.main()))
    table = with_derived(aggregated, fs, names, scorer)
    out = [col(n) for n in fs.output_columns] + [col("ingest_ms")] + [col(n) for n in label_names]
    if scorer is not None:
        out += [col(n) for n, _ in RESULT_FIELDS]
    late = DataStream(res.side()).map(LateRow(names, allowed_lateness_ms, source),
                                      output_type=row_type(REJECT_COLUMNS)).name(f"{uid}/late").uid(f"{uid}/late")
    return EngineStreams(table.select(*out), late)


def with_derived(table, fs: FeatureSet, event_names: Sequence[str], scorer=None):
    """``table`` (event fields + aggregation columns) with the set's derived columns added, and with
    ``scorer``'s RESULT_FIELDS (its inputs: the set's features, then ``ingest_ms``)."""
    derived = [it for it in fs.items if isinstance(it, Derived)]
    if not derived and scorer is None:
        return table
    derived_names = {it.name for it in derived}
    needed = {n for it in derived for n in it.inputs} - derived_names
    if scorer is not None:
        needed |= (set(fs.feature_names) - derived_names) | {"ingest_ms"}
    order = [*event_names, *(a.name for a in fs.items if isinstance(a, Aggregation))]
    inputs = sorted(needed, key=order.index)
    fields = [DataTypes.FIELD(it.name, _DATA_TYPES[it.dtype]) for it in derived]
    if scorer is not None:
        fields += result_fields()
    fn = udf(DeriveBatch(fs, inputs, scorer), func_type="pandas", result_type=DataTypes.ROW(fields))
    added = [it.name for it in derived] + ([n for n, _ in RESULT_FIELDS] if scorer is not None else [])
    keep = [n for n in _columns(table) if n not in derived_names]
    return (table.add_columns(fn(*[col(n) for n in inputs]).alias("_derived"))
            .select(*[col(n) for n in keep], *[col("_derived").get(n).alias(n) for n in added]))


def _columns(table) -> list:
    return list(table.get_schema().get_field_names())


class DeriveBatch(ScalarFunction):
    """The pandas UDF body: one batch of input columns -> a frame of the derived columns (then, with
    a ``scorer``, the decision's RESULT_FIELDS).

    The feature set travels with the function (cloudpickle: its derived functions by reference
    where they live in a module, by value where they are lambdas of a test)."""

    def __init__(self, fs: FeatureSet, inputs: Sequence[str], scorer=None):
        self.fs = fs
        self.inputs = list(inputs)
        self.scorer = scorer

    def open(self, function_context):
        if self.scorer is not None:
            self.scorer.open(function_context)

    def close(self):
        if self.scorer is not None:
            self.scorer.close()

    def eval(self, *columns):
        frame = pd.concat(columns, axis=1)
        frame.columns = self.inputs
        full = derive(self.fs, frame)
        out = pd.DataFrame({it.name: full[it.name].astype("float64") if it.dtype == "float64" else full[it.name]
                            for it in self.fs.items if isinstance(it, Derived)})
        if self.scorer is None:
            return out
        feats = pd.DataFrame({n: out[n] if n in out else frame[n] for n in self.fs.feature_names})
        verdict = self.scorer.score(feats, frame["ingest_ms"])
        verdict.index = out.index
        return pd.concat([out, verdict], axis=1)


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
