"""fsspec's own abstract suites (copy, get, put, open, pipe) on the swift:// file system, wired
the way s3fs and gcsfs wire theirs: a fresh container per test as the root, no empty
directories (Swift has none), on a Swift whose ``max_file_size`` is 1 MiB."""

from __future__ import annotations

import uuid

import pytest
from fsspec.tests.abstract import (
    AbstractCopyTests,
    AbstractFixtures,
    AbstractGetTests,
    AbstractOpenTests,
    AbstractPipeTests,
    AbstractPutTests,
)

from swiftzarr_batch.store.filesystem import SwiftFileSystem


class SwiftFixtures(AbstractFixtures):  # type: ignore[misc]
    @pytest.fixture(scope="class")
    @classmethod
    def fs(cls, small_swift):
        return SwiftFileSystem(
            authurl=small_swift.auth_url, user=small_swift.user, key=small_swift.key
        )

    @pytest.fixture
    def fs_join(self):
        return lambda *parts: "/".join(parts)

    @pytest.fixture
    def fs_path(self, fs):
        container = f"abstract-{uuid.uuid4().hex[:10]}"
        fs.mkdir(container)
        yield container
        fs.rm(container, recursive=True)

    @pytest.fixture
    def supports_empty_directories(self):
        return False


class TestSwiftCopy(AbstractCopyTests, SwiftFixtures):
    pass


class TestSwiftGet(AbstractGetTests, SwiftFixtures):
    pass


class TestSwiftPut(AbstractPutTests, SwiftFixtures):
    pass


class TestSwiftOpen(AbstractOpenTests, SwiftFixtures):
    pass


class TestSwiftPipe(AbstractPipeTests, SwiftFixtures):
    pass
