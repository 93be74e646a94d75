"""Peak memory while a block runs: this process and its children (data-loader workers), and the GPU's.

Host memory is the memory the job itself allocates: the proportional set size (PSS) of the anonymous and
shared-memory pages, summed over the process tree (Linux's ``/proc/<pid>/smaps_rollup``). A page that the
forked data-loader workers share with their parent counts once in the sum, not once per process as the
resident set size (RSS) would. Pages mapped from files — the code of torch and the other libraries, the same
for every model — are left out: their PSS is split with every other process that maps the same libraries, so
it would change with whatever else runs on the machine.
Where the system has no ``smaps_rollup`` (macOS, Windows, old kernels) the whole PSS, or the unique set size
(USS), is used. On a CUDA device the peak that torch's allocator reached is read as well.

Example:
    >>> with PeakMemory() as memory:
    ...     buffer = bytearray(50_000_000)
    >>> memory.peak_mb > 50
    True
    >>> memory.peak_gpu_mb is None  # no CUDA device given
    True
"""

import threading
from pathlib import Path
from types import TracebackType

import psutil
import torch

MEGABYTE = 1024 * 1024
ALLOCATED_FIELDS = ("Pss_Anon", "Pss_Shmem")  # smaps_rollup fields of the pages a process allocated


def process_memory(process: psutil.Process) -> int:
    """Memory a process allocated, in bytes: PSS of its anonymous and shared-memory pages.

    Falls back to the whole PSS (or USS) where the system has no ``/proc/<pid>/smaps_rollup``.
    """
    try:
        rollup = Path(f"/proc/{process.pid}/smaps_rollup").read_text()
    except OSError:
        rollup = ""
    fields = dict(line.split(":", 1) for line in rollup.splitlines() if line.startswith(ALLOCATED_FIELDS))
    if len(fields) == len(ALLOCATED_FIELDS):
        return sum(int(value.split()[0]) for value in fields.values()) * 1024  # reported in kB
    info = process.memory_full_info()
    return getattr(info, "pss", info.uss)


def process_tree_memory(process: psutil.Process) -> int:
    """Memory of a process and its descendants in bytes: :func:`process_memory` summed (vanished ones count 0).

    Example:
        >>> process_tree_memory(psutil.Process()) > 0
        True
    """
    total = process_memory(process)
    for child in process.children(recursive=True):
        try:
            total += process_memory(child)
        except psutil.Error:
            continue
    return total


class PeakMemory:
    """Context manager sampling the memory of this process tree; ``peak_mb`` is the largest sample.

    Args:
        interval: Seconds between samples. Defaults to ``0.02``.
        device: The device the block computes on. On a CUDA device, ``peak_gpu_mb`` is the peak memory
            torch allocated on it during the block (cached, unallocated memory not counted); else ``None``.
    """

    def __init__(self, interval: float = 0.02, device: torch.device | None = None) -> None:
        self.interval = interval
        self.device = device if device is not None and device.type == "cuda" else None
        self.peak_bytes = 0
        self.peak_gpu_mb: float | None = None
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @property
    def peak_mb(self) -> float:
        """Peak memory of the process tree (:func:`process_tree_memory`) in MiB."""
        return self.peak_bytes / MEGABYTE

    def _sample(self) -> None:
        while True:
            self.peak_bytes = max(self.peak_bytes, process_tree_memory(self._process))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> "PeakMemory":
        if self.device is not None:
            torch.cuda.reset_peak_memory_stats(self.device)
        self.peak_bytes = process_tree_memory(self._process)
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
        self.peak_bytes = max(self.peak_bytes, process_tree_memory(self._process))
        if self.device is not None:
            self.peak_gpu_mb = torch.cuda.max_memory_allocated(self.device) / MEGABYTE
