"""Scheduled ETL jobs on swiftzarr_batch, each one command with a TOML config file.

- ``python -m swiftzarr_batch.workflows.ingest CONFIG`` (or ``swiftzarr ingest CONFIG``): append
  new input files (netCDF or anything xarray reads) to one zarr dataset on Swift, idempotently.
- ``python -m swiftzarr_batch.workflows.mirror CONFIG`` (or ``swiftzarr mirror CONFIG``):
  incremental, verified copy of a dataset between containers or Swift clusters.

The room owns the engines (``ingest``, ``mirror``), their shared config/summary/exit-code
plumbing (``common``), the dataset lock (``lock``) and the ingest record (``dataset_state``);
it builds on ``transfer`` (copies, verification), ``jobs`` (dask) and ``store``. Both commands
log to stderr, write a JSON summary, and exit 0 only when the result is verified (75 when
another run holds the dataset's lock). The ready-to-schedule configs and cron/sbatch
templates are in the repository's top-level ``workflows/`` directory; see its README.
"""
