"""Dask jobs: one runner (``runner``) and one counters collector (``counters``) for every
parallel operation, and the task-graph helpers ``write_array``, ``write_dataset`` and
``consolidate``."""
