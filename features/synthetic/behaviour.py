"""Synthetic shopper behaviour (recsys), see features.synthetic."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from features.contracts import BEHAVIOUR
from features.synthetic._common import (
    DAY_MS, DEFAULT_START_MS, Progress, _Codes, _check_args, _diurnal_times, _finish, _ids,
    _shopping_profile)

# --------------------------------------------------------------------------------------------
# recsys: shopper behaviour
# --------------------------------------------------------------------------------------------
# category, share of the catalogue, median price (EUR)
CATEGORIES = (("electronics", 0.08, 120.0), ("computers", 0.04, 450.0), ("phones", 0.03, 350.0),
              ("books", 0.12, 15.0), ("fashion", 0.12, 40.0), ("shoes", 0.05, 70.0),
              ("beauty", 0.07, 20.0), ("home", 0.08, 35.0), ("kitchen", 0.06, 30.0),
              ("garden", 0.04, 25.0), ("sports", 0.06, 45.0), ("toys", 0.06, 25.0),
              ("grocery", 0.06, 6.0), ("pets", 0.04, 18.0), ("automotive", 0.03, 30.0),
              ("jewelry", 0.02, 150.0), ("music", 0.02, 12.0), ("games", 0.02, 45.0))
P_CART = 0.10      # of views
P_PURCHASE = 0.30  # of carts -> 3 % of views


def generate_behaviour(n_events: int, seed: int = 0, start_ms: int = DEFAULT_START_MS, days: float = 1.0,
                       n_users: Optional[int] = None, n_items: Optional[int] = None,
                       out_of_order: float = 0.0, late: float = 0.0, malformed: float = 0.0,
                       max_disorder_ms: int = 5000, late_by_ms: int = 600_000,
                       progress: Progress = None) -> pd.DataFrame:
    """Shopper sessions: views, ~10 % of them carted, ~3 % purchased (of views).

    ``n_users`` defaults to n_events // 40, ``n_items`` to n_events // 50 (at least 10 / 50).
    About one session in five has no session_hint (client without a session id).
    """
    _check_args(n_events, seed, days, out_of_order, late, malformed, max_disorder_ms, late_by_ms,
                start_ms)
    rng = np.random.default_rng(seed)
    span_ms = int(round(days * DAY_MS))
    n_users = int(n_users) if n_users else max(10, n_events // 40)
    n_items = int(n_items) if n_items else max(50, n_events // 50)
    if n_users <= 0 or n_items <= 0:
        raise ValueError("n_users and n_items must be > 0")
    step = (lambda s, f: progress(s, f)) if progress else (lambda s, f: None)
    step("catalogue", 0.0)

    n_cat = len(CATEGORIES)
    cat_names = [c[0] for c in CATEGORIES]
    cat_share = np.array([c[1] for c in CATEGORIES]); cat_share /= cat_share.sum()
    cat_price = np.array([c[2] for c in CATEGORIES])
    # items: contiguous per category, rank 0 the most popular; Zipf(1.1) inside the category
    per_cat = np.maximum(1, np.round(cat_share * n_items)).astype(int)
    n_items = int(per_cat.sum())
    i_lo = np.concatenate([[0], np.cumsum(per_cat)[:-1]])
    item_cat = np.repeat(np.arange(n_cat), per_cat)
    item_price = cat_price[item_cat] * np.exp(rng.normal(0, 0.55, n_items))
    item_price = np.where(item_price >= 2, np.round(item_price) - 0.01, np.round(item_price, 2))
    item_price = np.maximum(item_price, 0.49)
    item_ids = [f"i-{i:07d}" for i in rng.permutation(n_items)]
    zipf_cdf = []
    for c in range(n_cat):
        w = 1.0 / np.arange(1, per_cat[c] + 1) ** 1.1
        zipf_cdf.append(np.cumsum(w) / w.sum())
    # users: peaked category tastes, heterogeneous activity and buying propensity
    prefs = rng.gamma(0.35, 1.0, (n_users, n_cat)) * cat_share
    prefs /= prefs.sum(axis=1, keepdims=True)
    pref_cdf = np.cumsum(prefs, axis=1)
    activity = rng.lognormal(0, 1.0, n_users)
    buyer = rng.lognormal(0, 0.5, n_users)
    buyer /= buyer.mean()
    user_ids = _ids("u-", n_users, max(6, len(str(n_users - 1))))

    # sessions and their views ---------------------------------------------------------
    step("sessions", 0.1)
    funnel = 1 + P_CART + P_CART * P_PURCHASE
    n_views = int(n_events / funnel * 1.03) + 50
    lengths = rng.geometric(1 / 7.0, int(n_views / 7.0 * 1.2) + 20)  # views per session, mean 7
    cum = np.cumsum(lengths)
    n_sess = int(np.searchsorted(cum, n_views)) + 1
    if n_sess > lengths.size:  # pragma: no cover
        extra = rng.geometric(1 / 7.0, n_sess - lengths.size + 100)
        lengths = np.concatenate([lengths, extra]); cum = np.cumsum(lengths)
        n_sess = int(np.searchsorted(cum, n_views)) + 1
    lengths = lengths[:n_sess].copy()
    lengths[-1] -= int(cum[n_sess - 1] - n_views)
    sess_user = rng.choice(n_users, n_sess, p=activity / activity.sum())
    sess_hint_ok = rng.random(n_sess) >= 0.2
    sess_ids = [f"sess-{x:012x}" for x in rng.integers(0, 2 ** 48, n_sess)]
    v_sess = np.repeat(np.arange(n_sess), lengths)
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    gaps = rng.exponential(35_000.0, n_views) + rng.lognormal(8.5, 0.6, n_views)  # ms, dwell
    gaps[first] = 0
    csum = np.cumsum(gaps)
    offs = csum - np.repeat(csum[first], lengths)
    dur = offs[np.cumsum(lengths) - 1]
    s_start = _diurnal_times(rng, n_sess, 1.0, start_ms, span_ms, _shopping_profile).astype(np.float64)
    scale = np.minimum(1.0, (span_ms - 1) / np.maximum(dur, 1.0))   # squeeze sessions longer than span
    s_start = np.clip(s_start, 0, np.maximum(span_ms - 1 - dur * scale, 0))
    v_t = np.floor(np.repeat(s_start, lengths) + offs * np.repeat(scale, lengths)).astype(np.int64)
    v_user = sess_user[v_sess]

    # what they look at: a session intent category (70 %) or any of their tastes -------------
    step("views", 0.25)
    intent = (pref_cdf[sess_user] < rng.random(n_sess)[:, None]).sum(axis=1)
    any_cat = (pref_cdf[v_user] < rng.random(n_views)[:, None]).sum(axis=1)
    v_cat = np.minimum(np.where(rng.random(n_views) < 0.7, intent[v_sess], any_cat), n_cat - 1)
    v_item = np.empty(n_views, np.int64)
    uz = rng.random(n_views)
    for c in range(n_cat):
        sel = v_cat == c
        v_item[sel] = i_lo[c] + np.minimum(np.searchsorted(zipf_cdf[c], uz[sel]), per_cat[c] - 1)

    # funnel ---------------------------------------------------------------------------
    p_cart = np.clip(P_CART * buyer[v_user], 0, 0.6)
    carted = rng.random(n_views) < p_cart
    bought = carted & (rng.random(n_views) < P_PURCHASE)
    # trim to exactly n_events by removing leaves: plain views, then purchases, carts, views
    total = n_views + int(carted.sum()) + int(bought.sum())
    keep = np.ones(n_views, bool)
    excess = total - n_events
    for layer in ("view", "purchase", "cart", "view"):
        if excess <= 0:
            break
        if layer == "view":
            cand = np.flatnonzero(keep & ~carted)
        elif layer == "purchase":
            cand = np.flatnonzero(keep & bought)
        else:
            cand = np.flatnonzero(keep & carted & ~bought)
        drop = rng.choice(cand, min(excess, cand.size), replace=False) if cand.size else cand
        if layer == "view":
            keep[drop] = False
        elif layer == "purchase":
            bought[drop] = False
        else:
            carted[drop] = False
        excess -= drop.size
    assert excess <= 0
    if excess < 0:  # pragma: no cover - oversampling makes this unreachable
        raise AssertionError("behaviour generator undershot")

    ci = np.flatnonzero(keep & carted)
    bi = np.flatnonzero(keep & bought)
    vi = np.flatnonzero(keep)
    cart_t = np.zeros(n_views, np.int64)
    cart_t[ci] = v_t[ci] + rng.integers(5_000, 90_000, ci.size)       # cart 5-90 s after the view
    c_t = cart_t[ci]
    b_t = cart_t[bi] + np.floor(rng.exponential(120_000, bi.size)).astype(np.int64) + 10_000
    step("assemble", 0.6)
    src = np.concatenate([vi, ci, bi])
    t = np.minimum(np.concatenate([v_t[vi], c_t, b_t]), span_ms - 1)
    action = np.concatenate([np.full(vi.size, 0), np.full(ci.size, 1), np.full(bi.size, 2)])
    item = v_item[src]
    cols = {
        "event_time": start_ms + t,
        "user_id": _Codes(user_ids, v_user[src]),
        "session_hint": _Codes(sess_ids, np.where(sess_hint_ok[v_sess[src]], v_sess[src], -1)),
        "item_id": _Codes(item_ids, item),
        "category": _Codes(cat_names, item_cat[item]),
        "action": _Codes(("view", "cart", "purchase"), action),
        "price": item_price[item],
    }
    assert len(t) == n_events
    attrs = dict(domain="recsys", n_users=n_users, n_items=n_items, n_sessions=n_sess)
    return _finish(BEHAVIOUR, "b-", cols, seed, np.ones(n_events, bool), out_of_order, late, malformed,
                   max_disorder_ms, late_by_ms, attrs, progress)
