"""Bases a repository already records for its branches: git's upstream config and a
git-machete layout (`.git/machete`) decide targets and stacks where they name a target of
the run or another selected branch, below palign.toml and above inference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from palign.planner.model import DeclaredBase
from palign.planner.plan import make_plan
from tests.conftest import branches_of, git_out, read_report, refs_snapshot, run_palign
from tests.gitrepo import GitRepo
from tests.test_planner_pure import MAIN, bf
from tests.test_planner_targets import maintained_project


def _commit(repo: GitRepo, path: str) -> str:
    repo.write(path, f"{path}\n")
    return repo.commit(path)


def plan_of(repo: Path, *args: str) -> dict[str, dict[str, Any]]:
    result = run_palign("plan", str(repo), *args, "--no-forecast", "--json")
    assert result.code == 0, result.stderr
    return {b["branch_name"]: b for b in json.loads(result.stdout)["branches"]}


def summary(branch: dict[str, Any]) -> tuple[str, float, str | None, list[str]]:
    return branch["assigned_target"], branch["confidence"], branch["parent"], branch["tags"]


def table_row(repo: Path, branch: str, *args: str) -> list[str]:
    result = run_palign("plan", str(repo), *args, "--no-forecast")
    assert result.code == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:4] == ["branch", "target", "conf", "from"]
    return next(row.split() for row in rows if row.split()[0] == branch)


# ---- git's upstream ---------------------------------------------------------------


def test_an_upstream_on_a_release_branch_is_the_target(tmp_path: Path) -> None:
    repo = maintained_project(tmp_path / "repo")
    # Forked before stable was cut: a tie, which inference gives to the first --onto.
    repo.git("branch", "--set-upstream-to=stable", "pr/old-fork")
    onto = ["--onto", "main", "--onto", "stable", "--branch", "pr/*"]
    plan = plan_of(repo.path, *onto)
    assert summary(plan["pr/old-fork"]) == ("stable", 1.0, None, ["target-from-upstream"])
    assert plan["pr/recent"]["assigned_target"] == "main"  # no upstream: inferred as before
    assert table_row(repo.path, "pr/old-fork", *onto)[:4] == ["pr/old-fork", "stable", "1.00", "upstream"]


@pytest.mark.parametrize("release", ["stable", "origin/stable"])
def test_a_remote_upstream_names_the_target_its_branch_maps_to(tmp_path: Path, release: str) -> None:
    origin = maintained_project(tmp_path / "origin")
    clone = tmp_path / "clone"
    origin.git("clone", "-q", "--", str(origin.path), str(clone))
    work = GitRepo(clone)
    work.git("branch", "--no-track", "stable", "origin/stable")
    # git checkout -b pr/old-fork --track origin/stable, on the old fork's commit; and a
    # branch pushed with -u, tracking its own name: that declares nothing.
    work.git("branch", "--no-track", "pr/old-fork", "origin/pr/old-fork")
    work.git("branch", "--set-upstream-to=origin/stable", "pr/old-fork")
    work.git("branch", "--track", "pr/recent", "origin/pr/recent")
    plan = plan_of(clone, "--onto", "main", "--onto", release, "--branch", "pr/*")
    target = release if release == "stable" else "refs/remotes/origin/stable"
    assert summary(plan["pr/old-fork"]) == (target, 1.0, None, ["target-from-upstream"])
    assert summary(plan["pr/recent"])[0] == "main" and plan["pr/recent"]["tags"] == []


def independent_pair(path: Path) -> GitRepo:
    """a and b, each one commit on main's base, unrelated; main moves on."""
    repo = GitRepo.init(path)
    _commit(repo, "base.txt")
    for name in ("a", "b"):
        repo.new_branch(name, "main")
        _commit(repo, f"{name}.txt")
    repo.checkout("main")
    _commit(repo, "main.txt")
    return repo


def test_an_upstream_naming_another_selected_branch_stacks_on_it(tmp_path: Path) -> None:
    repo = independent_pair(tmp_path / "repo")
    repo.git("branch", "--set-upstream-to=a", "b")
    plan = plan_of(repo.path, "--onto", "main")
    assert summary(plan["b"]) == ("main", 1.0, "a", ["target-from-stack", "stacked"])
    assert plan["a"]["tags"] == ["stack-root"]
    ran = run_palign("run", str(repo.path), "--onto", "main", "--report-dir", str(tmp_path / "r"))
    assert ran.code == 0, ran.stderr
    aligned = branches_of(read_report(tmp_path / "r"))
    # b's commit now sits on a's aligned commit, which sits on main.
    assert git_out(repo.path, "rev-parse", f"{aligned['b']['new_sha']}~1").strip() == aligned["a"]["new_sha"]
    assert git_out(repo.path, "rev-parse", f"{aligned['a']['new_sha']}~1").strip() == repo.rev("main")


# ---- git-machete's layout ---------------------------------------------------------


def machete_project(path: Path) -> GitRepo:
    """a, b and c forked from main before `release` was cut (ties between the two); b
    branched from a, which has grown since (b does not hold a's tip)."""
    repo = GitRepo.init(path)
    _commit(repo, "base.txt")
    repo.new_branch("a", "main")
    _commit(repo, "a1.txt")
    repo.new_branch("b", "a")
    _commit(repo, "b.txt")
    repo.checkout("a")
    _commit(repo, "a2.txt")
    repo.new_branch("c", "main")
    _commit(repo, "c.txt")
    repo.new_branch("release", "main")
    _commit(repo, "release.txt")
    repo.checkout("main")
    _commit(repo, "main.txt")
    return repo


def write_layout(repo: GitRepo, text: str) -> None:
    (repo.path / ".git" / "machete").write_text(text)


def test_a_machete_layout_gives_targets_and_stacks(tmp_path: Path) -> None:
    repo = machete_project(tmp_path / "repo")
    write_layout(repo, "main\n  a  PR #1 rebase=no\n    b\n  c\nrelease\n")
    onto = ["--onto", "release", "--onto", "main"]  # inference would give the ties to release
    plan = plan_of(repo.path, *onto)
    assert summary(plan["a"]) == ("main", 1.0, None, ["target-from-machete", "stack-root"])
    assert summary(plan["b"]) == ("main", 1.0, "a", ["target-from-stack", "stacked"])
    assert summary(plan["c"]) == ("main", 1.0, None, ["target-from-machete"])
    assert table_row(repo.path, "c", *onto)[:4] == ["c", "main", "1.00", "machete"]


def test_a_layout_naming_unknown_branches_is_followed_where_it_can_be(tmp_path: Path) -> None:
    repo = machete_project(tmp_path / "repo")
    # Tabs this time; `gone` is no branch and `develop` no target: b falls back to its
    # upstream, a to inference.
    write_layout(repo, "# stacks\nrelease\n\tgone\n\t\tb\n\tc\n\ndevelop\n\ta\n")
    repo.git("branch", "--set-upstream-to=release", "b")
    plan = plan_of(repo.path, "--onto", "main", "--onto", "release")
    assert summary(plan["c"]) == ("release", 1.0, None, ["target-from-machete"])
    assert summary(plan["b"]) == ("release", 1.0, None, ["target-from-upstream"])
    assert summary(plan["a"]) == ("main", 0.5, None, [])


def test_palign_toml_comes_before_the_layout_and_the_layout_before_upstreams(tmp_path: Path) -> None:
    repo = machete_project(tmp_path / "repo")
    write_layout(repo, "main\n  a\n  c\n")
    repo.git("branch", "--set-upstream-to=release", "a")
    config = tmp_path / "palign.toml"
    config.write_text('[targets]\n"c" = "release"\n')
    plan = plan_of(repo.path, "--onto", "release", "--onto", "main", "--config", str(config))
    assert summary(plan["c"]) == ("release", 1.0, None, ["target-from-rule"])
    assert summary(plan["a"]) == ("main", 1.0, None, ["target-from-machete"])


@pytest.mark.parametrize(
    ("layout", "complaint"),
    [
        ("main\n  a\n   b\n", "line 3: indent '   ' is not a multiple of '  '"),
        ("main\n  a\n      b\n", "line 3: 'b' is indented too deep (level 3, at most 2)"),
        ("main\n\ta\n  c\n", "line 3: indent '  ' is not a multiple of '\\t'"),
        ("main\n  a\n\nmain\n", "line 4: 'main' appears a second time"),
    ],
)
def test_a_malformed_layout_is_refused_with_its_line(tmp_path: Path, layout: str, complaint: str) -> None:
    repo = machete_project(tmp_path / "repo")
    write_layout(repo, layout)
    before = refs_snapshot(repo.path)
    result = run_palign("run", str(repo.path), "--onto", "main", "--report-dir", str(tmp_path / "r"))
    assert result.code == 2, result.stderr
    layout_file = repo.path / ".git" / "machete"
    fix = "fix it with `git machete edit`, or move it away"
    assert result.stderr.strip().splitlines() == [f"palign: error: git-machete layout {layout_file} {complaint}; {fix}"]
    assert refs_snapshot(repo.path) == before and not (tmp_path / "r").exists()


# ---- records that contradict each other or the history ------------------------------


def test_upstreams_in_a_circle_stack_once_and_never_fail_the_plan() -> None:
    upstream = {"a": [DeclaredBase("b", "upstream")], "b": [DeclaredBase("a", "upstream")]}
    plan = make_plan([bf("a"), bf("b")], [MAIN], bases=upstream)
    assert (plan.branch("a").parent, plan.branch("b").parent) == ("b", None)


def test_a_declared_parent_that_already_holds_the_branch_is_stale() -> None:
    # b tracks a, but a contains b's tip (b was merged into a): history says a is on b.
    facts = [bf("a", contains=["b"]), bf("b")]
    plan = make_plan(facts, [MAIN], bases={"b": [DeclaredBase("a", "upstream")]})
    assert (plan.branch("a").parent, plan.branch("b").parent) == ("b", None)
