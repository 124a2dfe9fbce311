"""``splitinfer serve --workers N``: N server processes on one port under a supervisor.

Python serves one frame at a time per process; a machine with more cores runs more processes:

- Every worker is a whole server (``cloud_server.server``: models, batchers, health, reflection,
  auth) in its own process, started with ``spawn`` (grpc does not survive ``fork``), listening on
  the same address with SO_REUSEPORT. The kernel spreads new connections over the listening
  workers; a connection, and every stream on it, stays on the worker that accepted it. A worker
  listens only once its models are loaded, so a connection never lands on one that cannot serve.
- Start: the first worker binds (resolving ``--port 0``), then the others bind its port. The ready
  file (``{"port", "metrics_port", "pid", "workers", "models", ...}``, ``pid`` the supervisor's) is
  written once every worker serves. A worker that fails to start stops the server (exit 2).
- Metrics: prometheus_client's multiprocess mode. The workers write their samples to a private
  ``PROMETHEUS_MULTIPROC_DIR``; the supervisor serves the one ``/metrics`` endpoint, with counters
  and histograms summed over every worker that ever ran (a replaced worker's counts are kept),
  gauges summed over live workers, and ``splitinfer_workers`` / ``splitinfer_worker_restarts``.
- SIGTERM or SIGINT: forwarded to every worker, which drains as a single server does (health
  NOT_SERVING, no new calls, streams answer what they read and end with UNAVAILABLE, unary calls
  finish within ``--grace-s``); the supervisor exits once all have: 0 when every worker exited 0.
- A worker that dies (a crash, the OOM killer) is logged with its exit status and replaced by a
  new one on the same port; the clients of its connections see UNAVAILABLE, reconnect (to any
  worker) and resend what was not answered (``edge_client`` does). Health stays SERVING: every
  worker that accepts a connection serves it. More than ``max_restarts`` deaths within
  ``restart_window_s`` is a crash loop: the supervisor drains the rest and exits 1, leaving the
  restart to whatever runs it (systemd, Docker, Kubernetes).
- If the supervisor itself is killed (SIGKILL), the kernel kills its workers too (PDEATHSIG).
"""
from __future__ import annotations

import collections
import json
import logging
import math
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import wait as wait_any
from pathlib import Path

log = logging.getLogger("splitinfer.serve.workers")

MAX_RESTARTS = 5          # deaths within RESTART_WINDOW_S tolerated before the server gives up
RESTART_WINDOW_S = 60.0
START_TIMEOUT_S = 300.0   # a worker loads every model before it listens


def default_workers() -> int:
    """One worker per core this process may use: its CPU affinity, capped by a cgroup v2 CPU
    quota (``cpu.max``, what a container's or a pod's CPU limit sets)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


# -- a worker (its own process) ---------------------------------------------------------------------
def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when the supervisor dies (Linux)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _worker_main(opts, index: int, log_level: int, parent: int, error_file: str, describe) -> None:
    """One worker: ``serve(opts)``; a startup failure is written, as ``describe`` words it, to
    ``error_file`` for the supervisor to report (one line, no traceback)."""
    _die_with_parent()
    if os.getppid() != parent:  # the supervisor died before prctl
        os._exit(1)
    logging.basicConfig(level=log_level,
                        format=f"%(asctime)s %(name)s[worker {index}] %(levelname)s %(message)s")
    from .server import serve
    try:
        code = serve(opts)
    except KeyboardInterrupt:
        code = 130
    except Exception as e:  # noqa: BLE001 - reported by the supervisor
        try:
            msg = describe(e)
        except Exception:  # noqa: BLE001
            msg = _first_line(e)
        Path(error_file).write_text(msg)
        code = 2
    os._exit(code)


@dataclass
class _Worker:
    index: int
    proc: multiprocessing.Process
    ready_file: Path
    started: float
    ready: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid


class _Collector:
    """The supervisor's own samples: live workers and restarts."""

    def __init__(self, supervisor: "Supervisor"):
        self.supervisor = supervisor

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        s = self.supervisor
        yield GaugeMetricFamily("splitinfer_workers", "Worker processes serving",
                                value=sum(w.ready and w.proc.is_alive() for w in s.workers.values()))
        yield CounterMetricFamily("splitinfer_worker_restarts", "Workers that died and were replaced",
                                  value=s.restarts)


class Supervisor:
    """Starts ``n`` workers of ``opts``, watches them, forwards shutdown; see the module doc."""

    def __init__(self, opts, n: int, max_restarts: int = MAX_RESTARTS,
                 restart_window_s: float = RESTART_WINDOW_S, describe=_first_line):
        """describe: exception -> the one line that reports a worker's startup failure (a
        module-level function: it travels to the worker processes by name)."""
        self.opts = opts
        self.describe = describe
        self.n = n
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.tmp = Path(tempfile.mkdtemp(prefix="splitinfer-workers-"))
        self.metrics_dir = self.tmp / "metrics"
        self.metrics_dir.mkdir()
        self.ctx = multiprocessing.get_context("spawn")
        self.workers: dict[int, _Worker] = {}
        self.port: int | None = None
        self.metrics_port: int | None = None
        self.restarts = 0
        self.deaths: collections.deque[float] = collections.deque()
        self.stopping = False
        self._close_metrics = None
        self._models: list[str] = []

    # -- workers ------------------------------------------------------------------------------------
    def _spawn(self, index: int) -> _Worker:
        ready = self.tmp / f"worker-{index}.json"
        ready.unlink(missing_ok=True)
        self._error_file(index).unlink(missing_ok=True)
        wopts = replace(self.opts, port=self.port if self.port is not None else self.opts.port,
                        reuse_port=True, metrics_port=None, ready_file=str(ready))
        proc = self.ctx.Process(target=_worker_main, name=f"splitinfer-worker-{index}",
                                args=(wopts, index, logging.getLogger().getEffectiveLevel(), os.getpid(),
                                      str(self._error_file(index)), self.describe))
        proc.start()
        w = self.workers[index] = _Worker(index, proc, ready, time.monotonic())
        return w

    def _error_file(self, index: int) -> Path:
        return self.tmp / f"worker-{index}.error"

    def _why(self, w: _Worker) -> str:
        """Why a worker exited: its startup error, else its exit status."""
        try:
            return self._error_file(w.index).read_text()
        except OSError:
            return f"worker {w.index} exited with {_status(w.proc.exitcode)} before serving"

    def _check_ready(self, w: _Worker) -> bool:
        if not w.ready and w.ready_file.exists():
            info = json.loads(w.ready_file.read_text())
            w.ready = True
            self._models = info.get("models", self._models)
            if self.port is None:
                self.port = int(info["port"])
        return w.ready

    def _wait_ready(self, workers: list[_Worker]) -> None:
        end = time.monotonic() + START_TIMEOUT_S
        while not all(self._check_ready(w) for w in workers):
            if self.stopping:
                raise _Stop()
            for w in workers:
                if not w.proc.is_alive():
                    raise _StartFailed(self._why(w))
            if time.monotonic() > end:
                raise _StartFailed(f"workers not serving within {START_TIMEOUT_S:.0f} s")
            wait_any([w.proc.sentinel for w in workers], timeout=0.05)

    def start(self) -> None:
        from prometheus_client import CollectorRegistry
        from prometheus_client import multiprocess

        from .telemetry import DEFAULT_METRICS_HOST, MetricsEndpoint
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(self.metrics_dir)  # inherited by the workers
        first = self._spawn(0)
        self._wait_ready([first])          # resolves the port when --port 0
        rest = [self._spawn(i) for i in range(1, self.n)]
        self._wait_ready(rest)
        if self.opts.metrics_port is not None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=str(self.metrics_dir))
            registry.register(_Collector(self))
            endpoint = MetricsEndpoint(registry, self.opts.metrics_host or DEFAULT_METRICS_HOST,
                                       self.opts.metrics_port).start()
            self.metrics_port, self._close_metrics = endpoint.port, endpoint.close
        self._write_ready()
        log.info("serving on %s:%s with %d workers (pids %s), metrics %s", self.opts.host, self.port,
                 self.n, ", ".join(str(w.pid) for w in self.workers.values()), self.metrics_port)

    def _write_ready(self) -> None:
        o = self.opts
        if not o.ready_file:
            return
        info = {"port": self.port, "metrics_port": self.metrics_port, "pid": os.getpid(),
                "workers": [w.pid for w in self.workers.values()], "models": sorted(self._models),
                "tls": bool(o.tls_cert), "auth": bool(o.tokens)}
        tmp = Path(str(o.ready_file) + ".tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, o.ready_file)

    def watch(self) -> int:
        """Until shutdown: replace dead workers. Returns 0, or 1 after a crash loop."""
        while not self.stopping:
            wait_any([w.proc.sentinel for w in self.workers.values()], timeout=0.2)
            for w in list(self.workers.values()):
                if not w.ready and self._check_ready(w):
                    log.info("worker %d (pid %d) serving again", w.index, w.pid)
                    self._write_ready()
                if w.proc.is_alive() or self.stopping:
                    continue
                from prometheus_client import multiprocess
                multiprocess.mark_process_dead(w.pid, str(self.metrics_dir))
                now = time.monotonic()
                self.deaths.append(now)
                while self.deaths and now - self.deaths[0] > self.restart_window_s:
                    self.deaths.popleft()
                if len(self.deaths) > self.max_restarts:
                    log.error("worker %d (pid %d) died (%s): %d deaths within %.0f s, stopping the "
                              "server", w.index, w.pid, _status(w.proc.exitcode), len(self.deaths),
                              self.restart_window_s)
                    return 1
                why = f": {self._why(w)}" if not w.ready else ""
                log.error("worker %d (pid %d) died (%s)%s; starting a new one", w.index, w.pid,
                          _status(w.proc.exitcode), why)
                self.restarts += 1
                self._spawn(w.index)
        return 0

    def stop(self) -> int:
        """SIGTERM to every worker, wait for each to drain; 0 when all exited 0."""
        self.stopping = True
        live = [w for w in self.workers.values() if w.proc.is_alive()]
        for w in live:
            try:
                os.kill(w.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        end = time.monotonic() + self.opts.grace_s + 15
        code = 0
        for w in live:
            w.proc.join(max(0.1, end - time.monotonic()))
            if w.proc.is_alive():
                log.error("worker %d (pid %d) did not stop; killing it", w.index, w.pid)
                w.proc.kill()
                w.proc.join(5)
            if w.proc.exitcode == -signal.SIGTERM and not w.ready:
                continue  # stopped while loading its models, before it could drain
            if w.proc.exitcode != 0:
                log.error("worker %d (pid %d) exited with %s", w.index, w.pid, _status(w.proc.exitcode))
                code = 1
        return code

    def close(self) -> None:
        if self._close_metrics is not None:
            self._close_metrics()
            self._close_metrics = None
        if self.opts.ready_file:
            Path(self.opts.ready_file).unlink(missing_ok=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


class _StartFailed(Exception):
    pass


class _Stop(Exception):
    pass


def _status(exitcode: int | None) -> str:
    if exitcode is None:
        return "running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"


def run_server(opts, workers: int = 0, describe=_first_line) -> int:
    """``splitinfer serve``: one process (``workers`` 1) or a supervisor of ``workers`` worker
    processes (0: one per core, :func:`default_workers`); returns the exit status. ``describe``
    words a worker's startup failure (raised here as ServeError)."""
    n = workers or default_workers()
    if n < 0:
        from .server import ServeError
        raise ServeError(f"--workers {workers}: give a positive count (0: one per core)")
    if n == 1:
        from .server import serve
        return serve(opts)
    return serve_workers(opts, n, describe)


def serve_workers(opts, n: int, describe=_first_line) -> int:
    """Run ``n`` workers of ``opts`` until SIGTERM or SIGINT; the exit status (see the module doc)."""
    from .server import ServeError
    sup = Supervisor(opts, n, describe=describe)

    def on_signal(signum, frame):
        if not sup.stopping:
            log.info("%s: draining %d workers", signal.Signals(signum).name, len(sup.workers))
        sup.stopping = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            sup.start()
        except _Stop:
            return sup.stop()
        except _StartFailed as e:
            sup.stop()
            raise ServeError(str(e)) from None
        code = sup.watch()
        return max(code, sup.stop())
    finally:
        if not sup.stopping:
            sup.stop()
        sup.close()
        for s, h in previous.items():
            signal.signal(s, h)
