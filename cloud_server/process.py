"""The cloud server as a child process on a free port: used by the demo, the benchmarks and the
tests (``python -m cloud_server``, ready when it has written its ready file)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from splitinfer.process import stop as stop_process

__all__ = ["ServerProcess"]


class ServerProcess:
    """``python -m cloud_server`` as a child process on a free loopback port."""

    def __init__(self, models: list[str], models_dir: str | None = None, extra: list[str] | None = None,
                 port: int = 0, host: str = "127.0.0.1", env: dict | None = None, timeout_s: float = 120.0,
                 prefix: list[str] | None = None):
        """prefix: a command to run the server under, e.g. ``ip netns exec NS`` (a namespace)."""
        self.tmp = tempfile.TemporaryDirectory(prefix="splitinfer-serve-")
        self.ready_file = Path(self.tmp.name) / "ready.json"
        self.log_path = Path(self.tmp.name) / "server.log"
        cmd = [sys.executable, "-m", "cloud_server", "--host", host, "--port", str(port),
               "--metrics-port", "0", "--ready-file", str(self.ready_file), "--log-level", "WARNING",
               "--workers", "1"]  # a single process unless ``extra`` says --workers N
        if models_dir:
            cmd += ["--models", str(models_dir)]
        for m in models:
            cmd += ["--model", m]
        cmd += extra or []
        cmd = list(prefix or []) + cmd
        root = Path(__file__).resolve().parents[1]   # the checkout: cloud_server/ and splitinfer/
        penv = dict(os.environ, **(env or {}))
        penv["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), penv.get("PYTHONPATH", "")) if p)
        penv.setdefault("OMP_NUM_THREADS", "1")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=penv, cwd=root)
        self.host = host
        self.info = self._wait(timeout_s)
        self.port = self.info["port"]
        self.metrics_port = self.info.get("metrics_port")
        self.address = f"{host}:{self.port}"

    def _wait(self, timeout_s: float) -> dict:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with status {self.proc.returncode}:\n{self.log()}")
            if self.ready_file.exists():
                return json.loads(self.ready_file.read_text())
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the server was not ready within {timeout_s:.0f} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()[-4000:]

    def stop(self, timeout_s: float = 20.0) -> int:
        stop_process(self.proc, timeout_s)
        self._log.close()
        self.tmp.cleanup()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
