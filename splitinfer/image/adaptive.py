"""Torch-free runtime of the adaptive entropy bottleneck (learned compression of encoding
distributions, Ulhaq & Bajić, ICIP 2024, arXiv:2406.13059; trained by :mod:`splitinfer.training.adaptive`).

Encoder: the hard histogram ``p`` (C x B, counts / n) of the image's ``y_hat`` on each channel's
B-bin window (``centres[c] - B/2 ..``), ``q = h_a_q(p)`` (integers), side information = ``q``
range-coded with the model's ``q_tables`` (:func:`~splitinfer.codec.encode_grid`, one row per q
channel). Both encoder and decoder then run ``p_hat = h_s_q(q)`` and build the same tables with
:func:`tables_from_p_hat`. The two graphs are tiny (about 2 M multiply-adds per image, whatever
its size) and always run on one onnxruntime thread.

Determinism: encoder and decoder feed the *same integer q* through the same ONNX graph; to make
the tables insensitive to the last bits of float arithmetic, ``log2 p_hat`` is rounded to a grid
of ``log2_grid`` (1/32) bits before :meth:`CdfTables.from_pmfs` (exact float64 arithmetic on
powers of two from there on), every bin keeps a floor (>= 2^-16 in p_hat, >= 1 frequency unit in
the table) and the escape entry keeps ``escape_mass`` (2^-14) for values outside the window, so
every int32 symbol stays codable. The residual risk (an ONNX output within float rounding of a
grid boundary on a *different* CPU or onnxruntime build) is bounded by the grid: on one runtime
build the graph is deterministic.
"""
from __future__ import annotations

import numpy as np
from onnxruntime import InferenceSession

from ..codec import BitstreamError, CdfTables, CorruptPayload, decode_grid, encode_grid
from ..onnx import session

__all__ = ["AdaptiveDistributions", "histogram", "tables_from_p_hat"]

#: |q| beyond this is no q the encoder can produce from a probability histogram.
MAX_ABS_Q = 1 << 15


def histogram(flat: np.ndarray, low: np.ndarray, bins: int) -> np.ndarray:
    """Hard counts (C, B) int64 of ``flat`` (C, n) on the windows ``low[c] .. low[c] + B - 1``;
    values outside a window are not counted."""
    flat = np.asarray(flat, np.int64)
    C = flat.shape[0]
    idx = flat - np.asarray(low, np.int64)[:, None]
    inside = (idx >= 0) & (idx < bins)
    rows = np.broadcast_to(np.arange(C)[:, None] * bins, idx.shape)
    counts = np.bincount((rows + idx)[inside], minlength=C * bins)
    return counts.reshape(C, bins)


def tables_from_p_hat(p_hat: np.ndarray, low: np.ndarray, log2_grid: float = 1 / 32,
                      escape_mass: float = 2.0 ** -14, precision: int = 16,
                      min_log2: float = -30.0) -> CdfTables:
    """Deterministic CdfTables (in-range symbols ``low[c] .. low[c] + B - 1`` plus escape) from
    p_hat (C, B): log2 p_hat rounded to ``log2_grid``, renormalised, ``escape_mass`` reserved."""
    p = np.asarray(p_hat, np.float64)
    if p.ndim != 2 or not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise ValueError("p_hat must be a finite positive (C, B) array")
    r = np.clip(np.round(np.log2(p) / log2_grid) * log2_grid, min_log2, 0.0)
    q = np.exp2(r)
    q = q / q.sum(axis=1, keepdims=True) * (1.0 - escape_mass)
    tails = np.full(p.shape[0], escape_mass)
    return CdfTables.from_pmfs(np.asarray(low, np.int64), list(q), tails, precision=precision)


class AdaptiveDistributions:
    """Per-image encoding distributions for one image codec (its config's ``adaptive`` section
    and files ``h_a_q``, ``h_s_q``, ``q_tables``)."""

    def __init__(self, config, static_tables: CdfTables | None = None, threads: int = 1):
        self.config = config
        self.threads = threads
        self.static_tables = static_tables
        a = config.raw["adaptive"]
        self.bins = int(a["bins"])
        self.centres = np.asarray(a["centres"], np.int64)
        self.low = self.centres - self.bins // 2
        self.q_channels = int(a["q_channels"])
        self.q_length = int(a["q_length"])
        self.log2_grid = float(a.get("log2_grid", 1 / 32))
        self.escape_mass = float(a.get("escape_mass", 2.0 ** -14))
        self.precision = int(a.get("precision", 16))
        self.q_tables = CdfTables.load(config.file("q_tables"))
        if self.q_tables.channels != self.q_channels:
            raise ValueError(f"q_tables has {self.q_tables.channels} channels, config says "
                             f"{self.q_channels}")
        self._h_a: InferenceSession | None = None
        self._h_s: InferenceSession | None = None

    @property
    def channels(self) -> int:
        return int(self.centres.size)

    # -- the two transforms ----------------------------------------------------------------------
    def histogram(self, flat: np.ndarray) -> np.ndarray:
        """Hard counts (C, B) of y_hat (C, n) on the bin windows."""
        return histogram(flat, self.low, self.bins)

    def analysis(self, flat: np.ndarray) -> np.ndarray:
        """y_hat (C, n) -> q (Cq, L) int32."""
        flat = np.asarray(flat)
        p = self.histogram(flat).astype(np.float32) / np.float32(flat.shape[1])
        if self._h_a is None:
            self._h_a = session(self.config.file("h_a_q"), 1)
        return self._h_a.run(None, {"p": p[None]})[0][0].astype(np.int32)

    def p_hat(self, q: np.ndarray) -> np.ndarray:
        """q (Cq, L) integers -> p_hat (C, B) float32."""
        if self._h_s is None:  # one thread always: tiny, and the same arithmetic on both sides
            self._h_s = session(self.config.file("h_s_q"), 1)
        x = np.asarray(q, np.float32).reshape(1, self.q_channels, self.q_length)
        return self._h_s.run(None, {"q_hat": x})[0][0]

    def tables(self, q: np.ndarray) -> CdfTables:
        """The CdfTables that code y_hat, from the integer side information q."""
        return tables_from_p_hat(self.p_hat(q), self.low, self.log2_grid, self.escape_mass,
                                 self.precision)

    # -- what ImageCodec uses --------------------------------------------------------------------
    def side_information(self, flat: np.ndarray) -> tuple[bytes, CdfTables]:
        """y_hat (C, n) int -> (side information bytes, the CdfTables to code y_hat with)."""
        flat = np.asarray(flat)
        if flat.ndim != 2 or flat.shape[0] != self.channels or flat.shape[1] < 1:
            raise ValueError(f"expected y_hat of shape ({self.channels}, n), got {flat.shape}")
        q = self.analysis(flat)
        return encode_grid(q, self.q_tables), self.tables(q)

    def decode_q(self, side: bytes) -> np.ndarray:
        """Side information bytes -> q (Cq, L) int32; CorruptPayload when malformed."""
        if isinstance(side, str) or not isinstance(side, (bytes, bytearray, memoryview)):
            raise CorruptPayload(f"side information must be bytes, got {type(side).__name__}")
        q = decode_grid(bytes(side), self.q_tables, self.q_length)
        if np.abs(q.astype(np.int64)).max(initial=0) > MAX_ABS_Q:
            raise CorruptPayload(f"side information decodes to |q| = "
                                 f"{np.abs(q.astype(np.int64)).max()} > {MAX_ABS_Q}")
        return q

    def tables_from_side_information(self, side: bytes) -> CdfTables:
        """Side information bytes -> the CdfTables that code y_hat (the decoder's half).
        Raises :class:`CorruptPayload` (never another exception) on malformed side information."""
        try:
            return self.tables(self.decode_q(side))
        except BitstreamError:
            raise
        except (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError):
            raise
        except Exception as e:  # noqa: BLE001 - ONNX or table errors on nonsense q
            raise CorruptPayload(f"side information does not give valid tables: "
                                 f"{type(e).__name__}: {e}") from e
