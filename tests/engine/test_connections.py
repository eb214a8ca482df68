"""Where a retailer's systems are, and its secrets, read from the environment the mapping names."""

from __future__ import annotations

import pytest

from engine import load_retailer
from engine.connections import resolve
from engine.errors import ConfigError

ENV = {"SUNRISE_PATIO_WEBHOOK_SECRET": "s3cret", "SUNRISE_PATIO_STORIS_URL": "https://storis.example",
       "SUNRISE_PATIO_STORIS_CLIENT_ID": "client", "SUNRISE_PATIO_STORIS_CLIENT_SECRET": "storis-secret",
       "SUNRISE_PATIO_KLAVIYO_API_KEY": "pk_live"}


def test_everything_comes_from_the_variables_the_mapping_names() -> None:
    conn = resolve(load_retailer("sunrise-patio"), ENV)
    assert (conn.webhook_mode, conn.webhook_header, conn.webhook_secret) == ("hmac_sha256", "X-Storis-Signature",
                                                                             "s3cret")
    assert (conn.storis_base_url, conn.storis_client_id, conn.storis_client_secret) == (
        "https://storis.example", "client", "storis-secret")
    assert (conn.klaviyo_base_url, conn.klaviyo_api_key, conn.klaviyo_revision) == (
        "https://a.klaviyo.com", "pk_live", "2026-07-15")
    assert conn.missing() == [] and not conn.dry_run
    assert not any(secret in repr(conn) for secret in ("s3cret", "storis-secret", "pk_live"))


def test_nothing_set_means_refusing_webhooks_and_dry_run() -> None:
    conn = resolve(load_retailer("sunrise-patio"), {})
    assert conn.dry_run
    assert conn.missing() == ["no webhook secret: every webhook is refused",
                              "no STORIS URL or credentials: records cannot be fetched",
                              "no Klaviyo API key: events are stored as dry-run, not sent"]


def test_a_storis_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ConfigError, match="must start with http"):
        resolve(load_retailer("sunrise-patio"), {**ENV, "SUNRISE_PATIO_STORIS_URL": "storis.example"})


def test_the_klaviyo_url_and_consent_secrets_can_come_from_the_environment() -> None:
    conn = resolve(load_retailer("demo"), {"DEMO_KLAVIYO_URL": "http://127.0.0.1:9/fake/klaviyo/",
                                           "DEMO_KLAVIYO_WEBHOOK_SECRET": "k"})
    assert conn.klaviyo_base_url == "http://127.0.0.1:9/fake/klaviyo"
    assert (conn.klaviyo_system_secret, conn.klaviyo_flow_secret) == ("k", "k")
