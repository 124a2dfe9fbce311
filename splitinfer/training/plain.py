"""The plain PointNet of the input-compression baselines (no T-nets, no quantization, no rate):
ONNX export with its provenance next to it (``<onnx>.json``: what it is, its input, the training
run's epochs, best validation accuracy and wall time).

    python -m splitinfer.training.plain CHECKPOINT OUT.onnx TRUNK_CHECKPOINT
(``scripts/run_draco_baseline.sh`` step 2)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..repository import sha256


def export_plain_with_provenance(checkpoint: str | Path, onnx_path: str | Path,
                                 trunk: str | Path) -> dict:
    """Export ``checkpoint`` (a ``train pointcloud --plain`` run on the frozen trunk of ``trunk``)
    to ``onnx_path`` and write its provenance to ``onnx_path`` with suffix .json; returns it."""
    import torch
    from .export import export_plain
    path = export_plain(checkpoint, onnx_path)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    log = [json.loads(line) for line in open(Path(checkpoint).parent / "log.jsonl")]
    best = min(log, key=lambda r: r["val_loss"])
    meta = {"name": path.stem, "file": path.name, "sha256": sha256(path),
            "what": "plain PointNet (no T-nets): the frozen encoder trunk of " + str(trunk)
                    + " (pointwise convs, max pool, gain) and the codec's classifier head retrained "
                      "on unquantized features (no entropy model, no rate term)",
            "input": "points float32 (B, N, 3), preprocessed (unit sphere); output logits (B, 40)",
            "size": state["config"]["size"], "points": state["config"]["points"],
            "training": {"epochs_run": log[-1]["epoch"], "best_epoch": best["epoch"],
                         "val_accuracy": best["val_accuracy"], "wall_time_s": log[-1]["wall_s"],
                         "recipe": "train pointcloud --plain --lmbda 1 --freeze-encoder --warm-start "
                                   + str(trunk)}}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m splitinfer.training.plain CHECKPOINT OUT.onnx TRUNK_CHECKPOINT",
              file=sys.stderr)
        return 2
    import torch
    torch.set_num_threads(1)
    print(json.dumps(export_plain_with_provenance(*args), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
