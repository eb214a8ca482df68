from __future__ import annotations

from typing import Any

import jinja2
import pytest

from engine.errors import ConfigError
from engine.templates import ENVIRONMENT
from plugins.url_templates import compile_template, render


@pytest.mark.parametrize(("value", "encoded"), [
    ("a b", "a%20b"), ("A&B=C", "A%26B%3DC"), ("12/34", "12%2F34"), ("Chaise été", "Chaise%20%C3%A9t%C3%A9"),
    ("?#%+", "%3F%23%25%2B"), (7712001, "7712001"), (None, ""),
])
def test_urlencode_escapes_every_reserved_character(value: Any, encoded: str) -> None:
    assert render(compile_template("{{ v|urlencode }}", param="t"), v=value) == encoded


def test_urlencode_still_turns_a_mapping_into_a_query_string() -> None:
    template = compile_template("{{ q|urlencode }}", param="t")
    assert render(template, q={"id": "a/b c", "n": 2}) == "id=a%2Fb+c&n=2"


def test_the_engine_environment_keeps_jinjas_own_urlencode() -> None:
    compile_template("{{ v|urlencode }}", param="t")
    assert ENVIRONMENT.from_string("{{ v|urlencode }}").render(v="a/b") == "a/b"


def test_rendering_strips_the_whitespace_yaml_block_scalars_leave() -> None:
    assert render(compile_template("  https://x.example/{{ v }}\n", param="t"), v="1") == "https://x.example/1"


@pytest.mark.parametrize(("source", "message"), [
    ("https://x/{{ v ", "template: template syntax error on line 1: "),
    ("{% for x in y %}\n{{ x }}", "template: template syntax error on line 2: "),
    ("", "template: must be a non-empty template string, got ''"),
    (42, "template: must be a non-empty template string, got 42"),
])
def test_bad_templates_are_config_errors_naming_the_param(source: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_template(source, param="template")
    assert str(info.value).startswith(message)


def test_templates_are_strict_and_sandboxed() -> None:
    with pytest.raises(jinja2.UndefinedError):
        render(compile_template("{{ lnie.id }}", param="t"), line={"id": 1})
    with pytest.raises(jinja2.exceptions.SecurityError):
        render(compile_template("{{ line.update({'id': 2}) }}", param="t"), line={"id": 1})
