"""Compile a ``WindowedFeatures`` declaration (features/windows.py) to a Flink Table program.

Only Flink's own JVM operators run (window table-valued functions with built-in aggregates; in
BATCH, sessions by an OVER aggregation and a GROUP BY); there is no Python code per record.

What Flink 2.2 (PyFlink 2.2.1) accepts, measured on this repository's MiniCluster:

=========  ===============================================  =========================================
kind       STREAMING                                        BATCH
=========  ===============================================  =========================================
Tumbling   TUMBLE window TVF + GROUP BY window_start/end    the same SQL
Sliding    HOP window TVF; a size that is not a multiple    the same SQL (BATCH does not check the
           of the slide is refused by the planner           multiple; the declaration does)
Session    SESSION window TVF ``PARTITION BY`` the key      no window operator: the SESSION TVF is
                                                            refused ("Unaligned windows like session
                                                            are not supported in batch mode yet"),
                                                            and so is a group window SESSION(...) /
                                                            ``Session.with_gap`` ("SessionGroupWindow
                                                            ... is not supported right now"; DISTINCT
                                                            aggregates are refused in BATCH group
                                                            windows too). Sessions are numbered with
                                                            LAG + a running SUM (RANGE, so same-ms
                                                            events share one) over the key ordered by
                                                            event time, then GROUP BY (key, session)
=========  ===============================================  =========================================

Measured facts the SQL is shaped by:

* Windows over a TIMESTAMP_LTZ rowtime are aligned in the session time zone
  (``table.local-time-zone``) and window_start/window_end are TIMESTAMP(3) wall-clock times in it.
  ``window_table`` therefore sets UTC (and refuses another explicitly set zone; the setting is the
  whole job's). Flink allows no CAST from TIMESTAMP(_LTZ) to a number; epoch ms are
  ``EXTRACT(EPOCH FROM t) * 1000 + EXTRACT(MILLISECOND FROM t)`` (EXTRACT(MILLISECOND) is the
  millisecond of the second). TIMESTAMPDIFF returns INT and would overflow in 2038.
* Window lengths are ``INTERVAL 'D HH:MM:SS.fff' DAY TO SECOND(3)`` literals: ``INTERVAL 'n'
  SECOND`` has 2 digits of precision and DAY(5)/SECOND(9, 3) are refused (so < 100 days).
* STDDEV_POP is not used: Flink reduces it to sums of squares and returns NaN where all values are
  equal and rounding makes the variance negative (three 0.1: VAR_POP -1.2e-18, STDDEV_POP NaN).
  std_pop here is 0.0 when MIN = MAX, else ``SQRT(GREATEST((S2 - S1*S1/n) / n, 0))``; that is
  not the two-pass rule of the pandas execution: it loses about log10(mean(x^2)/var) digits.
* mean is ``SUM / COUNT`` (AVG of a BIGINT is an integer; the shared SUM keeps mean = sum / n).
* first/last: FIRST_VALUE/LAST_VALUE follow arrival order, not event time. Here they are
  MIN/MAX of the string ``LPAD(time, 19, '0') || event_id || CHR(1) || CAST(value AS STRING)``,
  decoded with a CAST back: exact, because CAST(DOUBLE AS STRING) round-trips (2,000 doubles
  over the whole range, measured), strings compare by code point, and contracts refuse control
  characters in ids. It needs event times >= 0 (contract times are 2000..2100).
* COUNT(DISTINCT) tells -0.0 from 0.0 (and ``x + 0.0`` is simplified away): doubles are counted
  as ``CASE WHEN x = 0 THEN 0.0 ELSE x END``.
* Sessions in STREAMING: an event exactly ``gap`` ms after the previous one joined its session
  (measured, in-order and disordered input). By Flink's firing rule a session is emitted once the
  watermark reaches its end - 1, so such an event joins only if it arrives before that; with
  ``max_disorder_ms`` as promised by the source, the watermark delay used here (disorder + 2 ms)
  guarantees it, and keeps every event within the promise on time (reasoning, not a measurement).
* Late events (behind the watermark, i.e. more than ``max_disorder_ms`` behind the largest event
  time seen before them) are dropped by Flink's window operators without a trace; there is no
  late side output here. In BATCH nothing is late.
* Flink adds SUMs in arrival order (HOP: per slice, then slices merged), the pandas execution in
  (event_time, event_id) order. Measured on the integration test's 2,642 disordered sensor readings:
  about half of the sum/mean cells are not bit-identical, all within 7e-16 relative; std_pop
  within 1.1e-15 for tumbling and session windows of machines, but up to 1.3e-8 for 10-minute
  windows of single sensors (few readings, rounded to 2-3 decimals: variance tiny next to mean^2).
"""
from __future__ import annotations

import re
from typing import Optional, Sequence

from features.contracts import BOOL, FLOAT64, INT64, STRING, TIMESTAMP_MS
from features.windows import WINDOW_COLUMNS, Session, Sliding, Tumbling, WindowedFeatures

ROWTIME = "rowtime"
# Helper columns of the BATCH session query (refused as contract field names).
_NEW, _SESSION = "__new_session", "__session_no"
SQL_TYPES = {"int64": "BIGINT", "float64": "DOUBLE", "bool": "BOOLEAN", "string": "STRING"}
_FIELD_SQL = {STRING: "STRING", INT64: "BIGINT", FLOAT64: "DOUBLE", BOOL: "BOOLEAN", TIMESTAMP_MS: "BIGINT"}
_UTC = ("UTC", "Z", "GMT", "Etc/UTC", "+00:00", "UTC+00:00", "GMT+00:00")
_SEQ = [0]


def q(name: str) -> str:
    """A quoted SQL identifier (names like `value` are keywords)."""
    return "`" + name.replace("`", "``") + "`"


def interval(ms: int) -> str:
    """A DAY TO SECOND interval literal of ``ms`` milliseconds (< 100 days).

    >>> interval(90_061_001)
    "INTERVAL '1 01:01:01.001' DAY TO SECOND(3)"
    """
    if not 0 <= ms < 100 * 86_400_000:
        raise ValueError(f"interval of {ms} ms is outside 0 .. 99 days")
    d, rest = divmod(int(ms), 86_400_000)
    h, rest = divmod(rest, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, f = divmod(rest, 1000)
    return f"INTERVAL '{d} {h:02d}:{m:02d}:{s:02d}.{f:03d}' DAY TO SECOND(3)"


def watermark_delay_ms(max_disorder_ms: int) -> int:
    """The watermark's delay behind the largest event time seen (see the module docstring)."""
    if isinstance(max_disorder_ms, bool) or not isinstance(max_disorder_ms, int) or max_disorder_ms < 0:
        raise ValueError(f"max_disorder_ms must be an int >= 0, got {max_disorder_ms!r}")
    return max_disorder_ms + 2


def sql_columns(decl: WindowedFeatures) -> list:
    """(name, SQL type) of the output rows, e.g. for a sink table."""
    return [(c.name, SQL_TYPES[c.dtype]) for c in decl.columns]


def source_columns(decl: WindowedFeatures) -> list:
    """(name, SQL type) of the contract fields the program reads, in contract order."""
    return [(n, _FIELD_SQL[decl.field_type(n)]) for n in decl.input_fields]


def event_time_ddl(decl: WindowedFeatures, max_disorder_ms: int, rowtime: str = ROWTIME) -> str:
    """The computed rowtime column and watermark of a CREATE TABLE over the declaration's events."""
    r = q(rowtime)
    return (f"{r} AS TO_TIMESTAMP_LTZ({q(decl.time_field)}, 3), "
            f"WATERMARK FOR {r} AS {r} - {interval(watermark_delay_ms(max_disorder_ms))}")


def with_event_time(t_env, source, decl: WindowedFeatures, max_disorder_ms: int, rowtime: str = ROWTIME):
    """A Table with the rowtime attribute and watermark, from a Table (no rowtime yet) or a
    DataStream of named Rows holding the declaration's fields. JVM-side conversions only."""
    from pyflink.table import Schema, Table

    stream = t_env.to_data_stream(source) if isinstance(source, Table) else source
    r = q(rowtime)
    schema = (Schema.new_builder()
              .column_by_expression(rowtime, f"TO_TIMESTAMP_LTZ({q(decl.time_field)}, 3)")
              .watermark(rowtime, f"{r} - {interval(watermark_delay_ms(max_disorder_ms))}")
              .build())
    return t_env.from_data_stream(stream, schema)


def use_utc(t_env) -> None:
    """Set the session time zone to UTC (windows then align to epoch 0); refuse another zone."""
    conf = t_env.get_config()
    tz = conf.get("table.local-time-zone", "default")  # as set; "default" is the JVM's zone
    if tz not in ("default",) + _UTC:
        raise ValueError(f"table.local-time-zone is {tz!r}: epoch-aligned windows need UTC")
    conf.set_local_timezone("UTC")


def _epoch_ms(col: str) -> str:
    return f"(EXTRACT(EPOCH FROM {col}) * 1000 + EXTRACT(MILLISECOND FROM {col}))"


def _agg_sql(decl: WindowedFeatures, a) -> str:
    """The SQL expression of one aggregation over the window's rows."""
    out = SQL_TYPES[next(c.dtype for c in decl.columns if c.name == a.name)]
    if a.op == "count":
        return "COUNT(*)"
    x = q(a.input)
    ftype = decl.field_type(a.input)
    xd = x if ftype == FLOAT64 else f"CAST({x} AS DOUBLE)"
    if a.op == "sum":
        return f"SUM({xd})"
    if a.op == "mean":
        return f"SUM({xd}) / COUNT({x})"
    if a.op == "std_pop":
        var = f"(SUM({xd} * {xd}) - SUM({xd}) * SUM({xd}) / COUNT({x})) / COUNT({x})"
        return (f"CASE WHEN COUNT({x}) = 0 THEN CAST(NULL AS DOUBLE) WHEN MIN({x}) = MAX({x}) THEN 0.0E0 "
                f"ELSE SQRT(GREATEST({var}, 0.0E0)) END")
    if a.op in ("min", "max"):
        return f"{a.op.upper()}({x})"
    if a.op == "distinct_count":
        v = f"CASE WHEN {x} = 0 THEN 0.0E0 ELSE {x} END" if ftype == FLOAT64 else x
        return f"COUNT(DISTINCT {v})"
    # first / last: MIN / MAX of an order-preserving (time, event_id) prefix, then the value
    enc = (f"CASE WHEN {x} IS NULL THEN CAST(NULL AS STRING) ELSE "
           f"CONCAT(LPAD(CAST({q(decl.time_field)} AS STRING), 19, '0'), {q('event_id')}, CHR(1), "
           f"CAST({x} AS STRING)) END")
    best = f"{'MIN' if a.op == 'first' else 'MAX'}({enc})"
    return f"CAST(SUBSTRING({best} FROM POSITION(CHR(1) IN {best}) + 1) AS {out})"


def _aggregates(decl: WindowedFeatures) -> str:
    out = {c.name: SQL_TYPES[c.dtype] for c in decl.columns}
    return ", ".join(f"CAST({_agg_sql(decl, a)} AS {out[a.name]}) AS {q(a.name)}" for a in decl.aggregations)


def window_sql(decl: WindowedFeatures, view: str, *, batch: bool, rowtime: str = ROWTIME) -> str:
    """The SELECT computing the declaration's rows from the table registered as ``view``."""
    fields = {f.name for f in decl.contract.all_fields}
    clash = {rowtime, _NEW, _SESSION} & fields
    if clash:
        raise ValueError(f"contract {decl.contract.name} has fields named like helper columns: {sorted(clash)}")
    keys = ", ".join(q(k) for k in decl.key)
    w = decl.window
    if isinstance(w, Session) and batch:
        t = q(decl.time_field)
        part = f"PARTITION BY {keys} ORDER BY {t}"
        flagged = (f"SELECT *, CASE WHEN LAG({t}) OVER ({part}) >= {t} - {int(w.gap_ms)} THEN 0 ELSE 1 END "
                   f"AS {q(_NEW)} FROM {q(view)}")
        numbered = (f"SELECT *, SUM({q(_NEW)}) OVER ({part} RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) "
                    f"AS {q(_SESSION)} FROM ({flagged})")
        return (f"SELECT {keys}, MIN({t}) AS {q(WINDOW_COLUMNS[0])}, MAX({t}) + {int(w.gap_ms)} AS "
                f"{q(WINDOW_COLUMNS[1])}, {_aggregates(decl)} FROM ({numbered}) GROUP BY {keys}, {q(_SESSION)}")
    src = f"TABLE {q(view)}"
    if isinstance(w, Tumbling):
        tvf = f"TUMBLE({src}, DESCRIPTOR({q(rowtime)}), {interval(w.size_ms)})"
    elif isinstance(w, Sliding):
        tvf = f"HOP({src}, DESCRIPTOR({q(rowtime)}), {interval(w.slide_ms)}, {interval(w.size_ms)})"
    else:
        tvf = f"SESSION({src} PARTITION BY {keys}, DESCRIPTOR({q(rowtime)}), {interval(w.gap_ms)})"
    # window_start / window_end (TIMESTAMP(3), Flink's TVF columns) become epoch-ms columns of the same name
    return (f"SELECT {keys}, {_epoch_ms('window_start')} AS {q(WINDOW_COLUMNS[0])}, "
            f"{_epoch_ms('window_end')} AS {q(WINDOW_COLUMNS[1])}, {_aggregates(decl)} "
            f"FROM TABLE({tvf}) GROUP BY {keys}, window_start, window_end")


def window_table(t_env, table, decl: WindowedFeatures, *, batch: bool, rowtime: str = ROWTIME):
    """The declaration's rows (``decl.output_columns``, unordered) from a Table holding its fields
    and an event-time attribute ``rowtime`` (see ``with_event_time`` / ``event_time_ddl``).
    ``batch`` must match the environment's runtime mode (it picks the BATCH session query)."""
    use_utc(t_env)
    _SEQ[0] += 1
    view = f"{re.sub(r'[^A-Za-z0-9_]', '_', decl.name)}_events_{_SEQ[0]}"
    t_env.create_temporary_view(view, table)
    return t_env.sql_query(window_sql(decl, view, batch=batch, rowtime=rowtime))


def create_sink(t_env, decl: WindowedFeatures, options: dict, name: Optional[str] = None) -> str:
    """Declare a sink table of the output rows with connector ``options``; returns its name."""
    _SEQ[0] += 1
    name = name or f"{decl.name}_sink_{_SEQ[0]}"
    t_env.execute_sql(f"CREATE TEMPORARY TABLE {q(name)} ({_ddl(sql_columns(decl))}) WITH ({_with(options)})")
    return name


def create_source(t_env, decl: WindowedFeatures, options: dict, max_disorder_ms: int,
                  columns: Optional[Sequence] = None, name: Optional[str] = None):
    """A source table of the declaration's fields (or ``columns``) with rowtime and watermark."""
    _SEQ[0] += 1
    name = name or f"{decl.name}_source_{_SEQ[0]}"
    cols = list(columns) if columns is not None else source_columns(decl)
    t_env.execute_sql(f"CREATE TEMPORARY TABLE {q(name)} ({_ddl(cols)}, {event_time_ddl(decl, max_disorder_ms)}) "
                      f"WITH ({_with(options)})")
    return t_env.from_path(name)


def _ddl(columns) -> str:
    return ", ".join(f"{q(n)} {t}" for n, t in columns)


def _with(options: dict) -> str:
    lit = lambda v: "'" + str(v).replace("'", "''") + "'"  # noqa: E731
    return ", ".join(f"{lit(k)} = {lit(v)}" for k, v in options.items())
