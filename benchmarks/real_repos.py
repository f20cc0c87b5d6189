"""palign on a real repository's pull requests: agreement with git, target accuracy, stacks, speed.

    python benchmarks/real_repos.py --mirror /work/.mirror/pallets+click/repo --prs 100 [--onto main --onto stable]
    python benchmarks/real_repos.py --repo PREPARED_CLONE --onto main [--branch 'pr/*'] [--strategy rebase]

Run on demand, never in CI. With --mirror (a bare git dir with `refs/pull/N/head` refs) the script
clones it into a temporary folder, fetches the --prs newest pull-request heads as branches `pr/N`,
creates a local branch for each --onto target (default: the mirror's default branch) and removes
the remote. With --repo it uses a prepared clone as it is (its branches must exist locally).

It prints, for each strategy (rebase and merge unless --strategy is given):

1. verdict and tree agreement: `palign run REPO --onto T... --report-dir D`, each branch's status
   against a sequential `git rebase`/`git merge` loop (bench_align.run_git_loop) onto the target
   palign assigned to it; branches palign stacked on another one are counted apart, since palign
   replays only their own commits onto the lower branch's result;
2. target accuracy (once): a pull request's real base is read from each target's first-parent
   history (`Merge pull request #N from ...`, or a subject ending in `(#N)`); the share of those
   branches `palign plan --json` assigned to that base, and their confidences;
3. stacks: how many branches the plan puts on another branch (`parent`, the report's
   `stacked_on`), with a few examples to judge by hand;
4. speed: git loop seconds / palign seconds, cold (fresh PALIGN_CACHE_DIR) and warm (second run).

Exit status: 0 when every unstacked branch agrees with git, 1 otherwise, 2 on bad input.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pygit2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_align import (  # noqa: E402
    OK_STATUSES,
    ROOT,
    GitLoop,
    PalignRun,
    _natural,
    _restore_refs,
    git_env,
    list_branches,
    palign_command,
    run_git_loop,
    run_palign,
)

MERGE_PR = re.compile(r"^Merge pull request #(\d+) from ")
SQUASH_PR = re.compile(r"\(#(\d+)\)\s*$")


class InputError(Exception):
    """Bad input: reported on one line, exit status 2."""


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    cmd = ["git", "-c", "core.hooksPath=/dev/null", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise InputError(f"{' '.join(cmd)}: {proc.stderr.strip() or f'exit {proc.returncode}'}")
    return proc.stdout


def prepare_clone(mirror: Path, prs: int, onto: list[str], dest: Path, env: dict[str, str]) -> list[str]:
    """Clone MIRROR into DEST with branches pr/N for the PRS newest pull requests; return the targets."""
    if not mirror.is_dir():
        raise InputError(f"--mirror {mirror}: no such directory")
    git("rev-parse", "--git-dir", cwd=mirror, env=env)
    heads = git("for-each-ref", "--format=%(refname)", "refs/pull/", cwd=mirror, env=env).split()
    numbers = sorted(int(m.group(1)) for r in heads if (m := re.fullmatch(r"refs/pull/(\d+)/head", r)))
    if not numbers:
        raise InputError(f"--mirror {mirror}: no refs/pull/N/head refs")
    chosen = numbers[-prs:]
    if not onto:
        onto = [git("symbolic-ref", "--short", "HEAD", cwd=mirror, env=env).strip()]
    git("clone", "-q", "--no-checkout", str(mirror), str(dest), env=env)
    git("fetch", "-q", "origin", *(f"refs/pull/{n}/head:refs/heads/pr/{n}" for n in chosen), cwd=dest, env=env)
    for target in onto:
        if git("branch", "--list", target, cwd=dest, env=env).strip():
            continue
        if not git("branch", "-r", "--list", f"origin/{target}", cwd=dest, env=env).strip():
            raise InputError(f"--onto {target}: no such branch in {mirror}")
        git("branch", "-q", target, f"origin/{target}", cwd=dest, env=env)
    git("remote", "remove", "origin", cwd=dest, env=env)
    print(f"clone: {dest} with {len(chosen)} PR heads (#{chosen[0]}..#{chosen[-1]}), targets {', '.join(onto)}")
    return onto


def known_bases(repo: Path, onto: list[str], env: dict[str, str]) -> tuple[dict[int, str], set[int]]:
    """PR number -> the target whose first-parent history merged it; and the PRs found on several targets.

    Those are left out: a target fast-forwarded to another (a release branch reset to main) shares its
    first-parent history, so the merge commit does not tell which was the base."""
    found: dict[int, set[str]] = {}
    for target in onto:
        for subject in git("log", "--first-parent", "--format=%s", target, "--", cwd=repo, env=env).splitlines():
            match = MERGE_PR.match(subject) or SQUASH_PR.search(subject)
            if match:
                found.setdefault(int(match.group(1)), set()).add(target)
    return {n: next(iter(ts)) for n, ts in found.items() if len(ts) == 1}, {n for n, ts in found.items() if len(ts) > 1}


def plan(repo: Path, onto: list[str], pattern: str, env: dict[str, str]) -> dict[str, dict[str, object]]:
    """Branch name -> its entry in `palign plan --json` (without the forecast)."""
    cmd = [*palign_command(), "plan", str(repo), *(a for t in onto for a in ("--onto", t)), "--branch", pattern,
           "--json", "--no-forecast"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise InputError(f"palign plan failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return {b["branch_name"]: b for b in json.loads(proc.stdout)["branches"]}


def report_entries(run: PalignRun) -> dict[str, tuple[str, dict[str, object]]]:
    """Branch name -> (target, its entry in report.json)."""
    results = (run.report or {}).get("orchestration_results", {})
    assert isinstance(results, dict)
    return {
        b["branch_name"]: (target.removeprefix("refs/heads/"), b)
        for target, result in results.items()
        for b in result.get("branches", [])
    }


def agreement(run: PalignRun, loops: dict[str, GitLoop], targets: dict[str, str], repo: Path) -> dict[str, object]:
    """Compare a palign run with the git loops, per branch, stacked branches apart."""
    entries = report_entries(run)
    pygit = pygit2.Repository(str(repo))
    tally = {kind: Counter() for kind in ("unstacked", "stacked")}
    mismatches: list[str] = []
    for name, target in targets.items():
        loop = loops[target]
        got_target, entry = entries.get(name, (None, {}))
        status = str(entry.get("status", "missing"))
        run.verdicts[status] = run.verdicts.get(status, 0) + 1
        kind = "stacked" if entry.get("stacked_on") else "unstacked"
        counts = tally[kind]
        counts["branches"] += 1
        if got_target not in (None, target):
            mismatches.append(f"{name}: plan target {target}, run target {got_target}")
        mine = "ok" if status in OK_STATUSES else status
        theirs = loop.verdicts[name]
        if kind == "stacked" and mine == "blocked" and theirs == "conflict":
            # git rebases the whole stack onto the target and stops in the lower branch's
            # conflict; palign reports that conflict on the lower branch and this one blocked.
            mine = "conflict"
        if mine != theirs:
            mismatches.append(f"{name} ({kind}): git {theirs}, palign {status}")
            continue
        counts["same_verdict"] += 1
        if theirs != "ok":
            counts["same_tree"] += 1  # nothing to compare: both failed the same way
            continue
        try:
            tree = str(pygit[str(entry["new_sha"])].peel(pygit2.Tree).id)
        except (KeyError, ValueError, TypeError) as error:
            tree = f"unreadable ({error})"
        if tree == loop.trees[name]:
            counts["same_tree"] += 1
        else:
            mismatches.append(f"{name} ({kind}): tree {tree[:12]} != git {loop.trees[name][:12]} ({status})")
    run.mismatches = mismatches
    return {kind: dict(c) for kind, c in tally.items()}


def plausible_stack(repo: pygit2.Repository, child: str, lower: str) -> bool:
    """A stack a person would recognise: the lower branch's tip is on the child's first-parent
    line (the child was built on it, not merged it in through a shared base), and one author
    made both tips."""
    tip, wanted = repo[child].peel(pygit2.Commit), repo[lower].peel(pygit2.Commit)
    if tip.author.email != wanted.author.email:
        return False
    walker = repo.walk(tip.id, pygit2.enums.SortMode.NONE)
    walker.simplify_first_parent()
    return any(commit.id == wanted.id for commit in itertools.islice(walker, 2000))


def fraction(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.0f} %)" if whole else "0/0"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--mirror", type=Path, help="bare git dir with refs/pull/N/head refs")
    source.add_argument("--repo", type=Path, help="a prepared clone (used as it is)")
    parser.add_argument("--prs", type=int, default=100, help="with --mirror: the N newest pull requests")
    parser.add_argument("--onto", action="append", default=[], help="target (repeatable; default: default branch)")
    parser.add_argument("--branch", default="pr/*", help="branch glob")
    parser.add_argument("--strategy", choices=("rebase", "merge"), action="append", help="default: both")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--examples", type=int, default=8, help="stacks and mismatches listed")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.prs < 1:
        parser.error("--prs must be at least 1")

    scratch = Path(tempfile.mkdtemp(prefix="palign-real-"))
    try:
        return run(args, scratch)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def run(args: argparse.Namespace, scratch: Path) -> int:
    env = git_env(scratch / "home")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    onto: list[str] = args.onto
    if args.mirror:
        repo = scratch / "repo"
        onto = prepare_clone(args.mirror.resolve(), args.prs, onto, repo, env)
    else:
        repo = args.repo.resolve()
        if not (repo / ".git").exists() and not (repo / "HEAD").exists():
            raise InputError(f"--repo {repo}: not a git repository")
        if not onto:
            onto = [git("symbolic-ref", "--short", "HEAD", cwd=repo, env=env).strip()]
    branches = list_branches(repo, args.branch)
    if not branches:
        raise InputError(f"no branch matches {args.branch!r} in {repo}")
    pygit = pygit2.Repository(str(repo))
    try:
        target_shas = {t: str(pygit.revparse_single(t).peel(pygit2.Commit).id) for t in onto}
    except (KeyError, ValueError) as error:
        raise InputError(f"--onto: {error}") from None
    summary: dict[str, object] = {"repo": str(args.mirror or repo), "branches": len(branches), "onto": onto}
    print(f"{len(branches)} branches matching {args.branch!r}, onto {', '.join(onto)}")

    # 2 and 3: the plan (same planner as the run; the run's report is checked against it below).
    env["PALIGN_CACHE_DIR"] = str(scratch / "plan-cache")
    planned = plan(repo, onto, args.branch, env)
    targets = {n: str(planned[n]["assigned_target"]) for n in branches if n in planned}
    missing = sorted(set(branches) - set(targets), key=_natural)
    if missing:
        raise InputError(f"palign plan left out {len(missing)} branches: {', '.join(missing[:5])}")
    bases, ambiguous = known_bases(repo, onto, env)
    ambiguous_prs = [n for n in branches if n.rsplit("/", 1)[-1].isdigit() and int(n.rsplit("/", 1)[1]) in ambiguous]
    known = {n: bases[int(n.rsplit("/", 1)[1])] for n in branches if n.rsplit("/", 1)[-1].isdigit()
             and int(n.rsplit("/", 1)[1]) in bases}  # fmt: skip
    right = [n for n, base in known.items() if targets[n] == base]
    wrong = sorted(set(known) - set(right), key=_natural)
    conf = {label: [float(planned[n]["confidence"]) for n in names]
            for label, names in (("right", right), ("wrong", wrong))}  # fmt: skip
    stacks = {n: str(p["parent"]) for n, p in planned.items() if p.get("parent")}
    parents = Counter(stacks.values())
    summary["targets"] = dict(Counter(targets.values()))
    summary["accuracy"] = {"known_base": len(known), "right": len(right), "wrong": wrong,
                           "known_by_base": dict(Counter(known.values())), "confidence": conf,
                           "merged_into_several_targets": len(ambiguous_prs)}  # fmt: skip
    suspect = [n for n, lower in stacks.items() if not plausible_stack(pygit, branches[n], branches[lower])]
    summary["stacks"] = {"stacked": len(stacks), "lower_branches": dict(parents), "suspect": suspect}
    print(f"\nassigned targets: {json.dumps(summary['targets'])}")
    print(f"known base (merged PRs): {len(known)} of {len(branches)} {json.dumps(dict(Counter(known.values())))}")
    if ambiguous_prs:
        print(f"  left out: {len(ambiguous_prs)} merged in the first-parent history of several targets")
    print(f"target accuracy: {fraction(len(right), len(known))}")
    for label, values in conf.items():
        if values:
            print(f"  confidence when {label}: min {min(values):.2f}, mean {sum(values) / len(values):.2f}")
    for name in wrong[: args.examples]:
        print(f"  wrong: {name} base {known[name]}, palign {targets[name]} (confidence {planned[name]['confidence']})")
    print(f"stacked on another branch: {len(stacks)} of {len(branches)}, on {len(parents)} lower branches")
    print(f"  suspect (lower tip off the first-parent line, or another author): {len(suspect)} {suspect[:8]}")
    for name, parent in sorted(stacks.items(), key=lambda kv: _natural(kv[0]))[: args.examples]:
        lower = planned.get(parent, {})
        print(f"  {name} on {parent} (lower: {lower.get('category')}, {lower.get('ahead')} ahead"
              f"{', merged as base ' + known[parent] if parent in known else ''})")  # fmt: skip

    # 1 and 4: git loops onto each branch's assigned target, then palign cold and warm.
    failed = False
    for strategy in args.strategy or ["rebase", "merge"]:
        loops: dict[str, GitLoop] = {}
        for target, sha in target_shas.items():
            mine = {n: s for n, s in branches.items() if targets[n] == target}
            if mine:
                where = scratch / f"git-{strategy}-{target.replace('/', '_')}"
                loops[target] = run_git_loop(repo, sha, mine, strategy, where)
        git_seconds = sum(loop.seconds for loop in loops.values())
        git_verdicts = Counter(v for loop in loops.values() for v in loop.verdicts.values())
        env["PALIGN_CACHE_DIR"] = str(scratch / f"cache-{strategy}")
        row: dict[str, object] = {"git_seconds": round(git_seconds, 2), "git_verdicts": dict(git_verdicts)}
        print(f"\n{strategy}: git loop {git_seconds:.2f} s, verdicts {json.dumps(dict(git_verdicts))}")
        for label in ("cold", "warm"):
            report_dir = scratch / f"report-{strategy}-{label}"
            palign_run = run_palign(repo, onto, args.branch, strategy, args.workers, report_dir, env)
            _restore_refs(repo, branches)
            if palign_run.report is None or palign_run.returncode not in (0, 1):
                raise InputError(f"palign run exit {palign_run.returncode}: {palign_run.stderr.strip()[-2000:]}")
            tally = agreement(palign_run, loops, targets, repo)
            ratio = git_seconds / palign_run.seconds if palign_run.seconds else float("nan")
            row[label] = {"seconds": round(palign_run.seconds, 2), "ratio": round(ratio, 2), "agreement": tally,
                          "verdicts": palign_run.verdicts, "mismatches": palign_run.mismatches}  # fmt: skip
            print(f"  palign {label}: {palign_run.seconds:.2f} s, git/palign {ratio:.2f}x, "
                  f"verdicts {json.dumps(palign_run.verdicts)}")  # fmt: skip
            for kind, counts in tally.items():
                if counts:
                    n = counts["branches"]
                    print(f"    {kind}: same verdict {fraction(counts.get('same_verdict', 0), n)}, "
                          f"same verdict and tree {fraction(counts.get('same_tree', 0), n)}")  # fmt: skip
            unstacked = [m for m in palign_run.mismatches if "(stacked)" not in m]
            failed |= bool(unstacked)
            for line in palign_run.mismatches[: args.examples]:
                print(f"    mismatch {line}")
            if len(palign_run.mismatches) > args.examples:
                print(f"    ... {len(palign_run.mismatches) - args.examples} more")
        summary[strategy] = row
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
