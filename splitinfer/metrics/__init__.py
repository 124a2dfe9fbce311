"""Rate-quality metrics (numpy only)."""
from .bd import (NoOverlapError, bd_accuracy, bd_rate, cubic_fit_monotone, interpolate_rate,
                 pareto_front)

__all__ = ["NoOverlapError", "bd_accuracy", "bd_rate", "cubic_fit_monotone", "interpolate_rate", "pareto_front"]
