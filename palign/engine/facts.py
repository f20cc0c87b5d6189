"""Gather the planner's facts from a repository (the planner itself is pure).

Cost follows what the branches bring rather than the repository's size: per (branch,
target) one merge base and one ahead/behind count (libgit2) and one tree diff (merge
base -> tip, batched); per target one walk of every branch's own commits
(`TARGET..BRANCHES`, which finds the selected tips each branch contains). Three things
do scale with history, and are paid once: a target's first-parent line is walked only
when some tip is already in that target, and only as deep as the deepest such tip; each
long-lived branch's commits that no target has (a maintenance branch's backports) are
walked once, to tell which tips it already holds; an orphan branch makes libgit2 walk
both histories to find there is no merge base.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

import pygit2

from palign.engine.changes import touched_between
from palign.engine.repository import open_repository
from palign.errors import InfrastructureError, InputError
from palign.model import short_name
from palign.planner.model import BranchFacts, TargetFacts

__all__ = ["gather_facts"]


def _commit(repo: pygit2.Repository, refname: str, sha: str) -> pygit2.Commit:
    try:
        return repo[sha].peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError) as error:
        raise InputError(f"{refname}: {sha} is not a commit of the repository") from error


def _commit_id(repo: pygit2.Repository, sha: str) -> pygit2.Oid | None:
    """The commit `sha` names, or None (a long-lived branch is looked at, never selected:
    one that does not name a commit is no reason to stop the run)."""
    try:
        return repo[sha].peel(pygit2.Commit).id
    except (KeyError, ValueError, pygit2.GitError):
        return None


def _own_commits(repo: pygit2.Repository, tip: pygit2.Oid, target: pygit2.Oid) -> Iterable[pygit2.Commit]:
    walker = repo.walk(tip, pygit2.enums.SortMode.NONE)
    walker.hide(target)
    return walker


def _reach_masks(
    repo: pygit2.Repository, starts: Mapping[pygit2.Oid, int], hidden: Iterable[pygit2.Oid]
) -> Iterator[tuple[pygit2.Commit, int]]:
    """The commits reachable from `starts` and not from `hidden`, children before parents,
    each with the union of the bit masks of the starts that reach it: one walk answers,
    for every commit, which of many tips hold it."""
    if not starts:
        return
    reached = dict(starts)
    walker = repo.walk(next(iter(starts)), pygit2.enums.SortMode.TOPOLOGICAL)
    for start in starts:
        walker.push(start)
    for boundary in hidden:
        walker.hide(boundary)
    for commit in walker:
        mask = reached.pop(commit.id, 0)
        yield commit, mask
        for parent in commit.parent_ids:
            reached[parent] = reached.get(parent, 0) | mask


class _Inspector:
    """Memoised per-repository lookups shared by every branch of one `gather_facts` call."""

    def __init__(self, repo: pygit2.Repository) -> None:
        self.repo = repo
        # per target: its first-parent line from the tip down, as far as walked, and as a set
        self.first_parent: dict[pygit2.Oid, tuple[list[pygit2.Oid], set[pygit2.Oid]]] = {}
        self.touched: dict[tuple[pygit2.Oid, pygit2.Oid], frozenset[str]] = {}
        self.patch_ids: dict[pygit2.Oid, pygit2.Oid | None] = {}
        self.merge_bases: dict[tuple[pygit2.Oid, pygit2.Oid], pygit2.Oid | None] = {}
        self.ahead_behind: dict[tuple[pygit2.Oid, pygit2.Oid], tuple[int, int]] = {}

    def merge_base(self, tip: pygit2.Oid, target: pygit2.Oid) -> pygit2.Oid | None:
        key = (tip, target)
        if key not in self.merge_bases:
            self.merge_bases[key] = self.repo.merge_base(tip, target)
        return self.merge_bases[key]

    def counts(self, tip: pygit2.Oid, target: pygit2.Oid) -> tuple[int, int]:
        """(ahead, behind). libgit2 counts both in one walk; a branch in its target has
        the tip as merge base."""
        key = (tip, target)
        found = self.ahead_behind.get(key)
        if found is None:
            found = self.ahead_behind[key] = self.repo.ahead_behind(tip, target)
            if found[0] == 0:
                self.merge_bases[key] = tip
        return found

    def own(self, tip: pygit2.Oid, target: pygit2.Oid) -> list[pygit2.Commit]:
        """The branch's own commits (`TARGET..BRANCH`), newest first: only for the patch-id
        check, a walk per branch and target."""
        return list(_own_commits(self.repo, tip, target)) if self.counts(tip, target)[0] else []

    def contained_tips(self, tips: Mapping[pygit2.Oid, list[str]], target: pygit2.Oid) -> dict[pygit2.Oid, set[str]]:
        """Per tip, the refs of the other selected tips among its own commits against
        `target`: one walk of every branch's own commits (`TARGET..TIPS`), children before
        parents, each commit passing on to its parents the tips that reach it (a bit
        mask). A walk per branch costs its whole own range again for each target, and
        thousands of times over against an old maintenance branch."""
        order = list(tips)
        bit_of = {tip: 1 << i for i, tip in enumerate(order)}
        contained: dict[pygit2.Oid, set[str]] = {}
        for commit, mask in _reach_masks(self.repo, bit_of, [target]):
            own_bit = bit_of.get(commit.id)
            if own_bit is not None:
                holders = mask & ~own_bit
                while holders:
                    lowest = holders & -holders
                    contained.setdefault(order[lowest.bit_length() - 1], set()).update(tips[commit.id])
                    holders ^= lowest
        return contained

    def on_first_parent_line(self, tip: pygit2.Oid, target: pygit2.Oid, behind: int) -> bool:
        """Whether `tip` (in the target, `behind` commits short of it) lies on the target's
        first-parent line. Every commit of that line above the tip is one the tip lacks, so
        it is at most `behind` steps down: the line is walked that far, once per target and
        only as far as the deepest tip asked about (an old branch costs its depth, not the
        whole history)."""
        line, seen = self.first_parent.setdefault(target, ([], set()))
        if not line:
            line.append(target)
            seen.add(target)
        while len(line) <= behind and tip not in seen:
            parents = self.repo[line[-1]].parent_ids  # type: ignore[attr-defined]
            if not parents:
                break
            line.append(parents[0])
            seen.add(parents[0])
        return tip in seen

    def prefill_touched(self, tips: Iterable[pygit2.Commit], targets: Iterable[pygit2.Oid]) -> None:
        """Every branch's touched paths against every target in one batched git diff:
        git's tree diff beats libgit2's on wide directories, and one process serves all."""
        pairs = []
        for tip in tips:
            for target in targets:
                self.counts(tip.id, target)
                base = self.merge_base(tip.id, target)
                if base is not None and (base, tip.id) not in self.touched:
                    pairs.append((str(base), str(tip.id)))
        for (old, new), paths in touched_between(self.repo.path, pairs).items():
            self.touched[(pygit2.Oid(hex=old), pygit2.Oid(hex=new))] = paths

    def holders(
        self, tips: Iterable[pygit2.Oid], long_lived: Mapping[str, pygit2.Oid], targets: Iterable[pygit2.Oid]
    ) -> dict[pygit2.Oid, set[str]]:
        """The long-lived branches whose history holds each of `tips` (only tips held by
        one; a tip a target has is known from the target facts already).

        One walk of the commits the long-lived branches have and no target has (their
        backports and release commits), children before parents, each commit passing on
        to its parents the set of branches that reach it (a bit mask): the targets' side
        is walked once, however many long-lived branches there are."""
        wanted = set(tips)
        names = list(long_lived)
        starts: dict[pygit2.Oid, int] = {}
        for bit, name in enumerate(names):
            starts[long_lived[name]] = starts.get(long_lived[name], 0) | 1 << bit
        held: dict[pygit2.Oid, set[str]] = {}
        for commit, mask in _reach_masks(self.repo, starts, targets):
            if commit.id in wanted:
                held[commit.id] = {name for bit, name in enumerate(names) if mask >> bit & 1}
        return held

    def touched_paths(self, base: pygit2.Oid, tip: pygit2.Commit) -> frozenset[str]:
        key = (base, tip.id)
        paths = self.touched.get(key)
        if paths is None:
            diff = self.repo[base].peel(pygit2.Commit).tree.diff_to_tree(tip.tree)
            found: set[str] = set()
            for delta in diff.deltas:
                found.add(delta.old_file.path)
                found.add(delta.new_file.path)
            paths = self.touched[key] = frozenset(found)
        return paths

    def patch_id(self, commit: pygit2.Commit) -> pygit2.Oid | None:
        """Patch id of a non-merge commit's change; None for merges and empty changes
        (git's rebase drops merges and keeps originally-empty commits: neither is
        "already upstream")."""
        if commit.id not in self.patch_ids:
            patch: pygit2.Oid | None = None
            if len(commit.parent_ids) <= 1:
                if commit.parent_ids:
                    diff = commit.parents[0].tree.diff_to_tree(commit.tree)
                else:  # a root commit: everything it holds is its change
                    diff = commit.tree.diff_to_tree(swap=True)
                patch = diff.patchid if len(diff) else None
            self.patch_ids[commit.id] = patch
        return self.patch_ids[commit.id]

    def merged_by_patch_id(self, own: list[pygit2.Commit], tip: pygit2.Oid, target: pygit2.Oid) -> bool:
        """Every own commit's patch is among the target commits the branch lacks
        (what `git rebase` would skip as already upstream)."""
        wanted = set()
        for commit in own:
            patch = self.patch_id(commit)
            if patch is None and len(commit.parent_ids) <= 1:
                return False
            if patch is not None:
                wanted.add(patch)
        if not wanted:
            return False
        for commit in _own_commits(self.repo, target, tip):
            wanted.discard(self.patch_id(commit))
            if not wanted:
                return True
        return False


def _facts_on_target(
    inspector: _Inspector,
    tip: pygit2.Commit,
    target: pygit2.Oid,
    with_patch_ids: bool,
) -> TargetFacts:
    ahead, behind = inspector.counts(tip.id, target)
    base = inspector.merge_base(tip.id, target)
    if base is None:
        return TargetFacts(ahead, behind, False, False, False, False)
    own = inspector.own(tip.id, target) if with_patch_ids else []
    in_target = ahead == 0
    return TargetFacts(
        ahead=ahead,
        behind=behind,
        has_common_history=True,
        merged_by_ancestry=in_target,
        on_first_parent_chain=in_target and inspector.on_first_parent_line(tip.id, target, behind),
        merged_by_patch_id=bool(with_patch_ids and own and inspector.merged_by_patch_id(own, tip.id, target)),
        merge_base=str(base),
        touched_paths=inspector.touched_paths(base, tip),
    )


def gather_facts(
    repo: pygit2.Repository,
    branch_refs: Mapping[str, str],
    targets: Mapping[str, str],
    *,
    with_patch_ids: bool = False,
    all_refs: Mapping[str, str] | None = None,
    on_branch: Callable[[int], None] | None = None,
    long_lived: Mapping[str, str] | None = None,
) -> list[BranchFacts]:
    """Facts of every branch of `branch_refs` (refname -> sha) against every target of
    `targets` (target name -> sha; the names key `BranchFacts.targets`), in input order.
    `all_refs` are every selected branch when `branch_refs` is a share of them (for the
    stacks: which other tips a branch contains). `long_lived` (refname -> sha, the
    targets need not be among them) are the branches whose history makes a tip part of
    a shared base (`BranchFacts.held_by`).

    `with_patch_ids` also checks whether diverged branches are merged by patch id, which
    costs a walk of the target commits each such branch lacks (patch ids are memoised).
    `on_branch` hears how many branches are done after each one.
    """
    try:
        inspector = _Inspector(repo)
        target_ids = {name: _commit(repo, name, sha).id for name, sha in targets.items()}
        tip_commits = {ref: _commit(repo, ref, sha) for ref, sha in branch_refs.items()}
        tips: dict[pygit2.Oid, list[str]] = {}
        for ref, sha in (all_refs or branch_refs).items():
            tips.setdefault(pygit2.Oid(hex=sha), []).append(ref)
        inspector.prefill_touched(tip_commits.values(), target_ids.values())
        contained = {target: inspector.contained_tips(tips, target) for target in target_ids.values()}
        lines = {ref: line for ref, sha in (long_lived or {}).items() if (line := _commit_id(repo, sha)) is not None}
        held = inspector.holders((tip.id for tip in tip_commits.values()), lines, target_ids.values())
        facts = []
        for ref, tip in tip_commits.items():
            per_target = {
                name: _facts_on_target(inspector, tip, target, with_patch_ids) for name, target in target_ids.items()
            }
            contains = {
                other
                for name, target in target_ids.items()
                if per_target[name].has_common_history
                for other in contained[target].get(tip.id, ())
            }
            facts.append(
                BranchFacts(
                    refname=ref,
                    name=short_name(ref),
                    sha=str(tip.id),
                    targets=per_target,
                    last_commit_time=tip.commit_time,
                    contains=frozenset(contains),
                    held_by=frozenset(held.get(tip.id, set()) - {ref}),
                )
            )
            if on_branch is not None:
                on_branch(len(facts))
        return facts
    except pygit2.GitError as error:
        raise InfrastructureError(f"reading the repository failed: {error}") from error


ShareJob = tuple[dict[str, str], dict[str, str], dict[str, str], dict[str, str]]


def facts_of_share(git_dir: str, job: ShareJob) -> list[BranchFacts]:
    """`gather_facts` for a share of the branches (`job` = share, every selected branch,
    targets, long-lived branches), in a worker process of its own."""
    share, all_refs, targets, long_lived = job
    return gather_facts(open_repository(git_dir), share, targets, all_refs=all_refs, long_lived=long_lived)
