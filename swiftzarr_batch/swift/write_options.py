"""Where and for how long a store's objects live: storage policy and expiry.

Why its own small module: both settings belong to the store (they travel with its pickle to
dask workers) but act in the container layer, on every write: the policy when the container is
created (``X-Storage-Policy``; Swift never moves an existing container to another policy), the
expiry on every object written (``X-Delete-After``: chunk PUTs, metadata, large-object segments
and manifests, server-side copies), so that a scratch dataset cleans itself up as HPC scratch
file systems do. Keeping the rules here (checks, headers, the policy lookup in ``/info``) keeps
them the same on each of those paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from swiftzarr_batch.errors import ConfigurationError

__all__ = ["DELETE_AFTER", "STORAGE_POLICY", "WriteOptions", "resolve_policy"]

STORAGE_POLICY = "X-Storage-Policy"
DELETE_AFTER = "X-Delete-After"


@dataclass(frozen=True)
class WriteOptions:
    """``storage_policy``: the policy of containers this store creates (None: the cluster's
    default). ``delete_after``: seconds after which Swift deletes each object written (None:
    never)."""

    storage_policy: str | None = None
    delete_after: int | None = None

    def __post_init__(self) -> None:
        policy = self.storage_policy
        if policy is not None and (not isinstance(policy, str) or not policy.strip()):
            raise ConfigurationError(f"storage_policy must be a non-empty name, got {policy!r}")
        after = self.delete_after
        if after is not None and (isinstance(after, bool) or not isinstance(after, int)):
            raise ConfigurationError(f"delete_after must be whole seconds, got {after!r}")
        if after is not None and after < 1:
            raise ConfigurationError(f"delete_after must be at least 1 second, got {after}")

    @classmethod
    def of(cls, storage_policy: str | None = None, delete_after: int | None = None) -> WriteOptions:
        """From user input, where "" / 0 mean "not set" (config files and CLI defaults)."""
        return cls(storage_policy or None, delete_after or None)

    def object_headers(self, headers: Mapping[str, str] | None = None) -> dict[str, str]:
        """``headers`` plus ``X-Delete-After`` when the store expires its objects (a caller's
        own ``X-Delete-After``, e.g. a lock's, wins)."""
        send = dict(headers) if headers else {}
        if self.delete_after is not None and not any(k.lower() == "x-delete-after" for k in send):
            send[DELETE_AFTER] = str(self.delete_after)
        return send


def resolve_policy(wanted: str, offered: Mapping[str, str] | None, container: str) -> str:
    """The policy name ``/info`` spells for ``wanted`` (names and aliases, any case), else a
    ConfigurationError listing what the cluster offers. ``offered`` None (``/info`` hidden):
    ``wanted`` as given, for the server to judge."""
    if offered is None:
        return wanted
    by_lower = {k.lower(): v for k, v in offered.items()}
    if wanted.lower() in by_lower:
        return by_lower[wanted.lower()]
    names = ", ".join(sorted(set(offered.values()))) or "none"
    raise ConfigurationError(
        f"storage policy {wanted!r} for container {container!r} is not one of this cluster's "
        f"policies: {names}"
    )
