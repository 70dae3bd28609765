"""streamscore.produce without a broker: row conversion, contract inference, record keys/timestamps, pacing."""
from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.contracts import PAYMENT, RAW_PAYLOAD, SENSOR
from streamscore import cli
from streamscore.produce import _rows, contract_of_file, produce_rows

T0 = 1_767_225_600_000


def _payment(i, **kw):
    ev = {"event_id": f"e{i}", "event_time": T0 + i, "card_id": f"c{i % 3}", "merchant_id": "m", "mcc": "5411",
          "amount": 1.5 * i, "currency": "EUR", "lat": 1.0, "lon": 2.0, "device_id": None,
          "is_fraud": None, "fraud_pattern": None, RAW_PAYLOAD: None}
    ev.update(kw)
    return ev


class Future:
    """kafka-python's FutureRecordMetadata surface that produce_rows reads."""

    def __init__(self, exception=None):
        self.exception, self.is_done = exception, True

    def succeeded(self):
        return self.exception is None


class FakeProducer:
    """Records what produce_rows sends (kafka-python's send/flush/partitions_for surface).

    ``fail`` maps a row's value to an exception: raised by send() if ``at_send``, else set on its
    future (what the producer's I/O thread does when the broker refuses it)."""

    def __init__(self, partitions=1, fail=None, at_send=False):
        self.sent, self.partitions, self.flushed = [], partitions, False
        self.fail, self.at_send, self.closed = dict(fail or {}), at_send, None

    def partitions_for(self, topic):
        return set(range(self.partitions))

    def send(self, topic, value=None, key=None, timestamp_ms=None, partition=None):
        exc = self.fail.get(value)
        if exc is not None and self.at_send:
            raise exc
        self.sent.append((topic, value, key, timestamp_ms, partition))
        return Future(exc)

    def flush(self):
        self.flushed = True

    def close(self, timeout=None):
        self.closed = timeout


def test_rows_match_to_pylist_including_nulls():
    rows = [_payment(0), _payment(1, amount=None, device_id="d", is_fraud=True), _payment(2, event_time=None)]
    table = pa.Table.from_pylist(rows, schema=PAYMENT.arrow_schema(with_raw=True))
    got = list(_rows(table))
    assert got == table.to_pylist()
    assert type(got[0]["event_time"]) is int and got[1]["amount"] is None and got[2]["event_time"] is None


def test_keys_timestamps_and_raw_rows():
    rows = [_payment(0, **{RAW_PAYLOAD: "not json"}), _payment(1), _payment(2, **{RAW_PAYLOAD: "{}"}),
            _payment(3, event_time=None), _payment(4, amount=float("nan"))]
    fake = FakeProducer()
    before = int(time.time() * 1000)
    stats = produce_rows("unused:1", "t", pa.Table.from_pylist(rows, schema=PAYMENT.arrow_schema(with_raw=True)),
                         PAYMENT, producer=fake)
    assert fake.flushed and (stats["sent"], stats["raw"]) == (5, 2)
    topics, values, keys, stamps, parts = zip(*fake.sent)
    assert set(topics) == {"t"} and set(parts) == {0}
    assert values[0] == b"not json" and values[2] == b"{}"
    assert keys == (None, b"c1", None, b"c0", b"c1")
    assert before <= stamps[0] <= int(time.time() * 1000)  # raw row before any good row: now
    assert stamps[1:] == (T0 + 1, T0 + 1, T0 + 1, T0 + 4)  # raw / time-less rows: previous good row
    assert PAYMENT.parse(values[1]) == {k: v for k, v in _payment(1).items() if k != RAW_PAYLOAD}
    assert b'"amount":NaN' in values[4]  # sent as it is; the job dead-letters it


def test_many_partitions_leave_partitioning_to_the_key():
    fake = FakeProducer(partitions=4)
    produce_rows("unused:1", "t", [_payment(1)], PAYMENT, producer=fake)
    assert fake.sent[0][4] is None


def test_rate_paces_sending():
    fake = FakeProducer()
    t = time.perf_counter()
    produce_rows("unused:1", "t", [_payment(i) for i in range(40)], PAYMENT, rate=200, producer=fake)
    assert 0.17 <= time.perf_counter() - t < 2
    with pytest.raises(ValueError):
        produce_rows("unused:1", "t", [], PAYMENT, rate=0, producer=fake)


def test_contract_from_file_metadata(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist([_payment(0)], schema=PAYMENT.arrow_schema(with_raw=True)), path)
    assert contract_of_file(path)[1] is PAYMENT
    assert contract_of_file(path, "fraud")[1] is PAYMENT
    with pytest.raises(ValueError, match="holds payment events"):
        contract_of_file(path, "iot")
    bare = tmp_path / "bare.parquet"
    pq.write_table(pa.table({"x": [1]}), bare)
    with pytest.raises(ValueError, match="--domain"):
        contract_of_file(bare)
    assert contract_of_file(bare, "iot")[1] is SENSOR
    with pytest.raises(FileNotFoundError):
        contract_of_file(tmp_path / "missing.parquet")


def test_cli_errors_are_one_line(tmp_path, capsys):
    code = cli.main(["produce", "--topic", "t", "--input", str(tmp_path / "nope.parquet")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no such file" in err


def _raw_rows(values):
    return [_payment(i, **{RAW_PAYLOAD: v}) for i, v in enumerate(values)]


@pytest.mark.parametrize("at_send", [True, False], ids=["refused-by-client", "refused-by-broker"])
def test_a_row_the_broker_cannot_take_is_reported_and_sending_goes_on(at_send):
    from kafka.errors import MessageSizeTooLargeError

    big = "x" * 2_000_000
    reports = []
    fake = FakeProducer(fail={big.encode(): MessageSizeTooLargeError("too big")}, at_send=at_send)
    stats = produce_rows("unused:1", "t", _raw_rows(["a", big, "b"]), PAYMENT, producer=fake,
                         report=lambda row, reason: reports.append((row, reason)))
    assert stats["sent"] == 2 and stats["not_sent"] == {"too_large": 1}
    assert [r for r, _ in reports] == [1] and "2,000,000 bytes" in reports[0][1]
    assert [v for _, v, *_ in fake.sent if v != big.encode()] == [b"a", b"b"]


def test_a_fatal_error_stops_with_the_row_to_resume_from():
    from kafka.errors import KafkaTimeoutError

    from streamscore.produce import ProduceStopped

    fake = FakeProducer(fail={b"r2": KafkaTimeoutError("no broker")}, at_send=True)
    with pytest.raises(ProduceStopped, match="resume with --skip-rows 2") as e:
        produce_rows("unused:1", "t", _raw_rows(["r0", "r1", "r2", "r3"]), PAYMENT, producer=fake)
    assert e.value.resume_row == 2 and [v for _, v, *_ in fake.sent] == [b"r0", b"r1"]
    # resuming sends from that row on
    again = FakeProducer()
    stats = produce_rows("unused:1", "t", _raw_rows(["r0", "r1", "r2", "r3"]), PAYMENT, producer=again,
                         skip_rows=2)
    assert [v for _, v, *_ in again.sent] == [b"r2", b"r3"] and stats["skipped_rows"] == 2


def test_skip_rows_crosses_batches():
    table = pa.Table.from_pylist([_payment(i) for i in range(10)], schema=PAYMENT.arrow_schema(with_raw=True))
    table = pa.concat_tables([table.slice(0, 3), table.slice(3, 4), table.slice(7)])
    assert [r["event_id"] for r in _rows(table, skip=5)] == [f"e{i}" for i in range(5, 10)]


def test_resume_command_replaces_skip_rows():
    from streamscore.produce import resume_command

    cmd = resume_command(["produce", "--topic", "t", "--skip-rows", "3", "--input", "a b.parquet"], 9)
    assert cmd == "streamscore produce --topic t --input 'a b.parquet' --skip-rows 9"
