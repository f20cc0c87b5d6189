"""Which branches a run takes without --branch: not the targets, not the long-lived
branches (`[plan] long_lived`), not the bases other branches fork from; with --branch,
exactly what matches. `palign plan` says what it left out and why."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from palign.cli.output import left_out_lines
from palign.config import DEFAULT_LONG_LIVED
from palign.errors import NoBranchMatched
from palign.planner.model import BranchFacts, LeftOut, TargetFacts
from palign.planner.selection import matching_glob, shared_bases
from palign.prepare import select_branches
from tests.conftest import run_palign
from tests.gitrepo import GitRepo

LONG_LIVED = [
    *("main", "master", "trunk", "devel", "develop", "next", "stable", "gh-pages", "production"),  # devel: ansible
    *("9.1.x", "1.x", "10.2.x", "v18.x", "1.14", "5.1", "12.0"),  # pytest, node, sympy
    *("stable-2.17", "stable/5.1.x", "release1.6.0", "release/2.x", "release-1.2", "releases/2024"),
    *("maint", "maint-2.3", "maintenance/1.x"),
]
PULL_REQUESTS = [
    *("feature/x", "fix/ellipsis", "123-fix-py3.12", "1.14-fix", "v2-rewrite", "hotfix/crash", "module-pytest"),
    *("patchback/backports/9.1.x/0a1b2c/pr-14000", "dependabot/pip/requests-2.32", "update-plugin-list/patch-1"),
]


@pytest.mark.parametrize("name", LONG_LIVED)
def test_default_globs_name_trunks_maintenance_and_release_lines(name: str) -> None:
    assert matching_glob(f"refs/heads/{name}", DEFAULT_LONG_LIVED) is not None


@pytest.mark.parametrize("name", PULL_REQUESTS)
def test_default_globs_leave_pull_requests_alone(name: str) -> None:
    assert matching_glob(f"refs/heads/{name}", DEFAULT_LONG_LIVED) is None


def test_globs_match_short_names_of_branches_or_full_ref_names() -> None:
    assert matching_glob("refs/heads/9.1.x", ["main", "[0-9]*.x"]) == "[0-9]*.x"
    assert matching_glob("refs/remotes/origin/9.1.x", ["[0-9]*.x"]) is None  # short globs: branches only
    assert matching_glob("refs/remotes/origin/9.1.x", ["refs/remotes/*/[0-9]*.x"]) == "refs/remotes/*/[0-9]*.x"


SHA = "1" * 40
REFS = {f"refs/heads/{name}": SHA for name in ("main", "9.1.x", "stable-2.17", "feature/a", "fix/b")}


def test_select_branches_leaves_long_lived_ones_out_unless_asked() -> None:
    main = {"refs/heads/main"}
    assert select_branches(REFS, (), main, DEFAULT_LONG_LIVED) == ["refs/heads/feature/a", "refs/heads/fix/b"]
    assert select_branches(REFS, ("*",), main, DEFAULT_LONG_LIVED) == [
        "refs/heads/9.1.x",
        "refs/heads/feature/a",
        "refs/heads/fix/b",
        "refs/heads/stable-2.17",
    ]
    assert select_branches(REFS, ("9.1.x",), main, DEFAULT_LONG_LIVED) == ["refs/heads/9.1.x"]
    only_long_lived = {ref: SHA for ref in REFS if "/f" not in ref}
    with pytest.raises(NoBranchMatched, match=r"long-lived .*\(9\.1\.x, stable-2\.17\); select branches with"):
        select_branches(only_long_lived, (), main, DEFAULT_LONG_LIVED)


def _facts(name: str, ahead: int, base: str) -> BranchFacts:
    seen = TargetFacts(ahead, 1, True, ahead == 0, ahead == 0, False, base)
    return BranchFacts(f"refs/heads/{name}", name, hashlib.sha1(name.encode()).hexdigest(), {"main": seen}, 0)


def test_a_base_is_a_branch_with_nothing_of_its_own_that_others_fork_at() -> None:
    trail = _facts("trail", 0, "c1")
    fork_sha = trail.sha
    on_trail = _facts("on-trail", 2, fork_sha)
    merged = _facts("merged", 0, "c2")  # nobody forks at it: stays (category merged)
    empty_fork = _facts("empty-fork", 0, fork_sha)  # forks there too, but with nothing of its own
    assert shared_bases([trail, on_trail, merged, empty_fork], ["main"]) == [LeftOut("trail", "base", "main")]
    assert shared_bases([trail, merged], ["main"]) == []


def test_the_plan_table_names_a_few_branches_per_reason() -> None:
    left_out = [LeftOut(f"{n}.x", "long_lived", "[0-9]*.x") for n in range(1, 10)] + [LeftOut("trail", "base", "main")]
    assert left_out_lines(left_out) == [
        "left out: 1.x, 2.x, 3.x, 4.x, 5.x, 6.x and 3 more (long-lived: matches '[0-9]*.x')",
        "          trail (others fork at its tip, nothing of its own against main)",
        "          (take them with --branch GLOB; [plan] long_lived in palign.toml names the long-lived branches)",
    ]
    assert left_out_lines([]) == []


# ---- through the CLI ------------------------------------------------------------------


def _commit_file(repo: GitRepo, path: str) -> str:
    repo.write(path, f"{path}\n")
    return repo.commit(path)


@pytest.fixture
def project(tmp_path: Path) -> GitRepo:
    """main, long-lived branches of several projects' naming, a `trail` branch that pull
    requests fork from, a merged branch, and pull requests."""
    repo = GitRepo.init(tmp_path / "repo")
    _commit_file(repo, "README")
    for name in ("9.1.x", "stable-2.17", "stable/5.1.x", "release1.6.0", "1.14", "develop"):
        repo.new_branch(name, "main")
        _commit_file(repo, f"{name.replace('/', '-')}.txt")
    repo.checkout("main")
    _commit_file(repo, "c1")
    repo.branch("trail")
    repo.new_branch("feature/x")
    _commit_file(repo, "x.txt")
    repo.checkout("main")
    _commit_file(repo, "c2")
    repo.new_branch("123-fix-py3.12")
    _commit_file(repo, "fix.txt")
    repo.new_branch("done", "main")
    _commit_file(repo, "done.txt")
    repo.checkout("main")
    repo.merge("done", "Merge pull request #4 from done")
    _commit_file(repo, "c3")
    return repo


def _plan(repo: GitRepo, *args: str) -> dict[str, object]:
    result = run_palign("plan", str(repo.path), "--onto", "main", "--json", "--no-forecast", *args)
    assert result.code == 0, result.stderr
    plan: dict[str, object] = json.loads(result.stdout)
    return plan


def _names(plan: dict[str, object]) -> list[str]:
    return sorted(b["branch_name"] for b in plan["branches"])  # type: ignore[attr-defined]


def test_plan_leaves_long_lived_branches_and_bases_out_and_says_why(project: GitRepo) -> None:
    plan = _plan(project)
    assert _names(plan) == ["123-fix-py3.12", "done", "feature/x"]
    assert plan["left_out"] == [
        {"branch_name": "1.14", "reason": "long_lived", "detail": "[0-9].[0-9][0-9]"},
        {"branch_name": "9.1.x", "reason": "long_lived", "detail": "[0-9]*.x"},
        {"branch_name": "develop", "reason": "long_lived", "detail": "develop"},
        {"branch_name": "release1.6.0", "reason": "long_lived", "detail": "release*"},
        {"branch_name": "stable-2.17", "reason": "long_lived", "detail": "stable-*"},
        {"branch_name": "stable/5.1.x", "reason": "long_lived", "detail": "stable/*"},
        {"branch_name": "trail", "reason": "base", "detail": "main"},
    ]
    shown = run_palign("plan", str(project.path), "--onto", "main", "--no-forecast")
    assert shown.code == 0, shown.stderr
    assert shown.stdout.splitlines()[-8:] == [
        "left out: 1.14 (long-lived: matches '[0-9].[0-9][0-9]')",
        "          9.1.x (long-lived: matches '[0-9]*.x')",
        "          develop (long-lived: matches 'develop')",
        "          release1.6.0 (long-lived: matches 'release*')",
        "          stable-2.17 (long-lived: matches 'stable-*')",
        "          stable/5.1.x (long-lived: matches 'stable/*')",
        "          trail (others fork at its tip, nothing of its own against main)",
        "          (take them with --branch GLOB; [plan] long_lived in palign.toml names the long-lived branches)",
    ]


def test_branch_globs_select_exactly_what_matches(project: GitRepo) -> None:
    every = _plan(project, "--branch", "*")
    assert _names(every) == sorted(
        ["9.1.x", "stable-2.17", "stable/5.1.x", "release1.6.0", "1.14", "develop", "trail", "feature/x"]
        + ["123-fix-py3.12", "done"]
    )
    assert every["left_out"] == []
    assert _names(_plan(project, "--branch", "9.1.x", "--branch", "trail")) == ["9.1.x", "trail"]


def test_palign_toml_names_the_long_lived_branches(project: GitRepo, tmp_path: Path) -> None:
    config = tmp_path / "palign.toml"
    config.write_text('[plan]\nlong_lived = ["stable*"]\n')
    plan = _plan(project, "--config", str(config))
    assert _names(plan) == ["1.14", "123-fix-py3.12", "9.1.x", "develop", "done", "feature/x", "release1.6.0"]
    assert [(b["branch_name"], b["detail"]) for b in plan["left_out"]] == [  # type: ignore[attr-defined]
        ("stable-2.17", "stable*"),
        ("stable/5.1.x", "stable*"),
        ("trail", "main"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[plan]\nstale_days = 30\nlong_lived = "main"\n',
            "line 3: [plan] long_lived must be a list of branch globs",
        ),
        ('[plan]\nlong_lived = ["main", ""]\n', "line 2: [plan] long_lived must be a list of branch globs"),
        ('[plan]\nlong_live = ["main"]\n', "line 2: unknown key 'long_live' in [plan]; did you mean 'long_lived'?"),
    ],
)
def test_a_bad_long_lived_setting_is_refused_with_its_line(
    project: GitRepo, tmp_path: Path, text: str, message: str
) -> None:
    config = tmp_path / "palign.toml"
    config.write_text(text)
    result = run_palign("plan", str(project.path), "--onto", "main", "--config", str(config))
    assert result.code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_repository_of_long_lived_branches_only_is_refused_in_one_line(tmp_path: Path) -> None:
    repo = GitRepo.init(tmp_path / "repo")
    _commit_file(repo, "README")
    repo.new_branch("9.1.x")
    _commit_file(repo, "release.txt")
    result = run_palign("plan", str(repo.path), "--onto", "main")
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [
        "palign: error: no branch to align: every branch besides the targets is long-lived ([plan] long_lived) "
        "or a base others fork from (9.1.x); select branches with --branch"
    ]
