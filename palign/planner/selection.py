"""Which branches a run takes when none are named: every branch but the targets, the
long-lived ones (`[plan] long_lived` globs) and the bases other branches fork from.

Pure: names and facts in, names out, with the reason each branch was left out.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from palign.model import BRANCH_PREFIX, short_name
from palign.planner.model import BranchFacts, LeftOut

__all__ = ["matching_glob", "shared_bases"]


def matching_glob(ref: str, globs: Iterable[str]) -> str | None:
    """The first glob naming `ref`: on its full name for globs starting with refs/, else on
    a branch's short name (`*` crosses `/`, as in --branch)."""
    for glob in globs:
        if glob.startswith("refs/"):
            if fnmatch.fnmatchcase(ref, glob):
                return glob
        elif ref.startswith(BRANCH_PREFIX) and fnmatch.fnmatchcase(short_name(ref), glob):
            return glob
    return None


def shared_bases(facts: Sequence[BranchFacts], targets: Sequence[str]) -> list[LeftOut]:
    """The branches others are built on that have nothing of their own to align: the tip is
    already in a target (no commits of its own against it) and another selected branch,
    with commits of its own, forks from that target exactly at this tip. A `production`
    or `develop` that trails main with pull requests cut from it, say: aligning it would
    only fast-forward a shared base, which is not a run's business unless asked
    (--branch). Judged against the targets in --onto order; the first one that makes a
    branch a base is named."""
    forks = {
        (target, seen.merge_base)
        for branch in facts
        for target in targets
        if (seen := branch.on(target)).ahead > 0 and seen.merge_base is not None
    }
    left_out = []
    for branch in facts:
        for target in targets:
            seen = branch.on(target)
            if seen.has_common_history and seen.ahead == 0 and (target, branch.sha) in forks:
                left_out.append(LeftOut(branch.name, "base", target))
                break
    return left_out
