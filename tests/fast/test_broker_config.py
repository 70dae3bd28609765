"""The generated broker configuration, and `kafka status` with nothing running (no JVM)."""
from __future__ import annotations

import os

import pytest

from streamscore import cli
from streamscore.kafka_broker import KafkaBroker, _random_cluster_id, render_properties, server_properties
from tests.conftest import free_port_pair


def _parse(text: str) -> dict:
    pairs = [ln.split("=", 1) for ln in text.splitlines() if ln and not ln.startswith("#")]
    return {k: v for k, v in pairs}


@pytest.fixture
def props(tmp_path):
    broker = KafkaBroker(port=29092, data_dir=tmp_path)
    return _parse(render_properties(broker.properties()))


def test_listeners_are_loopback_only(props):
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    for key in ("listeners", "advertised.listeners", "controller.quorum.voters"):
        hosts = [part.split("//")[-1].split("@")[-1].rsplit(":", 1)[0] for part in props[key].split(",")]
        assert set(hosts) == {"127.0.0.1"}, key
    assert "0.0.0.0" not in render_properties(server_properties(1, 2, "/x"))


def test_single_node_replication_settings(props):
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "transaction.state.log.min.isr", "default.replication.factor", "min.insync.replicas",
                "share.coordinator.state.topic.replication.factor"):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"
    assert props["transaction.max.timeout.ms"] == "900000"  # Kafka's default, kept on purpose
    assert props["process.roles"] == "broker,controller"
    # Replayed event times may be old or in the future: neither rejected nor expired.
    assert props["log.retention.ms"] == "-1"
    assert int(props["log.message.timestamp.after.max.ms"]) == 2**63 - 1
    assert props["controller.listener.names"] == "CONTROLLER"


def test_log_dir_partitions_and_ports_are_configurable(tmp_path):
    broker = KafkaBroker(port=30000, data_dir=tmp_path / "b", controller_port=31000, num_partitions=3)
    p = broker.properties()
    assert p["num.partitions"] == "3"
    assert p["log.dirs"] == str((tmp_path / "b" / "logs").resolve())
    assert p["listeners"].endswith("CONTROLLER://127.0.0.1:31000")
    assert broker.bootstrap == "127.0.0.1:30000"
    assert KafkaBroker(port=9092).properties()["num.partitions"] == "1"
    assert KafkaBroker(port=9092).dir.name == "kafka-9092"


def test_overrides_and_cluster_ids(tmp_path):
    broker = KafkaBroker(port=29092, data_dir=tmp_path, overrides={"log.retention.ms": 60000, "x.y": "z"})
    assert broker.properties()["log.retention.ms"] == "60000" and broker.properties()["x.y"] == "z"
    ids = {_random_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)  # kafka-storage would read "-x" as an option


@pytest.mark.parametrize("kwargs", [dict(port=0), dict(port=70000), dict(port=9092, controller_port=9092)])
def test_bad_ports_are_refused(kwargs):
    with pytest.raises(ValueError):
        KafkaBroker(**kwargs).properties()


def test_status_with_nothing_running(tmp_path, capsys):
    port = free_port_pair()
    broker = KafkaBroker(port=port, data_dir=tmp_path)
    assert broker.status() == {"running": False, "pid": None, "bootstrap": f"127.0.0.1:{port}",
                               "controller": f"127.0.0.1:{port + 1}", "dir": str(tmp_path)}
    assert cli.main(["kafka", "status", "--port", str(port), "--data-dir", str(tmp_path)]) == 3
    out = capsys.readouterr()
    assert out.err == ""
    lines = out.out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"kafka: not running on 127.0.0.1:{port}")
    assert cli.main(["kafka", "down", "--port", str(port), "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"kafka: not running on 127.0.0.1:{port} (nothing to stop)\n"


def test_stale_pid_file_is_not_a_running_broker(tmp_path):
    broker = KafkaBroker(port=free_port_pair(), data_dir=tmp_path)
    broker.pid_file.write_text("999999999\n")
    assert broker.status()["running"] is False
    assert broker.stop() is False and not broker.pid_file.exists()
    broker.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not a Kafka JVM (a recycled pid)
    assert broker.pid() is None
