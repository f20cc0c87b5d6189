"""Two palign source trees timed on the same repository, their runs interleaved.

    python benchmarks/ab_align.py --repo /tmp/corpus --before /tmp/palign-old [--after .] [--runs 7]

This machine's speed drifts by a third within minutes, so two `bench_align.py` runs an
hour apart say little about a change. Here each tree's `palign run` (warm cache, one
first run each discarded) alternates with the other's, and the medians are compared:
`after/before` near 1.00 means the change did not move the git/palign ratio. Verdicts
and result trees of the two must be identical (exit 1 otherwise).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import pygit2

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_align  # noqa: E402


def _outcomes(run: bench_align.PalignRun, repo: pygit2.Repository) -> dict[str, tuple[str, str | None]]:
    """Each branch's verdict and the tree of its result (commit ids differ: a run pins its
    own committer time)."""
    report = run.report or {}
    results = report.get("orchestration_results", {})
    assert isinstance(results, dict)
    return {
        b["branch_name"]: (b["status"], str(repo[b["new_sha"]].peel(pygit2.Tree).id) if b["new_sha"] else None)
        for t in results.values()
        for b in t["branches"]
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, required=True, help="a repository, e.g. one corpus.py built")
    parser.add_argument("--before", type=Path, required=True, help="palign source tree to compare against")
    parser.add_argument("--after", type=Path, default=bench_align.ROOT, help="palign source tree (default: this one)")
    parser.add_argument("--onto", default="main")
    parser.add_argument("--branch", default="pr/*")
    parser.add_argument("--strategy", choices=("rebase", "merge"), default="rebase")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each tree")
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="palign-ab-"))
    corpus_path = args.repo.resolve()
    branches = bench_align.list_branches(corpus_path, args.branch)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    seconds: dict[str, list[float]] = {label: [] for label in trees}
    outcomes: dict[str, dict[str, tuple[str, str | None]]] = {}
    try:
        for round_ in range(args.runs + 1):  # round 0 fills each tree's cache and is not timed
            for label, tree in trees.items():
                env = bench_align.git_env(scratch / "home")
                env["PALIGN_CACHE_DIR"] = str(scratch / f"cache-{label}")
                # `python -m palign` from that tree, whatever is installed: run in the tree,
                # whose folder `-m` puts first on the path
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))
                report_dir = scratch / f"report-{label}-{round_}"
                cmd = [sys.executable, "-m", "palign"]
                run = bench_align.run_palign(
                    corpus_path, args.onto, args.branch, args.strategy, args.workers, report_dir, env, cmd, tree
                )
                bench_align._restore_refs(corpus_path, branches)
                if run.report is None:
                    print(f"{label}: no report (exit {run.returncode}):\n{run.stderr}", file=sys.stderr)
                    return 1
                outcomes[label] = _outcomes(run, pygit2.Repository(str(corpus_path)))
                if round_:
                    seconds[label].append(run.seconds)
        for label in trees:
            each = ", ".join(f"{s:.2f}" for s in seconds[label])
            print(f"{label:6} {trees[label]}: median {statistics.median(seconds[label]):.2f} s ({each})")
        ratio = statistics.median(seconds["after"]) / statistics.median(seconds["before"])
        print(f"after/before: {ratio:.2f}")
        same = outcomes["before"] == outcomes["after"]
        print(f"same verdict and tree for all {len(outcomes['after'])} branches: {'yes' if same else 'NO'}")
        return 0 if same else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
