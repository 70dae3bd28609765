"""Events survive Parquet (explicit arrow schema) and the real broker exactly: value, key and
record timestamp == event_time; RAW_PAYLOAD rows arrive byte for byte."""
from __future__ import annotations

import json
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.contracts import BEHAVIOUR, PAYMENT, RAW_PAYLOAD, SENSOR, InvalidEvent
from streamscore.produce import produce_rows

pytestmark = pytest.mark.integration

# Hand-written input, as a client would send it (ISO-8601 times, missing optional fields).
PAYMENTS = [
    {"event_id": "p-1", "event_time": "2026-03-01T12:34:56.789Z", "card_id": "card-ü-1",
     "merchant_id": "Café Zürich ☕", "mcc": "5812", "amount": 4.5, "currency": "CHF",
     "lat": 47.3769, "lon": 8.5417, "device_id": None},
    {"event_id": "p-2", "event_time": "2026-03-01T14:34:57.001+02:00", "card_id": "card-ü-1",
     "merchant_id": "東京ストア", "mcc": "5411", "amount": 9_999_999.999999998, "currency": "JPY",
     "lat": -89.99999999, "lon": 179.99999999, "device_id": "dev-🙂", "is_fraud": True,
     "fraud_pattern": "card_testing"},
    {"event_id": "p-3", "event_time": 1772368500000, "card_id": "c-2", "merchant_id": "m",
     "mcc": "0000", "amount": 5e-324, "currency": "EUR", "lat": 0.0, "lon": -0.0,
     "is_fraud": False, "fraud_pattern": None},
    {"event_id": "p-4", "event_time": "2026-03-01T12:35:00Z", "card_id": "c-3", "merchant_id": "m\"q\\",
     "mcc": "5999", "amount": 0.1 + 0.2, "currency": "USD", "lat": 1e-300, "lon": -179.5,
     "device_id": None},
]
BEHAVIOURS = [
    {"event_id": "b-1", "event_time": "2026-03-02T08:00:00.5Z", "user_id": "u-Ω", "session_hint": None,
     "item_id": "item-1", "category": "書籍", "action": "view", "price": 0.0},
    {"event_id": "b-2", "event_time": "2026-03-02T08:00:01.250+00:00", "user_id": "u-Ω",
     "session_hint": "s-42", "item_id": "item-2", "category": "électronique", "action": "cart",
     "price": 1234567.891},
    {"event_id": "b-3", "event_time": 1772438402000, "user_id": "u-2", "item_id": "i",
     "category": "", "action": "purchase", "price": 1e-9},
]
SENSORS = [
    {"event_id": "s-1", "event_time": "2026-03-03T00:00:00Z", "machine_id": "pump-7", "sensor_id": "temp",
     "value": -273.15, "unit": "°C"},
    {"event_id": "s-2", "event_time": "2026-03-03T00:00:00.001Z", "machine_id": "pump-7",
     "sensor_id": "vib", "value": 6.02214076e23, "unit": "mm/s²", "is_anomaly": True},
    {"event_id": "s-3", "event_time": 1772496000002, "machine_id": "Мотор-1", "sensor_id": "rpm",
     "value": -1e-12, "unit": "rpm", "is_anomaly": None},
]
CASES = [(PAYMENT, PAYMENTS), (BEHAVIOUR, BEHAVIOURS), (SENSOR, SENSORS)]
IDS = [c.name for c, _ in CASES]

# Verbatim payloads: a broken JSON, and a valid one formatted unlike to_json (escapes, indent).
MALFORMED = '{"event_id": "bad-1", "amount": NaN, "note": "trunc'


def _odd_payload(event) -> str:
    return json.dumps(event, ensure_ascii=True, indent=1, sort_keys=True)


def _file_rows(contract, events):
    """Typed rows (normalised events) with two RAW_PAYLOAD rows spliced in after the second."""
    # A file has every column, so a label the input left out comes back as null.
    normalised = [{**dict.fromkeys(contract.label_names), **contract.validate(e)} for e in events]
    raws = [MALFORMED, _odd_payload(normalised[0])]
    typed = [dict(e, **{RAW_PAYLOAD: None}) for e in normalised]
    raw_rows = [{**{f.name: None for f in contract.all_fields}, RAW_PAYLOAD: r} for r in raws]
    return typed[:2] + raw_rows + typed[2:], normalised, raws


def test_events_normalise_iso_times_to_ms():
    assert PAYMENT.validate(PAYMENTS[0])["event_time"] == 1772368496789
    assert PAYMENT.validate(PAYMENTS[1])["event_time"] == 1772368497001  # +02:00 shifted to UTC
    assert BEHAVIOUR.validate(BEHAVIOURS[0])["event_time"] == 1772438400500


@pytest.mark.parametrize("contract,events", CASES, ids=IDS)
def test_parquet_roundtrip_exact(tmp_path, contract, events):
    rows, normalised, raws = _file_rows(contract, events)
    schema = contract.arrow_schema(with_raw=True)
    path = tmp_path / f"{contract.name}.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)

    table = pq.read_table(path)
    assert table.schema.equals(schema, check_metadata=True)
    back = table.to_pylist()
    assert [r[RAW_PAYLOAD] for r in back] == [None, None, *raws] + [None] * (len(events) - 2)
    typed = [r for r in back if r[RAW_PAYLOAD] is None]
    assert [contract.from_row(r) for r in typed] == normalised
    with pytest.raises(InvalidEvent):
        contract.from_row(back[2])  # the malformed payload stays malformed
    assert contract.from_row(back[3]) == normalised[0]


def _consume(bootstrap, topic, n, timeout=30):
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=1000)
    out, deadline = [], time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend(batch)
    finally:
        consumer.close()
    return sorted(out, key=lambda r: r.offset)


@pytest.mark.parametrize("contract,events", CASES, ids=IDS)
def test_broker_roundtrip_exact(tmp_path, kafka_broker, kafka_topic, contract, events):
    rows, normalised, raws = _file_rows(contract, events)
    path = tmp_path / "events.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=contract.arrow_schema(with_raw=True)), path)

    stats = produce_rows(kafka_broker.bootstrap, kafka_topic, pq.read_table(path), contract)
    assert (stats["sent"], stats["raw"]) == (len(rows), 2)

    got = _consume(kafka_broker.bootstrap, kafka_topic, len(rows))
    assert len(got) == len(rows)
    typed = [r for r, row in zip(got, rows) if row[RAW_PAYLOAD] is None]
    assert [contract.parse(r.value) for r in typed] == normalised
    assert [r.key for r in typed] == [e[contract.key].encode("utf-8") for e in normalised]
    assert [r.timestamp for r in typed] == [e["event_time"] for e in normalised]
    assert all(r.timestamp_type == 0 for r in got)  # CreateTime: the producer's stamp, kept

    raw_records = got[2:4]
    assert [r.value for r in raw_records] == [s.encode("utf-8") for s in raws]
    assert [r.key for r in raw_records] == [None, None]
    # Stamped with the previous good row's time, so they sit in event-time order.
    assert [r.timestamp for r in raw_records] == [normalised[1]["event_time"]] * 2


@pytest.mark.parametrize("contract,events", CASES, ids=IDS)
def test_broker_roundtrip_from_handwritten_dicts(kafka_broker, kafka_topic, contract, events):
    """Dicts straight from a client (ISO times) are sent as written; timestamps are still ms."""
    produce_rows(kafka_broker.bootstrap, kafka_topic, events, contract)
    got = _consume(kafka_broker.bootstrap, kafka_topic, len(events))
    normalised = [contract.validate(e) for e in events]
    assert [contract.parse(r.value) for r in got] == normalised
    assert [r.timestamp for r in got] == [e["event_time"] for e in normalised]


def test_event_times_far_from_now_are_accepted(kafka_broker, kafka_topic):
    """Kafka 4 rejects CreateTime > now + 1 h by default; the dev broker takes any event time."""
    times = [946_684_800_000, 4_102_444_799_999, 1_767_225_600_000]  # 2000, end of 2099, 2026
    events = [dict(SENSORS[0], event_id=f"t{i}", event_time=t) for i, t in enumerate(times)]
    produce_rows(kafka_broker.bootstrap, kafka_topic, events, SENSOR)
    got = _consume(kafka_broker.bootstrap, kafka_topic, len(events))
    assert [r.timestamp for r in got] == times
