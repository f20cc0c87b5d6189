"""palign's engine against git itself, scenario by scenario.

Each scenario builds a real repository (main advanced, one branch), asks git what
`git rebase main` and `git merge main` give on the branch (in a scratch clone), and
asserts that `align_branch` gives the same verdict, tree, commits and conflicts for the
rebase, merge and auto strategies. Each scenario also states git's verdicts it was built
to produce, so a scenario cannot silently stop testing what its name says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from palign.model import Status, Strategy
from tests.gitrepo import GitRepo, hermetic_env
from tests.oracle import (
    PathNormalizer,
    assert_matches_git,
    df_label_agnostic,
    git_merge_result,
    git_rebase_result,
)

ALIGNED, UP_TO_DATE, MERGED, CONFLICT = Status.ALIGNED, Status.UP_TO_DATE, Status.MERGED, Status.CONFLICT


@pytest.fixture(scope="module", autouse=True)
def _hermetic_process_env():
    """The engine runs git (merge-tree, rev-list) with this process's environment: give
    it the same empty HOME as the oracle, so no user config changes merge behaviour."""
    env = hermetic_env()
    with pytest.MonkeyPatch.context() as mp:
        for key in ("HOME", "XDG_CONFIG_HOME", "LC_ALL", "LANG", "TZ"):
            mp.setenv(key, env[key])
        yield


# ---------------------------------------------------------------------------------------
# a base repository
# ---------------------------------------------------------------------------------------

APP = [f"app line {i}" for i in range(1, 13)]
GUIDE = [f"guide line {i}" for i in range(1, 8)]
HELPERS = [f"def helper_{i}(): return {i}" for i in range(1, 9)]
BLOB = bytes(range(256)) * 4 + b"\x00binary\x00"
DEEP = "a/b/c/d/e/f/g/h/i/j"


def with_line(lines: list[str], index: int, value: str) -> list[str]:
    out = list(lines)
    out[index] = value
    return out


def base(r: GitRepo) -> str:
    r.write("README.md", "# project\n")
    r.write_lines("src/app.py", APP)
    r.write_lines("src/util/helpers.py", HELPERS)
    r.write_lines("src/util/more.py", [f"more {i}" for i in range(6)])
    r.write_lines("docs/guide.txt", GUIDE)
    r.write("data/blob.bin", BLOB)
    r.write_lines("tools/run.sh", ["#!/bin/sh", "echo run"])
    r.write_lines(f"{DEEP}/deep.txt", [f"deep {i}" for i in range(6)])
    r.symlink("link-to-guide", "docs/guide.txt")
    return r.commit("base")


# ---------------------------------------------------------------------------------------
# scenarios: each returns the branch name; `r` starts on main at `base`
# ---------------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    build: Callable[[GitRepo], str]
    rebase: Status  # git's verdicts, asserted first
    merge: Status
    target: str = "main"
    # Conflicted paths are compared exactly unless a normalizer says otherwise (only for
    # paths whose names git derives from its branch labels; see the report).
    normalize: PathNormalizer | None = None


SCENARIOS: list[Scenario] = []


def scenario(rebase: Status, merge: Status, target: str = "main", normalize: PathNormalizer | None = None):
    def register(fn: Callable[[GitRepo], str]) -> Callable[[GitRepo], str]:
        SCENARIOS.append(Scenario(fn.__name__, fn, rebase, merge, target, normalize))
        return fn

    return register


@scenario(ALIGNED, ALIGNED)
def plain_clean_edits(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write_lines("src/app.py", with_line(APP, 0, "feat line 1"))
    r.commit("feat: edit app")
    r.write("src/new_module.py", "x = 1\n")
    r.commit("feat: add module")
    r.checkout("main")
    r.write_lines("docs/guide.txt", with_line(GUIDE, 3, "main guide"))
    r.commit("main: edit guide")
    r.write("CHANGELOG", "1.0\n")
    r.commit("main: changelog")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def same_file_different_hunks(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write_lines("src/app.py", with_line(APP, 10, "feat changed line 11"))
    r.commit("feat: bottom of app")
    r.checkout("main")
    r.write_lines("src/app.py", with_line(APP, 1, "main changed line 2"))
    r.commit("main: top of app")
    return "feat"


@scenario(CONFLICT, CONFLICT)
def same_line_conflict(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write_lines("src/app.py", with_line(APP, 5, "feat's line 6"))
    r.commit("feat: line 6")
    r.checkout("main")
    r.write_lines("src/app.py", with_line(APP, 5, "main's line 6"))
    r.commit("main: line 6")
    return "feat"


@scenario(CONFLICT, CONFLICT)
def conflict_in_second_commit(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write("feat.txt", "feature\n")
    r.commit("feat: clean first")
    r.write_lines("docs/guide.txt", with_line(GUIDE, 2, "feat guide"))
    r.commit("feat: conflicting second")
    r.write("feat2.txt", "more\n")
    r.commit("feat: third")
    r.checkout("main")
    r.write_lines("docs/guide.txt", with_line(GUIDE, 2, "main guide"))
    r.commit("main: guide")
    return "feat"


@scenario(CONFLICT, ALIGNED)
def rebase_conflicts_but_merge_is_clean(r: GitRepo) -> str:
    """The branch changes a line and later restores it: replaying the first commit
    conflicts, the merge of the whole branch does not (auto falls back to the merge)."""
    r.new_branch("feat")
    r.write_lines("src/app.py", with_line(APP, 4, "temporary"))
    r.commit("feat: try something")
    r.write_lines("src/app.py", APP)
    r.write("feat.txt", "kept\n")
    r.commit("feat: revert it, keep another file")
    r.checkout("main")
    r.write_lines("src/app.py", with_line(APP, 4, "main's version"))
    r.commit("main: line 5")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def branch_renames_file_target_modified(r: GitRepo) -> str:
    r.new_branch("feat")
    r.move("src/app.py", "src/application.py")
    r.commit("feat: rename app")
    r.checkout("main")
    r.write_lines("src/app.py", with_line(APP, 7, "main edit in app"))
    r.commit("main: edit app")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def target_renames_file_branch_modifies(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write_lines("src/app.py", with_line(APP, 7, "feat edit in app"))
    r.commit("feat: edit app")
    r.write_lines("src/app.py", with_line(with_line(APP, 7, "feat edit in app"), 0, "again"))
    r.commit("feat: edit app again")
    r.checkout("main")
    r.move("src/app.py", "lib/app_renamed.py")
    r.commit("main: move app")
    return "feat"


@scenario(CONFLICT, CONFLICT)
def both_rename_same_file_differently(r: GitRepo) -> str:
    r.new_branch("feat")
    r.move("docs/guide.txt", "docs/feat-guide.txt")
    r.commit("feat: rename guide")
    r.checkout("main")
    r.move("docs/guide.txt", "docs/main-guide.txt")
    r.commit("main: rename guide")
    return "feat"


@scenario(CONFLICT, CONFLICT)
def target_moves_directory_branch_adds_into_old(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write("src/util/added.py", "added = True\n")
    r.commit("feat: add into util")
    r.checkout("main")
    r.move("src/util", "lib/util")
    r.commit("main: move util")
    return "feat"


@scenario(CONFLICT, CONFLICT)
def branch_moves_directory_target_adds_into_old(r: GitRepo) -> str:
    r.new_branch("feat")
    r.move("src/util", "pkg/utilities")
    r.commit("feat: move util")
    r.checkout("main")
    r.write("src/util/added.py", "added = True\n")
    r.commit("main: add into util")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def target_moves_directory_branch_edits_inside(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write_lines("src/util/helpers.py", with_line(HELPERS, 2, "def helper_3(): return 'three'"))
    r.commit("feat: edit helper")
    r.checkout("main")
    r.move("src/util", "lib/util")
    r.commit("main: move util")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def branch_moves_directory_target_edits_inside(r: GitRepo) -> str:
    r.new_branch("feat")
    r.move("src/util", "lib/util")
    r.commit("feat: move util")
    r.checkout("main")
    r.write_lines("src/util/helpers.py", with_line(HELPERS, 2, "def helper_3(): return 'three'"))
    r.commit("main: edit helper")
    return "feat"


@scenario(CONFLICT, CONFLICT)
def target_deletes_branch_modifies(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write_lines("docs/guide.txt", with_line(GUIDE, 1, "feat guide"))
    r.commit("feat: edit guide")
    r.checkout("main")
    r.delete("docs/guide.txt")
    r.delete("link-to-guide")
    r.commit("main: delete guide")
    return "feat"


@scenario(CONFLICT, CONFLICT)
def branch_deletes_target_modifies(r: GitRepo) -> str:
    r.new_branch("feat")
    r.delete("src/util/more.py")
    r.commit("feat: delete more")
    r.checkout("main")
    r.write_lines("src/util/more.py", ["changed on main"] + [f"more {i}" for i in range(1, 6)])
    r.commit("main: edit more")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def both_delete_same_file(r: GitRepo) -> str:
    r.new_branch("feat")
    r.delete("src/util/more.py")
    r.write("feat.txt", "f\n")
    r.commit("feat: delete more and add a file")
    r.checkout("main")
    r.delete("src/util/more.py")
    r.commit("main: delete more")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def branch_chmods_target_edits(r: GitRepo) -> str:
    r.new_branch("feat")
    r.chmod("tools/run.sh", True)
    r.commit("feat: make run.sh executable")
    r.checkout("main")
    r.write_lines("tools/run.sh", ["#!/bin/sh", "echo run", "echo more"])
    r.commit("main: edit run.sh")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def target_chmods_branch_edits(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write_lines("tools/run.sh", ["#!/bin/sh", "echo feat", "echo run"])
    r.commit("feat: edit run.sh")
    r.checkout("main")
    r.chmod("tools/run.sh", True)
    r.commit("main: make run.sh executable")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def branch_removes_exec_bit_target_adds_other(r: GitRepo) -> str:
    r.chmod("tools/run.sh", True)
    r.commit("main: executable first")
    r.new_branch("feat")
    r.chmod("tools/run.sh", False)
    r.write("feat.txt", "x\n")
    r.commit("feat: not executable")
    r.checkout("main")
    r.write_lines("tools/run.sh", ["#!/bin/sh", "echo run", "echo main"])
    r.chmod("tools/run.sh", True)
    r.commit("main: edit run.sh")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def branch_turns_file_into_directory(r: GitRepo) -> str:
    r.new_branch("feat")
    r.delete("README.md")
    r.write("README.md/index.md", "# project\n")
    r.write("README.md/more.md", "more\n")
    r.commit("feat: README becomes a directory")
    r.checkout("main")
    r.write_lines("src/app.py", with_line(APP, 3, "main"))
    r.commit("main: edit app")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def target_turns_directory_into_file(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write_lines("src/app.py", with_line(APP, 3, "feat"))
    r.commit("feat: edit app")
    r.checkout("main")
    r.delete("data")
    r.write("data", "data is a file now\n")
    r.commit("main: data becomes a file")
    return "feat"


@scenario(CONFLICT, CONFLICT, normalize=df_label_agnostic)
def file_directory_swap_conflict(r: GitRepo) -> str:
    """The target turns a file into a directory; the branch edits the file."""
    r.new_branch("feat")
    r.write("README.md", "# project\nfeat readme\n")
    r.commit("feat: edit README")
    r.checkout("main")
    r.delete("README.md")
    r.write("README.md/index.md", "an index that is no rename of the old README\n")
    r.commit("main: README becomes a directory")
    return "feat"


@scenario(CONFLICT, CONFLICT, normalize=df_label_agnostic)
def directory_file_swap_conflict(r: GitRepo) -> str:
    """The branch turns a directory into a file; the target adds into the directory."""
    r.new_branch("feat")
    r.delete("docs")
    r.delete("link-to-guide")
    r.write("docs", "docs are gone\n")
    r.commit("feat: docs becomes a file")
    r.checkout("main")
    r.write("docs/new.txt", "new doc\n")
    r.commit("main: add a doc")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def binary_clean(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write("data/blob.bin", BLOB + b"\x01feat")
    r.write("data/new.bin", b"\x00\xff\xfe" * 50)
    r.commit("feat: binary edits")
    r.checkout("main")
    r.write_lines("docs/guide.txt", with_line(GUIDE, 0, "main"))
    r.commit("main: guide")
    return "feat"


@scenario(CONFLICT, CONFLICT)
def binary_conflict(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write("data/blob.bin", BLOB + b"\x01feat")
    r.commit("feat: binary edit")
    r.checkout("main")
    r.write("data/blob.bin", b"\x02main" + BLOB)
    r.commit("main: binary edit")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def empty_commits_in_branch_are_kept(r: GitRepo) -> str:
    r.new_branch("feat")
    r.empty_commit("feat: empty first")
    r.write("feat.txt", "x\n")
    r.commit("feat: real change")
    r.empty_commit("feat: empty last")
    r.checkout("main")
    r.write("main.txt", "m\n")
    r.commit("main: change")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def patch_already_upstream_is_skipped(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write_lines("src/app.py", with_line(APP, 2, "shared fix"))
    picked = r.commit("feat: the fix main also took")
    r.write("feat.txt", "x\n")
    r.commit("feat: own work")
    r.checkout("main")
    r.write("main.txt", "m\n")
    r.commit("main: before the pick")
    r.cherry_pick(picked)
    return "feat"


@scenario(ALIGNED, ALIGNED)
def commit_becomes_empty_is_dropped(r: GitRepo) -> str:
    """Main made the same change inside a bigger commit (different patch-id): the branch
    commit applies cleanly but changes nothing, and git drops it."""
    r.new_branch("feat")
    r.write_lines("src/app.py", with_line(APP, 2, "shared fix"))
    r.commit("feat: small fix")
    r.write("feat.txt", "x\n")
    r.commit("feat: own work")
    r.checkout("main")
    r.write_lines("src/app.py", with_line(with_line(APP, 2, "shared fix"), 9, "and more"))
    r.commit("main: fix and more")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def merge_commit_inside_branch(r: GitRepo) -> str:
    r.new_branch("side")
    r.write("side1.txt", "s1\n")
    r.commit("side: one")
    r.write("side2.txt", "s2\n")
    r.commit("side: two")
    r.checkout("main")
    r.new_branch("feat")
    r.write("feat1.txt", "f1\n")
    r.commit("feat: one")
    r.merge("side", "feat: merge side")
    r.write_lines("src/app.py", with_line(APP, 0, "feat after merge"))
    r.commit("feat: after the merge")
    r.checkout("main")
    r.write_lines("src/app.py", with_line(APP, 11, "main"))
    r.commit("main: edit app")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def branch_merged_older_main(r: GitRepo) -> str:
    """The branch merged main once (a back-merge); main moved on since."""
    r.new_branch("feat")
    r.write("feat1.txt", "f1\n")
    r.commit("feat: one")
    r.checkout("main")
    r.write("main1.txt", "m1\n")
    r.commit("main: one")
    r.checkout("feat")
    r.merge("main", "feat: merge main")
    r.write("feat2.txt", "f2\n")
    r.commit("feat: two")
    r.checkout("main")
    r.write("main2.txt", "m2\n")
    r.commit("main: two")
    return "feat"


@scenario(UP_TO_DATE, UP_TO_DATE)
def branch_already_up_to_date(r: GitRepo) -> str:
    r.write("main.txt", "m\n")
    r.commit("main: change")
    r.new_branch("feat")
    r.write("feat.txt", "f\n")
    r.commit("feat: on top of main")
    r.checkout("main")
    return "feat"


@scenario(ALIGNED, UP_TO_DATE)
def target_is_ancestor_but_branch_has_a_merge(r: GitRepo) -> str:
    """main is an ancestor of the branch, but the branch's first-parent line back to main
    holds a merge: `git rebase main` is then no fast-forward (git's is_linear_history)
    and rewrites the branch as a line: the side commit, then the branch's own commit."""
    r.new_branch("side")
    r.write("side.txt", "s\n")
    r.commit("side: one")
    r.checkout("main")
    r.new_branch("feat")
    r.write("feat.txt", "f\n")
    r.commit("feat: one")
    r.merge("side", "feat: merge side")
    r.write("feat2.txt", "f2\n")
    r.commit("feat: after the merge")
    r.checkout("main")
    return "feat"


@scenario(CONFLICT, UP_TO_DATE)
def target_is_ancestor_and_linearising_conflicts(r: GitRepo) -> str:
    """As above, but the branch's merge resolved a conflict: replaying the side commit
    on the branch's own commit conflicts, while `git merge main` is "Already up to date"
    (so auto's fallback merge must give UP_TO_DATE, not a merge commit)."""
    r.new_branch("side")
    r.write_lines("src/app.py", with_line(APP, 0, "side's line 1"))
    r.commit("side: line 1")
    r.checkout("main")
    r.new_branch("feat")
    r.write_lines("src/app.py", with_line(APP, 0, "feat's line 1"))
    r.commit("feat: line 1")
    r.merge(
        "side",
        "feat: merge side",
        resolve={"src/app.py": "".join(line + "\n" for line in with_line(APP, 0, "both lines 1"))},
    )
    r.checkout("main")
    return "feat"


@scenario(UP_TO_DATE, UP_TO_DATE)
def branch_equals_target(r: GitRepo) -> str:
    r.branch("feat")
    return "feat"


@scenario(MERGED, MERGED)
def branch_behind_fast_forward(r: GitRepo) -> str:
    r.branch("feat")
    r.write("main.txt", "m\n")
    r.commit("main: ahead")
    return "feat"


@scenario(MERGED, ALIGNED)
def all_commits_already_upstream(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write("feat1.txt", "f1\n")
    first = r.commit("feat: one")
    r.write_lines("src/app.py", with_line(APP, 6, "feat"))
    second = r.commit("feat: two")
    r.checkout("main")
    r.write("main.txt", "m\n")
    r.commit("main: own")
    r.cherry_pick(first)
    r.cherry_pick(second)
    return "feat"


# Shapes of merged pull requests on real repositories (pytest, ansible): a branch whose
# commits look like target commits. palign narrows the likely pairs in memory and asks git
# about those pairs alone (engine.probe); git's verdict decides.


@scenario(ALIGNED, ALIGNED)
def same_lines_changed_with_other_context_is_kept(r: GitRepo) -> str:
    """The same line swapped for the same new one in two places of one file: equal added
    and removed lines, different context, so different patch-ids: git keeps the commit."""
    lines = [*APP[:3], "repeated", *APP[3:9], "repeated", *APP[9:]]
    r.write_lines("src/twice.py", lines)
    r.commit("main: a file with a repeated line")
    r.new_branch("feat")
    r.write_lines("src/twice.py", with_line(lines, 3, "changed"))
    r.commit("feat: the first one")
    r.checkout("main")
    r.write_lines("src/twice.py", with_line(lines, 10, "changed"))
    r.commit("main: the second one")
    return "feat"


@scenario(ALIGNED, CONFLICT)
def same_change_but_for_whitespace_is_dropped(r: GitRepo) -> str:
    """Patch-ids ignore whitespace: a branch commit equal to a target commit but for the
    spaces inside a line is already upstream, and git drops it (a merge conflicts)."""
    r.new_branch("feat")
    r.write_lines("src/app.py", with_line(APP, 4, "value = compute(a,  b)"))
    r.commit("feat: the fix, two spaces")
    r.write("feat.txt", "own\n")
    r.commit("feat: own work")
    r.checkout("main")
    r.write_lines("src/app.py", with_line(APP, 4, "value = compute(a, b)"))
    r.commit("main: the fix, one space")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def some_commits_upstream_among_many_target_commits(r: GitRepo) -> str:
    """Two of three branch commits were picked onto the target among other commits that
    touch the same file (likely pairs that are not equal): git drops exactly those two."""
    r.new_branch("feat")
    r.write_lines("src/app.py", with_line(APP, 1, "feat one"))
    first = r.commit("feat: one")
    r.write_lines("src/app.py", with_line(with_line(APP, 1, "feat one"), 5, "feat two"))
    second = r.commit("feat: two")
    r.write("feat.txt", "own\n")
    r.commit("feat: own work")
    r.checkout("main")
    r.write_lines("src/app.py", with_line(APP, 9, "main nine"))
    r.commit("main: nine")
    r.cherry_pick(first)
    r.write_lines("src/app.py", with_line(with_line(with_line(APP, 9, "main nine"), 1, "feat one"), 11, "main 12"))
    r.commit("main: twelve")
    r.cherry_pick(second)
    return "feat"


@scenario(ALIGNED, ALIGNED)
def non_utf8_message_with_encoding_header(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write("feat.txt", "f\n")
    r.commit(
        "feat: caf\u00e9 cr\u00e8me br\u00fbl\u00e9e\n\n\u00e0 la fran\u00e7aise\n".encode("iso-8859-1"),
        encoding="ISO-8859-1",
    )
    r.checkout("main")
    r.write("main.txt", "m\n")
    r.commit("main: change")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def non_utf8_message_without_encoding_header(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write("feat.txt", "f\n")
    r.commit_raw("feat: caf\u00e9 without a header\n".encode("iso-8859-1"))
    r.checkout("main")
    r.write("main.txt", "m\n")
    r.commit("main: change")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def utf8_and_verbatim_messages(r: GitRepo) -> str:
    """Messages git must keep byte for byte: UTF-8, comment-like lines, trailing
    whitespace and blank lines, no final newline."""
    r.new_branch("feat")
    r.write("f1.txt", "1\n")
    r.commit("feat: \u65e5\u672c\u8a9e \u2713\n\nbody \u00e9\n")
    r.write("f2.txt", "2\n")
    r.commit("# not a comment\n\nbody   \n\n\n")
    r.write("f3.txt", "3\n")
    r.commit_raw(b"no final newline")
    r.checkout("main")
    r.write("main.txt", "m\n")
    r.commit("main: change")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def message_with_leading_blank_lines(r: GitRepo) -> str:
    """git's sequencer starts the replayed message at the subject line."""
    r.new_branch("feat")
    r.write("feat.txt", "f\n")
    r.commit_raw(b"\n\n   \nsubject after blank lines\n\nbody\n")
    r.checkout("main")
    r.write("main.txt", "m\n")
    r.commit("main: change")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def option_like_branch_name(r: GitRepo) -> str:
    name = "feature/--output=x"
    r.new_branch(name)
    r.write_lines("src/app.py", with_line(APP, 0, "feat"))
    r.commit("feat: edit")
    r.checkout("main")
    r.write_lines("src/app.py", with_line(APP, 11, "main"))
    r.commit("main: edit")
    return name


@scenario(CONFLICT, CONFLICT)
def option_like_branch_name_conflict(r: GitRepo) -> str:
    name = "-x/--upload-pack=touch"  # not creatable by `git branch`, but a valid ref
    r.git("update-ref", f"refs/heads/{name}", r.rev("HEAD"))
    r.checkout(name)
    r.write_lines("src/app.py", with_line(APP, 0, "feat"))
    r.commit("feat: edit")
    r.checkout("main")
    r.write_lines("src/app.py", with_line(APP, 0, "main"))
    r.commit("main: edit")
    return name


@scenario(ALIGNED, ALIGNED)
def deep_nested_paths(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write_lines(f"{DEEP}/deep.txt", ["deep feat"] + [f"deep {i}" for i in range(1, 6)])
    r.write(f"{DEEP}/k/l/m/n/o/p/new.txt", "new deep\n")
    r.commit("feat: deep edits")
    r.checkout("main")
    r.write_lines(f"{DEEP}/deep.txt", [f"deep {i}" for i in range(5)] + ["deep main"])
    r.write(f"{DEEP}/k/other.txt", "other\n")
    r.commit("main: deep edits")
    return "feat"


@scenario(CONFLICT, CONFLICT)
def deep_nested_conflict(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write_lines(f"{DEEP}/deep.txt", ["deep feat"] + [f"deep {i}" for i in range(1, 6)])
    r.commit("feat: deep edit")
    r.checkout("main")
    r.write_lines(f"{DEEP}/deep.txt", ["deep main"] + [f"deep {i}" for i in range(1, 6)])
    r.commit("main: deep edit")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def symlinks_clean(r: GitRepo) -> str:
    r.new_branch("feat")
    r.symlink("src/link-to-app", "app.py")
    r.symlink("dangling", "does/not/exist")
    r.commit("feat: add symlinks")
    r.checkout("main")
    r.symlink("link-to-guide", "README.md")
    r.commit("main: retarget link")
    return "feat"


@scenario(CONFLICT, CONFLICT)
def symlink_conflict(r: GitRepo) -> str:
    r.new_branch("feat")
    r.symlink("link-to-guide", "src/app.py")
    r.commit("feat: retarget link")
    r.checkout("main")
    r.symlink("link-to-guide", "README.md")
    r.commit("main: retarget link")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def file_becomes_symlink_on_branch(r: GitRepo) -> str:
    r.new_branch("feat")
    r.symlink("README.md", "docs/guide.txt")
    r.commit("feat: README is a link")
    r.checkout("main")
    r.write_lines("src/app.py", with_line(APP, 0, "main"))
    r.commit("main: edit")
    return "feat"


@scenario(MERGED, ALIGNED)
def patch_id_ignores_whitespace_in_paths(r: GitRepo) -> str:
    """git's patch-id drops whitespace from paths too: an edit of `a b.txt` on the
    branch equals the same edit of `ab.txt` upstream, and git drops the branch commit."""
    r.write_lines("ab.txt", ["1", "2", "3", "4", "5"])
    r.write_lines("a b.txt", ["1", "2", "3", "4", "5"])
    r.commit("main: two look-alike files")
    r.new_branch("feat")
    r.write_lines("a b.txt", ["1", "two", "3", "4", "5"])
    r.commit("feat: edit a b.txt")
    r.checkout("main")
    r.write_lines("ab.txt", ["1", "two", "3", "4", "5"])
    r.commit("main: edit ab.txt")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def branch_off_an_older_target(r: GitRepo) -> str:
    """Several target commits touching the same files the branch touches, cleanly."""
    r.new_branch("feat")
    r.write_lines("src/app.py", with_line(APP, 0, "feat 1"))
    r.commit("feat: one")
    r.write_lines("src/app.py", with_line(with_line(APP, 0, "feat 1"), 3, "feat 4"))
    r.commit("feat: two")
    r.checkout("main")
    for i, line in ((8, "main 9"), (10, "main 11"), (11, "main 12")):
        current = r.read("src/app.py").decode().splitlines()
        r.write_lines("src/app.py", with_line(current, i, line))
        r.commit(f"main: {line}")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def branch_renames_and_edits_target_edits_other_hunk(r: GitRepo) -> str:
    r.new_branch("feat")
    r.move("src/app.py", "src/core/app.py")
    r.commit("feat: move app")
    r.write_lines("src/core/app.py", with_line(APP, 10, "feat edit after the move"))
    r.commit("feat: edit moved app")
    r.checkout("main")
    r.write_lines("src/app.py", with_line(APP, 1, "main edit"))
    r.commit("main: edit app")
    return "feat"


@scenario(CONFLICT, CONFLICT)
def branch_renames_target_deletes(r: GitRepo) -> str:
    r.new_branch("feat")
    r.move("docs/guide.txt", "docs/manual.txt")
    r.commit("feat: rename guide")
    r.checkout("main")
    r.delete("docs/guide.txt")
    r.commit("main: delete guide")
    return "feat"


@scenario(CONFLICT, CONFLICT)
def add_add_conflict(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write("src/config.py", "VALUE = 'feat'\n")
    r.commit("feat: add config")
    r.checkout("main")
    r.write("src/config.py", "VALUE = 'main'\n")
    r.commit("main: add config")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def add_add_identical(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write("src/config.py", "VALUE = 'same'\n")
    r.write("feat.txt", "f\n")
    r.commit("feat: add config and more")
    r.checkout("main")
    r.write("src/config.py", "VALUE = 'same'\n")
    r.commit("main: add config")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def criss_cross_merges(r: GitRepo) -> str:
    """Branch and target merged each other: two merge bases for `git merge`."""
    r.new_branch("feat")
    r.write_lines("src/app.py", with_line(APP, 0, "feat 1"))
    r.commit("feat: one")
    r.checkout("main")
    r.write_lines("docs/guide.txt", with_line(GUIDE, 0, "main 1"))
    r.commit("main: one")
    r.branch("main-snapshot")
    r.checkout("feat")
    r.branch("feat-snapshot")
    r.merge("main-snapshot", "feat: merge main")
    r.write_lines("src/util/more.py", ["feat more"] + [f"more {i}" for i in range(1, 6)])
    r.commit("feat: two")
    r.checkout("main")
    r.merge("feat-snapshot", "main: merge feat")
    r.write_lines("docs/guide.txt", with_line(with_line(GUIDE, 0, "main 1"), 6, "main 2"))
    r.commit("main: two")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def submodule_pointer_clean(r: GitRepo) -> str:
    r.gitlink("vendor/lib", "1" * 40)
    r.commit("main: add submodule")
    r.new_branch("feat")
    r.gitlink("vendor/lib", "2" * 40)
    r.commit("feat: bump submodule")
    r.checkout("main")
    r.write_lines("src/app.py", with_line(APP, 0, "main"))
    r.commit("main: edit app")
    return "feat"


@scenario(CONFLICT, CONFLICT)
def submodule_pointer_conflict(r: GitRepo) -> str:
    r.gitlink("vendor/lib", "1" * 40)
    r.commit("main: add submodule")
    r.new_branch("feat")
    r.gitlink("vendor/lib", "2" * 40)
    r.commit("feat: bump submodule")
    r.checkout("main")
    r.gitlink("vendor/lib", "3" * 40)
    r.commit("main: bump submodule")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def multibyte_encoding_header(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write("feat.txt", "f\n")
    r.commit("feat: \u65e5\u672c\u8a9e\u306e\u30e1\u30c3\u30bb\u30fc\u30b8\n".encode("euc-jp"), encoding="EUC-JP")
    r.write("feat2.txt", "f\n")
    r.commit("feat: \u20ac 5 \u2013 cp1252\n".encode("cp1252"), encoding="windows-1252")
    r.checkout("main")
    r.write("main.txt", "m\n")
    r.commit("main: change")
    return "feat"


@scenario(MERGED, ALIGNED)
def typechange_already_upstream(r: GitRepo) -> str:
    """The same file -> symlink change on both sides: git drops the branch's copy."""
    r.new_branch("feat")
    r.symlink("README.md", "docs/guide.txt")
    r.commit("feat: README is a link")
    r.checkout("main")
    r.write("main.txt", "m\n")
    r.commit("main: own")
    r.symlink("README.md", "docs/guide.txt")
    r.commit("main: README is a link too")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def latin1_author_with_encoding_header(r: GitRepo) -> str:
    """git re-encodes the whole commit (author line included) from its declared
    encoding when it replays it."""
    r.new_branch("feat")
    r.write("feat.txt", "f\n")
    r.commit(
        "feat: r\u00e9sum\u00e9\n".encode("iso-8859-1"),
        encoding="ISO-8859-1",
        author="Jos\udce9 Mar\udced <jose@example.com>",
    )  # Latin-1 bytes on the command line
    r.checkout("main")
    r.write("main.txt", "m\n")
    r.commit("main: change")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def latin1_author_without_encoding_header(r: GitRepo) -> str:
    r.new_branch("feat")
    r.write("feat.txt", "f\n")
    r.commit_raw(b"feat: ascii message\n", author_line=b"Jos\xe9 Mar\xeda <jose@example.com> 1700000000 +0100")
    r.checkout("main")
    r.write("main.txt", "m\n")
    r.commit("main: change")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def gitattributes_union_merge(r: GitRepo) -> str:
    """`merge=union` in the repository's .gitattributes: git merges same-line edits of
    CHANGELOG.txt by keeping both lines, in a rebase and in a merge."""
    r.write(".gitattributes", "CHANGELOG.txt merge=union\n")
    r.write_lines("CHANGELOG.txt", ["# changes", "- base"])
    r.commit("main: changelog merged by union")
    r.new_branch("feat")
    r.write_lines("CHANGELOG.txt", ["# changes", "- feat entry", "- base"])
    r.commit("feat: changelog entry")
    r.checkout("main")
    r.write_lines("CHANGELOG.txt", ["# changes", "- main entry", "- base"])
    r.commit("main: changelog entry")
    return "feat"


@scenario(CONFLICT, CONFLICT)
def gitattributes_binary_is_not_content_merged(r: GitRepo) -> str:
    """A file marked `binary` (or `-merge`) is never merged line by line: edits of
    different lines on both sides conflict in git."""
    r.write(".gitattributes", "*.lock binary\n")
    r.write_lines("deps.lock", [f"dep{i}==1.0" for i in range(10)])
    r.commit("main: a lock file marked binary")
    r.new_branch("feat")
    r.write_lines("deps.lock", ["dep0==2.0"] + [f"dep{i}==1.0" for i in range(1, 10)])
    r.commit("feat: bump dep0")
    r.checkout("main")
    r.write_lines("deps.lock", [f"dep{i}==1.0" for i in range(9)] + ["dep9==3.0"])
    r.commit("main: bump dep9")
    return "feat"


TEN = [f"entry {i}" for i in range(10)]


def attributes_case(r: GitRepo, attributes: dict[str, str], path: str, feat_line: int, main_line: int) -> str:
    """Attribute files in the base; both sides edit `path` (same line: a conflict for a
    text merge; different lines: clean for a text merge, a conflict with -merge)."""
    for name, text in attributes.items():
        r.write(name, text)
    r.write_lines(path, TEN)
    r.commit("main: attributes and a file")
    r.new_branch("feat")
    r.write_lines(path, with_line(TEN, feat_line, "feat"))
    r.commit("feat: edit")
    r.checkout("main")
    r.write_lines(path, with_line(TEN, main_line, "main"))
    r.commit("main: edit")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def gitattributes_in_a_subdirectory(r: GitRepo) -> str:
    return attributes_case(r, {"pkg/.gitattributes": "*.txt merge=union\n"}, "pkg/deeper/notes.txt", 0, 0)


@scenario(CONFLICT, CONFLICT)
def gitattributes_deeper_file_wins(r: GitRepo) -> str:
    attributes = {".gitattributes": "*.txt merge=union\n", "pkg/.gitattributes": "*.txt -merge\n"}
    return attributes_case(r, attributes, "pkg/notes.txt", 0, 9)


@scenario(ALIGNED, ALIGNED)
def gitattributes_anchored_pattern_in_subdirectory(r: GitRepo) -> str:
    """`/notes.txt` in pkg/.gitattributes is pkg/notes.txt only, not pkg/x/notes.txt."""
    return attributes_case(r, {"pkg/.gitattributes": "/notes.txt -merge\n"}, "pkg/x/notes.txt", 0, 9)


@scenario(CONFLICT, CONFLICT)
def gitattributes_macro_in_root(r: GitRepo) -> str:
    attributes = {".gitattributes": "[attr]nomerge -merge\n*.txt nomerge\n"}
    return attributes_case(r, attributes, "notes.txt", 0, 9)


@scenario(ALIGNED, ALIGNED)
def gitattributes_macro_outside_root_is_ignored(r: GitRepo) -> str:
    """git accepts `[attr]` macro definitions only in the top-level .gitattributes
    ("[attr]nomerge not allowed: pkg/.gitattributes:1"), so `nomerge` means nothing here
    and the text merge of two different lines is clean."""
    attributes = {"pkg/.gitattributes": "[attr]nomerge -merge\n*.txt nomerge\n"}
    return attributes_case(r, attributes, "pkg/notes.txt", 0, 9)


@scenario(CONFLICT, CONFLICT)
def gitattributes_quoted_pattern_in_subdirectory(r: GitRepo) -> str:
    """A C-quoted pattern (a name with a space) in a subdirectory's .gitattributes."""
    attributes = {"pkg/.gitattributes": '"my notes.txt" -merge\n'}
    return attributes_case(r, attributes, "pkg/my notes.txt", 0, 9)


@scenario(ALIGNED, ALIGNED)
def branch_adds_gitattributes_before_its_edit(r: GitRepo) -> str:
    """The branch's first commit adds merge=union: the rebase replays the second commit
    in a working tree that has it; the merge runs in the branch's working tree."""
    r.write_lines("CHANGELOG.txt", ["# changes", "- base"])
    r.commit("main: changelog")
    r.new_branch("feat")
    r.write(".gitattributes", "CHANGELOG.txt merge=union\n")
    r.commit("feat: union merges for the changelog")
    r.write_lines("CHANGELOG.txt", ["# changes", "- feat", "- base"])
    r.commit("feat: changelog entry")
    r.checkout("main")
    r.write_lines("CHANGELOG.txt", ["# changes", "- main", "- base"])
    r.commit("main: changelog entry")
    return "feat"


@scenario(ALIGNED, CONFLICT)
def target_adds_gitattributes(r: GitRepo) -> str:
    """merge=union exists on main only: the rebase (working tree = main + replayed
    commits) uses it, the merge (working tree = the branch) does not."""
    r.write_lines("CHANGELOG.txt", ["# changes", "- base"])
    r.commit("main: changelog")
    r.new_branch("feat")
    r.write_lines("CHANGELOG.txt", ["# changes", "- feat", "- base"])
    r.commit("feat: changelog entry")
    r.checkout("main")
    r.write(".gitattributes", "CHANGELOG.txt merge=union\n")
    r.write_lines("CHANGELOG.txt", ["# changes", "- main", "- base"])
    r.commit("main: union merges, and an entry")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def repo_config_directory_renames_true(r: GitRepo) -> str:
    """merge.directoryRenames=true: the file added into the moved directory follows it."""
    r.config("merge.directoryRenames", "true")
    return target_moves_directory_branch_adds_into_old(r)


@scenario(ALIGNED, ALIGNED)
def repo_config_renames_false(r: GitRepo) -> str:
    """merge.renames=false: git 2.39's ort merges still detect renames, so a rename
    against an edit still merges cleanly (palign must not honour the setting either)."""
    r.config("merge.renames", "false")
    return branch_renames_file_target_modified(r)


@scenario(ALIGNED, ALIGNED)
def repo_config_commit_encoding(r: GitRepo) -> str:
    """i18n.commitEncoding=ISO-8859-1 in the repository: git's sequencer re-encodes
    replayed messages (and authors) into it and records an encoding header."""
    r.new_branch("feat")
    r.write("feat.txt", "f\n")
    r.commit("feat: caf\u00e9 in UTF-8\n", author="Ren\u00e9e <renee@example.com>")
    r.checkout("main")
    r.write("main.txt", "m\n")
    r.commit("main: change")
    r.config("i18n.commitEncoding", "ISO-8859-1")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def repo_config_commit_cleanup_strip(r: GitRepo) -> str:
    """commit.cleanup=strip in the repository also applies to the messages a rebase
    writes: comment lines and trailing whitespace go."""
    r.new_branch("feat")
    r.write("feat.txt", "f\n")
    r.commit("feat: subject\n\n# a line that looks like a comment\nbody   \n\n\n")
    r.checkout("main")
    r.write("main.txt", "m\n")
    r.commit("main: change")
    r.config("commit.cleanup", "strip")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def author_in_declared_multibyte_encoding(r: GitRepo) -> str:
    """With an encoding header git re-encodes the whole commit, author line included,
    from the declared encoding (not as Latin-1)."""
    r.new_branch("feat")
    r.write("feat.txt", "f\n")
    author = "\u5c71\u7530\u592a\u90ce <yamada@example.com> 1700000000 +0900".encode("euc-jp")
    r.commit_raw("feat: \u65e5\u672c\u8a9e\n".encode("euc-jp"), encoding="EUC-JP", author_line=author)
    r.write("feat2.txt", "f\n")
    author = "Fran\u00e7ois \u0152uvre \u2013 <fo@example.com> 1700000000 +0100".encode("cp1252")
    r.commit_raw("feat: \u20ac\n".encode("cp1252"), encoding="windows-1252", author_line=author)
    r.checkout("main")
    r.write("main.txt", "m\n")
    r.commit("main: change")
    return "feat"


LATIN1_NAME = "docs/caf\udce9.txt"  # the bytes b"docs/caf\xe9.txt": not UTF-8


@scenario(ALIGNED, ALIGNED)
def non_utf8_file_name_edited_on_branch(r: GitRepo) -> str:
    r.write_lines(LATIN1_NAME, ["1", "2", "3"])
    r.commit("main: a file whose name is Latin-1")
    r.new_branch("feat")
    r.write_lines(LATIN1_NAME, ["1", "feat", "3"])
    r.commit("feat: edit it")
    r.checkout("main")
    r.write_lines("src/app.py", with_line(APP, 0, "main"))
    r.commit("main: edit app")
    return "feat"


@scenario(CONFLICT, CONFLICT)
def non_utf8_file_name_conflict(r: GitRepo) -> str:
    r.write_lines(LATIN1_NAME, ["1", "2", "3"])
    r.commit("main: a file whose name is Latin-1")
    r.new_branch("feat")
    r.write_lines(LATIN1_NAME, ["1", "feat", "3"])
    r.commit("feat: edit it")
    r.checkout("main")
    r.write_lines(LATIN1_NAME, ["1", "main", "3"])
    r.commit("main: edit it")
    return "feat"


@scenario(ALIGNED, ALIGNED)
def message_with_nul_byte(r: GitRepo) -> str:
    """Not writable with `git commit`, but other tools write such objects; the
    sequencer keeps the message up to the NUL."""
    r.new_branch("feat")
    r.write("feat.txt", "f\n")
    r.commit_raw(b"subject\n\nbody\x00after the NUL\n")
    r.checkout("main")
    r.write("main.txt", "m\n")
    r.commit("main: change")
    return "feat"


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_palign_matches_git(sc: Scenario, tmp_path) -> None:
    r = GitRepo.init(tmp_path / "repo")
    base(r)
    branch = sc.build(r)
    r.checkout("main")
    rebase = git_rebase_result(r.path, branch, sc.target)
    merge = git_merge_result(r.path, branch, sc.target)
    assert (rebase.status, merge.status) == (sc.rebase, sc.merge), (
        f"the scenario no longer gives git's expected verdicts\n--- rebase ---\n{rebase.output}"
        f"\n--- merge ---\n{merge.output}"
    )
    assert_matches_git(r.path, branch, sc.target, normalize=sc.normalize, rebase=rebase, merge=merge)


def test_engine_uses_only_objects_in_a_bare_mirror(tmp_path) -> None:
    """The executors hand the engine a bare mirror: same answers there."""
    r = GitRepo.init(tmp_path / "repo")
    base(r)
    branch = same_file_different_hunks(r)
    r.checkout("main")
    mirror = tmp_path / "mirror.git"
    r.git("clone", "-q", "--mirror", "--", str(r.path), str(mirror))
    comparisons = assert_matches_git(mirror, branch, "main")
    assert {c.strategy for c in comparisons} == set(Strategy)
    assert all(c.result.status == ALIGNED for c in comparisons)


def test_auto_falls_back_to_merge(tmp_path) -> None:
    r = GitRepo.init(tmp_path / "repo")
    base(r)
    branch = rebase_conflicts_but_merge_is_clean(r)
    r.checkout("main")
    comparisons = assert_matches_git(r.path, branch, "main", (Strategy.AUTO,))
    assert all(c.result.strategy_used == Strategy.MERGE for c in comparisons)


def test_orphan_branch_rebase(tmp_path) -> None:
    """A branch with no history in common with the target: `git rebase` replays all of
    it (root commit included); `git merge` refuses, so only the rebase is compared."""
    r = GitRepo.init(tmp_path / "repo")
    base(r)
    r.git("checkout", "-q", "--orphan", "feat")
    r.git("rm", "-rq", "--cached", ".")
    r.git("clean", "-qfdx")
    r.write("orphan.txt", "o\n")
    r.write_lines("src/app.py", with_line(APP, 0, "orphan"))
    r.commit("orphan: root")
    r.write("orphan2.txt", "o2\n")
    r.commit("orphan: two")
    r.checkout("main")
    r.write("main.txt", "m\n")
    r.commit("main: change")
    rebase = git_rebase_result(r.path, "feat", "main")
    assert rebase.status == CONFLICT  # both sides add src/app.py, differently
    assert_matches_git(r.path, "feat", "main", (Strategy.REBASE,), rebase=rebase, merge=rebase)


def test_orphan_branch_rebase_clean(tmp_path) -> None:
    r = GitRepo.init(tmp_path / "repo")
    base(r)
    r.git("checkout", "-q", "--orphan", "feat")
    r.git("rm", "-rq", "--cached", ".")
    r.git("clean", "-qfdx")
    r.write("orphan.txt", "o\n")
    r.commit("orphan: root")
    r.write("README.md", "# project\n")  # identical to main's: merges cleanly
    r.commit("orphan: two")
    r.checkout("main")
    r.write("main.txt", "m\n")
    r.commit("main: change")
    rebase = git_rebase_result(r.path, "feat", "main")
    assert rebase.status == ALIGNED
    assert_matches_git(r.path, "feat", "main", (Strategy.REBASE,), rebase=rebase, merge=rebase)


# ---------------------------------------------------------------------------------------
# the helpers themselves: the oracle is only as good as the repositories it sees
# ---------------------------------------------------------------------------------------


def test_helpers_build_the_same_shas_every_time(tmp_path) -> None:
    shas = []
    for name in ("one", "two"):
        r = GitRepo.init(tmp_path / name)
        base(r)
        branch = merge_commit_inside_branch(r)
        shas.append((r.rev(branch), r.rev("main"), r.rev("side")))
    assert shas[0] == shas[1]


def test_helpers_record_modes_bytes_links_and_encodings(tmp_path) -> None:
    r = GitRepo.init(tmp_path / "repo")
    base(r)
    r.chmod("tools/run.sh", True)
    r.gitlink("vendor/lib", "1" * 40)
    r.commit("caf\u00e9\n".encode("iso-8859-1"), encoding="ISO-8859-1")
    raw_sha = r.commit_raw(b"raw caf\xe9\n")
    listing = {line.split("\t", 1)[1]: line.split()[0] for line in r.out("ls-tree", "-r", "HEAD").splitlines()}
    assert listing["tools/run.sh"] == "100755"
    assert listing["link-to-guide"] == "120000"
    assert listing["vendor/lib"] == "160000"
    assert listing["src/app.py"] == "100644"
    assert r.git("cat-file", "blob", "HEAD:data/blob.bin").stdout == BLOB
    assert r.git("cat-file", "blob", "HEAD:link-to-guide").stdout == b"docs/guide.txt"
    with_header = r.raw_commit(r.rev("HEAD~1"))
    assert b"\nencoding ISO-8859-1\n" in with_header and with_header.endswith(b"\n\ncaf\xe9\n")
    raw = r.raw_commit(raw_sha)
    assert b"\nencoding " not in raw and raw.endswith(b"\n\nraw caf\xe9\n")
    assert r.rev("HEAD") == raw_sha and r.current_branch() == "main"
