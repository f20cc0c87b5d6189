"""A three-way merge of file contents that needs no diff algorithm, when it applies.

git merges a file whose two sides both changed it with xdiff: a (histogram) diff of each
side against the base, then the hunks of both applied where they do not touch. Every
hunk of a side lies inside the region left once the lines that side shares with the
base at both ends are trimmed, or slides out of it only over lines equal to its own
(xdiff's compaction). When those regions, widened by such lines, are apart by at least
one base line, any diff git could compute gives the same clean merge: the base with
each side's region replaced. Anything closer (or binary) is left to git.
"""

from __future__ import annotations

_BINARY_PROBE = 8000  # git's buffer_is_binary looks for a NUL in the first 8000 bytes


def _lines(data: bytes) -> list[bytes]:
    """Lines as xdiff sees them: split after each newline; a last line may lack one."""
    parts = data.split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _changed_region(base: list[bytes], side: list[bytes]) -> tuple[int, int]:
    """[start, end) in base lines outside of which `side` equals `base`, widened over the
    lines a changed group could slide across."""
    limit = min(len(base), len(side))
    start = 0
    while start < limit and base[start] == side[start]:
        start += 1
    tail = 0
    while tail < limit - start and base[-1 - tail] == side[-1 - tail]:
        tail += 1
    end = len(base) - tail
    moving = set(base[start:end]) | set(side[start : len(side) - tail])
    while start > 0 and base[start - 1] in moving:
        start -= 1
    while end < len(base) and base[end] in moving:
        end += 1
    return start, end


def disjoint_merge(base: bytes, ours: bytes, theirs: bytes) -> bytes | None:
    """git's clean merge of `ours` and `theirs` when their edits of `base` are apart;
    None when only git can tell."""
    if any(b"\0" in data[:_BINARY_PROBE] for data in (base, ours, theirs)):
        return None
    base_lines, our_lines, their_lines = _lines(base), _lines(ours), _lines(theirs)
    our_start, our_end = _changed_region(base_lines, our_lines)
    their_start, their_end = _changed_region(base_lines, their_lines)
    if our_end < their_start:
        first, first_end, second, second_start = our_lines, our_end, their_lines, their_start
    elif their_end < our_start:
        first, first_end, second, second_start = their_lines, their_end, our_lines, our_start
    else:
        return None
    grown = len(first) - len(base_lines)
    return b"".join(first[: first_end + grown] + base_lines[first_end:second_start] + second[second_start:])
