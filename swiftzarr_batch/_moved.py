"""Old module paths of the flat package, kept importable for users' code.

Until the package was split into rooms, every module sat in ``swiftzarr_batch/`` itself
(``swiftzarr_batch.transport``, ``swiftzarr_batch.server``...). Importing such a name still
works: it warns (``DeprecationWarning``, naming the new path) and gives the *same* module object
as the new path, so state (the process's sessions, token cache) and monkeypatching are shared.
``python -m`` of an old path runs the new module.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import CodeType, ModuleType

MOVED: dict[str, str] = {
    "http1": "swift.http1",
    "retry": "swift.retry",
    "status": "swift.status",
    "transport": "swift.session",
    "container": "swift.container",
    "large_objects": "swift.large_objects",
    "names": "swift.names",
    "credentials": "auth.chain",
    "keystone": "auth.keystone",
    "zarr_keys": "store.keys",
    "hierarchy": "store.hierarchy",
    "locations": "store.locations",
    "objects": "transfer.objects",
    "copy": "transfer.copy",
    "copy_tasks": "transfer.copy_tasks",
    "verify": "transfer.verify",
    "dask_helpers": "jobs.write_array",
    "dask_datasets": "jobs.write_dataset",
    "taskrun": "jobs.runner",
    "cli_commands": "cli.commands",
    "server": "testing.swift_server",
    "keystone_server": "testing.keystone_server",
}
"""Old name (under ``swiftzarr_batch.``) to new name (under ``swiftzarr_batch.``)."""

_PACKAGE = __name__.rpartition(".")[0]


class _MovedLoader(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.new}; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module object is the new module, already imported."""

    def get_code(self, fullname: str) -> CodeType | None:
        """For ``python -m <old path>``: the new module's code."""
        spec = importlib.util.find_spec(self.new)
        loader = spec.loader if spec else None
        if not isinstance(loader, importlib.abc.InspectLoader):
            return None
        return loader.get_code(self.new)


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != _PACKAGE or name not in MOVED:
            return None
        new = f"{_PACKAGE}.{MOVED[name]}"
        new_spec = importlib.util.find_spec(new)
        spec = importlib.util.spec_from_loader(
            fullname, _MovedLoader(new), origin=new_spec.origin if new_spec else None
        )
        if spec is not None and spec.origin:
            spec.has_location = True  # ``python -m`` of the old path sets ``__file__``
        return spec


def install() -> None:
    """Make the old paths importable (once per process)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
