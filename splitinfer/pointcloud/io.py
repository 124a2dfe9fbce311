"""Reading point clouds for the edge: point-cloud files, meshes, numpy arrays and folders.

- ``.ply .pcd .xyz .xyzn .xyzrgb .pts``: ``open3d.io.read_point_cloud``;
- ``.off .obj .stl .gltf .glb``: ``open3d.io.read_triangle_mesh`` (.off: a strict parser here,
  which also reads ModelNet's ``OFF<n> <m> <k>`` headers) then open3d's
  ``sample_points_uniformly`` with a fixed seed, so the same mesh always gives the same cloud; a
  mesh without faces gives its vertices;
- ``.npy``: an (N, 3) cloud or a (B, N, 3) batch;
- ``.npz``: ``points`` as (N, P0, 3) or (P0, 3), optional ``labels`` (class indices), ``names``
  and ``classes``;
- a folder: every supported file under it, sorted, recursively.

open3d is imported only when a file needs it, so numpy-only use does not need it. Every error
(unreadable, empty, NaN, wrong shape) is an ``InvalidPointCloud`` that names the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .preprocess import InvalidPointCloud, validate

CLOUD_SUFFIXES = (".ply", ".pcd", ".xyz", ".xyzn", ".xyzrgb", ".pts")
MESH_SUFFIXES = (".off", ".obj", ".stl", ".gltf", ".glb")
ARRAY_SUFFIXES = (".npy", ".npz")
SUFFIXES = CLOUD_SUFFIXES + MESH_SUFFIXES + ARRAY_SUFFIXES
MESH_POINTS = 2048  # points sampled from a mesh surface (the edge then samples P of them)


@dataclass
class Cloud:
    """One input cloud: where it came from, its raw (N, 3) float32 points, its label if known."""
    name: str
    points: np.ndarray
    label: int | None = None
    label_name: str | None = None


def _open3d():
    try:
        import open3d  # noqa: F401
        import open3d.io  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(f"reading point-cloud and mesh files needs open3d ({e}): "
                          "pip install 'splitinfer[edge]' (and on Debian/Ubuntu: apt-get install "
                          "libusb-1.0-0 libgomp1)") from e
    import open3d as o3d
    try:
        o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    except Exception:  # pragma: no cover
        pass
    return o3d


def _read_off(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, triangles) of an OFF file, including ModelNet's 'OFF490 518 0' headers."""
    tokens = path.read_text(errors="replace").split("\n")
    lines = [t.split("#")[0].strip() for t in tokens]
    lines = [t for t in lines if t]
    if not lines or not lines[0].upper().startswith("OFF"):
        raise InvalidPointCloud(f"{path}: not an OFF file")
    head = lines[0][3:].split()
    rest = lines[1:]
    try:
        if not head:
            head, rest = rest[0].split(), rest[1:]
        nv, nf = int(head[0]), int(head[1])
        if len(rest) < nv + nf:
            raise ValueError(f"{nv} vertices and {nf} faces announced, {len(rest)} lines follow")
        verts = np.array([[float(v) for v in rest[i].split()[:3]] for i in range(nv)], np.float64)
        faces = []
        for line in rest[nv:nv + nf]:
            idx = [int(v) for v in line.split()]
            k, idx = idx[0], idx[1:]
            if len(idx) < k:
                raise ValueError(f"face {line!r} has fewer than {k} indices")
            faces.extend([idx[0], idx[j], idx[j + 1]] for j in range(1, k - 1))  # fan triangulation
        faces = np.array(faces, np.int64).reshape(-1, 3)
        if faces.size and (faces.min() < 0 or faces.max() >= nv):
            raise ValueError("a face refers to a vertex that does not exist")
    except (ValueError, IndexError) as e:
        raise InvalidPointCloud(f"{path}: malformed OFF file ({e})") from None
    return verts.reshape(-1, 3), faces


def _sample_mesh(path: Path, verts: np.ndarray, faces: np.ndarray, count: int, seed: int) -> np.ndarray:
    if len(faces) == 0:
        return verts
    o3d = _open3d()
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(verts), o3d.utility.Vector3iVector(faces))
    try:
        o3d.utility.random.seed(seed)
    except AttributeError:  # pragma: no cover - open3d < 0.16
        pass
    return np.asarray(mesh.sample_points_uniformly(number_of_points=count).points)


def read_mesh(path: str | Path, count: int = MESH_POINTS, seed: int = 0) -> np.ndarray:
    """Points sampled uniformly on a mesh's surface, (count, 3) float32."""
    path = Path(path)
    if path.suffix.lower() == ".off":
        # parsed here: open3d's OFF reader misses ModelNet's headers and, on a malformed file,
        # returns uninitialised vertices instead of failing
        verts, faces = _read_off(path)
    else:
        o3d = _open3d()
        mesh = o3d.io.read_triangle_mesh(str(path))
        verts, faces = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
    if len(verts) == 0:
        raise InvalidPointCloud(f"{path}: no vertices could be read from the mesh")
    return validate(_sample_mesh(path, verts, faces, count, seed), str(path))


def read_point_cloud(path: str | Path) -> np.ndarray:
    """The points of a .ply/.pcd/.xyz/.pts file, (N, 3) float32."""
    path = Path(path)
    o3d = _open3d()
    pcd = o3d.io.read_point_cloud(str(path))
    pts = np.asarray(pcd.points)
    if len(pts) == 0 and path.suffix.lower() == ".ply":
        # a .ply holding a mesh with faces only read as vertices by read_triangle_mesh
        pts = np.asarray(o3d.io.read_triangle_mesh(str(path)).vertices)
    if len(pts) == 0:
        raise InvalidPointCloud(f"{path}: the point cloud is empty (or the file could not be read)")
    return validate(pts, str(path))


def _array_clouds(path: Path, arr: np.ndarray, labels=None, names=None, classes=None) -> list[Cloud]:
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
        single = True
    elif arr.ndim == 3:
        single = False
    else:
        raise InvalidPointCloud(f"{path}: expected points of shape (N, 3) or (B, N, 3), got {arr.shape}")
    if arr.shape[-1] != 3:
        raise InvalidPointCloud(f"{path}: expected points of shape (N, 3) or (B, N, 3), got {arr.shape}")
    if len(arr) == 0:
        raise InvalidPointCloud(f"{path}: no point clouds in the file")
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(arr):
            raise InvalidPointCloud(f"{path}: {len(labels)} labels for {len(arr)} clouds")
    out = []
    for i, pts in enumerate(arr):
        if single:
            name = str(path)
        else:
            name = f"{path}[{i}]" + (f" ({names[i]})" if names is not None and i < len(names) else "")
        label = int(labels[i]) if labels is not None else None
        label_name = str(classes[label]) if classes is not None and label is not None \
            and 0 <= label < len(classes) else None
        out.append(Cloud(name, validate(pts, name), label, label_name))
    return out


def read_array(path: str | Path) -> list[Cloud]:
    """The clouds of a .npy or .npz file."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            return _array_clouds(path, np.load(path, allow_pickle=False))
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            if "points" in z.files:
                pts = z["points"]
            elif len(keys) == 1:
                pts = z[keys[0]]
            else:
                raise InvalidPointCloud(f"{path}: no 'points' array (keys: {', '.join(keys) or 'none'})")
            labels = z["labels"] if "labels" in z.files else None
            names = [str(n) for n in z["names"]] if "names" in z.files else None
            classes = [str(c) for c in z["classes"]] if "classes" in z.files else None
            return _array_clouds(path, pts, labels, names, classes)
    except InvalidPointCloud:
        raise
    except (OSError, ValueError, EOFError) as e:
        raise InvalidPointCloud(f"{path}: cannot read the array file ({e})") from None


def _label_from_path(path: Path, classes: Sequence[str] | None) -> str | None:
    """ModelNet layout (<class>/<split>/<class>_0001.off): the nearest parent named like a class."""
    if not classes:
        return None
    known = set(classes)
    for parent in list(path.parents)[:3]:
        if parent.name in known:
            return parent.name
    stem = path.stem.rsplit("_", 1)[0]
    return stem if stem in known else None


def read_file(path: str | Path, mesh_points: int = MESH_POINTS, seed: int = 0,
              classes: Sequence[str] | None = None) -> list[Cloud]:
    """Every cloud of one file (one, or several for .npy/.npz batches)."""
    path = Path(path)
    if not path.exists():
        raise InvalidPointCloud(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in ARRAY_SUFFIXES:
        clouds = read_array(path)
    elif suffix in CLOUD_SUFFIXES:
        clouds = [Cloud(str(path), read_point_cloud(path))]
    elif suffix in MESH_SUFFIXES:
        clouds = [Cloud(str(path), read_mesh(path, mesh_points, seed))]
    else:
        raise InvalidPointCloud(f"{path}: unsupported file type {suffix or '(none)'} "
                                f"(supported: {' '.join(SUFFIXES)})")
    if classes:
        for c in clouds:
            if c.label is None:
                c.label_name = _label_from_path(path, classes)
            if c.label_name is not None and c.label_name in classes:
                c.label = list(classes).index(c.label_name)
    return clouds


def expand(inputs: Iterable[str | Path]) -> list[Path]:
    """Files named, and every supported file under folders named (sorted)."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(Path(root) / f for root, _, fs in os.walk(p) for f in fs
                           if Path(f).suffix.lower() in SUFFIXES)
            if not found:
                raise InvalidPointCloud(f"{p}: no point-cloud files in the folder")
            files.extend(found)
        else:
            files.append(p)
    return files


def iter_clouds(inputs: Iterable[str | Path], mesh_points: int = MESH_POINTS, seed: int = 0,
                classes: Sequence[str] | None = None) -> Iterator[Cloud]:
    """Clouds of files and folders, lazily, in order."""
    for f in expand(inputs):
        yield from read_file(f, mesh_points, seed, classes)


def read_clouds(inputs: Iterable[str | Path], mesh_points: int = MESH_POINTS, seed: int = 0,
                classes: Sequence[str] | None = None) -> list[Cloud]:
    """Every cloud of the inputs, read and validated up front (errors before anything is sent)."""
    return list(iter_clouds(inputs, mesh_points, seed, classes))
