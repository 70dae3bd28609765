"""De-duplication on the JVM: keyed by event_id, one copy of each event goes on (rules: features/dedup.py).

Placed after the watermarks and before key_by(card), so a repeated event_id never reaches the
card's history or the scorer, whichever card the copy names. The operator is Java
(jvm/engine ``Dedup``; no Python per record): streaming keeps the first copy's (event_time,
fingerprint) in checkpointed state, cleared by an event-time timer at event_time + horizon;
BATCH resolves a key's copies independently of row order. Copies are rare: they come back
through one small Python map that writes them in the dead-letter shape, with the event as JSON
in ``raw`` (content only; lineage is in the dead letter's own columns).
"""
from __future__ import annotations

import json
from typing import NamedTuple, Optional, Sequence

from pyflink.datastream import DataStream

from udfs.engine import engine_jar_class
from udfs.types import REJECT_COLUMNS, reject_row, row_type

LINEAGE = ("src_partition", "src_offset", "ingest_ms")


class DedupStreams(NamedTuple):
    kept: DataStream  # the input rows, one per event
    duplicates: DataStream  # REJECT_COLUMNS rows


def deduplicate(events: DataStream, event_columns: Sequence, content_names: Sequence[str], horizon_ms: int, *,
                batch: bool, uid: str, source: str, counts_dir: Optional[str] = None) -> DedupStreams:
    """``events``: rows of ``event_columns`` ((name, SQL type)); ``content_names``: the columns that make
    up an event's content (contract fields and labels, not lineage)."""
    if horizon_ms <= 0:
        raise ValueError("the dedup horizon must be > 0 (leave the operator out to turn it off)")
    names = [n for n, _ in event_columns]
    from pyflink.java_gateway import get_gateway

    gw = get_gateway()
    content = gw.new_array(gw.jvm.String, len(content_names))
    for i, n in enumerate(content_names):
        content[i] = n
    res = engine_jar_class().dedup(events._j_data_stream, row_type(event_columns).get_java_type_info(),
                                   "event_id", "event_time", content, int(horizon_ms), bool(batch), uid, counts_dir)
    dups = (DataStream(res.side()).map(DuplicateRow(names, content_names, source),
                                             output_type=row_type(REJECT_COLUMNS))
            .name(f"{uid}-rejects").uid(f"{uid}-rejects"))
    return DedupStreams(DataStream(res.main()), dups)


class DuplicateRow:
    """A copy from the Java operator (the event row, then reason and detail) -> a REJECT_COLUMNS row."""

    def __init__(self, names: Sequence[str], content_names: Sequence[str], source: str):
        self.names = list(names)
        self.content = [self.names.index(n) for n in content_names]
        self.content_names = list(content_names)
        self.lineage = [self.names.index(n) for n in LINEAGE]
        self.source = source

    def __call__(self, value):
        n = len(self.names)
        raw = json.dumps({name: value[i] for name, i in zip(self.content_names, self.content)},
                         separators=(",", ":"), default=str)
        partition, offset, ingest = (value[i] for i in self.lineage)
        return reject_row(value[n], value[n + 1], raw, self.source, partition, offset, ingest)
