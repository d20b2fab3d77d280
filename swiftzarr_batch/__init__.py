"""zarr arrays and xarray datasets on OpenStack Swift, written, read and copied in parallel."""

from swiftzarr_batch.auth import Token, V1Password, acquire_token
from swiftzarr_batch.credentials import (
    CredentialsFile,
    EnvironmentCredentials,
    StorageURLOverride,
    check_token_lifetime,
)
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

__version__ = "0.1.0"

__all__ = [
    "AppendConflictError",
    "AuthenticationError",
    "ChunkAlignmentError",
    "ConfigurationError",
    "ConflictError",
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
    "V1Password",
    "acquire_token",
    "check_token_lifetime",
    "consolidate",
    "job_counters",
    "write_array",
    "write_dataset",
]
