"""Sandboxed Jinja2 templates for composed strings such as ``order:{{ id }}``.

One environment for the whole project: sandboxed (mapping files are data, not code), strict about
undefined names (a typo must fail, not render an empty id), and rendering null as an empty string.

Most templates are ids and URLs: text, names, ``a.b`` lookups, ``~``, ``x if c else y`` and plain filters
such as ``urlencode``. Those are
compiled into plain Python closures with Jinja's semantics (Jinja builds a new context object on every
render, which dominates the hot path); any other template renders through Jinja itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment


def _finalize(value: Any) -> Any:
    return "" if value is None else value


ENVIRONMENT = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined, autoescape=False, finalize=_finalize, keep_trailing_newline=False
)

TemplateError = jinja2.TemplateError
Expression = Callable[[Any], Any]
# Jinja looks attributes up before items: `x.items` on a dict is the method, not the key. Templates naming
# such attributes keep Jinja's own rendering.
_DICT_ATTRIBUTES = frozenset(dir(dict))


class Template:
    """A compiled template; ``render(mapping)`` as with Jinja."""

    __slots__ = ("source", "_render")

    def __init__(self, source: str, render: Callable[[Any], str]) -> None:
        self.source = source
        self._render = render

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def render(self, context: Any) -> str:
        return self._render(context)


def compile_template(text: str, environment: jinja2.Environment = ENVIRONMENT) -> Template:
    """Compile ``text`` once; raises ``jinja2.TemplateSyntaxError`` with the line inside the template.

    ``environment`` is ``ENVIRONMENT`` or an overlay of it with other filters."""
    tree = environment.parse(text)
    fast = _compile_body(tree, environment.filters)
    if fast is not None:
        return Template(text, fast)
    template = environment.from_string(tree)
    return Template(text, lambda context: template.render(context))


def _compile_body(tree: nodes.Template, filters: dict[str, Callable[..., Any]]) -> Callable[[Any], str] | None:
    parts: list[Expression] = []
    for statement in tree.body:
        if not isinstance(statement, nodes.Output):
            return None
        for node in statement.nodes:
            if isinstance(node, nodes.TemplateData):
                text = node.data
                parts.append(lambda scope, text=text: text)
                continue
            expression = _compile_expression(node, filters)
            if expression is None:
                return None
            parts.append(lambda scope, expression=expression: _output(expression(scope)))
    frozen = tuple(parts)
    return lambda scope: "".join([part(scope) for part in frozen])


def _output(value: Any) -> str:
    return "" if value is None else str(value)


def _compile_expression(node: nodes.Node, filters: dict[str, Callable[..., Any]]) -> Expression | None:
    if isinstance(node, nodes.Const):
        value = node.value
        return lambda scope: value
    if isinstance(node, nodes.Name) and node.ctx == "load":
        return _lookup((node.name,))
    if isinstance(node, nodes.Getattr):
        path = _attribute_path(node)
        return None if path is None else _lookup(path)
    if isinstance(node, nodes.Concat):
        items = [_compile_expression(child, filters) for child in node.nodes]
        if any(item is None for item in items):
            return None
        frozen = tuple(items)
        return lambda scope: "".join([str(item(scope)) for item in frozen])  # type: ignore[misc]
    if isinstance(node, nodes.CondExpr) and node.expr2 is not None:
        test, yes, no = (_compile_expression(n, filters) for n in (node.test, node.expr1, node.expr2))
        if test is None or yes is None or no is None:
            return None
        return lambda scope: yes(scope) if test(scope) else no(scope)
    if isinstance(node, nodes.Filter) and node.node is not None and not (
            node.args or node.kwargs or node.dyn_args or node.dyn_kwargs):
        function = filters.get(node.name)
        inner = _compile_expression(node.node, filters)
        # Filters that want Jinja's context or environment passed in keep Jinja's rendering.
        if function is None or inner is None or getattr(function, "jinja_pass_arg", None) is not None:
            return None
        return lambda scope: function(inner(scope))
    return None


def _attribute_path(node: nodes.Node) -> tuple[str, ...] | None:
    if isinstance(node, nodes.Name) and node.ctx == "load":
        return (node.name,)
    if isinstance(node, nodes.Getattr) and node.attr not in _DICT_ATTRIBUTES:
        parent = _attribute_path(node.node)
        return None if parent is None else (*parent, node.attr)
    return None


def _lookup(path: tuple[str, ...]) -> Expression:
    def lookup(scope: Any) -> Any:
        value = scope
        for depth, key in enumerate(path):
            if isinstance(value, dict) and key in value:
                value = value[key]
                continue
            if depth == 0:
                raise jinja2.UndefinedError(f"{key!r} is undefined")
            raise jinja2.UndefinedError(f"{type(value).__name__} object has no attribute {key!r}"
                                        f" (in {'.'.join(path)})")
        return value

    return lookup
