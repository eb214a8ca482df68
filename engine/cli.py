"""The ``engine`` command: validate and preview mappings, maintain golden files, onboard retailers, run the service."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from engine import commands_service, doctor, golden, loader, onboarding, service
from engine.connections import resolve
from engine.errors import ConfigError, DeliveryError, MappingError
from engine.paths import display
from engine.preview import dumps, preview


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except MappingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="engine", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    # What the commands on the service's store share: the store, and (for those that work) the pacing help.
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--db", type=Path, default=service.DEFAULT_DB, help="SQLite store (default %(default)s)")
    paced = {"parents": [store], "epilog": service.WORKER_ENVIRONMENT,
             "formatter_class": argparse.RawDescriptionHelpFormatter}

    validate = commands.add_parser("validate", help="check mapping files; print every problem as file:line:col")
    validate.add_argument("files", nargs="*", type=Path, help="mapping files (default: every file in mappings/)")
    validate.set_defaults(run=_validate)

    show = commands.add_parser("preview", help="print the Klaviyo events a STORIS record becomes")
    show.add_argument("--retailer", required=True)
    show.add_argument("--webhook", required=True, help="STORIS webhook type, e.g. OrderWrittenSale")
    show.add_argument("file", type=Path, help="a STORIS Detail response or a bare record (JSON); - for stdin")
    show.set_defaults(run=_preview)

    gold = commands.add_parser("golden", help="check golden files, or rewrite them with --update")
    gold.add_argument("--update", action="store_true", help="rewrite expected outputs from today's mappings")
    gold.add_argument("--retailer", help="only this retailer's cases")
    gold.set_defaults(run=_golden)

    sub = commands.add_parser("subscribe", help="subscribe the service to the STORIS webhooks the mapping maps")
    sub.add_argument("--retailer", required=True)
    sub.add_argument("--url", required=True,
                     help="the service's public base URL; STORIS will post to URL/webhooks/storis/RETAILER")
    sub.add_argument("--dry-run", action="store_true", help="show what would be created; create nothing")
    sub.set_defaults(run=_subscribe)

    check = commands.add_parser("doctor", parents=[store],
                                help="check a retailer's setup end to end; exit 0 only when all passes")
    check.add_argument("--retailer", required=True)
    check.add_argument("--url", help="the service's public base URL: also check that it answers and accepts a "
                                     "signed test webhook, and that subscriptions point at it")
    check.add_argument("--json", action="store_true", help="a JSON list of {check, ok, detail, fix}, for machines")
    check.set_defaults(run=_doctor)

    serve = commands.add_parser("serve", **paced, help="receive STORIS webhooks and deliver Klaviyo events")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--demo", action="store_true",
                       help="also serve a fake STORIS and fake Klaviyo, and point the demo retailer at them")
    serve.add_argument("--demo-records", type=Path, default=service.DEMO_RECORDS,
                       help="folder of STORIS Detail responses the fake STORIS serves (default: the samples)")
    serve.add_argument("--no-worker", action="store_true", help="only receive; run `engine worker` elsewhere")
    serve.add_argument("--access-log", action="store_true", help="log every HTTP request (off: /metrics counts them)")
    serve.set_defaults(run=commands_service.serve)

    work = commands.add_parser("worker", **paced, help="fetch, map and deliver stored webhooks, without receiving")
    work.set_defaults(run=commands_service.worker)

    events = commands.add_parser("events", parents=[store], help="what came in and what became of it")
    events.add_argument("--retailer")
    events.add_argument("--status", help="pending, delivered, dry-run, dead")
    events.add_argument("--entity", help="STORIS entity id")
    events.add_argument("--limit", type=int, default=200)
    events.add_argument("--json", action="store_true", help="one JSON array, for machines")
    events.set_defaults(run=commands_service.events)

    replay = commands.add_parser("replay", **paced, help="run stored webhooks through today's mappings again")
    replay.add_argument("--retailer", required=True)
    replay.add_argument("--since", help="ISO date or time (received at or after)")
    replay.add_argument("--until", help="ISO date or time (received before)")
    replay.add_argument("--type", dest="event_type", help="STORIS webhook type")
    replay.add_argument("--status", choices=["dead"], help="only webhooks with a dead job or event")
    replay.add_argument("--dry-run", action="store_true", help="print what would be sent; change nothing")
    replay.add_argument("--timeout", type=float, default=300.0, help="give up waiting after this many seconds")
    replay.set_defaults(run=commands_service.replay)
    return parser


def _validate(args: argparse.Namespace) -> int:
    files = args.files or loader.mapping_files()
    missing = [f for f in files if not f.is_file()]
    for path in missing:
        print(f"{display(path)}:1:1: no such file", file=sys.stderr)
    problems = loader.check_files([f for f in files if f.is_file()])
    for problem in problems:
        print(problem)
    count = len(problems) + len(missing)
    print(f"{len(files)} file(s) checked, {count} problem(s)", file=sys.stderr)
    return 1 if count else 0


def _preview(args: argparse.Namespace) -> int:
    retailer = loader.load_retailer(args.retailer)
    if retailer.abstract:
        raise ConfigError(f"{retailer.file} is abstract (a base for retailers), not a retailer")
    try:
        text = sys.stdin.read() if str(args.file) == "-" else args.file.read_text(encoding="utf-8")
        document = json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return 1
    result = preview(retailer, args.webhook, document)
    sys.stdout.write(dumps([event.body for event in result.events]))
    for skip in result.skipped:
        print(f"skipped: {skip.metric} ({skip.unique_id or 'no unique_id'}): {skip.reason}", file=sys.stderr)
    return 0


def _golden(args: argparse.Namespace) -> int:
    retailers: dict[str, object] = {}
    stale = 0
    for case in golden.cases():
        if args.retailer and case.retailer != args.retailer:
            continue
        retailer = retailers.get(case.retailer) or loader.load_retailer(case.retailer)
        retailers[case.retailer] = retailer
        if args.update:
            if golden.update(case, retailer):
                print(f"updated {case.id}")
            continue
        diff = golden.compare(case, retailer)
        if diff:
            stale += 1
            sys.stdout.write(diff)
    if stale:
        print(f"{stale} golden case(s) differ; run `engine golden --update` after a deliberate change",
              file=sys.stderr)
    return 1 if stale else 0


def _subscribe(args: argparse.Namespace) -> int:
    retailer = loader.load_retailer(args.retailer)
    if retailer.abstract:
        raise ConfigError(f"{retailer.file} is abstract (a base for retailers), not a retailer")
    conn = resolve(retailer)
    try:
        rows = asyncio.run(onboarding.subscribe(retailer, conn, args.url, dry_run=args.dry_run))
    except DeliveryError as exc:
        message = onboarding.events_disabled_advice(retailer, conn) if onboarding.events_disabled(exc) else exc
        print(f"error: {message}", file=sys.stderr)
        return 1
    sys.stdout.write(onboarding.table(rows))
    for note in onboarding.notes(rows):
        print(f"note: {note}", file=sys.stderr)
    target = onboarding.webhook_url(args.url, retailer.name)
    print(f"dry run, nothing created; subscriptions would point at {target}" if args.dry_run
          else f"subscriptions point at {target}", file=sys.stderr)
    return 1 if any(row.action == "failed" for row in rows) else 0


def _doctor(args: argparse.Namespace) -> int:
    results = doctor.run(args.retailer, url=args.url, db=args.db)
    failed = sum(not r.ok for r in results)
    if args.json:
        print(doctor.as_json(results))
    else:
        sys.stdout.write(doctor.render(results))
        print(f"{len(results)} check(s), {failed} failed" if failed else f"all {len(results)} checks passed",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
