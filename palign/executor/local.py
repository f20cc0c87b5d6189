"""The embedded executor: a pool of worker processes on this machine, no services."""

from __future__ import annotations

import multiprocessing
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from palign.engine.objects import Identity
from palign.errors import InfrastructureError
from palign.model import AlignRequest, BranchResult
from palign.runtime import align_stack, request_to_json

ResultCallback = Callable[[BranchResult], None]


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds; it is only safe while this process has no threads.
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


Unit = list[list[AlignRequest]]  # a stack, level by level; a lone branch is [[request]]


def run_local(
    mirror_path: str,
    identity: Identity,
    units: Sequence[Unit],
    *,
    workers: int,
    on_result: ResultCallback | None = None,
    checks: Sequence[dict[str, Any]] = (),
    baseline: bool = False,
) -> list[BranchResult]:
    """Run every unit with `workers` processes, largest first; results in unit order."""
    cost = [sum(r.cost for level in unit for r in level) for unit in units]
    ordered = sorted(range(len(units)), key=lambda i: -cost[i])
    results: list[list[BranchResult]] = [[] for _ in units]
    ident = (identity.name, identity.email, identity.when)
    with ProcessPoolExecutor(max_workers=max(1, min(workers, len(units))), mp_context=_pool_context()) as pool:
        futures: dict[Future[list[dict[str, object]]], int] = {
            pool.submit(
                align_stack,
                mirror_path,
                ident,
                [[request_to_json(r) for r in level] for level in units[i]],
                checks,
                baseline,
            ): i
            for i in ordered
        }
        for future in as_completed(futures):
            try:
                payload = future.result()
            except BrokenProcessPool as error:
                raise InfrastructureError(
                    f"a worker process died ({error}); nothing was written to the repository"
                ) from None
            unit_results = [BranchResult.from_json(item) for item in payload]
            results[futures[future]] = unit_results
            if on_result is not None:
                for result in unit_results:
                    on_result(result)
    return [result for unit_results in results for result in unit_results]


def _levels_json(unit: Unit) -> list[list[dict[str, Any]]]:
    return [[request_to_json(r) for r in level] for level in unit]


def map_local(
    function: Callable[..., list[Any]], fixed: tuple[Any, ...], chunks: Sequence[Any], *, workers: int
) -> list[Any]:
    """`function(*fixed, chunk)` for every chunk on `workers` processes; results flattened,
    in no particular order."""
    out: list[Any] = []
    with ProcessPoolExecutor(max_workers=max(1, min(workers, len(chunks))), mp_context=_pool_context()) as pool:
        for future in as_completed([pool.submit(function, *fixed, chunk) for chunk in chunks]):
            try:
                out.extend(future.result())
            except BrokenProcessPool as error:
                raise InfrastructureError(f"a worker process died ({error})") from None
    return out
