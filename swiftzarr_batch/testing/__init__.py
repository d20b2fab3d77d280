"""Test utilities that ship with the package (usable from other projects' test suites too)."""
