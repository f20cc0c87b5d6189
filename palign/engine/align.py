"""Align one branch onto its target, in memory: the one function both executors run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pygit2

from palign.engine import ort
from palign.engine.attributes import NAME as ATTRIBUTES_FILE
from palign.engine.attributes import attribute_files, merge_attributes
from palign.engine.objects import CommitStyle, replay_commit, write_commit
from palign.engine.selection import PatchKeyCache, is_empty, select_commits
from palign.engine.textmerge import disjoint_merge
from palign.engine.treeops import (
    Changes,
    apply_changes,
    changed_entries,
    content_merge_only,
    empty_tree,
    entries_at,
    flat_names,
    interactions,
    subset,
)
from palign.model import AlignRequest, BranchResult, Conflict, Identity, Sha, Status, Strategy


@dataclass
class AlignContext:
    """What one worker process keeps between branches."""

    repo: pygit2.Repository
    identity: Identity
    cache: PatchKeyCache = field(default_factory=PatchKeyCache)
    attribute_dirs: dict[pygit2.Oid, list[str]] = field(default_factory=dict)
    style: CommitStyle | None = None

    def commit_style(self) -> CommitStyle:
        if self.style is None:
            self.style = CommitStyle.of(self.repo)
        return self.style

    def attributes_dirs_of(self, tree: pygit2.Tree) -> list[str]:
        """Directories holding a .gitattributes in `tree` (a target's tree: memoised)."""
        found = self.attribute_dirs.get(tree.id)
        if found is None:
            found = [directory for directory, _ in attribute_files(self.repo, tree)]
            self.attribute_dirs[tree.id] = found
        return found


@dataclass
class _Outcome:
    status: Status
    new: pygit2.Oid | None
    replayed: int = 0
    skipped: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    slow_merges: int = 0
    strategy: Strategy | None = None
    replayed_ids: list[str] = field(default_factory=list)  # the original commits replayed


def _merge_one_side(
    ctx: AlignContext,
    *,
    base: pygit2.Tree | None,
    ours: pygit2.Tree,
    theirs: pygit2.Tree,
    attributes: bytes,
    changes: Changes | None = None,
    swapped: bool = False,
) -> tuple[pygit2.Oid | None, tuple[str, ...], bool]:
    """git's three-way merge, where `theirs` is usually the small side; `changes` is
    base -> theirs when already known; `attributes` are those of the working tree git
    would merge in; `swapped` when git's own "ours" is `theirs` here (it matters to
    asymmetric merges such as merge=union). Returns (tree, conflicted paths, asked git)."""
    repo = ctx.repo
    if changes is None:
        changes = changed_entries(repo, base, theirs)
    merger = ort.process_for(repo)
    merger.use_attributes(attributes)
    base_tree: pygit2.Tree = base if base is not None else repo[empty_tree(repo)]  # type: ignore[assignment]
    if not all(path.isascii() or _utf8(path) for path in changes):
        # pygit2 cannot name a tree entry that is not UTF-8: git merges those itself.
        return _git_merge(repo, base_tree.id, ours.id, theirs.id, swapped=swapped)
    both = interactions(base_tree, ours, theirs, changes)
    if both is not None and not both:
        return apply_changes(repo, ours, changes) or empty_tree(repo), (), False
    if both is not None and content_merge_only(base_tree, ours, theirs, both):
        # Only in-place edits of the same files meet: merge just those files' contents.
        rest = {path: entry for path, entry in changes.items() if path not in both}
        if not merger.paths_matter:
            merged_here = _merge_apart(repo, base_tree, ours, theirs, both)
            if merged_here is not None:
                return apply_changes(repo, ours, {**rest, **merged_here}) or empty_tree(repo), (), False
        names = {path: path for path in both} if merger.paths_matter else flat_names(both)
        tree, conflicted, _ = _git_merge(
            repo,
            subset(repo, base_tree, names),
            subset(repo, ours, names),
            subset(repo, theirs, names),
            swapped=swapped,
        )
        if tree is None:
            real = {name: path for path, name in names.items()}
            return None, tuple(real.get(p, p) for p in conflicted), True
        merged = entries_at(repo[tree], names)  # type: ignore[arg-type]
        return apply_changes(repo, ours, {**rest, **merged}) or empty_tree(repo), (), True
    return _git_merge(repo, base_tree.id, ours.id, theirs.id, swapped=swapped)


def _merge_apart(
    repo: pygit2.Repository, base: pygit2.Tree, ours: pygit2.Tree, theirs: pygit2.Tree, paths: set[str]
) -> Changes | None:
    """Each path's merged blob when every file's two edits lie apart; None otherwise."""
    merged: Changes = {}
    for path in paths:
        ours_entry = ours[path]
        text = disjoint_merge(base[path].data, ours_entry.data, theirs[path].data)  # type: ignore[union-attr]
        if text is None:
            return None
        merged[path] = (repo.create_blob(text), ours_entry.filemode)
    return merged


def _git_merge(
    repo: pygit2.Repository, base: pygit2.Oid, ours: pygit2.Oid, theirs: pygit2.Oid, *, swapped: bool
) -> tuple[pygit2.Oid | None, tuple[str, ...], bool]:
    sides = (ours, theirs)
    outcome = ort.merge_trees(repo, base=base, ours=sides[swapped], theirs=sides[not swapped])
    return outcome.tree, outcome.conflicted_paths, True


def _attributes_of(repo: pygit2.Repository, tree: pygit2.Tree, directories: list[str]) -> bytes:
    files = []
    for directory in directories:
        try:
            files.append((directory, tree[directory + ATTRIBUTES_FILE].id))
        except KeyError:
            continue
    return merge_attributes(repo, files)


def _attribute_dirs(ctx: AlignContext, target: pygit2.Tree, changed_paths: list[str]) -> list[str]:
    """The target's .gitattributes directories, and those of any the branch changes."""
    dirs = list(ctx.attributes_dirs_of(target))
    for path in changed_paths:
        if path == ATTRIBUTES_FILE or path.endswith("/" + ATTRIBUTES_FILE):
            directory = path[: -len(ATTRIBUTES_FILE)]
            if directory not in dirs:
                dirs.append(directory)
    return sorted(dirs, key=lambda d: (d.count("/"), d))


def _utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _rebase(
    ctx: AlignContext,
    branch: pygit2.Commit,
    target: pygit2.Commit,
    *,
    onto: pygit2.Commit | None = None,
    below: pygit2.Oid | None = None,
    forecast: bool = False,
    fork_point: pygit2.Oid | None = None,
) -> _Outcome:
    """`git rebase TARGET`; for a stacked branch `git rebase --onto ONTO BELOW` (ONTO the
    aligned tip of the branch below, BELOW its old tip), with patches already in the target
    skipped as `git rebase --update-refs` would skip them."""
    repo = ctx.repo
    selection = select_commits(
        repo, branch=branch.id, target=target.id, cache=ctx.cache, below=below, fork_point=fork_point
    )
    if forecast and onto is None and not selection.used_git and _untouched_by_target(ctx, target, selection.commits):
        status = Status.ALIGNED if selection.commits else Status.MERGED
        return _Outcome(status, None, len(selection.commits), selection.skipped, strategy=Strategy.REBASE)
    committer = ctx.identity.signature_line()
    start = onto if onto is not None else target
    attribute_dirs = _attribute_dirs(
        ctx, start.tree, [path for c in selection.commits for path in ctx.cache.entries(repo, c)]
    )
    head = start
    head_tree = start.tree
    replayed, skipped, slow = 0, selection.skipped, 0
    replayed_ids: list[str] = []
    for commit in selection.commits:
        parent_tree = commit.parents[0].tree if commit.parents else None
        if is_empty(commit):
            new_tree = head_tree.id
        else:
            tree_id, conflicted, used_slow = _merge_one_side(
                ctx,
                base=parent_tree,
                ours=head_tree,
                theirs=commit.tree,
                attributes=_attributes_of(repo, head_tree, attribute_dirs),
                changes=ctx.cache.entries(repo, commit),
            )
            slow += used_slow
            if tree_id is None:
                conflicts = [Conflict(path=p, commit=Sha(str(commit.id))) for p in conflicted]
                return _Outcome(Status.CONFLICT, None, replayed, skipped, conflicts, slow, Strategy.REBASE)
            if tree_id == head_tree.id:
                skipped += 1  # became empty: git drops it
                continue
            new_tree = tree_id
        new_id = replay_commit(
            repo, commit.id, tree=new_tree, parent=head.id, committer=committer, style=ctx.commit_style()
        )
        head = repo[new_id]  # type: ignore[assignment]
        head_tree = head.tree
        replayed += 1
        replayed_ids.append(str(commit.id))
    if replayed == 0:
        # Nothing of its own left: like git, the branch ends where it was replayed onto.
        status = Status.MERGED if start.id == target.id else Status.ALIGNED
        return _Outcome(status, start.id, 0, skipped, slow_merges=slow, strategy=Strategy.REBASE)
    return _Outcome(
        Status.ALIGNED,
        head.id,
        replayed,
        skipped,
        slow_merges=slow,
        strategy=Strategy.REBASE,
        replayed_ids=replayed_ids,
    )


def _merge_message(target_name: str, branch_name: str) -> bytes:
    label = target_name[len("refs/heads/") :] if target_name.startswith("refs/heads/") else target_name
    kind = "branch" if not label.startswith("refs/") else "commit"
    return f"Merge {kind} '{label}' into {branch_name}\n".encode()


def _merge(ctx: AlignContext, request: AlignRequest, branch: pygit2.Commit, target: pygit2.Commit) -> _Outcome:
    repo = ctx.repo
    walker = repo.walk(branch.id, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE)
    walker.hide(target.id)
    own = list(walker)
    linear = all(len(c.parent_ids) <= 1 for c in own)
    slow = 0
    if linear and own and own[0].parent_ids:
        # A linear branch has exactly one merge base: the parent of its first own commit.
        base = own[0].parents[0]
        # `git merge` runs in the branch's working tree: its attributes are the branch's.
        changes = changed_entries(repo, base.tree, branch.tree)
        attribute_dirs = _attribute_dirs(ctx, target.tree, list(changes))
        tree_id, conflicted, used_slow = _merge_one_side(
            ctx,
            base=base.tree,
            ours=target.tree,
            theirs=branch.tree,
            attributes=_attributes_of(repo, branch.tree, attribute_dirs),
            changes=changes,
            swapped=True,
        )
        slow += used_slow
    else:
        ort.process_for(repo).use_attributes(_attributes_of(repo, branch.tree, _attribute_dirs(ctx, branch.tree, [])))
        outcome = ort.merge_commits(repo, ours=branch.id, theirs=target.id)
        tree_id, conflicted = outcome.tree, outcome.conflicted_paths
        slow += 1
    if tree_id is None:
        conflicts = [Conflict(path=p, commit=Sha(str(branch.id))) for p in conflicted]
        return _Outcome(Status.CONFLICT, None, conflicts=conflicts, slow_merges=slow, strategy=Strategy.MERGE)
    identity = ctx.identity.signature_line()
    new_id = write_commit(
        repo,
        tree=tree_id,
        parents=[branch.id, target.id],
        author=identity,
        committer=identity,
        message=_merge_message(
            request.target if str(target.id) == request.target_sha or not request.parent else request.parent,
            request.branch,
        ),
    )
    return _Outcome(Status.ALIGNED, new_id, replayed=1, slow_merges=slow, strategy=Strategy.MERGE)


def _untouched_by_target(ctx: AlignContext, target: pygit2.Commit, commits: list[pygit2.Commit]) -> bool:
    """True when nothing any of `commits` (a linear range, oldest first) changes meets what
    the target changed since the branch forked: then every replay takes the fast path and
    is clean, which is all a forecast needs to know (the replay itself can be skipped)."""
    repo = ctx.repo
    if not commits or not commits[0].parent_ids:
        return False
    fork_tree = repo[commits[0].parent_ids[0]].peel(pygit2.Tree)
    for commit in commits:
        if is_empty(commit):
            continue
        changes = ctx.cache.entries(repo, commit)
        if not all(path.isascii() or _utf8(path) for path in changes):
            return False
        if interactions(fork_tree, target.tree, commit.tree, changes) != set():
            return False
    return True


def _align_stacked(
    ctx: AlignContext, request: AlignRequest, branch: pygit2.Commit, target: pygit2.Commit, onto: pygit2.Commit
) -> _Outcome:
    """A branch stacked on another that moved: its own commits go onto the other's aligned
    tip (rebase), or that tip is merged into it (merge)."""
    repo = ctx.repo
    below = pygit2.Oid(hex=request.parent_old) if request.parent_old else None
    if request.strategy == Strategy.MERGE:
        if branch.id == onto.id or repo.descendant_of(branch.id, onto.id):
            return _Outcome(Status.UP_TO_DATE, branch.id)
        if repo.descendant_of(onto.id, branch.id):
            return _Outcome(Status.MERGED if onto.id == target.id else Status.ALIGNED, onto.id)
        return _merge(ctx, request, branch, onto)
    rebased = _rebase(ctx, branch, target, onto=onto, below=below)
    if request.strategy == Strategy.AUTO and rebased.status == Status.CONFLICT:
        merged = _merge(ctx, request, branch, onto)
        if merged.status != Status.CONFLICT:
            return merged
    return rebased


def _linear_since(repo: pygit2.Repository, branch: pygit2.Commit, target: pygit2.Commit) -> bool:
    walker = repo.walk(branch.id, pygit2.enums.SortMode.NONE)
    walker.hide(target.id)
    return all(len(commit.parent_ids) <= 1 for commit in walker)


def align_branch(ctx: AlignContext, request: AlignRequest) -> BranchResult:
    """Align one branch; every failure becomes a result, never an exception."""
    started = time.perf_counter()
    result = BranchResult(
        branch_name=request.branch,
        refname=request.refname,
        target=request.target,
        status=Status.ERROR,
        old_sha=request.old_sha,
        new_sha=None,
    )
    try:
        repo = ctx.repo
        branch: pygit2.Commit = repo[request.old_sha]  # type: ignore[assignment]
        target: pygit2.Commit = repo[request.target_sha]  # type: ignore[assignment]
        outcome = _align(ctx, request, branch, target)
        result.status = outcome.status
        result.new_sha = Sha(str(outcome.new)) if outcome.new is not None else None
        result.commits_replayed = outcome.replayed
        result.commits_skipped = outcome.skipped
        result.conflicts = outcome.conflicts
        result.slow_merges = outcome.slow_merges
        result.strategy_used = outcome.strategy
        result.replayed_commits = outcome.replayed_ids
        if outcome.status == Status.CONFLICT:
            result.errors_detected = ["merge_conflict"]
    except Exception as error:  # noqa: BLE001 - a broken branch must not stop the run
        result.status = Status.ERROR
        result.error_message = f"{type(error).__name__}: {error}"
        result.errors_detected = ["alignment_error"]
    result.integration_time_seconds = round(time.perf_counter() - started, 6)
    return result


def _align(ctx: AlignContext, request: AlignRequest, branch: pygit2.Commit, target: pygit2.Commit) -> _Outcome:
    repo = ctx.repo
    if request.onto is not None and request.onto != request.parent_old:
        return _align_stacked(ctx, request, branch, target, repo[request.onto])  # type: ignore[arg-type]
    known = request.ahead >= 0 and request.behind >= 0
    contains_target = (
        request.behind == 0 if known else branch.id == target.id or repo.descendant_of(branch.id, target.id)
    )
    # git rebase leaves a branch that contains its target alone only when its own commits
    # are linear; with merge commits among them it replays (and linearises) them.
    if contains_target and (request.strategy == Strategy.MERGE or _linear_since(repo, branch, target)):
        return _Outcome(Status.UP_TO_DATE, branch.id)
    if request.ahead == 0 if known else repo.descendant_of(target.id, branch.id):
        return _Outcome(Status.MERGED, target.id)  # git fast-forwards: nothing of its own left
    if request.strategy == Strategy.MERGE:
        return _merge(ctx, request, branch, target)
    fork_point = pygit2.Oid(hex=request.fork_point) if request.fork_point else None
    rebased = _rebase(ctx, branch, target, forecast=request.forecast, fork_point=fork_point)
    if request.strategy == Strategy.AUTO and rebased.status == Status.CONFLICT and contains_target:
        return _Outcome(Status.UP_TO_DATE, branch.id)  # what `git merge` says of it
    if request.strategy == Strategy.AUTO and rebased.status == Status.CONFLICT:
        merged = _merge(ctx, request, branch, target)
        if merged.status != Status.CONFLICT:
            return merged
        rebased.slow_merges += merged.slow_merges
    return rebased
