"""Run the operator's checks on one commit, each attempt in a throw-away working tree.

Isolation:
- with bubblewrap (`bwrap`, Debian's `bubblewrap`) the check runs in a sandbox: the whole
  file system read-only, palign's cache (the mirrors) and scratch stores hidden, only its
  own tree, HOME and TMPDIR writable, its own process namespace (it sees no other process,
  and all of it dies with it). Without bwrap the rest below still holds, and the report
  says `"sandbox": false`;
- the tree is a plain export of the commit (`git archive`, extracted with tarfile's `data`
  filter: no absolute paths, no `..`, no links leaving the tree) without a `.git`, so no
  hook or repository setting of the branch can act, and the mirror is not reachable
  through the tree;
- the command gets a clean environment (PATH, a private HOME and TMPDIR, a C.UTF-8
  locale): no broker URL, token or git setting of palign's own process leaks into it;
- it runs in a process group of its own, killed as a whole on timeout and when the
  check ends (background processes included);
- the tree is removed afterwards, and trees of processes that died are removed on the
  next start.
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
from palign.errors import GitCommandError, InfrastructureError
from palign.folders import remove_orphans
from palign.settings import Settings
from palign.validation.cache import check_key
from palign.validation.checks import Check

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

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "tree": self.tree, "checks": [c.to_json() for c in self.checks]}


@dataclass(frozen=True)
class Isolation:
    """Where checks run and what confines them, from the settings of the machine."""

    work_root: Path  # throw-away folders, one per attempt
    hidden: tuple[Path, ...]  # folders the sandbox hides (the mirrors, the scratch stores)
    sandbox: bool  # use bubblewrap when it is installed
    path: str  # the PATH checks run with

    @classmethod
    def of(cls, settings: Settings) -> Isolation:
        return cls(
            work_root=settings.cache_dir / "worktrees",
            hidden=(settings.cache_dir, settings.scratch_dir),
            sandbox=settings.sandbox,
            path=settings.check_path,
        )


def validate(
    git_dir: str, commit: str, tree: str, checks: Sequence[Check], cache: CheckCache | None, isolation: Isolation
) -> Validation:
    """Run `checks` in order on `commit` (whose tree id is `tree`) until one fails. A
    (tree, command) pair that passed before (in `cache`) is not run again."""
    outcome = Validation(tree)
    for check in checks:
        key = check_key(tree, check.run)
        known = cache.get(key) if cache is not None else None
        if known is not None:
            result = CheckResult(**{**known, "name": check.name, "cached": True})
        else:
            result = _run_with_retries(git_dir, commit, check, isolation)
            if cache is not None and result.passed:
                # Only passes are kept: a failure (perhaps a flake past its retries) is run again.
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
    root = isolation.work_root
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    remove_orphans(root)
    base = Path(tempfile.mkdtemp(prefix="check-", suffix=f"-{os.getpid()}", dir=root))
    try:
        tree = base / "tree"
        _export(git_dir, commit, tree)
        for private in ("home", "tmp"):
            (base / private).mkdir()
        env = {
            "PATH": isolation.path,
            "HOME": str(base / "home"),
            "TMPDIR": str(base / "tmp"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PALIGN_CHECK": check.name,
        }
        return _execute(check, tree, env, _sandbox(base, isolation))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _export(git_dir: str, commit: str, tree: Path) -> None:
    try:
        archive_bytes = git.run(["--git-dir", git_dir, "archive", "--format=tar", "--end-of-options", commit])
    except GitCommandError as error:
        raise InfrastructureError(f"cannot export {commit[:12]} for its checks: {error.last_line}") from None
    tree.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive_bytes)) as archive:
        archive.extractall(tree, filter="data")


_bwrap_works: bool | None = None


def _sandbox(base: Path, isolation: Isolation) -> list[str]:
    """The bwrap command line that confines a check to `base`, or [] without bwrap."""
    global _bwrap_works
    bwrap = shutil.which("bwrap")
    if bwrap is None or not isolation.sandbox:
        return []
    args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for path in isolation.hidden:
        if path.exists():
            args += ["--tmpfs", str(path)]
    args += ["--bind", str(base), str(base), "--unshare-pid", "--die-with-parent", "--new-session"]
    args += ["--chdir", str(base / "tree"), "--"]
    if _bwrap_works is None:  # user namespaces may be off (some containers): probe once
        probe = subprocess.run([*args[: args.index("--chdir")], "--", "/bin/true"], capture_output=True)
        _bwrap_works = probe.returncode == 0
    return args if _bwrap_works else []


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
