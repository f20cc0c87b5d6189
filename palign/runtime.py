"""The unit of work every executor runs: align one branch in this process's mirror.

Each process keeps one open repository and one patch-key cache per mirror, so target
commits are diffed once per process and run. The local pool calls `align_unit`; the
Celery tasks of the distributed mode call the same function.
"""

from __future__ import annotations

from typing import Any

import pygit2

from palign.engine.align import AlignContext, align_branch
from palign.engine.objects import Identity
from palign.model import AlignRequest, Sha, Strategy

_contexts: dict[tuple[str, Identity], AlignContext] = {}


def context_for(mirror_path: str, identity: Identity) -> AlignContext:
    key = (mirror_path, identity)
    ctx = _contexts.get(key)
    if ctx is None:
        ctx = AlignContext(repo=pygit2.Repository(mirror_path), identity=identity)
        _contexts[key] = ctx
    return ctx


def request_to_json(request: AlignRequest) -> dict[str, Any]:
    return {
        "refname": request.refname,
        "old_sha": request.old_sha,
        "target": request.target,
        "target_sha": request.target_sha,
        "strategy": request.strategy.value,
        "cost": request.cost,
    }


def request_from_json(data: dict[str, Any]) -> AlignRequest:
    return AlignRequest(
        refname=data["refname"],
        old_sha=Sha(data["old_sha"]),
        target=data["target"],
        target_sha=Sha(data["target_sha"]),
        strategy=Strategy(data["strategy"]),
        cost=int(data.get("cost", 0)),
    )


def align_unit(mirror_path: str, identity: tuple[str, str], request: dict[str, Any]) -> dict[str, Any]:
    ctx = context_for(mirror_path, Identity(*identity))
    return align_branch(ctx, request_from_json(request)).to_json()
