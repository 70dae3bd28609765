"""`make demo` (the README's first command) end to end: its own broker, generation, backfill, training,
a streaming run and the summary. Small, so it stays a smoke test; the pipeline's numbers are held
by the other integration tests."""
from __future__ import annotations

import pytest

from streamscore.cli import main as cli
from tests.conftest import free_port_pair

pytestmark = pytest.mark.integration


def test_demo_runs_end_to_end_and_accounts_for_every_event(tmp_path, capsys):
    rc = cli(["demo", "--port", str(free_port_pair()), "--events", "20000", "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "(holds)" in out, out[-2000:]  # in = decided + dead letters + late
    assert "planted fraud" in out and "recall" in out
    assert (tmp_path / "models" / "current").is_file()
    assert "kafka: stopped" in out
