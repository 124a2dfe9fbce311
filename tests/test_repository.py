"""Model identity in the repository: digests recorded and checked, files verified at load, paths
kept inside the model folder, immutable versions served side by side, broken models skipped
(the others serve) and startup failures reported in one line."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from service_utils import SAMPLE, start_server

from splitinfer.codec import SymbolOutOfRange, encode
from splitinfer.pointcloud.runtime import ESCAPE_REACH
from splitinfer.proto import inference_pb2 as pb2
from splitinfer.proto import inference_pb2_grpc as pb2_grpc
from splitinfer.repository import (ModelError, ModelRepository, new_version_folder, sha256,
                                   write_digest)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models"
A, B = "micro-p1024-l120", "micro-p64-l28"   # two small shipped codecs


def copy_model(root: Path, src: str, name: str | None = None, version: int = 1) -> Path:
    """A copy of a shipped model as ``root/name/version`` (config renamed accordingly)."""
    dst = root / (name or src) / str(version)
    shutil.copytree(SHIPPED / src / "1", dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(name=name or src, version=version)
    (dst / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    return dst


def edit_config(folder: Path, **changes) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")


@pytest.fixture()
def repo_dir(tmp_path) -> Path:
    root = tmp_path / "models"
    copy_model(root, A)
    copy_model(root, B)
    return root


@pytest.fixture(scope="module")
def cloud() -> np.ndarray:
    with np.load(SAMPLE) as z:
        return z["points"][0]


# ---------------------------------------------------------------------------- digests


def test_every_shipped_config_records_its_digest():
    configs = ModelRepository(SHIPPED).list()
    assert configs and not ModelRepository(SHIPPED).errors
    for c in configs:
        assert c.raw.get("digest") == c.digest, c.ref
        assert len(c.short_digest) == 16 and c.digest.startswith(c.short_digest)
    assert len({c.digest for c in configs}) == len(configs)


def test_a_config_changed_after_export_is_refused(repo_dir):
    cfg = json.loads((repo_dir / A / "1" / "config.json").read_text())
    classes = cfg["classes"]
    edit_config(repo_dir / A / "1", classes=[classes[1], classes[0]] + classes[2:])
    repo = ModelRepository(repo_dir)
    assert [c.name for c in repo.list()] == [B]
    (path, message), = repo.errors
    assert path.endswith(f"{A}/1/config.json") and "recorded digest" in message
    assert "models digest --write" in message
    with pytest.raises(ModelError, match="recorded digest"):
        repo.load(A)
    repo.load(B)


def test_models_digest_write_adds_only_the_digest(repo_dir):
    path = repo_dir / A / "1" / "config.json"
    original = path.read_text()
    cfg = json.loads(original)
    del cfg["digest"]
    path.write_text(json.dumps(cfg, indent=1) + "\n")
    r = subprocess.run([sys.executable, "-m", "splitinfer.cli", "models", "digest", "--write",
                        "--models", str(repo_dir), A], capture_output=True, text=True, timeout=120,
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr
    assert path.read_text() == original
    assert f"{A}@1  written" in r.stdout


# ---------------------------------------------------------------------------- files


def test_tampered_classifier_is_refused_and_the_other_model_loads(repo_dir):
    f = repo_dir / A / "1" / "classifier.onnx"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01         # one weight bit
    f.write_bytes(bytes(data))
    repo = ModelRepository(repo_dir)
    with pytest.raises(ModelError) as e:
        repo.load(A)
    assert e.value.path == str(f) and "sha256" in str(e.value) and "new version" in str(e.value)
    assert repo.load(B).classify(np.zeros((1, repo.load(B).channels), np.float32)).shape == (1, 40)
    assert [b["path"] for b in repo.broken()] == [str(f)]


def test_a_missing_file_is_refused(repo_dir):
    (repo_dir / A / "1" / "tables.npz").unlink()
    with pytest.raises(ModelError, match="missing"):
        ModelRepository(repo_dir).load(A)


@pytest.mark.parametrize("path", ["../../micro-p64-l28/1/classifier.onnx", "/etc/hostname",
                                  "link/classifier.onnx"])
def test_a_file_outside_the_model_folder_is_refused(repo_dir, path):
    folder = repo_dir / A / "1"
    (folder / "link").symlink_to(repo_dir / B / "1")     # a link out of the folder
    cfg = json.loads((folder / "config.json").read_text())
    cfg["files"]["classifier"] = path
    cfg["sha256"][path] = sha256(folder / path) if not path.startswith("/") else "0" * 64
    (folder / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    repo = ModelRepository(repo_dir)
    assert [c.name for c in repo.list()] == [B]
    (where, message), = repo.errors
    assert "not a file inside the model folder" in message and path in message
    with pytest.raises(ModelError, match="inside the model folder"):
        repo.load(A)


def test_a_truncated_config_is_skipped_and_the_others_listed(repo_dir):
    path = repo_dir / A / "1" / "config.json"
    path.write_text(path.read_text()[:200])
    repo = ModelRepository(repo_dir)
    assert [c.name for c in repo.list()] == [B]
    assert repo.broken() == [{"path": str(path), "error": repo.errors[0][1]}]
    assert "not valid JSON" in repo.errors[0][1]
    with pytest.raises(ModelError, match="not valid JSON"):
        repo.config(A)
    assert repo.load(B) is not None


def test_a_pickled_tables_file_is_refused_naming_it(repo_dir):
    folder = repo_dir / A / "1"
    import pickle
    (folder / "tables.npz").write_bytes(pickle.dumps({"offsets": [0]}))
    edit_config(folder, sha256={**json.loads((folder / "config.json").read_text())["sha256"],
                                "tables.npz": sha256(folder / "tables.npz")})
    write_digest(folder / "config.json")
    with pytest.raises(ModelError) as e:
        ModelRepository(repo_dir).load(A)
    assert e.value.path == str(folder / "tables.npz") and "pickled" in str(e.value)


# ---------------------------------------------------------------------------- versions


def test_versions_are_immutable_and_addressed_by_name_at_version(tmp_path):
    root = tmp_path / "models"
    copy_model(root, A, "twin", 1)
    copy_model(root, B, "twin", 2)
    with pytest.raises(FileExistsError, match="immutable"):
        new_version_folder(root, "twin", 2)
    assert new_version_folder(root, "twin").name == "3"
    shutil.rmtree(root / "twin" / "3")
    repo = ModelRepository(root)
    assert repo.config("twin").version == 2
    assert repo.config("twin@1").digest == ModelRepository(SHIPPED).config(A).digest
    assert repo.load("twin@1").points == 1024 and repo.load("twin").points == 64
    assert [c.ref for c in repo.select(["twin"])] == ["twin@1", "twin@2"]
    assert [c.ref for c in repo.select(["twin@1"])] == ["twin@1"]


def test_two_versions_of_a_name_served_side_by_side(tmp_path, cloud):
    root = tmp_path / "models"
    copy_model(root, A, "twin", 1)
    copy_model(root, B, "twin", 2)
    repo = ModelRepository(root)
    v1, v2 = repo.load("twin@1"), repo.load("twin@2")
    with start_server([], extra=["--models", str(root)]) as srv:
        channel = grpc.insecure_channel(srv.address)
        stub = pb2_grpc.InferenceStub(channel)
        listed = {(m.name, m.version) for m in stub.ListModels(pb2.ListModelsRequest(), timeout=10).models}
        assert listed == {("twin", 2), ("twin@1", 1)}
        for model, ref in ((v1, "twin@1"), (v2, "twin@2"), (v2, "twin")):
            payload = model.encode(cloud)
            want = int(np.argmax(model.classify(model.decode(payload)[None].astype(np.float32))[0]))
            assert stub.Classify(pb2.ClassifyRequest(model=ref, payload=payload), timeout=10).label == want
        with pytest.raises(grpc.RpcError) as e:    # version 1's frame sent to the newest
            stub.Classify(pb2.ClassifyRequest(model="twin", payload=v1.encode(cloud)), timeout=10)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert v1.config.short_digest in e.value.details() and v2.config.short_digest in e.value.details()
        channel.close()


# ---------------------------------------------------------------------------- serving broken repositories


def test_serve_skips_broken_models_and_serves_the_others(repo_dir, cloud):
    copy_model(repo_dir, A, "tampered")
    copy_model(repo_dir, A, "truncated")
    f = repo_dir / "tampered" / "1" / "classifier.onnx"
    f.write_bytes(f.read_bytes() + b"\0")
    cfg = repo_dir / "truncated" / "1" / "config.json"
    cfg.write_text(cfg.read_text()[:-40])
    with start_server([], extra=["--models", str(repo_dir)]) as srv:
        stub = pb2_grpc.InferenceStub(grpc.insecure_channel(srv.address))
        names = {m.name for m in stub.ListModels(pb2.ListModelsRequest(), timeout=10).models}
        assert names == {A, B}
        m = ModelRepository(repo_dir).load(A)
        assert stub.Classify(pb2.ClassifyRequest(model=A, payload=m.encode(cloud)), timeout=10).label >= 0
        errors = [line for line in srv.log().splitlines() if "error:" in line]
        assert len(errors) == 2 and "Traceback" not in srv.log()
        assert any(str(f) in line and "sha256" in line for line in errors)
        assert any(str(cfg) in line and "not valid JSON" in line for line in errors)
        assert {b["path"] for b in srv.info["broken"]} == {str(f), str(cfg)}   # the ready file


def _serve_fails(repo_dir: Path, model: str) -> str:
    r = subprocess.run([sys.executable, "-m", "cloud_server", "--models", str(repo_dir), "--model", model,
                        "--port", "0", "--metrics-port", "-1", "--log-level", "WARNING"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_startup_failures_are_one_error_line_naming_the_file_and_the_fix(repo_dir):
    onnx = pytest.importorskip("onnx")
    folder = repo_dir / A / "1"
    # a truncated config.json (JSONDecodeError)
    cfg_text = (folder / "config.json").read_text()
    (folder / "config.json").write_text(cfg_text[:100])
    line = _serve_fails(repo_dir, A)
    assert str(folder / "config.json") in line and "restore it" in line
    (folder / "config.json").write_text(cfg_text)
    # a classifier whose weights lie outside the folder (onnxruntime refuses the external data)
    model = onnx.load(str(folder / "classifier.onnx"))
    onnx.save_model(model, str(folder / "classifier.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    model = onnx.load(str(folder / "classifier.onnx"), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../weights.bin"
    (folder / "classifier.onnx").write_bytes(model.SerializeToString())
    shutil.move(folder / "weights.bin", folder.parent / "weights.bin")
    sums = json.loads(cfg_text)["sha256"]
    edit_config(folder, sha256={**sums, "classifier.onnx": sha256(folder / "classifier.onnx")})
    write_digest(folder / "config.json")
    line = _serve_fails(repo_dir, A)
    assert str(folder / "classifier.onnx") in line and "external data" in line
    assert "save_as_external_data=False" in line
    # a tampered file
    (folder / "config.json").write_text(cfg_text)
    line = _serve_fails(repo_dir, A)
    assert str(folder / "classifier.onnx") in line and "sha256" in line
    # a pickled tables file (recorded as such: the loader refuses it)
    import pickle
    shutil.copy(SHIPPED / A / "1" / "classifier.onnx", folder / "classifier.onnx")
    (folder / "tables.npz").write_bytes(pickle.dumps({"offsets": [0]}))
    edit_config(folder, sha256={**sums, "tables.npz": sha256(folder / "tables.npz")})
    write_digest(folder / "config.json")
    line = _serve_fails(repo_dir, A)
    assert str(folder / "tables.npz") in line and "pickled data is refused" in line


# ---------------------------------------------------------------------------- the CLI and the runtime


def test_models_list_into_head_has_no_traceback():
    r = subprocess.run(f"{sys.executable} -m splitinfer.cli models list | head -1", shell=True,
                       capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.stdout.split() == ["name", "version", "digest", "task", "bits", "accuracy"]
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def test_models_list_columns_are_aligned(repo_dir):
    (repo_dir / B / "1" / "config.json").write_text("{")
    r = subprocess.run([sys.executable, "-m", "splitinfer.cli", "models", "list", "--models", str(repo_dir)],
                       capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    header, rule, row = r.stdout.splitlines()
    assert row.split()[:4] == [A, "1", ModelRepository(repo_dir).config(A).short_digest,
                               "pointcloud-classification"]
    assert header.index("digest") == row.index(row.split()[2])
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "config.json" in r.stderr


def test_decoded_symbols_far_outside_the_range_are_refused():
    repo = ModelRepository(SHIPPED)
    with np.load(SAMPLE) as z:
        clouds = z["points"][:16]
    for cfg in repo.list("pointcloud-classification"):
        m = repo.load(cfg.name)
        for cloud in clouds:     # what the encoders produce passes
            m.decode(m.encode(cloud))
        lo, n = int(m.tables.offsets[0]), int(m.tables.lengths[0])
        reach = ESCAPE_REACH * max(n, 2)
        for value, refused in ((2**31 - 1, True), (-2**31, True), (lo + n + reach, True),
                               (lo + n + reach - 1, False), (lo - reach - 1, True), (lo - reach, False)):
            y = np.zeros(m.channels, np.int32)
            y[0] = value
            if refused:
                with pytest.raises(SymbolOutOfRange, match="channel 0"):
                    m.decode(m.pack(y))
                with pytest.raises(SymbolOutOfRange):
                    m.decode_latent(encode(y, m.tables))
            else:
                assert m.decode(m.pack(y))[0] == value


def test_an_edge_with_only_the_edge_half_loads_and_encodes(repo_dir, cloud):
    """A device holds the encoder and tables only: it loads, verified, and its containers carry
    the full model's digest."""
    from splitinfer.repository import EDGE_ROLES
    full = ModelRepository(repo_dir).load(A)
    (repo_dir / A / "1" / "classifier.onnx").unlink()
    edge = ModelRepository(repo_dir)
    m = edge.load(A, roles=EDGE_ROLES)
    assert m.encode(cloud) == full.encode(cloud)
    with pytest.raises(ModelError, match="missing"):
        edge.load(A)       # the cloud half is not there
    f = repo_dir / A / "1" / "encoder.onnx"
    f.write_bytes(f.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="sha256"):
        ModelRepository(repo_dir).load(A, roles=EDGE_ROLES)


def test_a_restored_file_loads_again(repo_dir):
    f = repo_dir / A / "1" / "classifier.onnx"
    good = f.read_bytes()
    f.write_bytes(good + b"\0")
    repo = ModelRepository(repo_dir)
    with pytest.raises(ModelError):
        repo.load(A)
    assert [b["path"] for b in repo.broken()] == [str(f)]
    f.write_bytes(good)
    assert repo.load(A) is not None and repo.broken() == []
