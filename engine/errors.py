"""The one error root of Loopwise and its subclasses, mapped to HTTP at the API edge."""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error Loopwise raises on purpose."""

    status = 500
    title = "Internal error"
    retry_after: float | None = None  # seconds after which a retry may succeed (Retry-After)

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class InvalidInput(EngineError):
    """A value from outside (request, file, message) breaks a rule; `field` names it."""

    status = 422
    title = "Invalid input"


class LimitExceeded(InvalidInput):
    """A value is larger than a configured limit; the message states the limit."""

    title = "Limit exceeded"


class PayloadTooLarge(LimitExceeded):
    """A request body is larger than the configured maximum."""

    status = 413
    title = "Payload too large"


class MalformedBody(InvalidInput):
    """A body is not valid JSON (or YAML) at all."""

    status = 400
    title = "Malformed body"


class Unauthorized(EngineError):
    """No valid API key came with the request."""

    status = 401
    title = "Unauthorized"


class Forbidden(EngineError):
    """The API key's role may not use this route."""

    status = 403
    title = "Forbidden"


class NotFound(EngineError):
    """A named thing (catalog, event, user) does not exist."""

    status = 404
    title = "Not found"


class UnknownCatalog(NotFound):
    """No catalog has this name."""

    title = "Unknown catalog"


class UnknownEvent(NotFound):
    """No decision with this event id is known."""

    title = "Unknown event"


class Conflict(EngineError):
    """The request conflicts with the current state (e.g. a stale catalog version)."""

    status = 409
    title = "Conflict"


class RateLimited(EngineError):
    """A key sent more requests than its rate limit allows; retry after `retry_after` s."""

    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: float, field: str | None = None) -> None:
        super().__init__(detail, field=field)
        self.retry_after = retry_after


class Unavailable(EngineError):
    """A dependency (broker, model) is not ready; the request may be retried."""

    status = 503
    title = "Service unavailable"
    retry_after = 5.0  # the outbox drains as soon as the broker is back


class CorruptCheckpoint(EngineError):
    """A checkpoint failed its sha256 or structure check and must not be loaded."""

    title = "Corrupt checkpoint"
