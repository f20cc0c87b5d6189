"""`palign prune`: old runs' refs leave REPO (an applied run keeps what a rollback needs,
unless asked), the newest runs stay, names palign did not make are left alone, a dry
run removes nothing; the cache loses mirrors, scratch folders and check results long
unused, never the mirror in use."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from palign.demo import build_demo_repository
from tests.conftest import git_out, read_report, run_palign


def palign_refs(repo: Path) -> dict[str, str]:
    listing = git_out(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/palign/")
    return dict(line.split(" ", 1) for line in listing.splitlines())


def runs_in(repo: Path) -> set[str]:
    return {ref.split("/")[3] for ref in palign_refs(repo)}


def run(repo: Path, out: Path, *extra: str) -> str:
    result = run_palign("run", str(repo), "--onto", "main", "--report-dir", str(out), *extra)
    assert result.code == 1, result.stderr  # the demo has conflicting branches
    return str(read_report(out)["run_id"])


def test_prune_keeps_the_newest_runs_and_what_an_applied_run_needs_to_roll_back(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    build_demo_repository(repo)
    applied = run(repo, tmp_path / "applied", "--apply")
    staged = run(repo, tmp_path / "staged")
    newest = run(repo, tmp_path / "newest")
    # A folder palign did not make: not a run id, never touched.
    git_out(repo, "update-ref", "refs/palign/backup/hand-made/x", "main")
    before = palign_refs(repo)

    dry = run_palign("prune", str(repo), "--older-than", "0", "--keep", "1", "--dry-run")
    assert dry.code == 0, dry.stderr
    assert f"would remove run {staged}" in dry.stdout
    assert palign_refs(repo) == before

    pruned = run_palign("prune", str(repo), "--older-than", "0", "--keep", "1")
    assert pruned.code == 0, pruned.stderr
    assert f"removed run {staged}" in pruned.stdout and "(not a palign run id)" in pruned.stdout
    left = palign_refs(repo)
    assert {ref for ref in left if f"/{staged}/" in ref} == set()
    assert {ref: sha for ref, sha in left.items() if f"/{newest}/" in ref} == {
        ref: sha for ref, sha in before.items() if f"/{newest}/" in ref
    }
    assert left["refs/palign/backup/hand-made/x"] == before["refs/palign/backup/hand-made/x"]
    # The applied run keeps its backups and applied markers, only those: it still rolls back.
    kept = {ref.split("/")[2] for ref in left if f"/{applied}/" in ref}
    assert kept == {"backup", "applied"}
    rolled = run_palign("rollback", str(repo), applied)
    assert rolled.code == 0, rolled.stderr
    backups = {ref.rsplit(f"/{applied}/", 1)[1]: sha for ref, sha in before.items() if f"backup/{applied}/" in ref}
    for branch, sha in backups.items():
        assert git_out(repo, "rev-parse", f"refs/heads/{branch}").strip() == sha, branch

    # Asked to, it removes the applied run's backups too.
    everything = run_palign("prune", str(repo), "--older-than", "0", "--keep", "1", "--include-applied")
    assert everything.code == 0, everything.stderr
    assert runs_in(repo) == {newest, "hand-made"}


def test_prune_removes_what_the_cache_has_not_used_but_the_mirror_in_use(tmp_path: Path) -> None:
    cache = Path(os.environ["PALIGN_CACHE_DIR"])
    first, second = tmp_path / "first", tmp_path / "second"
    build_demo_repository(first)
    build_demo_repository(second)
    run(first, tmp_path / "one")
    run(second, tmp_path / "two")
    mirrors = sorted((cache / "mirrors").glob("*.git"))
    assert len(mirrors) == 2
    checks = cache / "checks" / "ab"
    checks.mkdir(parents=True)
    (checks / ("ab" * 32 + ".json")).write_text("{}")
    scratch = Path(os.environ.get("PALIGN_SCRATCH_DIR", f"/dev/shm/palign-{os.getuid()}"))
    orphan = scratch / f"run-x~{socket.gethostname()}~999999999"
    orphan.mkdir(parents=True)

    pruned = run_palign("prune", str(second), "--older-than", "0")
    assert pruned.code == 0, pruned.stderr
    assert "1 mirror," in pruned.stdout and "1 check result\n" in pruned.stdout
    remaining = sorted((cache / "mirrors").glob("*.git"))
    assert len(remaining) == 1 and "second" in remaining[0].name  # the one REPO's run uses
    assert not orphan.exists()
    assert not list((cache / "checks").glob("*/*.json"))
    # The next run on the first repository builds its mirror again.
    run(first, tmp_path / "three")


def test_prune_refuses_a_malformed_age_and_writes_nothing(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    build_demo_repository(repo)
    run(repo, tmp_path / "out")
    before = palign_refs(repo)
    refused = run_palign("prune", str(repo), "--older-than", "soon")
    assert refused.code == 2
    assert refused.stderr.strip().count("\n") == 0 and "not an age" in refused.stderr
    assert palign_refs(repo) == before
