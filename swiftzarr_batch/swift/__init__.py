"""The Swift client: no zarr, no dask, nothing above it.

It owns the wire (``http1``, the pool; ``http_connection``, one strictly parsed connection;
``http_messages``, the values they carry), what every status code means (``status``, the only
status map), retries (``retry``), the authenticated, pooled data path of a process
(``session``), the operations on one container (``container``) and on the account
(``account``), large objects (``large_objects``), what the cluster can do (``capabilities``),
names (``names``), trust (``tls``), signed links (``tempurl``), read ACLs (``acl``) and what
the data path needs of credentials (``tokens``). Everything above it (auth, the store, jobs,
transfers) reaches Swift through these modules.
"""
