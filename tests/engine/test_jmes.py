"""The compiled closures must agree with the reference JMESPath interpreter on every expression kind."""

from __future__ import annotations

import re

import jmespath
import pytest

from engine import jmes

DOCUMENTS = [
    {"id": "1004417", "n": 0, "flag": False, "empty": "", "none": None, "zero": 0,
     "customer": {"emailAddress": "a@b.co",
                  "phones": [{"type": "Home", "number": "1"}, {"type": "Mobile", "number": "2"}]},
     "lines": [{"lineNumber": 1, "quantity": 4, "brand": "T", "tags": ["a", "b"], "price": 2.5},
               {"lineNumber": 2, "quantity": 1, "brand": None, "tags": [], "price": 10},
               {"lineNumber": 3, "quantity": 0, "brand": "S", "tags": ["b", ["c"]], "price": 0}],
     "totals": {"a": 1, "b": 2}, "nested": [[1, 2], [3, [4]], 5]},
    {"lines": None, "customer": "not an object", "totals": [], "nested": {}},
    [],
    None,
    "text",
]

EXPRESSIONS = [
    "id", "customer.emailAddress", "customer.phones[0].number", "customer.phones[-1].number",
    "customer.phones[5]", "customer.phones[?type=='Mobile'].number | [0]",
    "customer.phones[?type=='Mobile'].number | [0] || customer.phones[0].number",
    "lines[].brand", "lines[*].lineNumber", "lines[].tags[]", "nested[]", "nested[][]", "totals.*", "totals.* | [0]",
    "lines[?quantity > `1`].lineNumber", "lines[?quantity >= `1`].lineNumber", "lines[?quantity < `1`]",
    "lines[?quantity <= `1`].lineNumber", "lines[?brand != null].brand", "lines[?brand == 'T']",
    "lines[?price > '1']", "length(lines)", "sum(lines[].quantity)", "max(lines[].price)", "join(',', lines[].brand)",
    "sort_by(lines, &price)[0].lineNumber", "max_by(lines, &quantity).lineNumber", "lines[0:2].lineNumber",
    "lines[::-1].lineNumber", "[id, customer.emailAddress]", "{i: id, q: lines[0].quantity}", "!flag", "!zero", "!n",
    "!!(customer.emailAddress)", "flag || 'x'", "empty || none || 'y'", "id && flag", "zero && 'z'", "`[1, 2]`",
    "'literal'", "@", "@.id", "[sellLocation.id, lines[].brand][]", "lower('ABC')", "upper(id)", "trim(' x ')",
    "round(`2.456`, `1`)", "to_string(n)", "not_null(none, empty, id)", "contains(lines[].brand, 'S')",
    "type(totals)", "keys(totals)", "values(totals)", "starts_with(id, '100')", "zero == `false`", "n == `0`",
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_compiled_expression_matches_reference_interpreter(expression: str) -> None:
    compiled = jmes.compile_expression(expression)
    options = jmespath.Options(custom_functions=jmes.FUNCTIONS)
    for document in DOCUMENTS:
        try:
            expected = jmespath.search(expression, document, options=options)
        except jmespath.exceptions.JMESPathError as exc:
            with pytest.raises(type(exc)):
                compiled(document)
            continue
        except TypeError:
            # The reference interpreter crashes ordering a number against a string; the spec says null.
            assert compiled(document) in (None, []), (expression, document)
            continue
        assert compiled(document) == expected, (expression, document)


@pytest.mark.parametrize(("expression", "message"), [
    ("lenght(lines)", "unknown function lenght() (did you mean length()?)"),
    ("length(a, b)", "length() takes 1 argument(s), got 2"),
    ("join(',')", "join() takes 2 argument(s), got 1"),
    ("lines[.x", "bad JMESPath 'lines[.x'"),
    ("a ||", "bad JMESPath"),
    ("'unterminated", "bad JMESPath"),
])
def test_bad_expressions_are_refused_at_compile_time(expression: str, message: str) -> None:
    with pytest.raises(jmes.ExpressionError, match=re.escape(message)):
        jmes.compile_expression(expression)


def test_variadic_functions_accept_many_arguments() -> None:
    assert jmes.compile_expression("not_null(a, b, c, `1`)")({}) == 1


def test_custom_functions_check_their_argument_types() -> None:
    with pytest.raises(jmespath.exceptions.JMESPathTypeError):
        jmes.compile_expression("lower(n)")({"n": 3})
