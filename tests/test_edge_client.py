"""``splitinfer stream`` end to end, its input errors, and the edge install without torch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from service_utils import ROOT, free_port, model_name, start_server, torch_blocker


@pytest.fixture(scope="module")
def micro():
    return model_name("micro")


@pytest.fixture(scope="module")
def blocker(tmp_path_factory):
    return torch_blocker(tmp_path_factory.mktemp("notorch"))


def _run_cli(args, blocker=None, timeout=120):
    env = dict(os.environ)
    paths = [str(blocker)] if blocker else []
    paths += [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return subprocess.run([sys.executable, "-m", "splitinfer.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


def test_import_is_torch_free():
    code = "import cloud_server, edge_client, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=ROOT)
    code = ("import sys; import cloud_server.server, edge_client.client, splitinfer.demo, "
            "splitinfer.bench.server; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=ROOT)


def test_stream_cli_end_to_end_without_torch(tmp_path, micro, blocker, sample):
    pytest.importorskip("open3d")
    import open3d as o3d
    d = tmp_path / "inputs"
    (d / "chair").mkdir(parents=True)
    idx = int(np.flatnonzero(sample["labels"] == list(sample["classes"]).index("chair"))[0])
    o3d.io.write_point_cloud(str(d / "chair" / "chair_0001.ply"),
                             o3d.geometry.PointCloud(o3d.utility.Vector3dVector(sample["points"][idx].astype(float))))
    np.savez(d / "few.npz", points=sample["points"][:5], labels=sample["labels"][:5], classes=sample["classes"])
    holes = np.vstack([sample["points"][1], np.full((17, 3), np.nan)])  # an organised frame's holes
    np.save(d / "holes.npy", holes)
    srv = start_server([micro], blocker=blocker)
    try:
        out = tmp_path / "stream.json"
        r = _run_cli(["stream", "--server", srv.address, "--model", micro, str(d), "--json", str(out),
                      "--window", "2", "--table"], blocker=blocker)
    finally:
        srv.stop()
    assert r.returncode == 0, r.stderr + r.stdout
    data = json.loads(out.read_text())
    frames, s = data["frames"], data["summary"]
    assert len(frames) == 7 and s["frames_sent"] == 7 and s["acknowledged"] == 7 and s["lost"] == 0
    assert s["labelled"] == 6 and s["accuracy"] is not None       # from the npz, and the chair/ folder
    assert sorted(f["dropped_points"] for f in frames) == [0] * 6 + [17]   # dropped and counted
    for f in frames:
        assert {"seq", "label", "class_name", "bits", "encode_ms", "rtt_ms", "top"} <= set(f)
        assert f["bits"] > 0 and f["encode_ms"] > 0 and f["rtt_ms"] > 0
    for key in ("bits_mean", "rtt_ms_p50", "rtt_ms_p95", "accuracy", "lost", "acknowledged", "frames_sent"):
        assert key in s
    assert "chair_0001.ply" in r.stdout and "answered" in r.stdout   # the live table and the summary


@pytest.mark.parametrize("bad", ["nan", "inf", "empty", "shape"])
def test_stream_cli_rejects_bad_input_before_sending(tmp_path, micro, bad):
    good = tmp_path / "good.npy"
    np.save(good, np.random.default_rng(0).normal(size=(100, 3)))
    path = tmp_path / f"{bad}.npy"
    arr = {"nan": np.array([[0, 0, 0], [np.nan, 0, 0]]), "inf": np.array([[0, 0, np.inf]]),
           "empty": np.zeros((0, 3)), "shape": np.zeros((5, 4))}[bad]
    np.save(path, arr)
    port = free_port()  # nothing listens there: an attempt to send would hang on reconnects
    r = _run_cli(["stream", "--server", f"127.0.0.1:{port}", "--model", micro, str(good), str(path),
                  "--reconnect-timeout", "60"], timeout=60)
    assert r.returncode == 2, r.stderr
    assert str(path) in r.stderr and "error:" in r.stderr


def test_stream_cli_unknown_model_and_unreadable_file(tmp_path, micro):
    r = _run_cli(["stream", "--server", "127.0.0.1:1", "--model", "no-such-model", str(tmp_path)])
    assert r.returncode == 2 and "no-such-model" in r.stderr
    r = _run_cli(["stream", "--server", "127.0.0.1:1", "--model", micro, str(tmp_path / "nope.ply")])
    assert r.returncode == 2 and "nope.ply" in r.stderr


def test_stream_cli_gives_up_on_an_unreachable_server(tmp_path, micro, sample):
    np.save(tmp_path / "one.npy", sample["points"][0])
    r = _run_cli(["stream", "--server", f"127.0.0.1:{free_port()}", "--model", micro, str(tmp_path / "one.npy"),
                  "--reconnect-timeout", "1", "--quiet"])
    assert r.returncode == 1 and "gave up" in r.stdout + r.stderr and "1 lost" in r.stdout


def _requirements(dist: str, extras: set[str]) -> list:
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement
    try:
        reqs = requires(dist) or []
    except PackageNotFoundError:
        return []
    out = []
    for text in reqs:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
            out.append(req)
    return out


def test_edge_and_cloud_extras_install_no_torch():
    """The dependency closure of `pip install .[edge]` (and `.[cloud]`) holds no torch: resolved
    offline from pyproject.toml and the metadata of the installed distributions."""
    tomllib = pytest.importorskip("tomllib")
    pytest.importorskip("packaging")
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for extra in ("edge", "cloud"):
        todo = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"][extra]]
        seen: set[str] = set()
        while todo:
            req = todo.pop()
            name = canonicalize_name(req.name)
            assert name not in {"torch", "torchvision", "pytorch"}, f"[{extra}] pulls in {req}"
            if name in seen:
                continue
            seen.add(name)
            todo.extend(_requirements(req.name, set(req.extras)))
        assert {"grpcio", "onnxruntime", "constriction", "protobuf"} <= seen, (extra, seen)
        if extra == "edge":  # no wheel for Linux aarch64 nor Python 3.13: the viz extra
            assert "open3d" not in seen


def test_edge_encoding_and_client_work_with_torch_blocked(blocker, micro):
    code = ("import numpy as np; from edge_client import EdgeClient; "
            f"c = EdgeClient('127.0.0.1:1', {micro!r}); b, ms = c.encode(np.random.default_rng(0).normal(size=(500, 3)), container=True); "
            "assert b[:3] == b'SP\\x02' and ms > 0; c.close()")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=env, cwd=ROOT)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_generated_protos_are_current(tmp_path, version):
    """splitinfer/proto/ matches protos/ (regenerate with scripts/gen_protos.sh): the committed
    module's descriptor equals a fresh compile of the .proto, whatever the grpcio-tools version."""
    import importlib
    tools = pytest.importorskip("grpc_tools.protoc")
    from google.protobuf import descriptor_pb2
    pkg = "splitinfer.proto" + ("" if version == "v1" else f".{version}")
    inference_pb2 = importlib.import_module(pkg + ".inference_pb2")
    inference_pb2_grpc = importlib.import_module(pkg + ".inference_pb2_grpc")
    out = tmp_path / "inference.pb"
    assert tools.main(["protoc", f"-I{ROOT / 'protos'}", f"--descriptor_set_out={out}",
                       str(ROOT / "protos" / "splitinfer" / version / "inference.proto")]) == 0
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    committed = descriptor_pb2.FileDescriptorProto.FromString(inference_pb2.DESCRIPTOR.serialized_pb)
    for fd in (fresh, committed):  # json_name is filled in by some protoc outputs only
        for msg in fd.message_type:
            for f in msg.field:
                f.ClearField("json_name")
    assert fresh == committed, "splitinfer/proto/ is stale: run scripts/gen_protos.sh"
    stubs = Path(inference_pb2_grpc.__file__).read_text()
    assert "from . import inference_pb2" in stubs and f"import splitinfer.{version}" not in stubs
    assert {"Classify", "ClassifyStream", "ListModels"} <= set(dir(inference_pb2_grpc.InferenceServicer))
