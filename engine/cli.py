"""The ``engine`` command: validate and preview mappings, maintain golden files, run the service."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from engine import commands_service, golden, loader, service
from engine.errors import ConfigError, MappingError
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

    serve = commands.add_parser("serve", help="receive STORIS webhooks and deliver Klaviyo events")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--db", type=Path, default=service.DEFAULT_DB, help="SQLite store (default %(default)s)")
    serve.add_argument("--demo", action="store_true",
                       help="also serve a fake STORIS and fake Klaviyo, and point the demo retailer at them")
    serve.add_argument("--demo-records", type=Path, default=service.DEMO_RECORDS,
                       help="folder of STORIS Detail responses the fake STORIS serves (default: the samples)")
    serve.add_argument("--no-worker", action="store_true", help="only receive; run `engine worker` elsewhere")
    serve.set_defaults(run=commands_service.serve)

    work = commands.add_parser("worker", help="fetch, map and deliver stored webhooks, without receiving")
    work.add_argument("--db", type=Path, default=service.DEFAULT_DB)
    work.set_defaults(run=commands_service.worker)

    events = commands.add_parser("events", help="what came in and what became of it")
    events.add_argument("--db", type=Path, default=service.DEFAULT_DB)
    events.add_argument("--retailer")
    events.add_argument("--status", help="pending, delivered, dry-run, dead")
    events.add_argument("--entity", help="STORIS entity id")
    events.add_argument("--limit", type=int, default=200)
    events.add_argument("--json", action="store_true", help="one JSON array, for machines")
    events.set_defaults(run=commands_service.events)

    replay = commands.add_parser("replay", help="run stored webhooks through today's mappings again")
    replay.add_argument("--db", type=Path, default=service.DEFAULT_DB)
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


if __name__ == "__main__":
    sys.exit(main())
