"""A three-way merge of file contents that needs no diff algorithm, when it applies.

git merges a file whose two sides both changed it with xdiff: a (histogram) diff of each
side against the base, then the hunks of both applied where they do not touch. Every
hunk of a side lies inside the region left once the lines that side shares with the
base at both ends are trimmed, or slides out of it only over lines equal to its own
(xdiff's compaction). When those regions, widened by such lines, are apart by at least
one base line, any diff git could compute gives the same clean merge: the base with
each side's region replaced. Anything closer (or binary) is left to git.

Offsets are in bytes and always on line starts; lines are what xdiff calls records:
up to and including a newline, the last one possibly without.
"""

from __future__ import annotations

_BINARY_PROBE = 8000  # git's buffer_is_binary looks for a NUL in the first 8000 bytes


def _common_prefix(a: bytes, b: bytes) -> int:
    low, high = 0, min(len(a), len(b))
    while low < high:  # binary search with C-speed slice comparisons
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    low, high = 0, limit
    while low < high:
        middle = (low + high + 1) // 2
        if a[len(a) - middle :] == b[len(b) - middle :]:
            low = middle
        else:
            high = middle - 1
    return low


def _at_line_start(data: bytes, offset: int) -> bool:
    return offset == 0 or data[offset - 1 : offset] == b"\n"


def _lines_of(data: bytes) -> set[bytes]:
    parts = data.split(b"\n")
    lines = {part + b"\n" for part in parts[:-1]}
    if parts[-1]:
        lines.add(parts[-1])
    return lines


def _changed_region(base: bytes, side: bytes) -> tuple[int, int, int]:
    """(start, base end, side end): bytes outside [start, end) are the same lines in base
    and side, widened over the lines a changed group could slide across."""
    start = _common_prefix(base, side)
    start = base.rfind(b"\n", 0, start) + 1 if start < len(base) or start < len(side) else start
    suffix = _common_suffix(base, side, min(len(base), len(side)) - start)
    while suffix > 0 and not (_at_line_start(base, len(base) - suffix) and _at_line_start(side, len(side) - suffix)):
        newline = base.find(b"\n", len(base) - suffix)
        suffix = len(base) - newline - 1 if newline >= 0 else 0
    base_end, side_end = len(base) - suffix, len(side) - suffix
    moving = _lines_of(base[start:base_end]) | _lines_of(side[start:side_end])
    while start > 0:
        previous = base.rfind(b"\n", 0, start - 1) + 1
        if base[previous:start] not in moving:
            break
        start = previous
    while base_end < len(base):
        newline = base.find(b"\n", base_end)
        following = len(base) if newline < 0 else newline + 1
        if base[base_end:following] not in moving:
            break
        side_end += following - base_end
        base_end = following
    return start, base_end, side_end


def disjoint_merge(base: bytes, ours: bytes, theirs: bytes) -> bytes | None:
    """git's clean merge of `ours` and `theirs` when their edits of `base` are apart;
    None when only git can tell."""
    if any(b"\0" in data[:_BINARY_PROBE] for data in (base, ours, theirs)):
        return None
    our_start, our_base_end, our_end = _changed_region(base, ours)
    their_start, their_base_end, their_end = _changed_region(base, theirs)
    if our_base_end < their_start:
        return ours[:our_end] + base[our_base_end:their_start] + theirs[their_start:]
    if their_base_end < our_start:
        return theirs[:their_end] + base[their_base_end:our_start] + ours[our_start:]
    return None
