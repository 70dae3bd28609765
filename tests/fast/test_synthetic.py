"""The synthetic generators: determinism, contracts, disorder bounds, planted fraud signatures."""
from __future__ import annotations

import argparse
import io
import math
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.contracts import BEHAVIOUR, PAYMENT, RAW_PAYLOAD, SENSOR, InvalidEvent
from features.synthetic import (FRAUD_PATTERNS, FX, MALFORMED_KINDS, expected_reason, generate_behaviour,
                                generate_payments, generate_sensors, records, to_arrow)

GEN = {"fraud": (generate_payments, PAYMENT, "p-"), "recsys": (generate_behaviour, BEHAVIOUR, "b-"),
       "iot": (generate_sensors, SENSOR, "s-")}
DISORDER = dict(out_of_order=0.05, late=0.01, malformed=0.01, max_disorder_ms=5000, late_by_ms=600_000)


@pytest.fixture(scope="module")
def payments():
    return generate_payments(50_000, seed=11, days=2.0)


@pytest.fixture(scope="module")
def messy():
    """Every domain, 20k events over 2 days, with all three disorder options."""
    return {d: gen(20_000, seed=5, days=2.0, **DISORDER) for d, (gen, _, _) in GEN.items()}


def _parquet_bytes(df, contract) -> bytes:
    buf = io.BytesIO()
    pq.write_table(to_arrow(df, contract), buf)
    return buf.getvalue()


def _km(lat1, lon1, lat2, lon2):
    """Haversine, written out here independently of the generator's."""
    r = 6371.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * r * math.asin(math.sqrt(a))


# -- determinism and shape --------------------------------------------------------------------
@pytest.mark.parametrize("domain", list(GEN))
def test_same_seed_same_bytes_different_seed_differs(domain):
    gen, contract, _ = GEN[domain]
    a = gen(6000, seed=3, **DISORDER)
    b = gen(6000, seed=3, **DISORDER)
    c = gen(6000, seed=4, **DISORDER)
    pd.testing.assert_frame_equal(a, b)
    assert _parquet_bytes(a, contract) == _parquet_bytes(b, contract)
    assert _parquet_bytes(a, contract) != _parquet_bytes(c, contract)


@pytest.mark.parametrize("domain", list(GEN))
def test_columns_ids_and_sorted_without_disorder(domain):
    gen, contract, prefix = GEN[domain]
    df = gen(5000, seed=1)
    assert list(df.columns) == list(contract.field_names + contract.label_names) + [RAW_PAYLOAD]
    assert len(df) == 5000 and df[RAW_PAYLOAD].isna().all()
    assert df["event_id"].is_unique and df["event_id"].str.startswith(prefix).all()
    assert df["event_id"].iloc[0] == prefix + "1-000000001"  # domain, seed, number in event-time order
    key = list(zip(df["event_time"].tolist(), df["event_id"].tolist()))
    assert key == sorted(key)


@pytest.mark.parametrize("domain", list(GEN))
def test_disorder_keeps_the_same_events(domain, messy):
    """Disorder moves and breaks events; the remaining ones are those of the ordered stream."""
    gen, contract, _ = GEN[domain]
    clean = gen(20_000, seed=5, days=2.0)
    df = messy[domain]
    good = df[df[RAW_PAYLOAD].isna()]
    merged = good.merge(clean, on="event_id", suffixes=("", "_clean"))
    assert len(merged) == len(good) == 20_000 - df.attrs["n_malformed"]
    for f in contract.field_names + contract.label_names:
        if f != "event_id":
            assert merged[f].equals(merged[f + "_clean"].rename(f)), f


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="positive"):
        generate_payments(0)
    with pytest.raises(ValueError, match="late"):
        generate_payments(100, late=1.0)
    with pytest.raises(ValueError, match="fraction"):
        generate_sensors(100, malformed=-0.1)
    with pytest.raises(ValueError, match="late_by_ms"):
        generate_behaviour(100, late=0.1, out_of_order=0.1, late_by_ms=1000, max_disorder_ms=5000)
    with pytest.raises(ValueError, match="far from the end"):  # 14 minutes cannot hold 10-minute-late events
        generate_payments(1000, days=0.01, late=0.5)


# -- contracts ----------------------------------------------------------------------------------
@pytest.mark.parametrize("domain", list(GEN))
def test_rows_valid_and_malformed_rejected_with_expected_reason(domain, messy):
    _, contract, _ = GEN[domain]
    df = messy[domain]
    rows = records(df, contract)
    seen = Counter()
    k = 0
    for row in rows:
        if row[RAW_PAYLOAD] is None:
            ev = contract.from_row(row)
            assert ev["event_id"] == row["event_id"]
            continue
        assert all(row[f] is None for f in contract.field_names + contract.label_names)
        kind = MALFORMED_KINDS[k % len(MALFORMED_KINDS)]
        k += 1
        with pytest.raises(InvalidEvent) as e:
            contract.from_row(row)
        assert e.value.reason == expected_reason(contract, kind), (kind, row[RAW_PAYLOAD])
        seen[kind] += 1
    assert k == df.attrs["n_malformed"] == round(0.01 * len(df))
    assert set(seen) == set(MALFORMED_KINDS)


def test_every_malformed_payload_is_rejected_by_parse(messy):
    for domain, (_, contract, _) in GEN.items():
        raws = messy[domain][RAW_PAYLOAD].dropna().tolist()
        assert raws
        for raw in raws:
            with pytest.raises(InvalidEvent):
                contract.parse(raw)


# -- disorder -------------------------------------------------------------------------------------
@pytest.mark.parametrize("domain", list(GEN))
def test_disorder_bounds(domain, messy):
    df = messy[domain]
    t = df["event_time"].dropna().to_numpy(dtype=np.int64)  # arrival order, well-formed rows only
    running = np.maximum.accumulate(np.concatenate([[t[0]], t[:-1]]))
    lag = np.maximum(running - t, 0)
    late = lag >= DISORDER["late_by_ms"]
    displaced = (lag > 0) & ~late
    # nothing in between: out-of-order events are within the bound, late ones at least late_by behind
    assert (lag[displaced] <= DISORDER["max_disorder_ms"]).all()
    assert late.sum() == df.attrs["n_late"] == round(DISORDER["late"] * len(df))
    assert 0 < displaced.sum() <= df.attrs["n_out_of_order"] == round(DISORDER["out_of_order"] * len(df))


def test_no_disorder_means_no_lag(payments):
    t = payments["event_time"].to_numpy(dtype=np.int64)
    assert (np.diff(t) >= 0).all()


# -- fraud ----------------------------------------------------------------------------------------
def test_fraud_rate_and_patterns(payments):
    fraud = payments["is_fraud"].to_numpy(dtype=bool)
    assert 0 < fraud.mean() < 0.01
    assert set(payments.loc[fraud, "fraud_pattern"]) == set(FRAUD_PATTERNS)
    assert payments.loc[~fraud, "fraud_pattern"].isna().all()
    assert payments["fraud_pattern"].notna().sum() == fraud.sum()


def test_small_streams_stay_under_one_percent():
    for n in (1000, 2500, 4000, 9000):
        df = generate_payments(n, seed=n)
        assert df["is_fraud"].to_numpy(dtype=bool).mean() < 0.01


def test_payment_population_looks_real(payments):
    legit = payments[~payments["is_fraud"].to_numpy(dtype=bool)]
    present = legit["device_id"].isna()
    assert 0.4 < present.mean() < 0.95  # card-present payments have no device
    assert legit.groupby("card_id")["device_id"].nunique().max() <= 1  # 0-1 devices per card
    assert legit["currency"].nunique() > 5 and legit["mcc"].str.fullmatch(r"\d{4}").all()
    # recurring merchants: most payments go to a card's few usual merchants
    per_card = legit.groupby("card_id")["merchant_id"].agg(["size", "nunique"])
    busy = per_card[per_card["size"] >= 20]
    assert (busy["nunique"] / busy["size"]).median() < 0.6
    # diurnal: quiet nights in Berlin
    berlin = legit[(legit["lat"] - 52.52).abs().lt(0.5) & (legit["lon"] - 13.40).abs().lt(0.8)]
    hour = ((berlin["event_time"].to_numpy(dtype=np.int64) // 3_600_000) + 1) % 24
    assert np.isin(hour, [2, 3, 4]).mean() < 0.03 and np.isin(hour, [12, 13, 18, 19]).mean() > 0.25


def _by_card(df):
    df = df.sort_values(["event_time", "event_id"])
    return {c: g for c, g in df.groupby("card_id", sort=False)}


def test_impossible_travel_signature(payments):
    cards = _by_card(payments)
    firsts = 0
    for card in payments.loc[payments["fraud_pattern"] == "impossible_travel", "card_id"].unique():
        g = cards[card].reset_index(drop=True)
        i = int(np.flatnonzero((g["fraud_pattern"] == "impossible_travel").to_numpy())[0])
        assert i > 0, "a planted impossible_travel needs a previous payment"
        prev, cur = g.iloc[i - 1], g.iloc[i]
        hours = (cur["event_time"] - prev["event_time"]) / 3_600_000
        km = _km(prev["lat"], prev["lon"], cur["lat"], cur["lon"])
        assert 0 < hours <= 1 and km > 1500
        assert km / hours > 900, (card, km, hours)
        firsts += 1
    assert firsts >= 5


def test_card_testing_signature(payments):
    cards = _by_card(payments)
    bursts = payments.loc[payments["fraud_pattern"] == "card_testing", "card_id"].unique()
    assert len(bursts) >= 2
    for card in bursts:
        g = cards[card]
        ct = g[g["fraud_pattern"] == "card_testing"]
        t = g["event_time"].to_numpy(dtype=np.int64)
        t0 = int(ct["event_time"].min())
        assert ((t >= t0) & (t < t0 + 600_000)).sum() >= 5  # >= 5 payments within 10 minutes
        assert ct["merchant_id"].nunique() >= 2
        fx = FX[ct["currency"].iloc[0]]
        assert (ct["amount"] <= 2.5 * fx).all()  # tiny: at most 2.50 EUR worth
        assert ct["device_id"].notna().all()


def test_account_takeover_signature(payments):
    cards = _by_card(payments)
    victims = payments.loc[payments["fraud_pattern"] == "account_takeover", "card_id"].unique()
    assert len(victims) >= 2
    for card in victims:
        g = cards[card]
        ato = g[g["fraud_pattern"] == "account_takeover"]
        legit = g[g["fraud_pattern"].isna()]
        span = ato["event_time"].max() - ato["event_time"].min()
        assert len(ato) >= 3 and span <= 2 * 3_600_000
        assert ato["device_id"].nunique() == 1
        assert not set(ato["device_id"]) & set(legit["device_id"].dropna())   # a new device
        assert not set(ato["merchant_id"]) & set(legit["merchant_id"])        # new merchants
        assert (ato["amount"] > 3 * legit["amount"].median()).all()


def test_high_amount_signature(payments):
    cards = _by_card(payments)
    hits = payments[payments["fraud_pattern"] == "high_amount"]
    assert len(hits) >= 5
    for _, row in hits.iterrows():
        legit = cards[row["card_id"]]
        legit = legit[legit["fraud_pattern"].isna()]["amount"].to_numpy(dtype=float)
        assert len(legit) >= 3
        z = (row["amount"] - legit.mean()) / legit.std()
        assert row["amount"] >= 8 * np.median(legit) and row["amount"] > legit.max() and z > 3


# -- recsys ---------------------------------------------------------------------------------------
def test_behaviour_funnel_and_sessions():
    df = generate_behaviour(50_000, seed=2)
    share = df["action"].value_counts() / (df["action"] == "view").sum()
    assert 0.08 < share["cart"] < 0.12 and 0.02 < share["purchase"] < 0.04
    assert 0.1 < df["session_hint"].isna().mean() < 0.3
    # a purchase follows a cart of the same user and item, which follows a view
    first = df.groupby(["user_id", "item_id", "action"])["event_time"].min().unstack()
    bought = first.dropna(subset=["purchase"])
    assert (bought["cart"] <= bought["purchase"]).all() and (bought["view"] <= bought["cart"]).all()
    # Zipf popularity and category tastes
    views = df[df["action"] == "view"]
    top = views["item_id"].value_counts()
    assert top.iloc[: max(1, len(top) // 100)].sum() > 0.05 * len(views)
    per_user = views.groupby("user_id")["category"].agg(lambda s: s.value_counts(normalize=True).iloc[0])
    assert per_user[views.groupby("user_id").size() >= 20].median() > 0.3
    assert (df["price"] > 0).all() and df.groupby("item_id")["price"].nunique().max() == 1


# -- iot ------------------------------------------------------------------------------------------
def test_sensor_readings_and_anomalies():
    df = generate_sensors(50_000, seed=4)
    assert 0.005 < df["is_anomaly"].mean() < 0.03
    kinds = df.attrs["anomaly_incidents"]
    assert all(kinds[k] >= 1 for k in ("spike", "drift", "stuck"))
    units = df.groupby(df["sensor_id"].str.split("-").str[0])["unit"].unique()
    assert {k: list(v) for k, v in units.items()} == {"temp": ["degC"], "vib": ["mm/s"], "pres": ["bar"]}
    # anomalous readings stand out from their sensor's normal ones, or repeat exactly (stuck)
    df = df.sort_values("event_time")
    stand_out = 0
    runs = 0
    for (_, _), g in df.groupby(["machine_id", "sensor_id"]):
        v = g["value"].to_numpy(dtype=float)
        a = g["is_anomaly"].to_numpy(dtype=bool)
        if not a.any():
            continue
        mu, sd = v[~a].mean(), v[~a].std()
        starts = np.flatnonzero(a & ~np.concatenate([[False], a[:-1]]))
        for s in starts:
            e = s
            while e + 1 < len(a) and a[e + 1]:
                e += 1
            seg = v[s:e + 1]
            runs += 1
            stuck = len(seg) > 5 and np.all(seg == seg[0])
            if stuck or np.abs(seg - mu).max() > 2.5 * sd:
                stand_out += 1
    assert runs >= 3 and stand_out >= 0.8 * runs


# -- the CLI --------------------------------------------------------------------------------------
def _cli(argv):
    from streamscore import generate

    parser = argparse.ArgumentParser()
    generate.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_writes_the_contract_schema(tmp_path, capsys):
    out = tmp_path / "p.parquet"
    assert _cli(["generate", "fraud", "--events", "5000", "--seed", "9", "--out", str(out),
                 "--malformed", "0.01", "--start", "2026-03-01T00:00:00Z"]) == 0
    line = capsys.readouterr().out.strip()
    assert "5,000 payment events" in line and "fraud " in line and "malformed 50" in line and str(out) in line
    table = pq.read_table(out)
    assert table.schema.equals(PAYMENT.arrow_schema(with_labels=True, with_raw=True), check_metadata=True)
    assert table.num_rows == 5000
    again = tmp_path / "q.parquet"
    _cli(["generate", "fraud", "--events", "5000", "--seed", "9", "--out", str(again),
          "--malformed", "0.01", "--start", "2026-03-01T00:00:00Z"])
    assert out.read_bytes() == again.read_bytes()


@pytest.mark.parametrize("argv, match", [
    (["generate", "fraud", "--events", "0"], "--events must be > 0"),
    (["generate", "recsys"], "--events N is required"),
    (["generate", "iot", "--events", "10", "--late", "1"], r"--late must be a fraction in \[0, 1\)"),
    (["generate", "fraud", "--events", "10", "--out-of-order", "-0.5"], "--out-of-order"),
    (["generate", "fraud", "--events", "10", "--start", "soon"], "--start"),
    (["generate", "fraud", "--nab"], "--nab is real sensor data"),
    (["generate", "iot", "--nab", "--events", "5"], "drop --events"),
])
def test_cli_rejects_bad_arguments(argv, match):
    with pytest.raises(ValueError, match=match):
        _cli(argv + ["--out", "/nonexistent/never-written.parquet"])


@pytest.mark.parametrize("domain", list(GEN))
def test_ids_are_unique_across_seeds_and_short(domain):
    """Two files from two seeds never share an event id (de-duplication would drop real events)."""
    gen, _, _ = GEN[domain]
    ids = {seed: set(gen(3000, seed=seed)["event_id"]) for seed in (1, 11, 2 ** 40, 10 ** 30)}
    for a in ids:
        for b in ids:
            if a < b:
                assert not ids[a] & ids[b], (a, b)
    assert max(len(i) for s in ids.values() for i in s) < 40
