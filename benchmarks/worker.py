"""One contender's worker process: ``python -m benchmarks.worker NAME``.

Reads one JSON request per line on stdin (``{"op": ..., "params": {...}}``), runs it, and
answers one JSON line on the original stdout: the contender's result plus what the operation
cost this process (wall, CPU of itself and the CLI children it waited for, peak RSS). Anything a
library prints goes to stderr (the worker's log), never into the protocol. The process lives for
the whole run, so connection pools and dask threads persist across repetitions, as on a worker.

``BENCH_PROFILE=DIR`` wraps each operation in pyinstrument and writes DIR/NAME-OP-N.txt.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks.contenders import make
from benchmarks.contenders.base import Unavailable
from benchmarks.measure import Meter

_meter: Meter | None = None


def current_meter() -> Meter | None:
    """The meter of the running operation (CLI contenders add their children's peak RSS)."""
    return _meter


def _run(contender: Any, op: str, params: dict[str, Any], seq: int) -> dict[str, Any]:
    global _meter
    fn = getattr(contender, op, None)
    if fn is None:
        return {"ok": False, "unavailable": f"{contender.name} has no {op}"}
    profile_dir = os.environ.get("BENCH_PROFILE")
    profiler = None
    if profile_dir and op != "setup":
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
    try:
        with Meter() as meter:
            _meter = meter
            if profiler:
                profiler.start()
            try:
                info = fn(**params)
            finally:
                if profiler:
                    profiler.stop()
                _meter = None
    except Unavailable as e:
        return {"ok": False, "unavailable": str(e)}
    except Exception as e:
        traceback.print_exc()
        return {"ok": False, "error": f"{type(e).__name__}: {e}"[:500]}
    if profiler:
        out = Path(profile_dir, f"{contender.name}-{op}-{seq}.txt")
        out.write_text(profiler.output_text(unicode=True, color=False, show_all=False))
    return {
        "ok": True,
        "wall": meter.wall,
        "cpu": meter.cpu,
        "peak_rss_mb": meter.peak_rss_mb,
        "rss_delta_mb": max(0.0, meter.peak_rss_mb - meter.rss_before_mb),
        **(info or {}),
    }


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints of libraries go to the log
    sys.stdout = sys.stderr
    contender = make(args[0])
    print(f"worker {args[0]} pid {os.getpid()} ready", file=sys.stderr, flush=True)
    for seq, line in enumerate(sys.stdin):
        req = json.loads(line)
        started = time.strftime("%H:%M:%S")
        print(f"[{started}] {req['op']} {req.get('params', {})}", file=sys.stderr, flush=True)
        if req["op"] == "setup":
            try:
                result = {"ok": True, **(contender.setup() or {})}
            except Exception as e:
                traceback.print_exc()
                result = {"ok": False, "error": f"setup: {type(e).__name__}: {e}"[:500]}
        else:
            result = _run(contender, req["op"], req.get("params", {}), seq)
        proto.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
