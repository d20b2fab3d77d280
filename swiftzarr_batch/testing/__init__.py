"""Test utilities that ship with the package (usable from other projects' test suites too).

``swift_server.LocalSwift`` and ``keystone_server.LocalKeystone`` run a real OpenStack Swift /
Keystone on 127.0.0.1; ``faultproxy.FaultProxy`` injects faults in front of one. They share
``install`` (cached virtualenvs of the servers) and ``processes`` (ports, process groups,
readiness, logs); ``serve`` is the command line (``swiftzarr serve``); ``swift_configs`` writes
Swift's config files; the ``*_launcher.py`` scripts run inside the servers' venvs. Imported by
tests, benchmarks and the CLI's ``serve`` only, never by the library.
"""

from swiftzarr_batch.testing.swift_server import LocalSwift

__all__ = ["LocalSwift"]
