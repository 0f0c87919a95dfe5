"""The one place where the NSG client touches HTTP: a wrapper around requests.Session.

It adds the credentials to every request, applies timeouts, retries idempotent requests
(GET, DELETE) with exponential backoff, and turns every failure into a typed NsgError.
Tests that need no server can replace this object as a whole.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests

from .documents import parse_error
from .errors import CommunicationError, ErrorDetails, NsgError, UsageLimit, error_from_reply

logger = logging.getLogger(__name__)

# Methods that may be repeated without changing the outcome. A POST creates a job:
# repeating it blindly could start the same optimisation twice.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "DELETE"})


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for a connection, and for the next bytes of a reply."""

    connect: float = 10.0
    read: float = 60.0
    # Large uploads are slow to be accepted (docs/nsg-protocol.md §9, gotcha 13).
    upload_read: float = 300.0


@dataclass(frozen=True)
class RetryPolicy:
    """How idempotent requests are retried on connection errors, 5xx and 429.

    The n-th retry waits `base_delay_seconds * 2**n`, capped by `max_delay_seconds`; a
    429's `Retry-After` or `resetMinutes` is waited instead when present. A server hint
    longer than `max_delay_seconds` is not waited for: the UsageLimit is raised at once
    with `retry_after_seconds`, so a background task can come back later.
    """

    attempts: int = 4
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 60.0

    def backoff(self, retry_number: int) -> float:
        return min(self.base_delay_seconds * (2**retry_number), self.max_delay_seconds)


class Transport:
    """Authenticated HTTP for one NSG account."""

    def __init__(
        self,
        *,
        app_key: str,
        username: str,
        password: str,
        verify: bool = True,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self.session = session or requests.Session()
        # requests encodes str credentials as Latin-1 and fails on anything else; send
        # UTF-8 bytes instead (RFC 7617's charset), as the emulator reads them.
        self.session.auth = (username.encode("utf-8"), password.encode("utf-8"))
        self.session.verify = verify
        self.session.headers["cipres-appkey"] = app_key
        # NSG answers 406 to requests that carry an Accept header it does not like
        # (docs/nsg-protocol.md §9, gotcha 1); requests adds `Accept: */*` by default.
        self.session.headers.pop("Accept", None)

    def close(self) -> None:
        self.session.close()

    def get(self, url: str, *, params: dict[str, str] | None = None, stream: bool = False):
        return self.request("GET", url, params=params, stream=stream)

    def delete(self, url: str):
        return self.request("DELETE", url)

    def post(self, url: str, *, data, files):
        return self.request(
            "POST",
            url,
            data=data,
            files=files,
            timeout=(self.timeouts.connect, self.timeouts.upload_read),
        )

    def request(self, method: str, url: str, *, timeout=None, **kwargs) -> requests.Response:
        """Send one request (retrying if idempotent); return a 2xx reply or raise NsgError."""
        timeout = timeout or (self.timeouts.connect, self.timeouts.read)
        retryable = method.upper() in IDEMPOTENT_METHODS
        attempts = max(1, self.retry.attempts) if retryable else 1
        for attempt in range(attempts):
            last_attempt = attempt == attempts - 1
            try:
                response = self.session.request(method, url, timeout=timeout, **kwargs)
            except requests.RequestException as exc:
                error = CommunicationError(
                    f"{method} {url} failed: {exc}",
                    display_message="Could not reach NSG.",
                )
                if last_attempt or not _is_transport_retryable(exc):
                    raise error from exc
                self._wait(self.retry.backoff(attempt), method, url, error)
                continue
            if 200 <= response.status_code < 300:
                return response
            error = _error_for(response)
            response.close()
            if last_attempt or not _is_status_retryable(response.status_code):
                raise error
            delay = self._delay(attempt, error)
            if delay is None:
                raise error
            self._wait(delay, method, url, error)
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, attempt: int, error: NsgError) -> float | None:
        hint = error.retry_after_seconds if isinstance(error, UsageLimit) else None
        if hint is None or hint <= 0:
            return self.retry.backoff(attempt)
        if hint > self.retry.max_delay_seconds:
            return None
        return hint

    def _wait(self, delay: float, method: str, url: str, error: NsgError) -> None:
        logger.warning("NSG %s %s: %s; retrying in %.1f s", method, url, error, delay)
        if delay > 0:
            self._sleep(delay)


def _is_transport_retryable(exc: requests.RequestException) -> bool:
    return isinstance(exc, requests.ConnectionError | requests.Timeout)


def _is_status_retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _error_for(response: requests.Response) -> NsgError:
    try:
        body = response.content
    except requests.RequestException:
        body = b""
    details = parse_error(body) if body else None
    if details is None:
        snippet = body[:200].decode("utf-8", "replace").strip()
        details = ErrorDetails(message=snippet or f"HTTP {response.status_code} {response.reason}")
    return error_from_reply(
        response.status_code,
        details,
        retry_after_seconds=_retry_after_seconds(response, details),
    )


def _retry_after_seconds(response: requests.Response, details: ErrorDetails) -> float | None:
    """The longest wait the server asks for, from Retry-After and limitStatus/resetMinutes."""
    hints = []
    header = response.headers.get("Retry-After", "").strip()
    if header:
        try:
            hints.append(float(header))
        except ValueError:
            try:
                when = parsedate_to_datetime(header)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                hints.append((when - datetime.now(UTC)).total_seconds())
    limit = details.limit_status
    if limit is not None and limit.reset_minutes is not None:
        hints.append(limit.reset_minutes * 60)
    hints = [max(0.0, hint) for hint in hints]
    return max(hints) if hints else None
