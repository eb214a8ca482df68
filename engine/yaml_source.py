"""YAML files read with their line numbers kept.

Decoded YAML forgets where a value came from; the analyst needs ``file:line:col``. So files are composed
into PyYAML's node tree (which keeps ``start_mark`` on every node) and decoded by hand, recording the
position of every value and every mapping key under its path (a tuple of keys and list indexes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.errors import Problem

JsonPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Loc:
    file: str
    line: int
    col: int


@dataclass
class Source:
    """Decoded YAML plus where each value (``values``) and each mapping key (``keys``) stands."""

    data: Any
    values: dict[JsonPath, Loc] = field(default_factory=dict)
    keys: dict[JsonPath, Loc] = field(default_factory=dict)

    def where(self, path: JsonPath, *, key: bool = False) -> Loc:
        """The position of ``path``, or of its nearest ancestor that has one."""
        table = self.keys if key else self.values
        for end in range(len(path), -1, -1):
            loc = table.get(path[:end]) or self.values.get(path[:end])
            if loc is not None:
                return loc
        raise RuntimeError("a Source always knows where its root is")


def dotted(path: JsonPath) -> str:
    """``("webhooks", "OrderWrittenSale", "events", 0)`` -> ``webhooks.OrderWrittenSale.events[0]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load(path: Path, display: str | None = None) -> Source:
    """Read one YAML file. Raises ``YamlError`` carrying a Problem for syntax errors and duplicate keys."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise YamlError([Problem(name, 1, 1, "", f"cannot read file: {exc.strerror}")]) from exc
    return parse(text, name)


def parse(text: str, name: str) -> Source:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        source = Source(data=None)
        problems: list[Problem] = []
        if node is None:
            source.data = {}
            source.values[()] = Loc(name, 1, 1)
        else:
            source.data = _decode(loader, node, (), source, problems, name)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise YamlError([Problem(name, line, col, "", f"YAML syntax: {exc.problem or exc}")]) from exc
    finally:
        loader.dispose()
    if problems:
        raise YamlError(problems)
    return source


class YamlError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


def _loc(node: yaml.Node, name: str) -> Loc:
    return Loc(name, node.start_mark.line + 1, node.start_mark.column + 1)


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _pairs(node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node]]:
    """The mapping's pairs with ``<<: *anchor`` expanded where it stands (PyYAML would move it first),
    so the analyst's order of properties is the order they are sent in. Explicit keys still win."""
    explicit = {k.value for k, _ in node.value if k.tag != _MERGE_TAG and isinstance(k, yaml.ScalarNode)}
    pairs: list[tuple[yaml.Node, yaml.Node]] = []
    taken: set[str] = set()
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE_TAG:
            pairs.append((key_node, value_node))
            continue
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "a merge key (<<) takes a mapping or a list of mappings", value_node.start_mark)
            for merged_key, merged_value in _pairs(source):
                name = merged_key.value
                if name not in explicit and name not in taken:
                    taken.add(name)
                    pairs.append((merged_key, merged_value))
    return pairs


def _decode(loader: yaml.SafeLoader, node: yaml.Node, path: JsonPath, source: Source,
            problems: list[Problem], name: str) -> Any:
    source.values[path] = _loc(node, name)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in _pairs(node):
            # Keys are names: `no:` or `on:` stay the text written, not YAML 1.1 booleans.
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(loader.construct_object(key_node))
            child = (*path, key)
            if key in out:
                loc = _loc(key_node, name)
                problems.append(Problem(name, loc.line, loc.col, dotted(child), "duplicate key"))
                continue
            source.keys[child] = _loc(key_node, name)
            out[key] = _decode(loader, value_node, child, source, problems, name)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_decode(loader, item, (*path, i), source, problems, name) for i, item in enumerate(node.value)]
    return loader.construct_object(node)
