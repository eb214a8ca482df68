"""Collapse STORIS soft-kit component lines into one line per complete kit.

STORIS sells a patio set as separate component lines that share ``softKit.kitId``; marketing wants the set.
A kit forms only when every one of its ``componentCount`` distinct component products is on the record, and
the number of complete kits is the minimum over components of ``floor(quantity / quantityPerKit)``. The
consumed quantities become one synthetic kit line; what is left over stays as ordinary lines, so quantities
and money add up to exactly what STORIS sent.

Rules the code relies on, decided here because STORIS does not document them:
- One product may sit on several lines of the same kit; their quantities add up, and the kit consumes from
  the lowest line numbers first. Lines with zero or negative quantity (returns) count towards the product's
  net quantity but are never consumed from.
- ``quantityPerKit``, ``componentCount`` and ``kitDescription`` come from the first line (by line number) of
  the kit or product; a component line whose ``quantityPerKit`` or ``componentCount`` is not a positive whole
  number, or whose quantity is not a whole number, is bad data and raises ``ValueError`` (the engine fails
  that record only).
- A kit with more distinct products than its ``componentCount`` is inconsistent and forms no kit.
- Money is computed in ``Decimal`` and emitted as floats rounded to cents. The consumed part of a line's
  ``extendedPrice`` is its share by quantity rounded half-up to the cent, and the leftover is the rest, so
  the sum over output lines equals the sum over input lines (each rounded to the cent).
- Leftover lines keep their ``softKit`` (it is STORIS data); the kit line has ``softKit: null``. Collapsing
  the output again therefore changes nothing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, ClassVar

from engine.errors import ConfigError

CENT = Decimal("0.01")
# Copied from the kit's first component so the kit line still carries the merchandising data marketers filter on.
INHERITED_KEYS = ("brand", "collection", "productGroup", "category", "locationId", "vendor")


def collapse(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return new lines with complete soft kits collapsed; the input is not modified.

    Output is sorted by line number; a kit line stands at its lowest component's line number, before a
    leftover of that same component. Every output line has ``isKit``.
    """
    by_kit: dict[str, list[dict[str, Any]]] = defaultdict(list)
    out: list[dict[str, Any]] = []
    # Lines are never changed in place (every change makes a new dict), so no copy of the input is needed.
    order = _line_order if _tied(lines) else _line_number
    for line in sorted(lines, key=order):
        kit_id = _kit_id(line)
        if kit_id is None:
            out.append({**line, "isKit": line.get("isKit") is True})
        else:
            by_kit[kit_id].append(line)
    for kit_id, components in by_kit.items():
        out.extend(_collapse_kit(kit_id, components))
    return sorted(out, key=lambda line: (order(line)[0], not line["isKit"], *order(line)[1:]))


def _collapse_kit(kit_id: str, components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lines for one kit id (components in line order): the kit line, if a kit completes, then leftovers."""
    first = components[0]
    component_count = _positive_whole(first["softKit"].get("componentCount"), first, "softKit.componentCount")
    by_product: dict[Any, list[dict[str, Any]]] = {}
    for line in components:
        by_product.setdefault(line.get("productId"), []).append(line)
    per_kit = {
        product: _positive_whole(lines[0]["softKit"].get("quantityPerKit"), lines[0], "softKit.quantityPerKit")
        for product, lines in by_product.items()
    }
    kits = 0
    if len(by_product) == component_count:
        kits = min(
            sum(_whole(line.get("quantity"), line, "quantity") for line in lines) // per_kit[product]
            for product, lines in by_product.items()
        )
    if kits < 1:
        return [{**line, "isKit": False} for line in components]

    leftovers: list[dict[str, Any]] = []
    consumed: list[Decimal | None] = []
    for product, lines in by_product.items():
        product_leftovers, product_consumed = _consume(lines, kits * per_kit[product])
        leftovers.extend(product_leftovers)
        consumed.extend(product_consumed)

    kit_line: dict[str, Any] = {
        "lineNumber": first.get("lineNumber"),
        "productId": kit_id,
        "description": first["softKit"].get("kitDescription"),
        "quantity": kits,
    }
    unit_prices = {product: _money(lines[0].get("unitPrice")) for product, lines in by_product.items()}
    if all(price is not None for price in unit_prices.values()):
        kit_line["unitPrice"] = float(sum(
            price * per_kit[product] for product, price in unit_prices.items()  # type: ignore[operator]
        ))
    if all(money is not None for money in consumed):
        kit_line["extendedPrice"] = float(sum(consumed))  # type: ignore[arg-type]
    kit_line.update({key: first[key] for key in INHERITED_KEYS if key in first})
    kit_line.update({
        "isKit": True,
        "kitId": kit_id,
        "softKit": None,
        "components": [{"productId": product, "quantityPerKit": per_kit[product]} for product in by_product],
    })
    return [kit_line, *leftovers]


def _consume(lines: list[dict[str, Any]], wanted: int) -> tuple[list[dict[str, Any]], list[Decimal | None]]:
    """Take ``wanted`` units of one product from its lines, lowest line first.

    Returns what is left of the lines (fully used lines disappear) and, per line, the part of its
    ``extendedPrice`` taken (None for a line without one).
    """
    leftovers: list[dict[str, Any]] = []
    consumed: list[Decimal | None] = []
    for line in lines:
        quantity = _whole(line.get("quantity"), line, "quantity")
        extended = _money(line.get("extendedPrice"))
        take = min(wanted, quantity) if quantity > 0 else 0
        wanted -= take
        taken = None
        if extended is not None:
            taken = (extended * take / quantity).quantize(CENT, ROUND_HALF_UP) if take else Decimal(0)
        consumed.append(taken)
        if take == 0:
            leftovers.append({**line, "isKit": False})
        elif take < quantity:
            leftover = {**line, "quantity": quantity - take, "isKit": False}
            if extended is not None and taken is not None:
                leftover["extendedPrice"] = float(extended - taken)
            leftovers.append(leftover)
    return leftovers, consumed


def _kit_id(line: dict[str, Any]) -> str | None:
    soft_kit = line.get("softKit")
    if isinstance(soft_kit, dict) and soft_kit.get("kitId") not in (None, ""):
        return str(soft_kit["kitId"])
    return None


def _line_number(line: dict[str, Any]) -> tuple[float]:
    number = line.get("lineNumber")
    return (float(number) if isinstance(number, int | float) and not isinstance(number, bool) else float("inf"),)


def _line_order(line: dict[str, Any]) -> tuple[float, str]:
    # The canonical dump breaks ties between equal line numbers, so input order never shows in the output.
    return _line_number(line)[0], json.dumps(line, sort_keys=True, default=str)


def _tied(lines: list[dict[str, Any]]) -> bool:
    numbers = [_line_number(line) for line in lines]
    return len(set(numbers)) != len(numbers)


def _whole(value: Any, line: dict[str, Any], field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or (
        isinstance(value, float) and not value.is_integer()
    ):
        raise ValueError(f"line {line.get('lineNumber')}: {field} must be a whole number, got {value!r}")
    return int(value)


def _positive_whole(value: Any, line: dict[str, Any], field: str) -> int:
    number = _whole(value, line, field)
    if number < 1:
        raise ValueError(f"line {line.get('lineNumber')}: {field} must be at least 1, got {value!r}")
    return number


def _money(value: Any) -> Decimal | None:
    # str() first: Decimal(249.1) would carry the binary float's noise into the sums.
    if value is None or isinstance(value, bool):
        return None
    return Decimal(str(value)).quantize(CENT, ROUND_HALF_UP)


class SoftKits:
    """Plugin adapter for :func:`collapse`; takes no parameters."""

    name: ClassVar[str] = "soft_kits"

    def __init__(self, params: dict[str, Any], *, base_dir: Path) -> None:
        if params:
            raise ConfigError(f"{sorted(params)[0]}: unknown parameter (soft_kits takes none)")

    def apply(self, record: dict[str, Any]) -> dict[str, Any]:
        if "lines" not in record:
            return dict(record)
        lines = record["lines"]
        if not isinstance(lines, list) or not all(isinstance(line, dict) for line in lines):
            raise ValueError("lines must be a list of objects")
        return {**record, "lines": collapse(lines)}
