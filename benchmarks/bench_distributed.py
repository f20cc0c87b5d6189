"""Distributed mode against the embedded pool, measured in one run on one machine.

1. The same corpus aligned by `palign run --workers N` (local process pool) and by
   `palign run --broker` with one `palign worker -c N` (Celery over a private
   redis-server): wall times (median of interleaved runs, warm caches), their ratio, and
   a check that both give the same verdict and tree for every branch.
2. Enqueueing a large run: `palign run --broker --no-wait` on a repository with many
   branches and no worker running: wall time, the enqueue phase alone, producer peak RSS.

    python benchmarks/bench_distributed.py [--repo PATH | --branches 400] [--runs 3]
        [--enqueue-repo PATH | --enqueue-branches 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_corpus(path: Path, branches: int, seed: int) -> Path:
    subprocess.run(
        [sys.executable, str(HERE / "corpus.py"), str(path), "--branches", str(branches), "--seed", str(seed)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return path


def palign(*args: str, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "palign", *args], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"palign {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return elapsed, proc


def verdicts(report_dir: Path, repo: Path) -> dict[str, tuple[str, str | None]]:
    data = json.loads((report_dir / "report.json").read_text())
    out = {}
    for target in data["orchestration_results"].values():
        for b in target["branches"]:
            tree = None
            if b["new_sha"]:
                tree = subprocess.run(
                    ["git", "-C", str(repo), "rev-parse", b["new_sha"] + "^{tree}"], capture_output=True, text=True
                ).stdout.strip()
            out[b["branch_name"]] = (b["status"], tree)
    return out


class Services:
    def __init__(self, root: Path, concurrency: int) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        self.concurrency = concurrency
        self.worker: subprocess.Popen[bytes] | None = None

    def start_worker(self, env: dict[str, str]) -> None:
        log = open(self.root / "worker.log", "wb")  # noqa: SIM115  (the worker writes it until stopped)
        worker_env = {**env, "PALIGN_CACHE_DIR": str(self.root / "worker-cache"), "PALIGN_BROKER_URL": self.url}
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "palign", "worker", "-c", str(self.concurrency), "-l", "WARNING"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=worker_env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while b"ready" not in (self.root / "worker.log").read_bytes():
            ping = subprocess.run(
                [sys.executable, "-m", "celery", "-A", "palign.distributed.app", "inspect", "ping", "-t", "1"],
                capture_output=True,
                env=worker_env,
            )
            if ping.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit("the worker did not start:\n" + (self.root / "worker.log").read_text())

    def stop(self) -> None:
        if self.worker is not None:
            os.killpg(self.worker.pid, signal.SIGTERM)
            try:
                self.worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)
        self.redis.terminate()
        self.redis.wait()


def compare(args: argparse.Namespace, root: Path, env: dict[str, str]) -> dict[str, Any]:
    repo = args.repo or build_corpus(root / "corpus", args.branches, args.seed)
    services = Services(root, args.workers)
    try:
        services.start_worker(env)
        local_args = ["run", str(repo), "--onto", "main", "--workers", str(args.workers)]
        dist_args = ["run", str(repo), "--onto", "main", "--broker", services.url]
        # Warm-up: both mirrors exist and are current before anything is timed.
        palign(*local_args, "--report-dir", str(root / "warm-local"), env=env)
        palign(*dist_args, "--report-dir", str(root / "warm-dist"), env=env)
        local_times, dist_times = [], []
        for run in range(args.runs):
            elapsed, _ = palign(*local_args, "--report-dir", str(root / f"local{run}"), env=env)
            local_times.append(elapsed)
            elapsed, _ = palign(*dist_args, "--report-dir", str(root / f"dist{run}"), env=env)
            dist_times.append(elapsed)
        same = verdicts(root / "local0", repo) == verdicts(root / "dist0", repo)
        local, dist = statistics.median(local_times), statistics.median(dist_times)
        branches = len(verdicts(root / "dist0", repo))
        return {
            "branches": branches,
            "workers": args.workers,
            "local_seconds": [round(t, 2) for t in local_times],
            "distributed_seconds": [round(t, 2) for t in dist_times],
            "local_median": round(local, 2),
            "distributed_median": round(dist, 2),
            "ratio": round(dist / local, 3),
            "same_verdicts_and_trees": same,
        }
    finally:
        services.stop()


def enqueue(args: argparse.Namespace, root: Path, env: dict[str, str]) -> dict[str, Any]:
    repo = args.enqueue_repo or build_corpus(root / "big", args.enqueue_branches, args.seed + 1)
    services = Services(root, 1)
    try:
        # Mirror the repository first (as a second run would find it).
        palign("plan", str(repo), "--onto", "main", "--no-forecast", env=env)
        rss_file = root / "producer-rss"
        started = time.perf_counter()
        proc = subprocess.run(
            [
                "/usr/bin/time",
                "-f",
                "%M",
                "-o",
                str(rss_file),
                sys.executable,
                "-m",
                "palign",
                "-v",
                "run",
                str(repo),
                "--onto",
                "main",
                "--broker",
                services.url,
                "--no-wait",
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        elapsed = time.perf_counter() - started
        peak_kib = int(rss_file.read_text().split()[-1])  # GNU time: the producer's peak RSS
        phases = {m.group(1): float(m.group(2)) for m in re.finditer(r": (.+) took ([0-9.]+) s", proc.stderr)}
        run_id = proc.stdout.strip()
        import redis

        client = redis.Redis(port=services.port, decode_responses=True)
        queued = sum(client.llen(key) for key in client.scan_iter("align*"))
        return {
            "branches": int(client.hget(f"palign:run:{run_id}", "total") or 0),
            "tasks_queued": queued,
            "wall_seconds": round(elapsed, 2),
            "phases": phases,
            "producer_peak_rss_mib": round(peak_kib / 1024, 1),
        }
    finally:
        services.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, help="existing repository (default: build a corpus)")
    parser.add_argument("--branches", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--enqueue-repo", type=Path, help="existing repository with many branches")
    parser.add_argument("--enqueue-branches", type=int, default=10_000)
    parser.add_argument("--skip-compare", action="store_true")
    parser.add_argument("--skip-enqueue", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="palign-bench-dist-"))
    env = {**os.environ, "PALIGN_CACHE_DIR": str(root / "producer-cache")}
    # Producer and worker share a key of this benchmark's; the worker serves local repositories.
    env.setdefault("PALIGN_SIGNING_KEY", secrets.token_hex(32))
    env.setdefault("PALIGN_ALLOWED_REPOS", "/*")
    try:
        figures: dict[str, Any] = {}
        if not args.skip_compare:
            figures["distributed_vs_local"] = compare(args, root, env)
            print(json.dumps(figures["distributed_vs_local"], indent=2), flush=True)
        if not args.skip_enqueue:
            figures["enqueue"] = enqueue(args, root, env)
            print(json.dumps(figures["enqueue"], indent=2), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
