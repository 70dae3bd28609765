"""Feature-set declarations: names, key, windows, types and a version, as data.

A FeatureSet is the one place a pipeline's features are described. The streaming job,
the backfill, training and the model's metadata all read it, and its ``definition_hash``
is stamped into every model so a model trained on another definition is refused.

>>> from features.fraud import FRAUD_FEATURES
>>> FRAUD_FEATURES.output_columns[:4]
('event_id', 'card_id', 'event_time', 'txn_count_1h')
>>> len(FRAUD_FEATURES.definition_hash)
16
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, Union

from features.contracts import EventContract
from features.declare import ENGINE_TYPES, FEATURE_TYPES, Aggregation, Derived, resolve  # noqa: F401

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class Feature:
    """One output feature. ``window`` names an entry of the set's windows (None: unwindowed)."""

    name: str
    dtype: str
    window: Optional[str] = None
    nullable: bool = False
    doc: str = ""

    def __post_init__(self):
        if self.dtype not in FEATURE_TYPES:
            raise ValueError(f"feature {self.name}: dtype must be one of {FEATURE_TYPES}, not {self.dtype!r}")
        if not self.name.isidentifier():
            raise ValueError(f"feature name {self.name!r} is not an identifier")


@dataclass(frozen=True)
class FeatureSet:
    """A versioned, keyed set of features computed over one event contract.

    ``key``: one contract field (a str) or a tuple of them, e.g. ("machine_id", "sensor_id"); a
    1-tuple is stored as its one field (the same set, the same hash). ``keys`` is always a tuple.
    Key fields must be non-nullable strings; a key's events are those equal in every key field.
    """

    name: str
    version: int
    contract: EventContract
    key: Union[str, Sequence[str]]
    order_by: Sequence[str]
    windows: Mapping[str, int]  # window name -> length in ms
    retention_ms: int  # how much event-time history per key the logic needs
    items: Sequence  # Aggregation / Derived declarations, in output order
    doc: str = ""
    # The output features (name, dtype, window, nullable), resolved from the items.
    features: Sequence[Feature] = field(init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "key", _normal_key(self.name, self.key, self.contract))
        object.__setattr__(self, "items", tuple(self.items))
        feats, info = resolve(self.name, self.items, self.contract, self.windows, self.passthrough)
        object.__setattr__(self, "features", feats)
        object.__setattr__(self, "_declared", info)
        if tuple(self.order_by) != ("event_time", "event_id"):
            raise ValueError(f"feature set {self.name}: order_by must be ('event_time', 'event_id')")
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError(f"feature set {self.name}: duplicate feature names")
        for f in self.features:
            if f.window is not None and f.window not in self.windows:
                raise ValueError(f"feature {f.name}: unknown window {f.window!r}")
        if self.windows and self.retention_ms < max(self.windows.values()):
            raise ValueError(f"feature set {self.name}: retention shorter than its longest window")
        clash = set(names) & set(self.passthrough)
        if clash:
            raise ValueError(f"feature set {self.name}: features shadow identity columns {sorted(clash)}")

    @property
    def keys(self) -> tuple:
        """The key fields, as a tuple (one for a plain str key)."""
        return (self.key,) if isinstance(self.key, str) else self.key

    @property
    def passthrough(self) -> tuple:
        """Identity columns leading every feature row: event_id, the key fields, event_time."""
        return ("event_id", *self.keys, "event_time")

    @property
    def feature_names(self) -> tuple:
        return tuple(f.name for f in self.features)

    @property
    def output_columns(self) -> tuple:
        return self.passthrough + self.feature_names

    def definition(self) -> dict:
        """The canonical, JSON-able description that the hash covers (docs excluded)."""
        out = {
            "name": self.name,
            "version": self.version,
            "contract": [self.contract.name, self.contract.version],
            "key": self.key if isinstance(self.key, str) else list(self.key),
            "order_by": list(self.order_by),
            "windows": dict(sorted(self.windows.items())),
            "retention_ms": self.retention_ms,
            "features": [[f.name, f.dtype, f.window, f.nullable] for f in self.features],
        }
        # only sets with an ewma carry its half-lives: every other set's hash stays what it was
        half = {a.name: a.half_life_ms for a in self.items if isinstance(a, Aggregation) and a.half_life_ms is not None}
        if half:
            out["half_life_ms"] = dict(sorted(half.items()))
        return out

    @property
    def definition_hash(self) -> str:
        blob = json.dumps(self.definition(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def declared(self) -> dict:
        """Per item name (hidden aggregations included): dtype, nullable, window and the item."""
        return self._declared

    def engine_spec(self) -> dict:
        """The JSON-able spec the Java operator (jvm/engine Spec) executes: aggregations only.

        ``columns`` are the contract fields the aggregations read, in contract order, with their
        engine types (long/double/string/boolean); ``window_ms`` None means unbounded (``last``).
        Derived features are not in it: they run in Python, vectorized.
        """
        aggs = [it for it in self.items if isinstance(it, Aggregation)]
        inputs = {a.input for a in aggs if a.input is not None}
        fields = [f for f in self.contract.all_fields if f.name in inputs]
        return {
            "name": self.name,
            "version": self.version,
            "definition_hash": self.definition_hash,
            "keys": list(self.keys),
            "order_by": list(self.order_by),
            "retention_ms": self.retention_ms,
            "columns": [{"name": f.name, "type": ENGINE_TYPES[f.type], "nullable": f.nullable} for f in fields],
            "aggregations": [{"name": a.name, "op": a.op, "input": a.input,
                              "window_ms": None if a.window is None else self.windows[a.window],
                              "prior": a.prior, "min_count": a.min_count,
                              **({"half_life_ms": a.half_life_ms} if a.half_life_ms is not None else {})}
                             for a in aggs],
        }

    def arrow_schema(self, with_labels: bool = False):
        """Schema of the feature rows written by backfill and by the served-feature log."""
        import pyarrow as pa

        kinds = {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}
        cols = [pa.field("event_id", pa.string(), nullable=False)]
        cols += [pa.field(k, pa.string(), nullable=False) for k in self.keys]
        cols.append(pa.field("event_time", pa.int64(), nullable=False))
        cols += [pa.field(f.name, kinds[f.dtype], nullable=f.nullable) for f in self.features]
        if with_labels:
            cols += [pa.field(lf.name, pa.bool_() if lf.type == "bool" else pa.string(), nullable=True)
                     for lf in self.contract.labels]
        return pa.schema(cols, metadata={"feature_set": self.name, "version": str(self.version),
                                         "definition_hash": self.definition_hash})

    def metadata(self) -> dict:
        """What a model stores about the features it was trained on."""
        return {"feature_set": self.name, "version": self.version, "definition_hash": self.definition_hash,
                "feature_order": list(self.feature_names)}


def _normal_key(set_name: str, key, contract: EventContract):
    """``key`` as a str (one field) or a tuple of >= 2 distinct non-nullable string fields."""
    where = f"feature set {set_name}"
    keys = (key,) if isinstance(key, str) else tuple(key) if isinstance(key, (tuple, list)) else None
    if not keys or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"{where}: key must be a field name or a non-empty tuple of them, got {key!r}")
    if len(set(keys)) != len(keys):
        raise ValueError(f"{where}: repeated field in key {keys}")
    fields = {f.name: f for f in contract.all_fields}
    for k in keys:
        if k not in contract.field_names:
            raise ValueError(f"{where}: key {k!r} not in contract {contract.name}")
        if k in ("event_id", "event_time"):
            raise ValueError(f"{where}: key {k!r} is an identity column of its own")
        if fields[k].type != "string" or fields[k].nullable:
            raise ValueError(f"{where}: key {k!r} must be a non-nullable string field")
    return keys[0] if len(keys) == 1 else keys
