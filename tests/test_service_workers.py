"""``splitinfer serve --workers N`` on loopback: N real worker processes share the port, the
connections spread over them, metrics are one sum, a killed worker is replaced, SIGTERM drains
every worker, and a killed supervisor takes its workers with it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from service_utils import ROOT, encoded, metric, model_name, start_server

from splitinfer.proto import inference_pb2 as pb2
from splitinfer.proto import inference_pb2_grpc as pb2_grpc

pytestmark = pytest.mark.service  # real server processes on loopback


@pytest.fixture(scope="module")
def micro():
    return model_name("micro")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _wait_gone(pids, timeout_s: float = 20.0) -> list[int]:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _connections(pid: int, port: int) -> int:
    """Established TCP connections of process ``pid`` whose local port is ``port``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "01" and f[9] in inodes:
                n += 1
    return n


def _classify_on(address: str, micro: str, payloads, channels: int):
    """One Classify per payload, round-robin over ``channels`` separate connections."""
    opts = [("grpc.use_local_subchannel_pool", 1)]
    chans = [grpc.insecure_channel(address, options=opts) for _ in range(channels)]
    try:
        stubs = [pb2_grpc.InferenceStub(c) for c in chans]
        return [stubs[i % channels].Classify(pb2.ClassifyRequest(model=micro, payload=p), timeout=30).label
                for i, p in enumerate(payloads)], chans
    except BaseException:
        for c in chans:
            c.close()
        raise


def test_workers_share_the_port_and_sum_their_metrics(micro):
    payloads, expected, _ = encoded(micro, 64)
    with start_server([micro], extra=["--workers", "2"]) as s:
        workers = s.info["workers"]
        assert len(workers) == 2 and s.info["pid"] == s.proc.pid and s.info["models"] == [micro]
        assert all(_alive(p) and p != s.proc.pid for p in workers)
        labels, chans = _classify_on(s.address, micro, payloads, channels=16)
        try:
            assert labels == expected
            per_worker = [_connections(p, s.port) for p in workers]
            assert sum(per_worker) == 16 and min(per_worker) >= 1, per_worker  # both serve
        finally:
            for c in chans:
                c.close()
        # one endpoint, the sum over the workers
        assert metric(s.metrics_port, "splitinfer_requests_total", model=micro) == len(payloads)
        assert metric(s.metrics_port, "splitinfer_responses_total", method="Classify", code="OK") == len(payloads)
        assert metric(s.metrics_port, "splitinfer_workers") == 2
        assert metric(s.metrics_port, "splitinfer_models_loaded") == 1
        from cloud_server.health import check
        assert check(s.address) == "SERVING"
        code = s.stop()
    assert code == 0
    assert _wait_gone(workers) == []


def test_a_killed_worker_is_replaced_and_its_counts_kept(micro):
    payloads, expected, _ = encoded(micro, 32)
    with start_server([micro], extra=["--workers", "2"]) as s:
        labels, chans = _classify_on(s.address, micro, payloads, channels=4)
        for c in chans:
            c.close()
        assert labels == expected
        old = s.info["workers"]
        os.kill(old[1], signal.SIGKILL)
        end = time.monotonic() + 60
        while True:  # the supervisor starts a new worker and rewrites the ready file
            info = json.loads(s.ready_file.read_text())
            if info["workers"][1] != old[1] and metric(s.metrics_port, "splitinfer_workers") == 2:
                break
            assert time.monotonic() < end, info
            time.sleep(0.1)
        assert info["workers"][0] == old[0] and info["port"] == s.port
        assert metric(s.metrics_port, "splitinfer_worker_restarts_total") == 1
        labels, chans = _classify_on(s.address, micro, payloads, channels=4)
        for c in chans:
            c.close()
        assert labels == expected
        # the dead worker's counts stay in the sum: counters never go back
        assert metric(s.metrics_port, "splitinfer_requests_total", model=micro) == 2 * len(payloads)
        assert "worker 1 (pid %d) died (killed by SIGKILL); starting a new one" % old[1] in s.log()
        assert s.stop() == 0
    assert _wait_gone(info["workers"]) == []


def test_sigterm_drains_a_busy_stream_on_every_worker(micro):
    """Under load, SIGTERM: the streams on every worker end (with the status a single server's
    drain gives them), each answered frame has the right label, the supervisor exits 0 once every
    worker has."""
    import threading
    payloads, expected, _ = encoded(micro, 40)
    with start_server([micro], extra=["--workers", "2"]) as s:
        outcomes, lock = [], threading.Lock()

        def stream(k):
            ch = grpc.insecure_channel(s.address, options=[("grpc.use_local_subchannel_pool", 1)])
            stub = pb2_grpc.InferenceStub(ch)
            reqs = (pb2.ClassifyRequest(model=micro, payload=payloads[i % 40], stream_id=f"s{k}", seq=i)
                    for i in range(100_000))
            answered, wrong, code = 0, 0, grpc.StatusCode.OK
            try:
                for r in stub.ClassifyStream(reqs, timeout=60):
                    answered += 1
                    wrong += r.label != expected[r.seq % 40]
            except grpc.RpcError as e:
                code = e.code()
            ch.close()
            with lock:
                outcomes.append((answered, wrong, code))

        threads = [threading.Thread(target=stream, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        workers = s.info["workers"]
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(30) == 0, s.log()
        for t in threads:
            t.join(30)
            assert not t.is_alive()
    assert len(outcomes) == 6
    assert all(code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.OK) and answered > 0 and wrong == 0
               for answered, wrong, code in outcomes), outcomes
    assert _wait_gone(workers) == []


def test_a_killed_supervisor_takes_its_workers(micro):
    with start_server([micro], extra=["--workers", "2"]) as s:
        workers = s.info["workers"]
        s.proc.kill()
        s.proc.wait(10)
        assert _wait_gone(workers, 10) == []


def test_a_worker_that_cannot_start_stops_the_server(micro, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", "cloud_server", "--port", "0", "--metrics-port", "-1",
                        "--model", "no-such-model", "--workers", "2", "--log-level", "WARNING"],
                       capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "no-such-model" in errors[0] and "Traceback" not in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "cloud_server", "--port", "0", "--workers", "-2"],
                       capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert r.returncode == 2 and "error: --workers -2" in r.stderr, r.stderr


def test_default_workers_follow_the_cpus_this_process_may_use():
    from cloud_server.workers import default_workers
    n = default_workers()
    assert 1 <= n <= len(os.sched_getaffinity(0))


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def test_sigterm_while_the_workers_load_stops_everything(micro, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "cloud_server", "--port", "0", "--metrics-port", "-1",
                             "--model", micro, "--workers", "2", "--ready-file", str(tmp_path / "ready.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    end = time.monotonic() + 60
    while not _children(proc.pid):  # the first worker is starting
        assert proc.poll() is None and time.monotonic() < end
        time.sleep(0.01)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out
    assert _wait_gone(workers) == [] and not (tmp_path / "ready.json").exists()


CRASH_LOOP = """
import json, sys
from cloud_server.server import ServerOptions
from cloud_server.workers import Supervisor
sup = Supervisor(ServerOptions(port=0, models=[sys.argv[1]], metrics_port=None), 2, max_restarts=1)
sup.start()
print(json.dumps([w.pid for w in sup.workers.values()]), flush=True)
code = sup.watch()
code = max(code, sup.stop())
sup.close()
sys.exit(code)
"""


def test_a_crash_loop_stops_the_server(micro):
    """More deaths than the supervisor tolerates within its window: it drains the rest and
    exits 1 (the restart is left to whatever runs it)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", CRASH_LOOP, micro], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        first = json.loads(proc.stdout.readline())
        os.kill(first[0], signal.SIGKILL)          # replaced (1 death tolerated)
        end = time.monotonic() + 60
        while not (replacement := [p for p in _children(proc.pid) if p not in first]):
            assert proc.poll() is None and time.monotonic() < end
            time.sleep(0.05)
        os.kill(first[1], signal.SIGKILL)          # a second death within the window
        assert proc.wait(60) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert "starting a new one" in err and "2 deaths within 60 s, stopping the server" in err, err
    assert _wait_gone(first + replacement) == []
