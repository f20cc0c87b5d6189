"""What a dead worker costs, with palign's default settings: the same repository aligned
twice by a fleet of `palign worker -c 1` processes over a private Redis, once without
faults and once while workers are killed with SIGKILL every few seconds (the one holding
work, when one does) and started again at once, as a supervisor would. Prints both wall
times, what each death cost (seconds from the kill until every unit the worker held was
held by another worker or had moved on), and whether the two reports agree (verdict and
tree of every branch). `--check CMD` gives every branch a check (palign.toml
[validate]), which makes tasks last long enough for most kills to meet one.

    python benchmarks/chaos_kills.py --repo /tmp/click [--kills 12] [--every 3]
        [--workers 2] [--onto main] [--check 'sleep 0.25']

REPO is copied for each run (the runs only write under refs/palign/). It must sit in the
system's temporary folder (the fleet's workers allow only those repositories). The fleet
is the chaos suite's (tests/chaos/fleet.py), so run this from a checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.chaos.fleet import Fleet  # noqa: E402
from tests.services import wait_for  # noqa: E402

Verdicts = dict[str, tuple[str, str | None]]


def verdicts(report_dir: Path, repo: Path) -> Verdicts:
    report = json.loads((report_dir / "report.json").read_text())
    found: Verdicts = {}
    for branch in (b for target in report["orchestration_results"].values() for b in target["branches"]):
        tree = None
        if branch["new_sha"]:
            tree = subprocess.run(
                ["git", "-C", str(repo), "rev-parse", f"{branch['new_sha']}^{{tree}}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        found[branch["branch_name"]] = (branch["status"], tree)
    return found


def one_run(fleet: Fleet, template: Path, directory: Path, onto: str, kills: int, every: float) -> tuple[float, str]:
    """A run on a copy of `template`; `kills` workers killed `every` seconds apart."""
    repo = directory / "repo"
    shutil.copytree(template, repo, symlinks=True)
    client = fleet.redis.client()
    known = set(client.zrange("palign:runs", 0, -1))
    args = ["run", str(repo), "--onto", onto, "--broker", fleet.url, "--report-dir", str(directory / "out")]
    args += ["--config", str(fleet.config)] if fleet.config else []
    started = time.monotonic()
    producer = subprocess.Popen(
        [sys.executable, "-m", "palign", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        new_run = lambda: next(iter(set(client.zrange("palign:runs", 0, -1)) - known), None)  # noqa: E731
        run_id = str(wait_for(new_run, 300, "the run"))
        next_kill = time.monotonic() + every
        for _ in range(kills):
            while time.monotonic() < next_kill and producer.poll() is None:
                time.sleep(0.05)
            if producer.poll() is not None:
                break
            while not (up := sorted(set(fleet.workers) - fleet.starting)):
                time.sleep(0.05)
            fleet.kill(run_id, fleet.busiest(run_id, up, patience=0.5), wait=False)
            next_kill = time.monotonic() + every
        stdout, stderr = producer.communicate(timeout=3600)
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()
        fleet.settle()
    took = time.monotonic() - started
    if producer.returncode not in (0, 1):
        raise SystemExit(f"the run failed ({producer.returncode}):\n{stdout}\n{stderr}")
    return took, run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--onto", default="main")
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--every", type=float, default=3.0, help="seconds between kills")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--check", help="a check every branch runs (a shell command)")
    options = parser.parse_args()
    template = options.repo.resolve()
    os.environ.setdefault("PALIGN_SIGNING_KEY", "palign benchmark: a key shared by producer and workers")
    root = Path(tempfile.mkdtemp(prefix="palign-kills-"))
    config = None
    if options.check:
        config = root / "palign.toml"
        config.write_text(f"[validate]\ncheck = {json.dumps(options.check)}\n")
    fleet = Fleet(root / "fleet", options.workers, config)
    try:
        calm, calm_id = one_run(fleet, template, root / "calm", options.onto, 0, options.every)
        print(f"fault-free: {calm:.1f} s (run {calm_id})")
        stormy, stormy_id = one_run(fleet, template, root / "killed", options.onto, options.kills, options.every)
        faults = fleet.faults
        print(f"{len(faults)} workers killed every {options.every:g} s: {stormy:.1f} s (run {stormy_id})")
        first = faults[0].started if faults else 0.0
        for fault in faults:
            print(fault.line(first))
        costs = [fault.cost for fault in faults if fault.held and fault.cost is not None]
        if costs:
            print(f"cost of a death holding work: median {statistics.median(costs):.1f} s, max {max(costs):.1f} s")
        unmeasured = [fault for fault in faults if fault.held and fault.cost is None]
        if unmeasured:
            print(f"{len(unmeasured)} deaths whose work never went on (see above)")
        want = verdicts(root / "calm" / "out", root / "calm" / "repo")
        got = verdicts(root / "killed" / "out", root / "killed" / "repo")
        differing = sorted(name for name in want.keys() | got.keys() if want.get(name) != got.get(name))
        statuses: dict[str, int] = {}
        for status, _ in got.values():
            statuses[status] = statuses.get(status, 0) + 1
        print(f"{len(got)} branches {statuses}; reports agree (verdict and tree): {len(differing) == 0}")
        for name in differing[:20]:
            print(f"  {name}: fault-free {want.get(name)}, with kills {got.get(name)}")
        if differing or unmeasured:
            raise SystemExit(1)
    finally:
        fleet.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
