"""The sandbox a check runs in (bubblewrap), failing closed.

What a check sees and may do, sandboxed:
- its own folder at /check (the tree, a HOME and a TMPDIR), writable; a private /tmp;
- the system read-only: /usr (and the /bin, /lib ... links into it), the few files of /etc
  that programs need (users, hosts, libraries, certificates, alternatives), /opt, and
  the folders the operator adds (PALIGN_SANDBOX_PATHS; palign's own interpreter is
  always there, so Python checks run). Nothing else: no /root, /home, /run/secrets,
  /var, /etc/shadow, ssh keys, palign's mirrors or scratch stores;
- no capabilities and a user namespace of its own (uid 65534), so it cannot remount,
  mount or change anything it sees read-only; its own pid namespace (it sees no other
  process, and all of it dies with it); no network unless the check says
  `network = true`.

Where bubblewrap is missing or cannot start (user namespaces off, a seccomp profile
that forbids them), checks are refused, unless the operator allows unsandboxed checks
(PALIGN_ALLOW_UNSANDBOXED=1, or PALIGN_NO_SANDBOX=1 to never sandbox); the report says
which way each check ran.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from palign.validation.checks import Check

INSIDE = Path("/check")  # where a check's folder appears in the sandbox

_ETC = (
    "passwd",
    "group",
    "hosts",
    "nsswitch.conf",
    "resolv.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "ssl",
    "ca-certificates",
    "localtime",
    "timezone",
    "mime.types",
    "os-release",
    "debian_version",
)
_USR_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


@dataclass(frozen=True)
class Sandbox:
    """How checks are confined on this machine (from its settings)."""

    enabled: bool = True  # use bubblewrap
    allow_unsandboxed: bool = False  # run checks even where bubblewrap does not work
    read_only: tuple[Path, ...] = ()  # more folders checks may read
    interpreter: bool = True  # palign's own Python too, wherever it is installed

    def folders(self) -> tuple[Path, ...]:
        """What checks may read besides /usr and /etc: /opt, the operator's folders, and
        the interpreter palign runs on (checks often run Python)."""
        found = [Path("/opt"), *self.read_only]
        if self.interpreter:
            found += [Path(sys.base_prefix), Path(sys.prefix)]
        return tuple(dict.fromkeys(p for p in found if p.is_dir() and not _under(p, Path("/usr"))))


def _under(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


@dataclass(frozen=True)
class Confinement:
    """How one check will run: the command prefix, where its folder is, and why it runs
    unsandboxed (or is refused)."""

    prefix: list[str]
    folder: Path  # the check's folder as the check sees it
    refusal: str | None = None  # why the check must not run at all
    unsandboxed_because: str | None = None

    @property
    def sandboxed(self) -> bool:
        return bool(self.prefix)


def confine(check: Check, folder: Path, sandbox: Sandbox) -> Confinement:
    """The confinement of `check`, whose folder (tree, home, tmp) is `folder`."""
    if not sandbox.enabled:
        return Confinement([], folder, unsandboxed_because="PALIGN_NO_SANDBOX")
    bwrap = shutil.which("bwrap")
    problem = "bubblewrap (bwrap) is not installed" if bwrap is None else _probe(bwrap, sandbox)
    if problem is not None:
        if sandbox.allow_unsandboxed:
            return Confinement([], folder, unsandboxed_because=f"PALIGN_ALLOW_UNSANDBOXED ({problem})")
        return Confinement(
            [], folder, refusal=f"no sandbox for checks: {problem}; set PALIGN_ALLOW_UNSANDBOXED=1 to run them anyway"
        )
    assert bwrap is not None
    args = [*_bwrap_args(bwrap, sandbox, network=check.network), "--bind", str(folder), str(INSIDE)]
    return Confinement([*args, "--chdir", str(INSIDE / "tree"), "--"], INSIDE)


def _bwrap_args(bwrap: str, sandbox: Sandbox, *, network: bool) -> list[str]:
    args = [bwrap, "--unshare-user", "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL"]
    args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    args += [] if network else ["--unshare-net"]
    args += ["--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr"]
    for name in _USR_LINKS:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", str(path.readlink()), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in _ETC:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for folder in sandbox.folders():  # "try": a folder this user may not reach is left out
        args += ["--ro-bind-try", str(folder), str(folder)]
    return [*args, "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]


_probed: dict[tuple[str, Sandbox], str | None] = {}


def _probe(bwrap: str, sandbox: Sandbox) -> str | None:
    """Whether bubblewrap can start here (once per process): None, or why not."""
    key = (bwrap, sandbox)
    if key not in _probed:
        try:
            proc = subprocess.run(
                [*_bwrap_args(bwrap, sandbox, network=False), "--", "/bin/true"], capture_output=True, timeout=30
            )
            said = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            why = said[-1] if said else f"exit {proc.returncode}"
            _probed[key] = None if proc.returncode == 0 else f"bwrap cannot start: {why}"
        except (OSError, subprocess.TimeoutExpired) as failure:
            _probed[key] = f"bwrap cannot start: {failure}"
    return _probed[key]
