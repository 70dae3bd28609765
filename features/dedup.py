"""Idempotency: at most one outcome per ``event_id`` within an event-time horizon (pure logic, no Flink).

A producer that retries, a replayed partition or a hostile client can deliver one event several
times; each copy must not get its own decision. Copies are recognised by ``event_id``; what they
carry is compared through a **fingerprint**: the first 16 bytes of SHA-256 over a typed binary
encoding of the event's contract fields (and labels, where carried) in the contract's order: null
``N``; booleans ``T``/``F``; integers ``I`` + 8 bytes big-endian two's complement; floats ``D`` +
the 8 IEEE-754 bytes big-endian; strings ``S`` + 4-byte big-endian length + UTF-8. Binary rather
than text, so the Java operator (jvm/engine ``Fingerprint``) computes the same bytes without
sharing Python's float-to-text algorithm. Lineage (Kafka partition/offset, ingest time) is not content: two deliveries of one event differ
there and are still identical copies.

Rules (the JVM dedup operator applies them, keyed by event_id, before the per-card features;
jvm/engine DedupRules is their Java twin, held to these by tests/integration/test_jvm_parity.py):

* Two records with one event_id whose event times are less than the horizon apart are copies of
  one event. The first is kept; each other one is a dead letter: ``duplicate`` when the
  fingerprints agree, ``duplicate_id_conflict`` when they differ. Event times a horizon or more
  apart are distinct events that reuse an id: both are kept.
* Streaming: "first" is the first to arrive. What remembers it is cleared once the watermark
  passes its event_time + horizon, so the state is bounded by event time.
* BATCH (backfill): "first" is the smallest (event_time, fingerprint) among the copies, so every
  row order of a file gives the same outcome (``resolve``).

>>> a = fingerprint(["p-1", 1767225600000, "c-1", 9.5]); b = fingerprint(["p-1", 1767225600000, "c-1", 9.6])
>>> len(a), a == fingerprint(("p-1", 1767225600000, "c-1", 9.5)), a == b
(16, True, False)
>>> verdict(1767225600000, a, 1767225600000, a)[0], verdict(1767225600000, a, 1767225600000, b)[0]
('duplicate', 'duplicate_id_conflict')
>>> [v and v[0] for v in resolve([(20, b), (10, a), (10, a)], horizon_ms=100)]
['duplicate_id_conflict', None, 'duplicate']
"""
from __future__ import annotations

import hashlib
import struct
from typing import Iterable, List, Optional, Sequence, Tuple

from features.contracts import DUPLICATE, DUPLICATE_ID_CONFLICT

FINGERPRINT_BYTES = 16
_LONG, _DOUBLE, _LEN = struct.Struct(">q"), struct.Struct(">d"), struct.Struct(">I")

Verdict = Tuple[str, str]  # (dead-letter reason, detail)


def _encode(v, out: list) -> None:
    if v is None:
        out.append(b"N")
    elif isinstance(v, bool):
        out.append(b"T" if v else b"F")
    elif isinstance(v, int) and -2 ** 63 <= v < 2 ** 63:
        out.append(b"I" + _LONG.pack(v))
    elif isinstance(v, float):
        out.append(b"D" + _DOUBLE.pack(v))
    else:  # strings; anything else by its text (R), never raising
        s = (v if isinstance(v, str) else str(v)).encode("utf-8", errors="surrogatepass")
        out.append((b"S" if isinstance(v, str) else b"R") + _LEN.pack(len(s)) + s)


def fingerprint(values: Iterable) -> bytes:
    """16 bytes of SHA-256 over ``values`` (an event's content, in contract order), typed and binary."""
    parts: list = []
    for v in values:
        _encode(v, parts)
    return hashlib.sha256(b"".join(parts)).digest()[:FINGERPRINT_BYTES]


def is_copy(first_time: int, time: int, horizon_ms: int) -> bool:
    """Is a record at ``time`` a copy of the one remembered at ``first_time`` (same event_id)?

    >>> is_copy(0, 99, 100), is_copy(100, 1, 100), is_copy(0, 100, 100)
    (True, True, False)
    """
    return abs(time - first_time) < horizon_ms


def verdict(first_time: int, first_fp: bytes, time: int, fp: bytes) -> Verdict:
    """Reason and detail for a copy of the first record (event time and fingerprint of each)."""
    if fp == first_fp and time == first_time:  # (the fingerprint covers event_time too)
        return DUPLICATE, f"event_id seen before with the same content (event_time {first_time})"
    return (DUPLICATE_ID_CONFLICT,
            f"event_id seen before with other content: first copy event_time {first_time} "
            f"(fingerprint {first_fp[:8].hex()}), this copy event_time {time} (fingerprint {fp[:8].hex()})")


def resolve(copies: Sequence[Tuple[int, bytes]], horizon_ms: int) -> List[Optional[Verdict]]:
    """BATCH: the outcome of each record of one event_id, given as (event_time, fingerprint).

    None for a kept record, else its (reason, detail). Independent of the order of ``copies``:
    records are taken by (event_time, fingerprint); a record is kept when no kept one lies within
    the horizon before it, and is otherwise judged against that kept one. Records identical in
    both are interchangeable (the same content), whichever of them is kept.
    """
    out: List[Optional[Verdict]] = [None] * len(copies)
    first = None
    for i in sorted(range(len(copies)), key=copies.__getitem__):
        t, fp = copies[i]
        if first is not None and is_copy(first[0], t, horizon_ms):
            out[i] = verdict(first[0], first[1], t, fp)
        else:
            first = (t, fp)
    return out
