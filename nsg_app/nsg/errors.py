"""Typed errors for the NSG REST API.

NSG answers a failed request with an `<error>` document carrying a numeric code
(docs/nsg-protocol.md §5.4, §5.5). Each code we act on has its own exception class, so
callers can write `except NotFound:` instead of comparing numbers. Problems on our side
of the wire (no connection, timeouts, a reply that is not the XML we expect) are
`CommunicationError`, code 101, the code NSG's own clients use for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# NSG error codes (docs/nsg-protocol.md §5.5).
CODE_AUTHORIZATION = 1
CODE_AUTHENTICATION = 2
CODE_NOT_FOUND = 4
CODE_FORM_VALIDATION = 5
CODE_USER_MISMATCH = 6
CODE_BAD_REQUEST = 7
CODE_GENERIC_SERVICE_ERROR = 100
CODE_GENERIC_COMM_ERROR = 101
CODE_BAD_INVOCATION = 102
CODE_USAGE_LIMIT = 103
CODE_DISABLED_RESOURCE = 104


@dataclass(frozen=True)
class LimitStatus:
    """The `<limitStatus>` of a usage-limit error (code 103)."""

    type: str = ""
    ceiling: int | None = None
    remaining: int | None = None
    reset_minutes: float | None = None
    reset_date: datetime | None = None


@dataclass(frozen=True)
class ErrorDetails:
    """The content of an NSG `<error>` document, or what we know instead of one."""

    code: int | None = None
    display_message: str = ""
    message: str = ""
    param_errors: dict[str, str] = field(default_factory=dict)
    limit_status: LimitStatus | None = None


class NsgError(Exception):
    """Base of every error raised by the NSG client."""

    default_code: int | None = None

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        display_message: str = "",
        param_errors: dict[str, str] | None = None,
        limit_status: LimitStatus | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code if code is not None else self.default_code
        self.message = message
        self.display_message = display_message or message
        self.param_errors: dict[str, str] = dict(param_errors or {})
        self.limit_status = limit_status
        self.http_status = http_status

    def __str__(self) -> str:
        text = self.display_message
        if self.message and self.message != self.display_message:
            text = f"{text} ({self.message})"
        if self.param_errors:
            details = "; ".join(f"{name}: {error}" for name, error in self.param_errors.items())
            text = f"{text}: {details}"
        prefix = f"NSG error {self.code}" if self.code is not None else "NSG error"
        if self.http_status is not None:
            prefix = f"{prefix}, HTTP {self.http_status}"
        return f"{prefix}: {text}"


class AuthorizationError(NsgError):
    """Code 1: the account may not do this."""

    default_code = CODE_AUTHORIZATION


class AuthenticationError(NsgError):
    """Code 2: wrong or missing username, password or application key."""

    default_code = CODE_AUTHENTICATION


class NotFound(NsgError):
    """Code 4: no such job, document, user or tool (jobs also vanish after about 4 weeks)."""

    default_code = CODE_NOT_FOUND


class ValidationError(NsgError):
    """Code 5: the submission form was refused; `param_errors` maps parameter to reason."""

    default_code = CODE_FORM_VALIDATION


class UserMismatch(NsgError):
    """Code 6: the user in the URL does not own the job or is not the authenticated user."""

    default_code = CODE_USER_MISMATCH


class BadRequest(NsgError):
    """Codes 7 and 102, and 4xx replies without a more precise meaning (e.g. 406)."""

    default_code = CODE_BAD_REQUEST


class UsageLimit(NsgError):
    """Code 103 / HTTP 429: too many requests or jobs; see `retry_after_seconds`."""

    default_code = CODE_USAGE_LIMIT

    def __init__(self, message: str, *, retry_after_seconds: float | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_seconds = retry_after_seconds


class DisabledResource(NsgError):
    """Code 104: the tool or resource is disabled."""

    default_code = CODE_DISABLED_RESOURCE


class ServerError(NsgError):
    """Code 100 or an HTTP 5xx reply: a fault inside NSG."""

    default_code = CODE_GENERIC_SERVICE_ERROR


class CommunicationError(NsgError):
    """Code 101: no usable reply (connection, timeout, malformed or unexpected XML)."""

    default_code = CODE_GENERIC_COMM_ERROR


class DownloadIncomplete(CommunicationError):
    """A downloaded file's size differs from the `length` NSG announced."""


_CLASS_BY_CODE: dict[int, type[NsgError]] = {
    CODE_AUTHORIZATION: AuthorizationError,
    CODE_AUTHENTICATION: AuthenticationError,
    CODE_NOT_FOUND: NotFound,
    CODE_FORM_VALIDATION: ValidationError,
    CODE_USER_MISMATCH: UserMismatch,
    CODE_BAD_REQUEST: BadRequest,
    CODE_GENERIC_SERVICE_ERROR: ServerError,
    CODE_GENERIC_COMM_ERROR: CommunicationError,
    CODE_BAD_INVOCATION: BadRequest,
    CODE_USAGE_LIMIT: UsageLimit,
    CODE_DISABLED_RESOURCE: DisabledResource,
}

_CLASS_BY_HTTP_STATUS: dict[int, type[NsgError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: AuthorizationError,
    404: NotFound,
    429: UsageLimit,
}


def error_class_for(http_status: int, code: int | None) -> type[NsgError]:
    """The exception class for a failed reply: by NSG code first, else by HTTP status."""
    if code is not None and code in _CLASS_BY_CODE:
        return _CLASS_BY_CODE[code]
    if http_status >= 500:
        return ServerError
    return _CLASS_BY_HTTP_STATUS.get(http_status, BadRequest if http_status >= 400 else NsgError)


def error_from_reply(
    http_status: int,
    details: ErrorDetails,
    *,
    retry_after_seconds: float | None = None,
) -> NsgError:
    """Build the typed exception for a non-2xx reply."""
    cls = error_class_for(http_status, details.code)
    message = details.message or details.display_message or f"HTTP {http_status}"
    kwargs = dict(
        code=details.code if details.code is not None else cls.default_code,
        display_message=details.display_message,
        param_errors=details.param_errors,
        limit_status=details.limit_status,
        http_status=http_status,
    )
    if cls is UsageLimit:
        return UsageLimit(message, retry_after_seconds=retry_after_seconds, **kwargs)
    return cls(message, **kwargs)
