import os
from pathlib import Path

import numpy as np
import pytest

from splitinfer.data import SAMPLE

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def sample():
    """The bundled sample: 3 ModelNet40 test clouds per class."""
    with np.load(SAMPLE) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="session")
def tiny_modelnet(tmp_path_factory, sample):
    """A ModelNet40-shaped --data folder made from the bundled sample (no ../shared needed)."""
    d = tmp_path_factory.mktemp("modelnet40")
    for split in ("train", "test"):
        np.savez(d / f"modelnet40_{split}.npz", points=sample["points"], labels=sample["labels"],
                 names=sample["names"])
    (d / "classes.txt").write_text("\n".join(sample["classes"]) + "\n")
    return d


def shipped_models(size=None):
    from splitinfer.repository import ModelRepository
    return [c for c in ModelRepository().list("pointcloud-classification")
            if size is None or c.raw["size"] == size]


@pytest.fixture(scope="module")
def stub(server):
    """An Inference stub on the module's ``server`` fixture (a running cloud server)."""
    import grpc
    from splitinfer.proto import inference_pb2_grpc as pb2_grpc
    with grpc.insecure_channel(server.address) as ch:
        yield pb2_grpc.InferenceStub(ch)


# -- markers ---------------------------------------------------------------------------------
# Every test has a kind: unit (in process, no sockets), service (starts servers or subprocesses
# that listen), e2e (the whole pipeline as a user runs it); slow ones (training, long sweeps)
# are marked slow as well. The fast lane: pytest -m "not slow and not service and not e2e".
KINDS = {
    "service": {"test_service_grpc", "test_service_input", "test_service_lifecycle", "test_service_secure",
                "test_sidecar_process", "test_edge_client", "test_net", "test_bench_bandwidth", "test_sidecar",
                "test_protocol_v2", "test_service_stream"},
    "e2e": {"test_demo", "test_compose"},
}
SLOW = {"test_training", "test_image_adaptive", "test_motion", "test_image_eval", "test_bench_bandwidth",
        "test_compose", "test_demo", "test_service_lifecycle"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.path.stem
        if not any(item.get_closest_marker(k) for k in ("unit", "service", "e2e")):
            kind = next((k for k, mods in KINDS.items() if module in mods), "unit")
            item.add_marker(getattr(pytest.mark, kind))
        if module in SLOW:
            item.add_marker(pytest.mark.slow)
