"""Everything that talks to REPO: URL checks, the bare mirror in the cache, fetches and
pushes with leases. Only this module runs git against another repository (through
`palign.git`, which owns every git process).

A login in REPO's URL (`https://user:token@host/...`) is taken out of it at once: the URL
palign stores, shows, names its mirror after or sends to workers never holds it, and git
gets it from a credential helper, not its command line.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from filelock import FileLock, Timeout

from palign import git
from palign.errors import (
    GitCommandError,
    InfrastructureError,
    InputError,
    RepositoryNotFound,
    RepositoryUnreachable,
    TransportRefused,
)
from palign.model import COMMIT_SETTINGS, PALIGN_NAMESPACE, ZERO_SHA
from palign.redact import has_secret_parameter, redact_url
from palign.settings import Settings

log = logging.getLogger("palign")

_LAST_USED = "palign-last-used"  # a mirror's mark of its last use

ALLOWED_SCHEMES = git.ALLOWED_PROTOCOLS
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!//)")
_UNPACK_LIMIT = 100  # git's receive.unpackLimit default
_AUTO_PACK_LIMIT = 50  # git's gc.autoPackLimit default


@dataclass(frozen=True)
class RepoLocation:
    """A validated REPO argument: `url` is what git gets (never with a password),
    `local_path` is set for local repos, `login` holds what the URL's user part said."""

    url: str
    local_path: Path | None
    login: git.Login | None = None

    @property
    def display(self) -> str:
        return str(self.local_path) if self.local_path is not None else redact_url(self.url)

    def allowed_by(self, patterns: Sequence[str]) -> bool:
        """Does a worker's allow-list admit this repository? URL globs match remote URLs;
        only a path glob (`/srv/git/*`) admits a repository on the worker's own disk."""
        if self.local_path is not None:
            return any(p.startswith("/") and fnmatch.fnmatchcase(str(self.local_path), p) for p in patterns)
        return any(not p.startswith("/") and fnmatch.fnmatchcase(self.url, p) for p in patterns)

    @property
    def identity(self) -> str:
        """One name for one repository, whatever way its URL was written: what branch
        locks are keyed by."""
        if self.local_path is not None:
            return str(self.local_path)
        parts = urlsplit(self.url)
        if not parts.scheme:  # user@host:path
            return self.url.rstrip("/").removesuffix(".git")
        path = parts.path.rstrip("/").removesuffix(".git")
        return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))


def has_login(repo: str) -> bool:
    """Does this REPO argument hold a login (`https://user:token@host/...`)?"""
    parts = urlsplit(repo)
    return parts.scheme.lower() in ("http", "https") and "@" in parts.netloc


def parse_location(repo: str) -> RepoLocation:
    """Accept a local path or an allow-listed URL; refuse everything else (ext::, fd::...)."""
    if not repo or "\0" in repo or "\n" in repo:
        raise RepositoryNotFound("repository argument is empty or contains control characters")
    if "://" in repo and has_secret_parameter(repo):
        raise InputError(
            "the repository URL carries a secret in its query (token, key...), which would show in process "
            "listings and messages: use a login (https://user:token@host/...) or PALIGN_GIT_CREDENTIALS_FILE"
        )
    if "::" in repo.split("/", 1)[0]:
        raise TransportRefused(f"transport refused: {repo.split('::', 1)[0]}:: (allowed: {', '.join(ALLOWED_SCHEMES)})")
    scheme_match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", repo)
    if scheme_match:
        scheme = scheme_match.group(1).lower()
        if scheme not in ALLOWED_SCHEMES:
            raise TransportRefused(f"transport refused: {scheme}:// (allowed: {', '.join(ALLOWED_SCHEMES)})")
        if scheme == "file":
            return _local(Path(repo[len("file://") :]), url=repo)
        if scheme in ("http", "https"):
            return _without_login(repo)
        return RepoLocation(url=repo, local_path=None)
    if _SCP_LIKE.match(repo):
        return RepoLocation(url=repo, local_path=None)  # user@host:path is ssh
    return _local(Path(repo), url=None)


def _without_login(url: str) -> RepoLocation:
    """An http(s) URL without its user part, and the login it held (percent-decoded, as
    git reads it)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return RepoLocation(url=url, local_path=None)
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    login = git.Login(unquote(user), unquote(password))
    if any(c in login.username + login.password for c in "\n\r\0"):
        raise InputError("the login in the repository URL contains a line break or NUL")
    return RepoLocation(url=urlunsplit(parts._replace(netloc=host)), local_path=None, login=login)


def _local(path: Path, *, url: str | None) -> RepoLocation:
    resolved = path.expanduser().resolve()
    if not resolved.exists():
        raise RepositoryNotFound(f"repository not found: {path}")
    git_dir = resolved / ".git" if (resolved / ".git").exists() else resolved
    if not (git_dir / "HEAD").exists() or not (git_dir / "objects").exists():
        raise RepositoryNotFound(f"not a git repository: {path}")
    return RepoLocation(url=url or str(resolved), local_path=resolved)


class Mirror:
    """palign's bare mirror of REPO in the cache; one lock per mirror serialises fetches
    among the processes (and later the Celery workers) of this machine."""

    def __init__(self, location: RepoLocation, cache_dir: Path, *, credentials: Path | None = None) -> None:
        """`credentials`: the operator's credential-store file, for a URL without a login."""
        self.location = location
        self.auth: git.Auth | None = location.login or (git.CredentialStore(credentials) if credentials else None)
        key = hashlib.sha256(location.url.encode()).hexdigest()[:16]
        last = (urlsplit(location.url).path if "://" in location.url else location.url).rstrip("/").rsplit("/", 1)[-1]
        name = re.sub(r"[^A-Za-z0-9._-]", "_", last)[:40]
        self.path = cache_dir / "mirrors" / f"{name}-{key}.git"
        self._lock = FileLock(str(self.path) + ".lock")

    def git(self, *args: str) -> str:
        return git.run_text(["--git-dir", str(self.path), *args])

    def sync(self) -> None:
        """Create the mirror or bring it up to date with every ref of REPO. A mirror that
        cannot be brought up to date (objects missing or corrupt: REPO re-created or
        garbage-collected under it, a disk error) is built again, once, with a log line."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if not (self.path / "HEAD").exists():
                self._clone()
                self.note_use()
                return
            self.note_use()
            self._follow_local_objects()
            try:
                self._fetch()
            except (RepositoryNotFound, RepositoryUnreachable):
                raise  # REPO itself: a new mirror would not help
            except InfrastructureError as error:
                log.warning("the cached mirror of %s is broken (%s); building it again", self.location.display, error)
                self._rebuild()

    def note_use(self) -> None:
        """Mark the mirror as in use now (`palign prune` removes mirrors long unused)."""
        (self.path / _LAST_USED).touch()

    def _follow_local_objects(self) -> None:
        """A mirror of a repository on this machine borrows its objects, so it must not name
        commits REPO no longer has (REPO re-created at the same path, or gc'd after a
        rollback): such refs are forgotten before the fetch, which would trust them."""
        objects = self._local_objects()
        if objects is None:
            return
        alternates = self.path / "objects" / "info" / "alternates"
        if not alternates.exists() or alternates.read_text().strip() != str(objects):
            alternates.write_text(f"{objects}\n")  # REPO's objects moved (made bare, say)
        listing = self.git("for-each-ref", "--format=%(objectname) %(refname)")
        refs = [line.split(" ", 1) for line in listing.splitlines() if " " in line]
        if not refs:
            return
        check = git.run(
            ["--git-dir", str(self.path), "cat-file", "--batch-check=%(objectname) %(objecttype)"],
            stdin="".join(f"{sha}\n" for sha, _ in refs).encode(),
        ).decode()
        lost = {line.split(" ", 1)[0] for line in check.splitlines() if line.endswith(" missing")}
        if lost:
            doomed = [ref for sha, ref in refs if sha in lost]
            log.info(
                "the cached mirror of %s forgets %d refs to commits REPO no longer has",
                self.location.display,
                len(doomed),
            )
            git.run(
                ["--git-dir", str(self.path), "update-ref", "--stdin"],
                stdin="".join(f"delete {ref}\n" for ref in doomed).encode(),
            )

    def _rebuild(self) -> None:
        """The mirror built again from REPO; the broken one is moved aside, then removed."""
        broken = self.path.with_name(f"{self.path.name}.broken-{os.getpid()}")
        shutil.rmtree(broken, ignore_errors=True)
        self.path.rename(broken)
        try:
            self._clone()
        finally:
            shutil.rmtree(broken, ignore_errors=True)

    def _clone(self) -> None:
        staging = self.path.with_name(self.path.name + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        git.run(["init", "--quiet", "--bare", str(staging)])
        git.run(["--git-dir", str(staging), "config", "gc.auto", "0"])
        git.run(["--git-dir", str(staging), "config", "core.hooksPath", "/dev/null"])
        objects = self._local_objects()
        if objects is not None:
            # A repository on this machine lends its objects instead of copying them; every
            # run re-syncs the refs, so nothing here outlives REPO's own objects.
            (staging / "objects" / "info" / "alternates").write_text(f"{objects}\n")
        try:
            self._fetch(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        staging.rename(self.path)

    def _local_objects(self) -> Path | None:
        if self.location.local_path is None:
            return None
        for git_dir in (self.location.local_path / ".git", self.location.local_path):
            if (git_dir / "objects").is_dir() and (git_dir / "HEAD").is_file():
                return (git_dir / "objects").resolve()
        return None

    def _fetch(self, git_dir: Path | None = None) -> None:
        """Every ref of REPO but palign's own (runs' backups and staging stay in REPO)."""
        self._read_remote(
            "--git-dir",
            str(git_dir or self.path),
            "fetch",
            "--quiet",
            "--prune",
            "--no-write-fetch-head",
            "--end-of-options",
            self.location.url,
            "+refs/*:refs/*",
            f"^{PALIGN_NAMESPACE}*",
        )

    def _read_remote(self, *args: str) -> str:
        """A git command that reads REPO, its failure told apart: not there, or unreachable."""
        try:
            return git.run_text(args, auth=self.auth)
        except GitCommandError as error:
            raise git.remote_failure(error, self.location.display) from None

    def fetch(self, refspecs: Sequence[str]) -> None:
        """Fetch refs of REPO (palign's own, which the regular sync leaves out) into the
        mirror, `+src:dst` each; a push of what they name needs their objects here."""
        if self._local_git_dir() is not None:
            return  # the mirror borrows a local REPO's objects: they are readable already
        self._read_remote(
            "--git-dir",
            str(self.path),
            "fetch",
            "--quiet",
            "--no-write-fetch-head",
            "--end-of-options",
            self.location.url,
            *refspecs,
        )

    def remote_refs(self, *patterns: str) -> dict[str, str]:
        """Refs of REPO itself right now, name -> sha (for palign's namespace and leases)."""
        out = self._read_remote(
            "--git-dir", str(self.path), "ls-remote", "--end-of-options", self.location.url, *patterns
        )
        values: dict[str, str] = {}
        for line in out.splitlines():
            value, _, name = line.partition("\t")
            if not name.endswith("^{}"):
                values[name] = value
        return values

    def push(
        self,
        refspecs: Iterable[str],
        *,
        leases: dict[str, str] | None = None,
        atomic: bool = False,
        objects_from: Path | None = None,
        have: Sequence[str] | None = None,
    ) -> None:
        """Push `sha:ref` refspecs to REPO; each lease pins a ref to the value it must have.
        `objects_from` is a repository holding new objects (a scratch store); `have`, when
        given, are commits REPO has that bound the new ones (else: every ref of the mirror)."""
        specs = list(refspecs)
        if not specs:
            return
        local_git_dir = self._local_git_dir()
        if local_git_dir is not None:
            self._write_local(local_git_dir, specs, leases or {}, objects_from, have)
            return
        args = ["push", "--quiet", "--porcelain"]
        if atomic:
            args.append("--atomic")
        if self.location.local_path is not None:
            args.append(f"--receive-pack={git.LOCAL_RECEIVE_PACK}")
        # Chunks keep command lines bounded for very large runs; only atomic pushes must be one.
        chunk = len(specs) if atomic else 2000
        git_dir = str(objects_from or self.path)
        for start in range(0, len(specs), chunk):
            chunk_specs = specs[start : start + chunk]
            moved = {spec.split(":", 1)[1] for spec in chunk_specs}
            pinned = [
                f"--force-with-lease={ref}:{expected if expected != ZERO_SHA else ''}"
                for ref, expected in (leases or {}).items()
                if ref in moved
            ]
            argv = ["--git-dir", git_dir, *args, *pinned, "--end-of-options", self.location.url, *chunk_specs]
            git.run(argv, auth=self.auth)

    @property
    def writes_in_place(self) -> bool:
        """REPO is on this machine: objects can be written into it directly."""
        return self._local_git_dir() is not None

    def copy_loose_objects(self, source: Path, names: Iterable[str]) -> None:
        """Copy loose objects (their hex names) from `source` into a local REPO, each file
        written under a temporary name and renamed, as git writes objects. Far cheaper than
        a pack per small write, and it leaves no pack behind to slow REPO's lookups."""
        git_dir = self._local_git_dir()
        assert git_dir is not None
        objects = git_dir / "objects"
        for name in names:
            target = objects / name[:2] / name[2:]
            if target.exists():
                continue
            target.parent.mkdir(exist_ok=True)
            data = (source / "objects" / name[:2] / name[2:]).read_bytes()
            handle, temporary = tempfile.mkstemp(prefix="tmp_obj_", dir=objects)
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(data)
                os.chmod(temporary, 0o444)
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise

    def _local_git_dir(self) -> Path | None:
        objects = self._local_objects()
        return objects.parent if objects is not None else None

    def _write_local(
        self,
        git_dir: Path,
        specs: list[str],
        leases: dict[str, str],
        objects_from: Path | None,
        have: Sequence[str] | None,
    ) -> None:
        """What a push does, without its protocol, for a repository on this machine: one
        pack of the objects REPO lacks, then every ref in one atomic transaction, each
        lease checked by git. No hook runs (hooks are off in palign's git environment)."""
        updates = [spec.split(":", 1) for spec in specs]
        new = sorted({source for source, _ in updates if source})
        if objects_from is not None and new:
            known = sorted(set(have)) if have is not None else sorted(set(self.ref_values("refs/").values()))
            revs = "\n".join([*new, "--not", *known]) + "\n"
            pack = git.run(
                ["--git-dir", str(objects_from), "pack-objects", "--revs", "--stdout", "-q"],
                stdin=revs.encode(),
            )
            # As receive-pack does: a small pack becomes loose objects, so many small writes
            # (one per Celery task) do not leave REPO with hundreds of packs to search.
            count = int.from_bytes(pack[8:12], "big") if len(pack) >= 12 else 0
            if count < _UNPACK_LIMIT:
                git.run(["--git-dir", str(git_dir), "unpack-objects", "-q"], stdin=pack)
            else:
                git.run(["--git-dir", str(git_dir), "index-pack", "--stdin", "--fix-thin"], stdin=pack)
                # ... and like a push, let git consolidate packs once there are too many
                # (in the foreground: a detached gc would race the next write).
                if len(list((git_dir / "objects" / "pack").glob("*.pack"))) > _AUTO_PACK_LIMIT:
                    git.run(["--git-dir", str(git_dir), "-c", "gc.autoDetach=false", "gc", "--auto", "--quiet"])
        lines = []
        for source, ref in updates:
            expected = leases.get(ref)
            if not source:
                lines.append(f"delete {ref} {expected or ''}".rstrip())
            elif expected is None or expected in ("", ZERO_SHA):
                lines.append(f"create {ref} {source}")
            else:
                lines.append(f"update {ref} {source} {expected}")
        git.run(["--git-dir", str(git_dir), "update-ref", "--stdin"], stdin=("\n".join(lines) + "\n").encode())

    def ref_values(self, pattern: str) -> dict[str, str]:
        """Refs of the mirror under `pattern` (as of the last sync), name -> sha."""
        out = self.git("for-each-ref", "--format=%(objectname) %(refname)", pattern)
        values: dict[str, str] = {}
        for line in out.splitlines():
            value, _, name = line.partition(" ")
            values[name] = value
        return values


def prune_mirrors(cache_dir: Path, unused_for: float, *, spare: Path | None = None, dry_run: bool = False) -> int:
    """Remove the mirrors of the cache not used for `unused_for` seconds (by any REPO) but
    `spare`, each under its lock, skipped while another process holds it; returns how many."""
    cutoff = time.time() - unused_for
    removed = 0
    for path in sorted((cache_dir / "mirrors").glob("*.git")):
        if path == spare:
            continue
        mark = path / _LAST_USED
        try:
            last = (mark if mark.exists() else path).stat().st_mtime
        except OSError:
            continue
        if last >= cutoff:
            continue
        lock = FileLock(str(path) + ".lock")
        try:
            with lock.acquire(timeout=0):
                if not dry_run:
                    shutil.rmtree(path, ignore_errors=True)
                removed += 1
        except Timeout:
            continue  # in use now
    return removed


def mirror_of(repo: str, settings: Settings) -> Mirror:
    """The mirror of REPO (a path or URL as the user gave it) in this machine's cache,
    with the operator's credentials for it when its URL has no login."""
    return Mirror(parse_location(repo), settings.cache_dir, credentials=settings.git_credentials_file)


def checked_out_branches(location: RepoLocation) -> set[str]:
    """Branches checked out in REPO's working trees (git refuses to move those by push)."""
    if location.local_path is None or not (location.local_path / ".git").exists():
        return set()
    out = git.run_text(["-C", str(location.local_path), "worktree", "list", "--porcelain"])
    return {line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("branch ")}


def commit_settings(location: RepoLocation) -> dict[str, str]:
    """COMMIT_SETTINGS as git would see them in REPO (the user's global ones for URLs)."""
    args = ["-C", str(location.local_path)] if location.local_path is not None else []
    pattern = "^(" + "|".join(re.escape(key.lower()) for key in COMMIT_SETTINGS) + ")$"
    try:
        out = git.run_text([*args, "config", "--null", "--get-regexp", pattern])
    except GitCommandError:
        return {}  # none of them is set
    values: dict[str, str] = {}
    for item in out.split("\0"):
        key, _, value = item.partition("\n")
        if key and not any(c in value for c in "\n\r"):  # one-line values only: they travel to workers
            values[key] = value  # later (more local) settings win, as in git
    return values
