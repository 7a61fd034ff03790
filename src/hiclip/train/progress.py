"""The progress bar (loss, lr, samples/s, ETA) and clean-stop requests (SIGINT / SIGTERM)."""
from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

from tqdm import tqdm

log = logging.getLogger(__name__)


class Progress:
    """A tqdm bar over optimizer steps ``initial..total``; silent when not ``enabled``."""

    def __init__(self, total: int, initial: int = 0, enabled: bool = True):
        self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, disable=not enabled)
        self._started = time.monotonic()

    @property
    def elapsed(self) -> float:
        """Seconds since the bar was made."""
        return time.monotonic() - self._started

    def update(self, loss: float, lr: float, rate: float) -> None:
        """One step done; ``rate`` in samples/s."""
        self._bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{rate:.1f}", refresh=False)
        self._bar.update(1)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()


class StopSignals:
    """While active, SIGINT and SIGTERM ask for a clean stop (``requested``) instead of killing:
    the run finishes its step, writes a checkpoint and returns. A second SIGINT changes nothing
    (it is counted in ``count``; no exception breaks into the step or the save); a third raises
    KeyboardInterrupt at once (a checkpoint write it cuts leaves the previous one intact).
    Handlers are installed only in the main thread and restored on exit."""

    FORCE_AT = 3  # the SIGINT that interrupts at once

    def __init__(self) -> None:
        self.requested = False
        self.count = 0
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.count += signum == signal.SIGINT
        if self.count == 2:
            log.warning("stopping after this step's checkpoint; press Ctrl-C once more to abandon it")
        if self.count >= self.FORCE_AT:
            raise KeyboardInterrupt

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
