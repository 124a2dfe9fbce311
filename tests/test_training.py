"""A tiny training run lowers its loss; checkpoints resume; export gives ONNX that matches torch."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from splitinfer.training.pointcloud import TrainConfig, Trainer  # noqa: E402


def test_tiny_training_run_lowers_loss_and_resumes(tiny_modelnet, tmp_path):
    cfg = TrainConfig(size="micro", points=256, lmbda=100, data=str(tiny_modelnet),
                      out=str(tmp_path / "run"), epochs=8, batch_size=16, val_fraction=0.25,
                      threads=1)
    Trainer(cfg).fit()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 8
    assert log[-1]["loss"] < log[0]["loss"]
    assert log[-1]["wall_s"] > 0
    # resume: the epoch counter and wall time carry on
    cfg.epochs = 9
    t = Trainer(cfg)
    assert t.epoch == 8
    t.fit()
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 9


def test_cosine_schedule_runs_from_lr_to_one_percent(tiny_modelnet, tmp_path):
    cfg = TrainConfig(size="micro", points=64, lmbda=100, data=str(tiny_modelnet), lr=1e-3,
                      out=str(tmp_path / "run"), epochs=3, batch_size=16, val_fraction=0.25,
                      threads=1, cosine=True, max_batches=2, bn_batches=1)
    Trainer(cfg).fit()
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([1e-3, 0.5 * (1e-3 + 1e-5), 1e-5])


def test_weight_average_follows_the_decay_and_swaps_back_exactly():
    from splitinfer.training.pointcloud import WeightAverage
    model = torch.nn.Linear(2, 1)
    w0 = model.weight.detach().clone()
    avg = WeightAverage(model, ["weight"], decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    avg.update(model)
    avg.update(model)
    assert torch.allclose(avg.avg["weight"], 0.81 * w0 + 0.19)  # 0.9^2 w0 + (1 - 0.9^2) * 1
    trained = avg.swap(model)
    assert torch.equal(model.weight, avg.avg["weight"]) and torch.equal(trained["weight"], torch.ones(1, 2))
    avg.swap(model, trained)
    assert torch.equal(model.weight, torch.ones(1, 2))


def test_ema_run_validates_and_keeps_the_average_and_resumes_it(tiny_modelnet, tmp_path):
    cfg = TrainConfig(size="micro", points=64, lmbda=100, data=str(tiny_modelnet),
                      out=str(tmp_path / "run"), epochs=1, batch_size=16, val_fraction=0.25,
                      threads=1, ema=0.5, max_batches=3, bn_batches=1)
    Trainer(cfg).fit()
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=False)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    avg = last["ema"]["avg"]
    assert all(torch.equal(best["model"][n], w) for n, w in avg.items())  # best.pt: the average
    assert not all(torch.equal(last["model"][n], w) for n, w in avg.items())  # last.pt: the trained
    cfg.epochs = 2
    t = Trainer(cfg)
    assert t.epoch == 1 and all(torch.equal(t.ema.avg[n], w) for n, w in avg.items())


def test_export_onnx_matches_torch_and_round_trips(tiny_modelnet, tmp_path, sample):
    from splitinfer.pointcloud.evaluate import evaluate
    from splitinfer.repository import ModelRepository
    from splitinfer.training.export import export_pointcloud

    cfg = TrainConfig(size="lite", points=128, lmbda=200, data=str(tiny_modelnet),
                      out=str(tmp_path / "run"), epochs=2, batch_size=16, val_fraction=0.25,
                      threads=1)
    Trainer(cfg).fit()
    out = export_pointcloud(tmp_path / "run" / "best.pt", "lite-test", tmp_path / "models")
    config = json.loads((out / "config.json").read_text())
    assert config["onnx_torch_parity"]["mismatched_symbols"] == 0
    assert config["onnx_torch_parity"]["clouds"] == len(sample["labels"])
    assert config["points"] == 128 and config["channels"] == 32
    assert config["version"] == 1 and config["digest"] == ModelRepository(tmp_path / "models").config("lite-test").digest
    with pytest.raises(FileExistsError, match="immutable"):   # versions are immutable
        export_pointcloud(tmp_path / "run" / "best.pt", "lite-test", tmp_path / "models", version=1)
    r = evaluate("lite-test", tiny_modelnet / "modelnet40_test.npz",
                 ModelRepository(tmp_path / "models"), limit=40, progress=False)
    assert r["roundtrip_exact_all"]
    assert r["count"] == 40 and 0 <= r["accuracy"] <= 1
    assert np.isfinite(r["bits_mean"]) and r["bits_mean"] >= 0


def test_precise_batchnorm_replaces_lagging_statistics(tiny_modelnet, tmp_path):
    """recalibrate_batchnorm: running statistics become the plain average over training batches of
    the current weights, whatever the moving average held before."""
    cfg = TrainConfig(size="micro", points=128, lmbda=100, data=str(tiny_modelnet),
                      out=str(tmp_path / "run"), epochs=1, batch_size=16, val_fraction=0.25,
                      threads=1, bn_batches=3)
    t = Trainer(cfg)
    bn = t.model.encoder.layers[0][1]
    bn.running_mean.fill_(100.0)  # a stale moving average
    state = t.rng.bit_generator.state
    t.recalibrate_batchnorm()
    t.rng.bit_generator.state = state  # replay the same three batches by hand
    conv = t.model.encoder.layers[0][0]
    with torch.no_grad():
        means = [conv(x.transpose(1, 2)).mean(dim=(0, 2))
                 for x, _ in t._batches(limit=3)]
    assert torch.allclose(bn.running_mean, torch.stack(means).mean(0), atol=1e-5)
    assert bn.momentum == 0.1  # the moving average carries on from there


def test_bootstrap_sampling_repeats_points_and_keeps_shape():
    from splitinfer.training.pointcloud import _subset
    clouds = np.random.default_rng(1).normal(size=(4, 64, 3)).astype(np.float32)
    rng = np.random.default_rng(0)
    plain = _subset(clouds, 64, rng, augment=False)
    boot = _subset(clouds, 64, rng, augment=False, bootstrap=True)
    assert plain.shape == boot.shape == (4, 64, 3)
    # a subset of every point is a permutation; a bootstrap sample repeats some and drops others
    assert all(len(np.unique(c, axis=0)) == 64 for c in plain)
    assert all(len(np.unique(c, axis=0)) < 64 for c in boot)
    assert all(set(map(tuple, b)) <= set(map(tuple, c)) for b, c in zip(boot, clouds))


def test_jitter_moves_every_point_a_little_and_keeps_the_cloud_normalised():
    from splitinfer.training.pointcloud import _subset
    clouds = np.random.default_rng(1).normal(size=(4, 64, 3)).astype(np.float32)
    clouds /= np.linalg.norm(clouds, axis=2).max(axis=1)[:, None, None]
    scaled = _subset(clouds, 64, np.random.default_rng(0), augment=True)
    noisy = _subset(clouds, 64, np.random.default_rng(0), augment=True, jitter=0.01)
    assert noisy.shape == scaled.shape
    assert np.abs(np.linalg.norm(noisy, axis=2).max(axis=1) - 1).max() < 1e-5  # renormalised
    # same subsets and scales (same draws); the noise moves every point by about 0.01
    shift = np.linalg.norm(noisy - scaled, axis=2)
    assert (shift > 0).all() and 0.005 < np.median(shift) < 0.05


def test_recovered_checkpoint_reproduces_the_exported_model(tmp_path, sample):
    """Rebuilding torch weights from models/<name>/1: the encoder gives the shipped ONNX symbols
    on every sample cloud, the classifier its logits, and the refitted entropy model its rate."""
    import onnxruntime as ort

    from splitinfer.pointcloud.preprocess import preprocess_batch
    from splitinfer.repository import ModelRepository
    from splitinfer.training.export import load_checkpoint
    from splitinfer.training.recover import recover_checkpoint

    cfg = ModelRepository().config("lite-p1024-l80")
    r = recover_checkpoint(cfg.path, sample["points"], tmp_path / "best.pt", steps=300)
    model, state = load_checkpoint(tmp_path / "best.pt")
    assert state["config"]["size"] == "lite" and state["classes"] == cfg.classes
    x = preprocess_batch(sample["points"], 1024, seed=0)
    onnx_symbols = ort.InferenceSession(str(cfg.file("encoder"))).run(None, {"points": x})[0]
    onnx_logits = ort.InferenceSession(str(cfg.file("classifier"))).run(
        None, {"y_hat": onnx_symbols.astype(np.float32)})[0]
    with torch.no_grad():
        symbols = model.encode_symbols(torch.from_numpy(x)).numpy()
        logits = model.classifier(torch.from_numpy(symbols).float()[:, :, None]).numpy()
        train_mode = model.train().encoder(torch.from_numpy(x).transpose(1, 2))
        eval_mode = model.eval().encoder(torch.from_numpy(x).transpose(1, 2))
    assert (symbols == onnx_symbols).all()
    np.testing.assert_allclose(logits, onnx_logits, rtol=1e-4, atol=1e-4)
    # the rebuilt BatchNorm statistics are the data's: batch statistics give nearly the same latent
    assert float((train_mode - eval_mode).abs().max()) < 0.05 * float(eval_mode.abs().max())
    # a refit on 120 clouds lands near the shipped tables' rate (test set, 2,468 clouds)
    assert abs(r["estimated_bits"] - cfg.metrics["estimated_bits_mean"]) < 8


def test_distillation_loss_is_zero_for_the_teacher_and_the_scaled_kl_otherwise():
    from splitinfer.training.distill import distillation_loss
    rng = np.random.default_rng(0)
    teacher = torch.from_numpy(rng.normal(0, 3, (5, 40)).astype(np.float32))
    student = torch.from_numpy(rng.normal(0, 3, (5, 40)).astype(np.float32))
    assert float(distillation_loss(teacher, teacher, 4.0)) == pytest.approx(0.0, abs=1e-5)
    p = torch.softmax(teacher / 4, 1).numpy()
    q = torch.softmax(student / 4, 1).numpy()
    kl = (p * np.log(p / q)).sum(1).mean()
    assert float(distillation_loss(student, teacher, 4.0)) == pytest.approx(16 * kl, rel=1e-4)


def test_teacher_logits_are_the_served_models_logits(sample):
    """The teacher runs as served: the logits of the bytes the edge would send, decoded."""
    from splitinfer.repository import ModelRepository
    from splitinfer.training.distill import teacher_logits
    clouds = sample["points"][:24]
    got = teacher_logits("micro-p1024-l16000", clouds, batch=10)
    model = ModelRepository().load("micro-p1024-l16000")
    served = np.stack([model.classify(model.decode(model.encode(c))[None])[0] for c in clouds])
    np.testing.assert_allclose(got, served, rtol=1e-5, atol=1e-5)


def test_distilled_run_trains_on_soft_targets_and_validates_on_labels(tiny_modelnet, tmp_path):
    cfg = TrainConfig(size="micro", points=64, lmbda=100, data=str(tiny_modelnet),
                      out=str(tmp_path / "run"), epochs=1, batch_size=16, val_fraction=0.25,
                      threads=1, max_batches=3, bn_batches=1, teacher="micro-p1024-l16000",
                      kd_alpha=1.0)
    t = Trainer(cfg)
    rec = t.fit()
    assert t.teacher.shape == (len(t.train_labels), 40)
    # alpha 1: the training loss is bits + lambda * KL, not bits + lambda * CE
    assert rec["loss"] != pytest.approx(rec["bits"] + 100 * rec["ce"], rel=1e-3)
    assert rec["val_loss"] == pytest.approx(rec["val_bits"] + 100 * rec["val_ce"], rel=1e-6)
