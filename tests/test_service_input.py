"""Cloud-only inputs through the real server: a raw float32 cloud and a Draco-coded cloud
(container kinds 4 and 5) classified by a `pointcloud-input-classification` model, as the
server process answers them, against the same model run locally; bad inputs are INVALID_ARGUMENT."""
from __future__ import annotations

import grpc
import numpy as np
import pytest
from service_utils import SAMPLE, input_model_repo, torch_blocker

from splitinfer.codec import Container, PayloadKind
from splitinfer.pointcloud.input_model import pack_draco, pack_raw, unpack_points
from splitinfer.pointcloud.preprocess import preprocess
from splitinfer.proto import inference_pb2 as pb2

PLAIN = "plain-pointnet-p1024"


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory):
    pytest.importorskip("DracoPy")
    return input_model_repo(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, repo_dir):
    from cloud_server.process import ServerProcess
    blocker = torch_blocker(tmp_path_factory.mktemp("notorch"))
    srv = ServerProcess([], models_dir=str(repo_dir), env={"PYTHONPATH": str(blocker)})
    yield srv
    assert srv.stop() == 0, srv.log()


@pytest.fixture(scope="module")
def clouds():
    with np.load(SAMPLE) as z:
        return [preprocess(p, 1024, 0) for p in z["points"][:6]]


@pytest.fixture(scope="module")
def local(repo_dir):
    from splitinfer.repository import ModelRepository
    return ModelRepository(repo_dir).load(PLAIN)


def test_the_server_serves_codecs_and_the_input_model(stub):
    models = {m.name: m for m in stub.ListModels(pb2.ListModelsRequest(), timeout=10).models}
    assert PLAIN in models and models[PLAIN].task == "pointcloud-input-classification"
    assert len(models[PLAIN].classes) == 40


def test_raw_and_draco_payloads_classified_as_locally(stub, local, clouds):
    for x in clouds:
        raw = pack_raw(x, local.digest)
        assert len(raw) > 12 * 1024 and Container.unpack(raw).kind == PayloadKind.POINTCLOUD_RAW_F32
        want_raw = int(np.argmax(local.classify(x[None])[0]))
        r = stub.Classify(pb2.ClassifyRequest(model=PLAIN, payload=raw), timeout=10)
        assert r.label == want_raw and r.model == PLAIN
        for q in (6, 11):
            d = pack_draco(x, local.digest, q)
            pts = unpack_points(Container.unpack(d))      # what the server decodes
            assert 0 < len(pts) <= 1024 and np.abs(pts - 0).max() <= 1.01
            want = int(np.argmax(local.classify(pts[None])[0]))
            r = stub.Classify(pb2.ClassifyRequest(model=PLAIN, payload=d), timeout=10)
            assert r.label == want


def test_stream_mixes_input_kinds_and_codecs(stub, local, clouds):
    d = local.digest
    reqs = [pb2.ClassifyRequest(model=PLAIN, payload=pack_raw(clouds[0], d), stream_id="mix", seq=1),
            pb2.ClassifyRequest(model=PLAIN, payload=pack_draco(clouds[1], d, 4), stream_id="mix", seq=2),
            pb2.ClassifyRequest(model=PLAIN, payload=pack_draco(clouds[2], d, 11), stream_id="mix", seq=3)]
    answers = {r.seq: r for r in stub.ClassifyStream(iter(reqs), timeout=20)}
    assert sorted(answers) == [1, 2, 3]
    assert all(not a.HasField("error") or a.error.code == 0 for a in answers.values())


@pytest.mark.parametrize("make", [
    lambda x, d: Container(d, PayloadKind.POINTCLOUD_RAW_F32, (1024, 3), (b"\0" * 100,)).pack(),  # short
    lambda x, d: Container(d, PayloadKind.POINTCLOUD_DRACO, (1024, 3), (b"not draco at all",)).pack(),
    lambda x, d: Container(d, PayloadKind.POINTCLOUD_RAW_F32, (4, 3),
                           (np.full((4, 3), np.nan, "<f4").tobytes(),)).pack(),                   # NaN
    lambda x, d: Container(d, PayloadKind.POINTCLOUD_LATENT, (16,), (b"",)).pack(),              # a latent
])
def test_bad_inputs_are_invalid_argument(stub, local, clouds, make):
    with pytest.raises(grpc.RpcError) as e:
        stub.Classify(pb2.ClassifyRequest(model=PLAIN, payload=make(clouds[0], local.digest)), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_points_packed_for_another_model_are_failed_precondition(stub, local, clouds):
    with pytest.raises(grpc.RpcError) as e:
        stub.Classify(pb2.ClassifyRequest(model=PLAIN, payload=pack_raw(clouds[0], "ab" * 8)), timeout=10)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "abababababababab" in e.value.details() and local.digest[:16] in e.value.details()


def test_a_batch_of_clouds_of_different_sizes(local, clouds):
    """The batcher runs inputs of different shapes one by one (Draco may merge points)."""
    from cloud_server.batcher import DynamicBatcher
    import asyncio

    async def go():
        b = DynamicBatcher("plain", local.classify, max_batch_size=8).start()
        futs = [b.submit(clouds[0]), b.submit(clouds[1][:1000]), b.submit(clouds[2][:17])]
        return await asyncio.gather(*futs)
    res = asyncio.run(go())
    assert [r.batch_size for r in res] == [3, 3, 3]
    assert res[2].label == int(np.argmax(local.classify(clouds[2][:17][None])[0]))
