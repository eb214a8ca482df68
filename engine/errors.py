"""Every error the engine raises on purpose.

    EngineError
    ├── ConfigError            a mapping, plugin parameter or setting is wrong (found at load time)
    ├── MappingError           a record could not be mapped (an expression, a date or a plugin failed)
    │   └── PluginError        a plugin failed on one record
    └── DeliveryError          STORIS or Klaviyo answered with something other than success
        └── RetryableDeliveryError   ...and trying again later may succeed

Programming mistakes stay ``RuntimeError``/``TypeError``; user input never reaches an ``assert``.
"""

from __future__ import annotations

from dataclasses import dataclass


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in a mapping file, printed as ``file:line:col: path: message``."""

    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.col}: {where}{self.message}"


class ConfigError(EngineError):
    """Configuration that cannot be loaded; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            self.problems: list[Problem] = []
            super().__init__(problems)
        else:
            self.problems = sorted(problems)
            super().__init__("\n".join(str(p) for p in self.problems))


_CONTEXT_ORDER = ("retailer", "webhook", "record", "plugin", "event", "path", "line", "unique_id")


class MappingError(EngineError):
    """A record could not be mapped. ``context`` names where: retailer, webhook type, event, path, source line."""

    def __init__(self, message: str, **context: object) -> None:
        self.reason = message
        self.context: dict[str, object] = {k: v for k, v in context.items() if v is not None}
        super().__init__(message)

    def __str__(self) -> str:
        keys = sorted(self.context, key=lambda k: _CONTEXT_ORDER.index(k) if k in _CONTEXT_ORDER else 99)
        where = ", ".join(f"{k} {self.context[k]}" for k in keys)
        return f"{where}: {self.reason}" if where else self.reason


class PluginError(MappingError):
    """A plugin raised while transforming one record; only that record fails."""


class DeliveryError(EngineError):
    """STORIS or Klaviyo refused a request. ``status`` is None when no HTTP answer came back."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        self.status = status
        self.body = body
        super().__init__(message)


class RetryableDeliveryError(DeliveryError):
    """A timeout, a connection error or a status worth retrying (408, 429, 5xx, 524).

    ``retry_after`` is the server's own ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(self, message: str, *, status: int | None = None, body: str = "",
                 retry_after: float | None = None) -> None:
        super().__init__(message, status=status, body=body)
        self.retry_after = retry_after

