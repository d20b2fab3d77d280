"""zarr arrays and xarray datasets on OpenStack Swift, written, read and copied in parallel."""

from swiftzarr_batch.auth import Token, V1Password, acquire_token
from swiftzarr_batch.credentials import (
    CredentialsFile,
    EnvironmentCredentials,
    StorageURLOverride,
    check_token_lifetime,
)
from swiftzarr_batch.copy import CopyError, CopySummary, copy_store
from swiftzarr_batch.dask_datasets import write_dataset
from swiftzarr_batch.dask_helpers import JobResult, consolidate, job_counters, write_array
from swiftzarr_batch.errors import (
    AppendConflictError,
    AuthenticationError,
    ChunkAlignmentError,
    ConfigurationError,
    ConflictError,
    IntegrityError,
    InvalidNameError,
    PermissionDeniedError,
    ReadOnlyError,
    ServerError,
    SwiftHTTPError,
    SwiftZarrError,
    TokenExpiredError,
    TokenLifetimeWarning,
)
from swiftzarr_batch.keystone import KeystoneApplicationCredential, KeystonePassword
from swiftzarr_batch.retry import RetryPolicy
from swiftzarr_batch.store import SwiftStore
from swiftzarr_batch.verify import VerifyReport, verify_store

__version__ = "0.1.0"

__all__ = [
    "AppendConflictError",
    "AuthenticationError",
    "ChunkAlignmentError",
    "ConfigurationError",
    "ConflictError",
    "CopyError",
    "CopySummary",
    "CredentialsFile",
    "EnvironmentCredentials",
    "IntegrityError",
    "InvalidNameError",
    "KeystoneApplicationCredential",
    "KeystonePassword",
    "JobResult",
    "PermissionDeniedError",
    "ReadOnlyError",
    "RetryPolicy",
    "ServerError",
    "StorageURLOverride",
    "SwiftHTTPError",
    "SwiftStore",
    "SwiftZarrError",
    "Token",
    "TokenExpiredError",
    "TokenLifetimeWarning",
    "VerifyReport",
    "V1Password",
    "acquire_token",
    "check_token_lifetime",
    "consolidate",
    "copy_store",
    "job_counters",
    "write_array",
    "verify_store",
    "write_dataset",
]
