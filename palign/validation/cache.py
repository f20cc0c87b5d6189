"""Passing check results keyed by (tree id, check): a tree that passed is not checked again.

Locally a folder of small JSON files in the cache (`PALIGN_CACHE_DIR/checks/`); the
distributed mode keeps the same records in Redis. Either way each record is sealed (a
MAC with a key the checker holds: here a key file of this machine's, created once, for
the user only), and a record that does not verify is ignored: a planted "passed" never
makes a failing branch aligned.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from palign.errors import InfrastructureError, MalformedRecord
from palign.folders import private_folder
from palign.signing import Signer

_KEY_FILE = ".key"


def check_key(tree: str, check_digest: str) -> str:
    """The cache key of a check (its `CheckRef` digest: command, timeout, retries,
    network) on a tree."""
    return hashlib.sha256(f"{tree}\0{check_digest}".encode()).hexdigest()


class LocalCheckCache:
    def __init__(self, root: Path) -> None:
        self.root = root  # PALIGN_CACHE_DIR/checks
        self._signer: Signer | None = None

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def _seals(self) -> Signer:
        """The signer of this machine's cache, its key created on first use."""
        if self._signer is None:
            private_folder(self.root)
            path = self.root / _KEY_FILE
            try:
                handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(handle, "wb") as out:
                    out.write(secrets.token_bytes(32))
            except FileExistsError:
                pass
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
                raise InfrastructureError(f"{path} is not a private key file of this user: remove it")
            self._signer = Signer(path.read_bytes(), purpose="check cache")
        return self._signer

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            sealed = json.loads(self._path(key).read_text())
            sealed_key, record = self._seals().open("check", sealed)
        except (OSError, ValueError, MalformedRecord):
            return None  # absent, unreadable, or not sealed by this machine: run the check
        return record if sealed_key == key and isinstance(record, dict) else None

    def prune(self, older_than: float, *, dry_run: bool = False) -> int:
        """Remove the results recorded more than `older_than` seconds ago; returns how many."""
        cutoff = time.time() - older_than
        removed = 0
        for path in self.root.glob("*/*.json") if self.root.is_dir() else ():
            try:
                if path.stat().st_mtime < cutoff:
                    if not dry_run:
                        path.unlink()
                    removed += 1
            except OSError:
                continue
        return removed

    def put(self, key: str, record: dict[str, Any]) -> None:
        sealed = self._seals().seal("check", [key, record])
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(handle, "w") as out:
            json.dump(sealed, out)
        os.replace(temporary, path)  # readers see the old record or the new one, whole
