"""Test utilities that ship with the package (usable from other projects' test suites too).

``swift_server.LocalSwift`` and ``keystone_server.LocalKeystone`` install and run a real
OpenStack Swift / Keystone on 127.0.0.1; ``faultproxy.FaultProxy`` injects faults in front of
one. Imported by tests, benchmarks and the CLI's ``serve`` only, never by the library.
"""
