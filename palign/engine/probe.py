"""Whether commits have equal patch-ids, as `git rebase` decides it, for a few pairs.

`git rev-list --cherry-mark TARGET...BRANCH` answers for every commit of both sides, and
so diffs every target commit since the branch forked: tens of milliseconds on a large
tree, for each branch that may hold a patch already upstream (every merged pull request).
The engine narrows that down in memory to a few likely pairs; this module asks git about
those pairs alone, with the same `rev-list --cherry-mark` (git's own patch-ids, context
lines and all), over a small synthetic history written to the run's scratch store:

    B_k  a root commit per parent tree of the commits asked about
    X_i  tree of theirs_i, on the B of its parent's tree     (left side)
    Y_j  tree of ours_j, on the B of its parent's tree       (right side)
    LEFT = merge of every X_i and every B;  RIGHT = merge of every Y_j and every B

X_i changes exactly what theirs_i changes, Y_j what ours_j changes. Both tips reach every
B, so `LEFT...RIGHT` holds only the X_i, the Y_j and the two merges (which have no
patch-id): git diffs a few commits, not whole trees, and marks Y_j `=` exactly when
ours_j's patch is the patch of some theirs_i.
"""

from __future__ import annotations

from collections.abc import Sequence

import pygit2

from palign import git

_SIGNATURE = pygit2.Signature("palign", "palign@invalid", 0, 0)


def _commit(repo: pygit2.Repository, tree: pygit2.Oid, parents: list[pygit2.Oid], message: str) -> pygit2.Oid:
    return repo.create_commit(None, _SIGNATURE, _SIGNATURE, message, tree, parents)


def _parent_tree(repo: pygit2.Repository, commit: pygit2.Commit) -> pygit2.Oid:
    if commit.parents:
        return commit.parents[0].tree_id
    return repo.TreeBuilder().write()  # a root commit's change: everything, from the empty tree


def probe_same_patches(
    repo: pygit2.Repository, pairs: Sequence[tuple[pygit2.Commit, pygit2.Commit]]
) -> set[pygit2.Oid]:
    """Those of the first commits of `pairs` (ours) whose patch-id git finds equal to the
    second commit's (theirs) of some pair. One `git rev-list` over a history of a few
    commits, whatever the size of the real one."""
    ours = list({c.id: c for c, _ in pairs}.values())
    theirs = list({c.id: c for _, c in pairs}.values())
    bases: dict[pygit2.Oid, pygit2.Oid] = {}  # parent tree -> its root commit
    for commit in (*ours, *theirs):
        tree = _parent_tree(repo, commit)
        if tree not in bases:
            bases[tree] = _commit(repo, tree, [], "probe base\n")
    # The messages keep a left and a right copy of the same change apart (distinct commits).
    left = [_commit(repo, c.tree_id, [bases[_parent_tree(repo, c)]], f"left {i}\n") for i, c in enumerate(theirs)]
    copies = {_commit(repo, c.tree_id, [bases[_parent_tree(repo, c)]], f"right {i}\n"): c for i, c in enumerate(ours)}
    empty = repo.TreeBuilder().write()
    left_tip = _commit(repo, empty, [*left, *bases.values()], "left\n")
    right_tip = _commit(repo, empty, [*copies, *bases.values()], "right\n")
    output = git.run_text(
        [
            "--git-dir",
            repo.path,
            "rev-list",
            "--no-merges",
            "--cherry-mark",
            "--right-only",
            f"{left_tip}...{right_tip}",
        ]
    )
    found: set[pygit2.Oid] = set()
    for line in output.split():
        copy = pygit2.Oid(hex=line[1:])
        if line[0] == "=" and copy in copies:
            found.add(copies[copy].id)
    return found
