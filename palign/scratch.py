"""A throw-away object store for the objects one run creates.

Replayed commits, their trees and the throw-away commits of git merges are written to a
bare repository that borrows every existing object from the mirror (git alternates) and
lives on memory-backed storage when the machine has it: writing a loose object there
costs a tenth of what it costs on disk. Results leave it by `git push` to REPO; the
store is removed when the run ends (and leftovers of crashed runs on the next start).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from types import TracebackType

import pygit2

_LEFTOVER_AGE_SECONDS = 24 * 3600


def scratch_root() -> Path:
    configured = os.environ.get("PALIGN_SCRATCH_DIR")
    if configured:
        return Path(configured)
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm / f"palign-{os.getuid()}"
    from palign.transport import cache_dir

    return cache_dir() / "scratch"


class ScratchStore:
    def __init__(self, mirror_git_dir: Path, label: str, *, settings: dict[str, str] | None = None) -> None:
        """`settings` (git config of REPO) go into the store's config, where the engine
        reads how git would write commits (encoding, message cleanup)."""
        self.mirror_git_dir = mirror_git_dir
        self.settings = settings or {}
        root = scratch_root()
        self.path = root / f"{label}-{os.getpid()}.git"

    def __enter__(self) -> ScratchStore:
        root = self.path.parent
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        _remove_leftovers(root)
        repo = pygit2.init_repository(str(self.path), bare=True)
        for key, value in self.settings.items():
            repo.config[key] = value
        alternates = self.path / "objects" / "info" / "alternates"
        alternates.write_text(str((self.mirror_git_dir / "objects").resolve()) + "\n")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def remove_orphans(root: Path) -> None:
    """Folders `...-PID` under `root` whose process is gone (a killed worker's)."""
    for entry in root.iterdir():
        try:
            if entry.is_dir() and not _owner_alive(entry.name):
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


def _remove_leftovers(root: Path) -> None:
    """Stores of processes that died without cleaning up (a killed worker): those whose
    owner process is gone, and anything older than a day."""
    cutoff = time.time() - _LEFTOVER_AGE_SECONDS
    for entry in root.iterdir():
        try:
            if not entry.is_dir():
                continue
            if entry.stat().st_mtime < cutoff or not _owner_alive(entry.name):
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


def _owner_alive(name: str) -> bool:
    """Is the process whose pid ends the store's name (`label-PID.git`) still running?"""
    pid_text = name.removesuffix(".git").rsplit("-", 1)[-1]
    if not pid_text.isdigit():
        return True  # not one of ours: leave it to the age rule
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
