"""The ``splitinfer`` command: one subcommand per job, each importing only what it needs
(so the edge and cloud commands never import torch)."""
from __future__ import annotations

import argparse
import os
import sys

from . import __version__

ENVIRONMENT = """environment variables:
  SPLITINFER_MODELS                     model repository (default: ./models); --models overrides
  SPLITINFER_HOST, SPLITINFER_PORT      serve: address to listen on (default 127.0.0.1:50051)
  SPLITINFER_SERVER                     stream: the server's host:port (default 127.0.0.1:50051)
  SPLITINFER_TOKEN                      serve: an accepted bearer token; stream: the token to send
  SPLITINFER_TLS                        the HAProxy balancer (docker/haproxy.cfg): 1 = TLS on both sides
  SPLITINFER_CODER                      range coder: auto (default), constriction, python (same bytes)
  SPLITINFER_SIDECAR_MAX_UPLOAD_BYTES   sidecar workers: largest upload (set from --max-upload-mb)
  SPLITINFER_SIDECAR_MAX_PIXELS         sidecar workers: largest image (set from --max-pixels)
  SPLITINFER_SIDECAR_CONCURRENCY        sidecar workers: codec calls at a time
  SPLITINFER_SIDECAR_BODY_TIMEOUT_S     sidecar workers: seconds to receive a body (--body-timeout-s)
  SPLITINFER_SIDECAR_MAX_UPLOADS        sidecar workers: uploads read at once (--max-uploads)
  SPLITINFER_SIDECAR_MAX_INFLIGHT_PIXELS  sidecar workers: pixels coded at once (--max-inflight-pixels)
"""


def _train_pointcloud(a: argparse.Namespace) -> int:
    from .training.pointcloud import TrainConfig, train
    cfg = TrainConfig(size=a.size, points=a.points, lmbda=a.lmbda, data=a.data, out=a.out,
                      epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, patience=a.patience,
                      val_fraction=a.val_fraction, seed=a.seed, warm_start=a.warm_start,
                      freeze_encoder=a.freeze_encoder, feature_cache=a.feature_cache,
                      augment=not a.no_augment, bootstrap=a.bootstrap, jitter=a.jitter,
                      bf16=a.bf16, cosine=a.cosine, ema=a.ema, teacher=a.teacher,
                      teacher_models=a.teacher_models, kd_alpha=a.kd_alpha,
                      kd_temperature=a.kd_temperature,
                      bn_batches=a.bn_batches, feature_views=a.feature_views, plain=a.plain,
                      scans=a.scans, preprocess=_preprocess_spec(a.preprocess),
                      max_batches=a.max_batches, threads=a.threads)
    train(cfg)
    return 0


def _preprocess_spec(text: str | None) -> dict | None:
    """--preprocess: 'legacy' (mean, farthest point), 'robust' (preprocess.ROBUST) or a JSON dict."""
    import json
    from .pointcloud.preprocess import ROBUST
    if text in (None, "legacy"):
        return None
    return dict(ROBUST) if text == "robust" else json.loads(text)


def _recover_pointcloud(a: argparse.Namespace) -> int:
    from .repository import ModelRepository
    from .training.recover import recover_checkpoint, training_clouds
    folder = ModelRepository(a.models).config(a.model).path
    print(recover_checkpoint(folder, training_clouds(a.data, a.clouds), a.out, a.steps))
    return 0


def _train_image(a: argparse.Namespace) -> int:
    from .training.image import ImageTrainConfig, train
    train(ImageTrainConfig(lmbda=a.lmbda, N=a.N, M=a.M, data=a.data, out=a.out, epochs=a.epochs,
                           steps=a.steps, batch_size=a.batch_size, patch=a.patch, lr=a.lr,
                           seed=a.seed, warm_start=a.warm_start, threads=a.threads))
    return 0


def _export_image(a: argparse.Namespace) -> int:
    from .training.export_image import export_image
    print(export_image(a.checkpoint, a.name, a.quality, a.models, a.version))
    return 0


def _export_pointcloud(a: argparse.Namespace) -> int:
    from .training.export import export_pointcloud
    out = export_pointcloud(a.checkpoint, a.name, a.models, a.version)
    print(out)
    return 0


def _eval_pointcloud(a: argparse.Namespace) -> int:
    from .pointcloud.evaluate import evaluate, write_json
    from .repository import ModelRepository
    repo = ModelRepository(a.models)
    inputs = [None] if a.scans is None else [a.scans] if a.scans_only else [None, a.scans]
    runs = [evaluate(a.model, a.data, repo, limit=a.limit, seed=a.seed, scans=s, version=a.version)
            for s in inputs]
    if a.json:
        write_json(runs[0] if len(runs) == 1 and not a.scans_only else
                   {"model": a.model, "version": runs[0]["version"], "scans": runs[0]} if a.scans_only else
                   {"model": a.model, "version": runs[0]["version"], "clean": runs[0], "scans": runs[1]},
                   a.json)
    for r in runs:
        refused = f", {r['refused']} refused" if r["refused"] else ""
        print(f"{r['model']}@{r['version']} [{r['input']}]: accuracy {r['accuracy']:.4f} on "
              f"{r['count']} clouds{refused}, "
              f"{r['bits_mean']:.1f} bits/cloud real ({r['estimated_bits_mean']:.1f} estimated, "
              f"+{r['container_bits_mean'] - r['bits_mean']:.0f} container header), "
              f"round trip exact: {r['roundtrip_exact_all']}, "
              f"encode {r['encode_ms_mean']:.2f} ms, decode {r['decode_ms_mean']:.2f} ms per cloud")
    return 0


def format_table(rows: list[dict], cols: list[str]) -> str:
    """Rows as an aligned text table: text left-aligned, numbers right-aligned, floats with at
    most three decimals, missing values as '-'."""
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3f}".rstrip("0").rstrip(".")
        return "-" if v is None else str(v)
    cells = [[cell(r.get(c)) for c in cols] for r in rows]
    numeric = [all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in rows) for c in cols]
    width = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, width, numeric)).rstrip()
    return "\n".join([line(cols), line(["-" * w for w in width])] + [line(row) for row in cells])


def _report_broken(repo) -> None:
    for path, message in repo.errors:
        print(f"error: {path}: {message}", file=sys.stderr)


def _models_list(a: argparse.Namespace) -> int:
    """Every model version as an aligned table (or JSON); broken ones as error lines, exit 1."""
    import json
    from .repository import ModelRepository
    repo = ModelRepository(a.models)
    rows = [c.summary() for c in repo.list()]
    if not rows and not repo.errors:
        raise UserError(f"no models in {repo.root}", "pass --models DIR (or set SPLITINFER_MODELS) "
                        "to a folder of <name>/<version>/config.json")
    if a.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            r["bits"], r["accuracy"] = r["bits_mean"], r["test_accuracy"]
        print(format_table(rows, ["name", "version", "digest", "task", "bits", "accuracy"]))
    _report_broken(repo)
    return 1 if repo.errors else 0


def _models_digest(a: argparse.Namespace) -> int:
    """Print each model's digest; with --write record it in its config.json (files verified)."""
    from .repository import ModelError, ModelRepository, read_config, verify_files, write_digest
    repo = ModelRepository(a.models)
    wanted = set(a.name or [])
    failed = 0
    for cfg_path in sorted(repo.root.glob("*/*/config.json")):
        if wanted and cfg_path.parent.parent.name not in wanted:
            continue
        try:
            if a.write:
                digest, changed = write_digest(cfg_path)
                state = "written" if changed else "recorded"
            else:
                cfg = read_config(cfg_path, check_digest=False)
                verify_files(cfg)
                digest = cfg.digest
                recorded = cfg.raw.get("digest")
                state = ("recorded" if recorded == digest else
                         "not recorded" if recorded is None else
                         f"differs from the recorded {str(recorded)[:16]}")
        except ModelError as e:
            failed += 1
            print(f"error: {e}", file=sys.stderr)
            continue
        rel = cfg_path.parent.relative_to(repo.root)
        print(f"{digest}  {rel.parts[0]}@{rel.parts[1]}  {state}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="splitinfer", description=__doc__, epilog=ENVIRONMENT,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"splitinfer {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="train a model (needs torch)").add_subparsers(dest="task", required=True)
    t = tr.add_parser("pointcloud", help="train a point-cloud codec on ModelNet40")
    t.add_argument("--size", choices=["full", "lite", "micro"], required=True, help="encoder size")
    t.add_argument("--points", type=int, default=1024, help="points P sampled per cloud (default 1024)")
    t.add_argument("--lmbda", type=float, required=True, help="weight of cross-entropy vs bits")
    t.add_argument("--data", help="ModelNet40 folder (default ../shared/datasets/modelnet40)")
    t.add_argument("--out", required=True, help="run folder: checkpoints and log.jsonl")
    t.add_argument("--epochs", type=int, default=500, help="most epochs to train (default 500)")
    t.add_argument("--batch-size", type=int, default=32, help="clouds per batch (default 32)")
    t.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    t.add_argument("--patience", type=int, default=15, help="early stopping patience (epochs)")
    t.add_argument("--val-fraction", type=float, default=0.1,
                   help="stratified share of the training set held out for validation (default 0.1)")
    t.add_argument("--seed", type=int, default=0, help="seed of the split, sampling and init (default 0)")
    t.add_argument("--warm-start", help="checkpoint to initialise from (another model)")
    t.add_argument("--freeze-encoder", action="store_true", help="train gain, entropy model and classifier only")
    t.add_argument("--feature-cache", help="with --freeze-encoder: cache of pooled trunk features")
    t.add_argument("--feature-views", type=int, default=4,
                   help="with --freeze-encoder: augmented views of every cloud in the cache")
    t.add_argument("--no-augment", action="store_true",
                   help="no augmentation (the clouds as the edge sends them; for a last low-lr phase)")
    t.add_argument("--bootstrap", action="store_true",
                   help="draw each epoch's training points with replacement (point-sampling augmentation)")
    t.add_argument("--jitter", type=float, default=0.0,
                   help="std of per-point Gaussian noise, part of the augmentation (PointNet: 0.01)")
    t.add_argument("--bf16", action="store_true", help="trunk in bfloat16 autocast (faster on CPU)")
    t.add_argument("--cosine", action="store_true",
                   help="cosine lr schedule over --epochs, from --lr to 1%% of it (instead of halving on plateaus)")
    t.add_argument("--ema", type=float, default=0.0,
                   help="validate and keep a moving average of the weights with this per-step decay, e.g. 0.999 (0: off)")
    t.add_argument("--teacher", help="a shipped model (e.g. full-p1024-l16000) whose soft targets are "
                                      "distilled into this one (Hinton et al. 2015)")
    t.add_argument("--teacher-models", default="models", help="the model repository holding --teacher")
    t.add_argument("--kd-alpha", type=float, default=0.5,
                   help="with --teacher: weight of the distillation term against the cross-entropy")
    t.add_argument("--kd-temperature", type=float, default=4.0, help="with --teacher: softmax temperature")
    t.add_argument("--bn-batches", type=int, default=64,
                   help="training batches that re-estimate BatchNorm statistics before validation (0: off)")
    t.add_argument("--plain", action="store_true",
                   help="uncompressed PointNet (no quantization, no rate): the input-compression baselines' classifier")
    t.add_argument("--scans", type=float, default=0.0,
                   help="fraction of training views that are simulated single-view scans (0..1)")
    t.add_argument("--preprocess", help="the model's preprocessing: 'legacy' (mean, farthest point; "
                                         "default), 'robust' (median, 90%% quantile) or a JSON dict")
    t.add_argument("--max-batches", type=int, help="cap batches per epoch (smoke runs)")
    t.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    t.set_defaults(func=_train_pointcloud)
    t = tr.add_parser("recover", help="rebuild a torch checkpoint from an exported point-cloud "
                                      "model (a warm start when its run folder is gone)")
    t.add_argument("--model", required=True, help="model repository name")
    t.add_argument("--models", default="models", help="model repository (default: models)")
    t.add_argument("--data", help="ModelNet40 folder (default ../shared/datasets/modelnet40)")
    t.add_argument("--out", required=True, help="checkpoint to write (e.g. runs/x/best.pt)")
    t.add_argument("--clouds", type=int, default=4096,
                   help="training clouds that measure BatchNorm statistics and refit the entropy model")
    t.add_argument("--steps", type=int, default=3000, help="entropy-model refit steps")
    t.set_defaults(func=_recover_pointcloud)
    t = tr.add_parser("image", help="train a factorized-prior image codec on BSDS500")
    t.add_argument("--lmbda", type=float, required=True, help="weight of 255^2 MSE against bpp")
    t.add_argument("--N", type=int, default=64, help="channels of the hidden layers")
    t.add_argument("--M", type=int, default=96, help="channels of the latent y")
    t.add_argument("--data", help="BSDS500 folder (default ../shared/datasets/bsds500)")
    t.add_argument("--out", required=True, help="run folder: checkpoints and log.jsonl")
    t.add_argument("--epochs", type=int, default=30, help="train up to this epoch (default 30)")
    t.add_argument("--steps", type=int, default=200, help="optimizer steps per epoch")
    t.add_argument("--batch-size", type=int, default=8, help="crops per batch (default 8)")
    t.add_argument("--patch", type=int, default=128, help="crop size in pixels (default 128)")
    t.add_argument("--lr", type=float, default=3e-4, help="learning rate (default 3e-4)")
    t.add_argument("--seed", type=int, default=0, help="seed of the crops and init (default 0)")
    t.add_argument("--warm-start", help="checkpoint to initialise from (another quality)")
    t.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    t.set_defaults(func=_train_image)

    ex = sub.add_parser("export", help="export a trained model to the repository (needs torch)")
    ex_sub = ex.add_subparsers(dest="task", required=True)
    e = ex_sub.add_parser("pointcloud", help="encoder.onnx, classifier.onnx, tables.npz, config.json")
    e.add_argument("--checkpoint", required=True, help="a training checkpoint (best.pt)")
    e.add_argument("--name", required=True, help="model name, e.g. micro-p1024-l1000")
    e.add_argument("--version", type=int,
                   help="new version folder (default: the next free one; versions are immutable)")
    e.add_argument("--models", default="models", help="model repository (default: models)")
    e.set_defaults(func=_export_pointcloud)
    e = ex_sub.add_parser("image", help="g_a.onnx, g_s.onnx, tables.npz, config.json")
    e.add_argument("--checkpoint", required=True, help="a training checkpoint (best.pt)")
    e.add_argument("--name", required=True, help="model name, e.g. image-factorized-q3")
    e.add_argument("--quality", type=int, required=True, help="quality index recorded in the config")
    e.add_argument("--version", type=int,
                   help="new version folder (default: the next free one; versions are immutable)")
    e.add_argument("--models", default="models", help="model repository (default: models)")
    e.set_defaults(func=_export_image)

    ev = sub.add_parser("eval", help="evaluate on real bitstreams (torch-free)")
    e = ev.add_subparsers(dest="task", required=True).add_parser(
        "pointcloud", help="accuracy, real bits and times of a point-cloud model")
    e.add_argument("--model", required=True, help="model name (see `splitinfer models list`)")
    e.add_argument("--data", required=True, help="npz with points [N,P0,3] and labels, or a folder of them")
    e.add_argument("--json", help="write the full result (per-cloud bits and times) here")
    e.add_argument("--limit", type=int, help="evaluate only the first N clouds")
    e.add_argument("--seed", type=int, default=0, help="point sampling seed")
    e.add_argument("--scans", type=int, nargs="?", const=0, metavar="SEED",
                   help="also evaluate on simulated single-view scans of the same clouds "
                        "(the scan benchmark; SEED fixes the scans, default 0)")
    e.add_argument("--scans-only", action="store_true", help="with --scans: skip the clean clouds")
    e.add_argument("--version", type=int, help="model version (default: the newest)")
    e.add_argument("--models", help="model repository (default: models/ or $SPLITINFER_MODELS)")
    e.set_defaults(func=_eval_pointcloud)

    mo = sub.add_parser("models", help="the model repository").add_subparsers(dest="action", required=True)
    m = mo.add_parser("list", help="list every model version: name, version, short digest, task, "
                                   "bits, accuracy (broken models: one error line each on stderr, "
                                   "exit 1)")
    m.add_argument("--json", action="store_true", help="print JSON instead of a table")
    m.add_argument("--models", help="model repository (default: models/ or $SPLITINFER_MODELS)")
    m.set_defaults(func=_models_list)
    m = mo.add_parser("digest", help="print each model version's digest after checking its files "
                                     "against their sha256; --write records it in config.json")
    m.add_argument("name", nargs="*", help="only these models (default: all)")
    m.add_argument("--write", action="store_true",
                   help="record the digest as \"digest\" in each config.json (only that key)")
    m.add_argument("--models", help="model repository (default: models/ or $SPLITINFER_MODELS)")
    m.set_defaults(func=_models_digest)
    from edge_client.pull import add_parser as add_pull  # argparse only: grpc loads when run
    add_pull(mo)

    for register in _plugins():
        register(sub)
    from .image.cli import add_parsers as add_image_parsers  # eval image, baseline image
    add_image_parsers(ev, sub.choices["baseline"])
    return p


def _plugins():
    """Subcommands that live with their component (serve, stream, demo, bench, ...)."""
    from cloud_server.cli import register as serve  # argparse only: grpc loads when run
    from edge_client.cli import register as stream
    from .bench import register as bench
    from .demo import register as demo
    from .baselines.draco import register as baseline
    from .motion.cli import register as motion
    from .sidecar.cli import add_parser as sidecar
    return [serve, stream, demo, bench, motion, baseline, sidecar]


class UserError(Exception):
    """A mistake in the command line or its inputs: printed as ``error: WHAT`` and ``HOW`` to fix it."""

    def __init__(self, what: str, fix: str = ""):
        super().__init__(what)
        self.fix = fix


def user_error(e: BaseException) -> UserError | None:
    """The typed user errors of the library as a UserError with its fix (None: not a user error)."""
    from .codec.container import UnknownModel
    from .pointcloud.preprocess import InvalidPointCloud
    if isinstance(e, UserError):
        return e
    if isinstance(e, UnknownModel):
        known = str(e).partition("(known: ")[2].rstrip(")").split(", ")
        what = str(e).partition(" (known")[0]
        return UserError(f"{what}; the repository holds {len(known)} models",
                         "see `splitinfer models list` (or pass --models DIR)")
    if isinstance(e, (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)):
        what = f"{e.strerror.lower()}: {e.filename}" if e.filename else str(e)
        return UserError(what, "check the path (--data, --checkpoint, --models)")
    if isinstance(e, InvalidPointCloud):
        return UserError(str(e), "pass finite (N, 3) points with N > 0")
    from .repository import ModelError
    if isinstance(e, (ModelError, FileExistsError)):  # their messages say how to fix them
        return UserError(str(e))
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `splitinfer models list | head`: the reader is gone
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - user errors get one line, anything else its traceback
        err = user_error(e)
        if err is None:
            raise
        print(f"error: {err}" + (f"\n  fix: {err.fix}" if err.fix else ""), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
