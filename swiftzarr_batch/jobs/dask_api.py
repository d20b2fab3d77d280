"""The dask and distributed calls that more than one job module makes, typed in one place.

dask and distributed ship ``py.typed`` but leave most functions unannotated, so ``mypy
--strict`` refuses to call them from typed code. Rather than silence every call site, this
module states, once, the signature the jobs rely on (as documented by dask) and the job
modules import from here: ``task``/``shared_node`` build graph nodes, ``compute`` runs them on
dask's local scheduler, ``current_client`` finds the ``distributed.Client`` that runs them on a
cluster, and ``DaskClient``/``Future`` are the parts of a client the jobs call.

``distributed`` is never imported just to look for a client (none can exist before it is
imported): ``import swiftzarr_batch`` does not load it, nor does a job on dask's local
scheduler.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Literal, Protocol, TypeVar, cast, overload

from dask.base import compute as _dask_compute
from dask.core import get_dependencies as _dask_get_dependencies
from dask.delayed import Delayed
from dask.delayed import delayed as _dask_delayed
from dask.highlevelgraph import HighLevelGraph

__all__ = [
    "DaskClient",
    "Delayed",
    "Future",
    "TaskGraph",
    "compute",
    "compute_here",
    "current_client",
    "shared_node",
    "task",
]

T = TypeVar("T")
OnError = Literal["raise", "return", "ignore"]

_delayed = cast(Callable[..., Any], _dask_delayed)
_compute = cast(Callable[..., tuple[Any, ...]], _dask_compute)
_get_dependencies = cast(
    Callable[[Mapping[Hashable, Any], Hashable], set[Hashable]], _dask_get_dependencies
)


class Future(Protocol):
    """A ``distributed.Future``: the jobs wait for its result, then let go of it."""

    @property
    def key(self) -> Any:
        """The task's key: how a result is matched to the part it was computed for."""

    @property
    def status(self) -> str:
        """``"pending"``, ``"finished"``, ``"error"``...: a finished task whose value is not needed
        is not fetched."""

    def result(self) -> Any:
        """The task's value, fetched from its worker (waits for it); raises the task's exception."""

    def release(self) -> None:
        """Let the cluster forget the task: once its value is recorded it is never re-run, even when
        its worker leaves."""


class DaskClient(Protocol):
    """The part of ``distributed.Client`` the jobs call (any ``distributed.Client`` is one)."""

    @overload
    def compute(self, collections: Delayed, *, retries: int = ...) -> Future: ...
    @overload
    def compute(self, collections: list[Delayed], *, retries: int = ...) -> list[Future]: ...

    def run(self, function: Callable[[], T], *, on_error: OnError = ...) -> dict[str, T]:
        """Call ``function`` once in every worker process (per-process counters); answers by worker
        address."""

    def cancel(self, futures: list[Future]) -> Any:
        """Stop tasks not yet run: the rest of a job that already failed."""

    def nthreads(self) -> dict[str, int]:
        """Threads per worker address: how many tasks the cluster runs at once."""


def current_client() -> DaskClient | None:
    """The current ``distributed.Client``, or None (then dask's local scheduler runs tasks).

    Nothing to look for while ``distributed`` was never imported (no client can exist then):
    importing it just to ask costs ~1 s of CPU per process, every copy and conversion.
    """
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        return cast(Callable[[], DaskClient], default_client)()
    except ValueError:  # no client was started in this process
        return None


def task(
    func: Callable[..., Any],
    *args: Any,
    key: Hashable | None = None,
    pure: bool | None = None,
) -> Delayed:
    """One task ``func(*args)``; arguments that are ``Delayed`` become its dependencies.

    ``key`` names the task (``dask_key_name``); without one dask derives it, from the arguments
    when ``pure`` or at random when ``pure=False`` (a task with side effects must never be
    merged with another that happens to get the same arguments).
    """
    call = _delayed(func, pure=pure)
    if key is None:
        return cast(Delayed, call(*args))
    return cast(Delayed, call(*args, dask_key_name=key))


def shared_node(obj: Any) -> Delayed:
    """``obj`` as one graph node that many tasks depend on: sent to the workers once.

    Not traversed: a store or a list of keys is passed as it is, not taken apart into tasks.
    """
    return cast(Delayed, _delayed(obj, traverse=False))


def compute(*lazy: Delayed) -> tuple[Any, ...]:
    """``dask.compute`` on the active scheduler: the values of ``lazy``, in order."""
    return _compute(*lazy)


def compute_here(lazy: Delayed) -> Any:
    """The value of ``lazy``, computed in the calling thread (dask's synchronous scheduler):
    for a caller that runs several small graphs at once from its own threads."""
    return _compute(lazy, scheduler="sync")[0]


class TaskGraph:
    """The graph behind one ``Delayed``, materialized once, to pick tasks out of it.

    ``dependencies(key)`` are the keys a task reads; ``parts(keys)`` makes one ``Delayed`` per
    key that all share this one graph (as one layer, so computing thousands of them together
    merges a few layers, not thousands of copies of the graph).
    """

    LAYER = "swiftzarr-parts"

    def __init__(self, lazy: Delayed) -> None:
        self.key: Hashable = lazy.key
        self.tasks = cast(dict[Hashable, Any], dict(lazy.__dask_graph__()))
        self._graph = HighLevelGraph({self.LAYER: cast(Any, self.tasks)}, {self.LAYER: set()})

    def dependencies(self, key: Hashable) -> set[Hashable]:
        """The keys of the tasks whose values the task ``key`` reads."""
        return _get_dependencies(self.tasks, key)

    def parts(self, keys: Sequence[Hashable]) -> list[Delayed]:
        """One ``Delayed`` per key, all sharing this graph as one layer: computing many of them
        together costs one graph, not one per part."""
        part = cast(Callable[..., Delayed], Delayed)
        return [part(key, self._graph, layer=self.LAYER) for key in keys]
