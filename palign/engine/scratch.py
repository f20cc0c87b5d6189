"""A throw-away object store for the objects one run creates.

Replayed commits, their trees and the throw-away commits of git merges are written to a
bare repository that borrows every existing object from the mirror (git alternates) and
lives on memory-backed storage when the machine has it (`Settings.scratch_dir`). Results
leave it by `git push` to REPO; the store is removed when the run ends (and leftovers of
crashed runs on the next start).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import TracebackType

import pygit2

from palign.folders import owned_name, private_folder, remove_orphans
from palign.model import COMMIT_SETTINGS

_LEFTOVER_AGE_SECONDS = 24 * 3600


class ScratchStore:
    def __init__(
        self, mirror_git_dir: Path, label: str, *, root: Path, git_config: dict[str, str] | None = None
    ) -> None:
        """`git_config` (REPO's settings) goes into the store's config, where the engine
        reads how git would write commits (encoding, message cleanup)."""
        self.mirror_git_dir = mirror_git_dir
        self.git_config = git_config or {}
        self.path = root / f"{owned_name(label)}.git"

    def __enter__(self) -> ScratchStore:
        root = private_folder(self.path.parent)
        remove_orphans(root, older_than=_LEFTOVER_AGE_SECONDS)
        repo = pygit2.init_repository(str(self.path), bare=True)
        allowed = {name.lower() for name in COMMIT_SETTINGS}
        for key, value in self.git_config.items():
            if key.lower() in allowed and "\n" not in value:  # only what shapes commits, ever
                repo.config[key] = value
        alternates = self.path / "objects" / "info" / "alternates"
        alternates.write_text(str((self.mirror_git_dir / "objects").resolve()) + "\n")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
