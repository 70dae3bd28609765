"""`streamscore kafka up|status|down` and `streamscore produce` as a user runs them (subprocesses)."""
from __future__ import annotations

import re
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.contracts import PAYMENT
from tests.conftest import free_port_pair

pytestmark = pytest.mark.integration


def streamscore(*args, timeout=120):
    res = subprocess.run([sys.executable, "-m", "streamscore.cli", *args], capture_output=True, text=True,
                         timeout=timeout)
    return res.returncode, res.stdout, res.stderr


def test_up_is_idempotent_and_down_stops(tmp_path):
    port = free_port_pair()
    where = ["--port", str(port), "--data-dir", str(tmp_path / "k")]
    try:
        code, out, err = streamscore("kafka", "up", *where)
        assert code == 0, err
        m = re.fullmatch(rf"kafka: up on 127\.0\.0\.1:{port} \(pid (\d+), data .+\) \[started in [\d.]+ s\]\n", out)
        assert m, out
        pid = m.group(1)

        code, out, err = streamscore("kafka", "up", *where)
        assert code == 0 and out.startswith(f"kafka: up on 127.0.0.1:{port} (pid {pid},"), out + err
        assert out.rstrip().endswith("[already running]")

        code, out, _ = streamscore("kafka", "status", *where)
        assert code == 0 and out.startswith(f"kafka: up on 127.0.0.1:{port} (pid {pid},")
    finally:
        code, out, err = streamscore("kafka", "down", *where)
    assert code == 0 and out.startswith(f"kafka: stopped on 127.0.0.1:{port} (pid {pid},"), out + err
    code, out, _ = streamscore("kafka", "status", *where)
    assert code == 3 and out.startswith(f"kafka: not running on 127.0.0.1:{port}")
    assert not (tmp_path / "k" / "kafka.pid").exists()


def test_up_on_a_taken_port_is_one_line(tmp_path, kafka_broker):
    if not hasattr(kafka_broker, "port"):
        pytest.skip("external broker")
    code, out, err = streamscore("kafka", "up", "--port", str(kafka_broker.port), "--data-dir", str(tmp_path))
    assert code == 1 and out == "" and err.count("\n") == 1 and "already in use" in err


def test_produce_cli(tmp_path, kafka_broker, kafka_topic):
    rows = [{"event_id": f"e{i}", "event_time": 1_767_225_600_000 + i, "card_id": "c", "merchant_id": "m",
             "mcc": "5411", "amount": 1.0, "currency": "EUR", "lat": 0.0, "lon": 0.0} for i in range(500)]
    path = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=PAYMENT.arrow_schema(with_labels=False)), path)
    code, out, err = streamscore("produce", "--topic", kafka_topic, "--input", str(path),
                                 "--bootstrap", kafka_broker.bootstrap, "--rate", "2000")
    assert code == 0, err
    assert re.fullmatch(rf"produce: sent 500 payment events to {re.escape(kafka_topic)} on "
                        rf"{kafka_broker.bootstrap} in [\d.]+ s \([\d,]+ events/s\)\n", out), out
    seconds = float(re.search(r"in ([\d.]+) s", out).group(1))
    assert 0.2 <= seconds < 10  # paced at 2000/s


def test_topic_helpers(kafka_broker, unique_topic):
    from kafka import KafkaAdminClient

    from streamscore.kafka_broker import delete_topics, ensure_topic

    name = unique_topic("three")
    assert ensure_topic(kafka_broker.bootstrap, name, partitions=3) is True
    assert ensure_topic(kafka_broker.bootstrap, name, partitions=3) is False  # already there: untouched
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        [desc] = admin.describe_topics([name])
        assert len(desc["partitions"]) == 3
        assert delete_topics(kafka_broker.bootstrap, [name, unique_topic("never")]) == [name]
        deadline = time.monotonic() + 30
        while name in admin.list_topics() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert name not in admin.list_topics()
    finally:
        admin.close()
    assert delete_topics(kafka_broker.bootstrap, []) == []
