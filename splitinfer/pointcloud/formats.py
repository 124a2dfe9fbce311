"""Point-cloud and mesh file formats read with numpy alone (no open3d).

- ``.pcd`` (PCL): ``DATA ascii``, ``binary`` and ``binary_compressed`` (LZF, :mod:`.lzf`); any
  field layout (``SIZE`` 1/2/4/8, ``TYPE`` F/I/U, ``COUNT``); the x, y, z fields are returned.
- ``.ply``: ``ascii``, ``binary_little_endian``, ``binary_big_endian``; the ``vertex`` element's
  x, y, z (any scalar type); elements before it (with list properties too) are skipped.
- text (``.xyz .xyzn .xyzrgb .txt .pts .asc``): one point per line, the first three numbers
  (spaces or commas); ``#`` and ``//`` comments; a first line holding one integer (the count in
  many .pts files) is skipped.
- raw float32 records (``.bin``, KITTI Velodyne scans): ``fields`` names each record's values,
  e.g. ``xyzi`` (KITTI, the default) or ``xyz``; every field is a float32.
- meshes: ``.off`` (also ModelNet's ``OFF<n> <m> <k>`` headers) and ``.obj`` (``v`` and ``f``
  lines), as (vertices, triangles).

Every malformed file raises :class:`~.preprocess.InvalidPointCloud` naming the file and what is
wrong with it.
"""
from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np

from . import lzf
from .preprocess import InvalidPointCloud

__all__ = ["read_bin", "read_obj", "read_off", "read_pcd", "read_ply", "read_text"]

MAX_HEADER = 1 << 16  # bytes of a .pcd/.ply header we read before giving up on finding its end


def _bad(path, what: str) -> InvalidPointCloud:
    return InvalidPointCloud(f"{path}: {what}")


def _header(path: Path, data: bytes, end_marker: bytes, kind: str) -> tuple[list[str], int]:
    """The header lines up to and including the one starting with ``end_marker``, and the
    offset of the data after it."""
    pos = 0
    lines = []
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            if pos >= len(data) or pos > MAX_HEADER:
                raise _bad(path, f"malformed {kind} header (no line starting with "
                                 f"{end_marker.decode()!r})")
            nl = len(data)
        line = data[pos:nl].decode("ascii", errors="replace").strip()
        lines.append(line)
        pos = nl + 1
        if line.split(" ", 1)[0].encode() == end_marker:
            return lines, min(pos, len(data))
        if pos > MAX_HEADER:
            raise _bad(path, f"malformed {kind} header (no {end_marker.decode()!r} line in the "
                             f"first {MAX_HEADER} bytes)")


# ---------------------------------------------------------------------------- PCD

_PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4",
              ("I", 8): "i8", ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8",
              ("F", 2): "f2"}


def read_pcd(path: str | Path) -> np.ndarray:
    """x, y, z of a PCL .pcd file (ascii, binary or binary_compressed), (N, 3) float64."""
    path = Path(path)
    data = path.read_bytes()
    lines, offset = _header(path, data, b"DATA", "PCD")
    head: dict[str, list[str]] = {}
    for line in lines:
        if not line or line.startswith("#"):
            continue
        key, *vals = line.split()
        head[key.upper()] = vals
    try:
        fields = head["FIELDS"]
        sizes = [int(v) for v in head["SIZE"]]
        types = [v.upper() for v in head["TYPE"]]
        counts = [int(v) for v in head.get("COUNT", ["1"] * len(fields))]
        width = int(head["WIDTH"][0])
        height = int(head.get("HEIGHT", ["1"])[0])
        points = int(head["POINTS"][0]) if "POINTS" in head else width * height
        mode = head["DATA"][0].lower()
    except (KeyError, IndexError, ValueError) as e:
        raise _bad(path, f"malformed PCD header ({type(e).__name__}: {e})") from None
    if not (len(fields) == len(sizes) == len(types) == len(counts)):
        raise _bad(path, f"malformed PCD header: {len(fields)} FIELDS, {len(sizes)} SIZE, "
                         f"{len(types)} TYPE, {len(counts)} COUNT entries")
    missing = [a for a in "xyz" if a not in fields]
    if missing:
        raise _bad(path, f"no {', '.join(missing)} field in the PCD file (fields: {' '.join(fields)})")
    if points < 0 or min(counts, default=1) < 1:
        raise _bad(path, "malformed PCD header (negative POINTS or COUNT < 1)")
    try:
        dtypes = [np.dtype(_PCD_TYPES[(t, s)]) for t, s in zip(types, sizes)]
    except KeyError:
        raise _bad(path, f"unsupported PCD field types {list(zip(types, sizes))}") from None
    cols = {f: i for i, f in enumerate(fields)}
    if mode == "ascii":
        per = sum(counts)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an empty body: the count check below says it
                table = np.loadtxt(io.BytesIO(data[offset:]), dtype=np.float64, comments="#",
                                   ndmin=2, max_rows=points)
        except ValueError as e:
            raise _bad(path, f"malformed PCD ascii data ({e})") from None
        if len(table) < points:
            raise _bad(path, f"the file ends after {len(table)} of {points} points")
        if table.shape[1] != per:
            raise _bad(path, f"malformed PCD ascii data ({table.shape[1]} values per point, "
                             f"{per} expected)")
        starts = np.cumsum([0] + counts)[:-1]
        return table[:, [starts[cols[a]] for a in "xyz"]].reshape(-1, 3)
    record = np.dtype([(f"f{i}", dt, (c,)) for i, (dt, c) in enumerate(zip(dtypes, counts))])
    need = points * record.itemsize
    if mode == "binary":
        body = data[offset:offset + need]
        if len(body) < need:
            raise _bad(path, f"binary PCD data has {len(body)} bytes, {need} needed for {points} points")
        table = np.frombuffer(body, dtype=record.newbyteorder("<"), count=points)
        return np.stack([table[f"f{cols[a]}"][:, 0].astype(np.float64) for a in "xyz"], axis=1)
    if mode == "binary_compressed":
        if len(data) < offset + 8:
            raise _bad(path, "binary_compressed PCD data ends inside its size header")
        csize, usize = np.frombuffer(data, "<u4", 2, offset).tolist()
        if usize != need:
            raise _bad(path, f"binary_compressed PCD announces {usize} bytes, {need} needed for "
                             f"{points} points")
        comp = data[offset + 8:offset + 8 + csize]
        if len(comp) < csize:
            raise _bad(path, f"binary_compressed PCD data has {len(comp)} of {csize} bytes")
        try:
            raw = lzf.decompress(comp, usize) if usize else b""
        except lzf.LzfError as e:
            raise _bad(path, f"corrupt binary_compressed PCD data ({e})") from None
        out = []
        pos = 0
        for i, (dt, c) in enumerate(zip(dtypes, counts)):  # field-major: all of field 0, ...
            n = points * c * dt.itemsize
            if fields[i] in ("x", "y", "z"):
                col = np.frombuffer(raw, dt.newbyteorder("<"), points * c, pos).reshape(points, c)
                out.append((fields[i], col[:, 0]))
            pos += n
        got = dict(out)
        return np.stack([got[a].astype(np.float64) for a in "xyz"], axis=1)
    raise _bad(path, f"unsupported PCD DATA {mode!r} (ascii, binary, binary_compressed)")


# ---------------------------------------------------------------------------- PLY

_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2",
              "int16": "i2", "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4",
              "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4", "double": "f8",
              "float64": "f8"}


def _ply_type(path, name: str) -> str:
    try:
        return _PLY_TYPES[name]
    except KeyError:
        raise _bad(path, f"malformed PLY header (unknown property type {name!r})") from None


def read_ply(path: str | Path) -> np.ndarray:
    """x, y, z of a .ply file's vertices (ascii or binary, either byte order), (N, 3) float64."""
    path = Path(path)
    data = path.read_bytes()
    if not data.startswith(b"ply"):
        raise _bad(path, "not a PLY file (it does not start with 'ply')")
    lines, offset = _header(path, data, b"end_header", "PLY")
    fmt = None
    elements: list[tuple[str, int, list]] = []  # (name, count, [(prop, dtype | (count_t, item_t))])
    try:
        for line in lines[1:]:
            tok = line.split()
            if not tok or tok[0] in ("comment", "obj_info", "end_header"):
                continue
            if tok[0] == "format":
                fmt = tok[1]
            elif tok[0] == "element":
                elements.append((tok[1], int(tok[2]), []))
            elif tok[0] == "property":
                if not elements:
                    raise ValueError("a property before any element")
                if tok[1] == "list":
                    elements[-1][2].append((tok[4], (_ply_type(path, tok[2]), _ply_type(path, tok[3]))))
                else:
                    elements[-1][2].append((tok[2], _ply_type(path, tok[1])))
            else:
                raise ValueError(f"unexpected line {line!r}")
    except (IndexError, ValueError) as e:
        raise _bad(path, f"malformed PLY header ({e})") from None
    order = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
    if fmt not in order:
        raise _bad(path, f"unsupported PLY format {fmt!r} (ascii, binary_little_endian, "
                         "binary_big_endian)")
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise _bad(path, "no 'vertex' element in the PLY file")
    vertex = elements[names.index("vertex")]
    props = [p for p, _ in vertex[2]]
    missing = [a for a in "xyz" if a not in props]
    if missing:
        raise _bad(path, f"the PLY vertices have no {', '.join(missing)} property "
                         f"(properties: {' '.join(props)})")
    if any(c < 0 for _, c, _ in elements):
        raise _bad(path, "malformed PLY header (a negative element count)")
    if fmt == "ascii":
        return _ply_ascii(path, data[offset:], elements, names.index("vertex"))
    return _ply_binary(path, data, offset, order[fmt], elements, names.index("vertex"))


def _ply_ascii(path, body: bytes, elements, vi: int) -> np.ndarray:
    rows = body.decode("ascii", errors="replace").splitlines()
    rows = [r for r in rows if r.strip()]
    skip = sum(c for _, c, _ in elements[:vi])
    name, count, props = elements[vi]
    if len(rows) < skip + count:
        raise _bad(path, f"the file ends after {max(0, len(rows) - skip)} of {count} vertices")
    if any(isinstance(t, tuple) for _, t in props):
        toks = []
        for r in rows[skip:skip + count]:  # walk lists value by value
            vals, out, k = r.split(), [], 0
            for _, t in props:
                if isinstance(t, tuple):
                    k += 1 + int(vals[k])
                    out.append(0.0)
                else:
                    out.append(vals[k])
                    k += 1
            toks.append(out)
    else:
        toks = [r.split()[:len(props)] for r in rows[skip:skip + count]]
    try:
        table = np.array(toks, dtype=np.float64)
    except (ValueError, IndexError) as e:
        raise _bad(path, f"malformed PLY ascii vertex data ({e})") from None
    if table.ndim != 2 or table.shape[1] != len(props):
        raise _bad(path, f"malformed PLY ascii vertex data (expected {len(props)} values per vertex)")
    idx = [p for p, _ in props]
    return table[:, [idx.index(a) for a in "xyz"]].reshape(-1, 3)


def _ply_binary(path, data: bytes, pos: int, bo: str, elements, vi: int) -> np.ndarray:
    def need(n):
        if pos + n > len(data):
            raise _bad(path, "the PLY file ends inside its binary data")

    for name, count, props in elements[:vi + 1]:
        if any(isinstance(t, tuple) for _, t in props):
            if name == "vertex":
                raise _bad(path, "PLY vertices with list properties are not supported")
            for _ in range(count):  # skip element by element
                for _, t in props:
                    if isinstance(t, tuple):
                        ct, it = np.dtype(bo + t[0]), np.dtype(bo + t[1])
                        need(ct.itemsize)
                        n = int(np.frombuffer(data, ct, 1, pos)[0])
                        pos += ct.itemsize + n * it.itemsize
                    else:
                        pos += np.dtype(t).itemsize
                need(0)
            continue
        record = np.dtype([(p, bo + t) for p, t in props])
        if name != "vertex":
            pos += count * record.itemsize
            need(0)
            continue
        need(count * record.itemsize)
        table = np.frombuffer(data, record, count, pos)
        return np.stack([table[a].astype(np.float64) for a in "xyz"], axis=1)
    raise AssertionError("unreachable")  # pragma: no cover


# ---------------------------------------------------------------------------- text, raw


_COMMENT = re.compile(r"(#|//).*")


def read_text(path: str | Path) -> np.ndarray:
    """The first three numbers of each line of a text cloud (.xyz .txt .pts ...), (N, 3)."""
    path = Path(path)
    try:
        text = path.read_text(errors="strict")
    except UnicodeDecodeError:
        raise _bad(path, "not a text point-cloud file (it is not valid UTF-8/ASCII text)") from None
    body = text.replace(",", " ") if "," in text else text
    skip = 0
    for i, ln in enumerate(io.StringIO(body)):  # a leading point count (.pts): skip that line
        ln = _COMMENT.sub("", ln).strip()
        if ln:
            skip = i + 1 if ln.isdigit() else 0
            break
    try:  # fast path (numpy's C parser); the loop below finds and names what is wrong
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = np.loadtxt(io.StringIO(body), dtype=np.float64,
                               comments=("#", "//") if "//" in body else "#",
                               usecols=(0, 1, 2), ndmin=2, skiprows=skip)
        if len(table):
            return table
    except (ValueError, IndexError):
        pass
    rows = []
    for i, line in enumerate(text.splitlines()):
        tok = _COMMENT.sub("", line).replace(",", " ").split()
        if not tok:
            continue
        if not rows and len(tok) == 1 and tok[0].isdigit():
            continue  # a leading point count (.pts)
        if len(tok) < 3:
            raise _bad(path, f"line {i + 1} has {len(tok)} values, at least 3 (x y z) needed")
        rows.append(tok[:3])
    if not rows:
        raise _bad(path, "no points in the file")
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError as e:
        raise _bad(path, f"a value is not a number ({e})") from None


def read_bin(path: str | Path, fields: str = "xyzi") -> np.ndarray:
    """x, y, z of a raw float32 record file (KITTI Velodyne ``.bin``: ``fields='xyzi'``)."""
    path = Path(path)
    fields = str(fields).lower()
    if len(set(fields)) != len(fields) or not set("xyz") <= set(fields):
        raise ValueError(f"fields {fields!r} must name x, y and z once each (e.g. xyzi, xyz)")
    size = path.stat().st_size
    rec = 4 * len(fields)
    if size % rec:
        raise _bad(path, f"{size} bytes is not a whole number of {len(fields)}-float32 records "
                         f"(fields {fields!r}; set --fields to the file's layout)")
    table = np.fromfile(path, dtype="<f4").reshape(-1, len(fields))
    return table[:, [fields.index(a) for a in "xyz"]].astype(np.float64)


# ---------------------------------------------------------------------------- meshes


def _faces(path, polys: list[list[int]], nv: int, kind: str) -> np.ndarray:
    tris = [[p[0], p[j], p[j + 1]] for p in polys for j in range(1, len(p) - 1)]  # fan
    faces = np.array(tris, np.int64).reshape(-1, 3)
    if faces.size and (faces.min() < 0 or faces.max() >= nv):
        raise _bad(path, f"malformed {kind} file (a face refers to a vertex that does not exist)")
    return faces


def read_off(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, triangles) of an OFF file, including ModelNet's 'OFF490 518 0' headers."""
    path = Path(path)
    lines = [t.split("#")[0].strip() for t in path.read_text(errors="replace").split("\n")]
    lines = [t for t in lines if t]
    if not lines or not lines[0].upper().startswith("OFF"):
        raise _bad(path, "not an OFF file")
    head = lines[0][3:].split()
    rest = lines[1:]
    try:
        if not head:
            head, rest = rest[0].split(), rest[1:]
        nv, nf = int(head[0]), int(head[1])
        if nv < 0 or nf < 0 or len(rest) < nv + nf:
            raise ValueError(f"{nv} vertices and {nf} faces announced, {len(rest)} lines follow")
        verts = np.array([[float(v) for v in rest[i].split()[:3]] for i in range(nv)], np.float64)
        polys = []
        for line in rest[nv:nv + nf]:
            idx = [int(v) for v in line.split()]
            k, idx = idx[0], idx[1:]
            if len(idx) < k:
                raise ValueError(f"face {line!r} has fewer than {k} indices")
            polys.append(idx[:k])
    except (ValueError, IndexError) as e:
        raise _bad(path, f"malformed OFF file ({e})") from None
    verts = verts.reshape(-1, 3)
    return verts, _faces(path, polys, len(verts), "OFF")


def read_obj(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, triangles) of a Wavefront .obj file (``v`` and ``f`` lines; 1-based or
    negative indices; ``v/vt/vn`` face entries)."""
    path = Path(path)
    verts, polys = [], []
    try:
        for line in path.read_text(errors="replace").splitlines():
            tok = line.split("#")[0].split()
            if not tok:
                continue
            if tok[0] == "v":
                verts.append([float(v) for v in tok[1:4]])
                if len(verts[-1]) != 3:
                    raise ValueError(f"vertex line {line!r} has fewer than 3 coordinates")
            elif tok[0] == "f":
                idx = [int(t.split("/")[0]) for t in tok[1:]]
                polys.append([i - 1 if i > 0 else len(verts) + i for i in idx])
    except ValueError as e:
        raise _bad(path, f"malformed OBJ file ({e})") from None
    v = np.array(verts, np.float64).reshape(-1, 3)
    return v, _faces(path, polys, len(v), "OBJ")
