"""The progress display of a run: one line that updates in place on a terminal (at most ten
times a second), one line per variant and dtype otherwise (logs, CI), always on stderr."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, stream, total: int):
        self.stream = sys.stderr if stream is True else stream
        self.total, self.k = total, 0
        self.tty = bool(self.stream is not None and getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.answers = self.divergent = 0
        self.where = self.what = ""

    def start(self, variant: str, dtype: str) -> None:
        self.k += 1
        self.where, self.what = f"{variant} {dtype}", "shared cases"
        self._draw(force=True)

    def phase(self, what: str) -> None:
        self.what = what
        self._draw()

    def answer(self, divergent: bool) -> None:
        self.answers += 1
        self.divergent += divergent
        self._draw()

    def _eta(self) -> str:
        elapsed = time.perf_counter() - self.t0
        if self.k <= 1:
            return f"{elapsed:.0f} s"
        rate = elapsed / (self.k - 1)
        return f"{elapsed:.0f} s, ~{rate * (self.total - self.k + 1):.0f} s left"

    def _draw(self, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.perf_counter()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        line = (f"[{self.k}/{self.total}] {self.where}: {self.what} | {self.answers} answers, "
                f"{self.divergent} divergent | {self._eta()}")
        width = 118
        self.stream.write("\r" + line[:width].ljust(width))
        self.stream.flush()

    def done(self, variant: str, dtype: str, cases: int, oracle_s: float, groups: int, oracle_errors: int) -> None:
        if self.stream is None:
            return
        text = (f"[{self.k}/{self.total}] {variant} {dtype}: {cases} cases judged by the oracle in {oracle_s:.1f} s, "
                f"{self.answers} answers so far, {groups} distinct divergences"
                + (f", {oracle_errors} oracle errors" if oracle_errors else "")
                + f" ({time.perf_counter() - self.t0:.0f} s)")
        if self.tty:
            self.stream.write("\r" + " " * 118 + "\r")
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r" + " " * 118 + "\r")
            self.stream.flush()
