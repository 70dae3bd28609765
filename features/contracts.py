"""Event contracts: one versioned schema per domain, shared by Kafka (JSON) and Parquet.

A contract is data: field names, types, which are required, and value checks. The same
object validates a JSON payload from Kafka, a row read from Parquet, and gives the
explicit pyarrow schema files are written with.

>>> ev = PAYMENT.parse('{"event_id":"e1","event_time":"2026-01-01T00:00:00Z","card_id":"c1",'
...                    '"merchant_id":"m1","mcc":"5411","amount":12.5,"currency":"EUR",'
...                    '"lat":52.5,"lon":13.4,"device_id":null}')
>>> ev["event_time"], ev["amount"]
(1767225600000, 12.5)
>>> PAYMENT.parse('{"event_id":"e1"}')
Traceback (most recent call last):
...
features.contracts.InvalidEvent: missing_field: event_time
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Optional, Sequence

# Reasons are stable strings (dead-letter consumers group by them); the text after
# the colon says which field and why.
MALFORMED_JSON = "malformed_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
NON_FINITE = "non_finite"
OUT_OF_RANGE = "out_of_range"
BAD_TIMESTAMP = "bad_timestamp"
TIME_SKEW = "time_skew"
LATE = "late"
TOO_LARGE = "too_large"  # payload over the record size limit: not parsed, a bounded prefix kept
UNPARSEABLE = "unparseable"  # anything else that went wrong while reading a record (never expected)
DUPLICATE = "duplicate"  # an event_id seen within the dedup horizon, same content (features/dedup.py)
DUPLICATE_ID_CONFLICT = "duplicate_id_conflict"  # an event_id seen within the horizon, other content
REASONS = (MALFORMED_JSON, NOT_AN_OBJECT, MISSING_FIELD, WRONG_TYPE, NON_FINITE,
           OUT_OF_RANGE, BAD_TIMESTAMP, TIME_SKEW, LATE, TOO_LARGE, UNPARSEABLE,
           DUPLICATE, DUPLICATE_ID_CONFLICT)

# Work per record is bounded: a payload over MAX_RECORD_BYTES is not parsed, JSON nested deeper
# than MAX_JSON_DEPTH is refused before the parser recurses into it.
MAX_RECORD_BYTES = 65_536
MAX_JSON_DEPTH = 32
DEFAULT_MAX_STRING = 256  # a string field's maximum length (characters) unless it declares one


class InvalidEvent(ValueError):
    """A record that breaks its contract. ``reason`` is one of REASONS."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


STRING, INT64, FLOAT64, BOOL, TIMESTAMP_MS = "string", "int64", "float64", "bool", "timestamp_ms"

# Optional Parquet column holding a verbatim payload (see EventContract.arrow_schema).
RAW_PAYLOAD = "_raw"


@dataclass(frozen=True)
class Field:
    """One field of an event. ``check`` returns an error text for a bad value, else None.

    Numbers have a declared plausible range (``min_value``/``max_value``, inclusive); strings a
    maximum length and never contain control characters or unpaired surrogates (they would
    break a sink or a log line downstream).
    """

    name: str
    type: str
    required: bool = True
    nullable: bool = False
    doc: str = ""
    check: Optional[Callable[[Any], Optional[str]]] = None
    min_value: Optional[float] = None
    max_value: Optional[float] = None
    max_length: int = DEFAULT_MAX_STRING

    def __post_init__(self):
        if self.type not in (STRING, INT64, FLOAT64, BOOL, TIMESTAMP_MS):
            raise ValueError(f"field {self.name}: unknown type {self.type!r}")
        if self.max_length < 1:
            raise ValueError(f"field {self.name}: max_length must be >= 1")
        if self.min_value is not None and self.max_value is not None and self.min_value > self.max_value:
            raise ValueError(f"field {self.name}: min_value > max_value")


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def string_problem(v: str, max_length: int) -> Optional[str]:
    r"""Why a string cannot be carried safely, or None.

    >>> string_problem("c1", 8), string_problem("a\x00b", 8), string_problem("x" * 9, 8)
    (None, 'contains a control character at 1', 'is 9 characters long (max 8)')
    """
    if len(v) > max_length:
        return f"is {len(v)} characters long (max {max_length})"
    m = _CONTROL.search(v)
    if m:
        return f"contains a control character at {m.start()}"
    try:
        v.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"is not valid Unicode at {e.start}"
    return None


# Each check carries ``intake``: what it tests, as data, so the JVM intake (jvm/engine Intake) can
# accept the values that certainly pass it; a check without it sends its field to the Python path.
def identifier(v: str) -> Optional[str]:
    """Ids are not blank."""
    return "must not be blank" if not v.strip() else None


identifier.intake = {"kind": "not_blank"}


def matches(pattern: str, what: str) -> Callable[[Any], Optional[str]]:
    rx = re.compile(pattern)

    def check(v: str) -> Optional[str]:
        return None if rx.fullmatch(v) else f"must be {what}"
    check.intake = {"kind": "regex", "pattern": pattern}
    return check


def one_of(*allowed: str) -> Callable[[Any], Optional[str]]:
    def check(v: str) -> Optional[str]:
        return None if v in allowed else f"must be one of {sorted(allowed)}"
    check.intake = {"kind": "one_of", "values": sorted(allowed)}
    return check


def parse_event_time(value: Any) -> int:
    """UTC epoch milliseconds from an int/float of ms or an ISO-8601 string.

    >>> parse_event_time("1970-01-01T00:00:01.5Z"), parse_event_time(1500)
    (1500, 1500)
    """
    if isinstance(value, bool):
        raise InvalidEvent(WRONG_TYPE, "event_time is a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEvent(NON_FINITE, "event_time")
        if not value.is_integer():
            raise InvalidEvent(BAD_TIMESTAMP, f"event_time {value!r} is not whole milliseconds")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 40:
            raise InvalidEvent(BAD_TIMESTAMP, f"event_time is a {len(text)}-character string")
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise InvalidEvent(BAD_TIMESTAMP, f"event_time {value!r} is not ISO-8601 or epoch ms") from None
        if dt.tzinfo is None:  # naive times are UTC by contract
            dt = dt.replace(tzinfo=timezone.utc)
        return int(round(dt.timestamp() * 1000))
    raise InvalidEvent(WRONG_TYPE, f"event_time has type {type(value).__name__}")


# Earliest/latest event_time accepted at all: 2000-01-01 .. 2100-01-01 (absurd beyond that).
MIN_EVENT_TIME_MS = 946_684_800_000
MAX_EVENT_TIME_MS = 4_102_444_800_000


@dataclass(frozen=True)
class EventContract:
    """A versioned event schema. ``key`` is the entity the features are keyed by."""

    name: str
    version: int
    key: str
    fields: Sequence[Field]
    labels: Sequence[Field] = field(default_factory=tuple)  # optional, only in generated/historic data
    doc: str = ""

    def __post_init__(self):
        names = [f.name for f in self.all_fields]
        if len(set(names)) != len(names):
            raise ValueError(f"contract {self.name}: duplicate field names")
        if "event_id" not in names or "event_time" not in names:
            raise ValueError(f"contract {self.name}: needs event_id and event_time")
        if self.key not in names:
            raise ValueError(f"contract {self.name}: key {self.key!r} is not a field")

    @property
    def all_fields(self) -> tuple:
        return tuple(self.fields) + tuple(self.labels)

    @property
    def field_names(self) -> tuple:
        return tuple(f.name for f in self.fields)

    @property
    def label_names(self) -> tuple:
        return tuple(f.name for f in self.labels)

    # -- validation ---------------------------------------------------------------------
    def parse(self, raw: Any, max_bytes: int = MAX_RECORD_BYTES) -> dict:
        """Validate a JSON payload (str/bytes) and return the event as a dict.

        Raises InvalidEvent, and nothing else, whatever ``raw`` holds.
        """
        if isinstance(raw, (bytes, bytearray, memoryview)):
            if len(raw) > max_bytes:
                raise InvalidEvent(TOO_LARGE, f"payload is {len(raw)} bytes (max {max_bytes})")
            try:
                raw = bytes(raw).decode("utf-8")
            except UnicodeDecodeError as e:
                raise InvalidEvent(MALFORMED_JSON, f"not UTF-8: invalid byte at {e.start}") from None
        elif not isinstance(raw, str):
            raise InvalidEvent(MALFORMED_JSON, f"payload is {type(raw).__name__}, not text")
        elif len(raw) > max_bytes // 4 and len(raw.encode("utf-8", errors="surrogatepass")) > max_bytes:
            raise InvalidEvent(TOO_LARGE, f"payload is over {max_bytes} bytes")
        if raw.count("[") + raw.count("{") > MAX_JSON_DEPTH:
            depth = json_depth(raw)
            if depth > MAX_JSON_DEPTH:
                raise InvalidEvent(MALFORMED_JSON, f"nested {depth} levels deep (max {MAX_JSON_DEPTH})")
        try:
            obj = json.loads(raw, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
        except InvalidEvent:
            raise
        except (ValueError, TypeError, RecursionError) as e:
            raise InvalidEvent(MALFORMED_JSON, str(e)[:200]) from None
        if not isinstance(obj, dict):
            raise InvalidEvent(NOT_AN_OBJECT, f"got {type(obj).__name__}")
        return self.validate(obj)

    def with_range(self, name: str, min_value: Optional[float] = None,
                   max_value: Optional[float] = None) -> "EventContract":
        """The same contract with another plausible range for the numeric field ``name``.

        >>> PAYMENT.with_range("amount", max_value=100.0).parse(
        ...     '{"event_id":"e1","event_time":1767225600000,"card_id":"c1","merchant_id":"m1",'
        ...     '"mcc":"5411","amount":500,"currency":"EUR","lat":0,"lon":0}')
        Traceback (most recent call last):
        ...
        features.contracts.InvalidEvent: out_of_range: amount 500.0 must be within [0.0, 100.0]
        """
        if name not in {f.name for f in self.all_fields}:
            raise ValueError(f"contract {self.name} has no field {name!r}")
        swap = lambda fs: tuple(replace(f, min_value=f.min_value if min_value is None else min_value,
                                        max_value=f.max_value if max_value is None else max_value)
                                if f.name == name else f for f in fs)
        return replace(self, fields=swap(self.fields), labels=swap(self.labels))

    def validate(self, obj: Mapping[str, Any]) -> dict:
        """Check and normalise one record (from JSON or a Parquet row); unknown keys are dropped."""
        out = {}
        for f in self.fields:
            out[f.name] = self._value(f, obj)
        for f in self.labels:
            if f.name in obj:
                out[f.name] = self._value(f, obj)
        return out

    def _value(self, f: Field, obj: Mapping[str, Any]) -> Any:
        if f.name not in obj:
            if f.required:
                raise InvalidEvent(MISSING_FIELD, f.name)
            return None
        v = obj[f.name]
        if v is None:
            if f.nullable:
                return None
            raise InvalidEvent(MISSING_FIELD, f"{f.name} is null")
        if f.type == TIMESTAMP_MS:
            v = parse_event_time(v)
            if not MIN_EVENT_TIME_MS <= v <= MAX_EVENT_TIME_MS:
                raise InvalidEvent(BAD_TIMESTAMP, f"{f.name} {_short(v)} outside 2000..2100")
        elif f.type == STRING:
            if not isinstance(v, str):
                raise InvalidEvent(WRONG_TYPE, f"{f.name} must be a string, got {type(v).__name__}")
            problem = string_problem(v, f.max_length)
            if problem:
                raise InvalidEvent(OUT_OF_RANGE, f"{f.name} {problem}")
        elif f.type == FLOAT64:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise InvalidEvent(WRONG_TYPE, f"{f.name} must be a number, got {type(v).__name__}")
            try:
                v = float(v)
            except OverflowError:
                raise InvalidEvent(OUT_OF_RANGE, f"{f.name} is an integer too large for a float") from None
            if not math.isfinite(v):
                raise InvalidEvent(NON_FINITE, f"{f.name} is {v}")
        elif f.type == INT64:
            if isinstance(v, bool) or not isinstance(v, int):
                if isinstance(v, float) and v.is_integer():
                    v = int(v)
                else:
                    raise InvalidEvent(WRONG_TYPE, f"{f.name} must be an integer, got {type(v).__name__}")
            if not -2**63 <= v < 2**63:
                raise InvalidEvent(OUT_OF_RANGE, f"{f.name} {_short(v)} does not fit 64 bits")
        elif f.type == BOOL:
            if not isinstance(v, bool):
                raise InvalidEvent(WRONG_TYPE, f"{f.name} must be a boolean, got {type(v).__name__}")
        if f.min_value is not None or f.max_value is not None:
            lo = -math.inf if f.min_value is None else f.min_value
            hi = math.inf if f.max_value is None else f.max_value
            if not lo <= v <= hi:
                raise InvalidEvent(OUT_OF_RANGE, f"{f.name} {_short(v)} must be within [{f.min_value}, {f.max_value}]")
        if f.check is not None:
            problem = f.check(v)
            if problem:
                raise InvalidEvent(OUT_OF_RANGE, f"{f.name} {problem}")
        return v

    # -- serialisation -------------------------------------------------------------------
    def to_json(self, event: Mapping[str, Any]) -> str:
        return json.dumps({k: event[k] for k in self.field_names + self.label_names if k in event},
                          separators=(",", ":"), allow_nan=False)

    def arrow_schema(self, with_labels: bool = True, with_raw: bool = False):
        """The explicit pyarrow schema Parquet files of this contract are written with.

        Every column is nullable in the file: a historic file may hold broken rows, and
        ``validate`` (not the file format) decides what is acceptable. ``with_raw`` adds the
        RAW_PAYLOAD column: where set, the row *is* that verbatim payload (for instance a
        malformed JSON record kept so a replay sends exactly what arrived), and the typed
        columns are null.
        """
        import pyarrow as pa

        kinds = {STRING: pa.string(), INT64: pa.int64(), FLOAT64: pa.float64(), BOOL: pa.bool_(),
                 TIMESTAMP_MS: pa.int64()}
        fs = self.all_fields if with_labels else tuple(self.fields)
        cols = [pa.field(f.name, kinds[f.type], nullable=True,
                         metadata={"doc": f.doc} if f.doc else None) for f in fs]
        if with_raw:
            cols.append(pa.field(RAW_PAYLOAD, pa.string(), nullable=True))
        return pa.schema(cols, metadata={"contract": self.name, "version": str(self.version)})

    def from_row(self, row: Mapping[str, Any]) -> dict:
        """Validate a row read from Parquet (RAW_PAYLOAD rows are parsed as JSON payloads)."""
        raw = row.get(RAW_PAYLOAD)
        if raw is not None:
            return self.parse(raw)
        return self.validate({k: v for k, v in row.items() if v is not None or k in self._nullable})

    @property
    def _nullable(self) -> frozenset:
        return frozenset(f.name for f in self.all_fields if f.nullable)

    def intake_spec(self, with_labels: bool = False) -> dict:
        """The contract as data for the JVM intake (jvm/engine Intake): per field its type, presence,
        range, length and check (``{"kind": "opaque"}`` where a check is not describable: that field's
        values then always take the Python path). Labels are always checked where present (as
        ``validate`` does) and ``emit``-ted only ``with_labels``."""
        def spec(f: Field, label: bool) -> dict:
            check = getattr(f.check, "intake", None) if f.check is not None else None
            return {"name": f.name, "type": f.type, "required": f.required, "nullable": f.nullable, "label": label,
                    "emit": with_labels or not label, "min": f.min_value, "max": f.max_value,
                    "max_length": f.max_length,
                    "check": check if f.check is None or check is not None else {"kind": "opaque"}}
        return {"contract": self.name, "version": self.version,
                "fields": [spec(f, False) for f in self.fields] + [spec(f, True) for f in self.labels],
                "min_time": MIN_EVENT_TIME_MS, "max_time": MAX_EVENT_TIME_MS}

    def flink_sql_columns(self, with_labels: bool = False) -> list:
        """(name, SQL type) pairs for a Flink table over Parquet files of this contract."""
        kinds = {STRING: "STRING", INT64: "BIGINT", FLOAT64: "DOUBLE", BOOL: "BOOLEAN", TIMESTAMP_MS: "BIGINT"}
        fs = self.all_fields if with_labels else tuple(self.fields)
        return [(f.name, kinds[f.type]) for f in fs]


def _reject_constant(name: str):
    raise InvalidEvent(NON_FINITE, f"JSON constant {name}")


def _unique_keys(pairs):
    # A repeated key is ambiguous (parsers disagree on which copy wins): refuse it.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise InvalidEvent(MALFORMED_JSON, f"key {_short(dup)} appears twice")
    return obj


def _short(v: Any, n: int = 40) -> str:
    text = repr(v) if not isinstance(v, int) or v.bit_length() < 200 else f"<{v.bit_length()}-bit integer>"
    return text if len(text) <= n else text[:n] + "..."


def json_depth(text: str) -> int:
    """Deepest nesting of arrays/objects in JSON text, ignoring brackets inside strings.

    >>> json_depth('{"a": [1, {"b": "[[["}]}'), json_depth('"x"')
    (3, 0)
    """
    depth = deepest = 0
    in_str = escaped = False
    for ch in text:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        elif ch in "]}":
            depth -= 1
    return deepest


def dead_letter(raw: Any, reason: str, detail: str = "", source: str = "", partition: Optional[int] = None,
                offset: Optional[int] = None) -> dict:
    """The dead-letter record: what came in, why it was refused, and where it came from."""
    if isinstance(raw, (bytes, bytearray)):
        raw = raw.decode("utf-8", errors="replace")
    elif not isinstance(raw, str):
        raw = json.dumps(raw, default=str, allow_nan=True)
    return {"reason": reason, "detail": detail, "raw": raw, "source": source,
            "partition": partition, "offset": offset}


DEAD_LETTER_FIELDS = ("reason", "detail", "raw", "source", "partition", "offset")

# What a dead letter keeps of its payload: the whole payload up to MAX_RAW_KEPT bytes, else a
# prefix of that size (size and SHA-256 always describe the whole original), so every dead
# letter fits a Kafka record whatever arrived.
MAX_RAW_KEPT = 16_384
MAX_DETAIL_CHARS = 1_000


def bounded_detail(detail: str) -> str:
    """A dead letter's detail, at most MAX_DETAIL_CHARS (+ "...")."""
    return detail if len(detail) <= MAX_DETAIL_CHARS else detail[:MAX_DETAIL_CHARS] + "..."


def bounded_raw(raw: Any) -> tuple:
    """(text, encoding, size in bytes, sha256 hex) of a payload, its text at most MAX_RAW_KEPT bytes.

    UTF-8 payloads stay text (``utf-8``); any other bytes are kept as base64 (``base64``), so the
    original bytes can always be recovered.

    >>> bounded_raw(b"ok")[:3], bounded_raw(bytes([255]))[:3]
    (('ok', 'utf-8', 2), ('/w==', 'base64', 1))
    >>> text, enc, size, sha = bounded_raw("x" * 20_000); len(text), size
    (16384, 20000)
    """
    import base64
    import hashlib

    if raw is None:
        return None, None, None, None
    if isinstance(raw, str):
        data = raw.encode("utf-8", errors="surrogatepass")
    elif isinstance(raw, (bytes, bytearray, memoryview)):
        data = bytes(raw)
    else:
        data = json.dumps(raw, default=str).encode("utf-8", errors="surrogatepass")
    kept = data[:MAX_RAW_KEPT]
    if len(kept) < len(data):  # do not split a UTF-8 character at the cut
        kept = kept.decode("utf-8", errors="ignore").encode("utf-8") if _utf8(data) else kept
    if _utf8(kept):
        text, encoding = kept.decode("utf-8"), "utf-8"
    else:
        text, encoding = base64.b64encode(kept).decode("ascii"), "base64"
    return text, encoding, len(data), hashlib.sha256(data).hexdigest()


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def dead_letter_arrow_schema():
    import pyarrow as pa

    return pa.schema([("reason", pa.string()), ("detail", pa.string()), ("raw", pa.string()),
                      ("source", pa.string()), ("partition", pa.int32()), ("offset", pa.int64())])


_ID = dict(type=STRING, check=identifier, max_length=128)

PAYMENT = EventContract(
    name="payment", version=1, key="card_id",
    doc="A card payment authorisation request.",
    fields=(
        Field("event_id", doc="unique id of the event", **_ID),
        Field("event_time", TIMESTAMP_MS, doc="UTC epoch ms (ISO-8601 accepted on input)"),
        Field("card_id", doc="the card paying", **_ID),
        Field("merchant_id", doc="the merchant paid", **_ID),
        Field("mcc", STRING, check=matches(r"[0-9]{4}", "4 digits"), max_length=4,
              doc="ISO 18245 merchant category code, 4 digits"),
        Field("amount", FLOAT64, min_value=0.0, max_value=1e7,
              doc="amount in the currency, 0 .. 1e7 (plausible maximum; configurable per job)"),
        Field("currency", STRING, check=matches(r"[A-Z]{3}", "an ISO 4217 code (3 capital letters)"),
              max_length=3, doc="ISO 4217 code"),
        Field("lat", FLOAT64, min_value=-90.0, max_value=90.0, doc="where the payment happened"),
        Field("lon", FLOAT64, min_value=-180.0, max_value=180.0),
        Field("device_id", STRING, required=False, nullable=True, check=identifier, max_length=128,
              doc="device fingerprint; null for card-present"),
    ),
    labels=(
        Field("is_fraud", BOOL, required=False, nullable=True, doc="label (generated/historic data)"),
        Field("fraud_pattern", STRING, required=False, nullable=True, doc="which planted pattern, if any"),
    ),
)

BEHAVIOUR = EventContract(
    name="behaviour", version=1, key="user_id",
    doc="A shopper's interaction with an item.",
    fields=(
        Field("event_id", doc="unique id of the event", **_ID),
        Field("event_time", TIMESTAMP_MS, doc="UTC epoch ms (ISO-8601 accepted on input)"),
        Field("user_id", **_ID),
        Field("session_hint", STRING, required=False, nullable=True, doc="client session id, if known"),
        Field("item_id", **_ID),
        Field("category", STRING),
        Field("action", STRING, check=one_of("view", "cart", "purchase")),
        Field("price", FLOAT64, min_value=0.0, max_value=1e7),
    ),
)

SENSOR = EventContract(
    name="sensor", version=1, key="machine_id",
    doc="One reading of one sensor on one machine.",
    fields=(
        Field("event_id", doc="unique id of the event", **_ID),
        Field("event_time", TIMESTAMP_MS, doc="UTC epoch ms (ISO-8601 accepted on input)"),
        Field("machine_id", **_ID),
        Field("sensor_id", **_ID),
        Field("value", FLOAT64),
        Field("unit", STRING),
    ),
    labels=(
        Field("is_anomaly", BOOL, required=False, nullable=True, doc="inside a labelled anomaly window"),
    ),
)

CONTRACTS = {c.name: c for c in (PAYMENT, BEHAVIOUR, SENSOR)}
DOMAIN_CONTRACT = {"fraud": PAYMENT, "recsys": BEHAVIOUR, "iot": SENSOR}


def contract_for(domain: str) -> EventContract:
    try:
        return DOMAIN_CONTRACT.get(domain) or CONTRACTS[domain]
    except KeyError:
        raise ValueError(f"unknown domain {domain!r}; choose from {sorted(DOMAIN_CONTRACT)}") from None
