"""Synthetic card payments (fraud), see features.synthetic."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from features.contracts import PAYMENT
from features.synthetic._common import (
    DAY_MS, DEFAULT_START_MS, FRAUD_PATTERNS, FRAUD_TARGET_RATE, HOUR_MS, MINUTE_MS, Progress,
    _Codes, _check_args, _diurnal_times, _finish, _ids, _payment_profile, haversine_km)

# --------------------------------------------------------------------------------------------
# fraud: card payments
# --------------------------------------------------------------------------------------------
# city, lat, lon, UTC offset (h, no DST), currency, weight of the issuer's cardholders living there
CITIES = (
    ("Berlin", 52.5200, 13.4050, 1, "EUR", 9), ("Munich", 48.1351, 11.5820, 1, "EUR", 5),
    ("Hamburg", 53.5511, 9.9937, 1, "EUR", 4), ("Paris", 48.8566, 2.3522, 1, "EUR", 8),
    ("Lyon", 45.7640, 4.8357, 1, "EUR", 3), ("Madrid", 40.4168, -3.7038, 1, "EUR", 5),
    ("Barcelona", 41.3874, 2.1686, 1, "EUR", 4), ("Rome", 41.9028, 12.4964, 1, "EUR", 4),
    ("Milan", 45.4642, 9.1900, 1, "EUR", 4), ("Amsterdam", 52.3676, 4.9041, 1, "EUR", 4),
    ("Vienna", 48.2082, 16.3738, 1, "EUR", 3), ("Lisbon", 38.7223, -9.1393, 0, "EUR", 2),
    ("Dublin", 53.3498, -6.2603, 0, "EUR", 2), ("London", 51.5074, -0.1278, 0, "GBP", 8),
    ("Manchester", 53.4808, -2.2426, 0, "GBP", 3), ("Zurich", 47.3769, 8.5417, 1, "CHF", 2),
    ("Stockholm", 59.3293, 18.0686, 1, "SEK", 2), ("Warsaw", 52.2297, 21.0122, 1, "PLN", 3),
    ("New York", 40.7128, -74.0060, -5, "USD", 4), ("Chicago", 41.8781, -87.6298, -6, "USD", 2),
    ("San Francisco", 37.7749, -122.4194, -8, "USD", 2), ("Toronto", 43.6532, -79.3832, -5, "CAD", 2),
    ("Mexico City", 19.4326, -99.1332, -6, "MXN", 1), ("Sao Paulo", -23.5505, -46.6333, -3, "BRL", 1),
    ("Tokyo", 35.6762, 139.6503, 9, "JPY", 2), ("Singapore", 1.3521, 103.8198, 8, "SGD", 1),
    ("Sydney", -33.8688, 151.2093, 10, "AUD", 1), ("Mumbai", 19.0760, 72.8777, 5.5, "INR", 1),
    ("Dubai", 25.2048, 55.2708, 4, "AED", 1), ("Johannesburg", -26.2041, 28.0473, 2, "ZAR", 1),
    ("Istanbul", 41.0082, 28.9784, 3, "TRY", 1),
)
# units of the currency per EUR (rounded), and decimals used for amounts
FX = {"EUR": 1.0, "GBP": 0.85, "CHF": 0.95, "SEK": 11.5, "PLN": 4.3, "USD": 1.08, "CAD": 1.47,
      "MXN": 18.5, "BRL": 5.5, "JPY": 160.0, "SGD": 1.45, "AUD": 1.65, "INR": 90.0, "AED": 4.0,
      "ZAR": 20.0, "TRY": 35.0}
ZERO_DECIMAL = {"JPY"}

# ISO 18245 MCCs at physical merchants: code, share of merchants, amount factor vs the card's typical
MCC_PHYSICAL = (("5411", 0.20, 1.0), ("5812", 0.12, 1.3), ("5814", 0.11, 0.35), ("5541", 0.07, 1.4),
                ("5912", 0.06, 0.6), ("5311", 0.05, 1.8), ("5651", 0.05, 1.6), ("4111", 0.05, 0.15),
                ("5499", 0.08, 0.3), ("5999", 0.05, 0.8), ("5732", 0.03, 2.5), ("5944", 0.01, 3.0),
                ("7011", 0.01, 3.0), ("4121", 0.04, 0.6), ("5942", 0.03, 0.6), ("5200", 0.04, 1.8))
MCC_ONLINE = (("5815", 0.18, 0.3), ("5818", 0.08, 0.8), ("5969", 0.10, 1.0), ("5999", 0.18, 1.2),
              ("5732", 0.10, 2.5), ("4899", 0.10, 0.4), ("4722", 0.05, 3.0), ("5045", 0.05, 2.5),
              ("4829", 0.04, 2.0), ("7995", 0.02, 1.0), ("5311", 0.10, 1.5))
_CT_MCCS = {"5815", "5818", "5969", "4899", "5999"}          # card testing: cheap digital goods
_ATO_MCCS = {"5732", "5045", "4829", "5944", "5999", "4722"}  # resaleable / cash-like
_HIGH_MCCS = {"5732", "5944", "5311", "7011"}


def _plan_fraud(rng, n_events: int, span_ms: int) -> list:
    """[(pattern, n_events_of_incident)] with the total under 1 % of n_events."""
    if n_events < 1000 or span_ms < 3 * HOUR_MS:
        return []
    budget = FRAUD_TARGET_RATE * n_events
    shares = {"card_testing": (0.42, 12.5), "impossible_travel": (0.13, 1.5),
              "account_takeover": (0.27, 4.5), "high_amount": (0.18, 1.0)}
    plan = []
    for p, (share, mean_size) in shares.items():
        k = int(budget * share / mean_size + 0.5)
        if n_events >= 4000:
            k = max(k, 1)
        for _ in range(k):
            size = {"card_testing": lambda: int(rng.integers(5, 21)),
                    "impossible_travel": lambda: int(rng.integers(1, 3)),
                    "account_takeover": lambda: int(rng.integers(3, 7)),
                    "high_amount": lambda: 1}[p]()
            plan.append((p, size))
    while plan and sum(s for _, s in plan) >= 0.01 * n_events:
        biggest = max(range(len(plan)), key=lambda i: plan[i][1])
        plan.pop(biggest)
    return plan


def generate_payments(n_events: int, seed: int = 0, start_ms: int = DEFAULT_START_MS, days: float = 1.0,
                      n_cards: Optional[int] = None, out_of_order: float = 0.0, late: float = 0.0,
                      malformed: float = 0.0, max_disorder_ms: int = 5000, late_by_ms: int = 600_000,
                      progress: Progress = None) -> pd.DataFrame:
    """Card payment authorisations with planted, labelled fraud (< 1 % of events).

    ``n_cards`` defaults to n_events // 20 (at least 20). Amounts are in the card's billing
    (home) currency. Card-present payments carry the merchant's location and no device;
    online payments carry the card's device and the device's location.
    """
    _check_args(n_events, seed, days, out_of_order, late, malformed, max_disorder_ms, late_by_ms,
                start_ms)
    rng = np.random.default_rng(seed)
    span_ms = int(round(days * DAY_MS))
    n_cards = int(n_cards) if n_cards else max(20, n_events // 20)
    if n_cards <= 0:
        raise ValueError(f"n_cards must be > 0, got {n_cards}")
    step = (lambda s, f: progress(s, f)) if progress else (lambda s, f: None)
    step("cards", 0.0)

    # cities ------------------------------------------------------------------------------
    c_lat = np.array([c[1] for c in CITIES])
    c_lon = np.array([c[2] for c in CITIES])
    c_utc = np.array([c[3] for c in CITIES], dtype=float)
    c_cur = [c[4] for c in CITIES]
    c_dec = np.array([0 if c[4] in ZERO_DECIMAL else 2 for c in CITIES])
    c_fx = np.array([FX[c[4]] for c in CITIES])
    c_w = np.array([c[5] for c in CITIES], dtype=float)
    c_w /= c_w.sum()
    n_city = len(CITIES)
    city_km = haversine_km(c_lat[:, None], c_lon[:, None], c_lat[None, :], c_lon[None, :])

    # cards -------------------------------------------------------------------------------
    card_city = rng.choice(n_city, n_cards, p=c_w)
    cos_lat = np.cos(np.radians(c_lat[card_city]))
    home_lat = c_lat[card_city] + rng.normal(0, 0.05, n_cards)
    home_lon = c_lon[card_city] + rng.normal(0, 0.05, n_cards) / cos_lat
    card_mu = np.log(30.0) + rng.normal(0, 0.5, n_cards) + np.log(c_fx[card_city])
    card_sigma = rng.uniform(0.45, 0.8, n_cards)
    activity = rng.gamma(1.5, 1.0, n_cards)
    has_device = rng.random(n_cards) < 0.65
    online_share = rng.uniform(0.15, 0.6, n_cards) * has_device
    n_ring = 4
    n_dev_ids = n_cards + n_ring + 4096 + n_events // 50
    dev_numbers = rng.permutation(n_dev_ids)            # device ids do not reveal the card
    device_ids = [f"d-{i:08d}" for i in dev_numbers]
    card_device = np.where(has_device, np.arange(n_cards), -1)
    card_ids = _ids("c-", n_cards, max(6, len(str(n_cards - 1))))

    # merchants ---------------------------------------------------------------------------
    n_phys = max(400, n_cards // 3)
    per_city = np.maximum(15, np.round(n_phys * c_w)).astype(int)
    m_lo = np.concatenate([[0], np.cumsum(per_city)[:-1]])
    n_phys = int(per_city.sum())
    n_on = max(40, n_cards // 40)
    n_merch = n_phys + n_on
    m_city = np.concatenate([np.repeat(np.arange(n_city), per_city), np.full(n_on, -1)])
    m_cos = np.cos(np.radians(c_lat[m_city[:n_phys]]))
    m_lat = np.concatenate([c_lat[m_city[:n_phys]] + rng.normal(0, 0.035, n_phys), np.full(n_on, np.nan)])
    m_lon = np.concatenate([c_lon[m_city[:n_phys]] + rng.normal(0, 0.035, n_phys) / m_cos,
                            np.full(n_on, np.nan)])
    mcc_codes = np.array(sorted({c for c, _, _ in MCC_PHYSICAL + MCC_ONLINE}), dtype=object)
    code_ix = {c: i for i, c in enumerate(mcc_codes)}
    mcc_factor = np.ones(len(mcc_codes))
    for c, _, f in MCC_PHYSICAL + MCC_ONLINE:
        mcc_factor[code_ix[c]] = f
    pw = np.array([w for _, w, _ in MCC_PHYSICAL]); pw /= pw.sum()
    ow = np.array([w for _, w, _ in MCC_ONLINE]); ow /= ow.sum()
    m_mcc = np.concatenate([
        np.array([code_ix[c] for c, _, _ in MCC_PHYSICAL])[rng.choice(len(MCC_PHYSICAL), n_phys, p=pw)],
        np.array([code_ix[c] for c, _, _ in MCC_ONLINE])[rng.choice(len(MCC_ONLINE), n_on, p=ow)]])
    merchant_ids = [f"m-{i:06d}" for i in rng.permutation(n_merch)]

    # favourites: up to 6 per card, popularity-skewed (low ranks are the big stores) ------
    n_fav = rng.integers(2, 7, n_cards)
    lo, size = m_lo[card_city][:, None], per_city[card_city][:, None]
    fav_phys = lo + np.floor(size * rng.random((n_cards, 6)) ** 2).astype(np.int64)
    fav_on = n_phys + np.floor(n_on * rng.random((n_cards, 6)) ** 2).astype(np.int64)

    # fraud plan first: legit events fill the rest ------------------------------------------
    plan = _plan_fraud(rng, n_events, span_ms)
    n_fraud = sum(s for _, s in plan)
    n_legit = n_events - n_fraud
    step("legit events", 0.1)

    ev_card = rng.choice(n_cards, n_legit, p=activity / activity.sum())
    ev_online = rng.random(n_legit) < online_share[ev_card]
    ev_fav = rng.random(n_legit) < 0.8
    j = np.floor(rng.random(n_legit) * n_fav[ev_card]).astype(np.int64)
    u = rng.random(n_legit) ** 1.5
    home = card_city[ev_card]
    rand_phys = m_lo[home] + np.floor(u * per_city[home]).astype(np.int64)
    rand_on = n_phys + np.floor(u * n_on).astype(np.int64)
    ev_merch = np.where(ev_online, np.where(ev_fav, fav_on[ev_card, j], rand_on),
                        np.where(ev_fav, fav_phys[ev_card, j], rand_phys))
    ev_t = _diurnal_times(rng, n_legit, c_utc[home], start_ms, span_ms, _payment_profile)
    ev_lat = home_lat[ev_card] + rng.normal(0, 0.01, n_legit)   # device geolocation (online)
    ev_lon = home_lon[ev_card] + rng.normal(0, 0.01, n_legit)

    # legitimate travellers: move to another city, arriving no faster than a plane ---------
    traveller = rng.random(n_cards) < 0.015
    dest = (card_city + rng.integers(1, n_city, n_cards)) % n_city
    trip_km = city_km[card_city, dest]
    flight_ms = ((trip_km / 800.0 + 1.5) * HOUR_MS).astype(np.int64)
    room = span_ms - 2 * flight_ms
    traveller &= room > 2 * HOUR_MS
    t_dep = np.floor(rng.random(n_cards) * np.maximum(room, 1)).astype(np.int64)
    tr = traveller[ev_card]
    in_flight = tr & (ev_t >= t_dep[ev_card]) & (ev_t < t_dep[ev_card] + flight_ms[ev_card])
    ev_t = np.where(in_flight, ev_t + flight_ms[ev_card], ev_t)
    abroad = tr & (ev_t >= t_dep[ev_card] + flight_ms[ev_card])
    dcity = dest[ev_card]
    abroad_merch = np.where(ev_online, rand_on, m_lo[dcity] + np.floor(u * per_city[dcity]).astype(np.int64))
    ev_merch = np.where(abroad, abroad_merch, ev_merch)
    ev_lat = np.where(abroad, c_lat[dcity] + rng.normal(0, 0.03, n_legit), ev_lat)
    ev_lon = np.where(abroad, c_lon[dcity] + rng.normal(0, 0.03, n_legit), ev_lon)
    phys = ~ev_online
    ev_lat = np.where(phys, m_lat[ev_merch], ev_lat)
    ev_lon = np.where(phys, m_lon[ev_merch], ev_lon)

    ev_amount = np.exp(card_mu[ev_card] + card_sigma[ev_card] * rng.normal(0, 1, n_legit)) \
        * mcc_factor[m_mcc[ev_merch]]
    ev_device = np.where(ev_online, card_device[ev_card], -1)
    step("fraud", 0.4)

    # plant fraud ---------------------------------------------------------------------------
    by_card = np.argsort(ev_card, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(ev_card, minlength=n_cards))])
    counts = np.diff(starts)
    pool = np.flatnonzero((counts >= 5) & ~traveller)
    if pool.size < len(plan):
        pool = np.flatnonzero((counts >= 1) & ~traveller)
    if pool.size == 0 and plan:
        pool = np.flatnonzero(counts >= 1)
    victims = rng.choice(pool, len(plan), replace=len(plan) > pool.size) if plan else []
    on_ix = np.arange(n_phys, n_merch)
    ct_merch = on_ix[np.isin(mcc_codes[m_mcc[on_ix]], list(_CT_MCCS))]
    ato_merch = on_ix[np.isin(mcc_codes[m_mcc[on_ix]], list(_ATO_MCCS))]
    high_merch_ok = np.isin(mcc_codes[m_mcc], list(_HIGH_MCCS))
    next_dev = n_cards + n_ring

    f_card, f_t, f_merch, f_lat, f_lon, f_amount, f_dev, f_pat = ([] for _ in range(8))
    incidents = {p: 0 for p in FRAUD_PATTERNS}

    def emit(card, t, merch, lat, lon, amount, dev, pattern):
        f_card.append(card); f_t.append(int(t)); f_merch.append(int(merch)); f_lat.append(float(lat))
        f_lon.append(float(lon)); f_amount.append(float(amount)); f_dev.append(int(dev))
        f_pat.append(FRAUD_PATTERNS.index(pattern) + 1)

    def far_city(home_c, min_km):
        far = np.flatnonzero(city_km[home_c] >= min_km)
        if far.size == 0:
            far = np.array([int(np.argmax(city_km[home_c]))])
        return int(rng.choice(far))

    for (pattern, size), v in zip(plan, victims):
        v = int(v)
        mine = by_card[starts[v]:starts[v + 1]]
        med = float(np.median(ev_amount[mine])) if mine.size else float(np.exp(card_mu[v]))
        fx = c_fx[card_city[v]]
        incidents[pattern] += 1
        if pattern == "card_testing":
            dur = rng.uniform(60_000, 8 * MINUTE_MS)
            t0 = rng.integers(0, span_ms - 10 * MINUTE_MS)
            offs = np.sort(rng.uniform(0, dur, size)); offs[0] = 0
            k = int(rng.integers(2, min(6, size) + 1))
            shops = rng.choice(ct_merch, k, replace=k > ct_merch.size)
            which = np.concatenate([np.arange(k), rng.integers(0, k, size - k)])
            rng.shuffle(which)
            if rng.random() < 0.7:
                dev = next_dev; next_dev += 1          # a fresh device
            else:
                dev = n_cards + int(rng.integers(0, n_ring))  # a fraud ring's device, many cards
            fc = far_city(card_city[v], 300)
            flat, flon = c_lat[fc] + rng.normal(0, 0.03), c_lon[fc] + rng.normal(0, 0.03)
            for o, w in zip(offs, which):
                amt = float(rng.choice([0.5, 0.99, 1.0, 1.0, 1.5, 2.0])) + float(rng.integers(0, 50)) / 100
                emit(v, t0 + int(o), shops[w], flat, flon, amt * fx, dev, pattern)
        elif pattern == "impossible_travel":
            cand = mine[ev_t[mine] <= span_ms - HOUR_MS]
            if cand.size == 0:  # pragma: no cover - plan needs >= 1000 events over >= 3 h
                cand = mine[np.argsort(ev_t[mine])[:1]]
            e0 = int(rng.choice(cand))
            t = int(ev_t[e0]) + int(rng.integers(5 * MINUTE_MS, 45 * MINUTE_MS))
            fc = far_city(card_city[v], 2500)
            for _ in range(size):
                m = int(m_lo[fc] + rng.integers(0, per_city[fc]))
                emit(v, t, m, m_lat[m], m_lon[m], med * rng.uniform(1.5, 6.0), -1, pattern)
                t += int(rng.integers(3 * MINUTE_MS, 15 * MINUTE_MS))
        elif pattern == "account_takeover":
            dur = rng.uniform(40, 110) * MINUTE_MS
            t0 = int(rng.integers(0, span_ms - 2 * HOUR_MS))
            offs = np.sort(rng.uniform(0, dur, size)); offs[0] = 0
            used = set(ev_merch[mine].tolist())
            fresh = np.array([m for m in ato_merch if m not in used]) if used else ato_merch
            if fresh.size == 0:
                fresh = np.array([m for m in range(n_phys, n_merch) if m not in used])
            shops = rng.choice(fresh, size, replace=size > fresh.size)
            dev = next_dev; next_dev += 1
            fc = far_city(card_city[v], 0) if rng.random() < 0.5 else \
                int((card_city[v] + rng.integers(1, n_city)) % n_city)
            flat, flon = c_lat[fc] + rng.normal(0, 0.03), c_lon[fc] + rng.normal(0, 0.03)
            for o, m in zip(offs, shops):
                emit(v, t0 + int(o), m, flat, flon, med * rng.uniform(4.0, 12.0), dev, pattern)
        else:  # high_amount
            base = int(ev_t[rng.choice(mine)]) if mine.size else int(rng.integers(0, span_ms))
            t = int(np.clip(base + rng.integers(-3 * HOUR_MS, 3 * HOUR_MS), 0, span_ms - 1))
            hc = card_city[v]
            if card_device[v] >= 0 and rng.random() < 0.5:
                opts = np.flatnonzero(high_merch_ok[n_phys:]) + n_phys
                m = int(rng.choice(opts)) if opts.size else int(rng.integers(n_phys, n_merch))
                lat, lon, dev = home_lat[v] + rng.normal(0, 0.01), home_lon[v] + rng.normal(0, 0.01), card_device[v]
            else:
                opts = np.flatnonzero(high_merch_ok[m_lo[hc]:m_lo[hc] + per_city[hc]]) + m_lo[hc]
                m = int(rng.choice(opts)) if opts.size else int(m_lo[hc] + rng.integers(0, per_city[hc]))
                lat, lon, dev = m_lat[m], m_lon[m], -1
            top = float(ev_amount[mine].max()) if mine.size else med
            emit(v, t, m, lat, lon, max(med * rng.uniform(15.0, 50.0), top * rng.uniform(1.5, 3.0)), dev,
                 pattern)
    assert next_dev <= n_dev_ids
    assert len(f_t) == n_fraud, (len(f_t), n_fraud)
    assert n_fraud < 0.01 * n_events, "fraud must stay under 1 % of events"
    step("assemble", 0.7)

    card = np.concatenate([ev_card, np.array(f_card, dtype=np.int64)])
    merch = np.concatenate([ev_merch, np.array(f_merch, dtype=np.int64)])
    amount = np.concatenate([ev_amount, np.array(f_amount)])
    decimals = c_dec[card_city[card]]
    amount = np.maximum(np.round(amount * 10.0 ** decimals) / 10.0 ** decimals, 0.01)
    pat = np.concatenate([np.zeros(n_legit, np.int8), np.array(f_pat, dtype=np.int8)])
    cols = {
        "event_time": start_ms + np.concatenate([ev_t, np.array(f_t, dtype=np.int64)]),
        "card_id": _Codes(card_ids, card),
        "merchant_id": _Codes(merchant_ids, merch),
        "mcc": _Codes(mcc_codes, m_mcc[merch]),
        "amount": amount,
        "currency": _Codes(c_cur, card_city[card]),
        "lat": np.clip(np.round(np.concatenate([ev_lat, np.array(f_lat)]), 5), -90, 90),
        "lon": np.clip(np.round(np.concatenate([ev_lon, np.array(f_lon)]), 5), -180, 180),
        "device_id": _Codes(device_ids, np.concatenate([ev_device, np.array(f_dev, dtype=np.int64)])),
        "is_fraud": pat > 0,
        "fraud_pattern": _Codes(FRAUD_PATTERNS, pat.astype(np.int64) - 1),
    }
    attrs = dict(domain="fraud", n_cards=n_cards, n_merchants=n_merch, fraud_incidents=incidents,
                 n_travellers=int(traveller.sum()))
    return _finish(PAYMENT, "p-", cols, seed, pat == 0, out_of_order, late, malformed, max_disorder_ms,
                   late_by_ms, attrs, progress)
