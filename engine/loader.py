"""Loading retailer mappings: read the YAML, follow ``extends``, merge, check, compile.

A file's ``extends: base`` names ``base.yaml`` in the same folder. The file is merged over its base: objects
merge key by key, anything else (strings, lists) replaces, and ``key: null`` removes what the base had.
Every value keeps the file and line it came from, so problems point at the right file.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from engine import mapping_schema, yaml_source
from engine.compile import Retailer, compile_retailer
from engine.errors import ConfigError, Problem
from engine.paths import MAPPINGS, display
from engine.yaml_source import JsonPath, Source

_FILE_KEYS = ("abstract", "extends", "retailer")


def mapping_files(folder: Path = MAPPINGS) -> list[Path]:
    return sorted(folder.glob("*.yaml"))


def load_file(path: Path, registry: dict[str, type] | None = None) -> Retailer:
    """Load, check and compile one mapping file; raises ConfigError listing every problem."""
    if registry is None:
        from plugins import REGISTRY as registry
    source = _read_merged(path, ())
    problems = mapping_schema.check(source)
    problems.extend(_identity_problems(path, source))
    retailer, compile_problems = compile_retailer(source, source.data, registry)
    problems.extend(compile_problems)
    if problems or retailer is None:
        raise ConfigError(_once_per_place(problems))
    return retailer


def _once_per_place(problems: list[Problem]) -> list[Problem]:
    """A mistake in a YAML anchor is seen once per alias; the analyst fixes it once, so report it once."""
    seen: set[tuple[str, int, int, str]] = set()
    out = []
    for problem in sorted(problems):
        place = (problem.file, problem.line, problem.col, problem.message)
        if place not in seen:
            seen.add(place)
            out.append(problem)
    return out


def load_retailer(name: str, folder: Path = MAPPINGS) -> Retailer:
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = [p.stem for p in mapping_files(folder) if p.stem != name]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(known)}"
        raise ConfigError(f"no mapping for retailer {name!r} in {display(folder)}{hint}")
    return load_file(path)


def load_all(folder: Path = MAPPINGS) -> dict[str, Retailer]:
    """Every servable (non-abstract) retailer in ``folder``; ConfigError with all problems of all files."""
    retailers: dict[str, Retailer] = {}
    problems: list[Problem] = []
    for path in mapping_files(folder):
        try:
            retailer = load_file(path)
        except ConfigError as exc:
            problems.extend(exc.problems or [Problem(display(path), 1, 1, "", str(exc))])
            continue
        if not retailer.abstract:
            retailers[retailer.name] = retailer
    if problems:
        raise ConfigError(problems)
    return retailers


def check_files(paths: list[Path]) -> list[Problem]:
    """Every problem in ``paths`` (each file checked with what it extends)."""
    problems: list[Problem] = []
    for path in paths:
        try:
            load_file(path)
        except ConfigError as exc:
            problems.extend(exc.problems or [Problem(display(path), 1, 1, "", str(exc))])
    return sorted(set(problems))


def _identity_problems(path: Path, source: Source) -> list[Problem]:
    data = source.data if isinstance(source.data, dict) else {}
    if data.get("abstract") is True:
        return []
    name = data.get("retailer")
    loc = source.where(("retailer",) if "retailer" in data else ())
    if name is None:
        return [Problem(loc.file, loc.line, loc.col, "", f"missing required key 'retailer' (use {path.stem!r})")]
    if name != path.stem:
        return [Problem(loc.file, loc.line, loc.col, "retailer",
                        f"retailer {name!r} must match the file name {path.name!r}")]
    return []


def _read_merged(path: Path, chain: tuple[Path, ...]) -> Source:
    try:
        source = yaml_source.load(path, display(path))
    except yaml_source.YamlError as exc:
        raise ConfigError(exc.problems) from exc
    if not isinstance(source.data, dict):
        loc = source.where(())
        raise ConfigError([Problem(loc.file, loc.line, loc.col, "", "a mapping file must be a YAML object")])
    parent = source.data.get("extends")
    if parent is None:
        return source
    loc = source.where(("extends",))
    base_path = path.parent / f"{parent}.yaml"
    if not isinstance(parent, str) or not base_path.is_file():
        known = [p.stem for p in mapping_files(path.parent) if p != path]
        close = difflib.get_close_matches(str(parent), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError([Problem(loc.file, loc.line, loc.col, "extends",
                                   f"extends {parent!r}, but there is no {parent}.yaml beside this file{hint}")])
    if base_path.resolve() in chain or base_path.resolve() == path.resolve():
        raise ConfigError([Problem(loc.file, loc.line, loc.col, "extends",
                                   f"extends {parent!r} in a cycle: {' -> '.join(p.stem for p in chain)}")])
    base = _read_merged(base_path, (*chain, path.resolve()))
    return merge(base, source)


def merge(base: Source, over: Source) -> Source:
    """``over`` laid over ``base``; file-level keys (abstract, extends, retailer) are never inherited."""
    base_data = {k: v for k, v in base.data.items() if k not in _FILE_KEYS}
    data = _merge(base_data, over.data)
    merged = Source(data=data)
    for path in _paths(data, ()):
        loc = over.values.get(path) or base.values.get(path)
        if loc is not None:
            merged.values[path] = loc
        key_loc = over.keys.get(path) or base.keys.get(path)
        if key_loc is not None:
            merged.keys[path] = key_loc
    merged.values[()] = over.values[()]
    return merged


def _merge(base: Any, over: Any) -> Any:
    if not (isinstance(base, dict) and isinstance(over, dict)):
        return over
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif key in out:
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _paths(value: Any, prefix: JsonPath) -> list[JsonPath]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.extend(_paths(item, (*prefix, i)))
    return out
