"""Peak memory of this process and its children (data-loader workers), sampled while a block runs.

Example:
    >>> with PeakMemory() as memory:
    ...     buffer = bytearray(50_000_000)
    >>> memory.peak_mb > 50
    True
"""

import threading
from types import TracebackType

import psutil

MEGABYTE = 1024 * 1024


def process_tree_rss(process: psutil.Process) -> int:
    """Resident memory of a process and all its descendants, in bytes (vanished children count 0)."""
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            continue
    return total


class PeakMemory:
    """Context manager sampling the resident memory of this process tree; ``peak_mb`` is the largest sample.

    Args:
        interval: Seconds between samples. Defaults to ``0.02``.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @property
    def peak_mb(self) -> float:
        """Peak resident memory in MiB."""
        return self.peak_bytes / MEGABYTE

    def _sample(self) -> None:
        while True:
            self.peak_bytes = max(self.peak_bytes, process_tree_rss(self._process))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> "PeakMemory":
        self.peak_bytes = process_tree_rss(self._process)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, process_tree_rss(self._process))
