"""Build real git repositories for the engine tests, with the git CLI, hermetically.

Every git command runs with a private HOME (no global config), no system config, no
hooks, a fixed identity and pinned dates that advance by one minute per commit, so the
same scenario always produces the same shas. Arguments go to git as a list, never
through a shell.
"""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

AUTHOR_NAME = "A U Thor"
AUTHOR_EMAIL = "author@example.com"
COMMITTER_NAME = "C O Mitter"
COMMITTER_EMAIL = "committer@example.com"
EPOCH = 1_700_000_000

_HOME: str | None = None


def hermetic_home() -> str:
    """One empty HOME for this test process (no ~/.gitconfig, no XDG config)."""
    global _HOME
    if _HOME is None or not os.path.isdir(_HOME):
        _HOME = tempfile.mkdtemp(prefix="palign-test-home-")
        atexit.register(shutil.rmtree, _HOME, True)
    return _HOME


def hermetic_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every git command the tests run: nothing of the caller's GIT_*
    variables, no system or global config, fixed identity, C locale."""
    home = hermetic_home()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        HOME=home,
        XDG_CONFIG_HOME=os.path.join(home, ".config"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME=AUTHOR_NAME,
        GIT_AUTHOR_EMAIL=AUTHOR_EMAIL,
        GIT_COMMITTER_NAME=COMMITTER_NAME,
        GIT_COMMITTER_EMAIL=COMMITTER_EMAIL,
        GIT_AUTHOR_DATE=f"{EPOCH} +0000",
        GIT_COMMITTER_DATE=f"{EPOCH} +0000",
        GIT_TERMINAL_PROMPT="0",
        GIT_PAGER="cat",
        GIT_EDITOR="true",
        GIT_SEQUENCE_EDITOR="true",
        GIT_MERGE_AUTOEDIT="no",
        LC_ALL="C",
        LANG="C",
        LANGUAGE="C",
        TZ="UTC",
    )
    env.pop("EDITOR", None)
    env.pop("VISUAL", None)
    if extra:
        env.update(extra)
    return env


# Options every git invocation gets: hooks off, and no fsmonitor/gc side effects.
GIT_BASE_OPTS = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "gc.auto=0",
    "-c",
    "maintenance.auto=false",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "advice.detachedHead=false",
    "-c",
    "commit.gpgSign=false",
    "-c",
    "tag.gpgSign=false",
)


class GitError(RuntimeError):
    def __init__(self, args: list[str], proc: subprocess.CompletedProcess[bytes]):
        self.proc = proc
        super().__init__(
            f"git {' '.join(args)} exited {proc.returncode}\n"
            f"stdout: {proc.stdout.decode(errors='replace')}\nstderr: {proc.stderr.decode(errors='replace')}"
        )


def run_git(
    cwd: str | os.PathLike[str],
    *args: str,
    input: bytes | None = None,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    argv = ["git", *GIT_BASE_OPTS, *args]
    proc = subprocess.run(argv, cwd=cwd, input=input, capture_output=True, env=env or hermetic_env(), check=False)
    if check and proc.returncode != 0:
        raise GitError(list(args), proc)
    return proc


class GitRepo:
    """A non-bare repository in a folder, built commit by commit with the git CLI."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._tick = 0

    # ---- creation -------------------------------------------------------------------

    @classmethod
    def init(cls, path: str | os.PathLike[str], *, initial_branch: str = "main") -> GitRepo:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        run_git(path, "init", "-q", "--template=", "-b", initial_branch, ".")  # no template: 5x faster
        return cls(path)

    # ---- running git ----------------------------------------------------------------

    def _dated_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        self._tick += 1
        stamp = f"{EPOCH + 60 * self._tick} +0000"
        env = hermetic_env({"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp})
        if extra:
            env.update(extra)
        return env

    def git(
        self, *args: str, input: bytes | None = None, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return run_git(self.path, *args, input=input, check=check, env=env)

    def out(self, *args: str) -> str:
        return self.git(*args).stdout.decode().strip()

    def rev(self, rev: str) -> str:
        """The full sha of a revision (refname, sha, HEAD...)."""
        return self.out("rev-parse", "--verify", "-q", "--end-of-options", rev + "^{commit}")

    def tree(self, rev: str) -> str:
        return self.out("rev-parse", "--verify", "-q", "--end-of-options", rev + "^{tree}")

    def raw_commit(self, sha: str) -> bytes:
        return self.git("cat-file", "commit", sha).stdout

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        proc = self.git("merge-base", "--is-ancestor", ancestor, descendant, check=False)
        if proc.returncode not in (0, 1):
            raise GitError(["merge-base", "--is-ancestor", ancestor, descendant], proc)
        return proc.returncode == 0

    def config(self, key: str, value: str) -> None:
        """Set repository-local config (the oracle's clones copy it)."""
        self.git("config", "--local", key, value)

    # ---- the working tree -----------------------------------------------------------

    def _abs(self, rel: str) -> Path:
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write(self, rel: str, content: str | bytes, *, executable: bool | None = None) -> None:
        """Write a file (text or raw bytes); `executable` sets or clears the x bits,
        None keeps the file's current mode (0644 for a new file)."""
        target = self._abs(rel)
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            old_exec = not target.is_symlink() and bool(target.stat().st_mode & stat.S_IXUSR)
            target.unlink()
        elif target.is_dir():
            old_exec = False
            shutil.rmtree(target)
        else:
            old_exec = False
        data = content.encode() if isinstance(content, str) else content
        target.write_bytes(data)
        self.chmod(rel, old_exec if executable is None else executable)

    def write_lines(self, rel: str, lines: Iterable[str], *, executable: bool | None = None) -> None:
        self.write(rel, "".join(line + "\n" for line in lines), executable=executable)

    def read(self, rel: str) -> bytes:
        return (self.path / rel).read_bytes()

    def chmod(self, rel: str, executable: bool) -> None:
        target = self.path / rel
        target.chmod(0o755 if executable else 0o644)

    def symlink(self, rel: str, points_to: str) -> None:
        target = self._abs(rel)
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        os.symlink(points_to, target)

    def move(self, src: str, dst: str) -> None:
        """Rename a file or a whole directory (the index picks it up at commit)."""
        target = self._abs(dst)
        os.rename(self.path / src, target)
        self._prune_empty_dirs(Path(src).parent)

    def delete(self, rel: str) -> None:
        target = self.path / rel
        if target.is_symlink() or target.is_file():
            target.unlink()
        else:
            shutil.rmtree(target)
        self._prune_empty_dirs(Path(rel).parent)

    def _prune_empty_dirs(self, rel_dir: Path) -> None:
        while str(rel_dir) not in ("", "."):
            folder = self.path / rel_dir
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
                rel_dir = rel_dir.parent
            else:
                break

    def gitlink(self, rel: str, sha: str) -> None:
        """Stage a submodule pointer (mode 160000) to `sha` (which need not exist here);
        an empty folder stands for the submodule, which `git add -A` leaves alone."""
        (self.path / rel).mkdir(parents=True, exist_ok=True)
        self.git("update-index", "--add", "--cacheinfo", f"160000,{sha},{rel}")

    def exists(self, rel: str) -> bool:
        return os.path.lexists(self.path / rel)

    def files(self) -> list[str]:
        """Tracked-or-not files of the working tree (no .git), as relative paths."""
        found = []
        for root, dirs, names in os.walk(self.path):
            if ".git" in dirs and Path(root) == self.path:
                dirs.remove(".git")
            for name in names:
                found.append(os.path.relpath(os.path.join(root, name), self.path))
            for name in list(dirs):
                full = os.path.join(root, name)
                if os.path.islink(full):
                    found.append(os.path.relpath(full, self.path))
        return sorted(found)

    # ---- commits --------------------------------------------------------------------

    def commit(
        self,
        message: str | bytes = "change",
        *,
        allow_empty: bool = False,
        encoding: str | None = None,
        author: str | None = None,
    ) -> str:
        """Stage everything and commit. `encoding` (e.g. ISO-8859-1) records an
        `encoding` header, the message bytes being in that encoding."""
        self.git("add", "-A")
        args = []
        if encoding is not None:
            args += ["-c", f"i18n.commitEncoding={encoding}"]
        args += ["commit", "-q", "--no-verify", "--cleanup=verbatim", "--allow-empty-message", "-F", "-"]
        if allow_empty:
            args.append("--allow-empty")
        if author is not None:
            args.append(f"--author={author}")
        data = message.encode() if isinstance(message, str) else message
        self.git(*args, input=data, env=self._dated_env())
        return self.rev("HEAD")

    def commit_raw(
        self,
        message: bytes,
        *,
        encoding: str | None = None,
        parents: list[str] | None = None,
        author_line: bytes | None = None,
    ) -> str:
        """Stage everything and write the commit object byte for byte (`git commit`
        would re-encode a non-UTF-8 message that has no encoding header), then move the
        current branch to it."""
        self.git("add", "-A")
        tree = self.out("write-tree")
        if parents is None:
            head = self.git("rev-parse", "-q", "--verify", "HEAD", check=False)
            parents = [head.stdout.decode().strip()] if head.returncode == 0 else []
        self._tick += 1
        stamp = f"{EPOCH + 60 * self._tick} +0000".encode()
        author = author_line or f"{AUTHOR_NAME} <{AUTHOR_EMAIL}> ".encode() + stamp
        committer = f"{COMMITTER_NAME} <{COMMITTER_EMAIL}> ".encode() + stamp
        lines = [b"tree " + tree.encode()]
        lines += [b"parent " + p.encode() for p in parents]
        lines += [b"author " + author, b"committer " + committer]
        if encoding is not None:
            lines.append(b"encoding " + encoding.encode())
        body = b"\n".join(lines) + b"\n\n" + message
        sha = self.git("hash-object", "-t", "commit", "-w", "--stdin", input=body).stdout.decode().strip()
        self.git("update-ref", "-m", "commit_raw", "HEAD", sha)
        return sha

    def empty_commit(self, message: str = "empty") -> str:
        return self.commit(message, allow_empty=True)

    def merge(self, other: str, message: str = "merge", *, resolve: dict[str, str | bytes] | None = None) -> str:
        """A real merge commit of `other` into the current branch (never fast-forward).
        On a conflict, `resolve` gives the resolved files' contents; without it, raises."""
        env = self._dated_env()
        proc = self.git("merge", "-q", "--no-ff", "--no-edit", "-m", message, other, env=env, check=resolve is None)
        if proc.returncode != 0:
            assert resolve is not None
            for rel, content in resolve.items():
                self.write(rel, content)
            self.git("add", "-A")
            self.git("commit", "-q", "--no-verify", "--no-edit", env=env)
        return self.rev("HEAD")

    def cherry_pick(self, sha: str) -> str:
        self.git("cherry-pick", "--allow-empty", "--keep-redundant-commits", sha, env=self._dated_env())
        return self.rev("HEAD")

    # ---- branches -------------------------------------------------------------------

    def branch(self, name: str, start: str = "HEAD") -> None:
        self.git("check-ref-format", "--branch", name)
        self.git("update-ref", f"refs/heads/{name}", self.rev(start))

    def checkout(self, name: str) -> None:
        """Switch to an existing branch (by short name; names may start like options
        after a prefix, so the full refname is resolved first)."""
        self.git("symbolic-ref", "HEAD", f"refs/heads/{name}")
        self.git("reset", "-q", "--hard")
        self.git("clean", "-q", "-f", "-f", "-d")

    def new_branch(self, name: str, start: str = "HEAD") -> None:
        self.branch(name, start)
        self.checkout(name)

    def current_branch(self) -> str:
        return self.out("symbolic-ref", "--short", "HEAD")
