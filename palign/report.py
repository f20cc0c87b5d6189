"""report.json (the orchestration_results / overall_summary layout) and report.md."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from palign.errors import InputError, MalformedRecord
from palign.model import ApplyOutcome, BranchResult, Status
from palign.records import PlanInfo

SCHEMA_PATH = Path(__file__).parent / "schemas" / "report.schema.json"
SCHEMA_VERSION = 1


@dataclass
class RunReport:
    run_id: str
    repository: str
    strategy: str
    targets: dict[str, str]  # target ref -> sha it was aligned onto
    results: list[BranchResult]
    started_at: datetime
    total_time_seconds: float
    applied: bool = False
    circuit_breaker_triggered: bool = False
    cancelled: bool = False
    executor: str = "local"
    # From the plan, by branch name: category, cluster_id, stacked_on, confidence.
    planned: dict[str, PlanInfo] = field(default_factory=dict)

    @property
    def successful(self) -> list[BranchResult]:
        return [r for r in self.results if r.status.successful]

    @property
    def failed(self) -> list[BranchResult]:
        return [r for r in self.results if not r.status.successful]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for result in self.results:
            counts[result.status.value] = counts.get(result.status.value, 0) + 1
        return counts

    def note_applied(self, outcome: ApplyOutcome) -> None:
        """What an apply did, in the run's report."""
        by_name = {r.branch_name: r for r in self.results}
        for name in outcome.applied + outcome.already:
            by_name[name].applied = True
        for name in outcome.stale:
            by_name[name].status = Status.STALE
            by_name[name].error_message = "the branch moved after it was planned; left alone"
            by_name[name].errors_detected.append("stale_branch")
        for name, reason in outcome.refused.items():
            by_name[name].status = Status.ERROR
            by_name[name].error_message = reason
            by_name[name].errors_detected.append("apply_refused")
        self.applied = True


def _branch_json(result: BranchResult) -> dict[str, Any]:
    return {
        "branch_name": result.branch_name,
        "status": result.status.value,
        "strategy": result.strategy_used.value if result.strategy_used else None,
        "old_sha": result.old_sha,
        "new_sha": result.new_sha,
        "applied": result.applied,
        "commits_replayed": result.commits_replayed,
        "commits_skipped": result.commits_skipped,
        "conflicts": [{"path": c.path, "commit": c.commit} for c in result.conflicts],
        "errors_detected": list(result.errors_detected),
        "error_message": result.error_message,
        "integration_time_seconds": result.integration_time_seconds,
        "validation": result.validation,
        "change_summary": result.change_summary,
    }


def _plan_json(info: PlanInfo | None) -> dict[str, Any]:
    return info.to_json() if info is not None else {}


def to_json(report: RunReport) -> dict[str, Any]:
    by_target: dict[str, dict[str, Any]] = {}
    for target, target_sha in report.targets.items():
        name = target.removeprefix("refs/heads/")
        mine = [r for r in report.results if r.target == target]
        by_target[name] = {
            "target_branch": name,
            "target_sha": target_sha,
            "processed_branches": len(mine),
            "successful": sum(r.status.successful for r in mine),
            "failed": sum(not r.status.successful for r in mine),
            "branches": [
                {**_branch_json(r), **_plan_json(report.planned.get(r.branch_name))}
                for r in sorted(mine, key=lambda r: r.branch_name)
            ],
        }
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": report.run_id,
        "repository": report.repository,
        "strategy": report.strategy,
        "applied": report.applied,
        "orchestration_results": by_target,
        "overall_summary": {
            "total_branches_processed": len(report.results),
            "total_successful": len(report.successful),
            "total_failed": len(report.failed),
            "total_time_seconds": round(report.total_time_seconds, 3),
            "circuit_breaker_triggered": report.circuit_breaker_triggered,
            "cancelled": report.cancelled,
            "executor": report.executor,
            "execution_timestamp": report.started_at.astimezone(timezone.utc).isoformat(),
            "status_counts": report.counts(),
        },
    }


def to_record(report: RunReport) -> dict[str, Any]:
    """Everything a report is made of, as JSON: the run store keeps this, and `palign
    report RUN_ID` rebuilds the report from it."""
    return {
        "run_id": report.run_id,
        "repository": report.repository,
        "strategy": report.strategy,
        "targets": report.targets,
        "results": [r.to_json() for r in report.results],
        "started_at": report.started_at.isoformat(),
        "total_time_seconds": report.total_time_seconds,
        "applied": report.applied,
        "circuit_breaker_triggered": report.circuit_breaker_triggered,
        "cancelled": report.cancelled,
        "executor": report.executor,
        "planned": {name: info.to_json() for name, info in report.planned.items()},
    }


def from_record(data: dict[str, Any]) -> RunReport:
    """The report `to_record` wrote (read back from the broker)."""
    try:
        return _from_record(data)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise MalformedRecord(f"not a run report: {error}") from None


def _from_record(data: dict[str, Any]) -> RunReport:
    return RunReport(
        run_id=data["run_id"],
        repository=data["repository"],
        strategy=data["strategy"],
        targets=dict(data["targets"]),
        results=[BranchResult.from_json(r) for r in data["results"]],
        started_at=datetime.fromisoformat(data["started_at"]),
        total_time_seconds=float(data["total_time_seconds"]),
        applied=bool(data["applied"]),
        circuit_breaker_triggered=bool(data["circuit_breaker_triggered"]),
        cancelled=bool(data.get("cancelled", False)),
        executor=str(data.get("executor", "local")),
        planned={name: PlanInfo.from_json(info) for name, info in data.get("planned", {}).items()},
    )


def to_markdown(report: RunReport) -> str:
    data = to_json(report)
    summary = data["overall_summary"]
    total = summary["total_branches_processed"]
    applied = "yes" if report.applied else f"no (staged under refs/palign/staged/{report.run_id}/)"
    stops = [
        *(["**cancelled**: branches not aligned before the cancel are `cancelled`"] if report.cancelled else []),
        *(
            ["**circuit breaker triggered**: branches after the stop are `skipped`"]
            if report.circuit_breaker_triggered
            else []
        ),
    ]
    lines = [
        f"# palign run {report.run_id}",
        "",
        *(f"- {stop}" for stop in stops),
        f"- repository: `{report.repository}`",
        f"- strategy: {report.strategy}; applied: {applied}",
        f"- {total} {'branch' if total == 1 else 'branches'}: {summary['total_successful']} successful, "
        f"{summary['total_failed']} not; {summary['total_time_seconds']} s",
        "- " + ", ".join(f"{status}: {count}" for status, count in sorted(summary["status_counts"].items())),
        "",
    ]
    for name, target in data["orchestration_results"].items():
        lines += [
            f"## onto `{name}` ({target['target_sha'][:12]})",
            "",
            "| branch | status | strategy | old | new | replayed | skipped | detail |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for branch in target["branches"]:
            detail = branch["error_message"] or ", ".join(
                f"`{c['path']}` at {c['commit'][:12]}" for c in branch["conflicts"]
            )
            if branch["change_summary"] and not branch["error_message"]:
                detail = branch["change_summary"]["summary"] + (f"; {detail}" if detail else "")
            cells = [
                f"`{branch['branch_name']}`",
                branch["status"],
                branch["strategy"] or "",
                branch["old_sha"][:12],
                (branch["new_sha"] or "")[:12],
                str(branch["commits_replayed"]),
                str(branch["commits_skipped"]),
                detail,
            ]
            lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
        lines.append("")
    return "\n".join(lines)


REPORT_FILES = ("report.json", "report.md")


def check_writable(directory: Path) -> None:
    """Refuse a report folder that cannot be created or written, before the run writes
    anything to REPO. It is tried for real (a file or folder made and removed at once):
    os.access says yes to root even where nothing can be made (/proc, read-only mounts)."""
    existing = directory
    while not existing.exists():  # the nearest existing folder: `write` creates the rest in it
        existing = existing.parent
    verb = "is not writable" if existing == directory else "cannot be created"
    if not existing.is_dir():
        raise InputError(f"report folder {verb}: {directory} ({existing} is not a folder)")
    try:
        if existing == directory:
            with tempfile.TemporaryFile(dir=directory):
                pass
            for name in REPORT_FILES:
                if (directory / name).exists():
                    with (directory / name).open("ab"):  # opened, not changed
                        pass
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".palign-probe-", dir=existing))
    except OSError as error:
        raise InputError(f"report folder {verb}: {directory} ({error.strerror or error})") from None


def _cell(text: str) -> str:
    """A table cell: branch names and paths may hold `|` or line breaks (git allows both)."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def write(report: RunReport, directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "report.json"
    md_path = directory / "report.md"
    json_path.write_text(json.dumps(to_json(report), indent=2) + "\n", encoding="utf-8")
    md_path.write_text(to_markdown(report), encoding="utf-8")
    return json_path, md_path


def now() -> datetime:
    return datetime.now(timezone.utc)
