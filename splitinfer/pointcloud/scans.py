"""A depth-sensor scan simulator: what a robot's depth camera or LiDAR returns of one object.

From a complete surface sample (ModelNet40's clouds, z up) it keeps what one viewpoint sees and
degrades it as sensors do:

1. visibility from a random viewpoint: hidden-point removal (Katz, Tal & Basri, SIGGRAPH 2007:
   spherical flipping + convex hull; scipy or open3d) or a spherical z-buffer (numpy only);
2. an optional crop: the camera's frustum aimed off-centre, or a half-space (occluder, table);
3. non-uniform density (sparser with depth and along a random direction) and random dropouts;
4. depth-dependent noise, mostly along the viewing ray (sigma grows with depth, up to depth
   squared as in structured-light and stereo sensors);
5. stray points: flying pixels between object and viewpoint, and uniform clutter in a box;
6. the sensor frame: rotation about the up axis, raw scale (millimetres to kilometres) and offset.

Everything is drawn from a seeded numpy generator, so a seed fixes an evaluation set. Parameters
come from ``ScanParams.random(rng)``, whose ranges are wide on purpose (a model trained on these
scans must hold on other sensors' scans, not only this simulator's).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

VISIBILITY = ("hpr", "zbuffer")
CROPS = ("none", "frustum", "halfspace")


def _convex_hull_vertices(points: np.ndarray) -> np.ndarray | None:
    """Indices of the convex hull's vertices, or None when neither scipy nor open3d is installed."""
    try:
        from scipy.spatial import ConvexHull
        return ConvexHull(points).vertices
    except ImportError:
        pass
    try:
        import open3d as o3d
        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
        _, idx = pcd.compute_convex_hull()
        return np.asarray(idx)
    except ImportError:
        return None


def hidden_point_removal(points: np.ndarray, camera: np.ndarray, radius_exp: float = 1.5) -> np.ndarray | None:
    """Mask of the points visible from ``camera`` (Katz et al. 2007): spherical flipping about the
    camera with radius ``max|p| * 10**radius_exp``, visible = on the hull of the flipped points and
    the camera. None when no convex-hull implementation is installed."""
    p = points.astype(np.float64) - camera
    norm = np.linalg.norm(p, axis=1, keepdims=True).clip(1e-12)
    R = norm.max() * 10.0 ** radius_exp
    flipped = p + 2 * (R - norm) * p / norm
    hull = _convex_hull_vertices(np.vstack([flipped, np.zeros((1, 3))]))
    if hull is None:
        return None
    mask = np.zeros(len(points), bool)
    mask[hull[hull < len(points)]] = True
    return mask


def zbuffer_visibility(points: np.ndarray, camera: np.ndarray, bins: int, tolerance: float) -> np.ndarray:
    """Mask of the points visible from ``camera`` on a spherical depth image of ``bins`` x ``bins``
    pixels over the object's angular extent: a point is visible when its depth is within
    ``tolerance`` (relative to the object's size) of the nearest depth in its pixel."""
    p = points.astype(np.float64) - camera
    depth = np.linalg.norm(p, axis=1)
    axis = -camera / np.linalg.norm(camera)  # optical axis: towards the object's centre
    up = np.array([0.0, 0.0, 1.0])
    right = np.cross(axis, up)
    right = right / np.linalg.norm(right) if np.linalg.norm(right) > 1e-9 else np.array([1.0, 0, 0])
    down = np.cross(axis, right)
    z = p @ axis
    u, v = np.arctan2(p @ right, z), np.arctan2(p @ down, z)
    span = max(np.ptp(u), np.ptp(v), 1e-9)
    iu = np.minimum(((u - u.min()) / span * bins).astype(int), bins - 1)
    iv = np.minimum(((v - v.min()) / span * bins).astype(int), bins - 1)
    pixel = iu * bins + iv
    nearest = np.full(bins * bins, np.inf)
    np.minimum.at(nearest, pixel, depth)
    # every point covers its 3x3 pixels (a splat), so a sparse sample still occludes what is behind
    grid = np.pad(nearest.reshape(bins, bins), 1, constant_values=np.inf)
    splat = np.min([grid[1 + du:1 + du + bins, 1 + dv:1 + dv + bins]
                    for du in (-1, 0, 1) for dv in (-1, 0, 1)], axis=0).ravel()
    size = np.ptp(points, axis=0).max()
    return depth <= splat[pixel] + tolerance * size


@dataclass
class ScanParams:
    """One scan's parameters; ``random(rng)`` draws them from wide ranges."""
    visibility: str = "hpr"        # "hpr" or "zbuffer"
    azimuth: float = 0.0           # viewpoint around the up axis (radians)
    elevation: float = 0.3         # viewpoint above the horizon (radians)
    distance: float = 3.0          # viewpoint distance in object radii
    hpr_radius_exp: float = 1.5    # HPR flipping radius, log10 of a multiple of the farthest point
    zbuffer_bins: int = 16         # z-buffer resolution over the object
    zbuffer_tolerance: float = 0.2
    crop: str = "none"             # "none", "frustum" or "halfspace"
    crop_keep: float = 0.7         # half-space: fraction of the visible points kept
    frustum_half_angle: float = 0.4  # radians, camera aimed off-centre by up to this much
    frustum_aim: tuple = (0.0, 0.0)  # aim offset (right, down) in object radii
    dropout: float = 0.1           # fraction of points lost at random
    density_gradient: float = 0.0  # 0: uniform; 1: keep-probability falls to 0 across the object
    density_direction: tuple = (1.0, 0.0, 0.0)
    depth_density: float = 0.0     # keep-probability falls with depth (0: off)
    noise: float = 0.005           # noise std at the object's mean depth, in object radii
    noise_depth_gain: float = 1.0  # std scales as (depth / mean depth) ** (2 * gain)
    noise_isotropic: float = 0.3   # fraction of the noise not along the ray
    flying_pixels: float = 0.0     # fraction of points pulled towards the camera (edge artefacts)
    outliers: float = 0.0          # fraction of uniform clutter points in 2x the bounding box
    yaw: float = 0.0               # rotation about the up axis (radians)
    scale: float = 1.0             # raw sensor scale
    offset: tuple = (0.0, 0.0, 0.0)  # sensor-frame offset, in units of ``scale``

    @classmethod
    def random(cls, rng: np.random.Generator, yaw: float = np.pi / 6, crop_p: float = 0.5) -> "ScanParams":
        """Wide ranges: any azimuth, elevation -10..60 degrees, 1.5..8 radii away, crops with
        probability ``crop_p``, noise 0..2% of the radius, 0..30% dropouts, 0..5% strays, yaw
        within +-``yaw``, scale 1e-2..1e4 (log-uniform), offsets up to 20 object sizes."""
        crop = str(rng.choice(["frustum", "halfspace"])) if rng.random() < crop_p else "none"
        direction = rng.normal(size=3)
        return cls(
            visibility=str(rng.choice(VISIBILITY)),
            azimuth=float(rng.uniform(0, 2 * np.pi)),
            elevation=float(rng.uniform(np.radians(-10), np.radians(60))),
            distance=float(np.exp(rng.uniform(np.log(1.5), np.log(8.0)))),
            hpr_radius_exp=float(rng.uniform(1.0, 2.0)),  # larger radii lose the hull's precision
            zbuffer_bins=int(rng.integers(12, 25)),
            zbuffer_tolerance=float(rng.uniform(0.12, 0.25)),
            crop=crop,
            crop_keep=float(rng.uniform(0.5, 0.9)),
            frustum_half_angle=float(rng.uniform(0.15, 0.5)),
            frustum_aim=tuple(float(v) for v in rng.uniform(-0.5, 0.5, 2)),
            dropout=float(rng.uniform(0.0, 0.3)),
            density_gradient=float(rng.uniform(0.0, 0.8) if rng.random() < 0.5 else 0.0),
            density_direction=tuple(float(v) for v in direction / np.linalg.norm(direction)),
            depth_density=float(rng.uniform(0.0, 0.8)),
            noise=float(rng.uniform(0.0, 0.02)),
            noise_depth_gain=float(rng.uniform(0.0, 1.0)),
            noise_isotropic=float(rng.uniform(0.1, 0.5)),
            flying_pixels=float(rng.uniform(0.0, 0.03)),
            outliers=float(rng.uniform(0.0, 0.05)),
            yaw=float(rng.uniform(-yaw, yaw)),
            scale=float(10.0 ** rng.uniform(-2, 4)),
            offset=tuple(float(v) for v in rng.uniform(-20, 20, 3)),
        )

    def to_dict(self) -> dict:
        return asdict(self)


def _camera(p: ScanParams) -> np.ndarray:
    ce = np.cos(p.elevation)
    return p.distance * np.array([ce * np.cos(p.azimuth), ce * np.sin(p.azimuth), np.sin(p.elevation)])


def _visible(points: np.ndarray, camera: np.ndarray, p: ScanParams) -> np.ndarray:
    if p.visibility == "hpr":
        mask = hidden_point_removal(points, camera, p.hpr_radius_exp)
        if mask is not None:
            return mask
    return zbuffer_visibility(points, camera, p.zbuffer_bins, p.zbuffer_tolerance)


def _crop(points: np.ndarray, camera: np.ndarray, p: ScanParams, rng: np.random.Generator) -> np.ndarray:
    """Mask of the points the crop keeps (never fewer than a quarter of them)."""
    if p.crop == "halfspace":
        normal = rng.normal(size=3)
        s = points @ (normal / np.linalg.norm(normal))
        return s <= np.quantile(s, p.crop_keep)
    if p.crop == "frustum":
        axis = -camera / np.linalg.norm(camera)
        right = np.cross(axis, [0.0, 0.0, 1.0])
        right = right / max(np.linalg.norm(right), 1e-9)
        down = np.cross(axis, right)
        target = p.frustum_aim[0] * right + p.frustum_aim[1] * down
        look = target - camera
        look = look / np.linalg.norm(look)
        rays = points - camera
        cos = rays @ look / np.linalg.norm(rays, axis=1)
        mask = cos >= np.cos(p.frustum_half_angle)
        if mask.sum() < len(points) // 4:  # keep the quarter nearest to the optical axis
            mask = cos >= np.quantile(cos, 0.75)
        return mask
    return np.ones(len(points), bool)


def simulate(points: np.ndarray, params: ScanParams, rng: np.random.Generator) -> np.ndarray:
    """A scan of the complete cloud ``points`` (N, 3), centred near the origin with radius about 1.
    Returns (M, 3) float64 in sensor units, M varying (at least 8 points of the object)."""
    p = params
    pts = np.asarray(points, np.float64)
    camera = _camera(p)
    keep = _visible(pts, camera, p)
    keep &= _crop(pts, camera, p, rng)
    depth = np.linalg.norm(pts - camera, axis=1)
    near, far = depth[keep].min() if keep.any() else depth.min(), depth.max()
    prob = np.full(len(pts), 1.0 - p.dropout)
    if p.depth_density:
        prob *= 1.0 - p.depth_density * (depth - near) / max(far - near, 1e-9)
    if p.density_gradient:
        s = pts @ np.asarray(p.density_direction)
        prob *= 1.0 - p.density_gradient * (s - s.min()) / max(np.ptp(s), 1e-9)
    sampled = keep & (rng.random(len(pts)) < prob)
    if sampled.sum() < 8:  # a scan of almost nothing: keep the visible points
        sampled = keep if keep.sum() >= 8 else np.argsort(depth) < 8
    obj = pts[sampled]
    rays = obj - camera
    d = np.linalg.norm(rays, axis=1, keepdims=True)
    unit = rays / d
    sigma = p.noise * (d / d.mean()) ** (2 * p.noise_depth_gain)
    along = rng.normal(size=(len(obj), 1)) * sigma * (1 - p.noise_isotropic)
    across = rng.normal(size=obj.shape) * sigma * p.noise_isotropic
    obj = obj + along * unit + across
    extra = []
    n_fly = int(round(p.flying_pixels * len(obj)))
    if n_fly:
        src = obj[rng.integers(0, len(obj), n_fly)]
        t = rng.uniform(0.05, 0.5, (n_fly, 1))
        extra.append(src + t * (camera - src))
    n_out = int(round(p.outliers * len(obj)))
    if n_out:
        lo, hi = obj.min(0), obj.max(0)
        mid, half = (lo + hi) / 2, (hi - lo).clip(1e-3)
        extra.append(mid + rng.uniform(-1, 1, (n_out, 3)) * half)
    scan = np.vstack([obj, *extra])
    scan = scan[rng.permutation(len(scan))]
    c, s = np.cos(p.yaw), np.sin(p.yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return (scan @ rot.T + np.asarray(p.offset)) * p.scale


def scan(points: np.ndarray, rng: np.random.Generator, **ranges) -> np.ndarray:
    """``simulate`` with parameters drawn by ``ScanParams.random(rng, **ranges)``."""
    return simulate(points, ScanParams.random(rng, **ranges), rng)


def scan_set(clouds: np.ndarray, seed: int = 0, **ranges) -> list[np.ndarray]:
    """The fixed evaluation set: one scan of every cloud, cloud i drawn from ``seed`` and ``i``
    alone (so a subset or a limit gives the same scans)."""
    return [scan(c, np.random.default_rng([seed, i]), **ranges) for i, c in enumerate(clouds)]
