"""Typed errors of swiftzarr_batch.

Every failure a user can act on has its own class, so callers can tell "wrong password" from
"token expired" from "server down" without parsing messages. No message ever contains a key,
password or token: errors are built from what was asked for (method, container/object) and what
the server answered (status, reason), never from request headers.
"""

from __future__ import annotations


class SwiftZarrError(Exception):
    """Base class of every error raised by swiftzarr_batch."""


class ConfigurationError(SwiftZarrError, ValueError):
    """Arguments or environment do not describe a usable store (e.g. no credentials at all)."""


class InvalidNameError(SwiftZarrError, ValueError):
    """A container name, prefix or key that Swift would reject or misinterpret."""


class AuthenticationError(SwiftZarrError, PermissionError):
    """The auth endpoint refused the credentials, or could not be reached."""


class TokenExpiredError(AuthenticationError):
    """The token was rejected (401) and there is no way to get a new one here."""


class PermissionDeniedError(SwiftZarrError, PermissionError):
    """The server answered 403: the token is valid but may not do this. Never means "missing"."""


class ListingNotAllowedError(PermissionDeniedError):
    """A store opened from a signed link was asked to list: temp URLs can only GET and HEAD
    objects, so such a dataset is readable only through its consolidated metadata."""


class ReadOnlyError(SwiftZarrError, ValueError):
    """A write was attempted on a read-only store.

    The message starts with zarr's own wording, so zarr's conformance tests and user code that
    matches on it keep working.
    """

    def __init__(self, what: str = "") -> None:
        msg = "store was opened in read-only mode and does not support writing"
        super().__init__(f"{msg}: {what}" if what else msg)


class SwiftHTTPError(SwiftZarrError, OSError):
    """The server answered with a status that is neither success nor "missing".

    ``status`` is the HTTP status (or None when no answer came back at all) and ``attempts``
    how many times the request was tried before giving up.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        attempts: int = 1,
        method: str = "",
        path: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts
        self.method = method
        self.path = path


class BulkDeleteError(SwiftHTTPError):
    """A bulk delete refused some names; ``refused`` holds them (object names, unquoted)."""

    def __init__(
        self,
        message: str,
        *,
        refused: tuple[str, ...] = (),
        status: int | None = None,
        method: str = "",
        path: str = "",
    ) -> None:
        super().__init__(message, status=status, method=method, path=path)
        self.refused = refused


class ProxyError(SwiftHTTPError):
    """The forward proxy refused (407: credentials wanted or wrong, 403, 502: it could not
    reach Swift...). ``status`` is the proxy's; the message names the proxy as
    ``http://host:port``, never its credentials. Not retried: asking again gets the same."""


class ConflictError(SwiftHTTPError):
    """409/412: the object changed or exists where it must not (e.g. a held lock)."""


class IntegrityError(SwiftHTTPError):
    """Bytes on the wire did not match their checksum (422 on upload, MD5 mismatch on download)."""


class ChangeNotAppliedError(SwiftZarrError, RuntimeError):
    """The server answered success to a change that, read back, it does not hold (a read ACL
    left in place by a middleware or a proxy that dropped the header). ``what`` names the
    setting and its container, ``wanted`` and ``held`` the values asked for and found."""

    def __init__(self, what: str, *, wanted: str, held: str) -> None:
        super().__init__(
            f"{what} was not changed by the server: asked for {wanted!r}, it holds {held!r}"
        )
        self.what = what
        self.wanted = wanted
        self.held = held


class ServerError(SwiftZarrError, RuntimeError):
    """The local Swift server could not be installed, started or stopped."""


class TokenLifetimeWarning(UserWarning):
    """The token will expire before a job is expected to end, and nothing can renew it."""


class ChunkAlignmentError(SwiftZarrError, ValueError):
    """Dask blocks do not line up with zarr chunks (or shards): two parallel tasks would
    read-modify-write the same object and one could silently undo the other's write."""


class AppendConflictError(SwiftZarrError, ValueError):
    """An append that would leave a gap or duplicate steps along the append dimension.

    Either an earlier, *different* append to the dataset did not finish (re-running that one,
    with the same data, finishes it), or the labels to append are already in the dataset
    somewhere other than at its end.
    """
