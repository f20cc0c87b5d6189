"""Soak: one very large run through the distributed path, watched from start to end.

A private redis-server, one `palign worker -c N`, and `palign run REPO --broker` waiting
for the report. Every second it samples the producer's and the worker's memory (resident
set of each process; the worker's is its main process plus its pool), Redis's
`used_memory` and the run's done counter. It prints, for each tenth of the branches, the
throughput over that tenth and the memory at its end, then the peaks, and what Redis keeps
after the run (every palign and Celery key must expire).

    python benchmarks/corpus.py /tmp/c10k --branches 10000 --seed 11
    python benchmarks/soak.py --repo /tmp/c10k [--concurrency 2] [--onto main]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.services import RedisServer, Worker, process_family, wait_for  # noqa: E402

QUEUES = {"align", "validate", "report"}


@dataclass
class Sample:
    at: float
    done: int
    producer_kb: int
    worker_kb: int
    worker_anon_kb: int
    redis_bytes: int


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    """A process's resident memory (VmRSS), or its anonymous part (RssAnon: the heap, not
    the pages of mapped pack files, which the kernel can drop)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--onto", default="main")
    parser.add_argument("--concurrency", type=int, default=2)
    options = parser.parse_args()
    repo = options.repo.resolve()
    os.environ.setdefault("PALIGN_SIGNING_KEY", "palign benchmark: a key shared by producer and workers")
    root = Path(tempfile.mkdtemp(prefix="palign-soak-"))
    redis = RedisServer(root / "redis")
    worker = None
    try:
        worker = Worker(redis.url, "soak", root / "worker", concurrency=options.concurrency)
        worker_pid = worker.proc.pid
        client = redis.client()
        started = time.monotonic()
        producer = subprocess.Popen(
            [sys.executable, "-m", "palign", "run", str(repo), "--onto", options.onto, "--broker", redis.url]
            + ["--report-dir", str(root / "out")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        run_id = str(wait_for(lambda: next(iter(client.zrange("palign:runs", 0, -1)), None), 600, "the run"))
        enqueued = time.monotonic() - started
        samples: list[Sample] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                done = int(client.hget(f"palign:run:{run_id}", "done") or 0)
                pids = process_family(worker_pid)
                samples.append(
                    Sample(
                        time.monotonic() - started,
                        done,
                        rss_kb(producer.pid),
                        sum(rss_kb(pid) for pid in pids),
                        sum(rss_kb(pid, "RssAnon") for pid in pids),
                        int(client.info("memory")["used_memory"]),
                    )
                )
                stop.wait(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stdout, stderr = producer.communicate()
        took = time.monotonic() - started
        stop.set()
        sampler.join()
        if producer.returncode not in (0, 1):
            raise SystemExit(f"the run failed ({producer.returncode}):\n{stdout}\n{stderr}")
        total = int(client.hget(f"palign:run:{run_id}", "total") or 0)
        print(stdout.strip().splitlines()[0])
        print(f"{total} branches in {took:.1f} s (the run recorded after {enqueued:.1f} s)")
        print("  share   at        branches/s   producer RSS   worker RSS (anonymous)   Redis used")
        previous = Sample(enqueued, 0, 0, 0, 0, 0)
        for tenth in range(1, 11):
            reached = next((s for s in samples if s.done >= total * tenth / 10), samples[-1])
            pace = (reached.done - previous.done) / max(reached.at - previous.at, 1e-9)
            print(
                f"  {tenth * 10:>3} %  {reached.at:7.1f} s  {pace:10.1f}   {reached.producer_kb / 1024:9.0f} MB"
                f"   {reached.worker_kb / 1024:8.0f} MB ({reached.worker_anon_kb / 1024:4.0f} MB)"
                f"   {reached.redis_bytes / 2**20:9.1f} MB"
            )
            previous = reached
        producer_peak = max(s.producer_kb for s in samples) / 1024
        worker_peak = max(s.worker_kb for s in samples) / 1024
        redis_peak = max(s.redis_bytes for s in samples) / 2**20
        print(f"peaks: producer {producer_peak:.0f} MB, worker {worker_peak:.0f} MB, Redis {redis_peak:.1f} MB")
        keys = [str(k) for k in client.keys("*")]
        # Queues and kombu's own bookkeeping (`_kombu.*`) are meant to last.
        lasting = sorted(k for k in keys if client.ttl(k) == -1 and k not in QUEUES and not k.startswith("_kombu."))
        print(f"after the run: {len(keys)} keys in Redis; without an expiry: {lasting or 'none'}")
    finally:
        if worker is not None:
            worker.stop(timeout=30)
        redis.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
