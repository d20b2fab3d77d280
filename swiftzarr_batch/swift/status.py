"""The one place that knows what Swift's HTTP status codes mean for us.

Why one place: "is this object missing?", "is this worth another try?" and "did that bulk
delete really delete?" must get the same answer on every path (store, copies, locks, auth),
so every other module asks this one instead of comparing numbers itself.

Rules (the project's standards): only 404 means "missing"; 401 means "get a new token (once)";
connection trouble, 408, 422 (a body damaged on the way), 429/498 and 5xx are worth retrying;
everything else is an error the caller must see, as the typed error of ``error_for``. The
bulk middleware (and SLO's ``multipart-manifest=delete``) answers 200 even when deletes
failed: ``check_bulk_delete`` reads its JSON result by the same rules (a 404 inside it is
"already gone", not a failure).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from urllib.parse import unquote

from swiftzarr_batch.errors import (
    BulkDeleteError,
    ConflictError,
    IntegrityError,
    PermissionDeniedError,
    SwiftHTTPError,
    TokenExpiredError,
)

__all__ = [
    "NOT_FOUND",
    "NO_CONTENT",
    "OK",
    "PRECONDITION_FAILED",
    "RANGE_NOT_SATISFIABLE",
    "RETRYABLE",
    "UNAUTHORIZED",
    "BulkDeleteResult",
    "Outcome",
    "check_bulk_delete",
    "classify",
    "error_for",
    "is_range_not_satisfiable",
    "range_ignored",
    "retry_after_seconds",
]


class Outcome(Enum):
    """What the data path does with an answer."""

    OK = "ok"
    MISSING = "missing"
    RETRY = "retry"
    REAUTH = "reauth"
    FAIL = "fail"


OK = 200
NO_CONTENT = 204
UNAUTHORIZED = 401
FORBIDDEN = 403
NOT_FOUND = 404
CONFLICT = 409
PRECONDITION_FAILED = 412
RANGE_NOT_SATISFIABLE = 416
UNPROCESSABLE = 422
RETRYABLE = frozenset({408, UNPROCESSABLE, 429, 498, 500, 502, 503, 504})
"""408 request timeout, 422 a PUT body that arrived damaged (its MD5 is not the ETag we sent:
sending the same bytes again is safe), 429/498 rate limited (Swift uses 498 too), 5xx server
trouble."""


def classify(status: int) -> Outcome:
    """Map a status code to what the data path should do with it."""
    if 200 <= status < 300:
        return Outcome.OK
    if status == NOT_FOUND:
        return Outcome.MISSING
    if status == UNAUTHORIZED:
        return Outcome.REAUTH
    if status in RETRYABLE or status >= 500:
        return Outcome.RETRY
    return Outcome.FAIL


def is_range_not_satisfiable(status: int) -> bool:
    """A range read past the object's end (416): the object exists, the range holds no bytes."""
    return status == RANGE_NOT_SATISFIABLE


def range_ignored(status: int, range_header: str | None) -> bool:
    """True when a ranged GET was answered with the whole body (200, not 206): some servers
    and proxies ignore ``Range``, so the caller must cut the range out itself."""
    return range_header is not None and status == OK


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
    if status == UNAUTHORIZED:
        return TokenExpiredError(
            f"{where} was refused with 401: the token is expired or invalid and no credentials "
            "are available to get a new one (pass authurl/user/key, set ST_AUTH/ST_USER/ST_KEY, "
            "or give the store a credential provider)"
        )
    if status == FORBIDDEN:
        return PermissionDeniedError(f"{text} (permission denied; this is not 'missing')")
    if status in (CONFLICT, PRECONDITION_FAILED):
        return ConflictError(text, status=status, attempts=attempts, method=method, path=path)
    if status == UNPROCESSABLE:
        return IntegrityError(
            f"{text} (the server's checksum of the body did not match the ETag we sent)",
            status=status,
            attempts=attempts,
            method=method,
            path=path,
        )
    return SwiftHTTPError(text, status=status, attempts=attempts, method=method, path=path)


# -- bulk-delete results ------------------------------------------------------------------------
@dataclass(frozen=True)
class BulkDeleteResult:
    """The JSON result of a bulk delete (or of deleting an SLO manifest with its segments).

    ``errors`` holds the (name, status) pairs that failed for another reason than 404.
    """

    deleted: int
    not_found: int
    response_status: str
    errors: tuple[tuple[str, str], ...]


def check_bulk_delete(
    body: bytes | bytearray,
    *,
    what: str,
    http_status: int,
    method: str,
    path: str,
    total: int | None = None,
    names: Sequence[str] = (),
) -> BulkDeleteResult | None:
    """Read a bulk-delete result; raise ``SwiftHTTPError`` if any delete failed.

    The middleware answers 200 and reports each object's fate in the body (``Accept:
    application/json``): a failure is an error entry other than 404 (already gone is what a
    delete wants) or a ``Response Status`` that is not 2xx. Returns None when the body is not
    a JSON object (a middleware that is missing, or an old SLO one answering 204 without a
    body): whether that is an error is the caller's to say. ``what`` names the operation in
    the message; ``total`` is how many names were asked for, ``names`` which (named as refused
    when the middleware refuses the request as a whole). The ``BulkDeleteError`` carries the
    refused names in ``refused``.
    """
    try:
        raw = json.loads(body)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    errors = tuple(
        (str(entry[0]), str(entry[1]))
        for entry in raw.get("Errors") or []
        if not str(entry[1]).startswith(str(NOT_FOUND))
    )
    result = BulkDeleteResult(
        deleted=int(raw.get("Number Deleted", 0)),
        not_found=int(raw.get("Number Not Found", 0)),
        response_status=str(raw.get("Response Status", "")),
        errors=errors,
    )
    if errors or _classify_text(result.response_status) is not Outcome.OK:
        if errors:  # the middleware names each refused object (URL-quoted)
            refused = tuple(unquote(name) for name, _ in errors)
            shown = "; ".join(f"{unquote(name)}: {status}" for name, status in errors[:5])
        else:  # the whole request was refused: every name in it is
            refused = tuple(names)
            body_text = str(raw.get("Response Body", "")).strip()
            shown = (
                (f"{body_text}; " if body_text else "")
                + "refused: "
                + ", ".join(repr(n) for n in refused[:5])
            )
        more = f" (+{len(refused) - 5} more)" if len(refused) > 5 else ""
        of = f" for {len(refused)} of {total} objects" if total is not None else ""
        raise BulkDeleteError(
            f"{what} failed{of} ({result.response_status}) {shown}{more}".rstrip(),
            refused=refused,
            status=http_status,
            method=method,
            path=path,
        )
    return result


def _classify_text(status_line: str) -> Outcome:
    """``classify`` for a status written as text (``"200 OK"``), as bulk results give it;
    FAIL when it does not start with a number."""
    code = status_line.split(" ", 1)[0]
    return classify(int(code)) if code.isdigit() else Outcome.FAIL
