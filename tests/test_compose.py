"""docker-compose.yml, checked without a Docker engine: the services, ports, healthchecks and
referenced files are right, and each service's command works when run here as a process."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time

import pytest
from service_utils import ROOT, free_port

yaml = pytest.importorskip("yaml")


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _command(value) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def _dockerfile(service: dict) -> tuple:
    build = service["build"]
    context = ROOT / build["context"]
    return context, context / build.get("dockerfile", "Dockerfile")


def test_services_ports_and_healthchecks(compose):
    services = compose["services"]
    assert {"cloud", "edge"} <= set(services)
    cloud, edge = services["cloud"], services["edge"]
    published = {str(p).split(":")[-1] for p in cloud["ports"]}
    assert {"50051", "9100"} <= published
    cmd = _command(cloud["command"])
    assert cmd[:2] == ["splitinfer", "serve"]
    assert cmd[cmd.index("--port") + 1] == "50051" and cmd[cmd.index("--metrics-port") + 1] == "9100"
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    health = _command(cloud["healthcheck"]["test"])
    assert health[0] == "CMD" and "cloud_server.health" in health and "127.0.0.1:50051" in health
    ecmd = _command(edge["command"])
    assert ecmd[:2] == ["splitinfer", "stream"] and ecmd[ecmd.index("--server") + 1] == "cloud:50051"
    assert edge["depends_on"]["cloud"]["condition"] == "service_healthy"


def test_referenced_files_exist(compose):
    from splitinfer.repository import ModelRepository
    for name, service in compose["services"].items():
        context, dockerfile = _dockerfile(service)
        assert context.is_dir() and dockerfile.is_file(), name
        text = dockerfile.read_text()
        for line in re.findall(r"^COPY\s+(.+)$", text, re.M):
            for src in shlex.split(line)[:-1]:
                if not src.startswith("--"):
                    assert (context / src).exists(), f"{dockerfile.name}: COPY {src}: missing"
        installs = re.findall(r"pip install[^\n]*", text)
        assert installs and not any("torch" in i or "train" in i for i in installs), installs
        for path in re.findall(r"\bsplitinfer/data/\S+\.npz", " ".join(_command(service["command"]))):
            assert (ROOT / path).is_file(), path
    ecmd = _command(compose["services"]["edge"]["command"])
    model = ecmd[ecmd.index("--model") + 1]
    assert model in ModelRepository().names(), f"the edge streams {model}, which is not shipped"
    edge_docker = _dockerfile(compose["services"]["edge"])[1].read_text()
    assert '".[edge]"' in edge_docker and '".[cloud]"' in _dockerfile(compose["services"]["cloud"])[1].read_text()


def _local(cmd: list[str], mapping: dict[str, str]) -> list[str]:
    """A container command as a local process: the console script via this interpreter, loopback
    instead of every interface and of the `cloud` host, free ports instead of the fixed ones."""
    out = []
    for tok in cmd:
        for a, b in mapping.items():
            tok = tok.replace(a, b)
        out.append(tok)
    if out[0] == "splitinfer":
        out = [sys.executable, "-m", "splitinfer.cli"] + out[1:]
    elif out[0] == "python":
        out = [sys.executable] + out[1:]
    return out


def test_each_service_command_runs_as_a_process(compose, tmp_path):
    cloud, edge = compose["services"]["cloud"], compose["services"]["edge"]
    port, mport = free_port(), free_port()
    mapping = {"0.0.0.0": "127.0.0.1", "cloud:50051": f"127.0.0.1:{port}", "127.0.0.1:50051": f"127.0.0.1:{port}",
               "/out/": f"{tmp_path}/"}
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if env.get("SPLITINFER_MODELS", "").startswith("/app"):  # the container's path
        del env["SPLITINFER_MODELS"]
    cmd = _local(_command(cloud["command"]), mapping)
    cmd[cmd.index("--port") + 1] = str(port)
    cmd[cmd.index("--metrics-port") + 1] = str(mport)
    log = open(tmp_path / "cloud.log", "w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        health = _local(_command(cloud["healthcheck"]["test"])[1:], mapping)
        deadline = time.monotonic() + 60
        while True:  # the healthcheck command fails until the server is up, then succeeds
            r = subprocess.run(health, capture_output=True, text=True, env=env, cwd=ROOT, timeout=30)
            if r.returncode == 0:
                break
            assert server.poll() is None, (tmp_path / "cloud.log").read_text()
            assert time.monotonic() < deadline, r.stdout + r.stderr
            time.sleep(0.3)
        assert r.stdout.strip() == "SERVING"
        import urllib.request
        assert b"splitinfer_requests_total" in urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics",
                                                                     timeout=5).read()
        ecmd = _local(_command(edge["command"]), mapping)
        ecmd += ["--limit", "16"]  # the sample in full is the demo's job; 16 clouds prove the command
        r = subprocess.run(ecmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        summary = json.loads((tmp_path / "edge.json").read_text())["summary"]
        assert summary["acknowledged"] == 16 and summary["lost"] == 0 and summary["accuracy"] is not None
    finally:
        code = _stop(server, log)
    assert code == 0, (tmp_path / "cloud.log").read_text()


def _stop(server: subprocess.Popen, log) -> int:
    """SIGTERM, up to 30 s to drain, then SIGKILL; closes the log; returns the exit code."""
    server.terminate()
    try:
        code = server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
        code = server.wait()
    log.close()
    return code


def test_sidecar_service(compose, tmp_path):
    """The image sidecar: HTTP on 8080, healthy by its /healthz, built with the `sidecar` extra;
    its command serves and its healthcheck command passes against it, run here as processes."""
    sidecar = compose["services"]["sidecar"]
    assert "8080" in {str(p).split(":")[-1] for p in sidecar["ports"]}
    cmd = _command(sidecar["command"])
    assert cmd[:2] == ["splitinfer", "sidecar"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0" and cmd[cmd.index("--port") + 1] == "8080"
    health = _command(sidecar["healthcheck"]["test"])
    assert health[:2] == ["CMD", "python"] and "http://127.0.0.1:8080/healthz" in " ".join(health)
    assert '".[sidecar]"' in _dockerfile(sidecar)[1].read_text()
    assert sidecar["environment"]["SPLITINFER_MODELS"] == "/app/models"

    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    port = free_port()
    mapping = {"0.0.0.0": "127.0.0.1", "127.0.0.1:8080": f"127.0.0.1:{port}"}
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if env.get("SPLITINFER_MODELS", "").startswith("/app"):  # the container's path
        del env["SPLITINFER_MODELS"]
    cmd = _local(cmd, mapping)
    cmd[cmd.index("--port") + 1] = str(port)
    log = open(tmp_path / "sidecar.log", "w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        check = _local(health[1:], mapping)
        deadline = time.monotonic() + 60
        while True:  # the healthcheck command fails until the server is up, then succeeds
            r = subprocess.run(check, capture_output=True, text=True, env=env, cwd=ROOT, timeout=30)
            if r.returncode == 0:
                break
            assert server.poll() is None, (tmp_path / "sidecar.log").read_text()
            assert time.monotonic() < deadline, r.stdout + r.stderr
            time.sleep(0.3)
        import urllib.request
        assert b"splitinfer_sidecar_requests_total" in urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    finally:
        code = _stop(server, log)
    assert code == 0, (tmp_path / "sidecar.log").read_text()
