"""Opening repositories with libgit2 and the small questions the layers above ask of them
(which commit a ref names, a commit's tree, which objects are missing, what a branch
changed). Code outside `palign.engine` asks these instead of using pygit2 itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pygit2

from palign.engine.treeops import changed_entries
from palign.errors import InputError
from palign.model import Sha

# Worker memory stays bounded: libgit2's object cache defaults to 256 MiB per process.
_OBJECT_CACHE_BYTES = 32 * 1024 * 1024

Repository = pygit2.Repository


def tune_libgit2() -> None:
    """Bounded memory, and trees kept: libgit2 caches no tree above 4 KiB by default, so
    wide directories were re-inflated on every path lookup."""
    pygit2.settings.cache_max_size(_OBJECT_CACHE_BYTES)
    pygit2.settings.cache_object_limit(pygit2.enums.ObjectType.TREE, 4 * 1024 * 1024)


def open_repository(git_dir: str) -> pygit2.Repository:
    tune_libgit2()
    return pygit2.Repository(git_dir)


def resolve_commit(repo: pygit2.Repository, name: str, value: str) -> Sha:
    """The commit `value` (a ref's sha; a tag is peeled) names; `name` is for messages."""
    try:
        return Sha(str(repo.revparse_single(value).peel(pygit2.Commit).id))
    except (KeyError, ValueError, pygit2.GitError):
        raise InputError(f"{name} does not name a commit") from None


def tree_of(repo: pygit2.Repository, commit: str) -> str:
    return str(repo[pygit2.Oid(hex=commit)].peel(pygit2.Tree).id)


def missing(repo: pygit2.Repository, shas: Iterable[str]) -> list[str]:
    """Those of `shas` whose object is not in the repository (nor its alternates)."""
    return [sha for sha in shas if pygit2.Oid(hex=sha) not in repo]


def own_commits(repo: pygit2.Repository, target: str, tips: Sequence[str]) -> list[str]:
    """The non-merge commits of `tips` that `target` lacks (what rebasing them may diff
    once the target's side is known)."""
    walker = repo.walk(pygit2.Oid(hex=tips[0]), pygit2.enums.SortMode.NONE)
    for tip in tips[1:]:
        walker.push(pygit2.Oid(hex=tip))
    walker.hide(pygit2.Oid(hex=target))
    return [str(c.id) for c in walker if len(c.parent_ids) <= 1]


def touched_since_fork(repo: pygit2.Repository, tip: str, target: str) -> set[str]:
    """Paths the branch at `tip` changed since its merge base with `target` (everything
    it holds when they share no history)."""
    tip_id = pygit2.Oid(hex=tip)
    base = repo.merge_base(tip_id, pygit2.Oid(hex=target))
    old = repo[base].peel(pygit2.Tree) if base is not None else None
    return set(changed_entries(repo, old, repo[tip_id].peel(pygit2.Tree)))
