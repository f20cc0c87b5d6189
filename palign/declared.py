"""The bases a local REPO records for its branches, read from REPO itself (the mirror
holds refs only): a git-machete layout file (`.git/machete`) and git's upstream config
(`branch.<name>.remote` and `.merge`). A REPO given by URL records nothing palign can read.

What these files say is text, not trusted: names are only ever compared with the refs
of the run (a name matching none is ignored), never handed to git or a shell; a layout
that cannot be read as one is refused with its line, as git-machete refuses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from palign import git
from palign.errors import GitCommandError, InputError
from palign.model import BRANCH_PREFIX, short_name
from palign.planner.model import DeclaredBase

LAYOUT_FILE = "machete"  # git-machete's branch layout, in the repository's git folder
_LAYOUT_LIMIT = 1 << 20  # bytes: a layout is a few lines; anything larger is not one
_FIX_LAYOUT = "fix it with `git machete edit`, or move it away"


def declared_bases(local_path: Path | None) -> dict[str, list[DeclaredBase]]:
    """Each local branch's declared bases, most trusted first: its parent in the layout,
    then what its upstream names. `local_path`: REPO on this machine, or None (a URL)."""
    if local_path is None:
        return {}
    git_dir = local_path / ".git" if (local_path / ".git").is_dir() else local_path
    found: dict[str, list[DeclaredBase]] = {}
    for branch, parent in read_layout(git_dir / LAYOUT_FILE).items():
        found.setdefault(branch, []).append(DeclaredBase(parent, "machete"))
    for branch, names in upstream_bases(_branch_config(git_dir)).items():
        found.setdefault(branch, []).extend(DeclaredBase(name, "upstream") for name in names)
    return found


# ---- git-machete's layout -----------------------------------------------------------


def read_layout(path: Path) -> dict[str, str]:
    """The layout file at `path` (none: empty), child -> parent."""
    try:
        with path.open("rb") as file:
            data = file.read(_LAYOUT_LIMIT + 1)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return {}
    except OSError as error:
        raise InputError(f"cannot read the git-machete layout {path}: {error.strerror}") from None
    if len(data) > _LAYOUT_LIMIT:
        raise InputError(f"git-machete layout {path}: larger than {_LAYOUT_LIMIT} bytes; {_FIX_LAYOUT}")
    return parse_layout(data.decode("utf-8", "replace"), str(path))


def parse_layout(text: str, source: str) -> dict[str, str]:
    """child -> parent, as git-machete reads a layout: one branch per line, an optional
    annotation after it, nested by indentation (the first indented line sets the unit,
    tabs or spaces; every indent a whole number of units, one level deeper at most);
    blank lines and `#` comments skipped; a branch appears once."""
    parents: dict[str, str] = {}
    seen: set[str] = set()
    unit = ""
    path: list[str] = []  # the branches above the current line, root first
    for number, line in enumerate(text.split("\n"), 1):  # lines as git-machete counts them
        line = line.rstrip()
        if not line or line.lstrip().startswith("#"):
            continue
        name = line.split()[0]
        shown = repr(name if len(name) <= 80 else name[:80] + "...")
        indent = line[: len(line) - len(line.lstrip())]
        unit = unit or indent
        depth = len(indent) // len(unit) if unit else 0
        where = f"git-machete layout {source} line {number}"
        if indent != unit * depth:
            raise InputError(f"{where}: indent {indent!r} is not a multiple of {unit!r}; {_FIX_LAYOUT}")
        if depth > len(path):
            raise InputError(
                f"{where}: {shown} is indented too deep (level {depth}, at most {len(path)}); {_FIX_LAYOUT}"
            )
        if name in seen:
            raise InputError(f"{where}: {shown} appears a second time; {_FIX_LAYOUT}")
        seen.add(name)
        del path[depth:]
        if path:
            parents[name] = path[-1]
        path.append(name)
    return parents


# ---- git's upstream config ----------------------------------------------------------


def _branch_config(git_dir: Path) -> list[tuple[str, str]]:
    """REPO's `branch.*` and `remote.*` settings as git sees them, (key, value) in order."""
    try:
        out = git.run_text(["--git-dir", str(git_dir), "config", "--null", "--get-regexp", r"^(branch|remote)\."])
    except GitCommandError as error:
        if error.status == 1:  # none set
            return []
        raise InputError(f"cannot read the git config of {git_dir}: {error.last_line}") from None
    items = []
    for item in out.split("\0"):
        key, _, value = item.partition("\n")
        if key:
            items.append((key, value))
    return items


def upstream_bases(config: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Each branch's upstream (git's `branch.<name>.remote` and `.merge`), as the names
    a target or branch of the run would have, most precise first: for a local upstream
    (remote "."), the ref itself; for a remote's branch X, the remote-tracking ref the
    remote's fetch refspecs map it to, then the local branch X. A branch tracking its own
    name on a remote (`git push -u`) declares no base."""
    remotes: dict[str, str] = {}
    merges: dict[str, str] = {}
    fetches: dict[str, list[str]] = {}
    for key, value in config:
        section, _, rest = key.partition(".")
        name, _, variable = rest.rpartition(".")
        if not name:
            continue
        if section == "branch" and variable == "remote":
            remotes[name] = value
        elif section == "branch" and variable == "merge":
            merges[name] = value
        elif section == "remote" and variable == "fetch":
            fetches.setdefault(name, []).append(value)
    bases: dict[str, list[str]] = {}
    for branch, merge in merges.items():
        remote = remotes.get(branch)
        if remote is None or not merge.startswith("refs/"):
            continue
        if remote == ".":
            refs = [merge]
        elif merge.startswith(BRANCH_PREFIX) and short_name(merge) != branch:
            tracking = _tracking_ref(merge, fetches.get(remote, []))
            refs = [*([tracking] if tracking else []), merge]
        else:
            continue
        bases[branch] = [short_name(ref) for ref in refs]
    return bases


def _tracking_ref(ref: str, refspecs: Sequence[str]) -> str | None:
    """Where a fetch with `refspecs` (`+refs/heads/*:refs/remotes/origin/*`) stores `ref`."""
    for spec in refspecs:
        source, _, destination = spec.removeprefix("+").partition(":")
        if source.startswith("^") or not destination:
            continue
        if source.count("*") == 1 and destination.count("*") == 1:
            head, tail = source.split("*")
            if ref.startswith(head) and ref.endswith(tail) and len(ref) >= len(head) + len(tail):
                return destination.replace("*", ref[len(head) : len(ref) - len(tail)])
        elif "*" not in source and source == ref:
            return destination
    return None
