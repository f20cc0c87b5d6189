"""Fast unit tests of palign's pure pieces: packing work into tasks, parsing options and
locations, redacting URLs, reports, records, git failure classification and settings.

No network, no Redis; the only subprocesses are `git init` for parse_location.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from palign.distributed.producer import branches_per_task, pack_jobs
from palign.errors import (
    ExitCode,
    GitCommandError,
    InfrastructureError,
    InputError,
    MalformedRecord,
    NoBranchMatched,
    RepositoryNotFound,
    RepositoryUnreachable,
    TransportRefused,
)
from palign.git import remote_failure
from palign.model import (
    AlignRequest,
    BranchResult,
    Conflict,
    Identity,
    Sha,
    Status,
    Strategy,
    WorkUnit,
    parse_sha,
)
from palign.prepare import select_branches
from palign.records import CircuitBreaker, Job, PlanInfo, QueuedBranch, RunRecord, RunSpec, RunState
from palign.redact import redact_url
from palign.report import RunReport, from_record, to_json, to_markdown, to_record
from palign.settings import DEFAULT_BROKER_URL, Settings
from palign.transport import RepoLocation, parse_location
from palign.validation.checks import Check

# Hypothesis keeps caches under ./.hypothesis: keep them out of the work tree, as
# test_engine_property does, and write no example database.
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="palign-hypothesis-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME)
atexit.register(shutil.rmtree, _HYPOTHESIS_HOME, True)

QUICK = settings(max_examples=200, deadline=None, database=None, derandomize=True)

SHA_A, SHA_B, SHA_C, SHA_D, SHA_E, SHA_F = (Sha(c * 40) for c in "abcdef")
SHA_256 = Sha("0123456789abcdef" * 4)


def request(name: str, cost: int = 0, **extra: Any) -> AlignRequest:
    return AlignRequest(
        refname=f"refs/heads/{name}",
        old_sha=SHA_A,
        target="refs/heads/main",
        target_sha=SHA_B,
        strategy=Strategy.REBASE,
        cost=cost,
        **extra,
    )


def loose(*requests: AlignRequest) -> list[WorkUnit]:
    return [[[r]] for r in requests]


def stack(*names: str) -> WorkUnit:
    return [[request(name)] for name in names]


def refnames(units: list[WorkUnit]) -> Counter[str]:
    return Counter(r.refname for unit in units for level in unit for r in level)


def task_batches(jobs: list[WorkUnit]) -> list[list[AlignRequest]]:
    """The single-level tasks pack_jobs made of loose branches (each is `[batch]`)."""
    return [job[0] for job in jobs if len(job) == 1]


def unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def git_init(path: Path, *extra: str) -> Path:
    subprocess.run(["git", "init", "-q", *extra, str(path)], check=True, capture_output=True)
    return path


# --- 1. pack_jobs / branches_per_task ---------------------------------------------------


def test_pack_jobs_keeps_stacks_whole_and_first() -> None:
    first, second = stack("s1", "s2"), stack("t1", "t2", "t3")
    units = [*loose(request("a", 5)), first, *loose(request("b", 1)), second, *loose(request("c", 3))]

    jobs = pack_jobs(units, per_task=2)

    assert jobs[0] is first and jobs[1] is second
    assert all(len(job) == 1 for job in jobs[2:])
    assert refnames(jobs) == refnames(units)


def test_pack_jobs_deals_largest_cost_first_snaking() -> None:
    costs = [10, 60, 30, 50, 20, 40]  # shuffled on purpose
    units = loose(*(request(f"b{cost}", cost) for cost in costs))

    batches = task_batches(pack_jobs(units, per_task=2))

    # 3 tasks: 60 50 40 dealt forwards, then 30 20 10 backwards.
    assert [[r.cost for r in batch] for batch in batches] == [[60, 10], [50, 20], [40, 30]]


def test_pack_jobs_breaks_cost_ties_by_refname_whatever_the_input_order() -> None:
    names = ["d", "a", "c", "b", "e"]
    forwards = pack_jobs(loose(*(request(n, 7) for n in names)), per_task=5)
    backwards = pack_jobs(loose(*(request(n, 7) for n in reversed(names))), per_task=5)

    assert [r.branch for r in task_batches(forwards)[0]] == ["a", "b", "c", "d", "e"]
    assert forwards == backwards


@pytest.mark.parametrize(("count", "per_task", "tasks"), [(1, 16, 1), (16, 16, 1), (17, 16, 2), (37, 8, 5), (5, 1, 5)])
def test_pack_jobs_makes_ceil_n_over_per_task_tasks(count: int, per_task: int, tasks: int) -> None:
    jobs = pack_jobs(loose(*(request(f"b{i}", i) for i in range(count))), per_task=per_task)
    assert len(jobs) == tasks


def test_pack_jobs_with_nothing_loose_makes_no_empty_task() -> None:
    only = stack("x", "y")
    assert pack_jobs([only], per_task=4) == [only]
    assert pack_jobs([], per_task=4) == []


def test_pack_jobs_splits_a_single_level_unit_of_several_requests() -> None:
    unit: WorkUnit = [[request("a", 1), request("b", 2), request("c", 3)]]
    jobs = pack_jobs([unit], per_task=1)
    assert sorted(r.branch for batch in task_batches(jobs) for r in batch) == ["a", "b", "c"]
    assert len(jobs) == 3


@QUICK
@given(
    costs=st.lists(st.integers(min_value=0, max_value=1000), max_size=120),
    stacks=st.lists(st.integers(min_value=2, max_value=4), max_size=5),
    per_task=st.integers(min_value=1, max_value=20),
)
def test_pack_jobs_invariants(costs: list[int], stacks: list[int], per_task: int) -> None:
    loose_units = loose(*(request(f"loose/{i}", cost) for i, cost in enumerate(costs)))
    stack_units = [stack(*(f"stack{s}/{level}" for level in range(depth))) for s, depth in enumerate(stacks)]
    units = [*stack_units, *loose_units]

    jobs = pack_jobs(units, per_task=per_task)

    assert refnames(jobs) == refnames(units)  # every request exactly once
    assert max(refnames(jobs).values(), default=1) == 1
    assert jobs[: len(stack_units)] == stack_units
    batches = task_batches(jobs[len(stack_units) :])
    assert len(batches) == -(-len(costs) // per_task)
    sizes = [len(batch) for batch in batches]
    if sizes:
        assert max(sizes) - min(sizes) <= 1
        assert min(sizes) >= 1


@pytest.mark.parametrize(
    ("loose_count", "processes", "expected"),
    [
        (1000, 0, 16),
        (1000, -3, 16),
        (0, 0, 16),
        (10, 4, 4),  # lower bound
        (0, 2, 4),
        (320, 2, 40),  # 320 / (2 processes * 4 tasks each)
        (321, 2, 41),  # rounded up
        (100_000, 2, 64),  # upper bound
    ],
)
def test_branches_per_task_bounds(loose_count: int, processes: int, expected: int) -> None:
    assert branches_per_task(loose_count, processes) == expected


# --- 2. CircuitBreaker.parse -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "failures", "percent"),
    [("5,50%", 5, 50), ("5", 5, 0), ("5, 50", 5, 50), ("5,50", 5, 50), ("1,0%", 1, 0), ("3,100%", 3, 100)],
)
def test_circuit_breaker_parse_accepts(text: str, failures: int, percent: int) -> None:
    assert CircuitBreaker.parse(text) == CircuitBreaker(failures, percent)


@pytest.mark.parametrize("text", ["", "x", "0,10", "3,101", "5,-1", "-2", "5,x", "5,50,3", "2.5", ",50"])
def test_circuit_breaker_parse_refuses_with_one_line(text: str) -> None:
    with pytest.raises(InputError) as caught:
        CircuitBreaker.parse(text)
    message = str(caught.value)
    assert "--circuit-breaker" in message
    assert "\n" not in message
    assert repr(text) in message


# --- 3. redact_url ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p@h/x", "https://u:***@h/x"),
        ("https://user:hunter2@github.com/o/r.git", "https://user:***@github.com/o/r.git"),
        ("https://ghp_token123@github.com/o/r.git", "https://***@github.com/o/r.git"),
        ("http://token@h:8080/r", "http://***@h:8080/r"),
        ("redis://:pw@h:6379/0", "redis://***@h:6379/0"),
        ("https://user:p@ss@host/x.git", "https://user:***@host/x.git"),
        ("https://h/x.git?access_token=abc&ref=1", "https://h/x.git?access_token=***&ref=1"),
        ("https://h?private_token=zz", "https://h?private_token=***"),
        ("redis://default@h:6379/0", "redis://***@h:6379/0"),
        ("rediss://user:pw@h:6380", "rediss://user:***@h:6380"),
        ("ssh://git@host/r.git", "ssh://git@host/r.git"),
        ("SSH://git@host/r.git", "SSH://git@host/r.git"),
        ("ssh://git:pw@host/r.git", "ssh://git:***@host/r.git"),
        ("https://u:p@ss@h/x", "https://u:***@h/x"),  # an unencoded @ in the password
        ("https://u:p@h/path/with@at", "https://u:***@h/path/with@at"),
    ],
)
def test_redact_url_hides_secrets(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/o/r.git",
        "redis://127.0.0.1:6379/0",
        "git@github.com:o/r.git",
        "/srv/git/repo.git",
        "relative/repo",
        "file:///srv/git/r.git",
        "https://h/path@not-credentials",
    ],
)
def test_redact_url_leaves_urls_without_credentials_alone(url: str) -> None:
    assert redact_url(url) == url


# Characters a password may hold in a URL's userinfo (a `/` would end the authority).
_PASSWORD_CHARS = st.characters(
    codec="ascii", categories=("L", "N", "P", "S"), exclude_characters="/"
) | st.sampled_from(list("é€密"))
_USER = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~", max_size=8)
_PATH = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._/@:", max_size=12)


@QUICK
@given(
    scheme=st.sampled_from(["https", "http", "redis", "rediss", "ssh", "git", "git+ssh"]),
    user=_USER,
    password=st.text(alphabet=_PASSWORD_CHARS, min_size=1, max_size=24),
    path=_PATH,
)
def test_redact_url_never_shows_the_password(scheme: str, user: str, password: str, path: str) -> None:
    url = f"{scheme}://{user}:{password}@example.com:99/{path}"
    shown = redact_url(url)
    assert shown == f"{scheme}://{user + ':' if user else ''}***@example.com:99/{path}"


@QUICK
@given(scheme=st.sampled_from(["https", "http", "redis", "rediss", "git"]), token=_USER.filter(bool), path=_PATH)
def test_redact_url_hides_a_lone_user_outside_ssh(scheme: str, token: str, path: str) -> None:
    assert redact_url(f"{scheme}://{token}@h/{path}") == f"{scheme}://***@h/{path}"
    assert redact_url(f"ssh://{token}@h/{path}") == f"ssh://{token}@h/{path}"


# --- 4. report -------------------------------------------------------------------------


def sample_report(**overrides: Any) -> RunReport:
    results = [
        BranchResult(
            branch_name="feature/a",
            refname="refs/heads/feature/a",
            target="refs/heads/main",
            status=Status.ALIGNED,
            old_sha=SHA_A,
            new_sha=SHA_E,
            strategy_used=Strategy.REBASE,
            commits_replayed=3,
            commits_skipped=1,
            integration_time_seconds=0.25,
            replayed_commits=[SHA_A],
        ),
        BranchResult(
            branch_name="feature/b",
            refname="refs/heads/feature/b",
            target="refs/heads/main",
            status=Status.CONFLICT,
            old_sha=SHA_B,
            new_sha=None,
            strategy_used=Strategy.REBASE,
            conflicts=[Conflict("src/app.py", SHA_F), Conflict("docs/a|b.md", SHA_F)],
            errors_detected=["conflict"],
        ),
        BranchResult(
            branch_name="hotfix/x",
            refname="refs/heads/hotfix/x",
            target="refs/heads/release/2.x",
            status=Status.ERROR,
            old_sha=SHA_C,
            new_sha=None,
            errors_detected=["internal"],
            error_message="exit | code 1",
            validation={"checks": [{"name": "t", "ok": False}]},
            change_summary={"summary": "not shown: an error wins"},
        ),
        BranchResult(
            branch_name="docs/y",
            refname="refs/heads/docs/y",
            target="refs/heads/release/2.x",
            status=Status.MERGED,
            old_sha=SHA_D,
            new_sha=SHA_D,
            strategy_used=Strategy.MERGE,
            change_summary={"summary": "already merged into release/2.x"},
        ),
    ]
    fields: dict[str, Any] = {
        "run_id": "run-42",
        "repository": "https://u:***@h/r.git",
        "strategy": "rebase",
        "targets": {"refs/heads/main": SHA_C, "refs/heads/release/2.x": SHA_D},
        "results": results,
        "started_at": datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc),
        "total_time_seconds": 1.23456,
        "planned": {
            "feature/a": PlanInfo("diverged", "cluster-1", None, 0.9),
            "feature/b": PlanInfo("diverged", "cluster-1", "feature/a", 0.5),
        },
    }
    fields.update(overrides)
    return RunReport(**fields)


def sections(markdown: str) -> dict[str, list[str]]:
    """Table rows by `## onto` heading."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in markdown.splitlines():
        if line.startswith("## onto "):
            current = found.setdefault(line, [])
        elif current is not None and line.startswith("| `"):
            current.append(line)
    return found


def test_markdown_has_a_row_per_branch_under_its_target() -> None:
    md = to_markdown(sample_report())
    by_target = sections(md)

    assert list(by_target) == [f"## onto `main` ({'c' * 12})", f"## onto `release/2.x` ({'d' * 12})"]
    main, release = by_target.values()
    assert [row.split("|")[1].strip() for row in main] == ["`feature/a`", "`feature/b`"]
    assert [row.split("|")[1].strip() for row in release] == ["`docs/y`", "`hotfix/x`"]
    assert main[0] == f"| `feature/a` | aligned | rebase | {'a' * 12} | {'e' * 12} | 3 | 1 |  |"
    assert all(unescaped_pipes(row) == 9 for row in main + release)


def test_markdown_shows_conflict_paths_and_escapes_pipes() -> None:
    md = to_markdown(sample_report())
    rows = {row.split("|")[1].strip(): row for rows in sections(md).values() for row in rows}

    assert f"`src/app.py` at {'f' * 12}" in rows["`feature/b`"]
    assert "`docs/a\\|b.md`" in rows["`feature/b`"]
    assert rows["`hotfix/x`"].endswith("| exit \\| code 1 |")
    assert "not shown" not in md
    assert rows["`docs/y`"].endswith("| already merged into release/2.x |")


def test_markdown_summary_lines() -> None:
    md = to_markdown(sample_report())
    assert md.startswith("# palign run run-42\n")
    assert "- repository: `https://u:***@h/r.git`" in md
    assert "- 4 branches: 2 successful, 2 not; 1.235 s" in md
    assert "- aligned: 1, conflict: 1, error: 1, merged: 1" in md


def test_markdown_stop_lines_only_when_set() -> None:
    plain = to_markdown(sample_report())
    assert "cancelled**" not in plain and "circuit breaker" not in plain

    cancelled = to_markdown(sample_report(cancelled=True))
    assert "- **cancelled**: branches not aligned before the cancel are `cancelled`" in cancelled
    assert "circuit breaker" not in cancelled

    tripped = to_markdown(sample_report(circuit_breaker_triggered=True))
    assert "- **circuit breaker triggered**: branches after the stop are `skipped`" in tripped
    assert "cancelled**" not in tripped


def test_markdown_says_whether_the_run_was_applied() -> None:
    staged = to_markdown(sample_report())
    assert "- strategy: rebase; applied: no (staged under refs/palign/staged/run-42/)" in staged

    applied = to_markdown(sample_report(applied=True))
    assert "- strategy: rebase; applied: yes" in applied
    assert "refs/palign/staged" not in applied


@pytest.mark.parametrize("case", ["pipe-in-branch-name", "newline-in-conflict-path"])
def test_markdown_rows_survive_odd_but_valid_git_names(case: str) -> None:
    odd = BranchResult(
        branch_name="feat|ure" if case == "pipe-in-branch-name" else "plain",
        refname="refs/heads/feat|ure" if case == "pipe-in-branch-name" else "refs/heads/plain",
        target="refs/heads/main",
        status=Status.CONFLICT,
        old_sha=SHA_A,
        new_sha=None,
        conflicts=[Conflict("a\nb.txt" if case == "newline-in-conflict-path" else "a.txt", SHA_B)],
    )
    md = to_markdown(sample_report(results=[odd], targets={"refs/heads/main": SHA_C}, planned={}))
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert len(rows) == 1
    assert unescaped_pipes(rows[0]) == 9


def test_report_record_round_trip() -> None:
    report = sample_report(cancelled=True, applied=True, executor="celery")
    record = json.loads(json.dumps(to_record(report)))  # as the run store keeps it

    again = from_record(record)

    assert again == report
    assert to_json(again) == to_json(report)
    branches = to_json(again)["orchestration_results"]["main"]["branches"]
    assert branches[1]["stacked_on"] == "feature/a" and branches[1]["category"] == "diverged"


def _valid_record() -> dict[str, Any]:
    return json.loads(json.dumps(to_record(sample_report())))


def _malformed_records() -> Iterator[Any]:
    yield {}
    yield None
    yield "report"
    for key in ("run_id", "results", "started_at", "targets", "applied"):
        data = _valid_record()
        del data[key]
        yield data
    data = _valid_record()
    data["results"][0]["old_sha"] = "not-a-sha"
    yield data
    data = _valid_record()
    data["results"][0]["status"] = "exploded"
    yield data
    data = _valid_record()
    data["started_at"] = "yesterday"
    yield data
    data = _valid_record()
    data["planned"]["feature/a"] = {"category": "x"}
    yield data


@pytest.mark.parametrize("data", list(_malformed_records()))
def test_from_record_refuses_a_malformed_record(data: Any) -> None:
    with pytest.raises(MalformedRecord):
        from_record(data)


@pytest.mark.parametrize("planned", [None, [], "x"])
def test_from_record_refuses_planned_that_is_not_a_mapping(planned: Any) -> None:
    data = _valid_record()
    data["planned"] = planned
    with pytest.raises(MalformedRecord):
        from_record(data)


# --- 5. parse_location -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ssh://git@host/r.git",
        "https://github.com/o/r.git",
        "http://127.0.0.1:8080/r.git",
        "git://host/r.git",
        "HTTPS://github.com/o/r.git",
        "git@github.com:o/r.git",
        "deploy.user-1@git.example.org:team/r.git",
    ],
)
def test_parse_location_accepts_allowed_urls(url: str) -> None:
    assert parse_location(url) == RepoLocation(url=url, local_path=None)


@pytest.mark.parametrize(
    "url", ["ext::sh -c touch% /tmp/pwned", "ext::/bin/sh", "fd::3", "EXT::x", "ftp://h/r.git", "rsync://h/r"]
)
def test_parse_location_refuses_other_transports(url: str) -> None:
    with pytest.raises(TransportRefused) as caught:
        parse_location(url)
    assert "allowed: file, ssh, https, http, git" in str(caught.value)
    assert caught.value.exit_code is ExitCode.BAD_INPUT


@pytest.mark.parametrize("value", ["", "repo\0x", "repo\nx", "https://h/r\n.git"])
def test_parse_location_refuses_empty_or_control_characters(value: str) -> None:
    with pytest.raises(RepositoryNotFound):
        parse_location(value)


def test_parse_location_refuses_missing_paths_and_plain_folders(tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFound, match="repository not found"):
        parse_location(str(tmp_path / "nowhere"))
    with pytest.raises(RepositoryNotFound, match="not a git repository"):
        parse_location(str(tmp_path))
    with pytest.raises(RepositoryNotFound):
        parse_location(f"file://{tmp_path / 'nowhere'}")
    half = tmp_path / "half"
    (half / "objects").mkdir(parents=True)  # objects but no HEAD
    with pytest.raises(RepositoryNotFound, match="not a git repository"):
        parse_location(str(half))
    # `::` after a slash is part of a path, not a transport helper
    with pytest.raises(RepositoryNotFound):
        parse_location(str(tmp_path / "with::colons"))


def test_parse_location_finds_real_repositories(tmp_path: Path) -> None:
    work = git_init(tmp_path / "work")
    bare = git_init(tmp_path / "bare.git", "--bare")

    assert parse_location(str(work)) == RepoLocation(url=str(work.resolve()), local_path=work.resolve())
    assert parse_location(str(bare)).local_path == bare.resolve()
    via_url = parse_location(f"file://{work}")
    assert via_url.local_path == work.resolve() and via_url.url == f"file://{work}"
    assert parse_location(str(work)).display == str(work.resolve())


@pytest.mark.parametrize(
    ("url", "plain", "login"),
    [
        ("https://u:hunter2@h/r.git", "https://h/r.git", ("u", "hunter2")),
        ("https://ghp_secret@github.com/o/r.git", "https://github.com/o/r.git", ("ghp_secret", "")),
        ("http://u%40corp:p%40ss%3Aword@127.0.0.1:8080/r.git", "http://127.0.0.1:8080/r.git", ("u@corp", "p@ss:word")),
        ("ssh://git@host/r.git", "ssh://git@host/r.git", None),
        ("git@github.com:o/r.git", "git@github.com:o/r.git", None),
    ],
)
def test_a_login_is_taken_out_of_the_repository_url(url: str, plain: str, login: tuple[str, str] | None) -> None:
    """What palign keeps, shows and sends never holds the login; git gets it apart."""
    location = parse_location(url)
    assert location.url == plain and location.display == plain
    assert (location.login.username, location.login.password) == login if login else location.login is None
    assert "hunter2" not in repr(location) and "ghp_secret" not in repr(location)


def test_a_login_with_a_line_break_is_refused() -> None:
    with pytest.raises(InputError, match="line break"):
        parse_location("https://u:a%0Ab@h/r.git")


@pytest.mark.parametrize(
    ("patterns", "url", "allowed"),
    [
        (["https://github.com/org/*"], "https://github.com/org/repo.git", True),
        (["https://github.com/org/*"], "https://github.com/other/repo.git", False),
        (["https://github.com/org/*"], "https://x:secret@github.com/org/repo.git", True),  # the login is not matched
        ([], "https://github.com/org/repo.git", False),  # nothing allowed unless said
    ],
)
def test_a_worker_serves_only_allowed_urls(patterns: list[str], url: str, allowed: bool) -> None:
    assert parse_location(url).allowed_by(patterns) is allowed


def test_only_a_path_pattern_admits_a_local_repository(tmp_path: Path) -> None:
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    local = parse_location(str(work))
    assert not local.allowed_by(["*"])  # a URL glob never admits the worker's own disk
    assert local.allowed_by([f"{tmp_path.resolve()}/*"])
    assert parse_location(f"file://{work}").allowed_by([f"{tmp_path.resolve()}/*"])


# --- 6. select_branches ----------------------------------------------------------------

REFS = {
    "refs/heads/zeta": SHA_A,
    "refs/heads/main": SHA_A,
    "refs/heads/feature/b": SHA_A,
    "refs/heads/feature/a": SHA_A,
    "refs/heads/fix/c": SHA_A,
    "refs/tags/v1": SHA_A,
    "refs/pull/2/head": SHA_A,
    "refs/pull/1/head": SHA_A,
    "refs/pull/1/merge": SHA_A,
    "refs/remotes/origin/feature/a": SHA_A,
    "refs/palign/staged/run-1/feature/a": SHA_A,
    "refs/palign/backup/run-1/feature/a": SHA_A,
}
MAIN = {"refs/heads/main"}


def test_select_branches_takes_every_branch_but_the_targets_sorted() -> None:
    assert select_branches(REFS, (), MAIN) == [
        "refs/heads/feature/a",
        "refs/heads/feature/b",
        "refs/heads/fix/c",
        "refs/heads/zeta",
    ]


@pytest.mark.parametrize(
    ("globs", "expected"),
    [
        (["feature/*"], ["refs/heads/feature/a", "refs/heads/feature/b"]),
        (["fix/c", "zeta"], ["refs/heads/fix/c", "refs/heads/zeta"]),
        (["*"], ["refs/heads/feature/a", "refs/heads/feature/b", "refs/heads/fix/c", "refs/heads/zeta"]),
        (["refs/pull/*/head"], ["refs/pull/1/head", "refs/pull/2/head"]),
        (["refs/heads/feature/*", "refs/pull/1/*"], [
            "refs/heads/feature/a", "refs/heads/feature/b", "refs/pull/1/head", "refs/pull/1/merge",
        ]),
    ],
)  # fmt: skip
def test_select_branches_matches_globs(globs: list[str], expected: list[str]) -> None:
    assert select_branches(REFS, globs, MAIN) == expected


def test_select_branches_never_selects_palign_refs_or_targets() -> None:
    everything = select_branches(REFS, ["refs/*"], MAIN)
    assert not any(ref.startswith("refs/palign/") for ref in everything)
    assert "refs/heads/main" not in everything
    assert "refs/pull/1/head" in everything  # refs/ globs are full ref names
    with pytest.raises(NoBranchMatched):
        select_branches(REFS, ["refs/palign/*"], MAIN)
    with pytest.raises(NoBranchMatched):
        select_branches(REFS, ["main"], MAIN)


def test_select_branches_short_globs_only_match_branches_case_sensitively() -> None:
    with pytest.raises(NoBranchMatched):
        select_branches(REFS, ["pull/*", "v1", "origin/*"], MAIN)
    with pytest.raises(NoBranchMatched):
        select_branches(REFS, ["Feature/*"], MAIN)


def test_select_branches_names_the_globs_that_matched_nothing() -> None:
    with pytest.raises(NoBranchMatched) as caught:
        select_branches(REFS, ["nope/*", "gone"], MAIN)
    assert "'nope/*'" in str(caught.value) and "'gone'" in str(caught.value)


def test_select_branches_refuses_a_repository_with_only_the_target() -> None:
    only_main = {"refs/heads/main": SHA_A, "refs/tags/v1": SHA_A, "refs/palign/staged/r/x": SHA_A}
    with pytest.raises(NoBranchMatched, match="no branches besides the target"):
        select_branches(only_main, (), MAIN)


# --- 7. records and model ----------------------------------------------------------------


def sample_spec(repo: str = "https://h/r.git") -> RunSpec:
    return RunSpec(
        run_id="run-7",
        repo=repo,
        identity=Identity("Bot", "bot@example.com", 1_700_000_000),
        git_config={"user.name": "Bot", "merge.renames": "true"},
        checks=(Check("tests", "pytest -x -q", 30.0, 2).ref(), Check("lint", "ruff check .").ref()),
        baseline=True,
    )


def sample_job() -> Job:
    lower = request("stack/lower", 4)
    upper = request(
        "stack/upper", 2, ahead=3, behind=5, parent=lower.refname, parent_old=SHA_C, onto=SHA_256, forecast=True
    )
    merge = replace(request("feature/m", 9), strategy=Strategy.MERGE)
    return Job(sample_spec(), unit=12, level=1, requests=(lower, upper, merge))


def test_job_json_round_trip() -> None:
    job = sample_job()
    again = Job.from_json(json.loads(json.dumps(job.to_json())))
    assert again == job
    assert again.spec.checks[0] == Check("tests", "pytest -x -q", 30.0, 2).ref()
    assert "pytest" not in json.dumps(job.to_json())  # a message names its checks, never carries them
    assert again.refnames == ["refs/heads/stack/lower", "refs/heads/stack/upper", "refs/heads/feature/m"]


def _valid_job() -> dict[str, Any]:
    return json.loads(json.dumps(sample_job().to_json()))


def _malformed_jobs() -> Iterator[Any]:
    yield from (None, [], "job", 12)
    for key in ("run_id", "repo", "identity", "git_config", "unit", "level", "requests"):
        data = _valid_job()
        del data[key]
        yield pytest.param(data, id=f"missing-{key}")
    for key in ("refname", "old_sha", "target", "target_sha", "strategy"):
        data = _valid_job()
        del data["requests"][0][key]
        yield pytest.param(data, id=f"request-missing-{key}")
    for field in ("old_sha", "target_sha", "parent_old", "onto"):
        for bad in ("a" * 39, "a" * 41, "a" * 63, "g" * 40, " " + "a" * 40, 12):
            data = _valid_job()
            data["requests"][1][field] = bad
            yield pytest.param(data, id=f"{field}-{bad!r}")
    data = _valid_job()
    data["requests"] = "refs/heads/x"
    yield pytest.param(data, id="requests-not-a-list")
    data = _valid_job()
    data["requests"] = [["refs/heads/x"]]
    yield pytest.param(data, id="request-not-a-dict")
    data = _valid_job()
    data["checks"] = [{"name": "t", "run": "touch /tmp/owned"}]
    yield pytest.param(data, id="check-as-a-command")
    data = _valid_job()
    data["checks"] = [["tests", "not-a-digest"]]
    yield pytest.param(data, id="check-with-a-bad-digest")
    data = _valid_job()
    data["git_config"] = {"protocol.ext.allow": "always"}
    yield pytest.param(data, id="git-config-allowing-ext")
    data = _valid_job()
    data["git_config"] = {"url.ext::sh -c touch% /tmp/owned.insteadOf": "https://h/r.git"}
    yield pytest.param(data, id="git-config-rewriting-the-url")
    data = _valid_job()
    data["git_config"] = {"user.name": "Bot\n[core]\n\tsshCommand = touch /tmp/owned"}
    yield pytest.param(data, id="git-config-value-with-a-line-break")
    data = _valid_job()
    data["repo"] = "https://bot:hunter2@h/r.git"
    yield pytest.param(data, id="repo-with-a-login")
    data = _valid_job()
    data["identity"] = ["Bot"]
    yield pytest.param(data, id="bad-identity")
    data = _valid_job()
    data["git_config"] = {"user.name": 3}
    yield pytest.param(data, id="bad-git-config")
    data = _valid_job()
    data["unit"] = "first"
    yield pytest.param(data, id="unit-not-a-number")


@pytest.mark.parametrize("data", list(_malformed_jobs()))
def test_job_from_json_refuses_malformed_messages(data: Any) -> None:
    with pytest.raises(MalformedRecord):
        Job.from_json(data)


def sample_record(repo: str = "https://h/r.git") -> RunRecord:
    return RunRecord(
        run_id="run-7",
        repo=repo,
        repository=redact_url(repo),
        strategy=Strategy.AUTO,
        targets={"refs/heads/main": SHA_C, "refs/heads/release/2.x": SHA_256},
        apply=True,
        priority=2,
        created_at=1_700_000_000.5,
        spec=sample_spec("https://h/r.git"),
        breaker=CircuitBreaker(5, 50),
        total=40,
        tasks=6,
        chunks=1,
    )


def _as_stored(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Each field through JSON, as the Redis hash keeps them."""
    return {key: json.loads(json.dumps(value)) for key, value in fields.items()}


def test_run_record_fields_round_trip_with_progress() -> None:
    record = sample_record()
    progress = {
        "state": "running",
        "done": 3,
        "failures": 1,
        "started_at": 1_700_000_001.25,
        "cancel_requested": True,
        "circuit_breaker_triggered": True,
        "apply_error": "lease failed",
    }

    again = RunRecord.from_fields(record.run_id, {**_as_stored(record.to_fields()), **progress})

    assert again == replace(
        record,
        state=RunState.RUNNING,
        done=3,
        failures=1,
        started_at=1_700_000_001.25,
        cancel_requested=True,
        circuit_breaker_triggered=True,
        apply_error="lease failed",
    )
    assert again.shown_state == "running (cancelling)"


def test_run_record_fields_round_trip_without_breaker() -> None:
    record = replace(sample_record(), breaker=None)
    assert RunRecord.from_fields(record.run_id, _as_stored(record.to_fields())) == record


def test_status_json_never_shows_the_repo_url_or_task_settings() -> None:
    record = replace(sample_record("https://bot:hunter2@h/r.git"), apply_error="boom", cancel_requested=True)
    status = record.status_json()
    text = json.dumps(status)

    assert "repo" not in status and "job_base" not in status
    assert "hunter2" not in text
    assert status["repository"] == "https://bot:***@h/r.git"
    assert status["run_id"] == "run-7" and status["breaker_percent"] == 50 and status["apply_error"] == "boom"
    assert "finished_at" not in status  # optional fields only when set


def test_status_json_omits_unset_flags() -> None:
    status = sample_record().status_json()
    assert "cancel_requested" not in status and "circuit_breaker_triggered" not in status
    assert "started_at" not in status and "apply_error" not in status


def _malformed_fields() -> Iterator[Any]:
    base = _as_stored(sample_record().to_fields())
    for key in ("repo", "repository", "strategy", "targets", "created_at", "job_base"):
        yield pytest.param({k: v for k, v in base.items() if k != key}, id=f"missing-{key}")
    yield pytest.param({**base, "targets": {"refs/heads/main": "c" * 39}}, id="short-target-sha")
    yield pytest.param({**base, "targets": ["refs/heads/main"]}, id="targets-not-a-dict")
    yield pytest.param({**base, "state": "exploded"}, id="unknown-state")
    yield pytest.param({**base, "done": "three"}, id="done-not-a-number")
    yield pytest.param({**base, "repo": 12}, id="repo-not-text")
    yield pytest.param(None, id="none")


@pytest.mark.parametrize("fields", list(_malformed_fields()))
def test_run_record_from_fields_refuses_malformed_fields(fields: Any) -> None:
    with pytest.raises(MalformedRecord):
        RunRecord.from_fields("run-7", fields)


def test_queued_branch_round_trip_and_refusals() -> None:
    queued = QueuedBranch("refs/heads/a", "a", "refs/heads/main", SHA_A, 3, PlanInfo("behind", "k", None, 1.0))
    assert QueuedBranch.from_json("refs/heads/a", json.loads(json.dumps(queued.to_json()))) == queued
    with pytest.raises(MalformedRecord):
        QueuedBranch.from_json("refs/heads/a", {**queued.to_json(), "old_sha": "nope"})


def test_plan_info_carries_staleness_and_reads_an_older_palign_s_stale_category() -> None:
    info = PlanInfo("behind", "k", None, 1.0, stale=True)
    assert PlanInfo.from_json(json.loads(json.dumps(info.to_json()))) == info
    older = {"category": "stale", "cluster_id": "k", "stacked_on": None, "target_confidence": 1.0}
    assert PlanInfo.from_json(older) == PlanInfo("diverged", "k", None, 1.0, stale=True)
    with pytest.raises(MalformedRecord):
        PlanInfo.from_json({**info.to_json(), "stale": "yes"})


@pytest.mark.parametrize("data", [None, [], "x"])
def test_queued_branch_from_json_refuses_a_non_dict(data: Any) -> None:
    with pytest.raises(MalformedRecord):
        QueuedBranch.from_json("refs/heads/a", data)


@pytest.mark.parametrize("value", ["a" * 40, "0123456789abcdef" * 4, "f" * 64])
def test_parse_sha_accepts_full_ids(value: str) -> None:
    assert parse_sha(value) == value


@pytest.mark.parametrize(
    "value",
    ["", "a" * 39, "a" * 41, "a" * 63, "a" * 65, "g" * 40, " " + "a" * 40, "a" * 20 + "-" * 20, None, 40, ["a"]],
)
def test_parse_sha_refuses_anything_else(value: object) -> None:
    with pytest.raises(MalformedRecord, match="old_sha"):
        parse_sha(value, "old_sha")


@pytest.mark.parametrize("value", ["a" * 40 + "\n", "b" * 64 + "\n"])
def test_parse_sha_refuses_a_trailing_newline(value: str) -> None:
    with pytest.raises(MalformedRecord):
        parse_sha(value)


def test_align_request_json_round_trip_and_bad_shas() -> None:
    original = request("x", 3, parent="refs/heads/p", parent_old=SHA_C, onto=SHA_256)
    data = json.loads(json.dumps(original.to_json()))
    assert set(data) == {f.name for f in dataclasses.fields(AlignRequest)}  # no field left off the wire
    assert AlignRequest.from_json(data) == original
    assert AlignRequest.from_json(json.loads(json.dumps(replace(original, forecast=True).to_json()))).forecast
    for field in ("old_sha", "target_sha", "parent_old", "onto"):
        with pytest.raises(MalformedRecord):
            AlignRequest.from_json({**data, field: "z" * 40})
    with pytest.raises(MalformedRecord):
        AlignRequest.from_json({**data, "strategy": "squash"})


def test_branch_result_json_round_trip_and_bad_shas() -> None:
    original = sample_report().results[1]
    data = json.loads(json.dumps(original.to_json()))
    assert BranchResult.from_json(data) == original
    assert BranchResult.from_json({**data, "new_sha": ""}).new_sha is None
    bad = [
        {**data, "old_sha": "a" * 39},
        {**data, "new_sha": "xyz"},
        {**data, "conflicts": [{"path": "p", "commit": "a" * 41}]},
        {**data, "status": "exploded"},
        {**data, "unexpected": 1},
        {k: v for k, v in data.items() if k != "old_sha"},
    ]
    for case in bad:
        with pytest.raises(MalformedRecord):
            BranchResult.from_json(case)


# --- 8. remote_failure -------------------------------------------------------------------

_DOES_NOT_APPEAR = """fatal: '/srv/nope.git' does not appear to be a git repository
fatal: Could not read from remote repository.

Please make sure you have the correct access rights
and the repository exists.
"""
_SSH_REFUSED = """ssh: connect to host 127.0.0.1 port 9: Connection refused
fatal: Could not read from remote repository.

Please make sure you have the correct access rights
and the repository exists.
"""


@pytest.mark.parametrize(
    ("stderr", "kind", "quoted"),
    [
        (
            "fatal: unable to access 'https://nowhere.invalid/x/': Could not resolve host: nowhere.invalid\n",
            "down",
            "fatal: unable to access 'https://nowhere.invalid/x/': Could not resolve host: nowhere.invalid",
        ),
        (
            "fatal: unable to connect to 127.0.0.1:\n127.0.0.1[0: 127.0.0.1]: errno=Connection refused\n\n",
            "down",
            "fatal: unable to connect to 127.0.0.1:",
        ),
        (_SSH_REFUSED, "down", "ssh: connect to host 127.0.0.1 port 9: Connection refused"),
        (
            "fatal: unable to access 'http://127.0.0.1:9/x/': Failed to connect to 127.0.0.1 port 9 after 0 ms: "
            "Couldn't connect to server\n",
            "down",
            "fatal: unable to access 'http://127.0.0.1:9/x/': Failed to connect to 127.0.0.1 port 9 after 0 ms: "
            "Couldn't connect to server",
        ),
        (
            "fatal: unable to access 'https://h/x/': The requested URL returned error: 503\n",
            "down",
            "fatal: unable to access 'https://h/x/': The requested URL returned error: 503",
        ),
        (
            "remote: Repository not found.\nfatal: the remote end hung up unexpectedly\n",  # older git, GitHub
            "missing",
            "remote: Repository not found.",
        ),
        (_DOES_NOT_APPEAR, "missing", "fatal: '/srv/nope.git' does not appear to be a git repository"),
        (
            "remote: Repository not found.\nfatal: repository 'https://x/' not found\n",
            "missing",
            "remote: Repository not found.",
        ),
        (
            "fatal: remote error: access denied or repository not exported: /x.git\n",
            "missing",
            "fatal: remote error: access denied or repository not exported: /x.git",
        ),
        (
            "remote: Invalid username or password.\nfatal: Authentication failed for 'https://github.com/o/r.git/'\n",
            "missing",
            "fatal: Authentication failed for 'https://github.com/o/r.git/'",
        ),
        (
            "fatal: could not read Username for 'https://github.com': terminal prompts disabled\n",
            "missing",
            "fatal: could not read Username for 'https://github.com': terminal prompts disabled",
        ),
        (
            "fatal: unable to access 'https://h/x/': The requested URL returned error: 404\n",
            "missing",
            "fatal: unable to access 'https://h/x/': The requested URL returned error: 404",
        ),
        (
            "fatal: unable to access 'https://h/x/': The requested URL returned error: 403\n",
            "missing",
            "fatal: unable to access 'https://h/x/': The requested URL returned error: 403",
        ),
        ("error: did not send all necessary objects\n", "other", "error: did not send all necessary objects"),
        (
            "fatal: unable to access 'https://h/x/': SSL certificate problem: certificate has expired\n",
            "other",
            "fatal: unable to access 'https://h/x/': SSL certificate problem: certificate has expired",
        ),
    ],
)
def test_remote_failure_tells_unreachable_from_missing(stderr: str, kind: str, quoted: str) -> None:
    error = GitCommandError("fetch", 128, stderr)
    failure = remote_failure(error, "https://u:***@h/x")

    if kind == "down":
        assert type(failure) is RepositoryUnreachable and failure.exit_code == 3
    elif kind == "missing":
        assert type(failure) is RepositoryNotFound and failure.exit_code == 2
    else:
        assert type(failure) is InfrastructureError and failure.exit_code == 3
    # git's line that tells what happened, not its closing advice
    assert str(failure) == f"cannot read repository https://u:***@h/x: {quoted}"


def test_remote_failure_of_silent_git_names_the_exit_status() -> None:
    failure = remote_failure(GitCommandError("ls-remote", 128, ""), "/srv/r.git")
    assert type(failure) is InfrastructureError
    assert str(failure) == "cannot read repository /srv/r.git: exit 128"


# --- 9. Settings.load ------------------------------------------------------------------


class RecordingEnviron(Mapping[str, str]):
    """An environment that notes every variable asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return self.values.get(key, default)

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the environment is read by name, never listed")

    def __len__(self) -> int:
        return len(self.values)


def test_broker_flag_wins_over_the_environment() -> None:
    env = {"PALIGN_BROKER_URL": "redis://env-host:6379/1"}
    flagged = Settings.load(environ=env, broker_url="redis://flag-host:6379/2", distributed=True)
    assert flagged.broker.broker_url == "redis://flag-host:6379/2"
    assert Settings.load(environ=env, distributed=True).broker.broker_url == "redis://env-host:6379/1"
    assert Settings.load(environ={}, distributed=True).broker.broker_url == DEFAULT_BROKER_URL


def test_an_invalid_broker_in_the_environment_does_not_matter_with_a_valid_flag() -> None:
    env = {"PALIGN_BROKER_URL": "amqp://guest:guest@h//"}
    settings_ = Settings.load(environ=env, broker_url="rediss://h:6380/0")
    assert settings_.broker.broker_url == "rediss://h:6380/0"


def test_local_commands_never_read_the_broker_settings() -> None:
    env = RecordingEnviron(
        {
            "PALIGN_BROKER_URL": "amqp://nope",
            "PALIGN_TASK_TIME_LIMIT": "x",
            "PALIGN_VISIBILITY_TIMEOUT": "0",
            "PALIGN_CACHE_DIR": "/tmp/palign-cache-for-test",
        }
    )
    settings_ = Settings.load(environ=env, distributed=False)

    assert settings_.distributed is None
    assert settings_.cache_dir == Path("/tmp/palign-cache-for-test")
    assert not {"PALIGN_BROKER_URL", "PALIGN_TASK_TIME_LIMIT", "PALIGN_VISIBILITY_TIMEOUT"} & env.asked
    with pytest.raises(InputError, match="--broker"):
        _ = settings_.broker


@pytest.mark.parametrize("limit", ["x", "0", "-5", "1.5"])
def test_an_invalid_task_time_limit_is_refused_when_distributed(limit: str) -> None:
    with pytest.raises(InputError, match="PALIGN_TASK_TIME_LIMIT"):
        Settings.load(environ={"PALIGN_TASK_TIME_LIMIT": limit}, distributed=True)


def test_a_dead_workers_tasks_come_back_in_seconds_whatever_the_task_limit() -> None:
    default = Settings.load(environ={}, distributed=True).broker
    assert (default.visibility_timeout, default.restore_interval, default.stall_timeout) == (30, 5, 60)
    assert default.heartbeat_interval == 5  # six renewals per visibility timeout

    long_tasks = Settings.load(environ={"PALIGN_TASK_TIME_LIMIT": "7200"}, distributed=True).broker
    assert (long_tasks.task_time_limit, long_tasks.visibility_timeout) == (7200, 30)

    explicit = Settings.load(environ={"PALIGN_VISIBILITY_TIMEOUT": "120"}, distributed=True).broker
    assert (explicit.visibility_timeout, explicit.heartbeat_interval) == (120, 20)


def test_a_visibility_timeout_too_short_to_renew_is_refused() -> None:
    with pytest.raises(InputError, match="PALIGN_VISIBILITY_TIMEOUT must be at least 6"):
        Settings.load(environ={"PALIGN_VISIBILITY_TIMEOUT": "3"}, distributed=True)


@pytest.mark.parametrize(
    ("flag", "env"),
    [
        ("amqp://guest:hunter2@h:5672//", {}),
        (None, {"PALIGN_BROKER_URL": "http://admin:hunter2@h/"}),
        ("sqs://hunter2@h", {}),
    ],
)
def test_a_non_redis_broker_is_refused_without_showing_its_password(flag: str | None, env: dict[str, str]) -> None:
    with pytest.raises(InputError) as caught:
        Settings.load(environ=env, broker_url=flag, distributed=True)
    message = str(caught.value)
    assert "redis://" in message and "***" in message
    assert "hunter2" not in message


def test_uppercase_redis_scheme_is_accepted() -> None:
    assert Settings.load(environ={}, broker_url="REDIS://h:6379/0").broker.broker_url == "REDIS://h:6379/0"


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("redis://:hunter2@127.0.0.1:abc/0", "port that is not a number"),
        ("redis://:hunter2@127.0.0.1:99999/0", "port that is not a number"),
        ("redis://:hunter2@127.0.0.1:6379/zero", "numeric database"),
        ("redis://:hunter2@/0", "needs a host"),
    ],
)
def test_a_malformed_redis_url_is_one_line_of_bad_input(url: str, complaint: str) -> None:
    """Not an internal error from deep inside the Redis client later on."""
    with pytest.raises(InputError, match=complaint) as caught:
        Settings.load(environ={}, broker_url=url, distributed=True)
    assert "hunter2" not in str(caught.value) and "\n" not in str(caught.value)


# --- folders -------------------------------------------------------------------------------


def test_a_private_folder_someone_else_owns_is_refused(tmp_path: Path) -> None:
    """/dev/shm/palign-UID made first by another user must not receive palign's objects."""
    from palign.errors import InfrastructureError
    from palign.folders import private_folder

    mine = private_folder(tmp_path / "mine")
    assert mine.is_dir() and (mine.stat().st_mode & 0o777) == 0o700
    assert private_folder(mine) == mine  # again: fine
    open_to_all = tmp_path / "open"
    open_to_all.mkdir(mode=0o777)
    open_to_all.chmod(0o777)
    with pytest.raises(InfrastructureError, match="not a private folder"):
        private_folder(open_to_all)
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        with pytest.raises(InfrastructureError, match="owner 65534"):
            private_folder(theirs)


def test_folders_of_other_hosts_are_never_judged_by_their_pid() -> None:
    """A cache shared by machines or containers: a pid means nothing on another host."""
    from palign.folders import owned_name, owner_alive

    mine = owned_name("check")
    assert owner_alive(mine)  # this process
    dead = mine.rsplit("~", 1)[0] + "~999999999"
    assert not owner_alive(dead)
    assert owner_alive("check~another-host~999999999")  # not ours to judge
    assert owner_alive("run-2026-abc~another-host~1.git")
