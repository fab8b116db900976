"""Independent batches of scoring work in parallel threads on the CPU.

Scoring forwards of this small model are a mix of matrix products and memory-bound element-wise passes over
(batch, length, hidden) tensors; torch's intra-op threads split each operation and scale poorly on them.
Running independent batches (site groups, windows) in ``workers`` threads with one intra-op thread each
measured 1.3-1.4x faster on the 2-core CPU (``scripts/bench_scoring.py``). Every batch runs with one intra-op
thread whenever ``workers`` > 1 (a lone batch too), so a site's score does not depend on the other sites of the
input (shards and regions give the numbers of the whole run); the thread count changes float rounding
(~1e-6 relative) against a serial run with several intra-op threads. Outputs come back in input order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


def cpu_workers(device: torch.device | str, workers: int | None = None) -> int:
    """Worker threads: ``workers`` if given, else torch's intra-op thread count on the CPU (1 elsewhere: GPU
    kernels parallelise inside each batch)."""
    if workers is None:
        workers = torch.get_num_threads() if torch.device(device).type == "cpu" else 1
    return max(1, int(workers))


@contextlib.contextmanager
def intra_op_threads(n: int) -> Iterator[None]:
    """Set torch's (process-wide) intra-op thread count for the block, restoring it after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def map_batches(fn: Callable[[T], R], batches: Sequence[T], workers: int) -> list[R]:
    """``[fn(b) for b in batches]``; with ``workers`` > 1 in that many threads with one intra-op thread each,
    a single batch included, so that a batch's numbers never depend on how many batches there are."""
    if workers <= 1:
        return [fn(b) for b in batches]
    grad = torch.is_grad_enabled()  # grad mode is per thread: the workers take the caller's

    def run(b: T) -> R:
        with torch.set_grad_enabled(grad):
            return fn(b)

    with intra_op_threads(1):
        if len(batches) <= 1:
            return [fn(b) for b in batches]
        with ThreadPoolExecutor(min(workers, len(batches))) as pool:
            return list(pool.map(run, batches))
