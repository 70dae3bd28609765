"""Backfill without Flink: the streaming job's outcomes for a file of events, vectorized.

``backfill_frame`` gives, for a table of source rows (a contract's typed columns, maybe the
``_raw`` payload column), what ``streamscore backfill`` on Flink gives: one feature row per
accepted, de-duplicated event and one dead letter per refused row, with the same reasons,
details and raw text. It reuses the per-record logic for everything unusual:

1. intake: ``certainly_valid`` is a vectorized mask over the typed columns that accepts only rows
   ``Intake.row`` certainly accepts, with the values as they are. Every other row (a payload in
   ``_raw``, a null, a value out of range, an unusual string) goes through ``Intake.row`` one by
   one, so its reason and detail are exactly the per-record ones;
2. de-duplication: only event_ids with more than one accepted row are looked at, through
   ``features.dedup.fingerprint`` / ``resolve`` (the BATCH rule);
3. features: what ``features.execute.execute`` computes (its ``feature_arrays``) over the kept
   events, written to Arrow without passing through Python objects.

Backfill has no arrival order (``stream_guards=False``): only the wall-clock bound on event
time applies, so any row order of a file gives the same outcomes.

>>> import pyarrow as pa
>>> from features.fraud import FRAUD_FEATURES
>>> ok = dict(event_id="e1", event_time=1767225600000, card_id="c1", merchant_id="m1", mcc="5411",
...           amount=9.5, currency="EUR", lat=0.0, lon=0.0, device_id=None)
>>> rows = [ok, dict(ok, event_id="e2", amount=-1.0), dict(ok)]  # a bad amount, then a copy of e1
>>> feats, dead = backfill_frame(FRAUD_FEATURES, pa.Table.from_pylist(rows), now_ms=1767225600000)
>>> feats["event_id"].tolist(), sorted(dead["reason"])
(['e1'], ['duplicate', 'out_of_range'])
"""
from __future__ import annotations

import json
import math
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from features.contracts import (BOOL, FLOAT64, INT64, MAX_EVENT_TIME_MS, MAX_RECORD_BYTES,
                                MIN_EVENT_TIME_MS, RAW_PAYLOAD, STRING, TIMESTAMP_MS, EventContract, bounded_detail, bounded_raw,
                                identifier)
from features.dedup import fingerprint, resolve
from features.intake import DAY_MS, Intake

# The dead-letter row, in udfs.types.REJECT_COLUMNS order (held equal by tests/fast/test_backfill_pandas.py).
REJECT_NAMES = ("reason", "detail", "raw", "raw_encoding", "raw_size", "raw_sha256", "source",
                "src_partition", "src_offset", "ingest_ms")
Progress = Callable[[str, float], None]


def dead_letter_row(reason: str, detail: str, raw, source: str, partition=None, offset=None,
                    ingest_ms: Optional[int] = None) -> tuple:
    """A dead letter in REJECT_NAMES order, as udfs.types.reject_row builds it (without Flink).

    >>> dead_letter_row("too_large", "x", "{}", "parquet:f")[:6]
    ('too_large', 'x', '{}', 'utf-8', 2, '44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a')
    """
    text, encoding, size, sha = bounded_raw(raw)
    return (reason, bounded_detail(detail), text, encoding, size, sha, source, partition, offset, ingest_ms)


def backfill_contract(contract: EventContract, max_amount: float) -> EventContract:
    """The contract a backfill validates with: the job's --max-amount as the amount's maximum (payments)."""
    current = next((f.max_value for f in contract.all_fields if f.name == "amount"), None)
    return contract if current in (None, max_amount) else contract.with_range("amount", max_value=max_amount)


def source_names(contract: EventContract, with_labels: bool, raw: bool) -> list:
    """The source columns a row is read with, in order (jobs.pipeline.source_columns)."""
    return list(contract.field_names) + (list(contract.label_names) if with_labels else []) + \
        ([RAW_PAYLOAD] if raw else [])


def arrow_types(contract: EventContract) -> dict:
    import pyarrow as pa

    kinds = {STRING: pa.string(), INT64: pa.int64(), FLOAT64: pa.float64(), BOOL: pa.bool_(),
             TIMESTAMP_MS: pa.int64()}
    out = {f.name: kinds[f.type] for f in contract.all_fields}
    out[RAW_PAYLOAD] = pa.string()
    return out


def as_table(df, contract: EventContract, names: Sequence[str]):
    """``df`` (a pyarrow Table or a pandas frame) as a Table of ``names`` with the contract's types.

    Large strings become strings; any other type than the contract's is refused (ValueError):
    a Flink source declared with the contract's types would not read it either.
    """
    import pyarrow as pa

    types = arrow_types(contract)
    if isinstance(df, pd.DataFrame):
        missing = [n for n in names if n not in df.columns]
        if missing:
            raise ValueError(f"the input lacks columns {missing}")
        fields = [pa.field(n, types[n]) for n in names]
        return pa.Table.from_pandas(df[list(names)], schema=pa.schema(fields), preserve_index=False)
    cols = []
    for n in names:
        if n not in df.column_names:
            raise ValueError(f"the input lacks column {n}")
        col = df[n]
        if col.type != types[n]:
            if col.type in (pa.large_string(),) and types[n] == pa.string() or pa.types.is_null(col.type):
                col = col.cast(types[n])
            else:
                raise ValueError(f"column {n} is {col.type}, the contract says {types[n]}")
        cols.append(col)
    return pa.table(cols, names=list(names))


# --------------------------------------------------------------------------------- the mask
def certainly_valid(contract: EventContract, table, names: Sequence[str], *, now_ms: int,
                    max_future_ms: int = DAY_MS, max_record_bytes: int = MAX_RECORD_BYTES) -> np.ndarray:
    """Rows of ``table`` (columns ``names``, typed as the contract says) that ``Intake.row`` certainly
    accepts unchanged (stream_guards off). False means "not sure": that row takes the per-record path.
    """
    import pyarrow.compute as pc

    n = table.num_rows
    mask = np.ones(n, dtype=bool)
    fields = {f.name: f for f in contract.all_fields}
    for name in names:
        col = table[name]
        if name == RAW_PAYLOAD:
            mask &= _np(pc.is_null(col))
            continue
        f = fields[name]
        isnull = _np(pc.is_null(col))
        ok = np.zeros(n, dtype=bool)
        if f.type == STRING:
            # printable ASCII (0x20-0x7e) only: string_problem finds nothing to refuse in such a string,
            # its length in characters is its length in bytes, and str.strip() removes only the space
            length = pc.fill_null(pc.binary_length(col), 0)
            good = pc.and_(pc.and_(pc.string_is_ascii(col), pc.ascii_is_printable(col)),
                           pc.less_equal(length, min(f.max_length, max_record_bytes)))
            if f.check is identifier:  # not blank: for printable ASCII, a character other than the space
                good = pc.and_(good, pc.and_(pc.invert(pc.ascii_is_space(col)), pc.greater(length, 0)))
            ok = _np(pc.fill_null(good, False))
            if f.check is not None and f.check is not identifier:
                ok &= _check_each(f.check, col)
        elif f.type in (INT64, TIMESTAMP_MS):
            v = col.to_numpy(zero_copy_only=False) if not col.null_count else \
                _np(pc.fill_null(col, 0)).astype(np.int64)
            ok = ~isnull
            lo, hi = f.min_value, f.max_value
            if f.type == TIMESTAMP_MS:
                ok &= (v >= MIN_EVENT_TIME_MS) & (v <= MAX_EVENT_TIME_MS)
                if f.name == "event_time":  # the wall-clock guard (Intake._check_time)
                    ok &= v <= now_ms + max_future_ms
            if lo is not None:
                ok &= v >= _int_bound(lo, up=True)
            if hi is not None:
                ok &= v <= _int_bound(hi, up=False)
            if f.check is not None:
                ok &= _check_each(f.check, col)
        elif f.type == FLOAT64:
            v = _np(pc.fill_null(col, 0.0)).astype(np.float64)
            ok = ~isnull & np.isfinite(v)
            lo = -math.inf if f.min_value is None else float(f.min_value)
            hi = math.inf if f.max_value is None else float(f.max_value)
            ok &= (v >= lo) & (v <= hi)
            if f.check is not None:
                ok &= _check_each(f.check, col)
        elif f.type == BOOL:
            ok = ~isnull
            if f.check is not None:
                ok &= _check_each(f.check, col)
        if f.nullable:
            ok |= isnull  # a null where the contract allows it needs no other check
        mask &= ok
    return mask


def _np(arr) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False) if hasattr(arr, "to_numpy") else np.asarray(arr)


def _int_bound(b: float, up: bool) -> int:
    """An inclusive float bound as the int64 bound that compares the same (ints compare exactly)."""
    if math.isinf(b):
        return -2 ** 63 if b < 0 else 2 ** 63 - 1
    v = math.ceil(b) if up else math.floor(b)
    return max(-2 ** 63, min(2 ** 63 - 1, v))


def _check_each(check, col) -> np.ndarray:
    """A field's check, called once per distinct value (nulls: False; an exception: False)."""
    import pyarrow.compute as pc

    whole = col.combine_chunks() if hasattr(col, "combine_chunks") else col  # one dictionary for all chunks
    enc = pc.dictionary_encode(whole)
    good = []
    for v in enc.dictionary.to_pylist():
        try:
            good.append(check(v) is None)
        except Exception:  # noqa: BLE001 - not certain: the per-record path says what it is
            good.append(False)
    idx = enc.indices
    out = np.zeros(len(col), dtype=bool)
    valid = _np(pc.is_valid(idx))
    if len(good):
        out[valid] = np.asarray(good, dtype=bool)[_np(pc.drop_null(idx)).astype(np.int64)]
    return out


# ----------------------------------------------------------------------------- the backfill
def backfill_frame(fs, df, *, now_ms: int, max_future_ms: int = DAY_MS, dedup_horizon_ms: int = 7 * DAY_MS,
                   max_record_bytes: int = MAX_RECORD_BYTES, max_amount: float = 1e7, with_labels: bool = False,
                   source: str = "", progress: Optional[Progress] = None, parts: int = 1):
    """(features, dead letters) of the source rows ``df`` (a pyarrow Table or pandas frame), as pandas.

    ``features``: the columns of udfs.types.feature_columns (identity, features, ``ingest_ms``,
    labels when ``with_labels``), one row per kept event, None for null. ``dead``: REJECT_NAMES
    columns. ``now_ms`` is the wall clock the future bound counts from and every row's ``ingest_ms``.
    """
    feats, dead = backfill_tables(fs, df, now_ms=now_ms, max_future_ms=max_future_ms,
                                  dedup_horizon_ms=dedup_horizon_ms, max_record_bytes=max_record_bytes,
                                  max_amount=max_amount, with_labels=with_labels, source=source, progress=progress,
                                  parts=parts)
    cols = {}
    for name in feats.column_names:  # execute's convention: object with None where a column may be null
        col = feats[name]
        declared = fs.declared.get(name, {}).get("nullable", name in fs.contract.label_names)
        cols[name] = np.asarray(col.to_pylist(), dtype=object) if col.null_count or declared else col.to_numpy()
    return pd.DataFrame(cols, columns=feats.column_names), pd.DataFrame(dead, columns=list(REJECT_NAMES))


def backfill_tables(fs, df, *, now_ms: int, max_future_ms: int = DAY_MS, dedup_horizon_ms: int = 7 * DAY_MS,
                    max_record_bytes: int = MAX_RECORD_BYTES, max_amount: float = 1e7, with_labels: bool = False,
                    source: str = "", progress: Optional[Progress] = None, parts: int = 1):
    """``backfill_frame`` without pandas at the end: (features as a pyarrow Table in
    ``feature_arrow_schema``, dead letters as a list of REJECT_NAMES tuples). ``parts`` > 1 computes
    the features key part by key part (``split_by_key``): the same rows, in another order."""
    events, dead = prepare_events(fs, df, now_ms=now_ms, max_future_ms=max_future_ms,
                                  dedup_horizon_ms=dedup_horizon_ms, max_record_bytes=max_record_bytes,
                                  max_amount=max_amount, with_labels=with_labels, source=source, progress=progress)
    if progress:
        progress("features", 0.0)
    import pyarrow as pa

    feats = pa.concat_tables([features_table(fs, part, with_labels=with_labels, ingest_ms=now_ms)
                              for part in split_by_key(events, fs.keys, parts)])
    if progress:
        progress("features", 1.0)
    return feats, dead


def prepare_events(fs, df, *, now_ms: int, max_future_ms: int = DAY_MS, dedup_horizon_ms: int = 7 * DAY_MS,
                   max_record_bytes: int = MAX_RECORD_BYTES, max_amount: float = 1e7, with_labels: bool = False,
                   source: str = "", progress: Optional[Progress] = None):
    """Intake and de-duplication: (the kept events as a pyarrow Table of the event columns, dead letters)."""
    events, dead = intake_frame(fs.contract, df, now_ms=now_ms, max_future_ms=max_future_ms,
                                max_record_bytes=max_record_bytes, max_amount=max_amount,
                                with_labels=with_labels, source=source, progress=progress)
    if dedup_horizon_ms > 0:
        events, dups = deduplicate(events, dedup_horizon_ms, source=source, ingest_ms=now_ms)
        dead = dead + dups
    return events, dead


def split_by_key(events, key, parts: int) -> list:
    """``events`` in ``parts`` Tables, each key's events in one of them (features are per key, so
    computing them part by part, or in parallel, gives the same rows). ``key``: a field or a tuple."""
    import pyarrow as pa

    from features.execute import key_codes

    if parts <= 1 or events.num_rows < 2:
        return [events]
    keys = (key,) if isinstance(key, str) else tuple(key)
    frame = events.select(list(keys)).to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow_numpy")}.get)
    codes = key_codes(frame, keys)
    part = codes % parts
    return [events.filter(pa.array(part == w)) for w in range(parts)]


def intake_frame(contract: EventContract, df, *, now_ms: int, max_future_ms: int = DAY_MS,
                 max_record_bytes: int = MAX_RECORD_BYTES, max_amount: float = 1e7, with_labels: bool = False,
                 source: str = "", progress: Optional[Progress] = None):
    """(accepted events as a pyarrow Table of the event columns, dead letters as REJECT_NAMES tuples)."""
    import pyarrow as pa

    contract = backfill_contract(contract, max_amount)
    has_raw = (RAW_PAYLOAD in df.column_names) if isinstance(df, pa.Table) else (RAW_PAYLOAD in df.columns)
    names = source_names(contract, with_labels, has_raw)
    table = as_table(df, contract, names)
    ev_names = [n for n in names if n != RAW_PAYLOAD]
    ev_schema = pa.schema([pa.field(n, arrow_types(contract)[n]) for n in ev_names])
    mask = certainly_valid(contract, table, names, now_ms=now_ms, max_future_ms=max_future_ms,
                           max_record_bytes=max_record_bytes)
    if progress:
        progress("validate", 0.5)
    intake = Intake(contract, max_record_bytes=max_record_bytes, max_future_ms=max_future_ms, stream_guards=False)
    unsure = np.flatnonzero(~mask)
    accepted, dead = [], []
    step = max(1, len(unsure) // 20)
    for i, row in enumerate(table.take(pa.array(unsure, pa.int64())).to_pylist() if len(unsure) else []):
        out = intake.row(row, now_ms)
        if out.ok:
            accepted.append({n: out.event.get(n) for n in ev_names})
        else:
            raw = row.get(RAW_PAYLOAD)
            if raw is None:  # a typed row: the row itself as JSON, as the Flink parse operator writes it
                raw = json.dumps({k: v for k, v in row.items() if k != RAW_PAYLOAD}, default=str)
            dead.append(dead_letter_row(out.reason, out.detail, raw, source, None, None, now_ms))
        if progress and i % step == 0:
            progress("validate", 0.5 + 0.5 * i / len(unsure))
    certain = table.select(ev_names).filter(pa.array(mask)).cast(ev_schema)
    events = pa.concat_tables([certain, pa.Table.from_pylist(accepted, schema=ev_schema)]) if accepted else certain
    return events, dead


def deduplicate(events, horizon_ms: int, *, source: str = "", ingest_ms: Optional[int] = None):
    """(kept events, dead letters of the copies): features.dedup's BATCH rule per event_id, applied
    only to the ids that occur more than once. ``events``: a pyarrow Table of the event columns."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if horizon_ms <= 0:
        raise ValueError("the dedup horizon must be > 0 (skip de-duplication to turn it off)")

    codes = _np(pc.dictionary_encode(events["event_id"].combine_chunks()).indices).astype(np.int64)  # no nulls
    rows = np.flatnonzero(np.bincount(codes, minlength=1)[codes] > 1) if len(codes) else np.zeros(0, np.int64)
    if len(rows) == 0:
        return events, []
    names = events.column_names
    copies = events.take(pa.array(rows, pa.int64())).to_pylist()
    by_id: dict = {}
    for r, ev in zip(rows.tolist(), copies):
        by_id.setdefault(ev["event_id"], []).append((r, ev))
    drop, dead = [], []
    for group in by_id.values():
        verdicts = resolve([(ev["event_time"], fingerprint([ev[n] for n in names])) for _, ev in group], horizon_ms)
        for (r, ev), v in zip(group, verdicts):
            if v is not None:
                drop.append(r)
                raw = json.dumps({n: ev[n] for n in names}, separators=(",", ":"), default=str)
                dead.append(dead_letter_row(v[0], v[1], raw, source, None, None, ingest_ms))
    keep = np.ones(events.num_rows, dtype=bool)
    keep[drop] = False
    return events.filter(pa.array(keep)), dead


def feature_names(fs, with_labels: bool) -> list:
    """Columns of a feature row (udfs.types.feature_columns): identity, features, ingest_ms, labels."""
    return list(fs.output_columns) + ["ingest_ms"] + (list(fs.contract.label_names) if with_labels else [])


def features_table(fs, events, *, with_labels: bool, ingest_ms: Optional[int]):
    """The feature rows of the events (a pyarrow Table of event columns): ``execute``'s values
    (``features.execute.feature_arrays``), with ``ingest_ms`` and the labels, in feature_arrow_schema."""
    import pyarrow as pa

    from features.execute import feature_arrays

    needed = _execute_inputs(fs)
    frame = events.select([n for n in events.column_names if n in needed]).to_pandas(
        types_mapper={pa.string(): pd.StringDtype("pyarrow_numpy")}.get)
    arrays = feature_arrays(fs, frame)
    schema = feature_arrow_schema(fs, with_labels)
    cols = [events[n] for n in fs.passthrough]
    for f in fs.features:
        vals, valid = arrays[f.name]
        cols.append(pa.array(vals, type=schema.field(f.name).type, mask=None if valid.all() else ~valid))
    cols.append(pa.array(np.full(events.num_rows, ingest_ms if ingest_ms is not None else 0, dtype=np.int64)))
    if with_labels:
        cols += [events[n] for n in fs.contract.label_names]
    return pa.table(cols, schema=schema)


def _execute_inputs(fs) -> set:
    """The event columns execute reads: identity, aggregation inputs, fields a derived feature uses."""
    from features.declare import Aggregation, Derived

    fields = set(fs.contract.field_names) | set(fs.contract.label_names)
    need = {"event_id", "event_time", *fs.keys}
    for it in fs.items:
        if isinstance(it, Aggregation) and it.input is not None:
            need.add(it.input)
        elif isinstance(it, Derived):
            need |= {n for n in it.inputs if n in fields}
    return need


def feature_arrow_schema(fs, with_labels: bool):
    """The Parquet schema the Flink backfill writes features with (every column nullable), stamped with
    the feature set's name, version and definition hash (``streamscore train`` verifies them)."""
    import pyarrow as pa

    kinds = {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}
    cols = [pa.field("event_id", pa.string())] + [pa.field(k, pa.string()) for k in fs.keys] + \
        [pa.field("event_time", pa.int64())]
    cols += [pa.field(f.name, kinds[f.dtype]) for f in fs.features]
    cols.append(pa.field("ingest_ms", pa.int64()))
    if with_labels:
        types = arrow_types(fs.contract)
        cols += [pa.field(n, types[n]) for n in fs.contract.label_names]
    return pa.schema(cols, metadata=fs.arrow_schema().metadata)


def counts_of(n_features: int, dead_reasons: Sequence[str]) -> dict:
    """The end-of-run counts in udfs.counters.read_counts' shape (parse / dedup / features), for
    jobs.ops.backfill_summary.

    >>> counts_of(5, ["duplicate", "too_large"])
    {'parse': {'accepted': 6, 'dead_letter.too_large': 1}, 'features': {'feature_rows': 5}, 'dedup': {'duplicate': 1}}
    """
    from collections import Counter

    from features.contracts import DUPLICATE, DUPLICATE_ID_CONFLICT

    reasons = Counter(dead_reasons)
    dedup = {r: c for r, c in reasons.items() if r in (DUPLICATE, DUPLICATE_ID_CONFLICT)}
    parse = {f"dead_letter.{r}": c for r, c in reasons.items() if r not in dedup}
    accepted = n_features + sum(dedup.values())
    if accepted:
        parse["accepted"] = accepted
    out = {"parse": dict(sorted(parse.items())), "features": {"feature_rows": n_features} if n_features else {},
           "dedup": dict(sorted(dedup.items()))}
    return {k: v for k, v in out.items() if v}
