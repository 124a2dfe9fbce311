"""Bundled data: the sample clouds the demo and the tests use, and a few images."""
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent / "sample_modelnet40.npz"   # 3 ModelNet40 test clouds per class

# The datasets folder beside a checkout (``../shared/datasets``): the ``--data`` default of
# training and evaluation when it exists; a fresh clone has none and passes ``--data``.
DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
