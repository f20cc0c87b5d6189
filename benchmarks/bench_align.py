"""Benchmark palign against a sequential `git rebase`/`git merge` loop over the same branches.

    python benchmarks/bench_align.py [--repo PATH --onto main --branch 'pr/*'] [--branches 120]
                                     [--strategy rebase|merge] [--workers 2] [--keep] [--git-only]

Without --repo a corpus is built in a temporary directory (see corpus.py). The git loop
runs in a scratch clone; palign runs on the corpus itself, once with an empty cache (cold), then
--warm-runs times with it in place (warm; the median run is reported),
and its verdicts and trees must match git's: the exit status is 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pygit2

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OK_STATUSES = {"aligned", "up_to_date", "merged"}


@dataclass
class GitLoop:
    seconds: float
    checkout_seconds: float
    verdicts: dict[str, str]  # branch -> ok | conflict | error
    trees: dict[str, str]  # branch -> tree of the result, for ok branches


@dataclass
class PalignRun:
    seconds: float
    returncode: int
    report: dict[str, object] | None
    worker_peak_rss_kb: int = 0  # max VmHWM of descendants running palign itself (the pool)
    main_peak_rss_kb: int = 0
    workers: int = 0
    git_peak_rss_kb: int = 0  # max VmHWM of other descendants: git, sh
    git_processes: int = 0
    stderr: str = ""
    mismatches: list[str] = field(default_factory=list)
    verdicts: dict[str, int] = field(default_factory=dict)


def git_env(home: Path) -> dict[str, str]:
    """A clean git environment: no system/user config beyond an identity, no hooks."""
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").write_text("[user]\n\tname = Bench\n\temail = bench@example.org\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", LC_ALL="C")
    return env


def list_branches(repo_path: Path, pattern: str) -> dict[str, str]:
    repo = pygit2.Repository(str(repo_path))
    names = [r[len("refs/heads/") :] for r in repo.references if r.startswith("refs/heads/")]
    chosen = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return {n: str(repo.references[f"refs/heads/{n}"].target) for n in sorted(chosen, key=_natural)}


def _natural(name: str) -> tuple[str, int]:
    head, _, tail = name.rpartition("/")
    return (head, int(tail)) if tail.isdigit() else (name, -1)


def run_git_loop(corpus_path: Path, target_sha: str, branches: dict[str, str], strategy: str, scratch: Path) -> GitLoop:
    env = git_env(scratch / "home")
    clone = scratch / "clone"
    subprocess.run(
        ["git", "clone", "-q", "-c", "core.hooksPath=/dev/null", str(corpus_path), str(clone)], env=env, check=True
    )

    def git(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = ["git", "-c", "core.hooksPath=/dev/null", *args]
        return subprocess.run(cmd, cwd=clone, env=env, check=check, capture_output=True, text=True)

    operation = ["rebase", "-q", target_sha] if strategy == "rebase" else ["merge", "-q", "--no-edit", target_sha]
    pending = clone / ".git" / ("rebase-merge" if strategy == "rebase" else "MERGE_HEAD")
    verdicts: dict[str, str] = {}
    trees: dict[str, str] = {}
    checkout = 0.0
    started = time.perf_counter()
    for name, sha in branches.items():
        t0 = time.perf_counter()
        git("checkout", "-q", "-B", "work", sha)
        checkout += time.perf_counter() - t0
        if git(*operation, check=False).returncode == 0:
            verdicts[name] = "ok"
            trees[name] = git("rev-parse", "HEAD^{tree}").stdout.strip()
        else:
            verdicts[name] = "conflict" if pending.exists() or (clone / ".git" / "rebase-apply").exists() else "error"
            git(strategy, "--abort", check=False)
            git("reset", "-q", "--hard", check=False)
    return GitLoop(time.perf_counter() - started, checkout, verdicts, trees)


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid]
        found += children
        frontier += children
    return found


def _peak_rss_kb(pid: int) -> tuple[str, int]:
    """(command name, peak resident set in kB) of a live process."""
    name, peak = "", 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Name:"):
                name = line.split(maxsplit=1)[1] if len(line.split()) > 1 else ""
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    except OSError:
        pass
    return name, peak


def palign_command() -> list[str]:
    exe = shutil.which("palign")
    return [exe] if exe else [sys.executable, "-m", "palign"]


def run_palign(corpus_path: Path, onto: str | list[str], pattern: str, strategy: str, workers: int,
               report_dir: Path, env: dict[str, str], command: list[str] | None = None,
               cwd: Path | None = None) -> PalignRun:  # fmt: skip
    targets = [onto] if isinstance(onto, str) else onto
    cmd = [*(command or palign_command()), "run", str(corpus_path), *(a for t in targets for a in ("--onto", t)),
           "--branch", pattern, "--strategy", strategy, "--workers", str(workers),
           "--report-dir", str(report_dir)]  # fmt: skip
    peaks: dict[int, tuple[str, int]] = {}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)

    def watch() -> None:
        while proc.poll() is None:
            for pid in [proc.pid, *_descendants(proc.pid)]:
                name, kb = _peak_rss_kb(pid)
                if kb >= peaks.get(pid, ("", 0))[1]:
                    peaks[pid] = (name, kb)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    _, stderr = proc.communicate()
    seconds = time.perf_counter() - started
    watcher.join()
    report_file = report_dir / "report.json"
    report = json.loads(report_file.read_text()) if report_file.exists() else None
    main_name, main_kb = peaks.pop(proc.pid, ("", 0))
    workers_kb = [kb for name, kb in peaks.values() if name == main_name]  # forked: same command name
    git_kb = [kb for name, kb in peaks.values() if name != main_name]
    return PalignRun(seconds, proc.returncode, report, max(workers_kb, default=0), main_kb, len(workers_kb),
                     max(git_kb, default=0), len(git_kb), stderr[-4000:])  # fmt: skip


def compare(run: PalignRun, loop: GitLoop, corpus_path: Path, onto: str) -> None:
    """Fill run.mismatches and run.verdicts from its report against the git loop."""
    if run.report is None:
        run.mismatches.append(f"no report.json (exit {run.returncode})")
        return
    results = run.report.get("orchestration_results", {})
    assert isinstance(results, dict)
    target = (
        results.get(onto)
        or results.get(f"refs/heads/{onto}")
        or (next(iter(results.values())) if len(results) == 1 else None)
    )
    entries = {b["branch_name"]: b for b in (target or {}).get("branches", [])}
    repo = pygit2.Repository(str(corpus_path))
    for name, verdict in loop.verdicts.items():
        entry = entries.get(name)
        status = entry["status"] if entry else "missing"
        run.verdicts[status] = run.verdicts.get(status, 0) + 1
        mine = "ok" if status in OK_STATUSES else status
        if mine != verdict:
            extra = f": {entry.get('error_message')}" if entry and entry.get("error_message") else ""
            run.mismatches.append(f"{name}: git {verdict}, palign {status}{extra}")
        elif verdict == "ok":
            try:
                tree = str(repo[entry["new_sha"]].peel(pygit2.Tree).id)  # type: ignore[index]
            except (KeyError, ValueError, TypeError) as error:
                tree = f"unreadable ({error})"
            if tree != loop.trees[name]:
                run.mismatches.append(f"{name}: tree {tree[:12]} != git {loop.trees[name][:12]} ({status})")


def _restore_refs(corpus_path: Path, branches: dict[str, str]) -> None:
    """Put the branches back where they were, in case a run moved them."""
    repo = pygit2.Repository(str(corpus_path))
    for name, sha in branches.items():
        ref = repo.references.get(f"refs/heads/{name}")
        if ref is None or str(ref.target) != sha:
            repo.references.create(f"refs/heads/{name}", sha, force=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, help="existing repository (default: build a corpus)")
    parser.add_argument("--onto", default="main")
    parser.add_argument("--branch", default="pr/*", help="branch glob")
    parser.add_argument("--branches", type=int, default=120, help="corpus size when building one")
    parser.add_argument("--target-commits", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--strategy", choices=("rebase", "merge"), default="rebase")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--git-only", action="store_true", help="only run the git loop")
    parser.add_argument("--warm-runs", type=int, default=3, help="warm palign runs; the median is reported")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="palign-bench-"))
    summary: dict[str, object] = {"strategy": args.strategy, "workers": args.workers}
    try:
        corpus_path = args.repo
        if corpus_path is None:
            corpus_path = scratch / "corpus"
            info = corpus.build_corpus(
                corpus_path, branches=args.branches, target_commits=args.target_commits, seed=args.seed
            )
            summary["corpus_build_seconds"] = info.seconds
            print(f"corpus: {info.files} files, {info.branches} branches, {info.kinds} built in {info.seconds}s")
        corpus_path = corpus_path.resolve()
        branches = list_branches(corpus_path, args.branch)
        target_sha = str(pygit2.Repository(str(corpus_path)).revparse_single(args.onto).peel(pygit2.Commit).id)
        if not branches:
            print(f"no branch matches {args.branch!r}", file=sys.stderr)
            return 2

        loop = run_git_loop(corpus_path, target_sha, branches, args.strategy, scratch / "git")
        git_counts = {v: list(loop.verdicts.values()).count(v) for v in sorted(set(loop.verdicts.values()))}
        summary.update(branches=len(branches), git_seconds=round(loop.seconds, 2),
                       git_seconds_without_checkout=round(loop.seconds - loop.checkout_seconds, 2),
                       git_verdicts=git_counts,
                       git_not_ok=sorted((n for n, v in loop.verdicts.items() if v != "ok"), key=_natural))  # fmt: skip

        runs: dict[str, PalignRun] = {}
        if not args.git_only:
            env = git_env(scratch / "home")
            env["PALIGN_CACHE_DIR"] = str(scratch / "palign-cache")
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
            warm_runs: list[PalignRun] = []
            for label in ["cold"] + ["warm"] * args.warm_runs:
                run = run_palign(corpus_path, args.onto, args.branch, args.strategy, args.workers,
                                 scratch / f"report-{label}-{len(warm_runs)}", env)  # fmt: skip
                compare(run, loop, corpus_path, args.onto)
                _restore_refs(corpus_path, branches)
                if label == "warm":
                    warm_runs.append(run)
                    # The median warm run stands for all: this machine's timings are noisy.
                    run = sorted(warm_runs, key=lambda r: r.seconds)[(len(warm_runs) - 1) // 2]
                    run.mismatches = sorted({m for r in warm_runs for m in r.mismatches})
                    summary["palign_warm_seconds_each"] = [round(r.seconds, 2) for r in warm_runs]
                runs[label] = run
                summary[f"palign_{label}"] = {
                    "seconds": round(run.seconds, 2), "exit": run.returncode, "verdicts": run.verdicts,
                    "mismatches": run.mismatches, "worker_peak_rss_mb": round(run.worker_peak_rss_kb / 1024, 1),
                    "main_peak_rss_mb": round(run.main_peak_rss_kb / 1024, 1), "workers": run.workers,
                    "git_subprocesses": run.git_processes, "git_peak_rss_mb": round(run.git_peak_rss_kb / 1024, 1),
                }  # fmt: skip
        print_table(summary, runs)
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2) + "\n")
        failed = any(r.mismatches for r in runs.values())
        for label, run in runs.items():
            if run.mismatches:
                print(f"\n{label} run: {len(run.mismatches)} mismatch(es)")
                print("\n".join(f"  {m}" for m in run.mismatches[:50]))
            if run.returncode != 0 and run.stderr:
                print(f"\n{label} run stderr (tail):\n{run.stderr}")
        return 1 if failed else 0
    finally:
        if args.keep:
            print(f"kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def print_table(summary: dict[str, object], runs: dict[str, PalignRun]) -> None:
    git_seconds = float(summary["git_seconds"])  # type: ignore[arg-type]
    rows = [
        ("branches", str(summary["branches"])),
        ("strategy", f"{summary['strategy']} (palign --workers {summary['workers']})"),
        ("git loop s", f"{git_seconds:.2f} ({summary['git_seconds_without_checkout']:.2f} without checkout)"),
        ("git verdicts", json.dumps(summary["git_verdicts"])),
    ]
    for label, run in runs.items():
        ratio = git_seconds / run.seconds if run.seconds else float("nan")
        rows += [
            (f"palign {label} s", f"{run.seconds:.2f} (git/palign {ratio:.2f}x, exit {run.returncode})"
             + (f"; each run: {summary.get('palign_warm_seconds_each')}" if label == "warm" else "")),
            (f"palign {label} verdicts", json.dumps(run.verdicts)),
            (f"palign {label} mismatches", str(len(run.mismatches))),
            (f"palign {label} peak RSS", f"worker max {run.worker_peak_rss_kb / 1024:.1f} MB ({run.workers} workers), "
                                         f"main {run.main_peak_rss_kb / 1024:.1f} MB, git/sh subprocesses max "
                                         f"{run.git_peak_rss_kb / 1024:.1f} MB ({run.git_processes})"),
        ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    sys.exit(main())
