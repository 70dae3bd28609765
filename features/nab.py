"""Loader for real sensor series of the Numenta Anomaly Benchmark (NAB), as SENSOR events.

NAB (github.com/numenta/NAB, MIT licence, see LICENSE.txt next to the data) ships CSV files of
``timestamp,value`` with naive timestamps (UTC by our contract) and, in
``labels/combined_windows.json``, the anomaly windows of every file. ``load_nab`` turns files
into a frame with the SENSOR contract's columns + ``is_anomaly`` + ``_raw`` (always null):

* ``machine_id``: the file name without ``.csv`` (e.g. ``machine_temperature_system_failure``);
* ``sensor_id`` / ``unit`` guessed from the name: ``temperature`` files are in ``degF``,
  ``cpu`` files in ``percent``, anything else ``value`` / ``unknown``;
* ``is_anomaly``: the timestamp lies inside one of the file's windows (both ends inclusive);
  null if the labels file does not mention the file at all;
* ``event_id``: ``nab-<machine_id>-<row number in the file, from 1>``, stable whatever subset is
  loaded.

Row order is arrival order: within a file, file order is kept as is, including the one real
55-minute step backwards in machine_temperature_system_failure.csv. Several files are merged by
"what a producer replaying them side by side would send first": each row's arrival key is the
largest timestamp of its file so far, ties by file then row.

Any NAB-format folder works: a NAB checkout (``data/<set>/<name>.csv`` + ``labels/combined_windows.json``)
or a plain folder of ``timestamp,value`` CSVs with ``combined_windows.json`` beside them. File stems must be
unique (they become ``machine_id``). The directory is ``<repo>/data/nab`` (or ``<repo>/../shared/data/nab``) unless STREAMSCORE_NAB_DIR (or the ``root``
argument) says otherwise.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np
import pandas as pd

from features.contracts import RAW_PAYLOAD, SENSOR
from features.synthetic import string_array

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_VAR = "STREAMSCORE_NAB_DIR"
LABELS_FILE = Path("labels") / "combined_windows.json"


def nab_dir(root: Optional[Union[str, Path]] = None) -> Path:
    """Where the NAB sample lives: ``root``, else $STREAMSCORE_NAB_DIR, else <repo>/data/nab (a copy
    shipped with the repository, MIT licence), else <repo>/../shared/data/nab."""
    if root is not None:
        return Path(root)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    shipped = REPO_ROOT / "data" / "nab"
    return shipped if shipped.is_dir() else REPO_ROOT.parent / "shared" / "data" / "nab"


def guess_sensor(name: str) -> tuple:
    """(sensor_id, unit) for a NAB file name.

    >>> guess_sensor("machine_temperature_system_failure"), guess_sensor("cpu_utilization_asg_misconfiguration")
    (('temperature', 'degF'), ('cpu', 'percent'))
    """
    low = name.lower()
    if "temperature" in low:
        return "temperature", "degF"
    if "cpu" in low:
        return "cpu", "percent"
    return "value", "unknown"


def _data_dir(base: Path) -> Path:
    """<base>/data in a NAB checkout; a plain folder of CSVs (any depth) is accepted too."""
    data = base / "data"
    if data.is_dir():
        return data
    if base.is_dir() and any(base.rglob("*.csv")):
        return base
    raise FileNotFoundError(f"no NAB data under {base} (expected {data}/<set>/<name>.csv or CSV files "
                            f"in {base}); set {ENV_VAR} to the NAB directory")


def available(root: Optional[Union[str, Path]] = None) -> dict:
    """{file stem: path} of every CSV under <nab dir>/data (or under the folder itself)."""
    base = nab_dir(root)
    data = _data_dir(base)
    found = {}
    for p in sorted(data.rglob("*.csv")):
        if p.stem in found:  # machine_id is the stem, so two files would merge into one series
            raise ValueError(f"two NAB files named {p.stem}.csv: {found[p.stem]} and {p}")
        found[p.stem] = p
    return found


def _resolve(names: Optional[Iterable[str]], files: dict) -> list:
    if names is None:
        return list(files)
    if isinstance(names, str):
        names = [names]
    out = []
    for n in names:
        stem = Path(n).name
        stem = stem[:-4] if stem.endswith(".csv") else stem
        if stem not in files:
            raise ValueError(f"unknown NAB series {n!r}; available: {', '.join(files)}")
        if stem not in out:
            out.append(stem)
    if not out:
        raise ValueError("no NAB series selected")
    return out


def _ms(text: pd.Series) -> np.ndarray:
    ts = pd.to_datetime(text, format="ISO8601")
    return ts.to_numpy(dtype="datetime64[ms]").astype(np.int64)


def load_windows(root: Optional[Union[str, Path]] = None) -> dict:
    """{file stem: [(start_ms, end_ms), ...]} from labels/combined_windows.json (or a
    combined_windows.json at the top of the folder); {} when there is neither."""
    base = nab_dir(root)
    path = base / LABELS_FILE
    if not path.is_file():
        path = base / LABELS_FILE.name
    if not path.is_file():
        return {}
    with open(path) as fh:
        raw = json.load(fh)
    out = {}
    for key, windows in raw.items():
        stem = Path(key).stem
        if windows:
            starts = _ms(pd.Series([w[0] for w in windows]))
            ends = _ms(pd.Series([w[1] for w in windows]))
            out[stem] = list(zip(starts.tolist(), ends.tolist()))
        else:
            out[stem] = []
    return out


def load_nab(names: Optional[Iterable[str]] = None, root: Optional[Union[str, Path]] = None) -> pd.DataFrame:
    """The NAB series ``names`` (file stems; default: all) as SENSOR events in arrival order."""
    import pyarrow as pa

    files = available(root)
    stems = _resolve(names, files)
    windows = load_windows(root)
    parts = []
    for fi, stem in enumerate(stems):
        csv = pd.read_csv(files[stem], dtype={"value": np.float64})
        if list(csv.columns) != ["timestamp", "value"]:
            raise ValueError(f"{files[stem]}: expected columns timestamp,value, got {list(csv.columns)}")
        if not np.isfinite(csv["value"].to_numpy()).all():
            raise ValueError(f"{files[stem]}: non-finite values")
        t = _ms(csv["timestamp"])
        if stem in windows:
            lab = np.zeros(len(t), bool)
            for a, b in windows[stem]:
                lab |= (t >= a) & (t <= b)
            known = np.ones(len(t), bool)
        else:
            lab = np.zeros(len(t), bool)
            known = np.zeros(len(t), bool)
        sensor, unit = guess_sensor(stem)
        parts.append(dict(t=t, value=csv["value"].to_numpy(), lab=lab, known=known, stem=stem, sensor=sensor,
                          unit=unit, fi=np.full(len(t), fi), row=np.arange(1, len(t) + 1),
                          key=np.maximum.accumulate(t) if len(t) else t))
    t = np.concatenate([p["t"] for p in parts])
    key = np.concatenate([p["key"] for p in parts])
    fi = np.concatenate([p["fi"] for p in parts])
    row = np.concatenate([p["row"] for p in parts])
    order = np.lexsort((row, fi, key))
    t, fi, row = t[order], fi[order], row[order]
    value = np.concatenate([p["value"] for p in parts])[order]
    lab = np.concatenate([p["lab"] for p in parts])[order]
    known = np.concatenate([p["known"] for p in parts])[order]

    def strings(values):
        return string_array(pa.array(np.asarray(values, dtype=object)[fi], type=pa.string()))

    event_id = [f"nab-{stems[f]}-{r:06d}" for f, r in zip(fi.tolist(), row.tolist())]
    df = pd.DataFrame({
        "event_id": string_array(pa.array(event_id, type=pa.string())),
        "event_time": pd.arrays.IntegerArray(t, np.zeros(len(t), bool)),
        "machine_id": strings(stems),
        "sensor_id": strings([p["sensor"] for p in parts]),
        "value": pd.arrays.FloatingArray(value.astype(np.float64), np.zeros(len(t), bool)),
        "unit": strings([p["unit"] for p in parts]),
        "is_anomaly": pd.arrays.BooleanArray(lab, ~known),
        RAW_PAYLOAD: string_array(pa.nulls(len(t), pa.string())),
    })
    assert list(df.columns) == list(SENSOR.field_names + SENSOR.label_names) + [RAW_PAYLOAD]
    df.attrs.update(domain="iot", source="nab", nab_dir=str(nab_dir(root)),
                    series={p["stem"]: len(p["t"]) for p in parts},
                    windows={s: len(windows.get(s, [])) for s in stems})
    return df
