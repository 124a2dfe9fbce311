"""Knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the knowledge in a neural
network") for the point-cloud codec: a shipped model of the repository is the teacher.

The teacher runs torch-free, exactly as served (ONNX encoder, integer y_hat, ONNX classifier), on
the evaluation view of every training cloud, once per run. The student then learns from
``(1 - alpha) * CE(labels) + alpha * T^2 * KL(teacher_T || student_T)`` in place of the plain
cross-entropy, where ``_T`` are the softmax probabilities of the logits divided by ``T``: the
soft targets say which classes a cloud resembles (a desk resembles a table). Validation keeps the
hard-label loss, so distilled and plain models are selected on one scale.

Measured on ModelNet40 (docs/results.md): with the model it replaces as the teacher ("born
again", Furlanello et al. 2018) the student validated better at every high rate. At about 30 bits
it validated worse: the teacher's logits on clouds it was trained on are more confident than a
30-bit latent can be, and the student's cross-entropy rose.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm



def teacher_logits(name: str, clouds: np.ndarray, models: str = "models", batch: int = 256,
                   threads: int | None = None) -> np.ndarray:
    """Logits (N, classes) of the shipped model ``name`` for raw ``clouds`` (N, P0, 3), through the
    served pipeline: the model's preprocessing (seed 0), ONNX encoder, y_hat, ONNX classifier."""
    from ..pointcloud.runtime import PointCloudModel
    from ..repository import ModelRepository
    model = PointCloudModel(ModelRepository(models).config(name), threads=threads or 1)
    out = []
    for i in tqdm(range(0, len(clouds), batch), desc=f"teacher {name}", disable=None):
        x = np.stack([model.preprocess(c, 0, name=f"cloud {i + k}") for k, c in enumerate(clouds[i:i + batch])])
        out.append(model.classify(model.encode_symbols(x)))
    return np.concatenate(out).astype(np.float32)


def distillation_loss(logits: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(logits / T))``, averaged over the batch; the
    ``T^2`` keeps its gradients on the scale of the cross-entropy's (Hinton et al. 2015)."""
    t = temperature
    return F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(teacher / t, dim=1),
                    reduction="batchmean", log_target=True) * t * t
