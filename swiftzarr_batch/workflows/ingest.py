"""Append new input files (netCDF, or anything xarray opens) to one zarr dataset along a
dimension, e.g. time. Run from cron or a batch scheduler:
``python -m swiftzarr_batch.workflows.ingest CONFIG`` (or ``swiftzarr ingest CONFIG``).

Idempotent and crash-safe: the files already ingested are listed in the dataset's record
(``.swiftzarr/ingest.json``, see ``dataset_state``), updated only after each append completed;
a re-run skips them, and after a crash it first rolls the arrays back to the recorded length.
Two runs never write at once (``DatasetLock``; the second exits with 75). Chunks are written in
parallel by dask; consolidated metadata is written once, at the end; then the dataset is
verified (every chunk present, metadata valid, lengths equal to the record) and only a
verified run exits 0. See ``workflows/README.md`` for the config file.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import zarr

from swiftzarr_batch.jobs.clusters import ClusterConfig, toml_section
from swiftzarr_batch.jobs.counters import cluster_counters, counters_delta
from swiftzarr_batch.jobs.progress import Progress
from swiftzarr_batch.jobs.runner import dask_context
from swiftzarr_batch.transfer.verify import verify_store
from swiftzarr_batch.workflows import dataset_state as state
from swiftzarr_batch.workflows.common import (
    REQUIRED,
    Schema,
    location_keys,
    main_for,
    open_location,
    run_workflow,
)
from swiftzarr_batch.workflows.lock import DatasetLock
from swiftzarr_batch.workflows.versioned_target import versioned_session

log = logging.getLogger(__name__)

SCHEMA: Schema = {
    "source": {
        "directory": (str, REQUIRED),
        "pattern": (str, "*.nc"),
        "engine": (str, ""),
        "recursive": (bool, False),
        "min_age_seconds": ((int, float), 0),
    },
    "target": location_keys(),
    "ingest": {
        "append_dim": (str, REQUIRED),
        "chunks": (dict, {}),
        "files_per_commit": (int, 8),
        "zarr_format": (int, 3),
        "consolidated": (bool, True),
        "lock_ttl_seconds": ((int, float), 3600),
        "drop_variables": (list, []),
        "versioned": (bool, False),
    },
    "verify": {"content": (bool, False)},
    "dask": toml_section(),  # see jobs.clusters.ClusterConfig
    "output": {"summary": (str, "")},
}


@dataclass(frozen=True)
class InputFile:
    name: str  # relative to the source directory: what the record remembers
    path: Path
    size: int
    mtime: float


def find_inputs(
    directory: str | Path, pattern: str, *, recursive: bool = False, min_age_seconds: float = 0
) -> list[InputFile]:
    """Input files sorted by name; files modified in the last ``min_age_seconds`` are left for
    the next run (they may still be being written)."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"input directory {root} does not exist")
    now = time.time()
    found = []
    for path in root.rglob("*") if recursive else root.iterdir():
        if not path.is_file() or not fnmatch.fnmatch(path.name, pattern):
            continue
        st = path.stat()
        if now - st.st_mtime < min_age_seconds:
            log.info("leaving %s for the next run: modified %.0f s ago", path, now - st.st_mtime)
            continue
        found.append(InputFile(path.relative_to(root).as_posix(), path, st.st_size, st.st_mtime))
    return sorted(found, key=lambda f: f.name)


def run_from_config(
    config_path: str | Path,
    summary_path: str | Path | None = None,
    *,
    debug: bool = False,
    insecure: bool = False,
    dask: Mapping[str, Any] | None = None,
) -> int:
    """Append new input files to a zarr dataset as the TOML config says; returns the exit code.

    ``dask``: a cluster choice (``[dask]`` keys) that replaces the config's ``[dask]``.
    """
    return run_workflow(
        "ingest",
        config_path,
        SCHEMA,
        ingest,
        summary_path,
        debug=debug,
        insecure=insecure,
        dask=dask,
    )


def ingest(config: dict[str, dict[str, Any]], summary: dict[str, Any]) -> None:
    """Run one ingest from a parsed config: find new input files, append them under the
    dataset's lock (or one versioned commit), verify, and record the outcome in ``summary``."""
    src, tgt, ing = config["source"], config["target"], config["ingest"]
    if ing["files_per_commit"] < 1 or ing["zarr_format"] not in (2, 3):
        raise ValueError("[ingest] files_per_commit must be >= 1 and zarr_format 2 or 3")
    store = open_location(tgt)
    files = find_inputs(
        src["directory"],
        src["pattern"],
        recursive=src["recursive"],
        min_age_seconds=src["min_age_seconds"],
    )
    summary.update(
        target=tgt["url"],
        files_found=len(files),
        files_ingested=[],
        files_changed_since_ingest=[],
        rolled_back=[],
        recreated=False,
    )
    cluster = ClusterConfig.from_mapping(config["dask"], where="[dask]")
    summary["cluster"] = cluster.kind
    before = cluster_counters()
    ttl = float(ing["lock_ttl_seconds"])
    with dask_context(cluster=cluster, stores=(store,)), state.quiet_about_bookkeeping():
        if ing["versioned"]:
            # one commit per run, after the run verified: readers see all of it or none
            with versioned_session(store, ttl) as session:
                _ingest_into(session.store, session, files, config, summary)
                if summary["verified"] and summary["files_ingested"]:
                    message = f"ingest: {len(summary['files_ingested'])} files"
                    summary["snapshot"] = session.commit(message)
                    log.info("committed snapshot %s", summary["snapshot"])
        else:
            with DatasetLock(store, "ingest", ttl=ttl) as lock:
                _ingest_into(store, lock, files, config, summary)
    summary["counters"] = counters_delta(before, cluster_counters())


class _Guard(Protocol):
    def check(self) -> None: ...


def _ingest_into(
    store: Any,
    lock: _Guard,
    files: Sequence[InputFile],
    config: dict[str, dict[str, Any]],
    summary: dict[str, Any],
) -> None:
    """Append the new files to ``store`` (a plain target under the dataset lock, or a
    versioned target's writable session), then consolidate and verify."""
    tgt, ing = config["target"], config["ingest"]
    dim = ing["append_dim"]
    record = _recover(store, dim, summary)
    summary["length_before"] = record["length"]
    done = {f["name"]: f for f in record["files"]}
    for f in files:
        if f.name in done and (done[f.name]["size"], done[f.name]["mtime"]) != (f.size, f.mtime):
            summary["files_changed_since_ingest"].append(f.name)
            log.warning("%s changed after it was ingested; it is not ingested again", f.name)
    new = [f for f in files if f.name not in done]
    log.info("%d input files, %d new", len(files), len(new))
    step = ing["files_per_commit"]
    progress = Progress("ingest", len(new), unit="files")  # bytes: the input files' sizes
    for start in range(0, len(new), step):
        batch = new[start : start + step]
        lock.check()
        _append(store, batch, record, config)
        lock.check()  # never commit under a lock that another run has taken over
        state.write_record(store, record)
        summary["files_ingested"] += [f.name for f in batch]
        progress.advance(len(batch), sum(f.size for f in batch))
        log.info(
            "committed %d files; %s has %d entries along %s",
            len(summary["files_ingested"]),
            tgt["url"],
            record["length"],
            dim,
        )
    progress.finish()
    if ing["consolidated"] and state.dataset_exists(store):
        zarr.consolidate_metadata(store)
    summary["length_after"] = record["length"]
    _verify(store, dim, record, config, summary)


def _recover(store: Any, dim: str, summary: dict[str, Any]) -> dict[str, Any]:
    """The committed record, with the dataset brought back to it after any crash."""
    record = state.read_record(store)
    exists = state.dataset_exists(store)
    if record is None:
        if exists:
            raise RuntimeError(
                "the target holds a zarr dataset without an ingest record "
                f"({state.RECORD_KEY}): it was not created by ingest; use a new target"
            )
        record = state.new_record(dim)
        state.write_record(store, record)  # before the dataset: a crash is then recognisable
        return record
    if record.get("append_dim") != dim:
        raise ValueError(
            f"the dataset was ingested along {record.get('append_dim')!r}, the config says {dim!r}"
        )
    if record["length"] == 0 and exists:
        removed = state.clear_dataset(store)
        log.warning("removed %d keys of a dataset whose creation was interrupted", removed)
        summary["recreated"] = True
    elif record["length"] > 0 and not exists:
        raise RuntimeError(
            f"the ingest record lists {len(record['files'])} files but the "
            "dataset is gone; remove the record to start over"
        )
    elif exists:
        summary["rolled_back"] = state.roll_back(store, dim, record["length"])
    return record


def _open_inputs(files: Sequence[InputFile], config: dict[str, dict[str, Any]]) -> Any:
    import xarray as xr

    dim, engine = config["ingest"]["append_dim"], config["source"]["engine"] or None
    parts = []
    for f in files:
        ds = xr.open_dataset(f.path, engine=engine, chunks={})
        ds = ds.drop_vars([v for v in config["ingest"]["drop_variables"] if v in ds.variables])
        if dim not in ds.dims:
            raise ValueError(
                f"{f.name} has no dimension {dim!r} (it has {sorted(map(str, ds.dims))})"
            )
        parts.append(ds)
    combined = (
        xr.concat(
            parts,
            dim=dim,
            data_vars="minimal",
            coords="minimal",
            compat="override",
            join="override",
        )
        if len(parts) > 1
        else parts[0]
    )
    return combined, [p.sizes[dim] for p in parts]


def _append(
    store: Any,
    files: Sequence[InputFile],
    record: dict[str, Any],
    config: dict[str, dict[str, Any]],
) -> None:
    """Write one batch of files: create the dataset, or append along the dimension."""
    ing = config["ingest"]
    dim = ing["append_dim"]
    ds, lengths = _open_inputs(files, config)
    if dim in ds.indexes and not ds.indexes[dim].is_monotonic_increasing:
        raise ValueError(
            f"{dim} is not increasing across {', '.join(f.name for f in files)}; "
            "input files must sort by name in the order of their data"
        )
    first, _ = _bounds(ds, dim)
    last = record["files"][-1].get("last") if record["files"] else None
    if first is not None and last is not None and not _after(first, last):
        raise ValueError(
            f"{files[0].name} starts at {dim}={first}, not after the dataset's end "
            f"({last}); appending it would break the order"
        )
    log.info(
        "writing %s (%d entries along %s)", ", ".join(f.name for f in files), ds.sizes[dim], dim
    )
    if record["length"] == 0:
        chunks = {
            d: int(ing["chunks"].get(d, lengths[0] if d == dim else n)) for d, n in ds.sizes.items()
        }
        encoding = {
            name: {"chunks": tuple(chunks[d] for d in var.dims)}
            for name, var in ds.variables.items()
            if var.dims and var.dtype.kind in "biufcmM"
        }
        # mode "a" on a target without a dataset creates it; "w"/"w-" would refuse or wipe
        # the bookkeeping (record, lock) that lives next to it
        ds.to_zarr(
            store,
            mode="a",
            encoding=encoding,
            consolidated=False,
            zarr_format=ing["zarr_format"],
            write_empty_chunks=True,
            align_chunks=True,
        )
    else:  # variables without the dimension were written with the first files
        ds = ds.drop_vars([n for n, v in ds.variables.items() if dim not in v.dims])
        ds.to_zarr(
            store, append_dim=dim, consolidated=False, write_empty_chunks=True, align_chunks=True
        )
    start = record["length"]
    for f, n in zip(files, lengths, strict=True):
        part = ds.isel({dim: slice(start - record["length"], start - record["length"] + n)})
        lo, hi = _bounds(part, dim)
        record["files"].append(
            {
                "name": f.name,
                "size": f.size,
                "mtime": f.mtime,
                "start": start,
                "stop": start + n,
                "first": lo,
                "last": hi,
            }
        )
        start += n
    record["length"] = start


def _bounds(ds: Any, dim: str) -> tuple[Any, Any]:
    """First and last coordinate values along ``dim`` as JSON values (None without coords)."""
    if dim not in ds.coords or ds.sizes[dim] == 0:
        return None, None
    values = ds[dim].values
    return _jsonable(values[0]), _jsonable(values[-1])


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.datetime64):
        return str(np.datetime_as_string(value, unit="ns"))
    return value.item() if hasattr(value, "item") else value


def _after(first: Any, last: Any) -> bool:
    if isinstance(first, str) and isinstance(last, str):
        return bool(np.datetime64(first) > np.datetime64(last))
    try:
        return bool(first > last)
    except TypeError:
        return True  # not comparable: no order to keep


def _verify(
    store: Any,
    dim: str,
    record: dict[str, Any],
    config: dict[str, dict[str, Any]],
    summary: dict[str, Any],
) -> None:
    if record["length"] == 0:
        summary.update(verified=True, verify={"ok": True, "note": "nothing ingested yet"})
        return
    report = verify_store(store, check_content=config["verify"]["content"], allow_missing=False)
    wrong = {
        p: a.shape[axis]
        for p, (a, axis) in state.lengths_along(store, dim).items()
        if a.shape[axis] != record["length"]
    }
    summary["verify"] = {
        "ok": report.ok,
        "arrays": len(report.arrays),
        "keys": report.keys,
        "missing_chunks": report.missing_chunks,
        "corrupt": report.corrupt[:20],
        "orphans": report.orphans[:20],
        "orphan_count": report.orphan_count,
        "metadata_errors": report.metadata_errors[:20],
        "stale_consolidated": report.stale_consolidated[:20],
        "content_checked": report.content_checked,
        "lengths_differing_from_record": wrong,
    }
    summary["verified"] = report.ok and not wrong
    if not summary["verified"]:
        log.error("the dataset did not verify:\n%s", report.format())


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m swiftzarr_batch.workflows.ingest CONFIG``: its exit code (0 only when the
    dataset verified, 75 when another run holds the lock)."""
    return main_for("python -m swiftzarr_batch.workflows.ingest", run_from_config, argv)


if __name__ == "__main__":
    raise SystemExit(main())
