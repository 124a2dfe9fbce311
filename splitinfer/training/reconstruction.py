"""Critical-point and reconstruction pictures of the point-cloud codec (torch).

For each size (full / lite / micro) the chosen model's checkpoint ``runs/<model>/best.pt`` gives
- the critical points (argmax point of every encoder channel, ``PointEncoder.critical_points``);
- y_hat, from which a visualisation-only ``Reconstruction`` network (as in Ulhaq & Bajić, MMSP 2023)
  rebuilds 1024 points. It is trained on a detached y_hat with the Chamfer loss (encoder frozen,
  y_hat computed once for a random subset of the ModelNet40 train clouds, 5% of it held out to pick
  the best epoch; the training loss compares with a random 256-point subset of each target per
  step) and saved as ``runs/recon-<size>/best.pt`` ({"model": state_dict, ...}, the format
  export_pointcloud's recon_checkpoint expects); an existing checkpoint for the same model is reused.

:func:`make_pictures` writes critical_points.png, reconstruction.png and pictures.json (what was
shown, recon training wall times, Chamfer distances); ``scripts/make_pointcloud_pictures.py`` is
its command line.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from ..data import SAMPLE

DEFAULT_MODELS = {"full": "full-p1024-l4000", "lite": "lite-p1024-l1000", "micro": "micro-p1024-l1000"}
DEFAULT_EPOCHS = {"full": 15, "lite": 15, "micro": 15}


def load_examples(classes: list[str], data: str | None) -> tuple[np.ndarray, list[str]]:
    """One test cloud per class: from the bundled sample, else from the ModelNet40 test set."""
    sample = SAMPLE
    if sample.exists():
        with np.load(sample) as z:
            pts, labels, names, all_classes = z["points"], z["labels"], z["names"], list(z["classes"])
    else:
        from splitinfer.pointcloud.data import load_classes, load_split
        pts, labels = load_split(data, "test")
        all_classes = load_classes(data)
        names = np.array([f"{all_classes[l]}_{i}" for i, l in enumerate(labels)])
    chosen, titles = [], []
    for c in classes:
        i = int(np.flatnonzero(labels == all_classes.index(c))[0])
        chosen.append(pts[i])
        titles.append(str(names[i]))
    return np.stack(chosen), titles


def train_recon(model, size: str, source: Path, source_epoch: int, data: str | None, epochs: int,
                out: Path, limit: int | None, target_points: int = 256, batch: int = 32, lr: float = 1e-3,
                seed: int = 0) -> dict:
    import torch
    from splitinfer.nn.models import Reconstruction, chamfer_distance
    from splitinfer.pointcloud.data import load_split
    from splitinfer.pointcloud.preprocess import preprocess_batch

    torch.manual_seed(seed)
    t0 = time.time()
    raw, _ = load_split(data, "train")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(raw))
    if limit:
        order = order[:limit]
    targets = torch.from_numpy(preprocess_batch(raw[order], 1024, seed=0))
    with torch.no_grad():  # detached y_hat: the codec stays as trained
        y_hat = torch.cat([model.encode_symbols(targets[i:i + 128]).float()
                           for i in range(0, len(targets), 128)])
    n_val = max(32, len(targets) // 20)
    val_y, val_t = y_hat[:n_val], targets[:n_val]
    tr_y, tr_t = y_hat[n_val:], targets[n_val:]
    cache_s = time.time() - t0
    recon = Reconstruction(size)
    opt = torch.optim.Adam(recon.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "log.jsonl", "w")
    best, best_state, record = float("inf"), None, {}
    for epoch in range(1, epochs + 1):
        te = time.time()
        recon.train()
        perm = torch.randperm(len(tr_y))
        total, k = 0.0, 0
        for i in range(0, len(perm) - batch + 1, batch):
            idx = perm[i:i + batch]
            # Chamfer against a fresh random subset of each target cloud (4x cheaper than all 1024)
            sub = torch.randperm(tr_t.shape[1])[:target_points]
            loss = chamfer_distance(recon(tr_y[idx][:, :, None]), tr_t[idx][:, sub]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, k = total + float(loss.detach()), k + 1
        sched.step()
        recon.eval()
        with torch.no_grad():
            val = float(torch.cat([chamfer_distance(recon(val_y[i:i + 64][:, :, None]), val_t[i:i + 64])
                                   for i in range(0, n_val, 64)]).mean())
        record = {"epoch": epoch, "train_chamfer": total / max(k, 1), "val_chamfer": val,
                  "epoch_s": round(time.time() - te, 1), "wall_s": round(time.time() - t0, 1)}
        log.write(json.dumps(record) + "\n")
        log.flush()
        print(f"recon {size} epoch {epoch}: train {record['train_chamfer']:.5f} val {val:.5f} "
              f"({record['wall_s']:.0f}s)", flush=True)
        if val < best:
            best, best_state = val, {k: v.clone() for k, v in recon.state_dict().items()}
    wall = time.time() - t0
    info = {"size": size, "source_checkpoint": str(source), "source_epoch": source_epoch,
            "epochs": epochs, "batch": batch,
            "lr": lr, "target_points": target_points, "train_clouds": len(tr_y), "val_clouds": n_val,
            "best_val_chamfer": best,
            "wall_time_s": round(wall, 1), "y_hat_cache_s": round(cache_s, 1),
            "threads": torch.get_num_threads(),
            "recipe": "Reconstruction(size) on detached y_hat of the frozen codec (P=1024, fixed "
                      "seed-0 subsets of ModelNet40 train), Chamfer loss against a random "
                      f"{target_points}-point subset of the target per step (validation: all 1024), "
                      f"Adam lr {lr:g} cosine, batch {batch}"}
    torch.save({"model": best_state, **info}, out / "best.pt")
    (out / "info.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def make_pictures(out: str | Path, runs: str | Path, models: dict[str, str] | None = None,
                  sizes=("full", "lite", "micro"), classes=("airplane", "chair", "guitar", "lamp"),
                  epochs: dict[str, int] | None = None, train_limit: int | None = 4000,
                  target_points: int = 256, retrain: bool = False, data: str | None = None) -> int:
    """Pictures of one test cloud per class in ``classes`` for every size with a checkpoint;
    reconstructions trained for ``sizes`` where missing or stale (others: reused). Returns an
    exit status (1: no checkpoint found)."""
    import torch
    from ..nn.models import Reconstruction, chamfer_distance
    from ..plots.critical_points import plot_critical_points, plot_reconstructions, unique_critical
    from ..pointcloud.preprocess import preprocess
    from .export import load_checkpoint

    models = {**DEFAULT_MODELS, **(models or {})}
    epochs = {**DEFAULT_EPOCHS, **(epochs or {})}
    runs, out = Path(runs), Path(out)
    raw, titles = load_examples(classes, data)
    clouds = np.stack([preprocess(c, 1024, seed=0) for c in raw])
    x = torch.from_numpy(clouds)
    critical, recons, chamfers, info = {}, {}, {}, {}
    for size in ("full", "lite", "micro"):
        ckpt = runs / models[size] / "best.pt"
        if not ckpt.exists():
            print(f"skipping {size}: no {ckpt}", flush=True)
            continue
        model, state = load_checkpoint(ckpt)
        with torch.no_grad():
            idx = model.encoder.critical_points(x.transpose(1, 2)).numpy()
            y_hat = model.encode_symbols(x).float()
        critical[size] = list(idx)
        rdir = runs / f"recon-{size}"
        meta = json.loads((rdir / "info.json").read_text()) if (rdir / "info.json").exists() else None
        stale = meta is None or meta.get("source_checkpoint") != str(ckpt) \
            or meta.get("source_epoch") != state["epoch"]
        if stale and size not in sizes:
            print(f"{size}: critical points only, no reconstruction for {ckpt} (epoch {state['epoch']})",
                  flush=True)
            info[size] = {"model": models[size], "channels": int(idx.shape[1]),
                          "critical_points": {t: int(len(unique_critical(i))) for t, i in zip(titles, idx)}}
            continue
        if retrain or stale:
            meta = train_recon(model, size, ckpt, state["epoch"], data, epochs[size], rdir,
                               train_limit or None, target_points)
        recon = Reconstruction(size)
        recon.load_state_dict(torch.load(rdir / "best.pt", map_location="cpu", weights_only=False)["model"])
        with torch.no_grad():
            r = recon.eval()(y_hat[:, :, None])
            cd = chamfer_distance(r, x)
        recons[size], chamfers[size] = list(r.numpy()), [float(v) for v in cd]
        info[size] = {"model": models[size], "channels": int(idx.shape[1]),
                      "critical_points": {t: int(len(unique_critical(i))) for t, i in zip(titles, idx)},
                      "chamfer": dict(zip(titles, chamfers[size])),
                      "nonzero_symbols": {t: int((y != 0).sum()) for t, y in zip(titles, y_hat)},
                      "recon": {k: meta[k] for k in ("epochs", "train_clouds", "target_points",
                                                      "best_val_chamfer", "wall_time_s",
                                                      "y_hat_cache_s", "threads")}}
    if not critical:
        print("no checkpoints found", file=sys.stderr)
        return 1
    subs = {s: info[s]["model"] for s in critical}
    plot_critical_points(clouds, titles, critical, out / "critical_points.png", subtitles=subs)
    if recons:
        plot_reconstructions(clouds, titles, recons, out / "reconstruction.png", chamfers,
                             subtitles={s: info[s]["model"] for s in recons})
    (out / "pictures.json").write_text(json.dumps({"clouds": titles, "sizes": info}, indent=1) + "\n")
    print(json.dumps(info, indent=1))
    return 0

