"""Applying a compiled retailer to one STORIS record: plugins, then every event of the webhook type.

The result lists Klaviyo Create Event request bodies in a stable order (events in the order the mapping
declares them, ``for_each`` events in element order) and the events skipped with their reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from jmespath.exceptions import JMESPathError

from engine import jmes, limits
from engine.compile import EventPlan, Retailer, WebhookPlan
from engine.errors import MappingError, PluginError
from engine.profile import normalize_email, to_e164
from engine.values import MISSING, build_object, element_scope


@dataclass(frozen=True)
class Event:
    """One Klaviyo event ready to send: ``body`` is a Create Event request body."""

    key: str
    metric: str
    unique_id: str
    body: dict[str, Any]


@dataclass(frozen=True)
class Skip:
    key: str
    metric: str
    unique_id: str | None
    reason: str


@dataclass
class Result:
    record_id: str | None
    events: list[Event] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)


def map_record(retailer: Retailer, webhook_type: str, record: Any, *, now: datetime | None = None) -> Result:
    """Map one record; raises MappingError (naming retailer, webhook, record, event and path) on failure."""
    plan = retailer.webhooks.get(webhook_type)
    if plan is None or not plan.enabled:
        raise MappingError(f"webhook type {webhook_type!r} is not mapped",
                           retailer=retailer.name, webhook=webhook_type)
    if not isinstance(record, dict):
        raise MappingError(f"expected a record object, got {type(record).__name__}",
                           retailer=retailer.name, webhook=webhook_type)
    record_id = _record_id(plan, record)
    try:
        record = _run_plugins(plan, record, retailer.name, record_id)
        moment = now or datetime.now(timezone.utc)
        result = Result(record_id=record_id)
        country = retailer.settings.default_country
        profiles: dict[int, dict[str, str]] = {}
        for event in plan.events:
            _map_event(event, record, country, moment, result, profiles)
        return result
    except MappingError as exc:
        for key, value in (("retailer", retailer.name), ("webhook", webhook_type), ("record", record_id)):
            exc.context.setdefault(key, value)
        raise


def _record_id(plan: WebhookPlan, record: dict) -> str | None:
    try:
        value = plan.record_id(record)
    except JMESPathError:
        return None
    return None if value is None else str(value)


def _run_plugins(plan: WebhookPlan, record: dict, retailer: str, record_id: str | None) -> dict:
    for name, plugin in plan.plugins:
        try:
            record = plugin.apply(record)
        # A plugin is third-party-like code: whatever it raises fails this record only, with its name on it.
        except Exception as exc:  # noqa: BLE001
            raise PluginError(f"{type(exc).__name__}: {exc}", plugin=name, retailer=retailer,
                              record=record_id) from exc
    return record


def _map_event(event: EventPlan, record: dict, country: str, now: datetime, result: Result,
               profiles: dict[int, dict[str, str]]) -> None:
    try:
        if event.when is not None and jmes.is_false(event.when(record)):
            return
        profile = profiles.get(id(event.profile))
        if profile is None:
            profile = profiles[id(event.profile)] = _profile(event, record, country)
        if event.for_each is None:
            _emit(event, record, record, profile, now, result)
            return
        elements = event.for_each(record)
        if isinstance(elements, list):
            for element in elements:
                _emit(event, element_scope(element, record), record, profile, now, result)
    except MappingError as exc:
        exc.context.setdefault("event", f"{event.key} ({event.metric}) at {event.where}")
        raise
    except JMESPathError as exc:
        raise MappingError(f"{type(exc).__name__}: {exc}", event=f"{event.key} ({event.metric})",
                           line=event.where) from exc


def _profile(event: EventPlan, record: dict, country: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value, _ in event.profile:
        raw = value(record, record)
        if raw is MISSING:
            continue
        if name == "email":
            normalized = normalize_email(raw)
        elif name == "phone_number":
            normalized = to_e164(raw if isinstance(raw, str) else str(raw), country)
        else:
            normalized = str(raw).strip() or None
        if normalized is not None:
            out[name] = normalized
    return out


def _emit(event: EventPlan, scope: Any, record: dict, profile: dict[str, str], now: datetime,
          result: Result) -> None:
    unique_id = event.unique_id(scope, record)
    unique_id = None if unique_id is MISSING else str(unique_id)
    if "email" not in profile and "phone_number" not in profile:
        result.skipped.append(Skip(event.key, event.metric, unique_id, "no email and no valid phone number"))
        return
    if not unique_id:
        raise MappingError("unique_id is empty: it must be derived from STORIS ids", path="unique_id")
    attributes: dict[str, Any] = {"properties": build_object(event.properties, scope, record)}
    for name, value in (("time", event.time), ("value", event.value), ("value_currency", event.value_currency)):
        if value is not None:
            computed = value(scope, record)
            if computed is not MISSING:
                attributes[name] = computed
    attributes["unique_id"] = unique_id
    attributes["metric"] = {"data": {"type": "metric", "attributes": {"name": event.metric}}}
    attributes["profile"] = {"data": {"type": "profile", "attributes": profile}}
    try:
        limits.check(attributes, now)
    except limits.LimitError as exc:
        raise MappingError(f"beyond Klaviyo's limits: {exc.message}", path=exc.path,
                           unique_id=unique_id) from exc
    result.events.append(Event(event.key, event.metric, unique_id,
                               {"data": {"type": "event", "attributes": attributes}}))
