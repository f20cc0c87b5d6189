"""Build a deterministic, real-world-like repository for benchmarking palign.

The repository looks like a mid-size project with a queue of open pull requests:
`main` advances by `target_commits` commits (Zipf-popular files, a CHANGELOG that
almost every release touches, occasional adds/renames/deletes) and `pr/<n>` branches
fork from recent points of `main`. Every object is written with pygit2 (no `git
commit` per commit), then packed once with `git repack`.

PR kinds (see `Mix`):
  normal      edits placed away from what main changed after the fork: a clean
              content merge when the file was also changed upstream
  conflict    edits the same lines main changed later (or its CHANGELOG head, or a
              file main deleted): a genuine conflict
  up_to_date  forked at the tip of main
  upstreamed  its first commit is the patch of a later main commit (cherry-picked upstream)
  merge_main  contains a merge of main into the branch

    python benchmarks/corpus.py PATH [--branches N] [--target-commits N] [--seed S]
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pygit2

DEFAULT_SOURCE = Path("/root/.pyenv")
SKIP_DIRS = {".git", "versions", "shims"}  # pyenv: installed interpreters and generated shims
CHANGELOG = "CHANGELOG.md"
EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z
MARGIN = 2  # unchanged lines kept between a PR edit and an upstream change
FILE_MODE = pygit2.enums.FileMode
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
AUTHORS = [
    ("Ada Lovelace", "ada"), ("Grace Hopper", "grace"), ("Linus Pauling", "linus"),
    ("Margaret Hamilton", "margaret"), ("Ken Thompson", "ken"), ("Barbara Liskov", "barbara"),
    ("Dennis Ritchie", "dennis"), ("Frances Allen", "frances"), ("Guido Rossum", "guido"),
    ("Radia Perlman", "radia"), ("Edsger Dijkstra", "edsger"), ("Katherine Johnson", "katherine"),
]  # fmt: skip
WORDS = (
    "cache retry timeout parser config loader shim version plugin resolver path env "
    "build install prefix hook update doctor mirror archive patch flag option default"
).split()
VERBS = "fix add support handle refactor improve drop update simplify document".split()
IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]{2,}")
_ZIPF: list[float] = []  # cumulative 1/rank weights


@dataclass(frozen=True)
class Mix:
    """Share of each PR kind; the rest are `normal`."""

    conflict: float = 0.12
    up_to_date: float = 0.03
    upstreamed: float = 0.04
    merge_main: float = 0.05


@dataclass
class CorpusInfo:
    path: str
    source: str
    files: int
    target: str
    target_commits: int
    branches: int
    kinds: dict[str, int]
    branch_kinds: dict[str, str] = field(repr=False)
    objects_seconds: float = 0.0  # writing every object with pygit2
    pack_seconds: float = 0.0  # `git repack` and checking out main
    seconds: float = 0.0


# --------------------------------------------------------------------------- base tree


def _source_files(root: Path) -> Iterator[tuple[str, bytes, pygit2.enums.FileMode]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            full = Path(dirpath, name)
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                yield rel, os.readlink(full).encode(), FILE_MODE.LINK
            elif full.is_file():
                mode = FILE_MODE.BLOB_EXECUTABLE if os.access(full, os.X_OK) else FILE_MODE.BLOB
                yield rel, full.read_bytes(), mode


def _generated_files(rng: random.Random, count: int = 1500) -> Iterator[tuple[str, bytes, pygit2.enums.FileMode]]:
    packages = [f"src/{a}/{b}" for a in WORDS[:8] for b in WORDS[8:14]] + [f"tests/{w}" for w in WORDS[:10]]
    yield (
        CHANGELOG,
        b"# Changelog\n\n## Unreleased\n* Initial import\n\n## Release v1.0.0\n* First release\n",
        FILE_MODE.BLOB,
    )
    yield "README.md", b"# Project\n\nA generated project used to benchmark palign.\n", FILE_MODE.BLOB
    for i in range(count - 2):
        lines = [f'"""Module {i}: {" ".join(rng.sample(WORDS, 4))}."""', "", "import os", ""]
        size = rng.randint(50, 400)
        while len(lines) < size:
            name, arg = rng.sample(WORDS, 2)
            lines += [f"def {name}_{len(lines)}({arg}, timeout=30):", f'    """{rng.choice(VERBS)} the {name}."""']
            lines += [
                f"    {rng.choice(WORDS)}_{j} = {arg}.get({j}) or os.environ.get('{name.upper()}_{j}')"
                for j in range(rng.randint(2, 12))
            ]
            lines += [f"    return {arg}", "", ""]
        yield f"{rng.choice(packages)}/{rng.choice(WORDS)}_{i}.py", ("\n".join(lines) + "\n").encode(), FILE_MODE.BLOB


# --------------------------------------------------------------------------- builder


@dataclass
class _Fate:
    """What main did to a file after a fork point."""

    tip_path: str | None  # None: deleted
    changed: bool


@dataclass
class _Work:
    """A file as a PR sees it: lines, and which of them must not be touched."""

    lines: list[bytes]
    forbidden: list[bool]


class _Builder:
    def __init__(self, path: Path, source: Path | None, seed: int) -> None:
        self.rng = random.Random(seed)
        self.repo = pygit2.init_repository(str(path), initial_head="main")
        self.files = list(_source_files(source) if source else _generated_files(self.rng))
        self.counter = 0
        self.main: list[pygit2.Oid] = []
        self.events: list[list[tuple[str, ...]]] = []  # per main commit: (kind, path[, new path])
        self.ranks: list[list[str]] = []  # per main commit: editable text files, most popular first
        self.clock = EPOCH

    # ---- low-level writes

    def tag(self) -> bytes:
        self.counter += 1
        return f"{self.rng.choice(WORDS)}{self.counter}".encode()

    def signature(self, when: int, who: int | None = None) -> pygit2.Signature:
        name, login = AUTHORS[self.rng.randrange(len(AUTHORS)) if who is None else who]
        return pygit2.Signature(name, f"{login}@example.org", when, 0)

    def commit(
        self, parents: Sequence[pygit2.Oid], changes: dict[str, bytes | None], message: str,
        when: int, tree: pygit2.Oid | None = None, author: pygit2.Signature | None = None,
    ) -> pygit2.Oid:  # fmt: skip
        if tree is None:
            base = self.get_commit(parents[0]).tree if parents else None
            tree = self.write_tree(base, {tuple(p.split("/")): d for p, d in changes.items()})
        sig = self.signature(when)
        return self.repo.create_commit(None, author or sig, sig, message + "\n", tree, list(parents))

    def write_tree(self, base: pygit2.Tree | None, changes: dict[tuple[str, ...], bytes | None]) -> pygit2.Oid:
        """Write `base` with `changes` applied (None deletes), rewriting only the touched trees."""
        builder = self.repo.TreeBuilder(base) if base is not None else self.repo.TreeBuilder()
        nested: dict[str, dict[tuple[str, ...], bytes | None]] = {}
        for parts, data in changes.items():
            if len(parts) > 1:
                nested.setdefault(parts[0], {})[parts[1:]] = data
            elif data is None:
                builder.remove(parts[0])
            else:
                old = builder.get(parts[0])
                mode = old.filemode if old is not None else FILE_MODE.BLOB
                builder.insert(parts[0], self.repo.create_blob(data), mode)
        for name, sub in nested.items():
            old = builder.get(name)
            old_tree = self.repo[old.id] if old is not None else None
            assert old_tree is None or isinstance(old_tree, pygit2.Tree)
            subtree = self.write_tree(old_tree, sub)
            if str(subtree) != EMPTY_TREE:
                builder.insert(name, subtree, FILE_MODE.TREE)
            elif old is not None:
                builder.remove(name)
        return builder.write()

    def get_commit(self, oid: pygit2.Oid) -> pygit2.Commit:
        commit = self.repo[oid]
        assert isinstance(commit, pygit2.Commit)
        return commit

    def get_blob(self, commit: pygit2.Oid, path: str) -> pygit2.Blob:
        blob = self.get_commit(commit).tree[path]
        assert isinstance(blob, pygit2.Blob)
        return blob

    def blob(self, commit: pygit2.Oid, path: str) -> bytes:
        return self.get_blob(commit, path).data

    def message(self, paths: Sequence[str]) -> str:
        area = Path(paths[0]).parent.name or Path(paths[0]).stem
        return f"{area}: {self.rng.choice(VERBS)} {self.rng.choice(WORDS)} {self.rng.choice(WORDS)}"

    def zipf_pick(self, ranked: Sequence[str], ok: Callable[[str], bool] | None = None) -> str | None:
        """A file drawn with probability proportional to 1/rank."""
        while len(_ZIPF) < len(ranked):
            _ZIPF.append(_ZIPF[-1] + 1 / (len(_ZIPF) + 1) if _ZIPF else 1.0)
        for _ in range(40):
            path = ranked[bisect.bisect(_ZIPF, self.rng.random() * _ZIPF[len(ranked) - 1], hi=len(ranked) - 1)]
            if ok is None or ok(path):
                return path
        return None

    # ---- content edits

    def mutate(self, line: bytes) -> bytes:
        body = line.rstrip(b"\n")
        words = list(IDENT.finditer(body))
        if not words:
            return body + b" " + self.tag() + b"\n"
        word = self.rng.choice(words)
        return body[: word.end()] + b"_" + self.tag() + body[word.end() :] + b"\n"

    def edit(self, work: _Work) -> bool:
        """One hunk (modify, insert or delete) where nothing is forbidden."""
        lines, forbidden = work.lines, work.forbidden
        n = len(lines)
        if n < 3:
            return False
        for _ in range(12):
            kind = self.rng.choices(("modify", "insert", "delete"), (70, 20, 10))[0]
            size = self.rng.randint(1, 4) if kind != "delete" else self.rng.randint(1, 2)
            start = self.rng.randrange(1, n - 1)
            end = start if kind == "insert" else min(start + size, n - 1)
            if any(forbidden[max(start - 1, 0) : end + 1] if kind == "insert" else forbidden[start:end]):
                continue
            if kind == "modify":
                new = [self.mutate(line) for line in lines[start:end]]
            elif kind == "insert":
                new = [self.mutate(self.rng.choice(lines)) for _ in range(size)]
            else:
                new = []
            lines[start:end] = new
            forbidden[start:end] = [False] * len(new)
            return True
        return False

    @staticmethod
    def changelog_anchor(lines: list[bytes]) -> int:
        for i, line in enumerate(lines):
            if line.startswith(b"## "):
                return i + 1
        return min(2, len(lines))

    # ---- main

    def build_main(self, target_commits: int) -> None:
        changes: dict[str, bytes | None] = {path: data for path, data, _ in self.files}
        index = pygit2.Index()
        for path, data, mode in self.files:
            index.add(pygit2.IndexEntry(path, self.repo.create_blob(data), mode))
        if CHANGELOG not in changes:
            index.add(
                pygit2.IndexEntry(CHANGELOG, self.repo.create_blob(b"# Changelog\n\n## Unreleased\n"), FILE_MODE.BLOB)
            )
        self.main.append(self.commit([], {}, "Import project", self.clock, tree=index.write_tree(self.repo)))
        self.events.append([])
        text = [p for p, d, m in self.files if m != FILE_MODE.LINK and b"\0" not in d[:8000] and p != CHANGELOG]
        big = [p for p, d, _ in self.files if p in text and d.count(b"\n") >= 200]
        core = self.rng.sample(big, min(8, len(big)))
        rest = [p for p in text if p not in core]
        self.rng.shuffle(rest)
        ranked = core + rest
        self.ranks.append(ranked)
        for i in range(1, target_commits + 1):
            self.clock += self.rng.randint(1800, 4 * 3600)
            ranked = self.main_commit(i, ranked)
            self.ranks.append(ranked)

    def main_commit(self, number: int, ranked: list[str]) -> list[str]:
        head = self.main[-1]
        changes: dict[str, bytes | None] = {}
        events: list[tuple[str, ...]] = []
        count = self.rng.choices((1, 2, 3, 4, 5), (40, 25, 15, 12, 8))[0]
        for _ in range(count):
            path = self.zipf_pick(ranked, lambda p: p not in changes)
            if path is None:
                continue
            lines = self.blob(head, path).splitlines(keepends=True)
            work = _Work(lines, [False] * len(lines))
            if any([self.edit(work) for _ in range(self.rng.randint(1, 3))]):
                changes[path] = b"".join(work.lines)
                events.append(("edit", path))
        roll = self.rng.random()
        cold = ranked[50:] or ranked
        victim = self.rng.choice(cold)
        if roll < 0.03 and victim not in changes:  # rename within its directory
            new = str(Path(victim).with_name(f"{Path(victim).stem}-{self.counter}{Path(victim).suffix}"))
            ranked = [new if p == victim else p for p in ranked]
            changes[new], changes[victim] = self.blob(head, victim), None
            events.append(("rename", victim, new))
        elif roll < 0.07:  # add a sibling
            new = str(Path(victim).with_name(f"{Path(victim).stem}-new{self.counter}{Path(victim).suffix}"))
            lines = self.blob(head, victim).splitlines(keepends=True)
            changes[new] = b"".join(self.mutate(line) if j < 2 else line for j, line in enumerate(lines))
            ranked = ranked + [new]
            events.append(("add", new))
        elif roll < 0.09 and victim not in changes:
            ranked = [p for p in ranked if p != victim]
            changes[victim] = None
            events.append(("delete", victim))
        message = self.message(list(changes) or [CHANGELOG])
        if self.rng.random() < 0.35 or not changes:
            lines = self.blob(head, CHANGELOG).splitlines(keepends=True)
            lines.insert(self.changelog_anchor(lines), f"* {message} (#{number})\n".encode())
            changes[CHANGELOG] = b"".join(lines)
            events.append(("edit", CHANGELOG))
        self.main.append(self.commit([head], changes, message, self.clock))
        self.events.append(events)
        return ranked

    # ---- pull requests

    def fates(self, fork: int) -> dict[str, _Fate]:
        origin: dict[str, str] = {}
        fates: dict[str, _Fate] = {}
        for events in self.events[fork + 1 :]:
            for event in events:
                kind, path = event[0], event[1]
                if kind == "rename":
                    first = origin.pop(path, path)
                    origin[event[2]] = first
                    fates[first] = _Fate(event[2], True)
                elif kind == "delete":
                    fates[origin.pop(path, path)] = _Fate(None, True)
                else:
                    fates[origin.get(path, path)] = _Fate(path, True)
        return fates

    def upstream_hunks(self, fork: int, path: str, fate: _Fate | None) -> list[tuple[int, int]]:
        """(first line, line count) of each change main made to `path` after `fork`, in
        the fork's line numbers, 0-based; a count of 0 is an insertion before that line."""
        if fate is None or fate.tip_path is None:
            return []
        base = self.get_blob(self.main[fork], path)
        tip = self.get_blob(self.main[-1], fate.tip_path)
        return [
            (h.old_start - 1 if h.old_lines else h.old_start, h.old_lines)
            for h in base.diff(tip, 0, context_lines=0).hunks  # type: ignore[call-arg]
        ]

    def build_pr(self, number: int, kind: str) -> pygit2.Oid:
        tip = len(self.main) - 1
        while True:
            back = 0 if kind == "up_to_date" else max(1, round(tip * self.rng.random() ** 2.5))
            fork = tip - min(back, tip)
            if kind == "merge_main" and fork >= tip - 1:
                continue
            result = _PullRequest(self, number, kind, fork).build()
            if result is not None:
                return result


class _PullRequest:
    def __init__(self, builder: _Builder, number: int, kind: str, fork: int) -> None:
        self.b, self.number, self.kind, self.fork = builder, number, kind, fork
        self.fates = builder.fates(fork)
        self.head = builder.main[fork]
        self.work: dict[str, _Work] = {}
        self.locked: set[str] = {CHANGELOG}
        self.clock = builder.get_commit(self.head).commit_time + builder.rng.randint(600, 7200)

    def file(self, path: str) -> _Work:
        if path not in self.work:
            lines = self.b.blob(self.head, path).splitlines(keepends=True)
            mask = [False] * len(lines)
            for start, count in self.b.upstream_hunks(self.fork, path, self.fates.get(path)):
                for j in range(max(start - MARGIN, 0), min(start + count + MARGIN, len(lines))):
                    mask[j] = True
            self.work[path] = _Work(lines, mask)
        return self.work[path]

    def commit(self, changes: dict[str, bytes | None], message: str | None = None,
               author: pygit2.Signature | None = None) -> None:  # fmt: skip
        self.clock += self.b.rng.randint(300, 6 * 3600)
        self.head = self.b.commit(
            [self.head], changes, message or self.b.message(list(changes)), self.clock, author=author
        )

    def normal_commit(self, quiet_only: bool = False) -> bool:
        rng, b = self.b.rng, self.b
        ranked = b.ranks[self.fork]
        changes: dict[str, bytes | None] = {}

        def usable(path: str) -> bool:
            fate = self.fates.get(path)
            gone = fate is not None and fate.tip_path is None
            return not (path in self.locked or path in changes or gone or (quiet_only and fate is not None))

        for _ in range(rng.choices((1, 2, 3, 4, 5, 6), (35, 25, 15, 10, 8, 7))[0]):
            path = b.zipf_pick(ranked, usable)
            if path is not None and any([b.edit(self.file(path)) for _ in range(rng.randint(1, 2))]):
                changes[path] = b"".join(self.work[path].lines)
        if rng.random() < 0.08:
            sibling = b.zipf_pick(ranked, lambda p: p not in self.fates) or CHANGELOG
            new = str(
                Path(sibling).with_name(f"{Path(sibling).stem}-pr{self.number}-{b.counter}{Path(sibling).suffix}")
            )
            changes[new] = b"".join(
                b.mutate(line) for line in b.blob(self.head, sibling).splitlines(keepends=True)[:60]
            )
        if not changes:
            return False
        self.commit(changes)
        return True

    def conflict_commit(self) -> bool:
        """Change lines main changed after the fork, or its CHANGELOG head, or a file it deleted."""
        rng, b = self.b.rng, self.b
        known = set(b.ranks[self.fork])
        candidates = [p for p in self.fates if p in known and p not in self.work]
        rng.shuffle(candidates)
        if CHANGELOG in self.fates and rng.random() < 0.3:
            lines = b.blob(self.head, CHANGELOG).splitlines(keepends=True)
            lines.insert(b.changelog_anchor(lines), f"* {b.message([CHANGELOG])} (#{1000 + self.number})\n".encode())
            self.commit({CHANGELOG: b"".join(lines)})
            return True
        for path in candidates:
            fate = self.fates[path]
            work = self.file(path)
            if fate.tip_path is None:  # modify/delete
                spans = list(range(len(work.lines)))
            else:
                hunks = b.upstream_hunks(self.fork, path, fate)
                spans = [j for start, count in hunks for j in range(start, start + count) if j < len(work.lines)]
            if spans:
                line = rng.choice(spans)
                work.lines[line] = b.mutate(work.lines[line])
                self.locked.add(path)
                self.commit({path: b"".join(work.lines)})
                return True
        return False

    def upstreamed_commit(self) -> bool:
        """Replay the patch of a later main commit whose files nothing touched in between."""
        b = self.b
        touched: set[str] = set()
        candidates: list[int] = []
        for number in range(self.fork + 1, len(b.main)):
            paths = {e[1] for e in b.events[number]} | {e[2] for e in b.events[number] if len(e) > 2}
            if b.events[number] and all(e[0] == "edit" for e in b.events[number]) and not paths & touched:
                candidates.append(number)
            touched |= paths
        if not candidates:
            return False
        number = b.rng.choice(candidates)
        picked = b.get_commit(b.main[number])
        picked_paths = [e[1] for e in b.events[number]]
        self.commit({p: b.blob(b.main[number], p) for p in picked_paths}, picked.message.rstrip("\n"), picked.author)
        self.locked |= set(picked_paths)
        return True

    def merge_main(self) -> bool:
        b = self.b
        upstream = b.main[b.rng.randrange(self.fork + 1, len(b.main))]
        repo = b.repo
        base, ours, theirs = (b.get_commit(oid).tree for oid in (b.main[self.fork], self.head, upstream))
        index = repo.merge_trees(base, ours, theirs)
        if index.conflicts is not None:
            return False
        self.clock += b.rng.randint(300, 6 * 3600)
        message = f"Merge branch 'main' into pr/{self.number}"
        self.head = b.commit([self.head, upstream], {}, message, self.clock, tree=index.write_tree(repo))
        return True

    def build(self) -> pygit2.Oid | None:
        rng = self.b.rng
        commits = rng.choices(range(1, 9), (30, 24, 16, 10, 8, 5, 4, 3))[0]
        if self.kind == "upstreamed":
            if not self.upstreamed_commit():
                return None
            for _ in range(rng.randint(0, 2)):
                self.normal_commit()
        elif self.kind == "conflict":
            at = rng.randrange(commits)
            for i in range(commits):
                if i == at and not self.conflict_commit():
                    return None
                if i != at:
                    self.normal_commit()
        elif self.kind == "merge_main":
            made = sum(self.normal_commit() for _ in range(rng.randint(1, 3)))
            if not made or not self.merge_main():
                return None
            for _ in range(rng.randint(0, 2)):
                self.normal_commit(quiet_only=True)
        else:
            if not any([self.normal_commit() for _ in range(commits)]):
                return None
        return self.head


def _kinds(branches: int, mix: Mix, rng: random.Random) -> list[str]:
    counts = {name: round(branches * share) for name, share in asdict(mix).items()}
    kinds = [name for name, count in counts.items() for _ in range(count)][:branches]
    kinds += ["normal"] * (branches - len(kinds))
    rng.shuffle(kinds)
    return kinds


def build_corpus(
    path: str | Path,
    *,
    branches: int = 120,
    files_source: str | Path | None = None,
    target_commits: int = 300,
    seed: int = 1,
    strategy_mix: Mix = Mix(),
    pack: bool = True,
) -> CorpusInfo:
    """Create a non-bare repository at `path` (must not exist or be empty) with `main`
    and `pr/1..pr/<branches>`. `files_source`: a directory to import, "generated" for
    synthetic files; default /root/.pyenv when present."""
    started = time.perf_counter()
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} is not empty")
    source: Path | None
    if files_source == "generated":
        source = None
    else:
        source = Path(files_source) if files_source else (DEFAULT_SOURCE if DEFAULT_SOURCE.is_dir() else None)
    builder = _Builder(path, source, seed)
    builder.build_main(target_commits)
    repo = builder.repo
    repo.references.create("refs/heads/main", builder.main[-1])
    kinds = _kinds(branches, strategy_mix, builder.rng)
    for number, kind in enumerate(kinds, start=1):
        repo.references.create(f"refs/heads/pr/{number}", builder.build_pr(number, kind))
    objects_seconds = time.perf_counter() - started
    if pack:
        subprocess.run(["git", "-C", str(path), "repack", "-adq"], check=True)
    subprocess.run(["git", "-C", str(path), "reset", "-q", "--hard", "main"], check=True)
    pack_seconds = time.perf_counter() - started - objects_seconds
    tally: dict[str, int] = {}
    for kind in kinds:
        tally[kind] = tally.get(kind, 0) + 1
    return CorpusInfo(
        path=str(path),
        source=str(source) if source else "generated",
        files=_count_files(repo, builder.main[-1]),
        target="main",
        target_commits=target_commits,
        branches=branches,
        kinds=tally,
        branch_kinds={f"pr/{n}": k for n, k in enumerate(kinds, start=1)},
        objects_seconds=round(objects_seconds, 2),
        pack_seconds=round(pack_seconds, 2),
        seconds=round(time.perf_counter() - started, 2),
    )


def _count_files(repo: pygit2.Repository, commit: pygit2.Oid) -> int:
    index = pygit2.Index()
    index.read_tree(repo[commit].peel(pygit2.Tree))
    return len(index)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path")
    parser.add_argument("--branches", type=int, default=120)
    parser.add_argument("--target-commits", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--source", help='directory to import, or "generated" (default: /root/.pyenv if present)')
    parser.add_argument("--force", action="store_true", help="delete PATH first")
    args = parser.parse_args(argv)
    if args.force:
        shutil.rmtree(args.path, ignore_errors=True)
    info = build_corpus(
        args.path, branches=args.branches, target_commits=args.target_commits, seed=args.seed, files_source=args.source
    )
    summary = asdict(info)
    del summary["branch_kinds"]
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
