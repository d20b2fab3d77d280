"""W8's contender (c): rechunker + zarr 2's FSStore on s3fs, through Swift's s3api.

Runs in its own venv (``bash benchmarks/setup_rechunker_venv.sh``): rechunker 0.5 needs
zarr < 3 (it imports ``zarr.hierarchy``), which this project cannot share a venv with. zarr 2
has no sharding, so the closest it comes to W8's target is 4 MiB *chunks* (64 small chunks
merged into one object, readable only whole): the same object count, not the same reads.
Prints one JSON line: wall, cpu, peak RSS (this process), versions.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def main() -> None:
    import rechunker
    import s3fs
    import zarr

    p = json.loads(sys.argv[1])
    fs = s3fs.S3FileSystem(
        key=p["user"],
        secret=p["key"],
        endpoint_url=p["proxy_url"],
        client_kwargs={"region_name": p["region"]},
    )
    src = zarr.open_array(f"{p['src']}/array", mode="r")
    started = time.perf_counter()
    cpu0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    target = zarr.storage.FSStore(f"{p['container']}/a", fs=fs)
    temp = zarr.storage.FSStore(f"{p['container']}-tmp/t", fs=fs)
    shard = tuple(c * 8 for c in src.chunks)
    plan = rechunker.rechunk(src, shard, "512MB", target, temp_store=temp)
    plan.execute()
    wall = time.perf_counter() - started
    cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - cpu0
    with open("/proc/self/status") as f:
        peak = next(int(ln.split()[1]) / 1024 for ln in f if ln.startswith("VmHWM:"))
    out = {"wall": wall, "cpu": cpu, "peak_rss_mb": peak, "chunks": list(shard)}
    out["versions"] = {"rechunker": rechunker.__version__, "zarr": zarr.__version__}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
