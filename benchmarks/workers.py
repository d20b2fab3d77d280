"""The orchestrator's side of the worker processes: spawn, ask, time out, restart."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


class Worker:
    """One long-lived ``python -m benchmarks.worker NAME`` process."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self._log = open(log_dir / f"{name}.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", name],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.setup: dict[str, Any] = {}

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def call(
        self, op: str, params: dict[str, Any] | None = None, timeout: float = 600.0
    ) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"op": op, "params": params or {}}) + "\n")
            self.proc.stdin.flush()
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            return {"ok": False, "error": f"timed out after {timeout:.0f} s (worker killed)"}
        except (BrokenPipeError, OSError) as e:
            return {"ok": False, "error": f"worker gone: {e}"}
        if line is None:
            return {"ok": False, "error": f"worker exited ({self.proc.wait()}); see its log"}
        return json.loads(line)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # our own child, by its Popen handle
            self.proc.wait()

    def close(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
        self._log.close()


class Pool:
    """Workers by contender name, started on first use (and again after a timeout)."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = {**os.environ, **env}
        self.log_dir = log_dir
        self.workers: dict[str, Worker] = {}
        self.setup_info: dict[str, dict[str, Any]] = {}

    def get(self, name: str) -> tuple[Worker | None, dict[str, Any]]:
        w = self.workers.get(name)
        if w is None or not w.alive:
            w = self.workers[name] = Worker(name, self.env, self.log_dir)
            info = w.call("setup", timeout=300)
            self.setup_info[name] = info
            if not info.get("ok"):
                w.close()
                del self.workers[name]
                return None, info
        return w, self.setup_info[name]

    def close(self) -> None:
        for w in self.workers.values():
            w.close()
