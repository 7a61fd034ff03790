"""The progress bar (loss, lr, samples/s, ETA) and clean-stop requests (SIGINT / SIGTERM)."""
from __future__ import annotations

import signal
import threading
import time
from types import FrameType

from tqdm import tqdm


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
    training finishes its step and writes a checkpoint. A second SIGINT interrupts at once.
    Handlers are installed only in the main thread and restored on exit."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
