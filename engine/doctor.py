"""``engine doctor``: a retailer's setup checked end to end, each check a pass or a fail with its fix.

    mapping                the mapping validates and every plugin's data loads
    environment            the secrets and addresses the mapping names are set
    storis-credentials     STORIS accepts the client id and secret
    storis-subscriptions   every webhook type the mapping enables is subscribed (at --url's route, if given)
    klaviyo-key            Klaviyo accepts the API key
    klaviyo-scope S        the key holds scope S (events:write; the subscription scopes with subscribe_on_purchase)
    endpoint-health        --url answers /healthz
    test-webhook           --url accepts a webhook signed as STORIS signs it, and stores it as a test
    dead-letters           the store holds no dead job or event older than a day

Nothing is created to find out: Klaviyo scopes are probed with invalid bodies (``KlaviyoClient.probe_scope``),
STORIS is only listed, and the test webhook is stored as "test", never processed. A check that depends on a
failed one (the subscriptions on the credentials, the scopes on the key) is not run, so each problem shows
once. Secrets never appear in a result.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from engine import loader, onboarding
from engine.compile import Retailer
from engine.connections import Connections, resolve
from engine.errors import ConfigError, DeliveryError
from engine.http_errors import describe_body
from engine.klaviyo import KlaviyoClient
from engine.onboarding import Subscription
from engine.paths import MAPPINGS
from engine.sqlite_store import SqliteStore
from engine.store import StoreError
from server import TEST_HEADER

DAY = 86_400.0
ENDPOINT_TIMEOUT = httpx.Timeout(10.0)
SUBSCRIBE_SCOPES = ("lists:write", "profiles:write", "subscriptions:write")
KLAVIYO_KEYS = "Klaviyo (Settings > API keys)"


@dataclass(frozen=True)
class Result:
    check: str
    ok: bool
    detail: str
    fix: str = ""


def _passed(check: str, detail: str) -> Result:
    return Result(check, True, detail)


def _failed(check: str, detail: str, fix: str) -> Result:
    return Result(check, False, detail, fix)


def run(name: str, *, url: str | None, db: Path, folder: Path = MAPPINGS) -> list[Result]:
    """Every check for retailer ``name``; ``url`` is the service's public base URL, if it should be tried."""
    if url is not None:
        onboarding.webhook_url(url, name)  # a malformed --url is a usage error, not a failed check
    mapping, retailer = check_mapping(name, folder)
    results = [mapping]
    if retailer is not None:
        environment, conn = check_environment(retailer)
        results.append(environment)
        if conn is not None:
            results += asyncio.run(_remote_checks(retailer, conn, url))
            results = _redacted(results, conn)
    results.append(check_dead_letters(name, db, now=time.time()))
    return results


async def _remote_checks(retailer: Retailer, conn: Connections, url: str | None) -> list[Result]:
    groups = [storis_checks(retailer, conn, url), klaviyo_checks(retailer, conn)]
    if url is not None:
        groups.append(endpoint_checks(retailer, conn, url))
    return [result for group in await asyncio.gather(*groups) for result in group]


def check_mapping(name: str, folder: Path) -> tuple[Result, Retailer | None]:
    try:
        retailer = loader.load_retailer(name, folder)
    except ConfigError as exc:
        return _failed("mapping", str(exc), "fix the problems listed; `engine validate` checks again"), None
    if retailer.abstract:
        return _failed("mapping", f"{retailer.file} is abstract (a base for retailers)",
                       "name a retailer's mapping, not a base"), None
    plugins = ", ".join(sorted(retailer.plugins)) or "none"
    return _passed("mapping", f"{retailer.file} validates; plugins loaded: {plugins}"), retailer


def check_environment(retailer: Retailer) -> tuple[Result, Connections | None]:
    try:
        conn = resolve(retailer)
    except ConfigError as exc:
        variable = _variable(retailer, "storis", "base_url_env") or "connections.storis.base_url"
        return _failed("environment", str(exc), f"set {variable} to the STORIS API's base URL"), None
    wanted = [
        ("the webhook secret", conn.webhook_secret, _variable(retailer, "webhook_auth", "secret_env")),
        ("the STORIS URL", conn.storis_base_url, _variable(retailer, "storis", "base_url_env")),
        ("the STORIS client id", conn.storis_client_id, _variable(retailer, "storis", "client_id_env")),
        ("the STORIS client secret", conn.storis_client_secret, _variable(retailer, "storis", "client_secret_env")),
        ("the Klaviyo API key", conn.klaviyo_api_key, _variable(retailer, "klaviyo", "api_key_env")),
    ]
    consent = retailer.consent
    if consent is not None and consent.system_secret_env:
        wanted.append(("the Klaviyo system webhook secret", conn.klaviyo_system_secret, consent.system_secret_env))
    if consent is not None and consent.flow_secret_env:
        wanted.append(("the Klaviyo flow webhook secret", conn.klaviyo_flow_secret, consent.flow_secret_env))
    missing = [(what, variable) for what, value, variable in wanted if not value]
    if not missing:
        return _passed("environment", f"all {len(wanted)} are set: " + ", ".join(w for w, _, _ in wanted)), conn
    named = list(dict.fromkeys(variable for _, variable in missing if variable))
    unnamed = [what for what, variable in missing if not variable]
    fix = f"set {', '.join(named)} in the service's environment" if named else ""
    if unnamed:
        fix += ("; " if fix else "") + f"name a variable for {', '.join(unnamed)} under connections in {retailer.file}"
    detail = "not set: " + ", ".join(f"{what} ({variable or 'no variable named'})" for what, variable in missing)
    return _failed("environment", detail, fix), conn


async def storis_checks(retailer: Retailer, conn: Connections, url: str | None) -> list[Result]:
    """Both STORIS checks from one call: listing the subscriptions authenticates first."""
    if not (conn.storis_base_url and conn.storis_client_id and conn.storis_client_secret):
        return []
    if retailer.subscriptions is None:
        return [_failed("storis-subscriptions", "connections.storis.subscriptions is not configured",
                        f"configure it in {retailer.file} (base.yaml has STORIS's modeled API)")]
    outcome: list[Subscription] | DeliveryError
    try:
        async with onboarding.storis_client(conn) as client:
            outcome = await onboarding.list_subscriptions(client, retailer.subscriptions)
    except DeliveryError as exc:
        outcome = exc
    credentials = check_storis_credentials(outcome, retailer, conn)
    if not credentials.ok:
        return [credentials]
    return [credentials, check_subscriptions(outcome, retailer, conn, url)]


def check_storis_credentials(outcome: list[Subscription] | DeliveryError, retailer: Retailer,
                             conn: Connections) -> Result:
    who = f"as client id {conn.storis_client_id!r} at {conn.storis_base_url}"
    # STORIS only says events are off to a caller it has authenticated.
    if not isinstance(outcome, DeliveryError) or onboarding.events_disabled(outcome):
        return _passed("storis-credentials", f"authenticated {who}")
    if outcome.status in (401, 403):
        ids = " and ".join(v for v in (_variable(retailer, "storis", "client_id_env"),
                                       _variable(retailer, "storis", "client_secret_env")) if v)
        return _failed("storis-credentials", str(outcome),
                       f"set {ids or 'the STORIS credentials'} to the API client id and secret STORIS issued "
                       "for this account")
    if outcome.status is None:
        return _failed("storis-credentials", str(outcome),
                       f"check that {conn.storis_base_url} is STORIS's API address and reachable from here")
    return _failed("storis-credentials", str(outcome), "STORIS failed; try again later, or ask STORIS support")


def check_subscriptions(outcome: list[Subscription] | DeliveryError, retailer: Retailer, conn: Connections,
                        url: str | None) -> Result:
    if isinstance(outcome, DeliveryError):
        if onboarding.events_disabled(outcome):
            return _failed("storis-subscriptions", "STORIS says webhook events are not enabled for this account",
                           f"{onboarding.events_disabled_request(retailer, conn)}; then run `engine subscribe`")
        return _failed("storis-subscriptions", str(outcome), "see the message; STORIS could not list subscriptions")
    expected = onboarding.expected_types(retailer)
    target = onboarding.webhook_url(url, retailer.name) if url is not None else None
    missing = [t for t in expected
               if not any(s.event_type == t and (target is None or s.url == target) for s in outcome)]
    where = f" at {target}" if target else ""
    if not missing:
        return _passed("storis-subscriptions", f"{len(expected)} type(s) subscribed{where}: {', '.join(expected)}")
    return _failed("storis-subscriptions", f"not subscribed{where}: {', '.join(missing)}",
                   f"run `engine subscribe --retailer {retailer.name} --url {url or 'URL'}`")


def required_scopes(retailer: Retailer) -> dict[str, str]:
    """The Klaviyo scopes the retailer's configuration needs, each with what it is needed for."""
    scopes = {"events:write": "to send events"}
    if retailer.consent is not None and retailer.consent.system_secret_env:
        scopes["profiles:read"] = "to find who a Klaviyo unsubscribe webhook is about"
    if retailer.consent is not None and retailer.consent.list_id:
        scopes.update(dict.fromkeys(SUBSCRIBE_SCOPES, f"to subscribe buyers to list {retailer.consent.list_id}"))
    return scopes


async def klaviyo_checks(retailer: Retailer, conn: Connections) -> list[Result]:
    if not conn.klaviyo_api_key:
        return []
    async with KlaviyoClient(api_key=conn.klaviyo_api_key, base_url=conn.klaviyo_base_url,
                             revision=conn.klaviyo_revision) as klaviyo:
        key = await check_klaviyo_key(klaviyo, retailer)
        if not key.ok:
            return [key]
        return [key, *[await check_scope(klaviyo, retailer, scope, why)
                       for scope, why in required_scopes(retailer).items()]]


async def check_klaviyo_key(klaviyo: KlaviyoClient, retailer: Retailer) -> Result:
    variable = _variable(retailer, "klaviyo", "api_key_env") or "the Klaviyo API key"
    try:
        account = await klaviyo.get_account()
    except DeliveryError as exc:
        if exc.status == 403:
            # Klaviyo authenticated the key; it merely may not read the account, which the engine never does.
            return _passed("klaviyo-key", "accepted (it cannot read the account, which the engine does not need)")
        if exc.status == 401:
            return _failed("klaviyo-key", str(exc),
                           f"set {variable} to a private API key of the retailer's account, from {KLAVIYO_KEYS}")
        return _failed("klaviyo-key", str(exc), f"check that {klaviyo.base_url} is reachable, then try again")
    organization = (account.get("contact_information") or {}).get("organization_name")
    return _passed("klaviyo-key", f"accepted for account {account['id']}"
                                  + (f" ({organization})" if organization else ""))


async def check_scope(klaviyo: KlaviyoClient, retailer: Retailer, scope: str, why: str) -> Result:
    check = f"klaviyo-scope {scope}"
    try:
        granted = await klaviyo.probe_scope(scope)
    except DeliveryError as exc:
        return _failed(check, str(exc), "try again; Klaviyo did not answer the probe")
    if granted:
        return _passed(check, f"granted (needed {why})")
    if granted is False:
        variable = _variable(retailer, "klaviyo", "api_key_env") or "the key's variable"
        return _failed(check, f"the API key lacks {scope}, needed {why}",
                       f"grant {scope} to the key in {KLAVIYO_KEYS}, or set {variable} to a key that has it")
    return _failed(check, "Klaviyo's answer did not tell whether the key holds it", "run the doctor again shortly")


async def endpoint_checks(retailer: Retailer, conn: Connections, url: str) -> list[Result]:
    async with httpx.AsyncClient(timeout=ENDPOINT_TIMEOUT) as http:
        health = await check_health(http, url)
        if not health.ok or not conn.webhook_secret:
            return [health]
        return [health, await check_test_webhook(http, retailer, conn, url)]


async def check_health(http: httpx.AsyncClient, url: str) -> Result:
    target = url.rstrip("/") + "/healthz"
    try:
        response = await http.get(target)
    except httpx.HTTPError as exc:
        return _failed("endpoint-health", f"nothing answers at {target} ({type(exc).__name__})",
                       "start the service (`engine serve`), or correct --url")
    if response.status_code != 200:
        return _failed("endpoint-health", f"{target} answered {response.status_code}",
                       "point --url at the engine's base URL (something else answered)")
    return _passed("endpoint-health", f"{target} answers")


def sign(conn: Connections, body: bytes) -> dict[str, str]:
    """The authentication header STORIS sends with ``body`` to this retailer's webhook route."""
    secret = conn.webhook_secret or ""
    if conn.webhook_mode == "hmac_sha256":
        return {conn.webhook_header: hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}
    return {conn.webhook_header: secret}


async def check_test_webhook(http: httpx.AsyncClient, retailer: Retailer, conn: Connections, url: str) -> Result:
    target = onboarding.webhook_url(url, retailer.name)
    event_type = next(iter(onboarding.expected_types(retailer)), "EngineDoctorTest")
    # A fresh entity id each time, so the service stores each test rather than folding it into the last.
    body = json.dumps({"eventType": event_type, "clientCode": "engine-doctor",
                       "data": [{"entityId": f"doctor-{uuid.uuid4().hex[:12]}"}]}).encode()
    headers = {"Content-Type": "application/json", TEST_HEADER: "1", **sign(conn, body)}
    try:
        response = await http.post(target, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return _failed("test-webhook", f"no answer from {target} ({type(exc).__name__})", "correct --url")
    answer = _json_object(response)
    if response.status_code == 202 and answer.get("status") == "test":
        return _passed("test-webhook", f"{target} accepted a signed {event_type} test webhook and stored it as a "
                                       f"test (webhook {answer.get('webhook_id')})")
    if response.status_code == 202:
        return _failed("test-webhook", f"{target} stored the test webhook as {answer.get('status')!r}, not as a test",
                       "upgrade the running service to this version (it ignores the test header)")
    if response.status_code == 401:
        variable = _variable(retailer, "webhook_auth", "secret_env") or "the webhook secret"
        return _failed("test-webhook", f"{target} refused the {conn.webhook_header} header ({conn.webhook_mode})",
                       f"give the running service the same {variable} as this shell (and STORIS)")
    if response.status_code == 404:
        return _failed("test-webhook", f"{target} answered 404: {describe_body(response.text)}",
                       f"restart the service at --url so it loads {retailer.file}, or correct --url")
    return _failed("test-webhook", f"{target} answered {response.status_code}: {describe_body(response.text)}",
                   "see the service's log")


def check_dead_letters(name: str, db: Path, *, now: float) -> Result:
    if not db.is_file():
        return _passed("dead-letters", f"no store at {db} yet, so nothing has died")
    try:
        store = SqliteStore.open(db, read_only=True)
        try:
            letters = [d for d in store.dead_letters_older_than(0, now=now) if d.retailer == name]
        finally:
            store.close()
    except StoreError as exc:
        return _failed("dead-letters", str(exc), "pass --db the store `engine serve` uses")
    old = [d for d in letters if d.dead_at <= now - DAY]
    recent = len(letters) - len(old)
    if not old:
        return _passed("dead-letters", f"none older than a day ({recent} from the last day)")
    named = ", ".join(f"{d.kind} {d.id}" for d in old[:5]) + (", ..." if len(old) > 5 else "")
    return _failed("dead-letters", f"{len(old)} dead letter(s) older than a day: {named}",
                   f"see why with `engine events --retailer {name} --status dead`, fix the cause, then "
                   f"`engine replay --retailer {name} --status dead`")


def render(results: list[Result]) -> str:
    width = max(len(r.check) for r in results) + 2
    indent = " " * (6 + width)
    lines = []
    for r in results:
        lines.append(f"{'PASS' if r.ok else 'FAIL'}  {r.check:<{width}}{r.detail}".replace("\n", "\n" + indent))
        if not r.ok:
            lines.append(f"{indent}fix: {r.fix}")
    return "\n".join(lines) + "\n"


def as_json(results: list[Result]) -> str:
    return json.dumps([asdict(r) for r in results], indent=2)


def _variable(retailer: Retailer, *path: str) -> str | None:
    value: Any = retailer.connections
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, str) else None


def _redacted(results: list[Result], conn: Connections) -> list[Result]:
    """Results with any secret blanked out: messages quote foreign answers, which could echo one back."""
    secrets = [s for s in (conn.webhook_secret, conn.storis_client_secret, conn.klaviyo_api_key) if s]
    out = []
    for r in results:
        detail, fix = r.detail, r.fix
        for secret in secrets:
            detail, fix = detail.replace(secret, "***"), fix.replace(secret, "***")
        out.append(Result(r.check, r.ok, detail, fix))
    return out


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}
