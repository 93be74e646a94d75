"""Peak host memory in ``anomalib-grad compare``: pages shared with forked workers count once, mapped files not.

Oracles: a parent touches a buffer of known size and forks children that only read it. The resident set
sizes summed over the tree (read here with psutil, not with the code under test) count the buffer once per
process; the measured memory must count it about once. A file of known size mapped and read in full must
not count (library code is mapped the same way); an allocated buffer of known size must.
"""

import mmap
import multiprocessing
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest

from anomalib_grad.compare.memory import MEGABYTE, PeakMemory, process_tree_memory

BUFFER_MB = 256
CHILDREN = 2


def _read_and_wait(buffer: np.ndarray, ready: multiprocessing.Event, stop: multiprocessing.Event) -> None:
    """Read every page of the inherited buffer (making it resident in the child too), then wait."""
    float(buffer.sum())
    ready.set()
    stop.wait(60)


@pytest.mark.skipif(sys.platform != "linux", reason="fork and PSS are Linux features")
def test_pages_shared_with_forked_children_count_once() -> None:
    buffer = np.ones(BUFFER_MB * MEGABYTE // 8)  # float64, every page written by the parent
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    readies = [context.Event() for _ in range(CHILDREN)]
    children = [context.Process(target=_read_and_wait, args=(buffer, ready, stop)) for ready in readies]
    for child in children:
        child.start()
    try:
        assert all(ready.wait(60) for ready in readies)
        tree = [psutil.Process(), *psutil.Process().children(recursive=True)]
        summed_rss_mb = sum(process.memory_info().rss for process in tree) / MEGABYTE
        with PeakMemory() as memory:
            measured_mb = process_tree_memory(psutil.Process()) / MEGABYTE
    finally:
        stop.set()
        for child in children:
            child.join(60)
    assert summed_rss_mb > (CHILDREN + 1) * BUFFER_MB  # the buffer is resident in all three processes
    assert BUFFER_MB < measured_mb < summed_rss_mb - (CHILDREN - 0.5) * BUFFER_MB  # ... but counted once
    assert memory.peak_mb >= 0.9 * measured_mb


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux's smaps_rollup")
def test_mapped_files_do_not_count_and_allocations_do(tmp_path: Path) -> None:
    mapped_file = tmp_path / "library.bin"
    mapped_file.write_bytes(b"\x01" * (BUFFER_MB * MEGABYTE))
    before_mb = process_tree_memory(psutil.Process()) / MEGABYTE
    with mapped_file.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapping:
        assert sum(mapping[offset] for offset in range(0, len(mapping), mmap.PAGESIZE)) == len(mapping) // mmap.PAGESIZE
        resident_mb = psutil.Process().memory_info().rss / MEGABYTE
        mapped_mb = process_tree_memory(psutil.Process()) / MEGABYTE
    buffer = np.ones(BUFFER_MB * MEGABYTE // 8)
    allocated_mb = process_tree_memory(psutil.Process()) / MEGABYTE
    del buffer
    assert resident_mb > before_mb + 0.9 * BUFFER_MB  # the mapped file is resident ...
    assert abs(mapped_mb - before_mb) < 0.1 * BUFFER_MB  # ... but not counted
    assert 0.9 * BUFFER_MB < allocated_mb - mapped_mb < 1.1 * BUFFER_MB
