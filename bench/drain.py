"""A backlog drained to the fake Klaviyo enforcing Klaviyo's real rate limits.

Fills a fresh SQLite store with N pending events (default 20,000: Completed Purchase bodies of the demo
retailer, each with its own unique_id and profile), runs the worker's delivery against the fake Klaviyo
(its own process on loopback, default limits: Bulk Create Events 10/s and 150/min, 1,000 events a job),
and reports events per second against the most those limits allow, duplicates and losses at the fake,
over several rounds, then the worker's peak resident memory while draining growing backlogs (it must stay
flat: the worker holds a few batches at most, whatever the backlog).

Run: `python -m bench.drain [--events N] [--rounds R] [--memory-steps 5000,10000,20000]` from the project
folder.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import ROOT, free_port, peak_rss_mib, process
from engine.connections import Connections
from engine.golden import GOLDEN
from engine.sqlite_store import SqliteStore
from engine.store import NewEvent
from engine.worker import Worker, WorkerSettings

BULK_PER_SECOND, BULK_PER_MINUTE, EVENTS_PER_JOB = 10, 150, 1000


def template_body() -> dict:
    bodies = json.loads((GOLDEN / "sunrise-patio" / "sale-kit-and-cushions" / "expected.json").read_text())
    return bodies[0]


def fill(store: SqliteStore, count: int) -> None:
    base = template_body()
    per_webhook = 1000
    for start in range(0, count, per_webhook):
        ids = [str(n) for n in range(start, min(start + per_webhook, count))]
        store.record_webhook(retailer="demo", source="storis", event_type="OrderWrittenSale",
                             body=json.dumps({"batch": start}).encode(), entity_ids=ids, status="accepted",
                             now=time.time())
    for job in store.claim_jobs(limit=count, now=time.time(), lease_seconds=3600):
        body = copy.deepcopy(base)
        attributes = body["data"]["attributes"]
        attributes["unique_id"] = f"order:B{job.entity_id}"
        attributes["profile"]["data"]["attributes"]["email"] = f"buyer{job.entity_id}@example.com"
        attributes["profile"]["data"]["attributes"].pop("phone_number", None)
        store.complete_job(job.id, events=[NewEvent("demo", "Completed Purchase", attributes["unique_id"], body)],
                           skipped=[], now=time.time())


def most_allowed(count: int) -> float:
    """Events per second the bulk limits allow for ``count`` events: 10 jobs of 1,000 a second while the
    backlog fits the minute's budget of 150 jobs, 150 jobs a minute beyond it."""
    jobs = math.ceil(count / EVENTS_PER_JOB)
    per_second = BULK_PER_SECOND if jobs <= BULK_PER_MINUTE else BULK_PER_MINUTE / 60
    return per_second * EVENTS_PER_JOB


async def drain(db: Path, base_url: str) -> tuple[float, float]:
    """Deliver everything pending in ``db``; (seconds, peak resident MiB of this process)."""
    store = SqliteStore.open(db)
    conn = Connections(retailer="demo", webhook_mode="shared_secret", webhook_header="X-Webhook-Secret",
                       webhook_secret=None, storis_base_url=None, storis_client_id=None, storis_client_secret=None,
                       klaviyo_base_url=base_url, klaviyo_api_key="pk_bench", klaviyo_revision="2026-07-15")
    worker = Worker(store=store, retailers={}, connections={"demo": conn}, settings=WorkerSettings(lease_seconds=60))
    start = time.perf_counter()
    try:
        while await worker.deliver():
            pass
    finally:
        await worker.close()
        store.close()
    return time.perf_counter() - start, peak_rss_mib()


def drain_in_child(db: Path, base_url: str) -> tuple[float, float]:
    """Drain in a fresh process, so its memory is the worker's alone (not the filling's)."""
    out = subprocess.run([sys.executable, "-m", "bench.drain", "--child", str(db), base_url], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    seconds, peak = out.split()
    return float(seconds), float(peak)


def check_fake(base_url: str, count: int) -> tuple[int, int]:
    received = httpx.get(f"{base_url}/_received", timeout=60).json()
    ids = [event["data"]["attributes"]["unique_id"] for event in received]
    return len(ids) - len(set(ids)), count - len(set(ids))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3, help="drains of the backlog per fake (the machine is noisy)")
    parser.add_argument("--memory-steps", default="5000,10000,20000")
    parser.add_argument("--child", nargs=2, metavar=("DB", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        seconds, peak = asyncio.run(drain(Path(args.child[0]), args.child[1]))
        print(seconds, peak)
        return 0
    clean = True
    for label, flags in (("fake validating every body", []), ("fake not validating", ["--no-validation"])):
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryDirectory() as tmp, process(
                ["-m", "engine.fakes.klaviyo", "--port", str(port), *flags], health_url=f"{base_url}/_received"):
            ceiling = most_allowed(args.events)
            print(f"{label}: {args.events} events; the limits allow at most {ceiling:,.0f}/s")
            for round_number in range(1, args.rounds + 1):
                httpx.post(f"{base_url}/_reset", timeout=10)
                db = Path(tmp) / f"drain-{round_number}.sqlite3"
                with SqliteStore.open(db) as store:
                    fill(store, args.events)
                seconds, _ = drain_in_child(db, base_url)
                duplicates, lost = check_fake(base_url, args.events)
                clean = clean and duplicates == 0 and lost == 0
                rate = args.events / seconds
                print(f"  round {round_number}: drained in {seconds:.2f} s: {rate:,.0f} events/s, {rate / ceiling:.0%}"
                      f" of the most allowed; duplicates {duplicates}, lost {lost}")
            if flags:
                continue
            for step in (int(s) for s in args.memory_steps.split(",") if s):
                httpx.post(f"{base_url}/_reset", timeout=10)
                db = Path(tmp) / f"memory-{step}.sqlite3"
                with SqliteStore.open(db) as store:
                    fill(store, step)
                _, peak = drain_in_child(db, base_url)
                print(f"  backlog {step:>6}: worker's peak resident memory while draining {peak:6.1f} MiB")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
