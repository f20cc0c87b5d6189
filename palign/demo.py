"""`palign demo`: a sample repository with about 40 branches, aligned on the spot.

The repository is written by one `git fast-import` (through `palign.git`); the run is an
ordinary local run of the service layer.
"""

from __future__ import annotations

import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from palign import git, service
from palign.errors import InputError
from palign.model import Strategy
from palign.report import RunReport, write
from palign.settings import Settings

_AUTHOR = b"Demo Author <demo@example.com>"
MODULES = [f"src/pkg{p}/mod{m}.py" for p in range(4) for m in range(6)] + ["README.md", "CHANGELOG.md"]


class HistoryBuilder:
    """Commits as a fast-import stream: each commit is a mark, its files kept here. One
    `git fast-import` writes them all (the demo's repository; the tests' large ones)."""

    def __init__(self) -> None:
        self.stream = bytearray()
        self.trees: dict[int, dict[str, str]] = {}
        self.start = int(time.time()) - 7 * 86400  # a week of history, so no branch looks stale

    def commit(self, parent: int | None, files: dict[str, str | None], message: str) -> int:
        mark = len(self.trees) + 1
        tree = dict(self.trees[parent]) if parent is not None else {}
        when = f"{self.start + mark * 60} +0000".encode()
        text = message.encode()
        # Every commit names its parent: the ref it is written to only needs to exist
        # (`main`, reset to its real tip at the end).
        self.stream += b"commit refs/heads/main\nmark :%d\n" % mark
        self.stream += b"author %s %s\ncommitter %s %s\n" % (_AUTHOR, when, _AUTHOR, when)
        self.stream += b"data %d\n%s\n" % (len(text), text)
        if parent is not None:
            self.stream += b"from :%d\n" % parent
        for path, content in files.items():
            if content is None:
                tree.pop(path, None)
                self.stream += b"D %s\n" % path.encode()
            else:
                tree[path] = content
                data = content.encode()
                self.stream += b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(data), data)
        self.trees[mark] = tree
        return mark

    def text(self, commit: int, path: str) -> str:
        return self.trees[commit][path]

    def branch(self, name: str, commit: int) -> None:
        self.stream += b"reset refs/heads/%s\nfrom :%d\n\n" % (name.encode(), commit)

    def write(self, path: Path) -> None:
        git.run(["init", "--quiet", "--initial-branch=main", str(path)])
        git.run(["-C", str(path), "fast-import", "--quiet", "--done"], stdin=bytes(self.stream) + b"done\n")


def _edit(text: str, line: int, new: str) -> str:
    lines = text.splitlines()
    lines[line % len(lines)] = new
    return "\n".join(lines) + "\n"


def build_demo_repository(path: Path, seed: int = 7) -> dict[str, int]:
    """main with 12 commits ahead of the forks; 40 branches: clean, conflicting, up to date,
    already merged, and three stacks. Returns how many branches of each kind it made."""
    rng = random.Random(seed)
    b = HistoryBuilder()
    files: dict[str, str | None] = {m: "".join(f"line {i} of {m}\n" for i in range(40)) for m in MODULES}
    base = b.commit(None, files, "Initial layout")
    history = [base]
    for i in range(12):
        path_ = MODULES[i % len(MODULES)]
        history.append(
            b.commit(
                history[-1],
                {path_: _edit(b.text(history[-1], path_), 5, f"main change {i}")},
                f"main: change {i} in {path_}",
            )
        )
    main_tip = history[-1]
    kinds = {"clean": 0, "conflicting": 0, "up_to_date": 0, "merged": 0, "stacked": 0}
    for n in range(22):  # clean: edit lines main never touches
        head = rng.choice(history[:6])
        for c in range(rng.randint(1, 3)):
            path_ = rng.choice(MODULES)
            head = b.commit(
                head, {path_: _edit(b.text(head, path_), 20 + c, f"feature {n} edit {c}")}, f"feature {n}: edit {c}"
            )
        b.branch(f"feature/clean-{n:02d}", head)
        kinds["clean"] += 1
    for n in range(6):  # conflicting: rewrite a line main rewrote
        head = history[0]
        path_ = MODULES[n]
        head = b.commit(head, {path_: _edit(b.text(head, path_), 5, f"competing change {n}")}, f"fix {n}: line 5")
        b.branch(f"fix/conflict-{n}", head)
        kinds["conflicting"] += 1
    for n in range(4):  # up to date: forked at the tip
        head = b.commit(main_tip, {f"docs/note{n}.md": f"note {n}\n"}, f"docs: note {n}")
        b.branch(f"docs/up-to-date-{n}", head)
        kinds["up_to_date"] += 1
    for n in range(2):  # already merged into main (where no other branch forks: that would make it a base)
        b.branch(f"old/merged-{n}", history[6 + n])
        kinds["merged"] += 1
    for s in range(3):  # stacks of two: part-2 is built on part-1
        head = history[2]
        for part in (1, 2):
            path_ = f"src/stack{s}/part{part}.py"
            head = b.commit(head, {path_: f"stack {s} part {part}\n"}, f"stack {s}: part {part}")
            b.branch(f"stack/{s}/part-{part}", head)
            kinds["stacked"] += 1
    b.branch("main", main_tip)
    b.write(path)
    return kinds


@dataclass(frozen=True)
class Demo:
    repository: Path
    kinds: dict[str, int]  # branches of each kind
    report: RunReport
    report_file: Path


def run_demo(directory: Path | None, *, workers: int, settings: Settings) -> Demo:
    """Build the sample repository in `directory` (default: a new temporary folder) and
    align it on the local pool; the report goes to `directory/report`."""
    root = directory or Path(tempfile.mkdtemp(prefix="palign-demo-"))
    repo_path = root / "repo"
    if repo_path.exists():
        raise InputError(f"{repo_path} already exists; give another --dir")
    kinds = build_demo_repository(repo_path)
    options = service.RunOptions(repo=str(repo_path), targets=["main"], strategy=Strategy.REBASE, workers=workers)
    report = service.run(options, settings)
    json_path, _ = write(report, root / "report")
    return Demo(repo_path, kinds, report, json_path)
