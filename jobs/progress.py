"""A progress bar for long local work (generate, backfill): tqdm on a terminal, one line in a log."""
from __future__ import annotations

import sys

PROGRESS_FROM = 200_000  # show a progress bar from this many events on


class Progress:
    """A tqdm bar on stderr (0-100 %) for big runs: generation stages, then row groups written."""

    def __init__(self, enabled: bool, what: str):
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.what = what
            self.bar = tqdm(total=100, desc=what, unit="%", file=sys.stderr, leave=False,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}")
        elif enabled:  # a log, not a terminal: one line, no carriage returns
            sys.stderr.write(f"{what} ...\n")
            sys.stderr.flush()

    def stage(self, name: str, fraction: float, lo: float = 0.0, hi: float = 70.0):
        if self.bar is not None:
            self.bar.n = int(lo + (hi - lo) * fraction)
            self.bar.set_description_str(f"{self.what} ({name})", refresh=False)
            self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()
