"""Passing check results keyed by (tree id, command): a tree that passed is not checked again.

Locally a folder of small JSON files in the cache (`PALIGN_CACHE_DIR/checks/`); the
distributed mode keeps the same records in Redis.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def check_key(tree: str, command: str) -> str:
    return hashlib.sha256(f"{tree}\0{command}".encode()).hexdigest()


class LocalCheckCache:
    def __init__(self, root: Path) -> None:
        self.root = root  # PALIGN_CACHE_DIR/checks

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = json.loads(self._path(key).read_text())
            return found
        except (OSError, ValueError):
            return None

    def put(self, key: str, record: dict[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(handle, "w") as out:
            json.dump(record, out)
        os.replace(temporary, path)  # readers see the old record or the new one, whole
