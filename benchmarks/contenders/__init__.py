"""The contenders: one class per client, each run in its own worker process.

A contender implements the operations it can do (``w1_write``, ``w2_read``, ``w3_keys``,
``w3_dir``, ``w4_swift2swift``, ``w4_local2swift``, ``w5_delete``); each returns a small dict
(``objects``, ``bytes``, ``check``...) that the worker adds the measured costs to. Imports are
lazy: a worker imports only its own contender's client library.
"""

from __future__ import annotations

import importlib
from typing import Any

REGISTRY: dict[str, str] = {
    "raw": "benchmarks.contenders.raw:RawHTTP",
    "raw-lean": "benchmarks.contenders.raw:RawLean",
    "ours": "benchmarks.contenders.ours:Ours",
    "ours-helpers": "benchmarks.contenders.ours:OursHelpers",
    "ours-xarray": "benchmarks.contenders.ours:OursXarray",
    "ours-nomd5": "benchmarks.contenders.ours:OursNoMD5",
    "zarr-swiftstore": "benchmarks.contenders.peers:ZarrSwiftStore",
    "s3fs": "benchmarks.contenders.peers:S3fs",
    "obstore": "benchmarks.contenders.peers:Obstore",
    "swiftspec": "benchmarks.contenders.peers:Swiftspec",
    "zarr-memory": "benchmarks.contenders.peers:ZarrMemory",
    "swiftclient": "benchmarks.contenders.swiftclient_cli:SwiftclientInProcess",
    "swift-cli": "benchmarks.contenders.swiftclient_cli:SwiftCLI",
}


def make(name: str) -> Any:
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)()
