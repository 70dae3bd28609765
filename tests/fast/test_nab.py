"""The NAB loader against the real sample in /work/shared/data/nab (skipped where it is absent)."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from features.contracts import RAW_PAYLOAD, SENSOR
from features.nab import ENV_VAR, guess_sensor, load_nab, nab_dir
from features.synthetic import records

ROOT = nab_dir()
pytestmark = pytest.mark.skipif(not (ROOT / "data").is_dir(), reason=f"NAB sample not at {ROOT}")

MACHINE = "machine_temperature_system_failure"
AMBIENT = "ambient_temperature_system_failure"
CPU = "cpu_utilization_asg_misconfiguration"
EXPECTED_ROWS = {MACHINE: 22_695, AMBIENT: 7_267, CPU: 18_050}
EXPECTED_WINDOWS = {MACHINE: 4, AMBIENT: 2, CPU: 1}


@pytest.fixture(scope="module")
def nab():
    return load_nab()


def _readme_table() -> dict:
    """{stem: (rows, windows)} from the README's markdown table."""
    out = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        m = re.match(r"\|\s*([\w]+)\.csv\s*\|\s*([\d,]+)\s*\|.*\|\s*(\d+)\s*\|\s*$", line)
        if m:
            out[m.group(1)] = (int(m.group(2).replace(",", "")), int(m.group(3)))
    return out


def test_row_counts_match_the_readme(nab):
    table = _readme_table()
    assert {k: v[0] for k, v in table.items()} == EXPECTED_ROWS
    assert nab["machine_id"].value_counts().to_dict() == EXPECTED_ROWS
    assert len(nab) == sum(EXPECTED_ROWS.values()) == 48_012
    assert nab.attrs["windows"] == {k: v[1] for k, v in table.items()} == EXPECTED_WINDOWS


def test_contract_columns_units_and_ids(nab):
    assert list(nab.columns) == list(SENSOR.field_names + SENSOR.label_names) + [RAW_PAYLOAD]
    assert nab["event_id"].is_unique
    assert nab[RAW_PAYLOAD].isna().all()
    units = nab.groupby("machine_id")[["sensor_id", "unit"]].first().to_dict("index")
    assert units == {MACHINE: {"sensor_id": "temperature", "unit": "degF"},
                     AMBIENT: {"sensor_id": "temperature", "unit": "degF"},
                     CPU: {"sensor_id": "cpu", "unit": "percent"}}
    for row in records(nab.iloc[::97], SENSOR):
        SENSOR.from_row(row)
    assert guess_sensor("ec2_network_in_5abac7") == ("value", "unknown")


def test_timestamps_are_naive_utc(nab):
    first = nab[nab["machine_id"] == MACHINE].iloc[0]
    assert first["event_time"] == int(pd.Timestamp("2013-12-02 21:15:00", tz="UTC").timestamp() * 1000)
    assert first["event_id"] == f"nab-{MACHINE}-000001"
    assert first["value"] == pytest.approx(73.96732207)


def test_anomaly_windows_labelled_inclusively(nab):
    windows = json.loads((ROOT / "labels" / "combined_windows.json").read_text())
    for key, wins in windows.items():
        stem = key.split("/")[-1][:-4]
        g = nab[nab["machine_id"] == stem]
        t = g["event_time"].to_numpy(dtype=np.int64)
        lab = g["is_anomaly"].to_numpy(dtype=bool)
        expect = np.zeros(len(t), bool)
        for a, b in wins:
            a_ms = int(pd.Timestamp(a, tz="UTC").timestamp() * 1000)
            b_ms = int(pd.Timestamp(b, tz="UTC").timestamp() * 1000)
            inside = (t >= a_ms) & (t <= b_ms)
            assert inside.any()
            # ends inclusive: rows exactly on a window edge are labelled
            edge = (t == a_ms) | (t == b_ms)
            assert lab[edge].all()
            expect |= inside
        assert (lab == expect).all(), stem
        # one labelled run per window (file order)
        runs = int(lab[0]) + int(np.sum(lab[1:] & ~lab[:-1]))
        assert runs == len(wins) == EXPECTED_WINDOWS[stem]


def test_out_of_order_step_preserved(nab):
    g = nab[nab["machine_id"] == MACHINE]
    t = g["event_time"].to_numpy(dtype=np.int64)
    d = np.diff(t)
    back = np.flatnonzero(d < 0)
    assert len(back) == 1 and d[back[0]] == -55 * 60_000
    assert pd.Timestamp(int(t[back[0] + 1]), unit="ms") == pd.Timestamp("2014-01-07 02:00:00")
    # file order is kept: the row numbers in the ids increase
    rows = g["event_id"].str.rsplit("-", n=1).str[1].astype(int).to_numpy()
    assert (np.diff(rows) == 1).all()
    # and the other series are in order
    for stem in (AMBIENT, CPU):
        assert (np.diff(nab.loc[nab["machine_id"] == stem, "event_time"].to_numpy(dtype=np.int64)) > 0).all()


def test_merged_stream_is_in_arrival_order(nab):
    """Across files, nothing but the real step goes back in time."""
    t = nab["event_time"].to_numpy(dtype=np.int64)
    running = np.maximum.accumulate(t)
    behind = running - t
    assert (behind > 0).sum() == 11 and behind.max() == 55 * 60_000  # 02:00..02:50 re-sent


def test_select_and_override_directory(tmp_path, monkeypatch):
    one = load_nab([f"{CPU}.csv"])
    assert len(one) == EXPECTED_ROWS[CPU] and one["is_anomaly"].sum() > 0
    assert one["event_id"].iloc[0] == f"nab-{CPU}-000001"
    with pytest.raises(ValueError, match="unknown NAB series"):
        load_nab(["no_such_series"])
    # a copy with one file, found through the environment variable
    (tmp_path / "data" / "x").mkdir(parents=True)
    shutil.copy(ROOT / "data" / "realKnownCause" / f"{AMBIENT}.csv", tmp_path / "data" / "x")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    df = load_nab()
    assert nab_dir() == tmp_path
    assert len(df) == EXPECTED_ROWS[AMBIENT]
    assert df["is_anomaly"].isna().all()  # no labels file: unknown, not "normal"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=ENV_VAR):
        load_nab()


def test_cli_nab(tmp_path, capsys):
    import argparse

    import pyarrow.parquet as pq

    from streamscore import generate

    parser = argparse.ArgumentParser()
    generate.add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "nab.parquet"
    args = parser.parse_args(["generate", "iot", "--nab", "--out", str(out)])
    assert args.func(args) == 0
    assert "48,012 sensor events from 3 NAB series" in capsys.readouterr().out
    table = pq.read_table(out)
    assert table.num_rows == 48_012
    assert table.schema.equals(SENSOR.arrow_schema(with_labels=True, with_raw=True), check_metadata=True)
