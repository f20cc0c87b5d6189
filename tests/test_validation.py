"""Validation gates: the operator's checks run on every aligned result, in a throw-away
checkout with a clean environment and a process group of its own; only branches that
pass are staged and applied."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import branches_of, git_out, read_report, run_palign
from tests.gitrepo import GitRepo
from tests.repos import IMPORT_USE, renaming_repo


def report_of(directory: Path) -> dict[str, dict[str, Any]]:
    return branches_of(read_report(directory))


def test_a_branch_the_alignment_breaks_is_not_published(tmp_path: Path) -> None:
    repo = renaming_repo(tmp_path / "repo")
    before = {name: repo.rev(name) for name in ("feature", "docs")}
    out = tmp_path / "out"
    result = run_palign(
        "run", str(repo.path), "--onto", "main", "--validate", IMPORT_USE, "--apply", "--report-dir", str(out)
    )
    assert result.code == 1, result.stderr
    branches = report_of(out)
    feature, docs = branches["feature"], branches["docs"]
    assert feature["status"] == "failed_validation"
    check = feature["validation"]["checks"][0]
    assert check["exit_code"] == 1 and "AttributeError" in check["output_tail"] and not check["timed_out"]
    assert docs["status"] == "aligned" and docs["validation"]["passed"] is True and docs["applied"] is True
    # Only the passing branch moved; the failing one is neither staged nor applied.
    assert repo.rev("feature") == before["feature"]
    assert repo.rev("docs") == docs["new_sha"] != before["docs"]
    staged = git_out(repo.path, "for-each-ref", "--format=%(refname:lstrip=4)", "refs/palign/staged/")
    assert staged.split() == ["docs"]
    assert "failed_validation" in result.stdout and "'validate-1' exited 1" in result.stdout


def test_a_hanging_check_is_killed_with_its_whole_process_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "scratch"  # where check folders live: this test's own
    monkeypatch.setenv("PALIGN_SCRATCH_DIR", str(scratch))
    repo = renaming_repo(tmp_path / "repo")
    marker = f"{os.getpid() % 1000 + 300}.25"  # an unusual sleep length names the check's processes
    (tmp_path / "palign.toml").write_text(
        f"[validate]\nhang = {{ run = \"sleep {marker} & sh -c 'sleep {marker}' & wait\", timeout = 2 }}\n"
    )
    out = tmp_path / "out"
    result = run_palign(
        "run",
        str(repo.path),
        "--onto",
        "main",
        "--branch",
        "docs",
        "--config",
        str(tmp_path / "palign.toml"),
        "--report-dir",
        str(out),
    )
    assert result.code == 1, result.stderr
    check = report_of(out)["docs"]["validation"]["checks"][0]
    assert check["timed_out"] is True and check["exit_code"] is None and "killed after 2 s" in check["output_tail"]
    assert not _processes_running(f"sleep {marker}"), "a process of the check survived its timeout"
    assert not list((scratch / "checks").iterdir())  # no tree outlives its check


def _processes_running(command: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().replace(b"\0", b" ").strip() == command.encode():
                if "zombie" not in (proc / "status").read_text():
                    found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_an_unchanged_tree_is_not_checked_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PALIGN_NO_SANDBOX", "1")  # the check counts its runs in a file outside its tree
    repo = renaming_repo(tmp_path / "repo")
    runs = tmp_path / "runs.log"
    check = f"echo ran >> {runs}"
    first = run_palign(
        "run",
        str(repo.path),
        "--onto",
        "main",
        "--branch",
        "docs",
        "--validate",
        check,
        "--report-dir",
        str(tmp_path / "one"),
    )
    second = run_palign(
        "run",
        str(repo.path),
        "--onto",
        "main",
        "--branch",
        "docs",
        "--validate",
        check,
        "--report-dir",
        str(tmp_path / "two"),
    )
    assert first.code == second.code == 0, first.stderr + second.stderr
    assert runs.read_text().count("ran") == 1
    assert report_of(tmp_path / "one")["docs"]["validation"]["checks"][0]["cached"] is False
    assert report_of(tmp_path / "two")["docs"]["validation"]["checks"][0]["cached"] is True


def test_a_flaky_check_passes_on_retry_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PALIGN_NO_SANDBOX", "1")  # its first attempt leaves a mark outside its tree
    repo = renaming_repo(tmp_path / "repo")
    marker = tmp_path / "tried"
    (tmp_path / "palign.toml").write_text(
        f'[validate]\nflaky = {{ run = "test -e {marker} || {{ touch {marker}; exit 3; }}", retries = 1 }}\n'
    )
    out = tmp_path / "out"
    result = run_palign(
        "run",
        str(repo.path),
        "--onto",
        "main",
        "--branch",
        "docs",
        "--config",
        str(tmp_path / "palign.toml"),
        "--report-dir",
        str(out),
    )
    assert result.code == 0, result.stderr
    check = report_of(out)["docs"]["validation"]["checks"][0]
    assert check["passed"] and check["attempts"] == 2 and check["passed_on_retry"] is True


def test_branch_content_never_reaches_the_shell_and_checks_get_a_clean_environment(tmp_path: Path) -> None:
    repo = GitRepo.init(tmp_path / "repo")
    repo.write("base", "x\n")
    repo.commit("base")
    trap = tmp_path / "pwned"
    name = "inject$(touch${IFS}" + str(trap) + ")"
    repo.new_branch(name, "main")
    repo.write(f"$(touch {trap}2)", "`touch " + str(trap) + "3`\n")
    repo.commit("hostile content")
    repo.checkout("main")
    repo.write("other", "y\n")
    repo.commit("main moves")
    out = tmp_path / "out"
    os.environ["PALIGN_SECRET_FOR_TEST"] = "leak"
    try:
        result = run_palign(
            "run",
            str(repo.path),
            "--onto",
            "main",
            "--validate",
            "ls; cat ./* ; echo ENVIRONMENT; env",
            "--report-dir",
            str(out),
        )
    finally:
        del os.environ["PALIGN_SECRET_FOR_TEST"]
    assert result.code == 0, result.stderr
    assert not list(tmp_path.glob("pwned*"))
    check = report_of(out)[name]["validation"]["checks"][0]
    environment = check["output_tail"].split("ENVIRONMENT", 1)[1]
    assert "PALIGN_SECRET_FOR_TEST" not in environment and "PALIGN_CACHE_DIR" not in environment
    assert "GIT_" not in environment


def test_a_malformed_validate_table_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    repo = renaming_repo(tmp_path / "repo")
    config = tmp_path / "palign.toml"
    config.write_text('[validate]\ntests = { run = "true", timeout = -1 }\n')
    result = run_palign("run", str(repo.path), "--onto", "main", "--config", str(config))
    assert result.code == 2 and "timeout must be a positive number" in result.stderr
    assert "refs/palign/" not in git_out(repo.path, "for-each-ref")


def test_a_check_cannot_write_outside_its_tree_nor_read_the_mirrors(tmp_path: Path) -> None:
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (scripts/test installs it)")
    repo = renaming_repo(tmp_path / "repo")
    escaped = tmp_path / "escaped"
    mirrors = Path(os.environ["PALIGN_CACHE_DIR"]) / "mirrors"
    out = tmp_path / "out"
    result = run_palign(
        "run",
        str(repo.path),
        "--onto",
        "main",
        "--branch",
        "docs",
        "--validate",
        f"if ls -A {mirrors} 2>/dev/null | grep -q .; then exit 7; fi",
        "--validate",
        f"echo out > {escaped}",
        "--report-dir",
        str(out),
    )
    checks = report_of(out)["docs"]["validation"]["checks"]
    assert mirrors.is_dir() and any(mirrors.iterdir())  # the mirror exists, the check saw none of it
    assert checks[0]["passed"] is True and checks[0]["sandbox"] is True
    # The test's folders are not even visible in the sandbox (or, where they are, read-only).
    tail = checks[1]["output_tail"]
    assert checks[1]["passed"] is False and ("Directory nonexistent" in tail or "Read-only file system" in tail)
    assert not escaped.exists()
    assert result.code == 1


def test_baseline_tells_broken_by_the_alignment_from_already_broken(tmp_path: Path) -> None:
    repo = renaming_repo(tmp_path / "repo")
    repo.new_branch("broken", "main~1")
    repo.write("use.py", "import lib\n\nVALUE = lib.missing()\n")  # fails before any alignment
    repo.commit("call something that never existed")
    repo.checkout("main")
    out = tmp_path / "out"
    result = run_palign(
        "run", str(repo.path), "--onto", "main", "--validate", IMPORT_USE, "--baseline", "--report-dir", str(out)
    )
    assert result.code == 1, result.stderr
    branches = report_of(out)
    assert branches["feature"]["validation"]["cause"] == "alignment"
    assert branches["feature"]["validation"]["baseline"]["passed"] is True
    assert "broken by the alignment" in branches["feature"]["error_message"]
    assert branches["broken"]["validation"]["cause"] == "already_broken"
    assert "broken before the alignment" in branches["broken"]["error_message"]
    assert "cause" not in branches["docs"]["validation"]  # it passed: no baseline needed


def test_the_change_summary_names_commits_and_files_both_sides_changed(tmp_path: Path) -> None:
    repo = GitRepo.init(tmp_path / "repo")
    repo.write("a.txt", "".join(f"{n}\n" for n in range(30)))
    repo.commit("base")
    repo.new_branch("topic", "main")
    repo.write("a.txt", "".join(f"{n}\n" for n in range(29)) + "topic\n")
    repo.commit("topic edits the end")
    repo.write("b.txt", "b\n")
    repo.commit("topic adds b")
    repo.checkout("main")
    repo.write("a.txt", "main\n" + "".join(f"{n}\n" for n in range(1, 30)))
    repo.commit("main edits the start")
    out = tmp_path / "out"
    assert run_palign("run", str(repo.path), "--onto", "main", "--report-dir", str(out)).code == 0
    summary = report_of(out)["topic"]["change_summary"]
    assert [(c["subject"], c["outcome"]) for c in summary["commits"]] == [
        ("topic edits the end", "replayed"),
        ("topic adds b", "replayed"),
    ]
    assert summary["files_both_changed"] == ["a.txt"]
    assert summary["summary"] == "2 commits replayed onto main; 1 file changed on both sides"
    assert "2 commits replayed onto main" in (out / "report.md").read_text()


def test_the_change_summary_names_the_commits_skipped_as_already_upstream(tmp_path: Path) -> None:
    repo = GitRepo.init(tmp_path / "repo")
    repo.write("a.txt", "a\n")
    repo.commit("base")
    repo.new_branch("topic", "main")
    repo.write("fix.txt", "the fix\n")
    repo.commit("the fix")
    repo.write("more.txt", "more\n")
    repo.commit("more work")
    repo.checkout("main")
    repo.write("fix.txt", "the fix\n")  # the same patch, applied upstream
    repo.commit("the fix, upstream")
    out = tmp_path / "out"
    assert run_palign("run", str(repo.path), "--onto", "main", "--report-dir", str(out)).code == 0
    topic = report_of(out)["topic"]
    assert [(c["subject"], c["outcome"]) for c in topic["change_summary"]["commits"]] == [
        ("the fix", "skipped"),
        ("more work", "replayed"),
    ]
    assert topic["change_summary"]["summary"] == (
        "1 commit replayed onto main, 1 already in main skipped; 1 file changed on both sides"
    )
