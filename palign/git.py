"""The one way palign starts git. Every git process runs from here:

- with an argument list, never a shell, and user strings only as full ref names, shas or
  after `--end-of-options` (the callers' part);
- in a scrubbed environment: no prompts, no pager, variables that could redirect git
  (GIT_DIR, GIT_INDEX_FILE, GIT_EXEC_PATH ...) dropped;
- with palign's safety config: hooks off, only the file, ssh, https, http and git
  transports allowed;
- with credentials for REPO, when there are any, handed over by a credential helper
  through the environment: never on a command line, where every local user can read it;
- with its failure translated into palign's error tree: `GitCommandError`, and for
  commands that read another repository `remote_failure` tells a repository that is not
  there (bad input) from one that cannot be reached (infrastructure).

One-shot commands go through GitPython's `Git.execute`; long-lived ones (merge-tree
--stdin, a background diff-tree) are started as processes the caller talks to.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from palign.errors import (
    GitCommandError,
    InfrastructureError,
    PalignError,
    RepositoryNotFound,
    RepositoryUnreachable,
)

ALLOWED_PROTOCOLS = ("file", "ssh", "https", "http", "git")
# Pushing to a repository on this machine runs its receive-pack here: keep its hooks off too.
LOCAL_RECEIVE_PACK = "git -c core.hooksPath=/dev/null receive-pack"

_SAFETY_CONFIG = (
    ("core.hooksPath", "/dev/null"),
    ("protocol.allow", "never"),
    *((f"protocol.{name}.allow", "always") for name in ALLOWED_PROTOCOLS),
)
# Identity, ssh and TLS variables the user may set on purpose; every other GIT_* variable
# that could redirect git (GIT_DIR, GIT_INDEX_FILE, GIT_EXEC_PATH ...) is dropped.
_KEPT_GIT_VARS = frozenset(
    {"GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSH_VARIANT", "GIT_ASKPASS", "GIT_SSL_CAINFO", "GIT_SSL_NO_VERIFY"}
)


@dataclass(frozen=True)
class Login:
    """A user name and password (or token) for REPO, from its URL on the command line."""

    username: str = field(repr=False)  # often a token itself (https://TOKEN@host/...)
    password: str = field(repr=False)


@dataclass(frozen=True)
class CredentialStore:
    """A file of credentials in git's credential-store format (the operator's)."""

    path: Path


Auth = Login | CredentialStore

# Answers git's `get` from two variables of git's own environment (no user string is
# ever part of this command).
_LOGIN_HELPER = (
    '!f() { test "$1" = get && printf "username=%s\\npassword=%s\\n" '
    '"$PALIGN_CREDENTIAL_USERNAME" "$PALIGN_CREDENTIAL_PASSWORD"; }; f'
)


def git_env(base: Mapping[str, str] | None = None, auth: Auth | None = None) -> dict[str, str]:
    """The environment of every git command palign runs (from this process's own)."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.startswith("GIT_") or k in _KEPT_GIT_VARS}
    env.pop("PALIGN_CREDENTIAL_USERNAME", None)
    env.pop("PALIGN_CREDENTIAL_PASSWORD", None)
    config = list(_SAFETY_CONFIG)
    if auth is not None:
        config.append(("credential.helper", ""))  # only ours: the list starts again
        if isinstance(auth, Login):
            config.append(("credential.helper", _LOGIN_HELPER))
            env.update(PALIGN_CREDENTIAL_USERNAME=auth.username, PALIGN_CREDENTIAL_PASSWORD=auth.password)
        else:
            config.append(("credential.helper", f"store --file={shlex.quote(str(auth.path))}"))
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_PAGER="cat",
        # Messages in English: palign reads some of them (CONFLICT lines, fetch failures).
        LC_ALL="C",
        LANGUAGE="C",
        GIT_ASKPASS=source.get("GIT_ASKPASS", "true"),
        GIT_PROTOCOL_FROM_USER="0",
        GIT_CONFIG_COUNT=str(len(config)),
    )
    for index, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def _command_name(args: Sequence[str]) -> str:
    """The git subcommand, for messages: the first word that is neither an option nor a path."""
    return next((a for a in args if not a.startswith("-") and "/" not in a), args[0] if args else "")


def run(args: Sequence[str], *, stdin: bytes | None = None, auth: Auth | None = None) -> bytes:
    """Run `git ARGS` and return its output; `stdin` feeds it refs, shas or a pack; `auth`
    answers git's questions for credentials. A non-zero exit raises `GitCommandError`
    with git's own message."""
    import git  # GitPython: imported on first use, it costs a tenth of a second at start-up

    name = _command_name(args)
    with tempfile.TemporaryFile() as source:
        if stdin:
            source.write(stdin)
            source.seek(0)
        try:
            status, output, error_output = git.Git().execute(
                ["git", *args],
                env=git_env(auth=auth),
                istream=source,
                with_extended_output=True,
                with_exceptions=False,
                stdout_as_string=False,
                strip_newline_in_stdout=False,
            )
        except OSError as error:
            raise GitCommandError(name, 127, f"cannot start git: {error}") from None
    if status != 0:
        text = error_output.decode(errors="replace") if isinstance(error_output, bytes) else str(error_output)
        raise GitCommandError(name, int(status), text)
    return bytes(output)


def run_text(args: Sequence[str], *, auth: Auth | None = None) -> str:
    return run(args, auth=auth).decode("utf-8", "surrogateescape")


Process = subprocess.Popen[bytes]


def start(args: Sequence[str], *, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None) -> Process:
    """Start a long-lived `git ARGS`, reading `stdin` and writing `stdout` (files), or
    talking through pipes where they are not given. Its stderr is discarded: the caller
    checks the exit status or the answers."""
    try:
        return subprocess.Popen(
            ["git", *args],
            stdin=subprocess.PIPE if stdin is None else stdin,
            stdout=subprocess.PIPE if stdout is None else stdout,
            stderr=subprocess.DEVNULL,
            env=git_env(),
        )
    except OSError as error:
        raise GitCommandError(_command_name(args), 127, f"cannot start git: {error}") from None


def stop(process: Process, grace_seconds: float = 5.0) -> None:
    """End a process started by `start`: close its input, then kill it if it lingers."""
    if process.poll() is not None:
        return
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Background:
    """`git ARGS` running beside the caller, reading `stdin` from a file and writing to
    one (no thread, no pipe to keep draining: the caller may fork meanwhile)."""

    def __init__(self, args: Sequence[str], stdin: bytes) -> None:
        self._name = _command_name(args)
        self._input = tempfile.TemporaryFile()
        self._input.write(stdin)
        self._input.seek(0)
        self._output = tempfile.TemporaryFile()
        self._process = start(args, stdin=self._input, stdout=self._output)

    def result(self) -> bytes:
        status = self._process.wait()
        self._input.close()
        with self._output:
            if status != 0:
                raise GitCommandError(self._name, status, "")
            self._output.seek(0)
            return self._output.read()


# What git prints when the repository is not there, or not for us (checked first: a server
# that answers "not found" may also hang up, which alone would look like an outage) ...
_NOT_THERE = (
    "does not appear to be a git repository",
    "not a git repository",
    "repository not found",
    "' not found",  # fatal: repository 'https://host/x.git/' not found
    "not exported",
    "access denied",
    "authentication failed",
    "permission denied",
    "could not read username",
    "could not read password",
    "returned error: 401",
    "returned error: 403",
    "returned error: 404",
)
# ... and when the network or the server is in the way (an ssh failure to connect also
# says "make sure ... the repository exists", which is not one of the above).
_UNREACHABLE = (
    "could not resolve host",
    "could not resolve hostname",
    "connection refused",
    "connection timed out",
    "operation timed out",
    "network is unreachable",
    "no route to host",
    "connection reset",
    "failed to connect",
    "unable to connect",
    "the remote end hung up unexpectedly",
    "returned error: 408",
    "returned error: 429",
    "returned error: 5",  # an HTTP 5xx
)


def remote_failure(error: GitCommandError, display: str) -> PalignError:
    """What a failed read of REPO means: not a repository or not ours to read (bad input),
    unreachable (infrastructure, worth a retry), or another failure (infrastructure). The
    message quotes git's line that says so."""
    lines = [line.strip() for line in error.stderr.splitlines() if line.strip()]
    for patterns, kind in ((_NOT_THERE, RepositoryNotFound), (_UNREACHABLE, RepositoryUnreachable)):
        telling = [line for line in lines if any(pattern in line.lower() for pattern in patterns)]
        if telling:
            return kind(f"cannot read repository {display}: {telling[0]}")
    return InfrastructureError(f"cannot read repository {display}: {error.last_line}")


def global_attributes_file() -> Path | None:
    """The user's global attributes file, found as git finds it (config, then XDG)."""
    try:
        configured = run_text(["config", "--global", "--path", "core.attributesFile"]).strip()
    except GitCommandError:
        configured = ""  # not set
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    candidate = Path(xdg) / "git" / "attributes"
    return candidate if candidate.exists() else None
