"""Reading point clouds for the edge: point-cloud files, meshes, numpy arrays and folders.

numpy alone reads every format the edge needs (:mod:`.formats`), so the edge installs where
open3d has no wheel (Linux aarch64, Python 3.13):

- clouds: ``.pcd`` (ascii, binary, binary_compressed), ``.ply`` (ascii, binary either byte
  order), text (``.xyz .xyzn .xyzrgb .pts .txt .asc``), raw float32 records (``.bin``: KITTI
  Velodyne scans; ``fields`` names the record, default ``xyzi``);
- meshes: ``.off`` (also ModelNet's ``OFF<n> <m> <k>`` headers) and ``.obj``, sampled uniformly
  on their surface (area-weighted, numpy, seeded: the same mesh gives the same cloud on every
  machine); a mesh without faces gives its vertices. ``.stl .gltf .glb`` are read with open3d
  where it is installed (``pip install 'splitinfer[viz]'``), then sampled the same way;
- ``.npy``: an (N, 3) cloud or a (B, N, 3) batch; ``.npz``: ``points`` as (N, P0, 3) or (P0, 3),
  optional ``labels`` (class indices), ``names`` and ``classes``;
- a folder: every file under it with one of :data:`FOLDER_SUFFIXES`, sorted, recursively (.txt
  files only when named: folders hold notes and label lists as .txt).

Every error (unreadable, malformed, empty, NaN, wrong shape) is an ``InvalidPointCloud`` that
names the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from . import formats
from .preprocess import InvalidPointCloud, sensor_frame, validate

TEXT_SUFFIXES = (".xyz", ".xyzn", ".xyzrgb", ".pts", ".txt", ".asc")
CLOUD_SUFFIXES = (".ply", ".pcd", ".bin") + TEXT_SUFFIXES
MESH_SUFFIXES = (".off", ".obj")
OPEN3D_MESH_SUFFIXES = (".stl", ".gltf", ".glb")
ARRAY_SUFFIXES = (".npy", ".npz")
SUFFIXES = CLOUD_SUFFIXES + MESH_SUFFIXES + OPEN3D_MESH_SUFFIXES + ARRAY_SUFFIXES
FOLDER_SUFFIXES = tuple(s for s in SUFFIXES if s != ".txt")
MESH_POINTS = 2048  # points sampled from a mesh surface (the edge then samples P of them)
BIN_FIELDS = "xyzi"  # KITTI Velodyne: x, y, z, reflectance as float32


@dataclass
class Cloud:
    """One input cloud: where it came from, its raw (N, 3) float32 points, its label if known."""
    name: str
    points: np.ndarray
    label: int | None = None
    label_name: str | None = None


def _open3d(path: Path):
    try:
        import open3d as o3d
        import open3d.io  # noqa: F401
    except ImportError as e:
        raise InvalidPointCloud(
            f"{path}: reading {path.suffix} files needs open3d ({e}): pip install "
            f"'splitinfer[viz]' where open3d has wheels, or convert the mesh to .off/.obj/.ply"
        ) from None
    try:
        o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    except Exception:  # pragma: no cover
        pass
    return o3d


def sample_surface(verts: np.ndarray, faces: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` points uniformly distributed on a triangle mesh's surface (area-weighted
    triangle choice, uniform barycentric coordinates), reproducible for a seed."""
    v = np.asarray(verts, np.float64)
    tri = v[np.asarray(faces, np.int64)]  # (F, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    total = area.sum()
    if not np.isfinite(total) or total <= 0:
        return v  # degenerate faces: the vertices are the surface we have
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(tri), size=count, p=area / total)
    u, w = rng.random(count), rng.random(count)
    flip = u + w > 1
    u[flip], w[flip] = 1 - u[flip], 1 - w[flip]
    t = tri[pick]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + w[:, None] * (t[:, 2] - t[:, 0])


def read_mesh(path: str | Path, count: int = MESH_POINTS, seed: int = 0) -> np.ndarray:
    """Points sampled uniformly on a mesh's surface, (count, 3) float32."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".off":
        verts, faces = formats.read_off(path)
    elif suffix == ".obj":
        verts, faces = formats.read_obj(path)
    else:
        o3d = _open3d(path)
        mesh = o3d.io.read_triangle_mesh(str(path))
        verts, faces = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
    if len(verts) == 0:
        raise InvalidPointCloud(f"{path}: no vertices could be read from the mesh")
    validate(verts, str(path))  # finite vertices, or a clear error
    verts = np.asarray(verts, np.float64)
    pts = sample_surface(verts, faces, count, seed) if len(faces) else verts
    return validate(pts, str(path))


def read_point_cloud(path: str | Path, fields: str = BIN_FIELDS) -> np.ndarray:
    """The points of a .ply/.pcd/.bin/text file, (N, 3) float32."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".pcd":
            pts = formats.read_pcd(path)
        elif suffix == ".ply":
            pts = formats.read_ply(path)
        elif suffix == ".bin":
            pts = formats.read_bin(path, fields)
        else:
            pts = formats.read_text(path)
    except OSError as e:
        raise InvalidPointCloud(f"{path}: cannot read the file ({e.strerror or e})") from None
    if len(pts) == 0:
        raise InvalidPointCloud(f"{path}: the point cloud is empty")
    return sensor_frame(pts, str(path), min_points=1)   # NaN holes kept: the edge drops and counts them


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
        out.append(Cloud(name, sensor_frame(pts, name, min_points=1), label, label_name))
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
              classes: Sequence[str] | None = None, fields: str = BIN_FIELDS) -> list[Cloud]:
    """Every cloud of one file (one, or several for .npy/.npz batches); ``fields``: the float32
    record layout of .bin files (e.g. ``xyzi``)."""
    path = Path(path)
    if not path.exists():
        raise InvalidPointCloud(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in ARRAY_SUFFIXES:
        clouds = read_array(path)
    elif suffix in CLOUD_SUFFIXES:
        clouds = [Cloud(str(path), read_point_cloud(path, fields))]
    elif suffix in MESH_SUFFIXES + OPEN3D_MESH_SUFFIXES:
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
                           if Path(f).suffix.lower() in FOLDER_SUFFIXES)
            if not found:
                raise InvalidPointCloud(f"{p}: no point-cloud files in the folder")
            files.extend(found)
        else:
            files.append(p)
    return files


def iter_clouds(inputs: Iterable[str | Path], mesh_points: int = MESH_POINTS, seed: int = 0,
                classes: Sequence[str] | None = None, fields: str = BIN_FIELDS) -> Iterator[Cloud]:
    """Clouds of files and folders, lazily, in order."""
    for f in expand(inputs):
        yield from read_file(f, mesh_points, seed, classes, fields)


def read_clouds(inputs: Iterable[str | Path], mesh_points: int = MESH_POINTS, seed: int = 0,
                classes: Sequence[str] | None = None, fields: str = BIN_FIELDS) -> list[Cloud]:
    """Every cloud of the inputs, read and validated up front (errors before anything is sent)."""
    return list(iter_clouds(inputs, mesh_points, seed, classes, fields))
