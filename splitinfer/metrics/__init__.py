"""Rate and quality metrics (numpy only): Bjontegaard deltas and Pareto fronts (:mod:`.bd`),
PSNR and MS-SSIM of images (:mod:`.image_quality`). Prometheus counters are telemetry, not
metrics in this sense: ``cloud_server/telemetry.py``, ``splitinfer/sidecar/telemetry.py``."""
from .bd import (NoOverlapError, bd_accuracy, bd_rate, cubic_fit_monotone, interpolate_rate,
                 pareto_front)

__all__ = ["NoOverlapError", "bd_accuracy", "bd_rate", "cubic_fit_monotone", "interpolate_rate", "pareto_front"]
