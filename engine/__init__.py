"""STORIS to Klaviyo: a declarative mapping engine and the service around it.

The public API: load a retailer's mapping once, then map records with it.

    retailer = load_retailer("sunrise-patio")
    result = map_record(retailer, "OrderWrittenSale", record)   # result.events, result.skipped
"""

from __future__ import annotations

from engine.apply import Event, Result, Skip, map_record
from engine.compile import Retailer
from engine.errors import (
    ConfigError,
    DeliveryError,
    EngineError,
    MappingError,
    PluginError,
    Problem,
    RetryableDeliveryError,
)
from engine.loader import load_all, load_file, load_retailer

__all__ = [
    "ConfigError", "DeliveryError", "EngineError", "Event", "MappingError", "PluginError", "Problem", "Result",
    "Retailer", "RetryableDeliveryError", "Skip", "load_all", "load_file", "load_retailer", "map_record",
]
