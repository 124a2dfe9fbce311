"""The edge on every platform: ``.[edge]`` resolves to wheels on Linux aarch64 / x86_64 and macOS
for Python 3.10-3.13, and the edge works with constriction and open3d unimportable (what a
Jetson or a Raspberry Pi gets)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from service_utils import ROOT, model_name, start_server

pytestmark = [pytest.mark.service, pytest.mark.slow]  # pip, pytest and server subprocesses

BLOCKED = ("constriction", "open3d", "torch")
OFFLINE = re.compile(r"Could not fetch URL|NewConnectionError|Network is unreachable|Temporary "
                     r"failure in name resolution|Max retries exceeded|ConnectTimeout|"
                     r"No route to host|Connection refused")


@pytest.fixture(scope="module")
def blocker(tmp_path_factory) -> Path:
    """A folder whose constriction, open3d and torch packages refuse to import (first on
    PYTHONPATH, it shadows the installed ones)."""
    d = tmp_path_factory.mktemp("edge-only")
    for name in BLOCKED:
        (d / name).mkdir()
        (d / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError('{name} is blocked: the edge must work without it')\n")
    return d


def _env(blocker: Path | None) -> dict:
    env = dict(os.environ)
    paths = ([str(blocker)] if blocker else []) + [str(ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.pop("SPLITINFER_CODER", None)
    return env


# ---------------------------------------------------------------------------- resolution


def _edge_requirements(environment: dict) -> list[str]:
    """The core and edge-extra requirements of pyproject.toml whose markers hold in
    ``environment`` (pip evaluates markers on the machine it runs on, not on --platform)."""
    tomllib = pytest.importorskip("tomllib")
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = {**default_environment(), **environment, "extra": "edge"}
    out = []
    for text in project["dependencies"] + project["optional-dependencies"]["edge"]:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate(env):
            req.marker = None
            out.append(str(req))
    return out


TARGETS = {
    "linux-aarch64": (["manylinux2014_aarch64", "manylinux_2_28_aarch64"],
                      {"platform_machine": "aarch64", "sys_platform": "linux",
                       "platform_system": "Linux"}, False),
    "linux-x86_64": (["manylinux2014_x86_64", "manylinux_2_28_x86_64"],
                     {"platform_machine": "x86_64", "sys_platform": "linux",
                      "platform_system": "Linux"}, True),
    "macos-arm64": (["macosx_14_0_arm64"],
                    {"platform_machine": "arm64", "sys_platform": "darwin",
                     "platform_system": "Darwin"}, True),
}


@pytest.mark.parametrize("target,python", [
    ("linux-aarch64", "3.10"), ("linux-aarch64", "3.11"), ("linux-aarch64", "3.13"),
    ("linux-x86_64", "3.13"), ("macos-arm64", "3.12")])
def test_edge_extra_resolves_to_wheels(tmp_path, target, python):
    platforms, environment, has_constriction = TARGETS[target]
    environment = {**environment, "python_version": python, "python_full_version": python + ".0"}
    reqs = _edge_requirements(environment)
    assert not any(r.startswith(("open3d", "torch")) for r in reqs), reqs
    assert any(r.startswith("constriction") for r in reqs) == has_constriction, reqs
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
           "--only-binary=:all:", "--python-version", python, "--target", str(tmp_path / "t"),
           "--report", str(report), "--quiet"]
    for p in platforms:
        cmd += ["--platform", p]
    r = subprocess.run(cmd + reqs, capture_output=True, text=True, timeout=600)
    if r.returncode != 0 and OFFLINE.search(r.stdout + r.stderr):
        pytest.skip("the package index is unreachable: " + OFFLINE.search(r.stdout + r.stderr)[0])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    installs = json.loads(report.read_text())["install"]
    names = {i["metadata"]["name"].lower() for i in installs}
    assert {"numpy", "onnxruntime", "grpcio", "protobuf"} <= names, names
    assert not names & {"open3d", "torch"}, names
    assert ("constriction" in names) == has_constriction
    for i in installs:  # wheels only: nothing to compile on the device
        assert i["download_info"]["url"].endswith(".whl"), i["download_info"]["url"]


# ---------------------------------------------------------------------------- without the extras


def test_edge_tests_pass_without_constriction_and_open3d(blocker):
    """The reader and coder tests, run with constriction, open3d and torch unimportable (the
    python coder runs; open3d-only cases skip)."""
    tests = ["tests/test_edge_io.py", "tests/test_codec_entropy_coder.py",
             "tests/test_codec_tables.py"]
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                       capture_output=True, text=True, timeout=600, cwd=ROOT, env=_env(blocker))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert re.search(r"\d+ passed", r.stdout) and "failed" not in r.stdout.splitlines()[-1]
    code = ("import splitinfer.codec.coders as c, sys; assert c.get().NAME == 'python'; "
            "import splitinfer.pointcloud.io, edge_client.client; "
            "assert not {'constriction', 'open3d', 'torch'} & set(sys.modules), sys.modules.keys()")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=ROOT, env=_env(blocker))


def _write_inputs(d: Path, sample) -> None:
    """One sample cloud per format the edge reads without open3d."""
    from splitinfer.pointcloud.lzf import compress_literal
    pts = sample["points"].astype(np.float32)
    classes = list(sample["classes"])
    for i, cls in enumerate(("chair", "airplane", "lamp", "guitar")):
        (d / cls).mkdir(parents=True, exist_ok=True)
    p = pts[int(np.flatnonzero(sample["labels"] == classes.index("chair"))[0])]
    head = ("VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
            f"WIDTH {len(p)}\nHEIGHT 1\nPOINTS {len(p)}\nDATA binary_compressed\n").encode()
    raw = np.ascontiguousarray(p.T).astype("<f4").tobytes()
    comp = compress_literal(raw)
    (d / "chair" / "chair_0001.pcd").write_bytes(head + np.array([len(comp), len(raw)], "<u4").tobytes()
                                                 + comp)
    p = pts[int(np.flatnonzero(sample["labels"] == classes.index("airplane"))[0])]
    (d / "airplane" / "airplane_0001.ply").write_bytes(
        f"ply\nformat binary_big_endian 1.0\nelement vertex {len(p)}\nproperty float x\n"
        "property float y\nproperty float z\nend_header\n".encode() + p.astype(">f4").tobytes())
    p = pts[int(np.flatnonzero(sample["labels"] == classes.index("lamp"))[0])]
    np.concatenate([p, np.ones((len(p), 1), np.float32)], axis=1).astype("<f4").tofile(
        d / "lamp" / "lamp_0001.bin")
    p = pts[int(np.flatnonzero(sample["labels"] == classes.index("guitar"))[0])]
    np.savetxt(d / "guitar" / "guitar_0001.xyz", p)
    np.savez(d / "few.npz", points=sample["points"][:4], labels=sample["labels"][:4],
             classes=sample["classes"])


def _stream(server: str, model: str, inputs: Path, out: Path, env: dict, *extra: str):
    return subprocess.run([sys.executable, "-m", "splitinfer.cli", "stream", "--server", server,
                           "--model", model, str(inputs), "--json", str(out), "--quiet", *extra],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)


def test_stream_to_a_real_server_without_constriction_and_open3d(tmp_path, blocker, sample):
    """Files of every numpy-read format, encoded by the python coder, streamed to a real server
    that also runs without constriction; the answers equal those of a constriction edge."""
    pytest.importorskip("constriction")  # the reference run
    micro = model_name("micro")
    d = tmp_path / "inputs"
    _write_inputs(d, sample)
    srv = start_server([micro], blocker=blocker)
    try:
        r = _stream(srv.address, micro, d, tmp_path / "py.json", _env(blocker), "--coder", "python")
        ref = _stream(srv.address, micro, d, tmp_path / "c.json", _env(None), "--coder", "constriction")
        bad = _stream(srv.address, micro, d, tmp_path / "x.json", _env(blocker), "--coder", "constriction")
    finally:
        srv.stop()
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-2000:]
    assert ref.returncode == 0, ref.stderr[-3000:]
    py, c = json.loads((tmp_path / "py.json").read_text()), json.loads((tmp_path / "c.json").read_text())
    s = py["summary"]
    assert s["frames_sent"] == s["acknowledged"] == 8 and s["failed"] == 0 and s["lost"] == 0
    assert s["labelled"] == 8 and s["accuracy"] is not None
    key = lambda f: (f["seq"], f["label"], f["bits"])  # noqa: E731
    assert [key(f) for f in py["frames"]] == [key(f) for f in c["frames"]]
    assert bad.returncode == 2 and "--coder python" in bad.stderr, bad.stderr[-2000:]
