"""Progress of a run (a bar, plain lines for logs, or nothing) and its stop signals (Ctrl-C, SIGTERM)."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time


class Interrupted(RuntimeError):
    """The run was stopped by Ctrl-C or SIGTERM; the message says how to resume. ``signum``: the signal."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = int(signum)


class Signals:
    """Ctrl-C (SIGINT) and SIGTERM during a run (main thread only): while chunks run, the first
    signal stops after the chunk in flight and a second one stops at once (the chunk in flight
    is dropped); while the file is assembled, a signal stops at once (the parts are kept).
    Either way ``Interrupted`` says how to resume; the CLI exits 128 + the signal number."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self.stage = "running"
        self.hint = ""
        self.old: dict = {}

    def __enter__(self) -> "Signals":
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self.old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)
        self.old = {}

    @property
    def stop(self) -> bool:
        return self.signum is not None

    def _handler(self, signum, frame):
        name = signal.Signals(signum).name
        if self.stage == "assembling" or self.signum is not None:
            self.signum = signum
            what = "while assembling the file" if self.stage == "assembling" else "at once"
            raise Interrupted(f"{name}: stopped {what}{self.kept()}", signum)
        self.signum = signum
        print(f"\n{name}: stopping after the current chunk (send it again to stop now)", file=sys.stderr,
              flush=True)

    def kept(self) -> str:
        return f"; finished chunks are kept: resume with  {self.hint}" if self.hint else ""


class Progress:
    """Progress of one stage: a tqdm bar, plain lines (batch logs: at most every 10% or
    ``SWEEP_PROGRESS_EVERY`` seconds, default 60), or nothing.

    mode: True or "bar": the bar; "lines": the lines; False: nothing; None: the bar when stderr
    is a terminal, else the lines.
    """

    def __init__(self, mode, total: int, desc: str, unit: str, steps: int | None = None):
        if mode is None:
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode = {True: "bar", False: None}.get(mode, mode)
        self.total, self.desc, self.unit, self.steps = max(int(total), 0), desc, unit, steps
        self.n, self.t0, self.last_t, self.last_n = 0, time.perf_counter(), None, -1
        self.every = float(os.environ.get("SWEEP_PROGRESS_EVERY", "60"))
        self.bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, unit=unit, unit_scale=True, desc=desc, file=sys.stderr,
                            dynamic_ncols=True, smoothing=0.1)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
            rate = self.bar.format_dict.get("rate")
            if rate and self.steps:
                self.bar.set_postfix_str(f"{rate * self.steps / 1e6:.2f} M traj-steps/s", refresh=False)
        elif self.mode == "lines":
            now = time.perf_counter()
            if (self.last_t is None or now - self.last_t >= self.every or self.n >= self.total
                    or self.n - self.last_n >= max(1, self.total // 10)):
                self._line(now)

    def _line(self, now: float) -> None:
        dt = now - self.t0
        pct = f" ({self.n / self.total:.0%})" if self.total else ""
        rate = self.n / dt if dt > 0 else 0.0
        extra = f", {rate * self.steps / 1e6:.2f} M traj-steps/s" if self.steps and rate else ""
        eta = f", ETA {(self.total - self.n) / rate:.0f} s" if rate and self.n < self.total else ""
        print(f"{self.desc}: {self.n:,}/{self.total:,} {self.unit}{pct} in {dt:.1f} s{extra}{eta}",
              file=sys.stderr, flush=True)
        self.last_t, self.last_n = now, self.n

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "lines" and self.n != self.last_n and self.n:
            self._line(time.perf_counter())
