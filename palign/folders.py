"""Working folders: private roots created with their owner and mode checked, and folders
named after the host and process that own them (`label~HOST~PID`), removed once that
process is gone: a killed worker cannot clean up after itself, so the next process to
use the same root does. A folder of another host (a cache shared by machines or
containers) is never judged by its process id, only by its age."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import time
from pathlib import Path

from palign.errors import InfrastructureError

_SEPARATOR = "~"


def private_folder(path: Path, mode: int = 0o700) -> Path:
    """`path`, created with `mode` if absent; if present it must be a real folder owned by
    this user that no one else may write (a shared /dev/shm must not hand palign's
    objects, or its checks' trees, to whoever created the folder first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=mode)
    except FileExistsError:
        pass
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise InfrastructureError(
            f"{path} is not a private folder of this user (owner {info.st_uid}, mode {stat.S_IMODE(info.st_mode):o}): "
            "remove it or choose another place"
        )
    return path


def owned_name(label: str) -> str:
    """A folder name that says which host and process own it."""
    return f"{label}{_SEPARATOR}{socket.gethostname()}{_SEPARATOR}{os.getpid()}"


def remove_orphans(
    root: Path, *, older_than: float | None = None, spare_live: bool = False, dry_run: bool = False
) -> int:
    """Folders under `root` whose owner process on this host is gone, and with
    `older_than` (seconds) also any folder not modified for that long (with `spare_live`,
    not those of a process of this host still running); returns how many."""
    cutoff = None if older_than is None else time.time() - older_than
    removed = 0
    for entry in root.iterdir() if root.is_dir() else ():
        try:
            if not entry.is_dir():
                continue
            old = cutoff is not None and entry.stat().st_mtime < cutoff
            if not owner_alive(entry.name) or (old and not (spare_live and _owned_here(entry.name))):
                if not dry_run:
                    shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        except OSError:
            continue
    return removed


def _owned_here(name: str) -> bool:
    parts = name.split(_SEPARATOR)
    return len(parts) >= 3 and parts[-2] == socket.gethostname()


def owner_alive(name: str) -> bool:
    """Is the process that owns the folder (`label~HOST~PID...`) still running? Folders of
    other hosts, and names of other shapes, are taken as alive (not ours to judge)."""
    parts = name.split(_SEPARATOR)
    if len(parts) < 3 or parts[-2] != socket.gethostname():
        return True
    pid_text = parts[-1].split("-", 1)[0].removesuffix(".git")
    if not pid_text.isdigit():
        return True
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
