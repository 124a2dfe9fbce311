"""One way to open an ONNX graph for inference: CPU, a fixed number of intra-op threads, quiet.
A graph onnxruntime refuses raises ``ModelError`` naming the file and the fix."""
from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from .errors import ModelError


def session(path: str | Path, threads: int = 1) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own Fail / InvalidGraph / NoSuchFile ... types
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "external" in str(e).lower():
            fix = ("the graph keeps its weights in an external data file onnxruntime refuses "
                   "(missing, or outside the model folder): save it with the weights inside "
                   "(onnx.save(model, path, save_as_external_data=False)) and export the model "
                   "again")
        else:
            fix = "restore the model's files or export the model again"
        raise ModelError(path, f"onnxruntime cannot load this graph ({type(e).__name__}: "
                               f"{why[:300]}); {fix}") from None
