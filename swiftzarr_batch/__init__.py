"""zarr arrays and xarray datasets on OpenStack Swift, written, read and copied in parallel.

The public API is what this module exports. The package is layered in rooms, each importing only
the rooms below it: ``cli`` > ``workflows`` > ``transfer`` > ``jobs`` > ``store`` > ``auth`` >
``swift``; ``testing`` (local servers, fault proxy) is for tests, benchmarks and ``serve``.
"""

from swiftzarr_batch import _moved
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
from swiftzarr_batch.errors import (
    AppendConflictError,
    AuthenticationError,
    BulkDeleteError,
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
from swiftzarr_batch.jobs.counters import job_counters
from swiftzarr_batch.jobs.write_array import JobResult, consolidate, write_array
from swiftzarr_batch.jobs.write_dataset import write_dataset
from swiftzarr_batch.store import SwiftStore
from swiftzarr_batch.swift.retry import RetryPolicy
from swiftzarr_batch.transfer.copy import CopyError, CopySummary, copy_store
from swiftzarr_batch.transfer.share import share_public, temp_url, unshare_public
from swiftzarr_batch.transfer.verify import VerifyReport, verify_store
from swiftzarr_batch.versioned import (
    LeaseHeldError,
    ReadonlySession,
    Repository,
    VersionedError,
    WritableSession,
)

_moved.install()

__version__ = "0.1.0"

__all__ = [
    "AppendConflictError",
    "AuthenticationError",
    "BulkDeleteError",
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
