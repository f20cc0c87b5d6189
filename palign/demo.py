"""`palign demo`: a sample repository with about 40 branches, aligned on the spot."""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

import click
import pygit2

from palign import service
from palign.cli import print_summary
from palign.model import Strategy
from palign.report import write

_SIG_NAME, _SIG_MAIL = "Demo Author", "demo@example.com"
MODULES = [f"src/pkg{p}/mod{m}.py" for p in range(4) for m in range(6)] + ["README.md", "CHANGELOG.md"]


_START = int(time.time()) - 7 * 86400  # a week of history, so no branch looks stale


def _signature(step: int) -> pygit2.Signature:
    return pygit2.Signature(_SIG_NAME, _SIG_MAIL, _START + step * 60, 0)


class _Builder:
    def __init__(self, path: Path) -> None:
        self.repo = pygit2.init_repository(str(path), initial_head="main")
        self.step = 0

    def commit(self, parent: pygit2.Oid | None, files: dict[str, str | None], message: str) -> pygit2.Oid:
        repo = self.repo
        tree = repo[parent].tree if parent is not None else None
        index = pygit2.Index()
        if tree is not None:
            index.read_tree(tree)
        for path, text in files.items():
            if text is None:
                index.remove(path)
            else:
                index.add(pygit2.IndexEntry(path, repo.create_blob(text.encode()), pygit2.enums.FileMode.BLOB))
        tree_id = index.write_tree(repo)
        self.step += 1
        sig = _signature(self.step)
        return repo.create_commit(None, sig, sig, message, tree_id, [parent] if parent is not None else [])

    def text(self, commit: pygit2.Oid, path: str) -> str:
        return self.repo[commit].tree[path].data.decode()  # type: ignore[union-attr]


def _edit(text: str, line: int, new: str) -> str:
    lines = text.splitlines()
    lines[line % len(lines)] = new
    return "\n".join(lines) + "\n"


def build_demo_repository(path: Path, seed: int = 7) -> dict[str, int]:
    """main with 12 commits ahead of the forks; 40 branches: clean, conflicting, up to date,
    already merged, and three stacks. Returns how many branches of each kind it made."""
    rng = random.Random(seed)
    b = _Builder(path)
    files = {m: "".join(f"line {i} of {m}\n" for i in range(40)) for m in MODULES}
    base = b.commit(None, dict(files), "Initial layout")
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

    def branch(name: str, tip: pygit2.Oid) -> None:
        b.repo.references.create(f"refs/heads/{name}", tip)

    for n in range(22):  # clean: edit lines main never touches
        head = rng.choice(history[:6])
        for c in range(rng.randint(1, 3)):
            path_ = rng.choice(MODULES)
            head = b.commit(
                head, {path_: _edit(b.text(head, path_), 20 + c, f"feature {n} edit {c}")}, f"feature {n}: edit {c}"
            )
        branch(f"feature/clean-{n:02d}", head)
        kinds["clean"] += 1
    for n in range(6):  # conflicting: rewrite a line main rewrote
        head = history[0]
        path_ = MODULES[n]
        head = b.commit(head, {path_: _edit(b.text(head, path_), 5, f"competing change {n}")}, f"fix {n}: line 5")
        branch(f"fix/conflict-{n}", head)
        kinds["conflicting"] += 1
    for n in range(4):  # up to date: forked at the tip
        head = b.commit(main_tip, {f"docs/note{n}.md": f"note {n}\n"}, f"docs: note {n}")
        branch(f"docs/up-to-date-{n}", head)
        kinds["up_to_date"] += 1
    for n in range(2):  # already merged into main
        branch(f"old/merged-{n}", history[3 + n])
        kinds["merged"] += 1
    for s in range(3):  # stacks of two: part-2 is built on part-1
        head = history[2]
        for part in (1, 2):
            path_ = f"src/stack{s}/part{part}.py"
            head = b.commit(head, {path_: f"stack {s} part {part}\n"}, f"stack {s}: part {part}")
            branch(f"stack/{s}/part-{part}", head)
            kinds["stacked"] += 1
    b.repo.references.create("refs/heads/main", main_tip, force=True)
    b.repo.set_head("refs/heads/main")
    return kinds


def run_demo(directory: Path | None, *, workers: int) -> None:
    root = directory or Path(tempfile.mkdtemp(prefix="palign-demo-"))
    repo_path = root / "repo"
    if repo_path.exists():
        raise click.UsageError(f"{repo_path} already exists; give another --dir")
    kinds = build_demo_repository(repo_path)
    click.echo(
        f"sample repository: {repo_path} ({sum(kinds.values())} branches: "
        + ", ".join(f"{v} {k}" for k, v in kinds.items())
        + ")"
    )
    report = service.run(
        service.RunOptions(repo=str(repo_path), targets=["main"], strategy=Strategy.REBASE, workers=workers)
    )
    json_path, _ = write(report, root / "report")
    print_summary(report, json_path)
