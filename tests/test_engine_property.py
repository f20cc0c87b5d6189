"""Random histories: palign's engine gives git's verdict and tree, for every strategy.

Hypothesis draws a base tree of small files in nested folders, 0-4 target commits and
1-4 branch commits (edit a line, add, delete, rename a file, rename a folder, chmod,
file -> folder, file -> symlink, cherry-pick a target commit, empty commit, a side
branch merged into the branch), the repository is built with the git CLI, and
palign's rebase, merge and auto results are compared with `git rebase` / `git merge`
(see oracle.py). Files have five short lines, so content merges and conflicts both occur.

PALIGN_HYPOTHESIS_EXAMPLES sets the number of examples (default 40); the run is
derandomized, so CI sees the same histories every time. PALIGN_HYPOTHESIS_SHRINK=1 turns
shrinking on (off by default to keep a failing run short; the failing history is printed
either way).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st

from tests.gitrepo import GitRepo, hermetic_env
from tests.oracle import compare_all, df_label_agnostic

# Hypothesis writes its example database and, on failure, patch files under ./.hypothesis:
# keep all of that out of the work tree.
try:
    from hypothesis.configuration import set_hypothesis_home_dir

    _HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="palign-hypothesis-")
    set_hypothesis_home_dir(_HYPOTHESIS_HOME)
except ImportError:  # pragma: no cover - an older or newer hypothesis
    _HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="palign-hypothesis-")
    os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", _HYPOTHESIS_HOME)
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, True)

EXAMPLES = int(os.environ.get("PALIGN_HYPOTHESIS_EXAMPLES", "40"))
SHRINK = os.environ.get("PALIGN_HYPOTHESIS_SHRINK", "") not in ("", "0")

PHASES = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if SHRINK else [])


@pytest.fixture(scope="module", autouse=True)
def _hermetic_process_env():
    """The engine's own git calls get the oracle's empty HOME too."""
    env = hermetic_env()
    with pytest.MonkeyPatch.context() as mp:
        for key in ("HOME", "XDG_CONFIG_HOME", "LC_ALL", "LANG", "TZ"):
            mp.setenv(key, env[key])
        yield


# ---------------------------------------------------------------------------------------
# histories
# ---------------------------------------------------------------------------------------

BASE_PATHS = ["top.txt", "d1/a.txt", "d1/b.txt", "d1/sub/c.txt", "d2/e.txt", "d2/deep/er/f.txt"]
VALUES = ["X", "Y", "Z"]
NEW_NAMES = ["n1.txt", "n2.txt", "n3.txt"]
RENAME_NAMES = ["r1.txt", "r2.txt"]
DIR_NAMES = ["m1", "d1/m2", "m3/deeper", "d2"]

idx = st.integers(min_value=0, max_value=31)

edit_op = st.tuples(st.just("edit"), idx, st.integers(0, 4), st.sampled_from(VALUES))
add_op = st.tuples(st.just("add"), idx, st.sampled_from(NEW_NAMES), st.sampled_from(["P", "Q"]))
delete_op = st.tuples(st.just("delete"), idx)
rename_op = st.tuples(st.just("rename"), idx, idx, st.sampled_from(RENAME_NAMES))
rename_dir_op = st.tuples(st.just("rename_dir"), idx, st.sampled_from(DIR_NAMES))
chmod_op = st.tuples(st.just("chmod"), idx)
empty_op = st.tuples(st.just("empty"))
to_dir_op = st.tuples(st.just("to_dir"), idx)  # a file becomes a folder of the same name
symlink_op = st.tuples(st.just("symlink"), idx, st.sampled_from(["t1", "t2"]))
pick_op = st.tuples(st.just("pick"), st.integers(0, 3))

# edits weigh more: they make the content merges and conflicts
common_op = st.one_of(
    edit_op, edit_op, edit_op, add_op, delete_op, rename_op, rename_dir_op, chmod_op, empty_op, to_dir_op, symlink_op
)
# merge_side: one commit on a side branch forked from the base, merged into the branch
# (the rebase then drops the merge and replays the side commit)
branch_op = st.one_of(common_op, pick_op, st.tuples(st.just("merge_side"), common_op))

base_strategy = st.lists(st.sampled_from(BASE_PATHS), min_size=2, max_size=6, unique=True)
# 0-4 target commits, an untouched target (branch up to date) being one case in seven
target_strategy = st.sampled_from([2, 1, 3, 4, 2, 3, 0]).flatmap(lambda n: st.lists(common_op, min_size=n, max_size=n))
branch_strategy = st.lists(branch_op, min_size=1, max_size=4)


def base_lines(path: str) -> list[str]:
    stem = path.replace("/", "_")
    return [f"{stem} line {i} of five" for i in range(5)]


def _dirs(files: list[str]) -> list[str]:
    found = {""}
    for path in files:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            found.add("/".join(parts[:i]))
    return sorted(found)


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def apply_op(r: GitRepo, op: tuple, picks: list[str], label: str) -> str:
    """Apply one operation and commit it; returns a description of what was done."""
    kind = op[0]
    files = r.files()
    message = f"{label}: {kind}"
    if kind in ("edit", "delete", "rename", "chmod", "to_dir", "symlink") and not files:
        kind = "empty"
    if kind == "edit":
        _, fi, line, value = op
        path = files[fi % len(files)]
        if os.path.islink(r.path / path):
            r.symlink(path, f"target-{value}")
        else:
            lines = r.read(path).decode().splitlines() or [""]
            lines[line % len(lines)] = f"{value} {label}" if value == "Z" else value
            r.write_lines(path, lines)
        message += f" {path}:{line}={value}"
    elif kind == "add":
        _, di, name, value = op
        dirs = _dirs(files)
        path = _join(dirs[di % len(dirs)], name)
        if os.path.isdir(r.path / path):
            path = _join(path, name)
        r.write_lines(path, [f"new {name} {value} {i}" for i in range(5)])
        message += f" {path}"
    elif kind == "delete":
        path = files[op[1] % len(files)]
        r.delete(path)
        message += f" {path}"
    elif kind == "rename":
        _, fi, di, name = op
        src = files[fi % len(files)]
        dirs = _dirs(files)
        dst = _join(dirs[di % len(dirs)], name)
        if dst == src or os.path.isdir(r.path / dst):
            kind = "empty"
        else:
            r.move(src, dst)
            message += f" {src} -> {dst}"
    elif kind == "rename_dir":
        _, di, new = op
        dirs = [d for d in _dirs(files) if d]
        src = dirs[di % len(dirs)] if dirs else None
        if (
            src is None
            or r.exists(new)
            or new.startswith(src + "/")
            or src.startswith(new + "/")
            or (os.path.dirname(new) and os.path.isfile(r.path / os.path.dirname(new)))
        ):
            kind = "empty"
        else:
            r.move(src, new)
            message += f" {src}/ -> {new}/"
    elif kind == "chmod":
        path = files[op[1] % len(files)]
        if os.path.islink(r.path / path):
            kind = "empty"
        else:
            executable = bool((r.path / path).stat().st_mode & 0o100)
            r.chmod(path, not executable)
            message += f" {path} {'-x' if executable else '+x'}"
    elif kind == "to_dir":
        path = files[op[1] % len(files)]
        content = r.read(path) if not os.path.islink(r.path / path) else b"was a link\n"
        r.delete(path)
        r.write(f"{path}/inner.txt", content)
        message += f" {path} -> {path}/inner.txt"
    elif kind == "symlink":
        _, fi, points_to = op
        path = files[fi % len(files)]
        r.symlink(path, points_to)
        message += f" {path} -> @{points_to}"
    elif kind == "pick":
        if not picks:
            kind = "empty"
        else:
            sha = picks[op[1] % len(picks)]
            proc = r.git(
                "cherry-pick", "--allow-empty", "--keep-redundant-commits", sha, env=r._dated_env(), check=False
            )
            if proc.returncode == 0:
                return f"{label}: cherry-pick {sha[:8]}"
            r.git("cherry-pick", "--abort")
            kind = "empty"
            message = f"{label}: pick conflicted, empty instead"
    if kind == "empty":
        message = f"{label}: empty" if "pick" not in message else message
    r.commit(message, allow_empty=True)
    return message


def merge_side(r: GitRepo, op: tuple, base_sha: str, label: str) -> str:
    side = f"side-{label}"
    r.new_branch(side, base_sha)
    done = apply_op(r, op, [], f"{label}-side")
    r.checkout("feat")
    proc = r.git("merge", "--no-ff", "--no-edit", "-m", f"{label}: merge {side}", side, env=r._dated_env(), check=False)
    if proc.returncode == 0:
        return f"{done}; {label}: merged {side}"
    r.git("merge", "--abort", check=False)
    r.git("reset", "-q", "--hard")
    r.git("clean", "-qffd")
    r.commit(f"{label}: merge conflicted, empty instead", allow_empty=True)
    return f"{done}; {label}: merge of {side} conflicted, empty commit instead"


def build_history(
    root: str, base_files: list[str], target_ops: list[tuple], branch_ops: list[tuple]
) -> tuple[GitRepo, list[str]]:
    r = GitRepo.init(os.path.join(root, "repo"))
    for path in base_files:
        r.write_lines(path, base_lines(path))
    base_sha = r.commit("base")
    r.branch("feat")
    log = [f"base: {base_files}"]
    picks = []
    for n, op in enumerate(target_ops):
        log.append(apply_op(r, op, [], f"main{n}"))
        picks.append(r.rev("HEAD"))
    r.checkout("feat")
    for n, op in enumerate(branch_ops):
        if op[0] == "merge_side":
            log.append(merge_side(r, op[1], base_sha, f"feat{n}"))
        else:
            log.append(apply_op(r, op, picks, f"feat{n}"))
    r.checkout("main")
    return r, log


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
@given(base_files=base_strategy, target_ops=target_strategy, branch_ops=branch_strategy)
def test_random_histories_match_git(base_files, target_ops, branch_ops) -> None:
    with tempfile.TemporaryDirectory(prefix="palign-prop-") as root:
        r, log = build_history(root, base_files, target_ops, branch_ops)
        note("history:\n  " + "\n  ".join(log))
        comparisons = compare_all(r.path, "feat", "main", normalize=df_label_agnostic)
        for c in comparisons:  # shown by --hypothesis-show-statistics
            event(f"{c.strategy.value}: git {c.expectation.git.status.value}")
            if c.strategy.value == "rebase" and c.result.commits_skipped:
                event("rebase: some commit dropped (upstream or became empty)")
            if any(op[0] == "merge_side" for op in branch_ops) and c.strategy.value == "rebase":
                event("branch holds a merge commit")
            if c.strategy.value == "auto" and c.result.strategy_used is not None:
                event(f"auto: result by {c.result.strategy_used.value}")
            if c.result.slow_merges:
                event(f"{c.strategy.value}: used git's merge machinery")
        failed = [c for c in comparisons if c.problems]
        assert not failed, (
            "palign differs from git for the history\n  "
            + "\n  ".join(log)
            + "\n\n"
            + "\n\n".join(c.report() for c in failed)
        )
