"""zarr arrays and xarray datasets on OpenStack Swift, written, read and copied in parallel.

The public API is what this module exports. The package is layered in rooms, each importing only
the rooms below it: ``cli`` > ``workflows`` > ``transfer`` > ``jobs`` > ``versioned`` > ``store`` >
``auth`` > ``swift`` > ``errors``; ``testing`` (local servers, fault proxy) is for tests,
benchmarks and ``serve`` only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from swiftzarr_batch import _moved
from swiftzarr_batch.errors import (
    AppendConflictError,
    AuthenticationError,
    BulkDeleteError,
    ChangeNotAppliedError,
    ChunkAlignmentError,
    ConfigurationError,
    ConflictError,
    IntegrityError,
    InvalidNameError,
    ListingNotAllowedError,
    PermissionDeniedError,
    ReadOnlyError,
    ServerError,
    SwiftHTTPError,
    SwiftZarrError,
    TokenExpiredError,
    TokenLifetimeWarning,
)

if TYPE_CHECKING:  # what the names below are, for type checkers and IDEs (imported lazily)
    from swiftzarr_batch.auth import (
        CredentialsFile,
        EnvironmentCredentials,
        KeystoneApplicationCredential,
        KeystonePassword,
        StorageURLOverride,
        Token,
        V1Password,
        acquire_token,
        check_token_lifetime,
    )
    from swiftzarr_batch.jobs.counters import (
        job_counters,
    )
    from swiftzarr_batch.jobs.write_array import (
        JobResult,
        consolidate,
        write_array,
    )
    from swiftzarr_batch.jobs.write_dataset import (
        write_dataset,
    )
    from swiftzarr_batch.store import (
        SwiftStore,
    )
    from swiftzarr_batch.swift.retry import (
        RetryPolicy,
    )
    from swiftzarr_batch.transfer.copy import (
        CopyError,
        CopySummary,
        copy_store,
    )
    from swiftzarr_batch.transfer.share import (
        share_public,
        temp_url,
        unshare_public,
    )
    from swiftzarr_batch.transfer.verify import (
        VerifyReport,
        verify_store,
    )
    from swiftzarr_batch.versioned import (
        LeaseHeldError,
        ReadonlySession,
        Repository,
        VersionedError,
        WritableSession,
    )

#: Public name -> the module that defines it. ``import swiftzarr_batch`` loads none of them (no
#: zarr, dask, distributed or xarray): a name is imported on first use (PEP 562), so the CLI's
#: ``--help``, the auth helpers and the Swift client start without the scientific stack.
_LAZY: dict[str, str] = {
    "CopyError": "swiftzarr_batch.transfer.copy",
    "CopySummary": "swiftzarr_batch.transfer.copy",
    "CredentialsFile": "swiftzarr_batch.auth",
    "EnvironmentCredentials": "swiftzarr_batch.auth",
    "JobResult": "swiftzarr_batch.jobs.write_array",
    "KeystoneApplicationCredential": "swiftzarr_batch.auth",
    "KeystonePassword": "swiftzarr_batch.auth",
    "RetryPolicy": "swiftzarr_batch.swift.retry",
    "StorageURLOverride": "swiftzarr_batch.auth",
    "SwiftStore": "swiftzarr_batch.store",
    "Token": "swiftzarr_batch.auth",
    "V1Password": "swiftzarr_batch.auth",
    "VerifyReport": "swiftzarr_batch.transfer.verify",
    "acquire_token": "swiftzarr_batch.auth",
    "check_token_lifetime": "swiftzarr_batch.auth",
    "consolidate": "swiftzarr_batch.jobs.write_array",
    "copy_store": "swiftzarr_batch.transfer.copy",
    "job_counters": "swiftzarr_batch.jobs.counters",
    "share_public": "swiftzarr_batch.transfer.share",
    "temp_url": "swiftzarr_batch.transfer.share",
    "unshare_public": "swiftzarr_batch.transfer.share",
    "verify_store": "swiftzarr_batch.transfer.verify",
    "write_array": "swiftzarr_batch.jobs.write_array",
    "write_dataset": "swiftzarr_batch.jobs.write_dataset",
    "LeaseHeldError": "swiftzarr_batch.versioned",
    "ReadonlySession": "swiftzarr_batch.versioned",
    "Repository": "swiftzarr_batch.versioned",
    "VersionedError": "swiftzarr_batch.versioned",
    "WritableSession": "swiftzarr_batch.versioned",
}


def __getattr__(name: str) -> Any:
    """PEP 562 lazy export: imports the submodule that defines ``name`` on first access
    (``import swiftzarr_batch`` stays cheap: no zarr, dask or aiohttp), cached in the module."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'swiftzarr_batch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups do not come back here
    return value


def __dir__() -> list[str]:
    """PEP 562: the lazy exports are listed too (tab completion, ``dir()``), though not
    imported yet."""
    return sorted({*globals(), *_LAZY})


_moved.install()

__version__ = "0.1.0"

__all__ = [
    "AppendConflictError",
    "AuthenticationError",
    "BulkDeleteError",
    "ChangeNotAppliedError",
    "ChunkAlignmentError",
    "ConfigurationError",
    "ConflictError",
    "CopyError",
    "CopySummary",
    "CredentialsFile",
    "EnvironmentCredentials",
    "IntegrityError",
    "InvalidNameError",
    "JobResult",
    "KeystoneApplicationCredential",
    "KeystonePassword",
    "LeaseHeldError",
    "ListingNotAllowedError",
    "PermissionDeniedError",
    "ReadOnlyError",
    "ReadonlySession",
    "Repository",
    "RetryPolicy",
    "ServerError",
    "StorageURLOverride",
    "SwiftHTTPError",
    "SwiftStore",
    "SwiftZarrError",
    "Token",
    "TokenExpiredError",
    "TokenLifetimeWarning",
    "V1Password",
    "VerifyReport",
    "VersionedError",
    "WritableSession",
    "acquire_token",
    "check_token_lifetime",
    "consolidate",
    "copy_store",
    "job_counters",
    "share_public",
    "temp_url",
    "unshare_public",
    "verify_store",
    "write_array",
    "write_dataset",
]
