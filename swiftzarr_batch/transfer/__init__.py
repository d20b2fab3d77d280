"""Moving and checking whole datasets: ``copy`` (parallel, resumable, verified, server-side
between Swift stores), its tasks (``copy_tasks``), ``verify`` and the object-level helpers for any
zarr store (``objects``)."""
