"""Feature declarations that compute: keyed windowed aggregations and derived features, as data.

A FeatureSet (features/featureset.py) lists its ``items`` in output order. An ``Aggregation``
is executed per key over the key's event history (by the Java operator, jvm/engine, from
``FeatureSet.engine_spec()``; and by ``features.execute``, the pandas reference). A ``Derived``
feature is a pure vectorized function of aggregation values and the event's own fields; it
always runs in Python. Adding a windowed feature is one line in the set's items::

    Aggregation("amount_max_24h", "max", "amount", "24h"),

>>> Aggregation("n_1h", "count", window="1h").resolved(None, False)
('int64', False)
>>> Aggregation("x", "last", "amount", window="1h")
Traceback (most recent call last):
...
ValueError: aggregation x: last takes no window (it is the key's previous event, however old)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

FEATURE_TYPES = ("int64", "float64", "bool")

OPS = ("count", "sum", "mean", "std_pop", "min", "max", "distinct_count", "last", "first_seen", "ewma")
NUMERIC_OPS = ("sum", "mean", "std_pop", "min", "max", "ewma")

# Contract field type -> engine column type (the names the Java Spec reads).
ENGINE_TYPES = {"int64": "long", "timestamp_ms": "long", "float64": "double", "string": "string", "bool": "boolean"}
# Engine column type -> the dtype a `last`/`min`/`max` of it has.
_VALUE_DTYPES = {"long": "int64", "double": "float64", "boolean": "bool", "string": "string"}


# decay_weight: 2 ** -y = 2 ** -n * exp(-f ln 2), n = floor(y + 0.5), f = y - n in [-0.5, 0.5],
# exp by a degree-13 Taylor polynomial (the next term is < 2 ** -57 there), Horner from the top.
# Python floats and Java doubles parse these literals to the same doubles (correctly rounded 1/k!).
LN2_NEG = -0.6931471805599453
EXP_COEFFS = (1.0, 1.0, 0.5, 0.16666666666666666, 0.041666666666666664, 0.008333333333333333,
              0.001388888888888889, 0.0001984126984126984, 2.48015873015873e-05, 2.7557319223985893e-06,
              2.755731922398589e-07, 2.505210838544172e-08, 2.08767569878681e-09, 1.6059043836821613e-10)
MAX_DECAY_HALF_LIVES = 1000.0  # beyond: weight 0.0 (below 2 ** -1000; keeps 2 ** -n a normal double)


def decay_weight(gap_ms: int, half_life_ms: int) -> float:
    """``2 ** (-gap_ms / half_life_ms)`` as the engines compute it, bit for bit (the ewma op of Aggregation).

    >>> decay_weight(0, 60_000), decay_weight(60_000, 60_000), decay_weight(90_000, 30_000)
    (1.0, 0.5, 0.125)
    """
    import math

    y = float(gap_ms) / float(half_life_ms)
    if y > MAX_DECAY_HALF_LIVES:
        return 0.0
    n = math.floor(y + 0.5)
    z = (y - n) * LN2_NEG
    p = EXP_COEFFS[13]
    for c in EXP_COEFFS[12::-1]:
        p = p * z + c
    return math.ldexp(p, -n)


@dataclass(frozen=True)
class Aggregation:
    """A per-key aggregation of ``input`` (a contract field) over a window of the key's events.

    Semantics (the Java operator implements the same rules, so results are bit-identical):

    * Order: a key's events in (event_time, event_id) order (event_id compared as a string).
    * Window W of event e at t: the key's events with ``t - W < event_time <= t`` that are at or
      before e in that order; ``prior=True`` leaves e itself out. ``window`` names an entry of
      the set's ``windows``; every op but ``last`` needs one.
    * Null input values are skipped by every op except ``count`` (which counts events).
      ``min_count``: fewer (non-null) values than this in the window -> null. It does not apply
      to ``last`` and ``first_seen``; ``mean``, ``std_pop``, ``min``, ``max`` need it >= 1.
    * count: events in the window (int64). distinct_count: distinct non-null values, by equality.
    * sum (float64): start from the current value if e is included (and not null), else 0.0;
      then add the prior values one by one, newest to oldest, in double arithmetic.
    * mean: that sum / n (n = values in the window).
    * std_pop: exactly 0.0 when all values in the window are equal; otherwise, with that mean,
      sq = 0.0 then ``d = x - mean; sq += d * d`` over the window oldest to newest (e last, if
      included); result ``sqrt(sq / n)``.
    * min / max: of the values (int64 for a long input, float64 for a double).
    * last: the input value of the previous event of the key (window None: however old); null
      for the key's first event, or where that value is null. A streaming engine keeps the
      newest event ever seen past trimming: the previous event is events[pos-1], or else that
      newest event if it is before e.
    * first_seen (bool, ``prior=True``): the current value is not among the prior events'
      values in the window; null where the current value is null.
    * ewma (float64, needs ``half_life_ms`` h, an int >= 1; no other op takes one): a
      time-decayed average of the window's values, ``sum(w_i * x_i) / sum(w_i)`` with, in exact
      arithmetic, ``w_i = 2 ** (-(t_n - t_i) / h)``, t_n the time of the window's newest value
      (t itself when e is included; the common factor to ``2 ** (-(t - t_i) / h)`` cancels, and
      the newest weight 1 keeps the sum of weights >= 1). In doubles, exactly: walk the values
      newest to oldest; the newest has ``w = 1.0``, each older one ``w = w_newer *
      decay(t_newer - t_i, h)`` (t_newer: the time of the value walked just before it), and
      ``num += w * x; den += w`` from ``num = den = 0.0``; result ``num / den``. ``decay`` is
      ``decay_weight`` below (IEEE +, *, floor, exact scaling by 2**n only, so every engine gets the
      same bits; within 1 ulp of the correctly rounded 2**-y, measured). Chaining costs one multiply per value instead of a power,
      and rounds once per step: on NAB and generated sensors the result stays within 6e-15
      relative of the plain formula summed exactly (tests/fast/test_iot_features.py). min_count
      as for mean.

    ``dtype`` and ``nullable`` are inferred (None); given, they must agree with the inference
    (``nullable=True`` may be declared where nulls cannot occur, not the reverse).
    ``hidden=True``: an intermediate for derived features, not an output column.
    """

    name: str
    op: str
    input: Optional[str] = None
    window: Optional[str] = None
    prior: bool = False
    min_count: int = 1
    dtype: Optional[str] = None
    nullable: Optional[bool] = None
    hidden: bool = False
    doc: str = ""
    half_life_ms: Optional[int] = None  # ewma only

    def __post_init__(self):
        where = f"aggregation {self.name}"
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"aggregation name {self.name!r} is not an identifier")
        if self.op not in OPS:
            raise ValueError(f"{where}: unknown op {self.op!r} (one of {OPS})")
        if self.op == "count":
            if self.input is not None:
                raise ValueError(f"{where}: count takes no input (it counts events)")
        elif not isinstance(self.input, str) or not self.input:
            raise ValueError(f"{where}: {self.op} needs an input field")
        if self.op == "last":
            if self.window is not None:
                raise ValueError(f"{where}: last takes no window (it is the key's previous event, however old)")
            if self.prior:
                raise ValueError(f"{where}: last is always of a prior event; do not set prior")
        elif self.window is None:
            raise ValueError(f"{where}: {self.op} needs a window")
        if self.op == "first_seen" and not self.prior:
            raise ValueError(f"{where}: first_seen compares with the prior events; declare prior=True")
        if not isinstance(self.min_count, int) or isinstance(self.min_count, bool) or self.min_count < 0:
            raise ValueError(f"{where}: min_count must be an int >= 0, got {self.min_count!r}")
        if self.op in ("last", "first_seen") and self.min_count != 1:
            raise ValueError(f"{where}: min_count does not apply to {self.op}")
        if self.op == "ewma":
            h = self.half_life_ms
            if isinstance(h, bool) or not isinstance(h, int) or h < 1:
                raise ValueError(f"{where}: ewma needs half_life_ms, an int of milliseconds >= 1, got {h!r}")
        elif self.half_life_ms is not None:
            raise ValueError(f"{where}: half_life_ms applies to ewma only, not to {self.op}")
        if self.op in ("mean", "std_pop", "min", "max", "ewma") and self.min_count < 1:
            raise ValueError(f"{where}: {self.op} of no values is undefined; min_count must be >= 1")
        if self.dtype is not None and self.dtype not in FEATURE_TYPES + ("string",):
            raise ValueError(f"{where}: dtype must be one of {FEATURE_TYPES}, not {self.dtype!r}")
        if self.nullable is not None and not isinstance(self.nullable, bool):
            raise ValueError(f"{where}: nullable must be a bool or None")

    def resolved(self, kind: str, input_nullable: bool) -> tuple:
        """(dtype, nullable) given the input's engine type and nullability; checks declared ones."""
        where = f"aggregation {self.name}"
        if self.op in NUMERIC_OPS and kind not in ("long", "double"):
            raise ValueError(f"{where}: {self.op} needs a numeric input, {self.input} is {kind}")
        if self.op in ("count", "distinct_count"):
            dtype = "int64"
        elif self.op == "first_seen":
            dtype = "bool"
        elif self.op in ("sum", "mean", "std_pop", "ewma"):
            dtype = "float64"
        else:  # min, max, last: the input's own type
            dtype = _VALUE_DTYPES[kind]
        if self.op == "last":
            nullable = True  # the key's first event has no previous one
        elif self.op == "first_seen":
            nullable = input_nullable
        else:
            # The window holds e itself unless prior; e's value counts unless it may be null.
            guaranteed = 1 if not self.prior and (self.op == "count" or not input_nullable) else 0
            nullable = self.min_count > guaranteed
        if self.dtype is not None and self.dtype != dtype:
            raise ValueError(f"{where}: {self.op} of {self.input or 'events'} is {dtype}, declared {self.dtype}")
        if self.nullable is False and nullable:
            raise ValueError(f"{where}: can be null (min_count {self.min_count}, prior={self.prior}, "
                             f"input nullable={input_nullable}) but is declared nullable=False")
        if not self.hidden and dtype not in FEATURE_TYPES:
            raise ValueError(f"{where}: a {dtype} value cannot be an output column; declare hidden=True")
        return dtype, nullable if self.nullable is None else self.nullable


@dataclass(frozen=True)
class Derived:
    """A feature computed from other values of the same event, vectorized.

    ``fn(*arrays)`` gets one numpy array per name in ``inputs`` (aggregation names, earlier
    derived names, or contract fields of the event itself), all of the same length, and returns
    one array of that length. Null convention, one rule: **NaN is null**. Numeric and bool
    inputs arrive as float64 with NaN for null (longs exactly, as long as |v| <= 2**53; bools as
    1.0/0.0); string inputs as object arrays with None. The result is read as float64, NaN
    meaning null, and cast to ``dtype`` (int64/bool results must be integral / 0-1 elsewhere).
    ``fn`` runs with numpy floating-point warnings silenced: computing masked-out lanes is normal.
    ``window`` (for the metadata) defaults to the one window of the windowed inputs, if any.
    """

    name: str
    dtype: str
    inputs: Sequence[str]
    fn: Callable
    nullable: bool
    doc: str = ""
    window: Optional[str] = None

    def __post_init__(self):
        where = f"derived {self.name}"
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"derived name {self.name!r} is not an identifier")
        if self.dtype not in FEATURE_TYPES:
            raise ValueError(f"{where}: dtype must be one of {FEATURE_TYPES}, not {self.dtype!r}")
        if isinstance(self.inputs, str) or not self.inputs or not all(isinstance(i, str) for i in self.inputs):
            raise ValueError(f"{where}: inputs must be a non-empty sequence of names")
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if not callable(self.fn):
            raise ValueError(f"{where}: fn is not callable")
        if not isinstance(self.nullable, bool):
            raise ValueError(f"{where}: nullable must be a bool")

    @property
    def hidden(self) -> bool:
        return False


def resolve(set_name: str, items: Sequence, contract, windows: Mapping[str, int], passthrough: Sequence[str]):
    """Validate a set's items against its contract and windows.

    Returns (features, info): the output ``Feature``s in order, and per item name a dict with
    dtype, nullable and window (hidden aggregations included).
    """
    from features.featureset import Feature

    fields = {f.name: f for f in contract.all_fields}
    info: dict = {}
    out = []
    used: set = set()
    for it in items:
        if not isinstance(it, (Aggregation, Derived)):
            raise ValueError(f"feature set {set_name}: item {it!r} is neither an Aggregation nor a Derived")
        if it.name in info:
            raise ValueError(f"feature set {set_name}: duplicate name {it.name!r}")
        if it.name in fields or it.name in passthrough:
            raise ValueError(f"feature set {set_name}: {it.name!r} shadows a contract field")
        if it.window is not None and it.window not in windows:
            raise ValueError(f"{type(it).__name__.lower()} {it.name}: unknown window {it.window!r}")
        if isinstance(it, Aggregation):
            f = fields.get(it.input) if it.input is not None else None
            if it.input is not None and f is None:
                raise ValueError(f"aggregation {it.name}: unknown input {it.input!r} "
                                 f"(not a field of contract {contract.name})")
            kind = ENGINE_TYPES[f.type] if f is not None else None
            dtype, nullable = it.resolved(kind, bool(f is not None and f.nullable))
            window = it.window
        else:
            wins = set()
            for name in it.inputs:
                if name in info:
                    used.add(name)
                    if info[name]["window"] is not None:
                        wins.add(info[name]["window"])
                elif name not in fields:
                    raise ValueError(f"derived {it.name}: unknown input {name!r} (not an earlier item "
                                     f"nor a field of contract {contract.name})")
            if it.window is None and len(wins) > 1:
                raise ValueError(f"derived {it.name}: inputs span windows {sorted(wins)}; declare window=")
            window = it.window if it.window is not None else (wins.pop() if wins else None)
            dtype, nullable = it.dtype, it.nullable
        info[it.name] = {"dtype": dtype, "nullable": nullable, "window": window, "item": it}
        if not it.hidden:
            out.append(Feature(it.name, dtype, window, nullable, it.doc))
    for it in items:
        if it.hidden and it.name not in used:
            raise ValueError(f"aggregation {it.name}: hidden but no derived feature uses it")
    if not out:
        raise ValueError(f"feature set {set_name}: no output features")
    return tuple(out), info
