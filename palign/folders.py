"""Working folders named after the process that owns them (`label-PID`), and their
removal once that process is gone: a killed worker cannot clean up after itself, so
the next process to use the same root does."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path


def remove_orphans(root: Path, *, older_than: float | None = None) -> None:
    """Folders under `root` whose owner process is gone, and with `older_than` (seconds)
    also any folder not modified for that long."""
    cutoff = None if older_than is None else time.time() - older_than
    for entry in root.iterdir():
        try:
            if not entry.is_dir():
                continue
            if not owner_alive(entry.name) or (cutoff is not None and entry.stat().st_mtime < cutoff):
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


def owner_alive(name: str) -> bool:
    """Is the process whose pid ends the folder's name (`label-PID`, `label-PID.git`)
    still running? Names of other shapes are taken as alive (not ours to judge)."""
    pid_text = name.removesuffix(".git").rsplit("-", 1)[-1]
    if not pid_text.isdigit():
        return True
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
