"""Dask jobs: every parallel operation of the package runs through this room.

``runner`` is the one runner (batches of keys for copy and verify, lazy graphs for the writes;
where tasks run, retries, progress, ``JobResult``), ``counters`` the one collector of request
counters across the client and every worker, ``dask_api`` the typed dask/distributed calls they
share. ``write_array``, ``write_dataset`` and ``consolidate`` build the write graphs; the rule
that keeps their tasks from sharing a zarr chunk or shard is ``alignment``.
"""
