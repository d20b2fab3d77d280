"""The one place that knows what Swift's HTTP status codes mean for us.

Rules (the project's standards): only 404 means "missing"; 401 means "get a new token (once)";
connection trouble, 408, 422 (a body damaged on the way), 429/498 and 5xx are worth retrying;
everything else is an error the caller must see. Every other module asks this one instead
of comparing numbers itself.
"""

from __future__ import annotations

from enum import Enum

from swiftzarr_batch.errors import (
    ConflictError,
    IntegrityError,
    PermissionDeniedError,
    SwiftHTTPError,
    TokenExpiredError,
)


class Outcome(Enum):
    OK = "ok"
    MISSING = "missing"
    RETRY = "retry"
    REAUTH = "reauth"
    FAIL = "fail"


NOT_FOUND = 404
PRECONDITION_FAILED = 412
RANGE_NOT_SATISFIABLE = 416
RETRYABLE = frozenset({408, 422, 429, 498, 500, 502, 503, 504})
"""408 request timeout, 422 a PUT body that arrived damaged (its MD5 is not the ETag we sent:
sending the same bytes again is safe), 429/498 rate limited (Swift uses 498 too), 5xx server
trouble."""


def classify(status: int) -> Outcome:
    """Map a status code to what the data path should do with it."""
    if 200 <= status < 300:
        return Outcome.OK
    if status == NOT_FOUND:
        return Outcome.MISSING
    if status == 401:
        return Outcome.REAUTH
    if status in RETRYABLE or status >= 500:
        return Outcome.RETRY
    return Outcome.FAIL


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a ``Retry-After`` header given in seconds (HTTP dates are not used by Swift)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, min(seconds, 300.0))


def error_for(
    status: int | None,
    method: str,
    path: str,
    *,
    reason: str = "",
    attempts: int = 1,
    detail: str = "",
) -> SwiftHTTPError | PermissionDeniedError | TokenExpiredError:
    """Build the typed error for a failed request. Never includes headers (tokens live there)."""
    where = f"{method} {path}"
    tried = f" after {attempts} attempts" if attempts > 1 else ""
    extra = f": {detail}" if detail else ""
    if status is None:
        return SwiftHTTPError(
            f"{where} failed{tried}: no answer from the server ({reason or 'connection error'})",
            status=None,
            attempts=attempts,
            method=method,
            path=path,
        )
    text = f"{where} answered {status} {reason}".rstrip() + tried + extra
    if status == 401:
        return TokenExpiredError(
            f"{where} was refused with 401: the token is expired or invalid and no credentials "
            "are available to get a new one (pass authurl/user/key, set ST_AUTH/ST_USER/ST_KEY, "
            "or give the store a credential provider)"
        )
    if status == 403:
        return PermissionDeniedError(f"{text} (permission denied; this is not 'missing')")
    if status in (409, PRECONDITION_FAILED):
        return ConflictError(text, status=status, attempts=attempts, method=method, path=path)
    if status == 422:
        return IntegrityError(
            f"{text} (the server's checksum of the body did not match the ETag we sent)",
            status=status,
            attempts=attempts,
            method=method,
            path=path,
        )
    return SwiftHTTPError(text, status=status, attempts=attempts, method=method, path=path)
