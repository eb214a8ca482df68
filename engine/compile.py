"""A merged, schema-checked mapping document compiled into the plan the hot path runs.

Every expression, template, date rule and plugin is built here, once; every problem found is collected
with its file, line and path (the compiler keeps going after the first). The plan is plain objects whose
fields are compiled functions: applying it (``engine.apply``) does no parsing.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from engine import dates, jmes
from engine.errors import ConfigError, Problem
from engine.templates import Template, compile_template
from engine.values import Fields, Value, compile_fields, compile_value
from engine.yaml_source import JsonPath, Loc, Source, dotted

PROFILE_FIELDS = ("email", "phone_number", "external_id", "first_name", "last_name")


@dataclass(frozen=True)
class Settings:
    timezone: ZoneInfo
    default_country: str
    date_formats: tuple[str, ...]


@dataclass(frozen=True)
class Fetch:
    """How a webhook's entity is read from STORIS: ``path`` and ``params`` render with ``entity_id``."""

    path: Template
    params: tuple[tuple[str, Template], ...]
    record: jmes.Getter

    def request(self, entity_id: str) -> tuple[str, list[tuple[str, str]]]:
        context = {"entity_id": entity_id}
        return self.path.render(context), [(name, t.render(context)) for name, t in self.params]


@dataclass(frozen=True)
class StorisRequest:
    """A configured STORIS call (tenants differ): every string of ``body`` is a template."""

    method: str
    path: Template
    body: Any

    def render(self, **context: Any) -> tuple[str, str, Any]:
        return self.method, self.path.render(context), _render_json(self.body, context)


def _render_json(value: Any, context: dict[str, Any]) -> Any:
    if isinstance(value, Template):
        return value.render(context)
    if isinstance(value, dict):
        return {k: _render_json(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_json(v, context) for v in value]
    return value


@dataclass(frozen=True)
class Subscriptions:
    """STORIS's webhook subscription API: how to list and create, and how to read a listed subscription."""

    list: StorisRequest
    create: StorisRequest
    items: jmes.Getter
    event_type: jmes.Getter
    url: jmes.Getter


@dataclass(frozen=True)
class Consent:
    """Unsubscribes to STORIS and purchase subscriptions; None parts are not configured."""

    system_secret_env: str | None
    flow_secret_env: str | None
    update: StorisRequest | None
    find_by_email: StorisRequest | None
    found_customer_id: jmes.Getter | None
    list_id: str | None
    subscribe_events: tuple[str, ...]
    ok_to_solicit: jmes.Getter | None


@dataclass(frozen=True)
class EventPlan:
    key: str
    metric: str
    when: jmes.Getter | None
    for_each: jmes.Getter | None
    profile: Fields
    time: Value | None
    value: Value | None
    value_currency: Value | None
    unique_id: Value
    properties: Fields
    where: str


@dataclass(frozen=True)
class WebhookPlan:
    type: str
    enabled: bool
    fetch: Fetch | None
    record_id: jmes.Getter
    plugins: tuple[tuple[str, Any], ...]
    events: tuple[EventPlan, ...]


@dataclass(frozen=True)
class Retailer:
    """A compiled retailer: what each webhook type becomes, and where its systems are."""

    name: str
    file: str
    abstract: bool
    settings: Settings
    webhooks: dict[str, WebhookPlan]
    connections: dict[str, Any] = field(default_factory=dict)
    plugins: dict[str, Any] = field(default_factory=dict)
    subscriptions: Subscriptions | None = None
    consent: Consent | None = None

    def __repr__(self) -> str:
        return f"Retailer(name={self.name!r}, file={self.file!r}, webhooks={sorted(self.webhooks)!r})"


class _Compiler:
    def __init__(self, source: Source, registry: dict[str, type]) -> None:
        self.source = source
        self.registry = registry
        self.problems: list[Problem] = []
        self.settings: Settings | None = None

    def where(self, path: JsonPath) -> Loc:
        return self.source.where(path)

    def problem(self, path: JsonPath, message: str, *, key: bool = False, offset: int = 0) -> None:
        loc = self.source.where(path, key=key)
        self.problems.append(Problem(loc.file, loc.line, loc.col + offset, dotted(path), message))

    def expression(self, text: Any, path: JsonPath) -> jmes.Getter | None:
        if not isinstance(text, str):
            return None
        try:
            return jmes.compile_expression(text)
        except jmes.ExpressionError as exc:
            self.problem(path, str(exc))
            return None

    def template(self, text: Any, path: JsonPath) -> Template | None:
        if not isinstance(text, str):
            return None
        try:
            return compile_template(text)
        except jinja2.TemplateSyntaxError as exc:
            self.problem(path, f"bad template {text!r}: {exc.message} (template line {exc.lineno})")
            return None

    def date_rule(self, spec: Any, path: JsonPath) -> dates.DateRule | None:
        if self.settings is None:
            return None
        formats = self.settings.date_formats
        tz = self.settings.timezone
        if isinstance(spec, dict):
            if isinstance(spec.get("formats"), list):
                formats = self._formats(spec["formats"], (*path, "formats"))
            if isinstance(spec.get("timezone"), str):
                tz = self._zone(spec["timezone"], (*path, "timezone"))
        if formats is None or tz is None:
            return None
        return dates.DateRule(formats=formats, tz=tz)

    def _formats(self, formats: list, path: JsonPath) -> tuple[str, ...] | None:
        ok = True
        for i, fmt in enumerate(formats):
            try:
                dates.check_format(str(fmt))
            except ValueError as exc:
                self.problem((*path, i), str(exc))
                ok = False
        return tuple(str(f) for f in formats) if ok else None

    def _zone(self, name: str, path: JsonPath) -> ZoneInfo | None:
        try:
            return dates.zone(name)
        except ValueError as exc:
            self.problem(path, str(exc))
            return None

    def compile(self, doc: dict) -> Retailer | None:
        raw_settings = doc.get("settings") if isinstance(doc.get("settings"), dict) else {}
        tz = self._zone(str(raw_settings.get("timezone", "UTC")), ("settings", "timezone"))
        raw_formats = raw_settings.get("date_formats", [dates.ISO])
        formats = self._formats(raw_formats, ("settings", "date_formats")) if isinstance(raw_formats, list) else None
        if tz is not None and formats is not None:
            self.settings = Settings(timezone=tz, default_country=str(raw_settings.get("default_country", "US")),
                                     date_formats=formats)
        abstract = doc.get("abstract") is True
        plugins = self._plugins(doc, abstract)
        webhooks = {}
        for name, spec in _mapping(doc.get("webhooks")).items():
            if isinstance(spec, dict):
                plan = self._webhook(name, spec, plugins, abstract)
                if plan is not None:
                    webhooks[name] = plan
        subscriptions = self._subscriptions(_mapping(_mapping(doc.get("connections")).get("storis")))
        consent = self._consent(_mapping(doc.get("consent")), webhooks)
        if self.problems or self.settings is None:
            return None
        loc = self.where(())
        return Retailer(name=str(doc.get("retailer", Path(loc.file).stem)), file=loc.file, abstract=abstract,
                        settings=self.settings, webhooks=webhooks,
                        connections=_mapping(doc.get("connections")), plugins=plugins,
                        subscriptions=subscriptions, consent=consent)

    def _request(self, spec: Any, at: JsonPath) -> StorisRequest | None:
        if not isinstance(spec, dict) or not isinstance(spec.get("method"), str):
            return None
        path = self.template(spec.get("path"), (*at, "path"))
        body = self._json_templates(spec.get("body"), (*at, "body"))
        return None if path is None else StorisRequest(method=spec["method"], path=path, body=body)

    def _json_templates(self, value: Any, at: JsonPath) -> Any:
        if isinstance(value, str):
            return self.template(value, at)
        if isinstance(value, dict):
            return {k: self._json_templates(v, (*at, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self._json_templates(v, (*at, i)) for i, v in enumerate(value)]
        return value

    def _subscriptions(self, storis: dict) -> Subscriptions | None:
        spec = _mapping(storis.get("subscriptions"))
        at: JsonPath = ("connections", "storis", "subscriptions")
        parts = {
            "list": self._request(spec.get("list"), (*at, "list")),
            "create": self._request(spec.get("create"), (*at, "create")),
            "items": self.expression(spec.get("items"), (*at, "items")),
            "event_type": self.expression(spec.get("event_type"), (*at, "event_type")),
            "url": self.expression(spec.get("url"), (*at, "url")),
        }
        return None if any(v is None for v in parts.values()) else Subscriptions(**parts)  # type: ignore[arg-type]

    def _consent(self, spec: dict, webhooks: dict[str, WebhookPlan]) -> Consent | None:
        if not spec:
            return None
        hooks = _mapping(spec.get("klaviyo_webhooks"))
        unsubscribe = _mapping(spec.get("unsubscribe"))
        subscribe = _mapping(spec.get("subscribe_on_purchase"))
        at: JsonPath = ("consent",)
        events = tuple(str(e) for e in subscribe.get("events") or [])
        known = {plan.key for hook in webhooks.values() for plan in hook.events}
        for i, key in enumerate(events):
            if webhooks and key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.problem((*at, "subscribe_on_purchase", "events", i), f"no event {key!r} is mapped{hint}")
        ok = subscribe.get("ok_to_solicit", "customer.okToSolicit")
        return Consent(
            system_secret_env=hooks.get("system_secret_env"), flow_secret_env=hooks.get("flow_secret_env"),
            update=self._request(unsubscribe.get("update"), (*at, "unsubscribe", "update")),
            find_by_email=self._request(unsubscribe.get("find_by_email"), (*at, "unsubscribe", "find_by_email")),
            found_customer_id=self.expression(unsubscribe["found_customer_id"],
                                              (*at, "unsubscribe", "found_customer_id"))
            if "found_customer_id" in unsubscribe else None,
            list_id=subscribe.get("list_id"), subscribe_events=events,
            ok_to_solicit=self.expression(ok, (*at, "subscribe_on_purchase", "ok_to_solicit")) if subscribe else None,
        )

    def _plugins(self, doc: dict, abstract: bool) -> dict[str, Any]:
        configured = _mapping(doc.get("plugins"))
        used: dict[str, JsonPath] = {}
        for hook, spec in _mapping(doc.get("webhooks")).items():
            if isinstance(spec, dict) and spec.get("enabled", True) is not False:
                for i, name in enumerate(spec.get("plugins") or []):
                    used.setdefault(str(name), ("webhooks", hook, "plugins", i))
        instances: dict[str, Any] = {}
        for name in list(configured) + [n for n in used if n not in configured]:
            path = ("plugins", name) if name in configured else used[name]
            cls = self.registry.get(name)
            if cls is None:
                close = difflib.get_close_matches(name, self.registry, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                known = ", ".join(sorted(self.registry))
                self.problem(path, f"unknown plugin {name!r}{hint}; known plugins: {known}", key=name in configured)
                continue
            if abstract:
                continue
            params = configured.get(name, {})
            base_dir = Path(self.where(path).file).parent
            try:
                instances[name] = cls(params if isinstance(params, dict) else {}, base_dir=base_dir)
            except ConfigError as exc:
                self.problem(path, f"plugin {name}: {exc}")
        return instances

    def _webhook(self, name: str, spec: dict, plugins: dict[str, Any], abstract: bool) -> WebhookPlan | None:
        at: JsonPath = ("webhooks", name)
        enabled = spec.get("enabled", True) is not False
        fetch = self._fetch(_mapping(spec.get("fetch")), (*at, "fetch"))
        record_id = self.expression(spec.get("record_id", "id"), (*at, "record_id"))
        base_profile = self._profile(_mapping(spec.get("profile")), (*at, "profile"))
        events = []
        for key, event in _mapping(spec.get("events")).items():
            if isinstance(event, dict) and event.get("enabled", True) is not False:
                plan = self._event(key, event, base_profile, (*at, "events", key))
                if plan is not None:
                    events.append(plan)
        chain = tuple((str(p), plugins.get(str(p))) for p in spec.get("plugins") or [])
        if record_id is None or (enabled and not abstract and any(plugin is None for _, plugin in chain)):
            return None
        return WebhookPlan(type=name, enabled=enabled, fetch=fetch, record_id=record_id, plugins=chain,
                           events=tuple(events))

    def _fetch(self, spec: dict, at: JsonPath) -> Fetch | None:
        path = self.template(spec.get("path"), (*at, "path"))
        record = self.expression(spec.get("record"), (*at, "record"))
        params = [(str(k), self.template(v, (*at, "params", k))) for k, v in _mapping(spec.get("params")).items()]
        if path is None or record is None or any(t is None for _, t in params):
            return None
        return Fetch(path=path, params=tuple(params), record=record)  # type: ignore[arg-type]

    def _profile(self, spec: dict, at: JsonPath) -> Fields | None:
        return compile_fields({name: spec[name] for name in PROFILE_FIELDS if name in spec}, at, self)

    def _event(self, key: str, spec: dict, base_profile: Fields | None,
               at: JsonPath) -> EventPlan | None:
        # Events that keep the webhook's profile share its compiled tuple, so it is evaluated once per record.
        profile = base_profile
        if "profile" in spec:
            own = self._profile(_mapping(spec["profile"]), (*at, "profile"))
            if own is not None and base_profile is not None:
                merged = {field[0]: field for field in base_profile}
                merged.update({field[0]: field for field in own})
                profile = tuple(merged[name] for name in PROFILE_FIELDS if name in merged)
            else:
                profile = None
        when = self.expression(spec["when"], (*at, "when")) if "when" in spec else None
        for_each = self.expression(spec["for_each"], (*at, "for_each")) if "for_each" in spec else None
        singles = {
            name: compile_value(spec[name], (*at, name), self) if name in spec else None
            for name in ("time", "value", "value_currency", "unique_id")
        }
        properties = compile_fields(_mapping(spec.get("properties")), (*at, "properties"), self)
        broken = (
            profile is None
            or ("when" in spec and when is None)
            or ("for_each" in spec and for_each is None)
            or any(name in spec and singles[name] is None for name in singles)
            or properties is None
            or not isinstance(spec.get("metric"), str)
            or singles["unique_id"] is None
        )
        if broken:
            return None
        loc = self.where(at)
        return EventPlan(key=key, metric=spec["metric"], when=when, for_each=for_each,
                         profile=profile,  # type: ignore[arg-type]
                         time=singles["time"], value=singles["value"], value_currency=singles["value_currency"],
                         unique_id=singles["unique_id"],  # type: ignore[arg-type]
                         properties=properties or (), where=f"{loc.file}:{loc.line}")


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def compile_retailer(source: Source, doc: dict, registry: dict[str, type]) -> tuple[Retailer | None, list[Problem]]:
    """Compile a merged, schema-checked document. Returns the plan (None on problems) and every problem."""
    compiler = _Compiler(source, registry)
    retailer = compiler.compile(doc)
    return retailer, compiler.problems
