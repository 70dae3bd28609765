"""The size limits of the project's Kafka agree with each other and with what the jobs write."""
from __future__ import annotations

import json

from features.contracts import MAX_DETAIL_CHARS, bounded_raw
from jobs import kafka_limits
from streamscore.kafka_broker import server_properties
from features.contracts import bounded_detail
from udfs.types import REJECT_COLUMNS


def _worst_dead_letter(raw) -> bytes:
    """A dead letter as the Flink JSON sink would write it, from the most hostile inputs we can make."""
    text, encoding, size, sha = bounded_raw(raw)
    detail = bounded_detail("\U0001F4B0" * (10 * MAX_DETAIL_CHARS))  # escaped as surrogate pairs
    values = ["unparseable", detail, text, encoding, size, sha, "t" * 249, 2**31 - 1, 2**63 - 1, 2**63 - 1]
    return json.dumps(dict(zip([c for c, _ in REJECT_COLUMNS], values)), ensure_ascii=True).encode()


def test_a_dead_letter_always_fits_a_kafka_record():
    controls = "\x01" * 5_000_000  # valid UTF-8, kept as text, every byte escaped as \u0001
    binary = bytes(range(128, 256)) * 40_000  # not UTF-8: kept as base64
    for raw in (controls, binary, "x" * 10_000_000):
        assert len(_worst_dead_letter(raw)) <= kafka_limits.MAX_DEAD_LETTER_BYTES < kafka_limits.MAX_REQUEST_BYTES


def test_producers_consumers_and_broker_agree():
    broker = server_properties(9092, 9093, "/tmp/x")
    assert int(broker["message.max.bytes"]) == kafka_limits.MAX_REQUEST_BYTES
    assert int(broker["replica.fetch.max.bytes"]) >= int(broker["message.max.bytes"])
    assert int(kafka_limits.sink_properties()["max.request.size"]) == int(broker["message.max.bytes"])
    assert int(kafka_limits.source_properties()["max.partition.fetch.bytes"]) >= int(broker["message.max.bytes"])
    assert kafka_limits.MESSAGE_MAX_BYTES > kafka_limits.MAX_PAYLOAD_BYTES
