"""The fake Klaviyo, in process: auth, scopes, validation, rate limits, dedup, bulk jobs, profiles, failures."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from engine import klaviyo_schema
from engine.fakes.klaviyo import Limits, create_app

KEY = "pk_test_abcd"
HEADERS = {"Authorization": f"Klaviyo-API-Key {KEY}", "revision": "2026-07-15"}
Client = Any  # starlette.testclient.TestClient, imported by conftest behind a warnings guard


@pytest.fixture
def klaviyo(make_client: Callable[..., Client]) -> Client:
    return make_client(create_app())


def event(unique_id: str | None = "order:1", *, metric: str = "Completed Purchase", **profile: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "properties": {"orderId": "1"},
        "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
        "profile": {"data": {"type": "profile", "attributes": profile or {"email": "ada@example.com"}}},
    }
    if unique_id is not None:
        attributes["unique_id"] = unique_id
    return {"data": {"type": "event", "attributes": attributes}}


def job(*entries: tuple[dict[str, Any], list[dict[str, Any]]]) -> dict[str, Any]:
    """A bulk body from (profile attributes, [event attributes]) pairs."""
    return {"data": {"type": "event-bulk-create-job", "attributes": {"events-bulk-create": {"data": [
        {"type": "event-bulk-create", "attributes": {
            "profile": {"data": {"type": "profile", "attributes": profile}},
            "events": {"data": [{"type": "event", "attributes": e} for e in events]}}}
        for profile, events in entries]}}}}


def bulk_event(unique_id: str | None, metric: str = "Purchased Product") -> dict[str, Any]:
    attributes: dict[str, Any] = {"properties": {"sku": unique_id},
                                  "metric": {"data": {"type": "metric", "attributes": {"name": metric}}}}
    if unique_id is not None:
        attributes["unique_id"] = unique_id
    return attributes


def subscription(*profiles: dict[str, Any], list_id: str = "L100") -> dict[str, Any]:
    return {"data": {"type": "profile-subscription-bulk-create-job",
                     "attributes": {"custom_source": "STORIS", "profiles": {"data": [
                         {"type": "profile", "attributes": p} for p in profiles]}},
                     "relationships": {"list": {"data": {"type": "list", "id": list_id}}}}}


EMAIL_CONSENT = {"email": {"marketing": {"consent": "SUBSCRIBED"}}}


# --- auth, revision, scopes, validation ---------------------------------------------------------------------------

def test_event_is_accepted_with_202_and_listed(klaviyo: Client) -> None:
    response = klaviyo.post("/api/events", json=event(), headers=HEADERS)
    assert (response.status_code, response.content) == (202, b"")
    assert klaviyo.get("/_received").json() == [event()]


@pytest.mark.parametrize(("authorization", "code"), [
    (None, "not_authenticated"),
    ("Bearer pk_test_abcd", "not_authenticated"),
    ("Klaviyo-API-Key sk_live_1234", "authentication_failed"),
])
def test_missing_or_unknown_key_is_401(klaviyo: Client, authorization: str | None, code: str) -> None:
    headers = {"revision": "2026-07-15", **({"Authorization": authorization} if authorization else {})}
    response = klaviyo.post("/api/events", json=event(), headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/vnd.api+json"
    (error,) = response.json()["errors"]
    assert (error["status"], error["code"]) == (401, code)
    assert klaviyo.get("/_received").json() == []


def test_keys_map_limits_who_gets_in(make_client: Callable[..., Client]) -> None:
    client = make_client(create_app(keys={"secret-key-1": {"accounts:read"}}))
    assert client.get("/api/accounts", headers={**HEADERS, "Authorization": "Klaviyo-API-Key pk_other"}
                      ).status_code == 401
    assert client.get("/api/accounts", headers={**HEADERS, "Authorization": "Klaviyo-API-Key secret-key-1"}
                      ).status_code == 200


def test_missing_revision_header_is_400(klaviyo: Client) -> None:
    response = klaviyo.post("/api/events", json=event(), headers={"Authorization": HEADERS["Authorization"]})
    assert response.status_code == 400
    assert response.json()["errors"][0]["source"] == {"parameter": "revision"}


def test_invalid_body_is_400_with_pointers(klaviyo: Client) -> None:
    body = event()
    del body["data"]["attributes"]["metric"]
    body["data"]["attributes"]["value"] = "12.50"
    response = klaviyo.post("/api/events", json=body, headers=HEADERS)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [(e["code"], e["source"]["pointer"], e["detail"]) for e in errors] == [
        ("invalid", "/data/attributes/metric", "is a required property"),
        ("invalid", "/data/attributes/value", "must be number or null, not string"),
    ]
    assert all(e["status"] == 400 and e["title"] and e["id"] for e in errors)
    assert klaviyo.get("/_received").json() == []


def test_malformed_json_is_400(klaviyo: Client) -> None:
    response = klaviyo.post("/api/events", content=b"{not json", headers=HEADERS)
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "parse_error"


def test_event_without_any_profile_identifier_is_400(klaviyo: Client) -> None:
    response = klaviyo.post("/api/events", json=event(first_name="Ada"), headers=HEADERS)
    assert response.status_code == 400
    assert response.json()["errors"][0]["source"]["pointer"] == "/data/attributes/profile/data/attributes"


@pytest.mark.parametrize("when", ["1999-12-31T23:59:59Z", "2099-01-01T00:00:00Z"])
def test_event_time_outside_klaviyos_range_is_400(klaviyo: Client, when: str) -> None:
    body = event()
    body["data"]["attributes"]["time"] = when
    response = klaviyo.post("/api/events", json=body, headers=HEADERS)
    assert response.status_code == 400
    assert response.json()["errors"][0]["source"]["pointer"] == "/data/attributes/time"


def test_scope_is_checked_before_the_body(make_client: Callable[..., Client]) -> None:
    client = make_client(create_app(keys={"writer-0001": {"events:write"}, "reader-0002": {"accounts:read"}}))
    invalid = {"data": {"type": "event"}}
    as_reader = client.post("/api/events", json=invalid,
                            headers={**HEADERS, "Authorization": "Klaviyo-API-Key reader-0002"})
    assert as_reader.status_code == 403
    (error,) = as_reader.json()["errors"]
    assert error["code"] == "permission_denied"
    assert "events:write" in error["detail"]
    as_writer = client.post("/api/events", json=invalid,
                            headers={**HEADERS, "Authorization": "Klaviyo-API-Key writer-0001"})
    assert as_writer.status_code == 400
    assert client.get("/_received").json() == []


def test_subscribe_names_every_missing_scope(make_client: Callable[..., Client]) -> None:
    client = make_client(create_app(keys={"lists-0001": {"lists:write"}}))
    response = client.post("/api/profile-subscription-bulk-create-jobs", json={},
                           headers={**HEADERS, "Authorization": "Klaviyo-API-Key lists-0001"})
    assert response.status_code == 403
    assert "profiles:write, subscriptions:write" in response.json()["errors"][0]["detail"]


def test_routes_answer_with_and_without_trailing_slash(klaviyo: Client) -> None:
    assert klaviyo.post("/api/events/", json=event(), headers=HEADERS).status_code == 202
    assert klaviyo.get("/api/lists/L1/", headers=HEADERS).status_code == 200


def test_unknown_route_is_404_in_klaviyos_shape(klaviyo: Client) -> None:
    response = klaviyo.get("/api/campaigns", headers=HEADERS)
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "not_found"


# --- rate limits --------------------------------------------------------------------------------------------------

def test_burst_limit_answers_429_with_retry_after_until_the_window_closes(make_client: Callable[..., Client]) -> None:
    client = make_client(create_app(limits=Limits(create_event=(2, 100))))
    first = client.post("/api/events", json=event("a"), headers=HEADERS)
    second = client.post("/api/events", json=event("b"), headers=HEADERS)
    assert [(r.status_code, r.headers["RateLimit-Limit"], r.headers["RateLimit-Remaining"]) for r in (first, second)
            ] == [(202, "2", "1"), (202, "2", "0")]
    assert second.headers["RateLimit-Reset"] == "1"
    throttled = client.post("/api/events", json=event("c"), headers=HEADERS)
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "1"
    (error,) = throttled.json()["errors"]
    assert (error["code"], error["detail"]) == ("throttled", "Request was throttled. Expected available in 1 second.")
    # Other endpoints and other keys (accounts) count separately.
    assert client.get("/api/lists/L1", headers=HEADERS).status_code == 200
    assert client.post("/api/events", json=event("d"), headers={**HEADERS, "Authorization": "Klaviyo-API-Key pk_2"}
                       ).status_code == 202
    time.sleep(1.05)
    assert client.post("/api/events", json=event("c"), headers=HEADERS).status_code == 202
    assert [e["unique_id"] for e in (b["data"]["attributes"] for b in client.get("/_received").json())] == [
        "a", "b", "d", "c"]


def test_steady_limit_retry_after_reaches_to_the_end_of_the_minute(make_client: Callable[..., Client]) -> None:
    client = make_client(create_app(limits=Limits(bulk_create_events=(10, 2))))
    body = job(({"email": "ada@example.com"}, [bulk_event("x")]))
    assert [client.post("/api/event-bulk-create-jobs", json=body, headers=HEADERS).status_code
            for _ in range(3)] == [202, 202, 429]
    retry_after = int(client.post("/api/event-bulk-create-jobs", json=body, headers=HEADERS).headers["Retry-After"])
    assert 58 <= retry_after <= 60


def test_limits_reject_bad_numbers() -> None:
    with pytest.raises(ValueError, match=r"create_event: .* got \(0, 10\)"):
        Limits(create_event=(0, 10))


# --- dedup, bulk jobs ---------------------------------------------------------------------------------------------

def test_repeated_unique_id_keeps_only_the_first_event_per_profile_and_metric(klaviyo: Client) -> None:
    sent = [
        event("order:1"),
        event("order:1"),                                   # repeat: dropped
        event("order:1", email="ADA@example.com "),         # same person, same metric: dropped
        event("order:1", metric="Placed Order"),            # other metric: kept
        event("order:1", email="bo@example.com"),           # other profile: kept
    ]
    assert [klaviyo.post("/api/events", json=b, headers=HEADERS).status_code for b in sent] == [202] * 5
    assert klaviyo.get("/_received").json() == [sent[0], sent[3], sent[4]]


def test_without_unique_id_the_time_to_the_second_dedups(klaviyo: Client) -> None:
    first, second = event(None), event(None)
    first["data"]["attributes"]["time"] = "2026-10-09T16:42:05.100-04:00"
    second["data"]["attributes"]["time"] = "2026-10-09T20:42:05.900Z"
    for body in (first, second):
        assert klaviyo.post("/api/events", json=body, headers=HEADERS).status_code == 202
    assert klaviyo.get("/_received").json() == [first]


def test_bulk_job_events_are_listed_one_by_one_as_create_event_bodies(klaviyo: Client) -> None:
    ada = {"email": "ada@example.com", "first_name": "Ada"}
    bo = {"phone_number": "+18435550163"}
    body = job((ada, [bulk_event("line:1"), bulk_event("line:2")]), (bo, [bulk_event("line:1")]))
    response = klaviyo.post("/api/event-bulk-create-jobs", json=body, headers=HEADERS)
    assert response.status_code == 202
    data = response.json()["data"]
    assert data["type"] == "event-bulk-create-job"
    assert data["attributes"]["total_count"] == 3
    received = klaviyo.get("/_received").json()
    assert [(r["data"]["attributes"]["unique_id"], r["data"]["attributes"]["profile"]["data"]["attributes"])
            for r in received] == [("line:1", ada), ("line:2", ada), ("line:1", bo)]
    assert all(klaviyo_schema.errors("create_event", r) == [] for r in received)


def test_repeated_unique_id_within_a_job_fails_the_whole_job(klaviyo: Client) -> None:
    body = job(({"email": "ada@example.com"}, [bulk_event("line:1"), bulk_event("line:2")]),
               ({"email": "ada@example.com"}, [bulk_event("line:1")]))
    response = klaviyo.post("/api/event-bulk-create-jobs", json=body, headers=HEADERS)
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["source"]["pointer"] == ("/data/attributes/events-bulk-create/data/1/attributes/events/data/0"
                                          "/attributes/unique_id")
    assert klaviyo.get("/_received").json() == []


def test_bulk_job_repeats_of_earlier_events_are_dropped_silently(klaviyo: Client) -> None:
    assert klaviyo.post("/api/events", json=event("line:1", metric="Purchased Product"),
                        headers=HEADERS).status_code == 202
    body = job(({"email": "ada@example.com"}, [bulk_event("line:1"), bulk_event("line:2")]))
    assert klaviyo.post("/api/event-bulk-create-jobs", json=body, headers=HEADERS).status_code == 202
    assert [r["data"]["attributes"]["unique_id"] for r in klaviyo.get("/_received").json()] == ["line:1", "line:2"]


def test_bulk_job_of_more_than_1000_events_is_400(klaviyo: Client) -> None:
    body = job(({"email": "ada@example.com"}, [bulk_event(f"e{i}") for i in range(600)]),
               ({"email": "bo@example.com"}, [bulk_event(f"e{i}") for i in range(401)]))
    response = klaviyo.post("/api/event-bulk-create-jobs", json=body, headers=HEADERS)
    assert response.status_code == 400
    assert response.json()["errors"][0]["source"]["pointer"] == "/data/attributes/events-bulk-create/data"


def test_bulk_job_over_5_mb_is_413(klaviyo: Client) -> None:
    big = bulk_event("big")
    big["properties"]["blob"] = "x" * 5_000_000
    response = klaviyo.post("/api/event-bulk-create-jobs", json=job(({"email": "ada@example.com"}, [big])),
                            headers=HEADERS)
    assert response.status_code == 413
    assert klaviyo.get("/_received").json() == []


# --- profiles -----------------------------------------------------------------------------------------------------

def test_one_profile_per_person_served_in_get_profile_shape(klaviyo: Client) -> None:
    sends = [
        event("a", email="Ada@Example.com", first_name="Ada", external_id="C-1"),
        event("b", email="ada@example.com", phone_number="+18435550117", last_name="Quill"),
        event("c", phone_number="+18435550117"),
        event("d", external_id="C-9"),
    ]
    for body in sends:
        assert klaviyo.post("/api/events", json=body, headers=HEADERS).status_code == 202
    profiles = klaviyo.get("/_profiles").json()
    assert len(profiles) == 2
    ada = klaviyo.get(f"/api/profiles/{profiles[0]['id']}", headers=HEADERS)
    assert ada.status_code == 200
    data = ada.json()["data"]
    assert data["type"] == "profile"
    assert data["id"].startswith("01FAKE") and len(data["id"]) == 26
    assert {k: data["attributes"][k] for k in ("email", "phone_number", "external_id", "first_name", "last_name")} == {
        "email": "Ada@Example.com", "phone_number": "+18435550117", "external_id": "C-1",
        "first_name": "Ada", "last_name": "Quill"}
    assert data["links"]["self"].endswith(f"/api/profiles/{data['id']}/")
    assert profiles[1]["attributes"]["external_id"] == "C-9"


def test_unknown_profile_is_404(klaviyo: Client) -> None:
    assert klaviyo.get("/api/profiles/01NOPE", headers=HEADERS).status_code == 404


# --- subscriptions, accounts, lists -------------------------------------------------------------------------------

def test_subscriptions_are_recorded(klaviyo: Client) -> None:
    body = subscription({"email": "ada@example.com", "subscriptions": EMAIL_CONSENT},
                        {"phone_number": "+18435550163",
                         "subscriptions": {"sms": {"marketing": {"consent": "SUBSCRIBED"}}}})
    response = klaviyo.post("/api/profile-subscription-bulk-create-jobs", json=body, headers=HEADERS)
    assert response.status_code == 202
    recorded = klaviyo.get("/_subscriptions").json()
    assert [(s["list_id"], s["email"], s["phone_number"], s["consent"]) for s in recorded] == [
        ("L100", "ada@example.com", None, EMAIL_CONSENT),
        ("L100", None, "+18435550163", {"sms": {"marketing": {"consent": "SUBSCRIBED"}}}),
    ]


@pytest.mark.parametrize(("body", "status", "pointer"), [
    (subscription({"subscriptions": EMAIL_CONSENT}), 400, "/data/attributes/profiles/data/0/attributes"),
    (subscription({"email": "ada@example.com", "subscriptions": {"email": {"marketing": {
        "consent": "SUBSCRIBED", "consented_at": "2026-01-01T00:00:00Z"}}}}),
     400, "/data/attributes/profiles/data/0/attributes/subscriptions/email/marketing/consented_at"),
    (subscription(*[{"email": f"p{i}@example.com", "subscriptions": EMAIL_CONSENT} for i in range(1001)]),
     400, "/data/attributes/profiles/data"),
    (subscription({"email": "ada@example.com", "subscriptions": EMAIL_CONSENT}, list_id="X1"),
     404, "/data/relationships/list/data/id"),
])
def test_bad_subscriptions_are_refused(klaviyo: Client, body: dict[str, Any], status: int, pointer: str) -> None:
    response = klaviyo.post("/api/profile-subscription-bulk-create-jobs", json=body, headers=HEADERS)
    assert response.status_code == status
    assert response.json()["errors"][0]["source"]["pointer"] == pointer
    assert klaviyo.get("/_subscriptions").json() == []


def test_accounts_answer_a_plausible_account(klaviyo: Client) -> None:
    response = klaviyo.get("/api/accounts", headers=HEADERS)
    assert response.status_code == 200
    (account,) = response.json()["data"]
    assert account["type"] == "account"
    assert {"test_account", "contact_information", "timezone", "preferred_currency", "public_api_key",
            "locale"} <= set(account["attributes"])


def test_lists_exist_by_default_when_their_id_starts_with_l(klaviyo: Client) -> None:
    found = klaviyo.get("/api/lists/LaBc12", headers=HEADERS)
    assert found.status_code == 200
    assert found.json()["data"]["id"] == "LaBc12"
    assert klaviyo.get("/api/lists/XyZ", headers=HEADERS).status_code == 404


def test_lists_can_be_configured(make_client: Callable[..., Client]) -> None:
    client = make_client(create_app(lists={"Y6nRLr"}))
    assert client.get("/api/lists/Y6nRLr", headers=HEADERS).status_code == 200
    assert client.get("/api/lists/L1", headers=HEADERS).status_code == 404


# --- failure switch, request log, reset ---------------------------------------------------------------------------

def test_status_failures_apply_to_the_next_count_requests(klaviyo: Client) -> None:
    assert klaviyo.post("/_fail", json={"status": 503, "count": 2}).status_code == 200
    answers = [klaviyo.post("/api/events", json=event(str(i)), headers=HEADERS) for i in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 202]
    assert answers[0].json()["errors"][0]["status"] == 503
    assert len(klaviyo.get("/_received").json()) == 1


def test_throttle_failure_carries_retry_after(klaviyo: Client) -> None:
    klaviyo.post("/_fail", json={"status": 429, "retry_after": 2, "count": 1})
    response = klaviyo.post("/api/events", json=event(), headers=HEADERS)
    assert (response.status_code, response.headers["Retry-After"]) == (429, "2")
    assert response.json()["errors"][0]["code"] == "throttled"


def test_failure_without_count_lasts_until_ok(klaviyo: Client) -> None:
    klaviyo.post("/_fail", json={"status": 400})
    assert [klaviyo.get("/api/accounts", headers=HEADERS).status_code for _ in range(3)] == [400] * 3
    klaviyo.post("/_fail", json={"mode": "ok"})
    assert klaviyo.get("/api/accounts", headers=HEADERS).status_code == 200


def test_empty_and_html_failures(klaviyo: Client) -> None:
    klaviyo.post("/_fail", json={"mode": "empty", "status": 502, "count": 1})
    empty = klaviyo.post("/api/events", json=event(), headers=HEADERS)
    assert (empty.status_code, empty.content) == (502, b"")
    klaviyo.post("/_fail", json={"mode": "html", "status": 503, "count": 1})
    html = klaviyo.post("/api/events", json=event(), headers=HEADERS)
    assert html.status_code == 503
    assert html.headers["content-type"].startswith("text/html")
    assert "<title>Just a moment...</title>" in html.text
    with pytest.raises(json.JSONDecodeError):
        html.json()


def test_timeout_failure_sleeps_then_answers(klaviyo: Client) -> None:
    klaviyo.post("/_fail", json={"mode": "timeout", "seconds": 0.3, "count": 1})
    started = time.monotonic()
    assert klaviyo.post("/api/events", json=event(), headers=HEADERS).status_code == 202
    assert time.monotonic() - started >= 0.3


def test_bad_failure_spec_is_400(klaviyo: Client) -> None:
    response = klaviyo.post("/_fail", json={"status": 503, "cuont": 1})
    assert response.status_code == 400
    assert "cuont" in response.json()["error"]


def test_requests_log_every_api_request_with_the_key_tail(klaviyo: Client) -> None:
    before = time.time()
    klaviyo.post("/api/events", json=event(), headers=HEADERS)
    klaviyo.get("/api/accounts")
    klaviyo.get("/_received")
    log = klaviyo.get("/_requests").json()
    assert [(r["method"], r["path"], r["status"], r["key"]) for r in log] == [
        ("POST", "/api/events", 202, "abcd"), ("GET", "/api/accounts", 401, None)]
    assert before <= log[0]["t"] <= log[1]["t"] <= time.time()


def test_reset_forgets_everything(make_client: Callable[..., Client]) -> None:
    client = make_client(create_app(limits=Limits(create_event=(1, 10))))
    client.post("/api/events", json=event(), headers=HEADERS)
    client.post("/_fail", json={"status": 500})
    assert client.post("/_reset").status_code == 200
    for route in ("/_received", "/_profiles", "/_subscriptions", "/_requests"):
        assert client.get(route).json() == []
    # Rate windows and the failure switch are cleared too.
    assert client.post("/api/events", json=event(), headers=HEADERS).status_code == 202


def test_mounted_fake_logs_paths_relative_to_its_mount(make_client: Callable[..., Client]) -> None:
    client = make_client(Starlette(routes=[Mount("/fake/klaviyo", create_app())]))
    assert client.post("/fake/klaviyo/api/events", json=event(), headers=HEADERS).status_code == 202
    assert client.get("/fake/klaviyo/_requests").json()[0]["path"] == "/api/events"
    (profile,) = client.get("/fake/klaviyo/_profiles").json()
    assert profile["links"]["self"].startswith("http://testserver/fake/klaviyo/api/profiles/")
