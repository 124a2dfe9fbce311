"""Sensor frames at the edge: NaN holes dropped and counted, degenerate frames refused, huge
coordinates answered like the object they are (real shipped models, no server needed)."""
import numpy as np
import pytest

from edge_client import EdgeClient
from splitinfer.pointcloud.preprocess import InvalidPointCloud
from splitinfer.repository import ModelRepository

MODEL = "micro-p1024-l16000@1"   # mean / farthest-point preprocessing (no "preprocess" in its config)
ROBUST_MODEL = "micro-p1024-l16000@2"  # median / quantile preprocessing


@pytest.fixture(scope="module")
def client():
    c = EdgeClient("127.0.0.1:1", MODEL)
    yield c
    c.close()


def _symbols(client, cloud, model=MODEL):
    data, _, dropped = client.encode_frame(cloud, model, container=True)
    return ModelRepository().load(model).decode(data), dropped


def test_nan_holes_are_dropped_and_counted(client, sample):
    cloud = sample["points"][0].astype(np.float32)
    frame = np.vstack([cloud, np.full((300, 3), np.nan), [[np.inf, 0, 0]]])
    y_hat, dropped = _symbols(client, frame)
    assert dropped == 301
    np.testing.assert_array_equal(y_hat, _symbols(client, cloud)[0])


def test_too_few_valid_points_is_a_clear_error(client):
    frame = np.full((100, 3), np.nan)
    frame[:3] = np.eye(3)
    client.min_points = 4
    try:
        with pytest.raises(InvalidPointCloud, match="3 valid points.*at least 4"):
            client.encode_frame(frame)
        client.min_points = 3
        assert client.encode_frame(frame)[2] == 97
    finally:
        client.min_points = 8
    with pytest.raises(InvalidPointCloud, match="valid points"):
        client.encode_frame(np.ones((1, 3)))     # a single point


@pytest.mark.parametrize("factor", [1e20, 3e38])
def test_huge_coordinates_give_the_objects_answer(client, sample, factor):
    cloud = sample["points"][5].astype(np.float64)
    cloud = cloud / np.abs(cloud).max()
    y_hat, _ = _symbols(client, cloud * factor)
    ref, _ = _symbols(client, cloud)
    assert np.abs(y_hat.astype(int) - ref).max() <= 1  # float rounding at most


def test_one_far_stray_point_is_refused_or_dropped_never_squashes_the_object(client, sample):
    frame = np.vstack([sample["points"][0], [[1e30, 0, 0]]])
    with pytest.raises(InvalidPointCloud, match="farther"):
        client.encode_frame(frame)          # farthest-point scaling: refused
    robust, _ = _symbols(client, frame, ROBUST_MODEL)
    clean, _ = _symbols(client, sample["points"][0], ROBUST_MODEL)
    assert np.abs(robust.astype(int) - clean).mean() < 0.5   # the stray point is dropped
