"""The gate every aligned result passes before it is published: the operator's checks run
on it, and a failure turns it into `failed_validation` (with the check's details), which
is neither staged nor applied."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from palign.engine.repository import Repository, tree_of
from palign.model import BranchResult, Status
from palign.validation.checks import Check
from palign.validation.runner import CheckCache, Isolation, Validation, validate

Gate = Callable[[BranchResult], BranchResult]


@dataclass(frozen=True)
class Checking:
    """How a run checks its results: which checks, where they run, and whether a failure
    is checked on the branch's original commit too (`--baseline`)."""

    checks: tuple[Check, ...]
    isolation: Isolation
    baseline: bool = False


def gate_for(git_dir: str, repo: Repository, checking: Checking, cache: CheckCache) -> Gate:
    """A gate over the objects of `git_dir` (opened as `repo`). With `baseline`, the
    checks also run on the original commit after a failure, to tell a branch the
    alignment broke from one that was broken already."""

    def run_checks(commit: str) -> Validation:
        return validate(git_dir, commit, tree_of(repo, commit), checking.checks, cache, checking.isolation)

    def gate(result: BranchResult) -> BranchResult:
        assert result.new_sha is not None
        outcome = run_checks(result.new_sha)
        result.validation = outcome.to_json()
        failed = outcome.failed
        if failed is None:
            return result
        if failed.refused is not None:  # the machine cannot run checks safely: not the branch's fault
            result.status = Status.ERROR
            result.errors_detected.append("checks_refused")
            result.error_message = f"check {failed.name!r} did not run: {failed.refused}"
            return result
        result.status = Status.FAILED_VALIDATION
        result.errors_detected.append("failed_validation")
        how = "timed out" if failed.timed_out else f"exited {failed.exit_code}"
        if failed.not_run is not None:
            how = f"could not run ({failed.not_run})"
        result.error_message = f"check {failed.name!r} {how} on the aligned result"
        if checking.baseline:
            before = run_checks(result.old_sha)
            cause = "alignment" if before.passed else "already_broken"
            result.validation = {**result.validation, "baseline": before.to_json(), "cause": cause}
            result.error_message += (
                "; it passes on the original commit: broken by the alignment"
                if before.passed
                else "; it fails on the original commit too: broken before the alignment"
            )
        return result

    return gate
