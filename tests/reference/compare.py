"""Cell-by-cell comparison of feature rows, shared by the engine parity tests."""
from __future__ import annotations

import math


def _null(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def differences(got: dict, want_rows, columns) -> list:
    """Every (event_id, column, got, want) that differs, exactly, nulls equal to nulls; a row of
    ``want_rows`` absent from ``got`` (event_id -> row) is (event_id, "missing")."""
    out = []
    for w in want_rows:
        g = got.get(w["event_id"])
        if g is None:
            out.append((w["event_id"], "missing"))
            continue
        for c in columns:
            a, b = g[c], w[c]
            if _null(a) != _null(b) or (not _null(a) and a != b):
                out.append((w["event_id"], c, a, b))
    return out
