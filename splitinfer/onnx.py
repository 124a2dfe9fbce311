"""One way to open an ONNX graph for inference: CPU, a fixed number of intra-op threads, quiet."""
from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def session(path: str | Path, threads: int = 1) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
