"""The embedded executor: a pool of worker processes on this machine, no services."""

from __future__ import annotations

import multiprocessing
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed

from palign.engine.objects import Identity
from palign.model import AlignRequest, BranchResult
from palign.runtime import align_unit, preload_changes, request_to_json

ResultCallback = Callable[[BranchResult], None]


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds; it is only safe while this process has no threads.
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def run_local(
    mirror_path: str,
    identity: Identity,
    requests: Sequence[AlignRequest],
    *,
    workers: int,
    on_result: ResultCallback | None = None,
    preload_commits: Sequence[str] = (),
) -> list[BranchResult]:
    """Align every request with `workers` processes, largest first; results in request order.
    `preload_commits` are diffed once here when the workers can inherit the result."""
    ordered = sorted(range(len(requests)), key=lambda i: -requests[i].cost)
    results: list[BranchResult | None] = [None] * len(requests)
    ident = (identity.name, identity.email)
    context = _pool_context()
    if preload_commits and context.get_start_method() == "fork":
        preload_changes(mirror_path, list(preload_commits))
    with ProcessPoolExecutor(max_workers=max(1, min(workers, len(requests))), mp_context=context) as pool:
        futures: dict[Future[dict[str, object]], int] = {
            pool.submit(align_unit, mirror_path, ident, request_to_json(requests[i])): i for i in ordered
        }
        for future in as_completed(futures):
            result = BranchResult.from_json(future.result())
            results[futures[future]] = result
            if on_result is not None:
                on_result(result)
    return [r for r in results if r is not None]
