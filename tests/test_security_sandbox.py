"""A branch's content runs as the operator's check: it tries what an attacker would from
inside the sandbox (remount the system writable, read the host's secrets and palign's
environment, reach Redis or any other port, leave a process behind). None of it works;
and where no sandbox can start, checks do not run unless the operator says so."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SIGNING_KEY, branches_of, read_report, run_palign
from tests.gitrepo import GitRepo

ESCAPE = """
echo "uid=$(id -u) caps=$(grep CapEff /proc/self/status | tr -d '\\t')"
mount -o remount,bind,rw / / 2>/dev/null && echo REMOUNTED || echo remount-refused
touch /usr/owned 2>/dev/null && echo WROTE-USR || echo usr-read-only
cat {secret} 2>/dev/null && echo READ-SECRET || echo secret-unreadable
cat /etc/shadow 2>/dev/null | head -c 1 | grep -q . && echo READ-SHADOW || echo shadow-unreadable
cat /proc/1/environ /proc/$PPID/environ 2>/dev/null | tr '\\0' '\\n' | grep -q PALIGN_SIGNING_KEY \\
  && echo SAW-KEY || echo key-unseen
echo "processes=$(ls /proc | grep -c '^[0-9]')"
{python} -c "import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3)" 2>/dev/null \\
  && echo CONNECTED || echo no-network
(setsid sleep {sleep} > /dev/null 2>&1 &)
exit 0
"""


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A port on loopback that accepts connections (as Redis would)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield sock
    finally:
        sock.close()


def hostile_repo(path: Path, script: str) -> GitRepo:
    repo = GitRepo.init(path)
    repo.write("README", "readme\n")
    repo.commit("base")
    repo.new_branch("feature", "main")
    repo.write("escape.sh", script)
    repo.commit("tests, says the branch")
    repo.checkout("main")
    repo.write("main.txt", "moves\n")
    repo.commit("main moves")
    return repo


def _sleepers(marker: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "cmdline").read_bytes():
                found.append(proc.name)
        except OSError:
            continue
    return found


@pytest.mark.parametrize("network", [False, True])
def test_branch_content_cannot_escape_the_sandbox(tmp_path: Path, listener: socket.socket, network: bool) -> None:
    secret = Path(os.environ["HOME"]) / ".ssh" / "id_ed25519"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("PRIVATE KEY of the worker's host\n")
    (Path(os.environ["HOME"]) / ".git-credentials").write_text("https://bot:token@example.com\n")
    sleep = f"{os.getpid() % 1000 + 400}.75"
    script = ESCAPE.format(secret=secret, python=sys.executable, port=listener.getsockname()[1], sleep=sleep)
    repo = hostile_repo(tmp_path / "repo", script)
    config = tmp_path / "palign.toml"
    config.write_text(f'[validate]\nescape = {{ run = "sh escape.sh", network = {str(network).lower()} }}\n')
    result = run_palign(
        "run", str(repo.path), "--onto", "main", "--config", str(config), "--report-dir", str(tmp_path / "out")
    )
    assert result.code == 0, result.stdout + result.stderr
    check = branches_of(read_report(tmp_path / "out"))["feature"]["validation"]["checks"][0]
    said = check["output_tail"]
    assert check["sandbox"] is True, said
    assert "caps=CapEff:0000000000000000" in said  # no capability at all
    for attempt in ("remount-refused", "usr-read-only", "secret-unreadable", "shadow-unreadable", "key-unseen"):
        assert attempt in said, said
    assert int(said.split("processes=")[1].split()[0]) < 10  # its own few processes, none of the host's
    assert ("CONNECTED" in said) is network  # the network only for a check that asks for it
    assert not Path("/usr/owned").exists()
    assert not _sleepers(f"sleep {sleep}"), "a process of the check outlived it"
    assert SIGNING_KEY not in said


def test_checks_do_not_run_without_a_sandbox_unless_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No bubblewrap on this machine (a PATH without it): checks are refused, the branch
    is an error, nothing is staged; with PALIGN_ALLOW_UNSANDBOXED=1 they run and the
    report says they ran unsandboxed."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("git", "sh", "true", "ls"):
        found = shutil.which(tool)
        assert found
        (tools / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(tools))
    repo = hostile_repo(tmp_path / "repo", "exit 0\n")
    config = tmp_path / "palign.toml"
    config.write_text('[validate]\nplain = "true"\n')
    refused = run_palign(
        "run", str(repo.path), "--onto", "main", "--config", str(config), "--report-dir", str(tmp_path / "no")
    )
    assert refused.code == 1, refused.stdout + refused.stderr
    report = read_report(tmp_path / "no")
    feature = branches_of(report)["feature"]
    assert feature["status"] == "error" and feature["errors_detected"] == ["checks_refused"]
    assert "PALIGN_ALLOW_UNSANDBOXED" in feature["error_message"]
    staged = repo.out("for-each-ref", "--format=%(refname)", f"refs/palign/staged/{report['run_id']}/")
    assert not staged

    monkeypatch.setenv("PALIGN_ALLOW_UNSANDBOXED", "1")
    allowed = run_palign(
        "run", str(repo.path), "--onto", "main", "--config", str(config), "--report-dir", str(tmp_path / "yes")
    )
    assert allowed.code == 0, allowed.stdout + allowed.stderr
    check = branches_of(read_report(tmp_path / "yes"))["feature"]["validation"]["checks"][0]
    assert check["passed"] is True and check["sandbox"] is False
    assert "bubblewrap (bwrap) is not installed" in check["unsandboxed_because"]


def test_the_sandbox_works_for_an_unprivileged_user(tmp_path: Path) -> None:
    """The worker image runs as a user of its own, not root: the same sandbox starts for
    such a user (user namespaces), and holds."""
    from palign.validation.checks import Check
    from palign.validation.sandbox import Sandbox, confine

    nobody = 65534
    folder = Path(tempfile.mkdtemp(prefix="palign-unprivileged-"))  # outside root's private /tmp/pytest-of-root
    try:
        (folder / "tree").mkdir()
        os.chown(folder, nobody, nobody)
        os.chown(folder / "tree", nobody, nobody)
        os.chmod(folder, 0o700)
        # The image's Python is under /usr; this machine's may be under /root, out of reach.
        confinement = confine(Check("c", "true"), folder, Sandbox(interpreter=False))
        assert confinement.sandboxed, confinement.refusal
        script = "id -u; touch /usr/owned 2>/dev/null && echo WROTE || echo read-only; echo ok > mine && cat mine"
        proc = subprocess.run(
            ["setpriv", f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups", "--",
             *confinement.prefix, "/bin/sh", "-c", script],
            capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["65534", "read-only", "ok"]
        assert (folder / "tree" / "mine").read_text() == "ok\n"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
