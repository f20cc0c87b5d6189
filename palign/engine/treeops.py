"""The fast path of a three-way merge: apply one side's changes by rewriting only the
subtrees they touch, when the other side provably did not interact with them.

A merge of (base, ours, theirs) is trivial when no path theirs changed was changed by ours,
no directory theirs adds into was removed or turned into a file by ours, and no directory
theirs removed gained or lost anything in ours. Then every merge strategy git has,
renames and directory renames included, gives ours + theirs' changes. When the only
contact is files both sides edited in place, git merges just those files' contents, and
so can a merge of trees holding only them. Anything else goes to `ort.merge_trees`,
which asks git itself on the whole trees.
"""

from __future__ import annotations

from collections import defaultdict

import pygit2

TREE_MODE = pygit2.enums.FileMode.TREE
REGULAR_MODES = (pygit2.enums.FileMode.BLOB, pygit2.enums.FileMode.BLOB_EXECUTABLE)
Entry = tuple[pygit2.Oid, int]
Changes = dict[str, Entry | None]


def tree_diff(old: pygit2.Tree | None, new: pygit2.Tree, *, context_lines: int = 3) -> pygit2.Diff:
    """old -> new without rename detection (None: the empty tree), as git diff-tree does."""
    if old is None:
        return new.diff_to_tree(swap=True, context_lines=context_lines)
    return old.diff_to_tree(new, context_lines=context_lines)


def changed_entries(repo: pygit2.Repository, old: pygit2.Tree | None, new: pygit2.Tree) -> Changes:
    """Path -> new entry (None when deleted), without rename detection."""
    diff = tree_diff(old, new)
    changes: Changes = {}
    for delta in diff.deltas:
        if delta.status == pygit2.enums.DeltaStatus.DELETED:
            changes.setdefault(delta.old_file.path, None)
        else:
            changes[delta.new_file.path] = (delta.new_file.id, delta.new_file.mode)
    return changes


def _entry(tree: pygit2.Tree, path: str) -> Entry | None:
    try:
        obj = tree[path]
    except KeyError:
        return None
    return (obj.id, obj.filemode)


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def interactions(base: pygit2.Tree, ours: pygit2.Tree, theirs: pygit2.Tree, changes: Changes) -> set[str] | None:
    """How `changes` (base -> theirs) meet what ours did since base.

    None: they meet structurally (a file against a directory, a directory one side removed,
    where renames and directory renames come into play): only a full merge can tell.
    Otherwise the set of paths both sides changed; empty means ours + changes is exactly
    the three-way merge.
    """
    both: set[str] = set()
    checked_add_dirs: set[str] = set()
    checked_gone_dirs: set[str] = set()
    for path, new in changes.items():
        if _entry(base, path) != _entry(ours, path):
            both.add(path)
        for directory in _ancestors(path):
            if new is not None and directory not in checked_add_dirs:
                checked_add_dirs.add(directory)
                in_ours = _entry(ours, directory)
                if in_ours is None:
                    if _entry(base, directory) is not None:
                        return None  # ours removed the directory: a directory rename may apply
                elif in_ours[1] != TREE_MODE:
                    return None  # file/directory conflict
            if new is None and directory not in checked_gone_dirs:
                checked_gone_dirs.add(directory)
                in_theirs = _entry(theirs, directory)
                if in_theirs is None or in_theirs[1] != TREE_MODE:
                    # theirs removed the directory: ours must not have touched anything in it
                    if _entry(base, directory) != _entry(ours, directory):
                        return None
    return both


def content_merge_only(base: pygit2.Tree, ours: pygit2.Tree, theirs: pygit2.Tree, paths: set[str]) -> bool:
    """True when every path is a regular file on all three sides with one mode: git merges
    such a path by its content alone (it is neither a rename source nor a rename target)."""
    for path in paths:
        entries = (_entry(base, path), _entry(ours, path), _entry(theirs, path))
        modes = {entry[1] if entry is not None else None for entry in entries}
        if len(modes) != 1 or modes.pop() not in REGULAR_MODES:
            return False
    return True


def flat_names(paths: set[str]) -> dict[str, str]:
    """Where each path goes in a content-only merge tree: its base name at the top level
    (one tree write instead of one per directory), or its full path when two share a
    base name. A bare repository reads no in-tree attributes, so for git's content merge
    a file's directory does not matter; name patterns of global attributes still match."""
    names = {path: path.rsplit("/", 1)[-1] for path in paths}
    if len(set(names.values())) < len(names):
        return {path: path for path in paths}
    return names


def subset(repo: pygit2.Repository, tree: pygit2.Tree, names: dict[str, str]) -> pygit2.Oid:
    """A tree holding only the paths of `tree` named in `names` (which must all exist),
    each at its new name."""
    picked: Changes = {name: _entry(tree, path) for path, name in names.items()}
    return apply_changes(repo, None, picked) or repo.TreeBuilder().write()


def entries_at(tree: pygit2.Tree, names: dict[str, str]) -> Changes:
    """The entries `subset` placed, back at their real paths."""
    return {path: _entry(tree, name) for path, name in names.items()}


def apply_changes(repo: pygit2.Repository, tree: pygit2.Tree | None, changes: Changes) -> pygit2.Oid | None:
    """Write `tree` with `changes` applied; None when the result is empty."""
    builder = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
    direct: dict[str, Entry | None] = {}
    nested: dict[str, Changes] = defaultdict(dict)
    for path, new in changes.items():
        head, sep, rest = path.partition("/")
        if sep:
            nested[head][rest] = new
        else:
            direct[head] = new
    for name in set(direct) | set(nested):
        entry = direct.get(name)
        if entry is not None and entry[1] != TREE_MODE:
            builder.insert(name, entry[0], entry[1])  # a file replaces whatever was there
            continue
        if name in nested:
            existing = builder.get(name)
            subtree = repo[existing.id] if existing is not None and existing.filemode == TREE_MODE else None
            if name in direct and direct[name] is None:
                subtree = None  # the old file is gone; the directory starts empty
            new_subtree = apply_changes(repo, subtree, nested[name])  # type: ignore[arg-type]
            if new_subtree is None:
                if builder.get(name) is not None:
                    builder.remove(name)
            else:
                builder.insert(name, new_subtree, TREE_MODE)
        elif builder.get(name) is not None:
            builder.remove(name)
    if len(builder) == 0:
        return None
    return builder.write()


def empty_tree(repo: pygit2.Repository) -> pygit2.Oid:
    return repo.TreeBuilder().write()
