"""End-of-run counts from inside the operators, without Flink accumulators (PyFlink has none).

Each Python function that counts outcomes holds a ``RunCounts``; when the operator closes (the
end of a bounded run, or a cancel) it writes its counts as one small JSON file into the run's
counts folder. The job client sums the files after ``execute()`` returns (``read_counts``).
A restarted attempt writes its own file: counts then include the work of failed attempts, and
the summary says so.
"""
from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from pathlib import Path
from typing import Optional


class RunCounts:
    """Named counters of one operator instance.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> c = RunCounts(d, "parse"); c.inc("accepted"); c.inc("dead_letter.malformed_json", 2); c.close()
    >>> read_counts(d)["parse"]
    {'accepted': 1, 'dead_letter.malformed_json': 2}
    """

    def __init__(self, directory: Optional[str], operator: str):
        self.directory = directory
        self.operator = operator
        self.counts: Counter = Counter()

    def inc(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def close(self) -> None:
        if not self.directory or not self.counts:
            return
        d = Path(self.directory)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{self.operator}-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        tmp.write_text(json.dumps({"operator": self.operator, "counts": dict(self.counts)}))
        tmp.rename(d / tmp.name[1:].replace(".tmp", ".json"))
        self.counts.clear()


def read_counts(directory: str) -> dict:
    """{operator: {counter: total}} over every file written into ``directory``."""
    out: dict = {}
    d = Path(directory)
    if not d.is_dir():
        return out
    for f in sorted(d.glob("*.json")):
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        totals = out.setdefault(data["operator"], Counter())
        totals.update(data["counts"])
    return {op: dict(sorted(c.items())) for op, c in out.items()}
