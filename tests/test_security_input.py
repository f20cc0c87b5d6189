"""Hostile input is a result, never a crash: branches whose trees cannot be checked out
(an absolute symlink, a `.git` entry), a branch name that is not UTF-8, a plan file that
names a tag. The run completes, locally and on workers, and every other branch aligns."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pygit2
import pytest

from tests.conftest import branches_of, read_report, refs_snapshot, run_palign
from tests.gitrepo import GitRepo
from tests.services import RedisServer, Worker

BLOB = pygit2.enums.FileMode.BLOB
LINK = pygit2.enums.FileMode.LINK


def hostile_repo(path: Path) -> GitRepo:
    """main moves; `good` adds a file; `symlink` adds a link to /etc/passwd; `dotgit`
    has a `.git` file in its tree (git itself refuses to write one); `bad\\xffname` is
    `good`'s commit under a name that is not UTF-8."""
    repo = GitRepo.init(path)
    repo.write("a.txt", "a\n")
    repo.commit("base")
    base = repo.rev("main")
    git = pygit2.Repository(str(path))
    signature = pygit2.Signature("Tester", "tester@example.com", 1_700_000_000, 0)

    def commit(ref: str, entries: dict[str, tuple[bytes, int]]) -> str:
        builder = git.TreeBuilder(git[base].peel(pygit2.Tree))
        for name, (data, mode) in entries.items():
            builder.insert(name, git.create_blob(data), mode)
        return str(git.create_commit(ref, signature, signature, ref, builder.write(), [pygit2.Oid(hex=base)]))

    good = commit("refs/heads/good", {"b.txt": (b"b\n", BLOB)})
    commit("refs/heads/symlink", {"evil": (b"/etc/passwd", LINK)})
    # A tree with a `.git` entry, written as raw bytes (libgit2 refuses the name too).
    entries = sorted([(b"100644 .git", b"gitdir: /etc\n"), (b"100644 a.txt", b"a\n")])
    raw = b"".join(head + b"\0" + bytes.fromhex(str(git.create_blob(data))) for head, data in entries)
    tree = repo.git("hash-object", "-t", "tree", "--literally", "-w", "--stdin", input=raw).stdout.decode().strip()
    dotgit = git.create_commit(None, signature, signature, "dot git", pygit2.Oid(hex=tree), [pygit2.Oid(hex=base)])
    repo.git("update-ref", "refs/heads/dotgit", str(dotgit))
    repo.git("update-ref", "refs/heads/bad\udcffname", good)  # the byte 0xff, as the file system carries it
    repo.write("main.txt", "main moves\n")
    repo.commit("main moves")
    return repo


EXPECTED = {
    "good": ("aligned", None),
    "symlink": ("failed_validation", "AbsoluteLinkError"),
    "dotgit": ("error", "invalid name for a tree entry"),
    "bad\\xffname": ("error", "not UTF-8"),
}


def outcomes(report: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """Each branch's status, and the expected reason when its message gives it."""
    found = {}
    for name, branch in branches_of(report).items():
        reason = EXPECTED.get(name, ("", None))[1]
        found[name] = (branch["status"], reason if reason and reason in (branch["error_message"] or "") else None)
    return found


def test_hostile_branches_are_results_of_a_local_run(tmp_path: Path) -> None:
    repo = hostile_repo(tmp_path / "repo")
    result = run_palign("run", str(repo.path), "--onto", "main", "--validate", "ls -la", "--report-dir",
                        str(tmp_path / "out"))  # fmt: skip
    assert result.code == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert outcomes(read_report(tmp_path / "out")) == EXPECTED


def test_hostile_branches_are_results_of_a_distributed_run(
    tmp_path: Path, redis_server: RedisServer, start_worker: Callable[..., Worker]
) -> None:
    repo = hostile_repo(tmp_path / "repo")
    config = tmp_path / "palign.toml"
    config.write_text('[validate]\nlisting = "ls -la"\n')
    start_worker("w", config=config)
    result = run_palign("run", str(repo.path), "--onto", "main", "--broker", redis_server.url, "--config",
                        str(config), "--report-dir", str(tmp_path / "out"))  # fmt: skip
    assert result.code == 1, result.stdout + result.stderr
    assert outcomes(read_report(tmp_path / "out")) == EXPECTED


@pytest.mark.parametrize("entry", ["refs/tags/v1.0", "refs/remotes/origin/main", "refs/palign/backup/x/main"])
def test_a_plan_file_moves_only_branches(tmp_path: Path, entry: str) -> None:
    repo = GitRepo.init(tmp_path / "repo")
    repo.write("a.txt", "a\n")
    repo.commit("base")
    repo.git("tag", "v1.0")
    repo.git("update-ref", "refs/remotes/origin/main", "main")
    repo.write("b.txt", "b\n")
    repo.commit("main moves")
    plan = tmp_path / "plan.json"
    entry_json = {"branch_name": entry, "assigned_target": "main", "confidence": 1.0, "tags": [], "cluster_id": "c1"}
    plan.write_text(json.dumps({"branches": [entry_json]}))
    before = refs_snapshot(repo.path)
    result = run_palign("run", str(repo.path), "--onto", "main", "--plan", str(plan), "--apply", cwd=tmp_path)
    assert result.code == 2, result.stdout + result.stderr
    assert "is not a branch" in result.stderr and result.stderr.count("\n") == 1
    assert refs_snapshot(repo.path) == before  # the tag, and everything else, where it was
    assert not (tmp_path / "palign-report").exists()
