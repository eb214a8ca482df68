"""Sandboxed Jinja2 templates for composed strings such as ``order:{{ id }}``.

One environment for the whole project: sandboxed (mapping files are data, not code), strict about
undefined names (a typo must fail, not render an empty id), and rendering null as an empty string.
"""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment


def _finalize(value: Any) -> Any:
    return "" if value is None else value


ENVIRONMENT = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined, autoescape=False, finalize=_finalize, keep_trailing_newline=False
)

TemplateError = jinja2.TemplateError


def compile_template(text: str) -> jinja2.Template:
    """Compile ``text`` once; raises ``jinja2.TemplateSyntaxError`` with the line inside the template."""
    return ENVIRONMENT.from_string(text)
