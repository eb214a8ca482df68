"""JMESPath, compiled once into plain Python closures.

``jmespath.search`` re-parses (through a small global cache) and walks the AST with a visitor on every call;
the hot path maps tens of thousands of records, so each expression is parsed and checked once at load time
(syntax, function names, arity) and turned into nested closures that follow the visitor's semantics exactly.
Node types without a fast path fall back to the reference interpreter for that subtree.
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Callable
from typing import Any

import jmespath
from jmespath import exceptions as jexc
from jmespath import functions as jfunctions
from jmespath import visitor as jvisitor

Getter = Callable[[Any], Any]


class Functions(jfunctions.Functions):
    """The built-in JMESPath functions plus the few string and number helpers mappings need."""

    @jfunctions.signature({"types": ["string"]})
    def _func_lower(self, s: str) -> str:
        return s.lower()

    @jfunctions.signature({"types": ["string"]})
    def _func_upper(self, s: str) -> str:
        return s.upper()

    @jfunctions.signature({"types": ["string"]})
    def _func_trim(self, s: str) -> str:
        return s.strip()

    @jfunctions.signature({"types": ["number"]}, {"types": ["number"]})
    def _func_round(self, n: float, digits: int) -> float:
        return round(n, int(digits))


FUNCTIONS = Functions()
_INTERPRETER = jvisitor.TreeInterpreter(jmespath.Options(custom_functions=FUNCTIONS))
_TABLE = FUNCTIONS.FUNCTION_TABLE


class ExpressionError(Exception):
    """An expression that cannot be compiled; ``offset`` is the character position when known."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


def compile_expression(expression: str) -> Getter:
    """Parse and check ``expression``; return a function of one value that evaluates it."""
    try:
        parsed = jmespath.compile(expression).parsed
    except jexc.LexerError as exc:
        raise ExpressionError(f"bad JMESPath {expression!r}: {exc.msg}", exc.lex_position) from exc
    except jexc.ParseError as exc:
        raise ExpressionError(
            f"bad JMESPath {expression!r}: {exc.msg} at {exc.token_value!r}", exc.lex_position) from exc
    _check_functions(parsed)
    return _compile(parsed)


def plain_field(expression: str) -> str | None:
    """The key when ``expression`` is a bare field name (``brand``), which callers can read with dict.get."""
    try:
        parsed = jmespath.compile(expression).parsed
    except jexc.JMESPathError:
        return None
    return parsed["value"] if parsed["type"] == "field" else None


def search(getter: Getter, value: Any) -> Any:
    """Evaluate a compiled expression, turning JMESPath's runtime errors into ``ExpressionError``."""
    try:
        return getter(value)
    except jexc.JMESPathError as exc:
        raise ExpressionError(str(exc)) from exc


def is_false(value: Any) -> bool:
    """JMESPath falsiness: empty string, list or object, null and false (but not 0)."""
    return value == "" or value == [] or value == {} or value is None or value is False


def _check_functions(node: dict) -> None:
    if node["type"] == "function_expression":
        name = node["value"]
        spec = _TABLE.get(name)
        if spec is None:
            close = difflib.get_close_matches(name, _TABLE, n=1)
            hint = f" (did you mean {close[0]}()?)" if close else ""
            raise ExpressionError(f"unknown function {name}(){hint}")
        signature = spec["signature"]
        count = len(node["children"])
        variadic = bool(signature) and signature[-1].get("variadic")
        if count < len(signature) - (1 if variadic else 0) or (count > len(signature) and not variadic):
            raise ExpressionError(f"{name}() takes {len(signature)} argument(s), got {count}")
    for child in node.get("children", ()):
        if isinstance(child, dict):  # a slice's children are its integer bounds
            _check_functions(child)


def _compile(node: dict) -> Getter:
    build = _BUILDERS.get(node["type"])
    if build is None:
        return lambda value: _INTERPRETER.visit(node, value)
    return build(node)


def _field(node: dict) -> Getter:
    name = node["value"]

    def field(value: Any) -> Any:
        return value.get(name) if isinstance(value, dict) else None

    return field


def _chain(node: dict) -> Getter:
    children = node["children"]
    if all(c["type"] == "field" for c in children):
        names = tuple(c["value"] for c in children)

        def fields(value: Any) -> Any:
            for name in names:
                if not isinstance(value, dict):
                    return None
                value = value.get(name)
            return value

        return fields
    steps = tuple(_compile(c) for c in children)

    def chain(value: Any) -> Any:
        for step in steps:
            value = step(value)
        return value

    return chain


def _identity(node: dict) -> Getter:
    return lambda value: value


def _literal(node: dict) -> Getter:
    constant = node["value"]
    return lambda value: constant


def _index(node: dict) -> Getter:
    i = node["value"]

    def index(value: Any) -> Any:
        if not isinstance(value, list):
            return None
        try:
            return value[i]
        except IndexError:
            return None

    return index


def _projection(node: dict) -> Getter:
    left, right = (_compile(c) for c in node["children"])
    if node["children"][1]["type"] == "identity":
        def plain(value: Any) -> Any:
            base = left(value)
            if not isinstance(base, list):
                return None
            return [e for e in base if e is not None]

        return plain

    def projection(value: Any) -> Any:
        base = left(value)
        if not isinstance(base, list):
            return None
        out = []
        for element in base:
            current = right(element)
            if current is not None:
                out.append(current)
        return out

    return projection


def _value_projection(node: dict) -> Getter:
    left, right = (_compile(c) for c in node["children"])

    def value_projection(value: Any) -> Any:
        base = left(value)
        if not isinstance(base, dict):
            return None
        out = []
        for element in base.values():
            current = right(element)
            if current is not None:
                out.append(current)
        return out

    return value_projection


def _filter_projection(node: dict) -> Getter:
    left, right, condition = (_compile(c) for c in node["children"])

    def filter_projection(value: Any) -> Any:
        base = left(value)
        if not isinstance(base, list):
            return None
        out = []
        for element in base:
            if not is_false(condition(element)):
                current = right(element)
                if current is not None:
                    out.append(current)
        return out

    return filter_projection


def _flatten(node: dict) -> Getter:
    child = _compile(node["children"][0])

    def flatten(value: Any) -> Any:
        base = child(value)
        if not isinstance(base, list):
            return None
        out: list[Any] = []
        for element in base:
            if isinstance(element, list):
                out.extend(element)
            else:
                out.append(element)
        return out

    return flatten


_ORDERING = {"lt": operator.lt, "gt": operator.gt, "lte": operator.le, "gte": operator.ge}


def _comparator(node: dict) -> Getter:
    left, right = (_compile(c) for c in node["children"])
    op = node["value"]
    if op in ("eq", "ne"):
        equal = jvisitor._equals
        if op == "eq":
            return lambda value: equal(left(value), right(value))
        return lambda value: not equal(left(value), right(value))
    compare = _ORDERING[op]
    is_number = jvisitor._is_actual_number

    # Ordering is defined between two numbers or two strings; anything else is null. (The reference
    # interpreter raises TypeError for a number against a string.)
    def ordering(value: Any) -> Any:
        a, b = left(value), right(value)
        if (is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str)):
            return compare(a, b)
        return None

    return ordering


def _or(node: dict) -> Getter:
    left, right = (_compile(c) for c in node["children"])

    def either(value: Any) -> Any:
        matched = left(value)
        return right(value) if is_false(matched) else matched

    return either


def _and(node: dict) -> Getter:
    left, right = (_compile(c) for c in node["children"])

    def both(value: Any) -> Any:
        matched = left(value)
        return matched if is_false(matched) else right(value)

    return both


def _not(node: dict) -> Getter:
    child = _compile(node["children"][0])
    is_number = jvisitor._is_actual_number

    def negate(value: Any) -> Any:
        result = child(value)
        if is_number(result) and result == 0:
            return False
        return not result

    return negate


def _multi_list(node: dict) -> Getter:
    items = tuple(_compile(c) for c in node["children"])
    return lambda value: None if value is None else [item(value) for item in items]


def _multi_dict(node: dict) -> Getter:
    pairs = tuple((c["value"], _compile(c["children"][0])) for c in node["children"])
    return lambda value: None if value is None else {k: get(value) for k, get in pairs}


def _function(node: dict) -> Getter:
    if any(c["type"] == "expref" for c in node["children"]):
        return lambda value: _INTERPRETER.visit(node, value)
    name = node["value"]
    args = tuple(_compile(c) for c in node["children"])
    call = FUNCTIONS.call_function
    return lambda value: call(name, [arg(value) for arg in args])


_BUILDERS: dict[str, Callable[[dict], Getter]] = {
    "field": _field,
    "subexpression": _chain,
    "index_expression": _chain,
    "pipe": _chain,
    "identity": _identity,
    "current": _identity,
    "literal": _literal,
    "index": _index,
    "projection": _projection,
    "value_projection": _value_projection,
    "filter_projection": _filter_projection,
    "flatten": _flatten,
    "comparator": _comparator,
    "or_expression": _or,
    "and_expression": _and,
    "not_expression": _not,
    "multi_select_list": _multi_list,
    "multi_select_dict": _multi_dict,
    "function_expression": _function,
}
