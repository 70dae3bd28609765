"""Synthetic machine sensor readings (iot), see features.synthetic."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from features.contracts import SENSOR
from features.synthetic._common import (
    ANOMALY_KINDS, DAY_MS, DEFAULT_START_MS, HOUR_MS, MINUTE_MS, Progress, _Codes, _check_args,
    _finish, _ids)

# --------------------------------------------------------------------------------------------
# iot: machine sensors
# --------------------------------------------------------------------------------------------
# sensor type, unit, rounding
SENSOR_TYPES = (("temp", "degC", 2), ("vib", "mm/s", 3), ("pres", "bar", 3))


def generate_sensors(n_events: int, seed: int = 0, start_ms: int = DEFAULT_START_MS, days: float = 1.0,
                     n_machines: Optional[int] = None, anomaly_rate: float = 0.01,
                     out_of_order: float = 0.0, late: float = 0.0, malformed: float = 0.0,
                     max_disorder_ms: int = 5000, late_by_ms: int = 600_000,
                     progress: Progress = None) -> pd.DataFrame:
    """Regular readings of 3-5 sensors per machine, with labelled spike/drift/stuck anomalies.

    ``n_machines`` defaults to one per ~4 sensors reporting once a minute over the span.
    ``anomaly_rate`` is the target share of readings inside an anomaly.
    """
    _check_args(n_events, seed, days, out_of_order, late, malformed, max_disorder_ms, late_by_ms,
                start_ms)
    if not 0 <= anomaly_rate < 0.5:
        raise ValueError(f"anomaly_rate must be in [0, 0.5), got {anomaly_rate}")
    rng = np.random.default_rng(seed)
    span_ms = int(round(days * DAY_MS))
    per_sensor = max(1.0, span_ms / MINUTE_MS)
    n_machines = int(n_machines) if n_machines else max(1, int(round(n_events / (4.0 * per_sensor))))
    if n_machines <= 0:
        raise ValueError(f"n_machines must be > 0, got {n_machines}")
    step = (lambda s, f: progress(s, f)) if progress else (lambda s, f: None)
    step("sensors", 0.0)

    # sensors: temp-1, vib-1, pres-1 on every machine, sometimes temp-2 / vib-2 --------------
    s_machine, s_type, s_name = [], [], []
    extra_t = rng.random(n_machines) < 0.5
    extra_v = rng.random(n_machines) < 0.3
    for m in range(n_machines):
        names = [("temp-1", 0), ("vib-1", 1), ("pres-1", 2)]
        if extra_t[m]:
            names.append(("temp-2", 0))
        if extra_v[m]:
            names.append(("vib-2", 1))
        for nm, ty in names:
            s_machine.append(m); s_type.append(ty); s_name.append(nm)
    s_machine = np.array(s_machine); s_type = np.array(s_type)
    n_s = s_machine.size
    cnt = np.full(n_s, n_events // n_s, dtype=np.int64)
    cnt[: n_events % n_s] += 1
    machine_ids = _ids("mch-", n_machines, 4)

    # times: a regular period per sensor, random phase, small jitter --------------------------
    r_s = np.repeat(np.arange(n_s), cnt)
    first = np.concatenate([[0], np.cumsum(cnt)[:-1]])
    k = np.arange(n_events) - np.repeat(first, cnt)
    period = span_ms / np.maximum(cnt, 1)
    phase = rng.random(n_s)
    jitter = rng.uniform(-0.03, 0.03, n_events)
    t = np.floor((k + phase[r_s] + jitter) * period[r_s]).astype(np.int64)
    t = np.clip(t, 0, span_ms - 1)

    # values: base + daily load cycle + slow wander + noise --------------------------------
    step("values", 0.2)
    ty = s_type[r_s]
    m_of = s_machine[r_s]
    hours = (start_ms + t) / HOUR_MS
    m_phase = rng.normal(0, 1.0, n_machines)
    load = 0.5 + 0.5 * np.sin(2 * np.pi * (hours + 1.0 - 9.0 - m_phase[m_of]) / 24.0)  # peak ~15:00
    base = np.where(s_type == 0, rng.uniform(45, 75, n_s),
                    np.where(s_type == 1, rng.uniform(1.5, 4.5, n_s), rng.uniform(4.0, 8.0, n_s)))
    amp = np.where(s_type == 0, rng.uniform(2, 6, n_s), np.where(s_type == 1, 0.5, 0.3))
    wander = np.zeros(n_events)
    for _ in range(2):
        per_h = rng.uniform(1.5, 8.0, n_s)
        ph = rng.uniform(0, 2 * np.pi, n_s)
        wander += np.sin(2 * np.pi * hours / per_h[r_s] + ph[r_s])
    noise = rng.normal(0, 1, n_events)
    value = np.where(
        ty == 0, base[r_s] + amp[r_s] * load + 0.6 * wander + 0.25 * noise,
        np.where(ty == 1, base[r_s] * (0.6 + amp[r_s] * load) * np.exp(0.06 * noise) + 0.05 * wander,
                 base[r_s] + amp[r_s] * load + 0.04 * wander + 0.03 * noise))

    # anomalies ---------------------------------------------------------------------------
    step("anomalies", 0.4)
    anomalous = np.zeros(n_events, bool)
    target = int(anomaly_rate * n_events)
    done = {kk: 0 for kk in ANOMALY_KINDS}
    readings = {kk: 0 for kk in ANOMALY_KINDS}
    kind_i, tries = 0, 0
    p_s = cnt / cnt.sum()
    while anomalous.sum() < target and tries < 50 * (target + 10):
        tries += 1
        kind = ANOMALY_KINDS[kind_i % 3]
        s = int(rng.choice(n_s, p=p_s))
        c = int(cnt[s])
        length = {"spike": int(rng.integers(1, 4)), "drift": int(rng.integers(30, 181)),
                  "stuck": int(rng.integers(20, 121))}[kind]
        length = min(length, max(1, target - int(anomalous.sum()))) if kind == "spike" else \
            min(length, max(5, c // 5))
        if c < length + 2:
            continue
        a = first[s] + int(rng.integers(1, c - length))
        sl = slice(a, a + length)
        if anomalous[a - 1:a + length + 1].any():
            continue
        tt = s_type[s]
        if kind == "spike":
            if tt == 0:
                value[sl] += rng.uniform(12, 25)
            elif tt == 1:
                value[sl] *= rng.uniform(3, 6)
            else:
                value[sl] += rng.choice([-1, 1]) * rng.uniform(1.5, 3.0)
        elif kind == "drift":
            ramp = np.linspace(0, 1, length) ** 1.5
            if tt == 0:
                value[sl] += ramp * rng.uniform(6, 15)
            elif tt == 1:
                value[sl] *= 1 + ramp * rng.uniform(1.5, 3.0)
            else:
                value[sl] -= ramp * rng.uniform(0.8, 2.0)
        else:
            value[sl] = value[a - 1]
        anomalous[sl] = True
        done[kind] += 1
        readings[kind] += length
        kind_i += 1
    value = np.where(ty == 1, np.maximum(value, 0.0), value)
    value = np.where(ty == 0, np.round(value, 2), np.round(value, 3))
    # a stuck sensor repeats its last value exactly, also after rounding
    units = [u for _, u, _ in SENSOR_TYPES]
    cols = {
        "event_time": start_ms + t,
        "machine_id": _Codes(machine_ids, m_of),
        "sensor_id": _Codes(s_name, r_s),
        "value": value,
        "unit": _Codes(units, ty),
        "is_anomaly": anomalous,
    }
    attrs = dict(domain="iot", n_machines=n_machines, n_sensors=n_s, anomaly_incidents=done,
                 anomaly_readings=readings)
    step("assemble", 0.7)
    return _finish(SENSOR, "s-", cols, seed, ~anomalous, out_of_order, late, malformed, max_disorder_ms,
                   late_by_ms, attrs, progress)
