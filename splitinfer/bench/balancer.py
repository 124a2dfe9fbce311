"""HAProxy in front of local cloud replicas, from the shipped ``docker/haproxy.cfg``.

The compose file's balancer finds its replicas by DNS; here the ``server-template`` line becomes
one static ``server`` line per loopback replica and the binds become loopback ports; every other
line (HTTP/2 to the replicas, the gRPC health check, retries, timeouts) is the shipped file's.
Used by the replica tests and to measure a balanced endpoint with ``bench server --target``:

    python -m splitinfer.bench.balancer --replicas 3 --port 50100 --model micro-p1024-l1000

runs three ``splitinfer serve`` replicas and HAProxy until Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from ..process import free_port
from ..process import stop as stop_process

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_CFG = ROOT / "docker" / "haproxy.cfg"


class BalancerError(RuntimeError):
    pass


def local_config(replicas: list[str], port: int, stats_port: int, host: str = "127.0.0.1",
                 text: str | None = None) -> str:
    """``docker/haproxy.cfg`` with static ``replicas`` ("host:port") and binds on ``host``."""
    text = HAPROXY_CFG.read_text() if text is None else text
    out, templates = [], 0
    for line in text.splitlines():
        s = line.strip()
        indent = line[:len(line) - len(line.lstrip())]
        if s.startswith("server-template "):
            templates += 1
            out += [f"{indent}server replica{i} {addr}" for i, addr in enumerate(replicas)]
        elif s.startswith("bind :50051"):
            out.append(line.replace("bind :50051", f"bind {host}:{port}", 1))
        elif s.startswith("bind :8404"):
            out.append(line.replace("bind :8404", f"bind {host}:{stats_port}", 1))
        else:
            out.append(line)
    if templates != 1:
        raise BalancerError(f"{HAPROXY_CFG}: expected one server-template line, found {templates}")
    return "\n".join(out) + "\n"


class Balancer:
    """``haproxy`` on ``docker/haproxy.cfg`` for ``replicas``, on loopback ports."""

    def __init__(self, replicas: list[str], port: int = 0, host: str = "127.0.0.1",
                 secrets: dict[str, str] | None = None):
        """secrets: TLS on both sides (``SPLITINFER_TLS``), the configuration's /run/secrets/NAME
        paths mapped to local files, e.g. {"/run/secrets/lb_pem": "lb.pem", ...}."""
        exe = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
        if exe is None:
            raise BalancerError("haproxy is not installed (apt-get install haproxy; scripts/setup.sh dev)")
        self.replicas = list(replicas)
        self.host = host
        self.port = port or free_port(host)
        self.stats_port = free_port(host)
        self.tmp = tempfile.TemporaryDirectory(prefix="splitinfer-lb-")
        self.config = Path(self.tmp.name) / "haproxy.cfg"
        text = local_config(self.replicas, self.port, self.stats_port, host)
        for path, local in (secrets or {}).items():
            text = text.replace(path, str(local))
        self.config.write_text(text)
        env = dict(os.environ, SPLITINFER_TLS="1") if secrets else None
        self.log_path = Path(self.tmp.name) / "haproxy.log"
        check = subprocess.run([exe, "-c", "-q", "-f", str(self.config)], capture_output=True, text=True, env=env)
        if check.returncode != 0:
            raise BalancerError(f"haproxy refuses the configuration:\n{check.stdout}{check.stderr}")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([exe, "-db", "-f", str(self.config)], stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env)
        self.address = f"{host}:{self.port}"

    def servers(self) -> dict[str, str]:
        """Replica name -> HAProxy's status of it (UP, DOWN, 'DOWN 1/2', ...)."""
        url = f"http://{self.host}:{self.stats_port}/stats;csv"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {r["svname"]: r["status"] for r in rows
                if r["pxname"] == "cloud" and r["svname"] not in ("FRONTEND", "BACKEND")}

    def wait(self, up: int | None = None, timeout_s: float = 30.0) -> dict[str, str]:
        """Until exactly ``up`` replicas (default: all) are UP and the others DOWN; their statuses."""
        want = len(self.replicas) if up is None else up
        end = time.monotonic() + timeout_s
        status: dict[str, str] = {}
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise BalancerError(f"haproxy exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status = self.servers()
            except OSError:
                status = {}
            if (sum(s == "UP" for s in status.values()) == want
                    and all(s == "UP" or s.startswith("DOWN") for s in status.values())):
                return status
            time.sleep(0.1)
        raise BalancerError(f"{want} replicas not UP within {timeout_s:.0f} s: {status}\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()[-4000:]

    def stop(self) -> None:
        stop_process(self.proc, 10)
        self._log.close()
        self.tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def main(argv: list[str] | None = None) -> int:
    from cloud_server.process import ServerProcess
    p = argparse.ArgumentParser(prog="python -m splitinfer.bench.balancer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--port", type=int, default=0, help="the balancer's port (default: a free one)")
    p.add_argument("--model", action="append", default=[], help="model(s) to serve (default: all)")
    p.add_argument("--models-dir")
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="passed on to every replica's `splitinfer serve` (repeatable)")
    a = p.parse_args(argv)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    replicas = []
    try:
        for _ in range(a.replicas):
            replicas.append(ServerProcess(a.model, models_dir=a.models_dir, extra=a.server_arg))
        with Balancer([r.address for r in replicas], a.port) as lb:
            lb.wait()
            print(f"balancer {lb.address} -> {', '.join(r.address for r in replicas)} "
                  f"(stats http://{lb.host}:{lb.stats_port}/stats)", flush=True)
            while not stop:
                time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        for r in replicas:
            r.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
