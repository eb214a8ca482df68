"""One value of a mapping (a property, a profile field, ``time``...) compiled into a function.

A value is a JMESPath string or an object with exactly one source (``path``, ``template``, ``const``, ``each``)
and optional rules applied in a fixed order: ``date``, ``type`` and ``lookup`` on each scalar, then ``list``, then
``default``; ``when`` guards the whole value. The compiled function takes ``(scope, record)`` and returns
the value or ``MISSING`` (left out of the event: unknown values are not sent as null).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from jmespath.exceptions import JMESPathError

from engine import jmes
from engine.dates import DateRule
from engine.errors import MappingError
from engine.templates import TemplateError
from engine.yaml_source import JsonPath, Loc, dotted

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING", "__slots__": ()})()

Value = Callable[[Any, Any], Any]


class Compiler(Protocol):
    """What a value needs from the file being compiled: its expressions, templates, date rules, problems."""

    def expression(self, text: Any, path: JsonPath) -> jmes.Getter | None: ...
    def template(self, text: Any, path: JsonPath) -> Any: ...
    def date_rule(self, spec: Any, path: JsonPath) -> DateRule | None: ...
    def where(self, path: JsonPath) -> Loc: ...


def element_scope(element: Any, record: Any) -> Any:
    """Inside for_each and each, names resolve against the element; ``record`` reaches the whole record."""
    if isinstance(element, dict):
        scope = dict(element)
        scope["record"] = record
        return scope
    return element


def render(template: Any, scope: Any) -> str:
    return template.render(scope if isinstance(scope, dict) else {"value": scope})


def compile_value(spec: Any, path: JsonPath, compiler: Compiler) -> Value | None:
    """The function computing ``spec``, or None when it has problems (already reported to ``compiler``)."""
    if isinstance(spec, str):
        getter = compiler.expression(spec, path)
        return None if getter is None else _compose(path, compiler, getter=getter)
    if not isinstance(spec, dict):
        return None
    getter = source = None
    if "path" in spec:
        getter = compiler.expression(spec["path"], (*path, "path"))
        if getter is None:
            return None
    else:
        source = _source(spec, path, compiler)
        if source is None:
            return None
    rules: list[Callable[[Any], Any]] = []
    if spec.get("date"):
        rule = compiler.date_rule(spec["date"], (*path, "date"))
        if rule is None:
            return None
        rules.append(rule)
    if "type" in spec and spec["type"] in _CONVERTERS:
        rules.append(_CONVERTERS[spec["type"]])
    if isinstance(spec.get("lookup"), dict):
        table = dict(spec["lookup"])
        rules.append(lambda item: table.get(item, item) if isinstance(item, str) else item)
    condition = None
    if "when" in spec:
        condition = compiler.expression(spec["when"], (*path, "when"))
        if condition is None:
            return None
    list_options = spec.get("list")
    return _compose(path, compiler, getter=getter, source=source, rules=tuple(rules),
                    list_options=(list_options if isinstance(list_options, dict) else {}) if list_options else None,
                    has_default="default" in spec, default=spec.get("default"), condition=condition)


def _compose(path: JsonPath, compiler: Compiler, *, getter: jmes.Getter | None = None, source: Value | None = None,
             rules: tuple[Callable[[Any], Any], ...] = (), list_options: dict | None = None,
             has_default: bool = False, default: Any = None, condition: jmes.Getter | None = None) -> Value:
    """One closure for the whole value: source, rules, list, default and when, in that order.

    Values are the hot path (a few hundred per order), so the steps are flags tested inline rather than
    closures wrapping closures. A failure names the mapping path and the line that declared it."""
    name, where = _origin(path, compiler)
    as_list = list_options is not None
    flatten, compact, dedupe = ((list_options.get("flatten", True), list_options.get("compact", True),
                                 list_options.get("dedupe", True)) if list_options is not None else (0, 0, 0))

    def value(scope: Any, record: Any) -> Any:
        if condition is not None and jmes.is_false(condition(scope)):
            return MISSING
        try:
            result = getter(scope) if getter is not None else source(scope, record)  # type: ignore[misc]
            if rules:
                result = _apply_rules(result, rules)
            if as_list:
                result = _listify(result, flatten, compact, dedupe)
        except MappingError as exc:
            exc.context.setdefault("path", name)
            exc.context.setdefault("line", where)
            raise
        except _FAILURES as exc:
            raise MappingError(f"{type(exc).__name__}: {exc}", path=name, line=where) from exc
        if result is None or (result.__class__ is list and not result):
            return default if has_default else MISSING
        return result

    return value


def _source(spec: dict, path: JsonPath, compiler: Compiler) -> Value | None:
    if "template" in spec:
        template = compiler.template(spec["template"], (*path, "template"))
        return None if template is None else (lambda scope, record: render(template, scope))
    if "const" in spec:
        constant = spec["const"]
        return lambda scope, record: constant
    if "each" in spec:
        return _each(spec, path, compiler)
    return lambda scope, record: None


def _each(spec: dict, path: JsonPath, compiler: Compiler) -> Value | None:
    elements = compiler.expression(spec["each"], (*path, "each"))
    raw_fields = spec.get("fields")
    fields = compile_fields(raw_fields if isinstance(raw_fields, dict) else {}, (*path, "fields"), compiler)
    if elements is None or fields is None:
        return None

    def each(scope: Any, record: Any) -> Any:
        items = elements(scope)
        if not isinstance(items, list):
            return None
        return [build_object(fields, element_scope(item, record), record) for item in items]

    return each


Fields = tuple[tuple[str, Value, str | None], ...]


def compile_fields(specs: dict, path: JsonPath, compiler: Compiler) -> Fields | None:
    """Compile an object of values; None if any of them has a problem (all of them are still checked).

    Each field is (name, value, key): ``key`` is set when the value is a bare field name, which
    ``build_object`` reads with one dict lookup instead of calling the compiled value (most fields are)."""
    compiled = []
    for name, spec in specs.items():
        value = compile_value(spec, (*path, name), compiler)
        key = jmes.plain_field(spec) if isinstance(spec, str) else None
        compiled.append((name, value, key))
    if any(value is None for _, value, _ in compiled):
        return None
    return tuple(compiled)  # type: ignore[arg-type]


def build_object(fields: Fields, scope: Any, record: Any) -> dict[str, Any]:
    out = {}
    plain = scope.__class__ is dict
    for name, value, key in fields:
        if key is not None and plain:
            result = scope.get(key)
            if result is None or (result.__class__ is list and not result):
                continue
        else:
            result = value(scope, record)
            if result is MISSING:
                continue
        out[name] = result
    return out


def _apply_rules(result: Any, rules: tuple[Callable[[Any], Any], ...]) -> Any:
    """Each rule on each value (on every element of a list); null and empty strings stay unknown."""
    if result is None or result == "":
        return None
    if result.__class__ is list:
        out = []
        for item in result:
            if item is not None and item != "":
                for rule in rules:
                    item = rule(item)
                out.append(item)
        return out
    for rule in rules:
        result = rule(result)
    return result


def _listify(result: Any, flatten: bool, compact: bool, dedupe: bool) -> list[Any]:
    items = result if result.__class__ is list else [result]
    if flatten and list in map(type, items):
        flat: list[Any] = []
        for item in items:
            if item.__class__ is list:
                flat.extend(item)
            else:
                flat.append(item)
        items = flat
    if compact:
        items = [item for item in items if item is not None and item != ""]
    if dedupe:
        try:
            items = list(dict.fromkeys(items))
        except TypeError:  # objects in the list: compare them by their text
            seen: set[str] = set()
            unique = []
            for item in items:
                key = repr(item)
                if key not in seen:
                    seen.add(key)
                    unique.append(item)
            items = unique
    return items


_FAILURES = (JMESPathError, TemplateError, ValueError, TypeError)


def _origin(path: JsonPath, compiler: Compiler) -> tuple[str, str]:
    loc = compiler.where(path)
    return dotted(path), f"{loc.file}:{loc.line}"


def _to_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _to_number(value: Any) -> float | int:
    if isinstance(value, bool):
        raise ValueError(f"cannot convert {value!r} to a number")
    if isinstance(value, (int, float)):
        return value
    number = float(str(value).strip())
    return int(number) if number.is_integer() and "." not in str(value) else number


def _to_integer(value: Any) -> int:
    number = _to_number(value)
    if isinstance(number, float) and not number.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    return int(number)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "string": _to_string,
    "number": _to_number,
    "integer": _to_integer,
    "boolean": lambda value: not jmes.is_false(value),
}
