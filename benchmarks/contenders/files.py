"""W9's operations (``benchmarks.plan_w9``) for the file-system contenders: the same code on
any fsspec file system (``ours``: ``swift://``; ``s3fs``: s3api), and the raw HTTP ceiling."""

from __future__ import annotations

from typing import Any

from benchmarks.plan_w9 import payload, result

READ_STEP = 16 * 2**20  # a sequential reader's read() size


def fs_read(fs: Any, path: str, size: int) -> dict[str, Any]:
    done = 0
    with fs.open(path, "rb") as f:
        while chunk := f.read(READ_STEP):
            done += len(chunk)
    return result(done, size)


def fs_ranges(fs: Any, path: str, offsets: list[int]) -> dict[str, Any]:
    done = 0
    with fs.open(path, "rb", cache_type="none", block_size=2**20) as f:
        for offset in offsets:
            f.seek(offset)
            done += len(f.read(2**20))
    return result(done, len(offsets) * 2**20, len(offsets))


def fs_write(fs: Any, path: str, size: int) -> dict[str, Any]:
    body = payload(size)
    with fs.open(path, "wb") as f:
        for start in range(0, size, READ_STEP):
            f.write(body[start : start + READ_STEP])
    return result(fs.info(path)["size"], size)


class FileOps:
    """Mixin: W9 through ``self.files()`` (an fsspec file system) and ``self.file_path()``."""

    def files(self) -> Any:
        raise NotImplementedError

    def file_path(self, container: str, name: str) -> str:
        return f"{container}/{name}"

    def w9_read(self, container: str, name: str, size: int, rep: int) -> dict[str, Any]:
        return fs_read(self.files(), self.file_path(container, name), size)

    def w9_ranges(
        self, container: str, name: str, size: int, offsets: list[int], rep: int
    ) -> dict[str, Any]:
        return fs_ranges(self.files(), self.file_path(container, name), offsets)

    def w9_write(self, container: str, name: str, size: int, rep: int) -> dict[str, Any]:
        return fs_write(self.files(), self.file_path(container, name), size)
