"""The repository's own .gitattributes, for git's merges in a bare repository.

`git rebase` and `git merge` run in a working tree and read .gitattributes from it, so
`merge=union`, `-merge` or `binary` change their results. `git merge-tree` in a bare
repository reads none of them. We find the attribute files of the tree being merged into
("ours"), rewrite them as one attributes file with paths from the root (deeper files
later, so they win as in git) after the user's global attributes, and hand that file to
the merge-tree process as core.attributesFile.
"""

from __future__ import annotations

import pygit2

TREE_MODE = pygit2.enums.FileMode.TREE
NAME = ".gitattributes"
# Only these attributes change what a merge produces.
_MERGE_WORDS = (b"merge", b"binary", b"conflict-marker-size", b"[attr]")


def attribute_files(repo: pygit2.Repository, tree: pygit2.Tree) -> list[tuple[str, pygit2.Oid]]:
    """(directory, blob id) of every .gitattributes in `tree`, shallow first."""
    found: list[tuple[str, pygit2.Oid]] = []
    pending: list[tuple[str, pygit2.Tree]] = [("", tree)]
    while pending:
        prefix, current = pending.pop()
        for entry in current:
            if entry.filemode == TREE_MODE:
                pending.append((f"{prefix}{entry.name}/", repo[entry.id]))  # type: ignore[arg-type]
            elif entry.name == NAME:
                found.append((prefix, entry.id))
    return sorted(found, key=lambda item: (item[0].count("/"), item[0]))


def _split_pattern(line: bytes) -> tuple[bytes, bool, bytes]:
    """(pattern, was quoted, attributes) of one attributes line; a quoted pattern keeps
    its C-style escapes."""
    if line.startswith(b'"'):
        index = 1
        while index < len(line) and line[index : index + 1] != b'"':
            index += 2 if line[index : index + 1] == b"\\" else 1
        return line[1:index], True, line[index + 1 :].strip()
    parts = line.split(None, 1)
    return parts[0], False, parts[1] if len(parts) > 1 else b""


def _rooted(directory: str, line: bytes) -> bytes | None:
    stripped = line.strip()
    if not stripped or stripped.startswith(b"#"):
        return None
    if stripped.startswith(b"[attr]"):
        return stripped if not directory else None  # git honours macros only at the top level
    if not directory:
        return stripped
    pattern, quoted, attrs = _split_pattern(stripped)
    prefix = directory.encode("utf-8", "surrogateescape")
    if b"/" in pattern.rstrip(b"/"):
        rooted = prefix + pattern.lstrip(b"/")
    else:
        rooted = prefix + b"**/" + pattern
    if quoted:
        rooted = b'"' + rooted + b'"'
    return rooted + b" " + attrs


def merge_attributes(repo: pygit2.Repository, files: list[tuple[str, pygit2.Oid]]) -> bytes:
    """The merge-relevant attribute lines of `files`, rooted; empty when none matter."""
    lines: list[bytes] = []
    for directory, blob in files:
        data: bytes = repo[blob].data  # type: ignore[attr-defined]
        if not any(word in data for word in _MERGE_WORDS):
            continue
        for line in data.splitlines():
            rooted = _rooted(directory, line)
            if rooted is not None:
                lines.append(rooted)
    return b"\n".join(lines) + b"\n" if lines else b""
