"""What the commands print: progress on a terminal, a run's summary, the plan table, the
conflict map, an apply's or a rollback's outcome, a distributed run's status."""

from __future__ import annotations

import json
import re
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from palign.conflicts import ConflictMap
from palign.model import ApplyOutcome, PruneOutcome, RollbackOutcome, Status
from palign.planner.model import LeftOut, Plan
from palign.records import RunRecord
from palign.report import RunReport
from palign.transport import has_login


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 branch`, `2 branches`: a count with its noun agreeing."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {many or (noun + 'es' if noun.endswith(('s', 'sh', 'ch', 'x')) else noun + 's')}"


def cluster_order(cluster_id: str) -> tuple[str | int, ...]:
    """Sort key of a cluster id: its numbers as numbers (c2 before c10), the rest as text."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", cluster_id))


def warn_about_login(repo: str) -> None:
    """A login typed in REPO's URL is in this process's command line, which every local
    user can read: palign never shows or sends it, but cannot take it back from there."""
    if has_login(repo):
        click.echo(
            "palign: warning: the login in the repository URL is visible to every user of this machine in process "
            "listings; put it in PALIGN_GIT_CREDENTIALS_FILE instead",
            err=True,
        )


class Progress:
    """Progress on stderr when it is a terminal, silent otherwise; never on stdout, which
    may carry JSON. One bar, for one step at a time: syncing the mirror, gathering facts,
    forecasting or aligning."""

    _EVERY = 0.1  # seconds between two redraws (counting thousands of branches costs little)

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None
        self._step: str | None = None
        self._done = self._total = 0
        self._drawn = 0.0

    def step(self, step: str, done: int, total: int) -> None:
        """`step` is `done` of `total` branches along (a total of 0: not counted)."""
        if self._bar is None and not self._start():
            return
        self._done, self._total = done, total
        count = f"{done}/{total} branches" if total else ""
        if step != self._step:  # a new step: its own bar and clock (adding it draws it)
            if self._task is not None:
                self._bar.remove_task(self._task)
            self._step = step
            self._task = self._bar.add_task(step, total=total or None, completed=done, count=count)
            return
        self._bar.update(self._task, completed=done, count=count)
        self._draw(force=done == total)

    def planned(self, total: int) -> None:
        self.step("aligning", 0, total)

    def advance(self, _branch: str, _status: Status) -> None:
        if self._step is not None:
            self.step(self._step, self._done + 1, self._total)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = self._task = self._step = None

    def _start(self) -> bool:
        if not sys.stderr.isatty():
            return False
        from rich.console import Console
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        # No refresh thread: the worker pool forks, which is only safe with a single thread.
        # stdout is left alone: `palign plan --json` prints the plan there.
        self._bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(),
            transient=True,
            auto_refresh=False,
            redirect_stdout=False,
            console=Console(stderr=True),
        )
        self._bar.start()
        return True

    def _draw(self, *, force: bool) -> None:
        now = time.monotonic()
        if force or now - self._drawn >= self._EVERY:
            self._bar.refresh()
            self._drawn = now


def run_summary(report: RunReport, json_path: Path | None) -> None:
    counts = report.counts()
    parts = [f"{counts[s.value]} {s.value}" for s in Status if counts.get(s.value)]
    click.echo(
        f"run {report.run_id}: {plural(len(report.results), 'branch')} in {report.total_time_seconds:.2f} s: "
        + ", ".join(parts)
    )
    for result in report.failed:
        detail = result.error_message or ", ".join(sorted({c.path for c in result.conflicts}))
        click.echo(f"  {result.status.value:10} {result.branch_name}: {detail}")
    if report.cancelled:
        click.echo("cancelled: branches not aligned before the cancel were left alone")
    if report.circuit_breaker_triggered:
        click.echo("circuit breaker triggered: the remaining branches were skipped")
    if report.applied:
        click.echo(f"applied; undo with: palign rollback {report.repository} {report.run_id}")
    elif report.successful:
        click.echo(
            f"staged under refs/palign/staged/{report.run_id}/; publish with: "
            f"palign apply {report.repository} {report.run_id}"
        )
    if json_path is not None:
        click.echo(f"report: {json_path}")


def demo_next_steps(repository: Path, run_id: str) -> None:
    """What a first-time user can try next on the demo's repository (each command works as shown)."""
    repo = shlex.quote(str(repository))
    steps = [
        (f"palign plan {repo} --onto main", "each branch's target, category and forecast; writes nothing"),
        (f"palign apply {repo} {run_id}", "move the branches this run aligned"),
        (f"palign rollback {repo} {run_id}", "and put them back"),
    ]
    width = max(len(command) for command, _ in steps)
    click.echo("try next:")
    for command, why in steps:
        click.echo(f"  {command.ljust(width)}  # {why}")


def plan_table(plan: Plan) -> None:
    header = ("branch", "target", "conf", "from", "category", "stale", "ahead", "behind", "stacked on", "cluster")
    rows = [(*header, "forecast")]
    for b in sorted(plan.branches, key=lambda b: (b.assigned_target, cluster_order(b.cluster_id), b.branch_name)):
        rows.append(
            (
                b.branch_name,
                b.assigned_target,
                f"{b.confidence:.2f}",
                b.target_source,
                b.category.value,
                "yes" if b.stale else "-",
                str(b.ahead),
                str(b.behind),
                b.parent or "-",
                b.cluster_id,
                b.forecast or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    stacks = sum(1 for unit in plan.units if len(unit.levels) > 1)
    click.echo(
        f"{plural(len(plan.branches), 'branch')} in {plural(len(plan.units), 'unit')} of work "
        f"({plural(stacks, 'stack')})"
    )
    for line in left_out_lines(plan.left_out):
        click.echo(line)


def left_out_lines(left_out: Sequence[LeftOut], shown: int = 6) -> list[str]:
    """What the default selection left out, a line per reason: `left out: 9.0.x, 9.1.x
    (long-lived: matches '[0-9]*.x')`, at most `shown` names each (--json lists them all),
    and how to take them anyway."""
    if not left_out:
        return []
    groups: dict[tuple[str, str], list[str]] = {}
    for item in left_out:
        groups.setdefault((item.reason, item.detail), []).append(item.branch_name)
    why = {"long_lived": "long-lived: matches {!r}", "base": "others fork at its tip, nothing of its own against {}"}
    lines = []
    for (reason, detail), names in groups.items():
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        lines.append(f"{', '.join(names[:shown])}{more} ({why[reason].format(detail)})")
    lines.append("(take them with --branch GLOB; [plan] long_lived in palign.toml names the long-lived branches)")
    indent = "left out: "
    return [indent + lines[0], *(" " * len(indent) + line for line in lines[1:])]


def conflict_map(found: ConflictMap) -> None:
    click.echo(
        f"{plural(len(found.branches), 'branch')} onto {found.target}: "
        f"{plural(found.checked, 'pair')} {'shares' if found.checked == 1 else 'share'} files, "
        f"{len(found.pairs)} {'conflicts' if len(found.pairs) == 1 else 'conflict'} together"
    )
    if found.unrelated_branches:
        one = len(found.unrelated_branches) == 1
        click.echo(
            f"{plural(len(found.unrelated_branches), 'branch')} {'has' if one else 'have'} no history in common "
            f"with {found.target}, git does not merge {'it' if one else 'them'}: {', '.join(found.unrelated_branches)}"
        )
    if found.unrelated:
        click.echo(
            f"{plural(found.unrelated, 'pair')} {'has' if found.unrelated == 1 else 'have'} no history in common "
            f"with {found.target} on one side: not merged"
        )
    if found.with_target:
        many = len(found.with_target) != 1
        click.echo(
            f"{plural(len(found.with_target), 'branch')} {'conflict' if many else 'conflicts'} with {found.target} "
            f"by {'themselves' if many else 'itself'} (not blamed on pairs):"
        )
        for branch in found.with_target:
            click.echo(f"  {branch['branch']}: {', '.join(branch['paths'])}")
    for number, group in enumerate(found.groups, 1):
        click.echo(f"group {number}: {', '.join(group)}")
    for pair in found.pairs:
        click.echo(f"  {pair['left']} x {pair['right']}: {', '.join(pair['paths'])}")


def apply_outcome(outcome: ApplyOutcome) -> None:
    for name in outcome.applied:
        click.echo(f"applied   {name}")
    for name in outcome.already:
        click.echo(f"unchanged {name} (already applied)")
    for name in outcome.stale:
        click.echo(f"stale     {name} (moved since the run; left alone)")
    for name, reason in outcome.refused.items():
        click.echo(f"refused   {name} ({reason})")
    click.echo(f"{len(outcome.applied)} applied, {len(outcome.stale)} stale, {len(outcome.refused)} refused")


def rollback_outcome(outcome: RollbackOutcome) -> None:
    for name in outcome.restored:
        click.echo(f"restored {name}")
    for name in outcome.stale:
        click.echo(f"stale    {name} (moved since the apply; left alone)")
    click.echo(f"{len(outcome.restored)} restored, {len(outcome.stale)} left alone")


def prune_outcome(outcome: PruneOutcome, *, dry_run: bool) -> None:
    verb = "would remove" if dry_run else "removed"
    for run in outcome.removed:
        click.echo(f"{verb} run {run}")
    for run in outcome.trimmed:
        click.echo(f"{verb} run {run}'s staged results; kept its backups (it was applied: palign rollback)")
    for name in outcome.foreign:
        click.echo(f"left alone refs/palign/*/{name}/ (not a palign run id)")
    click.echo(
        f"{verb} {plural(len(outcome.removed) + len(outcome.trimmed), 'run')} "
        f"({plural(outcome.refs_deleted, 'ref')}), kept {plural(len(outcome.kept), 'recent run')}; "
        f"cache: {verb} {plural(outcome.mirrors_removed, 'mirror')}, "
        f"{plural(outcome.scratch_removed, 'scratch folder')}, {plural(outcome.checks_removed, 'check result')}"
    )


def run_status(record: RunRecord, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(record.status_json(), indent=2, sort_keys=True))
        return
    noun = "branch" if record.total == 1 else "branches"
    click.echo(f"run {record.run_id}: {record.shown_state}; {record.done}/{record.total} {noun} done")
    click.echo(f"  repository: {record.repository}; strategy: {record.strategy.value}")
    if record.failures:
        click.echo(f"  failures: {record.failures}")
    if record.circuit_breaker_triggered:
        click.echo("  circuit breaker triggered")
    if record.apply_error:
        click.echo(f"  apply failed: {record.apply_error}")
