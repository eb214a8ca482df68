"""Compiling and rendering the URL templates of review_urls and cart_links.

The templates run in the project's one Jinja environment (:mod:`engine.templates`: sandboxed and immutable, so a
template cannot change the record; ``StrictUndefined``, so a misspelt name fails the record instead of yielding a
broken URL; no autoescaping; null renders as an empty string), with one change, made in an overlay so the engine's
own templates are unaffected: ``urlencode`` is stricter than Jinja's.

Escaping is the template's job: put every value that is not a literal through ``urlencode``, e.g.
``https://shop.example/review?order={{ order_id|urlencode }}&product={{ line.webProductId|urlencode }}``.
Here ``urlencode`` percent-encodes a string or number as UTF-8 with no safe characters at all (space -> ``%20``,
``&`` -> ``%26``, ``/`` -> ``%2F``, ``é`` -> ``%C3%A9``), so the same filter is right in a query value and in a
path segment (Jinja's own leaves ``/`` alone, which breaks a path). A dict or a list of pairs still becomes a
whole query string, as in Jinja; null becomes an empty string, as everywhere else in the project.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import jinja2
from jinja2 import filters

from engine.errors import ConfigError
from engine.templates import ENVIRONMENT, Template
from engine.templates import compile_template as compile_in


def _urlencode(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return quote(str(value), safe="")
    return filters.do_urlencode(value)


_URL_ENVIRONMENT = ENVIRONMENT.overlay()
# An overlay shares its parent's filter dict; a copy keeps the stricter filter out of the engine's templates.
_URL_ENVIRONMENT.filters = {**ENVIRONMENT.filters, "urlencode": _urlencode}


def compile_template(source: Any, *, param: str) -> Template:
    """Compile a template from plugin parameter ``param``; a bad one is a ConfigError naming the parameter."""
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"{param}: must be a non-empty template string, got {source!r}")
    try:
        return compile_in(source, _URL_ENVIRONMENT)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"{param}: template syntax error on line {exc.lineno}: {exc.message}") from exc


def template_param(params: dict[str, Any], *, plugin: str) -> Template:
    """The one parameter of a URL plugin, ``template``, compiled; anything else in ``params`` is a ConfigError."""
    unknown = sorted(set(params) - {"template"})
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown parameter ({plugin} takes: template)")
    return compile_template(params.get("template"), param="template")


def render(template: Template, **context: Any) -> str:
    """Render a URL; surrounding whitespace (a YAML block scalar's trailing newline) is dropped."""
    return template.render(context).strip()
