"""The image sidecar as a child process on a free loopback port: used by the tests and the page
screenshot (``python -m splitinfer.sidecar``, ready when /readyz answers 200)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..process import free_port
from ..process import stop as stop_process

__all__ = ["SidecarProcess"]

ROOT = Path(__file__).resolve().parents[2]


class SidecarProcess:
    """``python -m splitinfer.sidecar`` on a free loopback port, ready on enter, stopped (SIGTERM)
    on exit; ``returncode`` is its exit status afterwards."""

    def __init__(self, models: str | Path, extra: list[str] | None = None, log: Path | None = None,
                 ready_timeout: float = 90.0, pythonpath: list[str | Path] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.models, self.extra, self.ready_timeout = str(models), list(extra or []), ready_timeout
        self.log_path = Path(log) if log else None
        self.pythonpath = [str(p) for p in pythonpath]
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    def __enter__(self) -> "SidecarProcess":
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        env["PYTHONPATH"] = os.pathsep.join(self.pythonpath + [str(ROOT)] + (
            [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        cmd = [sys.executable, "-m", "splitinfer.sidecar", "--host", "127.0.0.1", "--port",
               str(self.port), "--models", self.models, "--log-level", "warning", *self.extra]
        self._log = open(self.log_path, "w") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd=ROOT)
        deadline = time.monotonic() + self.ready_timeout
        while True:  # /readyz answers 503 until the models are loaded
            if self.proc.poll() is not None:
                self._close_log()
                raise RuntimeError(f"sidecar exited with {self.proc.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=5) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise TimeoutError(f"sidecar not ready after {self.ready_timeout} s: {self.log()}")
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.returncode is None:
            self.returncode = stop_process(self.proc, 30)
        self._close_log()

    def _close_log(self) -> None:
        if getattr(self, "_log", None) not in (None, subprocess.DEVNULL):
            self._log.close()
            self._log = None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""
