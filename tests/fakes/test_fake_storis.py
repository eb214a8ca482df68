"""The fake STORIS, in process: token auth and expiry, Detail records, customer updates, the request log,
webhook subscriptions, failures and reset."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ConfigError
from engine.fakes.storis import EVENTS_DISABLED, create_app, load_records

Client = Any  # starlette.testclient.TestClient, imported by conftest behind a warnings guard


@pytest.fixture
def storis(make_client: Callable[..., Client], records_dir: Path) -> Client:
    return make_client(create_app(records_dir=records_dir))


def login(client: Client, secret: str = "demo-secret") -> dict[str, str]:
    response = client.post("/api/authenticate", auth=("demo", secret))
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']['access_token']}"}


# --- auth ---------------------------------------------------------------------------------------------------------

def test_authenticate_returns_a_bearer_token_lasting_one_day(storis: Client) -> None:
    body = storis.post("/api/authenticate", auth=("demo", "demo-secret")).json()
    assert body["success"] is True and body["message"] is None
    assert body["token"]["expires_in"] == 1
    assert body["token"]["token_type"] == "Bearer"
    assert len(body["token"]["access_token"]) > 20


@pytest.mark.parametrize("auth", [("demo", "wrong"), ("other", "demo-secret"), None])
def test_wrong_credentials_are_401(storis: Client, auth: tuple[str, str] | None) -> None:
    response = storis.post("/api/authenticate", auth=auth)
    assert response.status_code == 401
    assert response.json() == {"success": False, "message": "Invalid client credentials"}


def test_custom_credentials(make_client: Callable[..., Client], records_dir: Path) -> None:
    client = make_client(create_app(records_dir=records_dir, client_id="acme", client_secret="s3cret"))
    assert client.post("/api/authenticate", auth=("acme", "s3cret")).status_code == 200
    assert client.post("/api/authenticate", auth=("demo", "demo-secret")).status_code == 401


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic ZGVtbzpkZW1vLXNlY3JldA=="])
def test_api_routes_need_a_valid_bearer_token(storis: Client, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = storis.get("/api/Orders/Detail", params={"OrderIds": "S-1"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["success"] is False


def test_tokens_expire_after_the_ttl(make_client: Callable[..., Client], records_dir: Path) -> None:
    client = make_client(create_app(records_dir=records_dir, token_ttl_seconds=0.2))
    headers = login(client)
    assert client.get("/api/Orders/Detail?OrderIds=S-1", headers=headers).status_code == 200
    time.sleep(0.25)
    assert client.get("/api/Orders/Detail?OrderIds=S-1", headers=headers).status_code == 401
    assert client.get("/api/Orders/Detail?OrderIds=S-1", headers=login(client)).status_code == 200


def test_revoke_tokens(storis: Client) -> None:
    headers = login(storis)
    assert storis.post("/_control", json={"revoke_tokens": True}).status_code == 200
    assert storis.get("/api/Orders/Detail?OrderIds=S-1", headers=headers).status_code == 401


# --- records ------------------------------------------------------------------------------------------------------

def test_orders_detail_serves_sales_and_quotes_by_id(storis: Client) -> None:
    response = storis.get("/api/Orders/Detail?OrderIds=S-1&OrderIds=nope&OrderIds=Q-1", headers=login(storis))
    assert response.status_code == 200
    body = response.json()
    assert (body["success"], body["message"]) == (True, None)
    assert len(body["transactionId"]) == 36
    assert [(o["id"], o["orderType"]) for o in body["data"]["orders"]] == [("S-1", "Sale"), ("Q-1", "Quote")]


@pytest.mark.parametrize(("path", "param", "record_id", "collection"), [
    ("/api/Fulfillments/Detail", "FulfillmentIds", "F-1", "fulfillments"),
    ("/api/Customers/Detail", "CustomerIds", "C-1", "customers"),
    ("/api/Products/Detail", "ProductIds", "P-1", "products"),
    ("/api/Orders/Detail", "orderids", "S-1", "orders"),
])
def test_each_detail_route(storis: Client, path: str, param: str, record_id: str, collection: str) -> None:
    body = storis.get(path, params={param: record_id}, headers=login(storis)).json()
    assert [r["id"] for r in body["data"][collection]] == [record_id]


def test_customers_embedded_in_orders_are_found_too(storis: Client) -> None:
    body = storis.get("/api/Customers/Detail?CustomerIds=C-2", headers=login(storis)).json()
    assert body["data"]["customers"][0]["emailAddress"] == "bo.reed@example.com"


def test_detail_without_ids_is_400(storis: Client) -> None:
    response = storis.get("/api/Orders/Detail", headers=login(storis))
    assert response.status_code == 400
    assert response.json() == {"success": False, "message": "OrderIds is required"}


# --- customers ----------------------------------------------------------------------------------------------------

def test_update_applies_ok_to_solicit_to_every_copy_of_the_customer(storis: Client) -> None:
    headers = login(storis)
    response = storis.put("/api/Customers/Update", json={"customerId": "C-1", "okToSolicit": False}, headers=headers)
    assert response.status_code == 200
    assert response.json()["success"] is True
    customer = storis.get("/api/Customers/Detail?CustomerIds=C-1", headers=headers).json()["data"]["customers"][0]
    order = storis.get("/api/Orders/Detail?OrderIds=S-1", headers=headers).json()["data"]["orders"][0]
    fulfillment = storis.get("/api/Fulfillments/Detail?FulfillmentIds=F-1",
                             headers=headers).json()["data"]["fulfillments"][0]
    assert [customer["okToSolicit"], order["customer"]["okToSolicit"], fulfillment["customer"]["okToSolicit"]] == [
        False, False, False]


def test_update_of_an_unknown_customer_is_404(storis: Client) -> None:
    response = storis.put("/api/Customers/Update", json={"customerId": "C-404", "okToSolicit": False},
                          headers=login(storis))
    assert response.status_code == 404
    assert response.json()["success"] is False


def test_update_accepts_any_json(storis: Client) -> None:
    response = storis.put("/api/Customers/Update", json={"solicit": "N"}, headers=login(storis))
    assert response.status_code == 200


def test_search_matches_email_ignoring_case_and_spaces(storis: Client) -> None:
    headers = login(storis)
    found = storis.post("/api/Customers/Search", json={"emailAddress": " ada.quill@EXAMPLE.com"}, headers=headers)
    assert [c["id"] for c in found.json()["data"]["customers"]] == ["C-1"]
    for body in ({"emailAddress": "nobody@example.com"}, {"email": "ada.quill@example.com"}, []):
        response = storis.post("/api/Customers/Search", json=body, headers=headers)
        assert (response.status_code, response.json()["data"]["customers"]) == (200, [])


def test_requests_log_write_requests_in_order(storis: Client) -> None:
    headers = login(storis)
    storis.get("/api/Orders/Detail?OrderIds=S-1", headers=headers)
    storis.put("/api/Customers/Update", json={"customerId": "C-1", "okToSolicit": False}, headers=headers)
    storis.post("/api/Customers/Search", json={"emailAddress": "x@example.com"}, headers=headers)
    log = storis.get("/_requests").json()
    assert [(r["method"], r["path"], r["body"], r["status"]) for r in log] == [
        ("POST", "/api/authenticate", None, 200),
        ("PUT", "/api/Customers/Update", {"customerId": "C-1", "okToSolicit": False}, 200),
        ("POST", "/api/Customers/Search", {"emailAddress": "x@example.com"}, 200),
    ]
    assert log[0]["t"] <= log[1]["t"] <= log[2]["t"]


# --- webhook subscriptions ----------------------------------------------------------------------------------------

def test_webhook_subscriptions_are_created_once_and_listed(storis: Client) -> None:
    headers = login(storis)
    assert storis.get("/api/Webhooks/Subscriptions", headers=headers).json()["data"] == {"subscriptions": []}
    wanted = {"eventType": "OrderWrittenSale", "url": "http://127.0.0.1:8000/webhooks/storis/demo"}
    first = storis.post("/api/Webhooks/Subscriptions", json=wanted, headers=headers).json()["data"]["subscription"]
    again = storis.post("/api/Webhooks/Subscriptions", json=wanted, headers=headers).json()["data"]["subscription"]
    assert first == again == {"id": first["id"], **wanted, "status": "Active"}
    assert storis.get("/api/Webhooks/Subscriptions", headers=headers).json()["data"]["subscriptions"] == [first]


def test_webhook_subscription_needs_event_type_and_url(storis: Client) -> None:
    response = storis.post("/api/Webhooks/Subscriptions", json={"eventType": "OrderDeleted"}, headers=login(storis))
    assert response.status_code == 400


def test_events_not_enabled_is_403_with_an_actionable_message(storis: Client) -> None:
    headers = login(storis)
    storis.post("/_control", json={"events_enabled": False})
    for response in (storis.get("/api/Webhooks/Subscriptions", headers=headers),
                     storis.post("/api/Webhooks/Subscriptions", json={"eventType": "OrderWrittenSale", "url": "x"},
                                 headers=headers)):
        assert response.status_code == 403
        assert response.json() == {"success": False, "message": EVENTS_DISABLED}
    assert "events are not enabled" in EVENTS_DISABLED


def test_bad_control_body_is_400(storis: Client) -> None:
    assert storis.post("/_control", json={"records_dir": "/tmp"}).status_code == 400
    assert storis.post("/_control", json={"events_enabled": "no"}).status_code == 400


# --- failures, reset ----------------------------------------------------------------------------------------------

def test_status_failure_uses_storis_error_shape(storis: Client) -> None:
    storis.post("/_fail", json={"status": 503, "count": 1})
    response = storis.post("/api/authenticate", auth=("demo", "demo-secret"))
    assert response.status_code == 503
    assert response.json() == {"success": False, "message": "503 Service Unavailable"}
    assert storis.post("/api/authenticate", auth=("demo", "demo-secret")).status_code == 200


@pytest.mark.parametrize(("spec", "check"), [
    ({"mode": "empty", "status": 502}, lambda r: r.status_code == 502 and r.content == b""),
    ({"mode": "html", "status": 503}, lambda r: r.status_code == 503 and "<html" in r.text),
    ({"status": 429, "retry_after": 3}, lambda r: r.status_code == 429 and r.headers["Retry-After"] == "3"),
])
def test_other_failure_modes(storis: Client, spec: dict[str, Any], check: Callable[[Any], bool]) -> None:
    headers = login(storis)
    storis.post("/_fail", json=spec)
    assert check(storis.get("/api/Orders/Detail?OrderIds=S-1", headers=headers))
    assert check(storis.get("/api/Orders/Detail?OrderIds=S-1", headers=headers))
    storis.post("/_fail", json={"mode": "ok"})
    assert storis.get("/api/Orders/Detail?OrderIds=S-1", headers=headers).status_code == 200


def test_timeout_failure_delays_the_answer(storis: Client) -> None:
    headers = login(storis)
    storis.post("/_fail", json={"mode": "timeout", "seconds": 0.2, "count": 1})
    started = time.monotonic()
    assert storis.get("/api/Orders/Detail?OrderIds=S-1", headers=headers).status_code == 200
    assert time.monotonic() - started >= 0.2


def test_reset_restores_the_initial_state(storis: Client) -> None:
    headers = login(storis)
    storis.put("/api/Customers/Update", json={"customerId": "C-1", "okToSolicit": False}, headers=headers)
    storis.post("/api/Webhooks/Subscriptions", json={"eventType": "OrderWrittenSale", "url": "x"}, headers=headers)
    storis.post("/_control", json={"events_enabled": False})
    assert storis.post("/_reset").status_code == 200
    assert storis.get("/api/Orders/Detail?OrderIds=S-1", headers=headers).status_code == 401
    headers = login(storis)
    customer = storis.get("/api/Customers/Detail?CustomerIds=C-1", headers=headers).json()["data"]["customers"][0]
    assert customer["okToSolicit"] is True
    assert storis.get("/api/Webhooks/Subscriptions", headers=headers).json()["data"]["subscriptions"] == []
    assert [r["path"] for r in storis.get("/_requests").json()] == ["/api/authenticate"]


# --- loading records ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("files", "message"), [
    ({"bad.json": "{"}, "bad.json: not readable JSON"),
    ({"list.json": "[]"}, "list.json: not a STORIS Detail response"),
    ({"x.json": json.dumps({"data": {"orders": [{"orderType": "Sale"}]}})}, r"x.json: data.orders\[0\] has no id"),
    ({"a.json": json.dumps({"data": {"orders": [{"id": "1"}]}}),
      "b.json": json.dumps({"data": {"orders": [{"id": "1"}]}})},
     "b.json: data.orders.0. repeats id '1' from .*a.json"),
])
def test_records_that_do_not_fit_name_their_file(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_records(tmp_path)


def test_missing_records_dir_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="records_dir: .*missing is not a folder"):
        create_app(records_dir=tmp_path / "missing")
