"""Enrich lines from the retailer's ecommerce catalog export (CSV or JSON), keyed by STORIS product id.

A line whose ``productId`` is in the catalog gains ``productName`` (the catalog title), ``webProductId``,
``productUrl`` and ``imageUrl``; a catalog cell left empty adds nothing. Any other line gets ``productName`` from
its STORIS ``description`` (or its ``productId``) and keeps STORIS's own merchandising data. Kit lines made
by ``soft_kits`` are looked up like any product, by their ``productId`` (the kit id).

The file is read once when the plugin is built; a malformed file then is a ConfigError naming the file and
every bad row (CSV line number or JSON index). Exports are replaced while the server runs, so the file's
mtime and size are checked at most once a second and a changed file is reloaded; a reload that fails keeps
the previous catalog and logs an error, once per change of the file.

CSV: a header row with at least the columns below, UTF-8 (a BOM is fine). JSON: an array of objects with the
same keys; ids may be JSON numbers; ``null`` counts as empty.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NoReturn

from engine.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_ID_FIELD = "storis_product_id"
COLUMNS = ("web_product_id", "title", "url", "image_url")
RELOAD_CHECK_SECONDS = 1.0
# A wholly wrong file (say, the wrong export) would otherwise bury the operator in one line per row.
MAX_REPORTED_PROBLEMS = 20


@dataclass(frozen=True)
class CatalogItem:
    """One catalog row; empty cells are empty strings."""

    storis_product_id: str
    web_product_id: str
    title: str
    url: str
    image_url: str


def load(path: Path, *, id_field: str = DEFAULT_ID_FIELD) -> dict[str, CatalogItem]:
    """Read and check a whole catalog file; any problem is a ConfigError listing every bad row."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"file: {path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"file: {path}: not UTF-8 text (byte {exc.start})") from exc
    required = (id_field, *(column for column in COLUMNS if column != id_field))
    if path.suffix.lower() == ".json":
        rows, problems = _json_rows(text, path, required)
    else:
        rows, problems = _csv_rows(text, path, required)
    items: dict[str, CatalogItem] = {}
    first_seen: dict[str, str] = {}
    for position, where, row in rows:
        product_id = row[id_field]
        if not product_id:
            problems.append((position, f"{where}: empty {id_field}"))
        elif product_id in first_seen:
            first = first_seen[product_id]
            problems.append((position, f"{where}: duplicate {id_field} {product_id!r} (first at {first})"))
        else:
            first_seen[product_id] = where
            items[product_id] = CatalogItem(product_id, *(row[column] for column in COLUMNS))
    if problems:
        _fail(path, [message for _, message in sorted(problems, key=lambda problem: problem[0])])
    return items


# A row is (position in the file, how to name it to a person, its cells by column); problems carry the position
# so they are reported in file order.
Row = tuple[int, str, dict[str, str]]
Problems = list[tuple[int, str]]


def _csv_rows(text: str, path: Path, required: tuple[str, ...]) -> tuple[list[Row], Problems]:
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[Row] = []
    problems: Problems = []
    try:
        header = [name.strip() for name in next(reader, [])]
        missing = [column for column in required if column not in header]
        if missing:
            _fail(path, [f"line 1: missing column(s) {', '.join(missing)} (header: {', '.join(header) or 'none'})"])
        for cells in reader:
            if not cells:
                continue
            where = f"line {reader.line_num}"
            if len(cells) != len(header):
                problems.append((reader.line_num, f"{where}: {len(cells)} fields, the header has {len(header)}"))
                continue
            row = dict(zip(header, (cell.strip() for cell in cells)))
            rows.append((reader.line_num, where, {column: row[column] for column in required}))
    except csv.Error as exc:
        _fail(path, [f"line {reader.line_num}: {exc}"])
    return rows, problems


def _json_rows(text: str, path: Path, required: tuple[str, ...]) -> tuple[list[Row], Problems]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"file: {path}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}") from exc
    if not isinstance(data, list):
        _fail(path, [f"expected a JSON array of products, got {type(data).__name__}"])
    rows: list[Row] = []
    problems: Problems = []
    for index, entry in enumerate(data):
        where = f"[{index}]"
        if not isinstance(entry, dict):
            problems.append((index, f"{where}: expected an object, got {type(entry).__name__}"))
            continue
        missing = [key for key in required if key not in entry]
        if missing:
            problems.append((index, f"{where}: missing key(s) {', '.join(missing)}"))
            continue
        row: dict[str, str] = {}
        for key in required:
            value = entry[key]
            if value is None:
                row[key] = ""
            elif isinstance(value, str):
                row[key] = value.strip()
            elif isinstance(value, int) and not isinstance(value, bool):
                row[key] = str(value)
            else:
                problems.append((index, f"{where}.{key}: expected a string, got {value!r}"))
        if len(row) == len(required):
            rows.append((index, where, row))
    return rows, problems


def _fail(path: Path, problems: list[str]) -> NoReturn:
    lines = [f"file: {path}: {problem}" for problem in problems[:MAX_REPORTED_PROBLEMS]]
    if len(problems) > MAX_REPORTED_PROBLEMS:
        lines.append(f"file: {path}: ... and {len(problems) - MAX_REPORTED_PROBLEMS} more problems")
    raise ConfigError("\n".join(lines))


def enrich(lines: list[dict[str, Any]], lookup: Callable[[str], CatalogItem | None]) -> list[dict[str, Any]]:
    """Return new lines with catalog data added (see the module docstring); the input is not modified."""
    out = []
    for original in lines:
        line = dict(original)
        product_id = line.get("productId")
        item = lookup(str(product_id)) if product_id not in (None, "") else None
        fallback_name = line.get("description") or product_id
        if item is not None:
            line["productName"] = item.title or fallback_name
            for key, value in (("webProductId", item.web_product_id), ("productUrl", item.url),
                               ("imageUrl", item.image_url)):
                if value:
                    line[key] = value
        elif fallback_name not in (None, ""):
            line["productName"] = fallback_name
        out.append(line)
    return out


class Catalog:
    """Plugin adapter for :func:`enrich`. Params: ``file`` (.csv or .json, relative to the mapping's folder),
    ``id_field`` (the catalog column holding the STORIS product id; default ``storis_product_id``)."""

    name: ClassVar[str] = "catalog"

    def __init__(self, params: dict[str, Any], *, base_dir: Path,
                 clock: Callable[[], float] = time.monotonic) -> None:
        unknown = sorted(set(params) - {"file", "id_field"})
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown parameter (catalog takes: file, id_field)")
        file = params.get("file")
        if not isinstance(file, str) or Path(file).suffix.lower() not in (".csv", ".json"):
            raise ConfigError(f"file: must be the path of a .csv or .json catalog, got {file!r}")
        id_field = params.get("id_field", DEFAULT_ID_FIELD)
        if not isinstance(id_field, str) or not id_field.strip():
            raise ConfigError(f"id_field: must be a non-empty column name, got {id_field!r}")
        self.path = Path(base_dir) / file
        self.id_field = id_field.strip()
        self._clock = clock
        self._lock = threading.Lock()
        # Stat before reading: a write that lands mid-read then still looks like a change and is reloaded.
        self._signature = self._stat()
        self._items = load(self.path, id_field=self.id_field)
        self._next_check = clock() + RELOAD_CHECK_SECONDS

    def __repr__(self) -> str:
        return f"Catalog(path={str(self.path)!r}, id_field={self.id_field!r}, products={len(self._items)})"

    def lookup(self, product_id: str) -> CatalogItem | None:
        """The catalog row for a STORIS product id, or None."""
        self._maybe_reload()
        return self._items.get(product_id)

    def apply(self, record: dict[str, Any]) -> dict[str, Any]:
        self._maybe_reload()
        out = dict(record)
        if "lines" in out:
            out["lines"] = enrich(out["lines"] or [], self._items.get)
        return out

    def _stat(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def _maybe_reload(self) -> None:
        if self._clock() < self._next_check:
            return
        # Whoever holds the lock reloads; everyone else carries on with the catalog they have.
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._next_check = self._clock() + RELOAD_CHECK_SECONDS
            signature = self._stat()
            if signature == self._signature:
                return
            self._signature = signature
            try:
                items = load(self.path, id_field=self.id_field)
            except ConfigError as exc:
                logger.error("catalog reload failed, keeping the previous %d products:\n%s", len(self._items), exc)
                return
            self._items = items
            logger.info("catalog %s reloaded: %d products", self.path, len(items))
        finally:
            self._lock.release()
