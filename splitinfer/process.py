"""What every wrapper of a child service process shares: a free port to give it, and stopping it
(SIGTERM for a clean shutdown, a grace period, then SIGKILL)."""
from __future__ import annotations

import socket
import subprocess


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``host`` right now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, grace_s: float = 10.0) -> int:
    """Terminate ``proc`` if it still runs, kill it after ``grace_s``; returns its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
    return proc.returncode
