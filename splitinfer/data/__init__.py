"""Bundled data: the sample clouds the demo and the tests use, and a few images."""
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent / "sample_modelnet40.npz"   # 3 ModelNet40 test clouds per class
