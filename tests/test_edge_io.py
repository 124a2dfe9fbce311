"""Reading point clouds on the edge: files, meshes, arrays, folders, and clear errors. The readers
are numpy-only; open3d, where installed, writes reference files and reads .stl."""
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


@pytest.mark.parametrize("suffix,opts", [
    (".ply", {}), (".ply", {"write_ascii": True}), (".pcd", {}), (".pcd", {"write_ascii": True}),
    (".pcd", {"compressed": True}), (".xyz", {}), (".pts", {}), (".xyzn", {}), (".xyzrgb", {})],
    ids=["ply-binary", "ply-ascii", "pcd-binary", "pcd-ascii", "pcd-binary-compressed", "xyz",
         "pts", "xyzn", "xyzrgb"])
def test_open3d_files_read_without_open3d(tmp_path, cloud, suffix, opts):
    o3d = _o3d()
    path = tmp_path / f"chair{suffix}"
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud))
    pcd.colors = o3d.utility.Vector3dVector(np.abs(cloud) / np.abs(cloud).max())
    pcd.estimate_normals()
    assert o3d.io.write_point_cloud(str(path), pcd, **opts)
    [c] = read_file(path)
    assert c.name == str(path) and c.points.dtype == np.float32 and c.points.shape == cloud.shape
    np.testing.assert_allclose(c.points, cloud, atol=1e-4)


def _tetra_off(path, header="OFF\n4 4 0\n"):
    path.write_text(header + "0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 1 3\n3 0 2 3\n3 1 2 3\n")
    return path


@pytest.mark.parametrize("header", ["OFF\n4 4 0\n", "OFF4 4 0\n"], ids=["off", "modelnet-header"])
def test_off_mesh_is_sampled(tmp_path, header):
    [c] = read_file(_tetra_off(tmp_path / "airplane_0001.off", header), mesh_points=500)
    assert c.points.shape == (500, 3)
    assert (c.points >= -1e-6).all() and (c.points.sum(axis=1) <= 1 + 1e-5).all()  # on the tetrahedron
    [again] = read_file(tmp_path / "airplane_0001.off", mesh_points=500)
    np.testing.assert_array_equal(c.points, again.points)  # a fixed seed: the same cloud every time


def test_obj_and_stl_meshes_written_by_open3d(tmp_path):
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
    (np.array([[np.nan, 0, 0], [np.inf, 1, 1]]), "NaN or infinite"),
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
    cases = {"missing.ply": None, "cloud.doc": "1 2 3\n", "empty.xyz": "", "nan.xyz": "nan 1 2\ninf 0 0\n",
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


# ---------------------------------------------------------------------------- numpy readers, by hand


def _ply_header(fmt, n, extra_elements_before="", vertex_props=("float x", "float y", "float z")):
    props = "".join(f"property {p}\n" for p in vertex_props)
    return (f"ply\nformat {fmt} 1.0\ncomment written by hand\n{extra_elements_before}"
            f"element vertex {n}\n{props}element face 1\nproperty list uchar int vertex_indices\n"
            "end_header\n").encode()


@pytest.mark.parametrize("fmt,bo", [("binary_little_endian", "<"), ("binary_big_endian", ">")])
def test_binary_ply_either_byte_order(tmp_path, cloud, fmt, bo):
    n = len(cloud)
    rec = np.dtype([("x", bo + "f8"), ("y", bo + "f4"), ("red", "u1"), ("z", bo + "f4")])
    table = np.zeros(n, rec)
    table["x"], table["y"], table["z"] = cloud.T
    # an element with a list property before the vertices: skipped value by value
    before = "element camera 2\nproperty list uchar float params\nproperty int id\n"
    cam = b"".join(np.array([2], "u1").tobytes() + np.array([1, 2], bo + "f4").tobytes()
                   + np.array([7], bo + "i4").tobytes() for _ in range(2))
    face = np.array([3], "u1").tobytes() + np.array([0, 1, 2], bo + "i4").tobytes()
    path = tmp_path / "cloud.ply"
    path.write_bytes(_ply_header(fmt, n, before, ("double x", "float y", "uchar red", "float z"))
                     + cam + table.tobytes() + face)
    [c] = read_file(path)
    np.testing.assert_allclose(c.points, cloud, atol=1e-5)
    path.write_bytes(path.read_bytes()[:-len(face) - 100])  # truncated inside the vertices
    with pytest.raises(InvalidPointCloud, match="ends inside"):
        read_file(path)


def test_ascii_ply_with_faces(tmp_path):
    path = tmp_path / "tri.ply"
    path.write_bytes(_ply_header("ascii", 3, vertex_props=("float x", "float y", "float z",
                                                           "uchar red"))
                     + b"0 0 0 255\n1 0 0 255\n0 1 0.5 255\n3 0 1 2\n")
    [c] = read_file(path)
    np.testing.assert_array_equal(c.points, [[0, 0, 0], [1, 0, 0], [0, 1, 0.5]])


def _pcd(fields, sizes, types, counts, n, data_kind):
    return (f"# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS {' '.join(fields)}\n"
            f"SIZE {' '.join(map(str, sizes))}\nTYPE {' '.join(types)}\n"
            f"COUNT {' '.join(map(str, counts))}\nWIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\n"
            f"POINTS {n}\nDATA {data_kind}\n").encode()


@pytest.mark.parametrize("kind", ["ascii", "binary", "binary_compressed"])
def test_pcd_by_hand(tmp_path, cloud, kind):
    from splitinfer.pointcloud.lzf import compress_literal
    n = len(cloud)
    fields, sizes, types, counts = ["intensity", "x", "y", "z", "_"], [2, 4, 8, 4, 1], \
        ["U", "F", "F", "F", "U"], [1, 1, 1, 1, 3]
    head = _pcd(fields, sizes, types, counts, n, kind)
    inten = np.arange(n, dtype="<u2")
    pad = np.zeros((n, 3), "u1")
    x, y, z = cloud.T.astype("<f4"), cloud[:, 1].astype("<f8"), cloud[:, 2].astype("<f4")
    if kind == "ascii":
        body = "".join(f"{i} {a!r} {b!r} {c!r} 0 0 0\n" for i, a, b, c in
                       zip(inten.tolist(), x[0].tolist(), y.tolist(), z.tolist())).encode()
    elif kind == "binary":
        rec = np.dtype([("i", "<u2"), ("x", "<f4"), ("y", "<f8"), ("z", "<f4"), ("p", "u1", (3,))])
        t = np.zeros(n, rec)
        t["i"], t["x"], t["y"], t["z"], t["p"] = inten, x[0], y, z, pad
        body = t.tobytes()
    else:  # field-major, LZF
        raw = inten.tobytes() + x[0].tobytes() + y.tobytes() + z.tobytes() + pad.tobytes()
        comp = compress_literal(raw)
        body = np.array([len(comp), len(raw)], "<u4").tobytes() + comp
    path = tmp_path / f"{kind}.pcd"
    path.write_bytes(head + body)
    [c] = read_file(path)
    np.testing.assert_allclose(c.points, cloud, atol=1e-5)


def test_lzf_back_references():
    from splitinfer.pointcloud.lzf import LzfError, decompress
    # 'abc' literal, then a 9-byte overlapping copy 3 back, then a 12-byte copy (length byte)
    stream = bytes([2]) + b"abc" + bytes([(7 << 5) | 0, 0, 2]) + bytes([(7 << 5) | 0, 3, 11])
    assert decompress(stream, 3 + 9 + 12) == b"abc" * 8
    with pytest.raises(LzfError, match="before the start"):
        decompress(bytes([0]) + b"a" + bytes([1 << 5, 5]), 4)
    with pytest.raises(LzfError, match="announced"):
        decompress(bytes([1]) + b"ab", 3)
    with pytest.raises(LzfError, match="passes the end"):
        decompress(bytes([5]) + b"ab", 6)


def test_text_clouds(tmp_path, cloud):
    lines = "".join(f"{a}, {b}, {c}, 0.5  # a comment\n" for a, b, c in cloud.tolist())
    (tmp_path / "c.txt").write_text("// exported by a scanner\n" + lines)
    (tmp_path / "c.pts").write_text(f"{len(cloud)}\n" + lines.replace(",", " "))
    for name in ("c.txt", "c.pts"):
        [c] = read_file(tmp_path / name)
        np.testing.assert_allclose(c.points, cloud, atol=1e-6)
    (tmp_path / "short.xyz").write_text("1 2 3\n4 5\n")
    with pytest.raises(InvalidPointCloud, match="line 2 has 2 values"):
        read_file(tmp_path / "short.xyz")
    (tmp_path / "word.xyz").write_text("1 2 three\n")
    with pytest.raises(InvalidPointCloud, match="not a number"):
        read_file(tmp_path / "word.xyz")
    (tmp_path / "binary.xyz").write_bytes(b"\xff\xfe\x00\x01" * 10)
    with pytest.raises(InvalidPointCloud, match="not a text"):
        read_file(tmp_path / "binary.xyz")


def test_kitti_bin_and_fields(tmp_path, cloud):
    xyzi = np.concatenate([cloud, np.linspace(0, 1, len(cloud))[:, None]], axis=1).astype("<f4")
    xyzi.tofile(tmp_path / "000000.bin")
    [c] = read_file(tmp_path / "000000.bin")
    np.testing.assert_allclose(c.points, cloud, atol=1e-6)
    cloud.astype("<f4").tofile(tmp_path / "xyz.bin")
    [c] = read_file(tmp_path / "xyz.bin", fields="xyz")
    np.testing.assert_allclose(c.points, cloud, atol=1e-6)
    izyx = xyzi[:, ::-1].copy()
    izyx.tofile(tmp_path / "izyx.bin")
    [c] = read_file(tmp_path / "izyx.bin", fields="izyx")
    np.testing.assert_allclose(c.points, cloud, atol=1e-6)
    cloud[:1023].astype("<f4").tofile(tmp_path / "odd.bin")  # 3-float records read as xyzi
    with pytest.raises(InvalidPointCloud, match="not a whole number of 4-float32 records"):
        read_file(tmp_path / "odd.bin")
    with pytest.raises(ValueError, match="must name x, y and z"):
        read_file(tmp_path / "000000.bin", fields="xyi")


def test_obj_mesh_by_hand(tmp_path):
    (tmp_path / "quad.obj").write_text("# a unit square\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\n"
                                       "vn 0 0 1\nf 1//1 2//1 3//1 4//1\n")
    [c] = read_file(tmp_path / "quad.obj", mesh_points=400)
    assert c.points.shape == (400, 3) and np.allclose(c.points[:, 2], 0)
    assert c.points[:, :2].min() >= 0 and c.points[:, :2].max() <= 1
    assert (c.points[:, 0] > c.points[:, 1]).mean() == pytest.approx(0.5, abs=0.1)  # both halves
    (tmp_path / "bad.obj").write_text("v 0 0 0\nf 1 2 3\n")
    with pytest.raises(InvalidPointCloud, match="does not exist"):
        read_file(tmp_path / "bad.obj")


@pytest.mark.parametrize("name,data,message", [
    ("nomagic.ply", b"plx\n", "not a PLY file"),
    ("noend.ply", b"ply\nformat ascii 1.0\nelement vertex 3\n", "no line starting with 'end_header'"),
    ("badformat.ply", b"ply\nformat binary_middle_endian 1.0\nelement vertex 1\nproperty float x\n"
     b"end_header\n", "unsupported PLY format"),
    ("nox.ply", b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float y\nproperty float z\n"
     b"end_header\n1 2\n", "no x property"),
    ("badtype.ply", b"ply\nformat ascii 1.0\nelement vertex 1\nproperty quad x\nend_header\n",
     "unknown property type"),
    ("short.ply", b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
     b"property float z\nend_header\n1 2 3\n", "ends after 1 of 3 vertices"),
    ("nodata.pcd", b"VERSION 0.7\nFIELDS x y z\n", "no line starting with 'DATA'"),
    ("noz.pcd", b"FIELDS x y\nSIZE 4 4\nTYPE F F\nWIDTH 1\nPOINTS 1\nDATA ascii\n1 2\n", "no z field"),
    ("count.pcd", b"FIELDS x y z\nSIZE 4 4\nTYPE F F F\nWIDTH 1\nPOINTS 1\nDATA ascii\n1 2 3\n",
     "3 FIELDS, 2 SIZE"),
    ("short.pcd", b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 2\nPOINTS 2\nDATA binary\n" + b"\0" * 12,
     "12 bytes, 24 needed"),
    ("lzf.pcd", b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 1\nPOINTS 1\nDATA binary_compressed\n"
     + np.array([3, 12], "<u4").tobytes() + bytes([40, 0, 0]), "corrupt binary_compressed"),
    ("mode.pcd", b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 1\nPOINTS 1\nDATA zip\n",
     "unsupported PCD DATA"),
])
def test_malformed_files_get_clear_errors(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InvalidPointCloud) as e:
        read_file(path)
    assert str(path) in str(e.value) and message in str(e.value), str(e.value)


def test_txt_files_are_read_when_named_not_from_folders(tmp_path, cloud):
    np.savetxt(tmp_path / "cloud.txt", cloud)
    (tmp_path / "notes.md").write_text("x")
    np.save(tmp_path / "a.npy", cloud)
    assert [p.name for p in expand([tmp_path])] == ["a.npy"]
    assert len(read_clouds([tmp_path / "cloud.txt", tmp_path])) == 2


def test_open3d_only_formats_say_what_to_install(tmp_path):
    import subprocess
    import sys
    path = tmp_path / "box.stl"
    path.write_text("solid box\nendsolid box\n")
    code = ("import sys; sys.modules['open3d'] = None\n"
            "from splitinfer.pointcloud.io import read_file\n"
            "from splitinfer.pointcloud.preprocess import InvalidPointCloud\n"
            f"try:\n    read_file({str(path)!r})\n"
            "except InvalidPointCloud as e:\n    assert 'splitinfer[viz]' in str(e), e\n"
            "else:\n    raise SystemExit('no error')\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_sensor_files_keep_their_nan_holes_for_the_edge_to_count(tmp_path, sample):
    """An organised depth frame stores NaN for pixels without a return: the file is read whole,
    and the edge drops and counts the holes per frame (too few valid points stays an error)."""
    cloud = sample["points"][0].astype(np.float32)
    frame = np.vstack([cloud[:500], np.full((40, 3), np.nan, np.float32), cloud[500:]])
    np.save(tmp_path / "frame.npy", frame)
    (tmp_path / "frame.xyz").write_text("\n".join(" ".join(map(str, p)) for p in frame) + "\n")
    for name in ("frame.npy", "frame.xyz"):
        pts = read_file(tmp_path / name)[0].points
        assert pts.shape == frame.shape and int(np.isnan(pts).any(axis=1).sum()) == 40
    from edge_client import EdgeClient
    with EdgeClient("127.0.0.1:1", "micro-p1024-l16000@1") as client:
        _, _, dropped = client.encode_frame(read_file(tmp_path / "frame.npy")[0].points,
                                            "micro-p1024-l16000@1", container=True)
    assert dropped == 40
