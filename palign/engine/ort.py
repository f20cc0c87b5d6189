"""The exact path: git's own merge machinery (merge-ort) without a working tree.

`git merge-tree --write-tree` merges two commits at their merge base. To replay one
commit the way `git rebase` does (a three-way merge at the commit's parent), we write
two throw-away commits whose only common ancestor carries the parent's tree; git then
merges exactly (base=parent, ours=current tip, theirs=commit) with all its rules.

One `git merge-tree --stdin` process per repository and worker process serves every
merge, so a merge costs git's merge, not a process start. git buffers its output and
flushes it only while printing messages, so each request is followed by a sentinel
merge whose known answer marks the end of the real one.
"""

from __future__ import annotations

import atexit
import os
import select
from dataclasses import dataclass
from pathlib import Path

import pygit2

from palign import git
from palign.engine.objects import write_commit
from palign.errors import GitCommandError, UnrelatedHistories

_SYNTHETIC_IDENT = b"palign <palign@localhost> 0 +0000"
_REPLY_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class MergeOutcome:
    tree: pygit2.Oid | None  # None on conflict
    conflicted_paths: tuple[str, ...]
    conflicted_tree: pygit2.Oid | None = None  # on conflict: the tree git wrote, conflict markers and all


def _synthetic(repo: pygit2.Repository, tree: pygit2.Oid, parents: list[pygit2.Oid], label: bytes) -> pygit2.Oid:
    return write_commit(
        repo, tree=tree, parents=parents, author=_SYNTHETIC_IDENT, committer=_SYNTHETIC_IDENT, message=label
    )


class MergeTreeProcess:
    """A long-lived `git merge-tree --write-tree --stdin` on one repository."""

    def __init__(self, repo: pygit2.Repository) -> None:
        self.repo = repo
        blob = repo.create_blob(b"palign merge-tree sentinel\n")
        builder = repo.TreeBuilder()
        builder.insert("palign-sentinel", blob, pygit2.enums.FileMode.BLOB)
        self._sentinel_tree = builder.write()
        root = _synthetic(repo, self._sentinel_tree, [], b"sentinel\n")
        left = _synthetic(repo, self._sentinel_tree, [root], b"sentinel left\n")
        right = _synthetic(repo, self._sentinel_tree, [root], b"sentinel right\n")
        self._sentinel_request = f"{left} {right}\n".encode()
        self._sentinel_reply = b"1\0" + str(self._sentinel_tree).encode() + b"\0\0"
        self._proc: git.Process | None = None
        self._attributes: bytes = b""
        self._attributes_file = Path(repo.path) / f"palign-attributes-{os.getpid()}"
        self._global_attributes = git.global_attributes_file()

    @property
    def paths_matter(self) -> bool:
        """Whether any attributes could apply (then merged files keep their real paths)."""
        return bool(self._attributes) or self._global_attributes is not None

    def use_attributes(self, attributes: bytes) -> None:
        """Merge with these repository attributes from now on (git reads them once, so a
        change restarts the process)."""
        if attributes == self._attributes:
            return
        self.close()
        self._attributes = attributes
        if attributes:
            global_text = b""
            if self._global_attributes is not None and self._global_attributes.exists():
                global_text = self._global_attributes.read_bytes().rstrip(b"\n") + b"\n"
            self._attributes_file.write_bytes(global_text + attributes)

    def _start(self) -> git.Process:
        if self._proc is None or self._proc.poll() is not None:
            config = ["-c", f"core.attributesFile={self._attributes_file}"] if self._attributes else []
            self._proc = git.start(
                [*config, "--git-dir", self.repo.path, "merge-tree", "--write-tree", "--stdin", "-z", "--name-only"]
                + ["--messages"]
            )
            self._fresh = True
        return self._proc

    def close(self) -> None:
        if self._proc is not None:
            git.stop(self._proc)
        self._proc = None

    def merge(self, left: pygit2.Oid, right: pygit2.Oid) -> MergeOutcome:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(f"{left} {right}\n".encode() + self._sentinel_request)
            proc.stdin.flush()
            reply = self._read_reply(proc)
        except (BrokenPipeError, OSError) as error:
            self.close()
            raise GitCommandError("merge-tree", -1, f"stopped: {error}") from None
        return _parse(reply)

    def _read_reply(self, proc: git.Process) -> bytes:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        buffer = b""
        while not buffer.endswith(self._sentinel_reply):
            ready, _, _ = select.select([fd], [], [], _REPLY_TIMEOUT_SECONDS)
            if not ready:
                self.close()
                raise GitCommandError("merge-tree", -1, "did not answer in time")
            chunk = os.read(fd, 65536)
            if not chunk:
                self.close()
                raise GitCommandError("merge-tree", -1, "exited (see the repository's objects)")
            buffer += chunk
        # The previous sentinel's separator arrives first (except on a fresh process);
        # the real reply ends with its own separator, then the sentinel's reply.
        if not self._fresh and buffer.startswith(b"\0"):
            buffer = buffer[1:]
        self._fresh = False
        return buffer[: -len(self._sentinel_reply) - 1]


def _parse(reply: bytes) -> MergeOutcome:
    fields = reply.split(b"\0")
    clean = fields[0] == b"1"
    tree = pygit2.Oid(hex=fields[1].decode())
    if clean:
        return MergeOutcome(tree=tree, conflicted_paths=())
    paths: list[str] = []
    index = 2
    while index < len(fields) and fields[index]:
        paths.append(fields[index].decode("utf-8", "surrogateescape"))
        index += 1
    if not paths:
        # Conflicts with no conflicted entry (a directory rename's "file location"):
        # the messages name the paths: <count> NUL <path>... NUL <type> NUL <text>.
        index += 1
        while index < len(fields) and fields[index]:
            count = int(fields[index])
            if fields[index + 1 + count].startswith(b"CONFLICT"):
                paths.extend(f.decode("utf-8", "surrogateescape") for f in fields[index + 1 : index + 1 + count])
            index += count + 3
    return MergeOutcome(tree=None, conflicted_paths=tuple(dict.fromkeys(paths)), conflicted_tree=tree)


# Keyed by pid too: a forked worker must never share its parent's pipes.
_processes: dict[tuple[int, str], MergeTreeProcess] = {}


def process_for(repo: pygit2.Repository) -> MergeTreeProcess:
    key = (os.getpid(), repo.path)
    process = _processes.get(key)
    if process is None:
        process = MergeTreeProcess(repo)
        _processes[key] = process
    return process


@atexit.register
def close_all() -> None:
    for (pid, _), process in list(_processes.items()):
        if pid == os.getpid():
            process.close()
    _processes.clear()


def merge_trees(repo: pygit2.Repository, *, base: pygit2.Oid, ours: pygit2.Oid, theirs: pygit2.Oid) -> MergeOutcome:
    """git's three-way merge of trees at an explicit base (what cherry-pick does)."""
    root = _synthetic(repo, base, [], b"base\n")
    left = _synthetic(repo, ours, [root], b"ours\n")
    right = _synthetic(repo, theirs, [root], b"theirs\n")
    outcome = process_for(repo).merge(left, right)
    # git names the two sides of a file/directory conflict `path~<side>`, the side being
    # our throw-away commit here: report the path itself.
    paths = tuple(dict.fromkeys(without_side_label(p, (left, right)) for p in outcome.conflicted_paths))
    return MergeOutcome(tree=outcome.tree, conflicted_paths=paths, conflicted_tree=outcome.conflicted_tree)


def without_side_label(path: str, sides: tuple[pygit2.Oid | str, ...]) -> str:
    """`path` without the `~<side>` git appends to one side of a file/directory conflict,
    the sides being the commits merged (git labels them by what it was given)."""
    labels = tuple(f"~{side}" for side in sides)
    for label in labels:
        cut = path.rfind("~")
        if cut > 0 and label.startswith(path[cut:]) and len(path) - cut > 4:
            return path[:cut]
    return path


def merge_commits(repo: pygit2.Repository, *, ours: pygit2.Oid, theirs: pygit2.Oid) -> MergeOutcome:
    """git's merge of two commits at their merge base(s), criss-cross merges included;
    unrelated histories are refused, as `git merge` refuses them."""
    if repo.merge_base(ours, theirs) is None:
        raise UnrelatedHistories("refusing to merge unrelated histories")
    return process_for(repo).merge(ours, theirs)


def merge_commits_by_sha(repo: pygit2.Repository, *, ours: str, theirs: str) -> MergeOutcome:
    """`merge_commits` of two commits named by their shas."""
    return merge_commits(repo, ours=pygit2.Oid(hex=ours), theirs=pygit2.Oid(hex=theirs))


def merge_trees_by_sha(repo: pygit2.Repository, *, base: str, ours: str, theirs: str) -> MergeOutcome:
    """`merge_trees` of three trees named by their shas."""
    return merge_trees(repo, base=pygit2.Oid(hex=base), ours=pygit2.Oid(hex=ours), theirs=pygit2.Oid(hex=theirs))
