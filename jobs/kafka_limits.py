"""What the project's Kafka accepts, in one place: the broker (streamscore/kafka_broker.py), the Flink Kafka
source and sinks (jobs/io.py) and `streamscore produce` (streamscore/produce.py) all take these numbers.

* A record's value may be up to MAX_PAYLOAD_BYTES (1 MiB). The broker's ``message.max.bytes`` (the
  largest record batch it stores) is that plus BATCH_OVERHEAD_BYTES for the batch header, the key
  and headers, so any payload up to 1 MiB fits. ``replica.fetch.max.bytes`` is the same, so a
  second broker could replicate the largest batch the first one accepted.
* Every producer's ``max.request.size`` is the broker's limit: a record the broker would refuse is
  refused by the client first, with an error naming the size (Flink's sinks and produce).
* Consumers (the Flink source) read a record up to the broker's limit in one partition fetch
  (``max.partition.fetch.bytes``), so the largest accepted payload reaches the parser, which
  dead-letters it as ``too_large`` (``--max-record-bytes``, 64 KiB by default).
* What the jobs write is far below the limit by construction: a dead letter keeps at most
  ``contracts.MAX_RAW_KEPT`` bytes of its payload and ``MAX_DETAIL_CHARS`` of detail, and ids and
  strings have declared maximum lengths, so no input can make an output record too large for its
  sink. MAX_DEAD_LETTER_BYTES is the worst case of a dead letter as JSON (checked in
  tests/fast/test_kafka_limits.py against a hostile one).

A Kafka client setting given with --kafka-config / --kafka-property wins over these (the user's
cluster may have other limits); the project's broker and defaults agree with each other.
"""
from __future__ import annotations

from features.contracts import MAX_DETAIL_CHARS, MAX_RAW_KEPT

MiB = 1024 * 1024

MAX_PAYLOAD_BYTES = 1 * MiB
BATCH_OVERHEAD_BYTES = 16 * 1024  # v2 batch header (61 B), record varints, a key of a few hundred bytes
MESSAGE_MAX_BYTES = MAX_PAYLOAD_BYTES + BATCH_OVERHEAD_BYTES  # broker message.max.bytes = 1,064,960
REPLICA_FETCH_MAX_BYTES = MESSAGE_MAX_BYTES
MAX_REQUEST_BYTES = MESSAGE_MAX_BYTES  # every producer's max.request.size
MAX_PARTITION_FETCH_BYTES = MESSAGE_MAX_BYTES  # the source's max.partition.fetch.bytes
FETCH_MAX_BYTES = 50 * MiB  # one fetch response (Kafka's consumer default, stated): 50 of the largest records

# Worst case of one dead letter serialised as JSON: every kept raw byte a control character
# (escaped as \u00XX, 6 bytes), every detail character a supplementary one written as a surrogate
# pair escape (12 bytes), plus the column names, numbers, source name (a topic name is at most 249
# characters; a file path a few KiB) and the sha256.
MAX_DEAD_LETTER_BYTES = 6 * MAX_RAW_KEPT + 12 * (MAX_DETAIL_CHARS + 3) + 8 * 1024

assert MAX_DEAD_LETTER_BYTES < MAX_REQUEST_BYTES, "a dead letter must always fit a Kafka record"


def broker_properties() -> dict:
    """The size settings of the project's broker (server.properties keys)."""
    return {"message.max.bytes": str(MESSAGE_MAX_BYTES),
            "replica.fetch.max.bytes": str(REPLICA_FETCH_MAX_BYTES),
            "fetch.max.bytes": str(FETCH_MAX_BYTES)}


def source_properties() -> dict:
    """Kafka consumer settings of the Flink source (without the connector's 'properties.' prefix)."""
    return {"max.partition.fetch.bytes": str(MAX_PARTITION_FETCH_BYTES), "fetch.max.bytes": str(FETCH_MAX_BYTES)}


def sink_properties() -> dict:
    """Kafka producer settings of every Flink sink (without the 'properties.' prefix)."""
    return {"max.request.size": str(MAX_REQUEST_BYTES)}
