"""The ``engine`` command: validate and preview mappings, maintain golden files, run the service."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from engine import golden, loader
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
