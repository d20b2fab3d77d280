"""Benchmarks of swiftzarr_batch against the server's raw capacity and the peers (see README)."""
