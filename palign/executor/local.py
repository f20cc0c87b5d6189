"""The embedded executor: a pool of worker processes on this machine, no services."""

from __future__ import annotations

import multiprocessing
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from palign.errors import InfrastructureError
from palign.executor.unit import align_stack
from palign.model import BranchResult, Identity, Status, WorkUnit, unaligned
from palign.validation.gate import Checking
from palign.validation.runner import CheckCache

ResultCallback = Callable[[BranchResult], None]


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds; it is only safe while this process has no threads.
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def run_local(
    mirror_path: str,
    identity: Identity,
    units: Sequence[WorkUnit],
    *,
    workers: int,
    on_result: ResultCallback | None = None,
    checking: Checking | None = None,
    check_cache: CheckCache | None = None,
) -> list[BranchResult]:
    """Run every unit with `workers` processes, largest first; results in unit order.
    `checking` gates each aligned result (with `check_cache` for results known already)."""
    cost = [sum(r.cost for level in unit for r in level) for unit in units]
    ordered = sorted(range(len(units)), key=lambda i: -cost[i])
    results: list[list[BranchResult]] = [[] for _ in units]
    with ProcessPoolExecutor(max_workers=max(1, min(workers, len(units))), mp_context=_pool_context()) as pool:
        futures: dict[Future[list[dict[str, Any]]], int] = {
            pool.submit(
                align_stack,
                mirror_path,
                identity,
                [[r.to_json() for r in level] for level in units[i]],
                checking,
                check_cache,
            ): i
            for i in ordered
        }
        for future in as_completed(futures):
            unit = units[futures[future]]
            try:
                unit_results = [BranchResult.from_json(item) for item in future.result()]
            except BrokenProcessPool as error:
                raise InfrastructureError(
                    f"a worker process died ({error}); nothing was written to the repository"
                ) from None
            except Exception as error:  # noqa: BLE001 - a bug or hostile content in one unit ends that unit
                message = f"its unit of work failed: {type(error).__name__}: {error}"
                unit_results = [
                    unaligned(r.refname, r.target, r.old_sha, Status.ERROR, "unit_failed", message)
                    for level in unit
                    for r in level
                ]
            results[futures[future]] = unit_results
            if on_result is not None:
                for result in unit_results:
                    on_result(result)
    return [result for unit_results in results for result in unit_results]


def map_local(
    function: Callable[..., list[Any]],
    fixed: tuple[Any, ...],
    chunks: Sequence[Any],
    *,
    workers: int,
    on_chunk: Callable[[list[Any]], None] | None = None,
) -> list[Any]:
    """`function(*fixed, chunk)` for every chunk on `workers` processes; results flattened,
    in no particular order. `on_chunk` sees each chunk's results as they come."""
    out: list[Any] = []
    with ProcessPoolExecutor(max_workers=max(1, min(workers, len(chunks))), mp_context=_pool_context()) as pool:
        for future in as_completed([pool.submit(function, *fixed, chunk) for chunk in chunks]):
            try:
                results = future.result()
            except BrokenProcessPool as error:
                raise InfrastructureError(f"a worker process died ({error})") from None
            out.extend(results)
            if on_chunk is not None:
                on_chunk(results)
    return out
