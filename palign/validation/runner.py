"""Run the operator's checks on one commit, each attempt in a throw-away working tree.

Isolation:
- a sandbox (bubblewrap, see `sandbox`): a minimal read-only system, no capabilities, no
  network unless asked, its own processes; where it cannot work, checks are refused
  unless the operator allows them unsandboxed, and the report says how each ran;
- the tree is a plain export of the commit (`git archive`, extracted with tarfile's `data`
  filter: no absolute paths, no `..`, no links leaving the tree) without a `.git`, so no
  hook or repository setting of the branch can act, and the mirror is not reachable
  through the tree; a tree that cannot be exported so fails its check, with the reason;
- the command gets a clean environment (PATH, a private HOME and TMPDIR, a C.UTF-8
  locale): no broker URL, token or git setting of palign's own process leaks into it;
- it runs in a process group of its own, killed as a whole on timeout and when the
  check ends (background processes included);
- the tree is removed afterwards, and trees of processes that died are removed on the
  next start (folders are named after their host and process, in this machine's scratch
  folder, so a cache shared by several machines never mixes them up).
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from palign import git
from palign.errors import GitCommandError
from palign.folders import owned_name, private_folder, remove_orphans
from palign.settings import Settings
from palign.validation.cache import check_key
from palign.validation.checks import Check
from palign.validation.sandbox import Sandbox, confine

OUTPUT_TAIL_BYTES = 4000


class CheckCache(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, record: dict[str, Any]) -> None: ...


@dataclass
class CheckResult:
    name: str
    command: str
    passed: bool
    exit_code: int | None  # None when it was killed on timeout
    duration_seconds: float
    output_tail: str
    attempts: int = 1
    timed_out: bool = False
    cached: bool = False
    sandbox: bool = False  # ran confined by bubblewrap
    unsandboxed_because: str | None = None  # the operator's setting that let it run without
    refused: str | None = None  # why it did not run at all (no sandbox): not the branch's fault
    not_run: str | None = None  # why it could not run on this tree (a hostile tree): the branch's

    @property
    def passed_on_retry(self) -> bool:
        return self.passed and self.attempts > 1

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed_on_retry": self.passed_on_retry}


@dataclass
class Validation:
    tree: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> CheckResult | None:
        return next((c for c in self.checks if not c.passed), None)

    @property
    def refused(self) -> CheckResult | None:
        return next((c for c in self.checks if c.refused), None)

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "tree": self.tree, "checks": [c.to_json() for c in self.checks]}


@dataclass(frozen=True)
class Isolation:
    """Where checks run and what confines them, from the settings of the machine."""

    work_root: Path  # throw-away folders, one per attempt
    sandbox: Sandbox
    path: str  # the PATH checks run with

    @classmethod
    def of(cls, settings: Settings) -> Isolation:
        return cls(
            work_root=settings.scratch_dir / "checks",
            sandbox=Sandbox(settings.sandbox, settings.allow_unsandboxed, settings.sandbox_paths),
            path=settings.check_path,
        )


def validate(
    git_dir: str, commit: str, tree: str, checks: Sequence[Check], cache: CheckCache | None, isolation: Isolation
) -> Validation:
    """Run `checks` in order on `commit` (whose tree id is `tree`) until one fails. A check
    that passed on the same tree before (in `cache`) is not run again."""
    outcome = Validation(tree)
    for check in checks:
        key = check_key(tree, check.ref().digest)
        known = cache.get(key) if cache is not None else None
        if known is not None:
            fields = {name: value for name, value in known.items() if name in CheckResult.__dataclass_fields__}
            result = CheckResult(**{**fields, "name": check.name, "cached": True})
        else:
            result = _run_with_retries(git_dir, commit, check, isolation)
            # Only passes are kept: a failure (perhaps a flake past its retries) is run again.
            if cache is not None and result.passed:
                cache.put(key, {k: v for k, v in asdict(result).items() if k != "cached"})
        outcome.checks.append(result)
        if not result.passed:
            break
    return outcome


def _run_with_retries(git_dir: str, commit: str, check: Check, isolation: Isolation) -> CheckResult:
    started = time.monotonic()
    for attempt in range(1, check.retries + 2):
        result = _run_once(git_dir, commit, check, isolation)
        result.attempts = attempt
        if result.passed:
            break
    result.duration_seconds = round(time.monotonic() - started, 3)
    return result


def _run_once(git_dir: str, commit: str, check: Check, isolation: Isolation) -> CheckResult:
    root = private_folder(isolation.work_root)
    remove_orphans(root)
    base = Path(tempfile.mkdtemp(prefix=owned_name("check") + "-", dir=root))
    try:
        tree = base / "tree"
        problem = _export(git_dir, commit, tree)
        if problem is not None:
            return _not_run(check, f"cannot check out the tree for its checks: {problem}", refused=False)
        for private in ("home", "tmp"):
            (base / private).mkdir()
        confinement = confine(check, base, isolation.sandbox)
        if confinement.refusal is not None:
            return _not_run(check, confinement.refusal, refused=True)
        inside = confinement.folder
        env = {
            "PATH": isolation.path,
            "HOME": str(inside / "home"),
            "TMPDIR": str(inside / "tmp"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PALIGN_CHECK": check.name,
        }
        result = _execute(check, tree, env, confinement.prefix)
        result.unsandboxed_because = confinement.unsandboxed_because
        return result
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _not_run(check: Check, reason: str, *, refused: bool) -> CheckResult:
    return CheckResult(
        name=check.name,
        command=check.run,
        passed=False,
        exit_code=None,
        duration_seconds=0.0,
        output_tail=f"[palign: {reason}]",
        refused=reason if refused else None,
        not_run=None if refused else reason,
    )


def _export(git_dir: str, commit: str, tree: Path) -> str | None:
    """Export the commit's tree into `tree`; or why it cannot be (a hostile tree: an
    absolute symlink, a path leaving the tree...), which fails the check."""
    try:
        archive_bytes = git.run(["--git-dir", git_dir, "archive", "--format=tar", "--end-of-options", commit])
        tree.mkdir()
        with tarfile.open(fileobj=io.BytesIO(archive_bytes)) as archive:
            archive.extractall(tree, filter="data")
    except GitCommandError as error:
        return error.last_line
    except (tarfile.TarError, OSError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def _execute(check: Check, tree: Path, env: dict[str, str], sandbox: list[str]) -> CheckResult:
    started = time.monotonic()
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(
            [*sandbox, "/bin/sh", "-c", check.run],
            cwd=tree,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed as a whole
        )
        timed_out = False
        try:
            code: int | None = proc.wait(timeout=check.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            code = None
        finally:
            _kill_group(proc.pid)  # on timeout, and whatever it left running in the background
            proc.wait()
        size = output.seek(0, os.SEEK_END)
        output.seek(max(0, size - OUTPUT_TAIL_BYTES))
        tail = output.read().decode("utf-8", "replace")
    if timed_out:
        tail += f"\n[palign: killed after {check.timeout:g} s]"
    return CheckResult(
        name=check.name,
        command=check.run,
        passed=code == 0,
        exit_code=code,
        duration_seconds=round(time.monotonic() - started, 3),
        output_tail=tail,
        timed_out=timed_out,
        sandbox=bool(sandbox),
    )


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
