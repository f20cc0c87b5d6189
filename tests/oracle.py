"""git itself as the oracle: what `git rebase` / `git merge` give, and palign checked against it.

Each oracle call clones the repository under test (a `--shared` local clone: no object is
copied, nothing is written to the original), checks the branch out by its full refname
and runs the real command. Only refnames and shas are ever passed to git.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pygit2

from palign.engine import ort
from palign.engine.align import AlignContext, align_branch
from palign.model import AlignRequest, BranchResult, Identity, Sha, Status, Strategy
from tests.gitrepo import GitError, hermetic_env, run_git

BRANCH_PREFIX = "refs/heads/"


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    tree: str
    parents: tuple[str, ...]
    author: bytes
    encoding: bytes | None
    message: bytes


def parse_commit(sha: str, raw: bytes) -> CommitInfo:
    header, _, message = raw.partition(b"\n\n")
    tree, parents, author, encoding = "", [], b"", None
    for line in header.split(b"\n"):
        if line.startswith(b"tree "):
            tree = line[5:].decode()
        elif line.startswith(b"parent "):
            parents.append(line[7:].decode())
        elif line.startswith(b"author "):
            author = line[7:]
        elif line.startswith(b"encoding "):
            encoding = line[9:]
    return CommitInfo(sha=sha, tree=tree, parents=tuple(parents), author=author, encoding=encoding, message=message)


@dataclass
class GitResult:
    """What git did. Iterating gives (ok, tree, commits, stop_commit, conflicted_paths)."""

    ok: bool
    tree: str | None
    commits: list[CommitInfo]  # rebase: target..HEAD oldest first; merge: the merge commit, if one was made
    stop_commit: str | None
    conflicted_paths: frozenset[str]
    status: Status  # the verdict palign must give
    head: str | None
    branch_sha: str
    target_sha: str
    range_non_merges: int = 0  # non-merge commits in target..branch (what a rebase considers)
    output: str = field(default="", repr=False)

    def __iter__(self) -> Iterator[object]:
        return iter((self.ok, self.tree, self.commits, self.stop_commit, self.conflicted_paths))


def _full(name: str) -> str:
    return name if name.startswith("refs/") else BRANCH_PREFIX + name


# Config that describes the repository itself, not how git merges or commits in it.
_CLONE_OWN_CONFIG = (
    "core.bare",
    "core.worktree",
    "core.repositoryformatversion",
    "core.logallrefupdates",
    "core.filemode",
    "core.sharedrepository",
    "remote.",
    "branch.",
    "extensions.",
)


class _Scratch:
    """A throw-away clone of `repo_path` with `branch` checked out and `target` present,
    both under their own refnames, at the shas they have in the original."""

    def __init__(self, repo_path: str | os.PathLike[str], branch: str, target: str):
        self.src = os.fspath(repo_path)
        self.branch_ref = _full(branch)
        self.target_ref = _full(target)
        self.dir = tempfile.mkdtemp(prefix="palign-oracle-")
        self.path = os.path.join(self.dir, "clone")

    def __enter__(self) -> _Scratch:
        self.branch_sha = self._src_rev(self.branch_ref)
        self.target_sha = self._src_rev(self.target_ref)
        self.git("clone", "-q", "--shared", "--no-checkout", "--template=", "--", self.src, self.path, cwd=self.dir)
        self._copy_repository_settings()
        self.git("update-ref", "--no-deref", "HEAD", self.branch_sha)  # detach first: main may be the target
        self.git("update-ref", self.target_ref, self.target_sha)
        self.git("update-ref", self.branch_ref, self.branch_sha)
        self.git("symbolic-ref", "HEAD", self.branch_ref)
        self.git("reset", "-q", "--hard")
        return self

    def _copy_repository_settings(self) -> None:
        """git run in the repository itself would read its config (merge.*, i18n.*,
        commit.cleanup...) and $GIT_DIR/info/attributes: give the clone the same."""
        listing = run_git(self.src, "config", "--local", "--list", "-z", check=False).stdout
        for item in listing.split(b"\0"):
            if not item:
                continue
            key, _, value = item.partition(b"\n")
            name = key.decode("utf-8", "surrogateescape")
            if name.startswith(_CLONE_OWN_CONFIG):
                continue
            self.git("config", "--add", name, value.decode("utf-8", "surrogateescape"))
        src_git_dir = run_git(self.src, "rev-parse", "--absolute-git-dir").stdout.decode().strip()
        info = os.path.join(src_git_dir, "info", "attributes")
        if os.path.exists(info):
            os.makedirs(os.path.join(self.path, ".git", "info"), exist_ok=True)
            shutil.copyfile(info, os.path.join(self.path, ".git", "info", "attributes"))

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _src_rev(self, ref: str) -> str:
        proc = run_git(self.src, "rev-parse", "--verify", "-q", "--end-of-options", ref + "^{commit}")
        return proc.stdout.decode().strip()

    def git(self, *args: str, check: bool = True, cwd: str | None = None):
        return run_git(cwd or self.path, *args, check=check, env=hermetic_env())

    def out(self, *args: str) -> str:
        return self.git(*args).stdout.decode().strip()

    def exists(self, rel: str) -> bool:
        git_dir = os.path.join(self.path, ".git")
        return os.path.exists(os.path.join(git_dir, rel))

    def rev_or_none(self, rev: str) -> str | None:
        proc = self.git("rev-parse", "-q", "--verify", "--end-of-options", rev, check=False)
        return proc.stdout.decode().strip() if proc.returncode == 0 else None

    def unmerged_paths(self) -> frozenset[str]:
        raw = self.git("diff", "--name-only", "-z", "--diff-filter=U").stdout
        return frozenset(p.decode("utf-8", "surrogateescape") for p in raw.split(b"\0") if p)

    def commit_info(self, sha: str) -> CommitInfo:
        return parse_commit(sha, self.git("cat-file", "commit", sha).stdout)

    def range_non_merges(self) -> int:
        return int(self.out("rev-list", "--count", "--no-merges", self.branch_sha, "^" + self.target_sha))


def git_rebase_result(repo_path: str | os.PathLike[str], branch: str, target: str) -> GitResult:
    """`git rebase TARGET` with BRANCH checked out."""
    with _Scratch(repo_path, branch, target) as s:
        proc = s.git("rebase", s.target_ref, check=False)
        output = (proc.stdout + proc.stderr).decode(errors="replace")
        range_count = s.range_non_merges()
        if proc.returncode != 0:
            if not s.exists("rebase-merge"):
                raise AssertionError(f"git rebase failed without stopping on a conflict:\n{output}")
            stop = s.rev_or_none("REBASE_HEAD")
            paths = s.unmerged_paths()
            s.git("rebase", "--abort", check=False)  # best effort: the clone is thrown away
            return GitResult(
                False, None, [], stop, paths, Status.CONFLICT, None, s.branch_sha, s.target_sha, range_count, output
            )
        head = s.out("rev-parse", "HEAD")
        tree = s.out("rev-parse", "HEAD^{tree}")
        if head == s.branch_sha:
            status = Status.UP_TO_DATE
        elif head == s.target_sha:
            status = Status.MERGED
        else:
            status = Status.ALIGNED
        commits: list[CommitInfo] = []
        if status == Status.ALIGNED:
            shas = s.out("rev-list", "--reverse", "--topo-order", head, "^" + s.target_sha).split()
            commits = [s.commit_info(sha) for sha in shas]
        return GitResult(
            True, tree, commits, None, frozenset(), status, head, s.branch_sha, s.target_sha, range_count, output
        )


def git_merge_result(repo_path: str | os.PathLike[str], branch: str, target: str) -> GitResult:
    """`git merge --no-edit TARGET` with BRANCH checked out."""
    with _Scratch(repo_path, branch, target) as s:
        proc = s.git("merge", "--no-edit", s.target_ref, check=False)
        output = (proc.stdout + proc.stderr).decode(errors="replace")
        if proc.returncode != 0:
            if not s.exists("MERGE_HEAD"):
                raise AssertionError(f"git merge failed without a conflict:\n{output}")
            paths = s.unmerged_paths()
            s.git("merge", "--abort", check=False)  # best effort (fails on some D/F states)
            return GitResult(
                False, None, [], s.branch_sha, paths, Status.CONFLICT, None, s.branch_sha, s.target_sha, 0, output
            )
        head = s.out("rev-parse", "HEAD")
        tree = s.out("rev-parse", "HEAD^{tree}")
        commits: list[CommitInfo] = []
        if head == s.branch_sha:
            status = Status.UP_TO_DATE
        elif head == s.target_sha:
            status = Status.MERGED
        else:
            status = Status.ALIGNED
            commits = [s.commit_info(head)]
        return GitResult(True, tree, commits, None, frozenset(), status, head, s.branch_sha, s.target_sha, 0, output)


# ---------------------------------------------------------------------------------------
# palign against the oracle
# ---------------------------------------------------------------------------------------

TEST_IDENTITY = Identity("Tester", "tester@example.com")


@dataclass
class Expectation:
    """git's verdict for one strategy, with the result it was taken from."""

    strategy: Strategy
    git: GitResult
    strategy_used: Strategy | None  # only checked for ALIGNED results


def expected(strategy: Strategy, rebase: GitResult, merge: GitResult) -> Expectation:
    if strategy == Strategy.REBASE:
        return Expectation(strategy, rebase, Strategy.REBASE)
    if strategy == Strategy.MERGE:
        return Expectation(strategy, merge, Strategy.MERGE)
    if rebase.ok or not merge.ok:
        return Expectation(strategy, rebase, Strategy.REBASE)
    return Expectation(strategy, merge, Strategy.MERGE)


_REQUEST_FIELDS = {f.name for f in dataclasses.fields(AlignRequest)}
# The service passes ahead/behind counts it already knows; without them the engine finds
# out itself. Both ways must give git's answer.
REQUEST_KNOWS_COUNTS = {"ahead", "behind"} <= _REQUEST_FIELDS


def run_engine(
    repo_path: str | os.PathLike[str],
    branch: str,
    target: str,
    strategy: Strategy,
    ctx: AlignContext | None = None,
    *,
    with_counts: bool = False,
) -> BranchResult:
    repo = ctx.repo if ctx is not None else pygit2.Repository(os.fspath(repo_path))
    ctx = ctx or AlignContext(repo, TEST_IDENTITY)
    branch_ref, target_ref = _full(branch), _full(target)
    branch_id = repo.references[branch_ref].peel(pygit2.Commit).id
    target_id = repo.references[target_ref].peel(pygit2.Commit).id
    extra = {}
    if with_counts:
        # What the planner tells a request: its counts and its fork point.
        ahead, behind = repo.ahead_behind(branch_id, target_id)
        base = repo.merge_base(branch_id, target_id)
        extra = {"ahead": ahead, "behind": behind, "fork_point": Sha(str(base)) if base is not None else None}
    request = AlignRequest(
        refname=branch_ref,
        old_sha=Sha(str(branch_id)),
        target=target_ref,
        target_sha=Sha(str(target_id)),
        strategy=strategy,
        **extra,
    )
    return align_branch(ctx, request)


def close_engine_processes() -> None:
    """The engine may keep a git process per repository (ort's merge-tree server); a
    test suite opens hundreds of repositories, so close them after each comparison."""
    closer = getattr(ort, "close_all", None)
    if closer is not None:
        closer()


def _engine_commit(repo: pygit2.Repository, sha: str) -> CommitInfo:
    return parse_commit(sha, repo.odb.read(pygit2.Oid(hex=sha))[1])


def _describe(result: BranchResult, exp: Expectation) -> str:
    g = exp.git
    return (
        f"\nstrategy={exp.strategy.value} engine: status={result.status.value} new={result.new_sha} "
        f"replayed={result.commits_replayed} skipped={result.commits_skipped} used={result.strategy_used} "
        f"conflicts={[(c.path, c.commit) for c in result.conflicts]} error={result.error_message}\n"
        f"git: status={g.status.value} ok={g.ok} head={g.head} tree={g.tree} stop={g.stop_commit} "
        f"paths={sorted(g.conflicted_paths)} commits={len(g.commits)}\n--- git output ---\n{g.output}"
    )


PathNormalizer = Callable[[str], str]


def df_label_agnostic(path: str) -> str:
    """For file/directory conflicts git moves one side to `PATH~LABEL`, LABEL being a
    branch or commit description; palign reports the path itself: compare without it."""
    return re.sub(r"~[^/]*$", "", path)


def mismatches(
    repo: pygit2.Repository,
    result: BranchResult,
    exp: Expectation,
    *,
    check_paths: bool = True,
    normalize: PathNormalizer | None = None,
) -> list[str]:
    """Everything on which palign's result differs from git's (empty when they agree).
    `check_paths=False` leaves out the conflicted-path set and stop commit (verdict and
    trees are always compared); `normalize` maps both sides' conflicted paths first."""
    g = exp.git
    problems: list[str] = []
    if result.status != g.status:
        return [f"status {result.status.value} != git's {g.status.value}"]
    if g.status == Status.CONFLICT:
        if result.new_sha is not None:
            problems.append(f"conflict with a new sha {result.new_sha}")
        if check_paths:
            commits = {c.commit for c in result.conflicts}
            if g.stop_commit is not None and commits != {g.stop_commit}:
                problems.append(f"conflict commit {sorted(commits)} != git's {g.stop_commit}")
            norm = normalize or (lambda p: p)
            paths = {norm(c.path) for c in result.conflicts}
            git_paths = {norm(p) for p in g.conflicted_paths}
            if paths != git_paths:
                problems.append(f"conflicted paths {sorted(paths)} != git's {sorted(git_paths)}")
        return problems
    if g.status == Status.UP_TO_DATE:
        if result.new_sha != g.branch_sha:
            problems.append(f"up to date but new_sha {result.new_sha} != branch {g.branch_sha}")
        return problems
    if g.status == Status.MERGED:
        if result.new_sha != g.target_sha:
            problems.append(f"merged but new_sha {result.new_sha} != target {g.target_sha}")
        if result.strategy_used == Strategy.REBASE and result.commits_skipped != g.range_non_merges:
            problems.append(f"commits_skipped {result.commits_skipped} != {g.range_non_merges} (all dropped)")
        return problems
    # ALIGNED
    if result.new_sha is None:
        return ["aligned without a new sha"]
    new_tree = str(repo[result.new_sha].peel(pygit2.Tree).id)
    if new_tree != g.tree:
        problems.append(f"tree {new_tree} != git's {g.tree}")
    if result.strategy_used != exp.strategy_used:
        problems.append(f"strategy_used {result.strategy_used} != {exp.strategy_used}")
    if exp.strategy_used == Strategy.MERGE:
        made = _engine_commit(repo, result.new_sha)
        if list(made.parents) != [g.branch_sha, g.target_sha]:
            problems.append(f"merge parents {made.parents} != [branch, target]")
        return problems
    # a rebase: walk the engine's new commits back to the target
    chain: list[CommitInfo] = []
    sha = result.new_sha
    while sha != g.target_sha and len(chain) <= len(g.commits) + 50:
        info = _engine_commit(repo, sha)
        if len(info.parents) != 1:
            problems.append(f"replayed commit {sha} has parents {info.parents}")
            break
        chain.append(info)
        sha = info.parents[0]
    chain.reverse()
    if result.commits_replayed != len(g.commits):
        problems.append(f"commits_replayed {result.commits_replayed} != git's {len(g.commits)}")
    if len(chain) != len(g.commits):
        problems.append(f"{len(chain)} new commits on the target != git's {len(g.commits)}")
    expected_skipped = g.range_non_merges - len(g.commits)
    if result.commits_skipped != expected_skipped:
        problems.append(f"commits_skipped {result.commits_skipped} != {expected_skipped}")
    for index, (mine, theirs) in enumerate(zip(chain, g.commits, strict=False)):  # lengths checked above
        if mine.message != theirs.message:
            problems.append(f"commit {index}: message {mine.message!r} != git's {theirs.message!r}")
        if mine.author != theirs.author:
            problems.append(f"commit {index}: author {mine.author!r} != git's {theirs.author!r}")
        if mine.encoding != theirs.encoding:
            problems.append(f"commit {index}: encoding header {mine.encoding!r} != git's {theirs.encoding!r}")
        if mine.tree != theirs.tree:
            problems.append(f"commit {index}: tree {mine.tree} != git's {theirs.tree}")
    return problems


def _refs(repo: pygit2.Repository) -> dict[str, str]:
    found = {}
    for name in repo.references:
        ref = repo.references[name]
        found[name] = str(ref.target)
    return found


@dataclass
class Comparison:
    strategy: Strategy
    result: BranchResult
    expectation: Expectation
    problems: list[str]

    def report(self) -> str:
        return "; ".join(self.problems) + _describe(self.result, self.expectation)


def compare_all(
    repo_path: str | os.PathLike[str],
    branch: str,
    target: str = "main",
    strategies: tuple[Strategy, ...] = (Strategy.REBASE, Strategy.MERGE, Strategy.AUTO),
    *,
    check_paths: bool = True,
    normalize: PathNormalizer | None = None,
    rebase: GitResult | None = None,
    merge: GitResult | None = None,
) -> list[Comparison]:
    """Run git (rebase and merge, unless given) and palign (each strategy) on the same branch."""
    rebase = rebase or git_rebase_result(repo_path, branch, target)
    merge = merge or git_merge_result(repo_path, branch, target)
    repo = pygit2.Repository(os.fspath(repo_path))
    ctx = AlignContext(repo, TEST_IDENTITY)
    refs_before = _refs(repo)
    out = []
    try:
        for strategy in strategies:
            exp = expected(strategy, rebase, merge)
            for with_counts in (False, True) if REQUEST_KNOWS_COUNTS else (False,):
                result = run_engine(repo_path, branch, target, strategy, ctx, with_counts=with_counts)
                problems = mismatches(repo, result, exp, check_paths=check_paths, normalize=normalize)
                if result.status == Status.ERROR:
                    problems.insert(0, f"engine error: {result.error_message}")
                if with_counts:
                    problems = [f"(request with ahead/behind) {p}" for p in problems]
                    if out[-1].problems:  # the same failure without counts is reported already
                        continue
                out.append(Comparison(strategy, result, exp, problems))
    finally:
        close_engine_processes()
    if _refs(repo) != refs_before:
        out[-1].problems.append("the engine changed references")
    return out


def assert_matches_git(
    repo_path: str | os.PathLike[str],
    branch: str,
    target: str = "main",
    strategies: tuple[Strategy, ...] = (Strategy.REBASE, Strategy.MERGE, Strategy.AUTO),
    *,
    check_paths: bool = True,
    normalize: PathNormalizer | None = None,
    rebase: GitResult | None = None,
    merge: GitResult | None = None,
) -> list[Comparison]:
    comparisons = compare_all(
        repo_path, branch, target, strategies, check_paths=check_paths, normalize=normalize, rebase=rebase, merge=merge
    )
    failed = [c for c in comparisons if c.problems]
    assert not failed, "palign differs from git:\n" + "\n\n".join(c.report() for c in failed)
    return comparisons


__all__ = [
    "CommitInfo",
    "GitError",
    "PathNormalizer",
    "GitResult",
    "git_rebase_result",
    "git_merge_result",
    "expected",
    "run_engine",
    "mismatches",
    "df_label_agnostic",
    "compare_all",
    "assert_matches_git",
    "TEST_IDENTITY",
]
