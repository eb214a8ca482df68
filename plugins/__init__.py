"""Record plugins: each turns one STORIS record into a new one before the mapping reads it.

Every plugin has a ``name`` (the key a retailer's YAML uses), ``__init__(params, *, base_dir)`` that checks its
parameters and loads its data once (``ConfigError`` on anything wrong), and ``apply(record) -> record`` that
returns a new record and leaves its input untouched. The logic of each lives in a plain function beside it.
"""

from __future__ import annotations

from plugins.cart_links import CartLinks
from plugins.catalog import Catalog
from plugins.review_urls import ReviewUrls
from plugins.soft_kits import SoftKits

REGISTRY: dict[str, type] = {cls.name: cls for cls in (SoftKits, Catalog, ReviewUrls, CartLinks)}

__all__ = ["REGISTRY", "CartLinks", "Catalog", "ReviewUrls", "SoftKits"]
