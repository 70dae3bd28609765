"""Shared fixtures. ``kafka_broker`` is the one real broker of a test session: reuse it (with a
``unique_topic`` per test) rather than starting your own, a start costs seconds."""
from __future__ import annotations

import os
import re
import socket
import uuid

import pytest


def pytest_configure(config):
    # kafka-python 3.0 loads its protocol schemas with the deprecated importlib.resources API.
    for msg in ("read_text is deprecated", "open_text is deprecated"):
        config.addinivalue_line("filterwarnings", f"ignore:{msg}:DeprecationWarning")


def free_port_pair(host: str = "127.0.0.1") -> int:
    """A free TCP port p with p+1 also free (the broker's controller listens on p+1)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port == 9092 or port + 1 >= 65536:
            continue
        try:
            with socket.socket() as s1, socket.socket() as s2:
                s1.bind((host, port))
                s2.bind((host, port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no two adjacent free ports on loopback")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """A real single-node KRaft broker on a free loopback port, for the whole session.

    Use ``kafka_broker.bootstrap`` ("127.0.0.1:<port>"). Set STREAMSCORE_TEST_BOOTSTRAP to use an
    already running broker instead (then the fixture is a stand-in with only ``.bootstrap``).
    """
    external = os.environ.get("STREAMSCORE_TEST_BOOTSTRAP")
    if external:
        yield _External(external)
        return
    from streamscore.kafka_broker import KafkaBroker

    broker = KafkaBroker(port=free_port_pair(), data_dir=tmp_path_factory.mktemp("kafka"))
    broker.start(timeout=90)
    try:
        yield broker
    finally:
        broker.stop()


class _External:
    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap


@pytest.fixture
def unique_topic(request):
    """A factory of topic names unique to this test: ``unique_topic()``, ``unique_topic("scores")``.
    Topics are not created (the broker auto-creates with 1 partition); use ensure_topic for more."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:80].strip("-")

    def make(suffix: str = "") -> str:
        parts = [base, suffix, uuid.uuid4().hex[:8]]
        return ".".join(p for p in parts if p)

    return make


@pytest.fixture
def kafka_topic(kafka_broker, unique_topic):
    """A fresh, created, single-partition topic on the session broker."""
    from streamscore.kafka_broker import ensure_topic

    name = unique_topic()
    ensure_topic(kafka_broker.bootstrap, name, partitions=1)
    return name
