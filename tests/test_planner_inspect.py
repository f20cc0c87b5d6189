"""Facts gathered from real repositories (built with the git CLI, pinned dates), and the
plans made from them."""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from palign.engine.facts import gather_facts
from palign.errors import InputError
from palign.planner.model import BranchFacts, Category
from palign.planner.plan import make_plan
from tests.gitrepo import GitRepo

MAIN, REL = "main", "release/1.x"
STACK = [f"stack/{i}" for i in range(1, 7)]


def _commit_file(repo: GitRepo, path: str) -> str:
    repo.write(path, f"{path}\n")
    return repo.commit(path)


def _build(path: Path) -> GitRepo:
    """main and release/1.x, with every kind of branch the planner tells apart (see
    the comments for what each one should be)."""
    r = GitRepo.init(path)
    _commit_file(r, "README")
    for name in STACK:  # a 6-level stack forked before the release cut
        r.new_branch(name)
        _commit_file(r, f"{name}.txt")
    r.checkout(MAIN)
    r.new_branch("tree/root")
    _commit_file(r, "root.txt")
    for leaf in ("tree/left", "tree/right"):  # two children of tree/root
        r.checkout("tree/root")
        r.new_branch(leaf)
        _commit_file(r, f"{leaf}.txt")
    r.checkout(MAIN)
    _commit_file(r, "c1")
    r.branch("old")  # an old commit of main's first-parent line: behind
    r.new_branch("done")
    _commit_file(r, "done.txt")
    r.checkout(MAIN)
    _commit_file(r, "c2")
    r.merge("done")  # merged by ancestry, off the first-parent line
    r.new_branch("picked")
    picked = _commit_file(r, "picked.txt")
    r.checkout(MAIN)
    r.cherry_pick(picked)  # merged by patch id only
    _commit_file(r, "c3")
    r.new_branch(REL)  # the release cut
    _commit_file(r, "rel1")
    r.new_branch("fix/rel")  # forked from the release: targets it
    _commit_file(r, "fixrel.txt")
    r.checkout(REL)
    for name in ("rel2", "rel3", "rel4"):
        _commit_file(r, name)
    r.checkout(MAIN)
    _commit_file(r, "c4")
    r.new_branch("landed")
    _commit_file(r, "landed.txt")
    r.new_branch("after-landed")  # built on landed, which then lands in main only
    _commit_file(r, "after.txt")
    r.checkout(MAIN)
    r.merge("landed")
    _commit_file(r, "c5")
    r.new_branch("feature/new")
    _commit_file(r, "new.txt")
    r.checkout(MAIN)
    _commit_file(r, "c6")
    r.new_branch("uptodate")  # contains main's tip
    _commit_file(r, "ahead.txt")
    r.git("checkout", "-q", "--orphan", "lonely")  # no common history at all
    r.git("rm", "-rfq", ".")
    _commit_file(r, "lonely.txt")
    r.checkout(MAIN)
    return r


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[GitRepo, dict[str, BranchFacts]]:
    r = _build(tmp_path_factory.mktemp("planner") / "repo")
    repo = pygit2.Repository(str(r.path))
    branches = {ref: str(repo.references[ref].target) for ref in repo.references if ref.startswith("refs/heads/")}
    targets = {t: branches.pop(f"refs/heads/{t}") for t in (MAIN, REL)}
    facts = gather_facts(repo, branches, targets, with_patch_ids=True)
    assert [f.refname for f in facts] == list(branches)  # input order
    return r, {f.name: f for f in facts}


def test_counts_history_and_touched_paths(scenario: tuple[GitRepo, dict[str, BranchFacts]]) -> None:
    r, facts = scenario
    fix = facts["fix/rel"]
    for target in (MAIN, REL):
        ahead, behind = r.out("rev-list", "--left-right", "--count", f"fix/rel...{target}").split()
        assert (fix.on(target).ahead, fix.on(target).behind) == (int(ahead), int(behind))
        assert fix.on(target).merge_base == r.out("merge-base", "fix/rel", target)
    assert fix.on(REL).touched_paths == {"fixrel.txt"}
    assert fix.on(MAIN).touched_paths == {"rel1", "fixrel.txt"}
    assert facts["stack/3"].on(MAIN).touched_paths == {"stack/1.txt", "stack/2.txt", "stack/3.txt"}
    assert fix.last_commit_time == int(r.out("log", "-1", "--format=%ct", "fix/rel"))
    assert fix.sha == r.rev("fix/rel")


def test_ancestry_first_parent_patch_ids_and_orphans(scenario: tuple[GitRepo, dict[str, BranchFacts]]) -> None:
    _, facts = scenario
    old, done, picked, lonely = (facts[n].on(MAIN) for n in ("old", "done", "picked", "lonely"))
    assert (old.ahead, old.merged_by_ancestry, old.on_first_parent_chain) == (0, True, True)
    assert (done.ahead, done.merged_by_ancestry, done.on_first_parent_chain) == (0, True, False)
    assert (picked.ahead, picked.merged_by_ancestry, picked.merged_by_patch_id) == (1, False, True)
    assert not facts["fix/rel"].on(MAIN).merged_by_patch_id
    assert (lonely.has_common_history, lonely.merge_base, lonely.touched_paths) == (False, None, frozenset())
    assert not facts["lonely"].on(REL).has_common_history


def test_contains_is_strict_ancestry_among_selected_tips(scenario: tuple[GitRepo, dict[str, BranchFacts]]) -> None:
    _, facts = scenario
    assert facts["stack/6"].contains == {f"refs/heads/{n}" for n in STACK[:5]}
    assert facts["stack/1"].contains == frozenset()
    assert facts["tree/left"].contains == facts["tree/right"].contains == {"refs/heads/tree/root"}
    # landed is in main but not in the release: seen from the release walk.
    assert facts["after-landed"].contains == {"refs/heads/landed"}


def test_plan_from_a_real_repository(scenario: tuple[GitRepo, dict[str, BranchFacts]]) -> None:
    _, facts = scenario
    plan = make_plan(list(facts.values()), [MAIN, REL], (), None, 30, 1_700_000_000 + 86_400)
    rows = {b.branch_name: (b.assigned_target, b.confidence, b.category, b.parent) for b in plan.branches}
    assert rows == {
        **{n: (MAIN, 0.5, Category.DIVERGED, p) for n, p in zip(STACK, [None, *STACK[:5]], strict=True)},
        "tree/root": (MAIN, 0.5, Category.DIVERGED, None),
        "tree/left": (MAIN, 0.5, Category.DIVERGED, "tree/root"),
        "tree/right": (MAIN, 0.5, Category.DIVERGED, "tree/root"),
        "old": (MAIN, 0.5, Category.BEHIND, None),  # same fork point for both targets: a tie
        "done": (MAIN, 0.5, Category.MERGED, None),
        "picked": (MAIN, 0.5, Category.MERGED, None),
        # Confidence from the margin in own commits (TARGET..BRANCH) to the runner-up.
        "fix/rel": (REL, 0.75, Category.DIVERGED, None),  # carries the release's commits against main
        "landed": (MAIN, 1.0, Category.MERGED, None),  # nothing of its own left against main
        "after-landed": (MAIN, 0.833, Category.DIVERGED, None),  # its parent already landed in main
        "feature/new": (MAIN, 0.9, Category.DIVERGED, None),
        "uptodate": (MAIN, 1.0, Category.UP_TO_DATE, None),
        "lonely": (MAIN, 0.0, Category.ORPHAN, None),
    }
    levels = [u.levels for u in plan.units]
    assert [[n] for n in STACK] in levels and [["tree/root"], ["tree/left", "tree/right"]] in levels


def test_same_tips_are_not_contained_and_parents_tie_by_name(tmp_path: Path) -> None:
    r = GitRepo.init(tmp_path / "repo")
    _commit_file(r, "README")
    r.new_branch("a")
    _commit_file(r, "a.txt")
    r.branch("twin")
    r.new_branch("b")
    _commit_file(r, "b.txt")
    repo = pygit2.Repository(str(r.path))
    refs = {f"refs/heads/{n}": r.rev(n) for n in ("a", "twin", "b")}
    facts = gather_facts(repo, refs, {MAIN: r.rev(MAIN)})
    by_name = {f.name: f for f in facts}
    assert by_name["a"].contains == by_name["twin"].contains == frozenset()
    assert by_name["b"].contains == {"refs/heads/a", "refs/heads/twin"}
    assert make_plan(facts, [MAIN]).branch("b").parent == "a"
    assert not by_name["b"].on(MAIN).merged_by_patch_id  # not asked for


def test_unknown_objects_are_input_errors(tmp_path: Path) -> None:
    r = GitRepo.init(tmp_path / "repo")
    _commit_file(r, "README")
    repo = pygit2.Repository(str(r.path))
    with pytest.raises(InputError, match="refs/heads/x: 0{40} is not a commit"):
        gather_facts(repo, {"refs/heads/x": "0" * 40}, {MAIN: r.rev(MAIN)})
