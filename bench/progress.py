"""Progress output of the bench command: step headers on stdout, a bar on stderr."""
from __future__ import annotations

import sys
import time
from typing import Optional


class Progress:
    """Step headers on stdout; a bar on stderr (tqdm on a terminal, a line every 15 s otherwise)."""

    def __init__(self, total_steps: int, quiet: bool = False):
        self.total = total_steps
        self.n = 0
        self.quiet = quiet
        self.t0 = time.monotonic()

    def step(self, text: str) -> None:
        self.n += 1
        el = time.monotonic() - self.t0
        print(f"[{self.n}/{self.total}] {text}  (+{el:.0f} s)", flush=True)

    def info(self, text: str) -> None:
        print(f"    {text}", flush=True)

    def bar(self, desc: str, total: Optional[int], unit: str = " events"):
        return _Bar(desc, total, unit, self.quiet)


class _Bar:
    def __init__(self, desc, total, unit, quiet):
        self.desc, self.total, self.unit, self.n = desc, total, unit, 0
        self.t0 = self.last_print = time.monotonic()
        self.tqdm = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.tqdm = tqdm(total=total, desc=f"    {desc}", unit=unit, unit_scale=True, leave=False,
                             file=sys.stderr, dynamic_ncols=True)
        self.quiet = quiet

    def set(self, n: int, extra: str = "") -> None:
        n = int(n)
        if self.tqdm is not None:
            self.tqdm.update(max(0, n - self.n))
            if extra:
                self.tqdm.set_postfix_str(extra, refresh=False)
        elif not self.quiet and time.monotonic() - self.last_print >= 15:
            self.last_print = time.monotonic()
            el = time.monotonic() - self.t0
            if self.total:
                sys.stderr.write(f"    {self.desc}: {100 * n / self.total:.0f}% {n:,}/{self.total:,}{self.unit} "
                                 f"after {el:.0f} s {extra}\n")
            else:
                sys.stderr.write(f"    {self.desc}: running for {el:.0f} s {extra}\n")
            sys.stderr.flush()
        self.n = max(self.n, n)

    def close(self) -> None:
        if self.tqdm is not None:
            self.tqdm.close()
