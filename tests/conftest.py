"""Shared fixtures: hermetic git, real repositories in temporary folders, the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def hermetic_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user or system git config, a fixed identity, and a private palign cache."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("PALIGN_CACHE_DIR", str(home / "cache"))
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(key, "Tester")
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(key, "tester@example.com")
    monkeypatch.setenv("PALIGN_COMMITTER_NAME", "Tester")
    monkeypatch.setenv("PALIGN_COMMITTER_EMAIL", "tester@example.com")


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_palign(*args: str, cwd: Path | None = None) -> CliResult:
    """The real console entry point in a real process."""
    proc = subprocess.run(
        [sys.executable, "-m", "palign", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=os.environ.copy(),
        timeout=300,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def git_out(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def refs_snapshot(repo: Path) -> str:
    return git_out(repo, "for-each-ref", "--format=%(objectname) %(refname)")
