"""The exact path: git's own merge machinery (merge-ort) without a working tree.

`git merge-tree --write-tree` merges two commits at their merge base. To replay one
commit the way `git rebase` does (a three-way merge at the commit's parent), we write
two throw-away commits whose only common ancestor carries the parent's tree; git then
merges exactly (base=parent, ours=current tip, theirs=commit) with all its rules.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

import pygit2

from palign.engine.objects import write_commit

_SYNTHETIC_IDENT = b"palign <palign@localhost> 0 +0000"


@dataclass(frozen=True)
class MergeOutcome:
    tree: pygit2.Oid | None  # None on conflict
    conflicted_paths: tuple[str, ...]


def git_env() -> dict[str, str]:
    """The environment every git command of palign's runs in: no prompts, no pager,
    no hooks, only allow-listed transports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k in _KEPT_GIT_VARS}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_PAGER="cat",
        GIT_ASKPASS="true" if "GIT_ASKPASS" not in os.environ else os.environ["GIT_ASKPASS"],
        GIT_PROTOCOL_FROM_USER="0",
        GIT_CONFIG_COUNT="7",
        GIT_CONFIG_KEY_0="core.hooksPath",
        GIT_CONFIG_VALUE_0="/dev/null",
        GIT_CONFIG_KEY_1="protocol.allow",
        GIT_CONFIG_VALUE_1="never",
        GIT_CONFIG_KEY_2="protocol.file.allow",
        GIT_CONFIG_VALUE_2="always",
        GIT_CONFIG_KEY_3="protocol.ssh.allow",
        GIT_CONFIG_VALUE_3="always",
        GIT_CONFIG_KEY_4="protocol.https.allow",
        GIT_CONFIG_VALUE_4="always",
        GIT_CONFIG_KEY_5="protocol.http.allow",
        GIT_CONFIG_VALUE_5="always",
        GIT_CONFIG_KEY_6="protocol.git.allow",
        GIT_CONFIG_VALUE_6="always",
    )
    return env


# Identity and date variables the user may set on purpose; everything else GIT_* that
# could redirect git (GIT_DIR, GIT_INDEX_FILE, GIT_EXEC_PATH...) is dropped.
_KEPT_GIT_VARS = frozenset(
    {"GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSH_VARIANT", "GIT_ASKPASS", "GIT_SSL_CAINFO", "GIT_SSL_NO_VERIFY"}
)


def _merge_tree(git_dir: str, left: str, right: str) -> MergeOutcome:
    proc = subprocess.run(
        [
            "git",
            "--git-dir",
            git_dir,
            "merge-tree",
            "--write-tree",
            "-z",
            "--name-only",
            "--messages",
            "--end-of-options",
            left,
            right,
        ],
        capture_output=True,
        env=git_env(),
        check=False,
    )
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"git merge-tree failed ({proc.returncode}): {proc.stderr.decode(errors='replace').strip()}")
    fields = proc.stdout.split(b"\0")
    tree = pygit2.Oid(hex=fields[0].decode())
    if proc.returncode == 0:
        return MergeOutcome(tree=tree, conflicted_paths=())
    paths: list[str] = []
    index = 1
    while index < len(fields) and fields[index]:
        paths.append(fields[index].decode("utf-8", "surrogateescape"))
        index += 1
    if not paths:
        # Conflicts with no conflicted entry (a directory rename's "file location"):
        # the messages section names the paths: <count> NUL <path>... NUL <type> NUL <msg>.
        index += 1
        while index < len(fields) and fields[index]:
            count = int(fields[index])
            if fields[index + 1 + count].startswith(b"CONFLICT"):
                paths.extend(f.decode("utf-8", "surrogateescape") for f in fields[index + 1 : index + 1 + count])
            index += count + 3
    return MergeOutcome(tree=None, conflicted_paths=tuple(dict.fromkeys(paths)))


def merge_trees(repo: pygit2.Repository, *, base: pygit2.Oid, ours: pygit2.Oid, theirs: pygit2.Oid) -> MergeOutcome:
    """git's three-way merge of trees at an explicit base (what cherry-pick does)."""
    root = write_commit(
        repo, tree=base, parents=[], author=_SYNTHETIC_IDENT, committer=_SYNTHETIC_IDENT, message=b"base\n"
    )
    left = write_commit(
        repo, tree=ours, parents=[root], author=_SYNTHETIC_IDENT, committer=_SYNTHETIC_IDENT, message=b"ours\n"
    )
    right = write_commit(
        repo, tree=theirs, parents=[root], author=_SYNTHETIC_IDENT, committer=_SYNTHETIC_IDENT, message=b"theirs\n"
    )
    return _merge_tree(repo.path, str(left), str(right))


def merge_commits(repo: pygit2.Repository, *, ours: pygit2.Oid, theirs: pygit2.Oid) -> MergeOutcome:
    """git's merge of two commits at their merge base(s), criss-cross merges included."""
    return _merge_tree(repo.path, str(ours), str(theirs))
