"""The compiled fast path renders exactly what Jinja renders, and fails where Jinja fails."""

from __future__ import annotations

import jinja2
import pytest

from engine.templates import ENVIRONMENT, compile_template

SCOPES = [
    {"id": "1004417", "n": 3, "price": 19.5, "flag": True, "off": False, "none": None,
     "record": {"id": "Q-1", "customer": {"id": 7}}, "kitId": "BRM-5PC", "isKit": True, "lineNumber": 2},
    {"id": 0, "n": None, "price": 1.0, "flag": False, "off": True, "none": None,
     "record": {"id": None, "customer": {}}, "kitId": None, "isKit": False, "lineNumber": 10},
]

TEMPLATES = [
    "order:{{ id }}", "plain text", "", "{{ record.id }}:{{ record.customer.id }}", "{{ none }}", "{{ price }}",
    "{{ flag }}", "{{ 'kit:' ~ kitId if isKit else 'line:' ~ lineNumber }}",
    "order:{{ record.id }}:{{ 'kit:' ~ kitId if isKit else 'line:' ~ lineNumber }}", "{{ n ~ '-' ~ none }}",
    "{{ 1 if flag else 2 }}", "{{ id | upper }}", "{% if flag %}yes{% endif %}", "{{ record.customer.items }}",
    "{{ record.missing }}", "{{ nothing }}", "{{ record.customer.id.deeper }}",
]


@pytest.mark.parametrize("text", TEMPLATES)
def test_fast_path_renders_like_jinja(text: str) -> None:
    reference = ENVIRONMENT.from_string(text)
    compiled = compile_template(text)
    for scope in SCOPES:
        try:
            expected = reference.render(scope)
        except jinja2.UndefinedError:
            with pytest.raises(jinja2.UndefinedError):
                compiled.render(scope)
            continue
        assert compiled.render(scope) == expected, (text, scope)


def test_syntax_errors_surface_at_compile_time() -> None:
    with pytest.raises(jinja2.TemplateSyntaxError):
        compile_template("order:{{ id }")


def test_templates_are_sandboxed() -> None:
    with pytest.raises(jinja2.exceptions.SecurityError):
        compile_template("{{ ''.__class__.__mro__ }}").render({})
