"""Parsing the bench command's option values and filling its size defaults."""
from __future__ import annotations

import re
from typing import Sequence

from bench.settings import LOW_LATENCY, QUICK_SECTIONS, RESULTS_DIR, SECTIONS


def parse_rates(text: str) -> list:
    """Producer rates from "1000,5000" (events/s, each > 0).

    >>> parse_rates("1000, 2k,5000")
    [1000, 2000, 5000]
    """
    rates = []
    for part in text.split(","):
        p = part.strip().lower()
        if not p:
            continue
        mult = 1000 if p.endswith("k") else 1
        try:
            r = int(float(p.rstrip("k")) * mult)
        except ValueError:
            raise ValueError(f"bad rate {part!r} in --rates (use e.g. 1000,5000)") from None
        if r <= 0:
            raise ValueError(f"rates must be > 0, got {part!r}")
        rates.append(r)
    if not rates:
        raise ValueError("--rates needs at least one rate")
    return rates


def parse_variant(text: str) -> tuple:
    """A latency option set: "NAME" or "NAME:KEY=VALUE,KEY=VALUE" -> (name, {key: value}).

    >>> parse_variant("small-bundles:python.fn-execution.bundle.time=5,python.fn-execution.bundle.size=100")
    ('small-bundles', {'python.fn-execution.bundle.time': '5', 'python.fn-execution.bundle.size': '100'})
    >>> parse_variant("default")
    ('default', {})
    """
    name, _, opts = text.partition(":")
    name = name.strip()
    if not name or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"bad --latency-variant {text!r}: use NAME or NAME:KEY=VALUE[,KEY=VALUE...]")
    out = {}
    for kv in filter(None, (s.strip() for s in opts.split(","))):
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise ValueError(f"bad option {kv!r} in --latency-variant {text!r}: use KEY=VALUE")
        out[k.strip()] = v.strip()
    return name, out


def parse_options(pairs: Sequence[str]) -> dict:
    """-D KEY=VALUE pairs -> dict.

    >>> parse_options(["a.b=1", "c=x=y"])
    {'a.b': '1', 'c': 'x=y'}
    """
    out = {}
    for kv in pairs:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            raise ValueError(f"-D takes KEY=VALUE, got {kv!r}")
        out[k] = v
    return out


def resolve_defaults(args) -> None:
    """Fill the size options the user left unset, from --quick or the full defaults (in place)."""
    quick = bool(args.quick)
    defaults = dict(events=20_000 if quick else 200_000, cards=2_000 if quick else 20_000,
                    backfill_events=50_000 if quick else 1_000_000,
                    rates="1000,2000" if quick else "250,1000,2000,5000", latency_seconds=6.0 if quick else 20.0,
                    warmup_seconds=10.0 if quick else 30.0,
                    delivery="at-least-once" if quick else "at-least-once,exactly-once",
                    sections=",".join(QUICK_SECTIONS if quick else SECTIONS), quiet_wait=0.0 if quick else 240.0,
                    out=str(RESULTS_DIR / "quick") if quick else str(RESULTS_DIR))
    defaults["ablations"] = not quick
    for k, v in defaults.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    if not args.latency_variant:
        args.latency_variant = ["default"] if quick else [
            "default", "low-latency:" + ",".join(f"{k}={v}" for k, v in LOW_LATENCY.items())]
    bad = [s for s in args.sections.split(",") if s.strip() and s.strip() not in SECTIONS]
    if bad:
        raise ValueError(f"unknown --sections {bad}; choose from {', '.join(SECTIONS)}")
    for d in args.delivery.split(","):
        if d.strip() not in ("at-least-once", "exactly-once"):
            raise ValueError(f"--delivery takes at-least-once and/or exactly-once, got {d!r}")
    for name in ("events", "cards", "backfill_events"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0")
