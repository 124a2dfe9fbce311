"""Reading point clouds on the edge: files (open3d), meshes, arrays, folders, and clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from splitinfer.pointcloud.io import expand, read_array, read_clouds, read_file
from splitinfer.pointcloud.preprocess import InvalidPointCloud


@pytest.fixture(scope="module")
def cloud(sample):
    return sample["points"][0].astype(np.float64)


def _o3d():
    return pytest.importorskip("open3d")


@pytest.mark.parametrize("suffix", [".ply", ".pcd", ".xyz", ".pts"])
def test_point_cloud_files_round_trip(tmp_path, cloud, suffix):
    o3d = _o3d()
    path = tmp_path / f"chair{suffix}"
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud))
    assert o3d.io.write_point_cloud(str(path), pcd)
    [c] = read_file(path)
    assert c.name == str(path) and c.points.dtype == np.float32 and c.points.shape == cloud.shape
    np.testing.assert_allclose(c.points, cloud, atol=1e-4)


def _tetra_off(path, header="OFF\n4 4 0\n"):
    path.write_text(header + "0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 1 3\n3 0 2 3\n3 1 2 3\n")
    return path


@pytest.mark.parametrize("header", ["OFF\n4 4 0\n", "OFF4 4 0\n"], ids=["off", "modelnet-header"])
def test_off_mesh_is_sampled(tmp_path, header):
    _o3d()
    [c] = read_file(_tetra_off(tmp_path / "airplane_0001.off", header), mesh_points=500)
    assert c.points.shape == (500, 3)
    assert (c.points >= -1e-6).all() and (c.points.sum(axis=1) <= 1 + 1e-5).all()  # on the tetrahedron
    [again] = read_file(tmp_path / "airplane_0001.off", mesh_points=500)
    np.testing.assert_array_equal(c.points, again.points)  # a fixed seed: the same cloud every time


def test_obj_and_stl_meshes(tmp_path):
    o3d = _o3d()
    mesh = o3d.geometry.TriangleMesh.create_box()
    for suffix in (".obj", ".stl"):
        p = tmp_path / f"box{suffix}"
        if suffix == ".stl":
            mesh.compute_triangle_normals()
        assert o3d.io.write_triangle_mesh(str(p), mesh)
        [c] = read_file(p, mesh_points=300)
        assert c.points.shape == (300, 3) and c.points.min() >= -1e-5 and c.points.max() <= 1 + 1e-5


def test_arrays_and_labels(tmp_path, sample):
    pts = sample["points"][:5]
    np.save(tmp_path / "one.npy", pts[0])
    np.save(tmp_path / "batch.npy", pts)
    np.savez(tmp_path / "labelled.npz", points=pts, labels=sample["labels"][:5], classes=sample["classes"],
             names=sample["names"][:5])
    [one] = read_file(tmp_path / "one.npy")
    assert one.points.shape == (1024, 3) and one.label is None
    assert len(read_file(tmp_path / "batch.npy")) == 5
    cs = read_array(tmp_path / "labelled.npz")
    assert [c.label for c in cs] == list(sample["labels"][:5])
    assert cs[0].label_name == sample["classes"][sample["labels"][0]] and "airplane_0627" in cs[0].name


def test_folders_are_walked_and_labels_come_from_the_path(tmp_path, sample):
    _o3d()
    d = tmp_path / "modelnet" / "airplane" / "test"
    d.mkdir(parents=True)
    _tetra_off(d / "airplane_0627.off")
    np.save(tmp_path / "modelnet" / "x.npy", sample["points"][3])
    (tmp_path / "modelnet" / "README.txt").write_text("not a cloud")
    assert [p.name for p in expand([tmp_path / "modelnet"])] == ["airplane_0627.off", "x.npy"]
    cs = read_clouds([tmp_path / "modelnet"], classes=list(sample["classes"]))
    assert len(cs) == 2 and cs[0].label == 0 and cs[0].label_name == "airplane" and cs[1].label is None


@pytest.mark.parametrize("bad,message", [
    (np.full((10, 3), np.nan), "NaN or infinite"),
    (np.array([[0, 0, 0], [np.inf, 1, 1]]), "NaN or infinite"),
    (np.zeros((0, 3)), "empty"),
    (np.zeros((10, 2)), "shape"),
    (np.zeros((2, 10, 4)), "shape"),
    (np.zeros((3,)), "shape"),
], ids=["nan", "inf", "empty", "two-columns", "four-columns", "flat"])
def test_bad_arrays_name_the_file(tmp_path, bad, message):
    path = tmp_path / "bad.npy"
    np.save(path, bad)
    with pytest.raises(InvalidPointCloud) as e:
        read_file(path)
    assert str(path) in str(e.value) and message in str(e.value)


def test_bad_files_name_the_file(tmp_path):
    _o3d()
    cases = {"missing.ply": None, "cloud.txt": "1 2 3\n", "empty.xyz": "", "nan.xyz": "nan 1 2\n0 0 0\n",
             "broken.off": "OFF\n3 1 0\n0 0\n"}
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        with pytest.raises(InvalidPointCloud) as e:
            read_file(path)
        assert str(path) in str(e.value), name
    np.savez(tmp_path / "nopoints.npz", a=np.zeros((3, 3)), b=np.zeros(2))
    with pytest.raises(InvalidPointCloud, match="no 'points'"):
        read_file(tmp_path / "nopoints.npz")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(InvalidPointCloud, match="empty_dir"):
        read_clouds([tmp_path / "empty_dir"])


def test_numpy_inputs_do_not_import_open3d(tmp_path, sample):
    import subprocess
    import sys
    np.save(tmp_path / "one.npy", sample["points"][0])
    code = ("import sys; from splitinfer.pointcloud.io import read_clouds; "
            f"cs = read_clouds([{str(tmp_path / 'one.npy')!r}]); assert len(cs) == 1; "
            "assert 'open3d' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
