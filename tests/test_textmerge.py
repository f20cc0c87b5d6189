"""The content merge palign does without git must equal git's own merge of the file."""

from __future__ import annotations

import subprocess

import pygit2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from palign.engine import ort
from palign.engine.textmerge import disjoint_merge

# Many repeated lines (where diffs are ambiguous and hunks slide) among distinct ones.
LINE = st.one_of(
    st.sampled_from([b"a\n", b"b\n", b"\n", b"}\n", b"a", b"b"]),
    st.integers(0, 40).map(lambda n: b"line %d\n" % n),
)


def _text(lines: list[bytes]) -> bytes:
    # Only the last line may lack its newline.
    return b"".join(
        line if line.endswith(b"\n") or i == len(lines) - 1 else line + b"\n" for i, line in enumerate(lines)
    )


def _edit(draw: st.DrawFn, base: list[bytes]) -> list[bytes]:
    lines = list(base)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(lines)))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        if kind == "insert" or not lines:
            lines[at:at] = draw(st.lists(LINE, min_size=1, max_size=3))
        elif kind == "delete":
            del lines[min(at, len(lines) - 1)]
        else:
            lines[min(at, len(lines) - 1)] = draw(LINE)
    return lines


@st.composite
def three_versions(draw: st.DrawFn) -> tuple[bytes, bytes, bytes]:
    base = draw(st.lists(LINE, min_size=0, max_size=60))
    return _text(base), _text(_edit(draw, base)), _text(_edit(draw, base))


def _git_merge(repo: pygit2.Repository, base: bytes, ours: bytes, theirs: bytes) -> bytes | None:
    def tree(data: bytes) -> pygit2.Oid:
        builder = repo.TreeBuilder()
        builder.insert("f", repo.create_blob(data), pygit2.enums.FileMode.BLOB)
        return builder.write()

    outcome = ort.merge_trees(repo, base=tree(base), ours=tree(ours), theirs=tree(theirs))
    if outcome.tree is None:
        return None
    return repo[outcome.tree]["f"].data  # type: ignore[index,no-any-return]


def test_disjoint_merge_equals_git(tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("textmerge") / "repo.git"
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    repo = pygit2.Repository(str(path))
    used = []

    @settings(max_examples=800, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(three_versions())
    def check(versions: tuple[bytes, bytes, bytes]) -> None:
        base, ours, theirs = versions
        mine = disjoint_merge(base, ours, theirs)
        if mine is not None:
            used.append(1)
            assert mine == _git_merge(repo, base, ours, theirs), (base, ours, theirs)

    try:
        check()
    finally:
        ort.close_all()
    assert len(used) > 60  # the shortcut must actually be exercised


def test_disjoint_merge_declines_touching_edits() -> None:
    base = b"1\n2\n3\n"
    assert disjoint_merge(base, b"1\nX\n3\n", b"1\n2\nY\n") is None  # adjacent lines: git decides
    assert disjoint_merge(base, b"X\n2\n3\n", b"1\n2\nY\n") == b"X\n2\nY\n"
    assert disjoint_merge(b"a\0b", b"c", b"d") is None  # binary: git decides
