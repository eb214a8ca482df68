"""The service's commands: ``engine serve``, ``engine worker``, ``engine events`` and ``engine replay``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from datetime import datetime

import uvicorn

from engine import logs, service
from engine.apply import map_record
from engine.errors import ConfigError, DeliveryError, MappingError
from engine.preview import dumps
from engine.storis import StorisClient
from engine.worker import Worker


def serve(args: argparse.Namespace) -> int:
    logs.configure()
    settings = service.worker_settings()
    demo_records = None
    if args.demo:
        host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        for name, value in service.demo_environment(f"http://{host}:{args.port}").items():
            os.environ.setdefault(name, value)
        demo_records = args.demo_records
    running = service.open_service(args.db)
    for name, conn in sorted(running.connections.items()):
        for problem in conn.missing():
            logging.getLogger("engine").warning("%s: %s", name, problem)
    app = service.build_app(running, run_worker=not args.no_worker, demo_records=demo_records, settings=settings)
    logging.getLogger("engine").info("store %s; retailers %s", args.db, ", ".join(sorted(running.retailers)))
    # log_config=None: uvicorn logs through our handler too, so its lines are masked like ours.
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=args.access_log)
    return 0


def worker(args: argparse.Namespace) -> int:
    logs.configure()
    settings = service.worker_settings()
    running = service.open_service(args.db)
    work = Worker(store=running.store, retailers=running.retailers, connections=running.connections,
                  settings=settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await work.run(stop)

    asyncio.run(main())
    return 0


def events(args: argparse.Namespace) -> int:
    running = service.open_service(args.db)
    rows = running.store.list_events(retailer=args.retailer, status=args.status, entity_id=args.entity,
                                     limit=args.limit)
    if args.json:
        print(json.dumps([row.__dict__ for row in rows], indent=2))
        return 0
    header = (f"{'id':>6}  {'retailer':<14} {'webhook':<28} {'entity':<12} {'metric':<22} {'status':<9} "
              f"{'tries':>5}  last")
    print(header)
    for row in rows:
        last = f"{row.last_status or ''} {(row.last_error or '')[:60]}".strip()
        print(f"{row.id:>6}  {row.retailer:<14} {row.event_type or '':<28} {row.entity_id or '':<12} "
              f"{row.metric:<22} {row.status:<9} {row.attempts:>5}  {last}")
    print(f"{len(rows)} event(s)", file=sys.stderr)
    return 0


def replay(args: argparse.Namespace) -> int:
    logs.configure()
    settings = service.worker_settings()
    running = service.open_service(args.db)
    if args.retailer not in running.retailers:
        raise ConfigError(f"no servable retailer {args.retailer!r}; known: {', '.join(sorted(running.retailers))}")
    webhooks = running.store.list_webhooks(retailer=args.retailer, since=_moment(args.since),
                                           until=_moment(args.until), event_type=args.event_type, status=args.status)
    # Test webhooks (engine doctor) and ignored types were never meant to become jobs.
    webhooks = [w for w in webhooks if w.source == "storis" and w.status == "accepted"]
    print(f"{len(webhooks)} webhook(s) to replay", file=sys.stderr)
    if args.dry_run:
        return asyncio.run(_print_replay(running, webhooks))
    for webhook in webhooks:
        running.store.requeue_webhook(webhook.id, now=time.time())
    if args.status == "dead":
        unsubscribes, subscriptions = running.store.requeue_dead_consent(args.retailer, now=time.time())
        print(f"{unsubscribes} dead unsubscribe(s) and {subscriptions} dead list subscription(s) to retry",
              file=sys.stderr)
    work = Worker(store=running.store, retailers=running.retailers, connections=running.connections,
                  settings=settings)
    return asyncio.run(_drain(work, running, args.timeout))


async def _drain(work: Worker, running: service.Service, timeout: float) -> int:
    """Work until nothing is due, printing progress; stop at ``timeout`` with what is left named."""
    deadline = time.monotonic() + timeout
    try:
        while await work.run_once():
            counts = running.store.counts()
            print(f"jobs pending {counts['jobs'].get('pending', 0)}, events pending "
                  f"{counts['events'].get('pending', 0)}, delivered {counts['events'].get('delivered', 0)}, "
                  f"dead {counts['events'].get('dead', 0)}", file=sys.stderr)
            if time.monotonic() > deadline:
                print("stopped at --timeout; the rest is retried by the running worker", file=sys.stderr)
                return 1
    finally:
        await work.close()
    counts = running.store.counts()
    waiting = counts["jobs"].get("pending", 0) + counts["events"].get("pending", 0)
    if waiting:
        print(f"{waiting} job(s)/event(s) are scheduled for a later retry; the running worker takes them",
              file=sys.stderr)
    return 0


async def _print_replay(running: service.Service, webhooks: list) -> int:
    failures = 0
    clients: dict[str, StorisClient] = {}
    try:
        for webhook in webhooks:
            retailer = running.retailers[webhook.retailer]
            plan = retailer.webhooks.get(webhook.event_type)
            if plan is None or not plan.enabled or plan.fetch is None:
                print(f"webhook {webhook.id}: {webhook.event_type} is not mapped; nothing would be sent",
                      file=sys.stderr)
                continue
            conn = running.connections[webhook.retailer]
            if webhook.retailer not in clients:
                if not (conn.storis_base_url and conn.storis_client_id and conn.storis_client_secret):
                    raise ConfigError(f"{webhook.retailer}: STORIS base URL or credentials are not configured")
                clients[webhook.retailer] = StorisClient(base_url=conn.storis_base_url,
                                                         client_id=conn.storis_client_id,
                                                         client_secret=conn.storis_client_secret)
            for entity in webhook.entity_ids:
                try:
                    path, params = plan.fetch.request(entity)
                    record = plan.fetch.record(await clients[webhook.retailer].get(path, params))
                    result = map_record(retailer, webhook.event_type, record)
                except (DeliveryError, MappingError) as exc:
                    failures += 1
                    print(f"webhook {webhook.id} entity {entity}: {exc}", file=sys.stderr)
                    continue
                sys.stdout.write(dumps([event.body for event in result.events]))
    finally:
        for client in clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()
    return 1 if failures else 0


def _moment(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"{text!r} is not an ISO date or time (e.g. 2026-12-01 or 2026-12-01T09:00:00)") from exc
    return moment.timestamp() if moment.tzinfo else moment.astimezone().timestamp()



