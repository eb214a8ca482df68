"""Where a retailer's systems are and the secrets to reach them, resolved from the environment.

The mapping names environment variables, never secrets (``secret_env``, ``api_key_env``...): this module reads
them once at start-up. A retailer without a webhook secret cannot receive webhooks (every request is refused);
without a Klaviyo key its events are stored as ``dry-run`` instead of sent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.compile import Retailer
from engine.errors import ConfigError

DEFAULT_HEADERS = {"shared_secret": "X-Webhook-Secret", "hmac_sha256": "X-Webhook-Signature"}


@dataclass(frozen=True)
class Connections:
    retailer: str
    webhook_mode: str
    webhook_header: str
    webhook_secret: str | None = field(repr=False)
    storis_base_url: str | None
    storis_client_id: str | None
    storis_client_secret: str | None = field(repr=False)
    klaviyo_base_url: str
    klaviyo_api_key: str | None = field(repr=False)
    klaviyo_revision: str
    klaviyo_system_secret: str | None = field(default=None, repr=False)
    klaviyo_flow_secret: str | None = field(default=None, repr=False)

    @property
    def dry_run(self) -> bool:
        return not self.klaviyo_api_key

    def missing(self) -> list[str]:
        """What is not configured, in words an operator can act on."""
        out = []
        if not self.webhook_secret:
            out.append("no webhook secret: every webhook is refused")
        if not (self.storis_base_url and self.storis_client_id and self.storis_client_secret):
            out.append("no STORIS URL or credentials: records cannot be fetched")
        if self.dry_run:
            out.append("no Klaviyo API key: events are stored as dry-run, not sent")
        return out


def resolve(retailer: Retailer, env: Mapping[str, str] | None = None) -> Connections:
    env = os.environ if env is None else env
    spec = retailer.connections
    auth = spec.get("webhook_auth") or {}
    storis = spec.get("storis") or {}
    klaviyo = spec.get("klaviyo") or {}
    mode = auth.get("mode", "shared_secret")

    def read(name: str | None) -> str | None:
        return (env.get(name) or None) if name else None

    base_url = read(klaviyo.get("base_url_env")) or klaviyo.get("base_url") or "https://a.klaviyo.com"
    storis_url = read(storis.get("base_url_env")) or storis.get("base_url")
    if storis_url is not None and not storis_url.startswith(("http://", "https://")):
        raise ConfigError(f"{retailer.file}: connections.storis: base URL must start with http:// or https://")
    return Connections(
        retailer=retailer.name, webhook_mode=mode, webhook_header=auth.get("header", DEFAULT_HEADERS[mode]),
        webhook_secret=read(auth.get("secret_env")), storis_base_url=storis_url,
        storis_client_id=read(storis.get("client_id_env")),
        storis_client_secret=read(storis.get("client_secret_env")),
        klaviyo_base_url=base_url.rstrip("/"), klaviyo_api_key=read(klaviyo.get("api_key_env")),
        klaviyo_revision=str(klaviyo.get("revision", "2026-07-15")),
        klaviyo_system_secret=read(retailer.consent.system_secret_env) if retailer.consent else None,
        klaviyo_flow_secret=read(retailer.consent.flow_secret_env) if retailer.consent else None,
    )
