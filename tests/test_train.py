"""The training core: the paper's loss, optimisers, schedules, per-epoch checkpoints, exact resume, NaN stop.

Everything trains a narrow 48-px DeepPoseNet on 16 synthetic people, so the whole file runs in seconds on a
2-core CPU. Interruptions are simulated by raising from a monkeypatched hook inside ``fit``.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from deeppose_lab import crops as crops_mod
from deeppose_lab import train as train_mod
from deeppose_lab.checkpoint import CheckpointError, load_checkpoint
from deeppose_lab.crops import (
    PersonCrops,
    batches,
    epoch_order,
    helper_has_a_core,
    item_rng,
    model_input,
    outside_image,
    prefetched,
)
from deeppose_lab.geometry import Augmentation, crop_transform, warp_image
from deeppose_lab.model import DeepPoseNet
from deeppose_lab.profiles import StageRecipe
from deeppose_lab.skeleton import joint_index
from deeppose_lab.synthetic import SyntheticPoses
from deeppose_lab.train import (
    FitSettings,
    TrainingDiverged,
    fit,
    lr_factor,
    make_optimizer,
    mean_loss,
    pose_loss,
)

SIZE = 48
AUG = Augmentation(shift=0.05, scale=0.1, rotate=15.0, flip=True, colour=0.2)


@pytest.fixture(autouse=True)
def cpu_only(monkeypatch):
    """Bit-exact comparisons need one device: fit would otherwise move the model to a GPU when there is one."""
    monkeypatch.setattr(train_mod, "default_device", lambda: torch.device("cpu"), raising=False)


@pytest.fixture(scope="module")
def poses() -> SyntheticPoses:
    data = SyntheticPoses(16, seed=3)
    for i in range(len(data)):
        data.image(i)  # render once for the whole module
    return data


def tiny_net(seed: int = 0, dropout: float = 0.5) -> DeepPoseNet:
    torch.manual_seed(seed)
    return DeepPoseNet(input_size=SIZE, width=0.125, dropout=dropout)


def settings(seed: int = 7, **changes) -> FitSettings:
    base = dict(epochs=3, lr=1e-3, optimizer="adam", weight_decay=1e-4, schedule="cosine", batch_size=8, loss="l2")
    return FitSettings(StageRecipe(**{**base, **changes}), seed=seed)


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key].cpu(), b[key].cpu()), f"{key} differs"


# --- loss --------------------------------------------------------------------------------------------------

def test_pose_loss_is_summed_squared_l2_over_weighted_joints_averaged_over_batch():
    target = torch.zeros(2, 14, 2)
    target[0, 1] = torch.tensor([3.0, 4.0])
    pred = torch.zeros(2, 28)  # layout x0, y0, x1, y1, ...
    pred[0, 0], pred[0, 1] = 1.0, 2.0  # sample 0, joint 0 off by (1, 2): 1 + 4 = 5
    pred[1, 26], pred[1, 27] = 1.0, -1.0  # sample 1, joint 13 off by (1, −1): 2
    weight = torch.ones(2, 14)
    weight[0, 1] = 0.0  # sample 0, joint 1 is off by (−3, −4) = 25 but masked
    # per sample: the SUM over joints of squared distances (not a mean over 14 or 28 numbers); then the batch mean
    assert pose_loss(pred, target, weight).item() == pytest.approx((5.0 + 2.0) / 2)
    weight[0, 1] = 1.0
    assert pose_loss(pred, target, weight).item() == pytest.approx((5.0 + 25.0 + 2.0) / 2)
    weight[1] = 0.0
    assert pose_loss(pred, target, weight).item() == pytest.approx((5.0 + 25.0 + 0.0) / 2)


def test_pose_loss_does_not_depend_on_batch_size_and_has_gradients():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(3, 28, generator=g, requires_grad=True)
    target = torch.randn(3, 14, 2, generator=g)
    weight = (torch.rand(3, 14, generator=g) > 0.3).float()
    one = pose_loss(pred, target, weight)
    twice = pose_loss(torch.cat([pred, pred]), torch.cat([target, target]), torch.cat([weight, weight]))
    assert twice.item() == pytest.approx(one.item())
    one.backward()
    # a masked joint gets no gradient
    grad = pred.grad.view(3, 14, 2)
    assert torch.all(grad[weight == 0] == 0)
    assert torch.any(grad[weight == 1] != 0)


# --- optimiser and schedule ----------------------------------------------------------------------------------

def test_make_optimizer_kinds():
    model = tiny_net()
    opt = make_optimizer(model, settings(optimizer="adagrad", lr=5e-4, weight_decay=0.0).recipe)
    assert isinstance(opt, torch.optim.Adagrad) and opt.param_groups[0]["lr"] == 5e-4
    opt = make_optimizer(model, settings(optimizer="sgd", lr=0.01, weight_decay=1e-3).recipe)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[0]["weight_decay"] == 1e-3
    opt = make_optimizer(model, settings(optimizer="adam", lr=1e-3, weight_decay=1e-4).recipe)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["weight_decay"] == 1e-4
    assert len(opt.param_groups[0]["params"]) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        make_optimizer(model, settings(optimizer="lbfgs").recipe)


def test_lr_factor_schedules():
    total = 300
    assert lr_factor("constant", 0, total) == 1.0 and lr_factor("constant", 299, total) == 1.0
    # cosine: full rate at the start, half way at the middle, a small floor at the end, never increasing
    assert lr_factor("cosine", 0, total) == pytest.approx(1.0)
    assert lr_factor("cosine", 150, total) == pytest.approx(0.02 + 0.98 * 0.5)
    assert lr_factor("cosine", total, total) == pytest.approx(0.02)
    cosine = [lr_factor("cosine", s, total) for s in range(total)]
    assert all(a >= b for a, b in zip(cosine, cosine[1:], strict=False))
    assert min(cosine) > 0
    # step: × 0.1 from two thirds of the way on
    assert lr_factor("step", 199, total) == 1.0
    assert lr_factor("step", 200, total) == pytest.approx(0.1)
    assert lr_factor("step", 299, total) == pytest.approx(0.1)


# --- fit: checkpoints, resume, divergence ----------------------------------------------------------------------

def test_fit_writes_a_checkpoint_after_every_epoch(tmp_path, monkeypatch, poses):
    saved = []
    real_save = train_mod.save_checkpoint

    def spy(path, payload):
        real_save(path, payload)
        ckpt = load_checkpoint(path, stage=1)
        saved.append((ckpt["epoch"], ckpt["complete"], len(ckpt["history"])))

    monkeypatch.setattr(train_mod, "save_checkpoint", spy)
    model = tiny_net()
    val = PersonCrops(poses.subset(range(4)), SIZE, Augmentation.none())
    history = fit(model, PersonCrops(poses, SIZE, AUG), val, settings(), tmp_path / "stage1.pt", progress=False)
    assert saved == [(0, False, 1), (1, False, 2), (2, True, 3)]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert all(math.isfinite(h["train_loss"]) and math.isfinite(h["val_loss"]) for h in history)
    ckpt = load_checkpoint(tmp_path / "stage1.pt", stage=1)
    assert ckpt["model_config"] == model.config and ckpt["settings"]["recipe"]["epochs"] == 3
    assert_same_weights(ckpt["model"], model.state_dict())
    assert not model.training  # fit hands back a model ready for inference
    # the last epoch's validation loss is the finished model's loss on the validation crops
    assert history[-1]["val_loss"] == pytest.approx(mean_loss(model, val, settings()), rel=1e-6)


def test_resume_after_a_crash_ends_with_the_same_weights_as_an_uninterrupted_run(tmp_path, monkeypatch, poses):
    # dropout, augmentation (with flips), shuffling, weight decay and a cosine schedule all in play
    s = settings(epochs=3)
    train = PersonCrops(poses, SIZE, AUG)
    val = PersonCrops(poses.subset(range(4)), SIZE, Augmentation.none())

    reference = tiny_net(seed=0)
    ref_history = fit(reference, train, val, s, tmp_path / "a.pt", progress=False)

    real_check = train_mod.check_finite

    def killed(loss, stage, epoch, first, step, checkpoint):
        if epoch == 1:  # SIGINT at the second epoch's first loss check, after its optimizer steps, before its save
            raise KeyboardInterrupt
        real_check(loss, stage, epoch, first, step, checkpoint)

    monkeypatch.setattr(train_mod, "check_finite", killed)
    crashed = tiny_net(seed=0)
    with pytest.raises(KeyboardInterrupt):
        fit(crashed, train, val, s, tmp_path / "b.pt", progress=False)
    ckpt = load_checkpoint(tmp_path / "b.pt", stage=1)
    assert ckpt["epoch"] == 0 and not ckpt["complete"]
    monkeypatch.setattr(train_mod, "check_finite", real_check)

    resumed = tiny_net(seed=99)  # a new process: another initialisation, the weights must come from the file
    history = fit(resumed, train, val, s, tmp_path / "b.pt", progress=False)
    assert_same_weights(resumed.state_dict(), reference.state_dict())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for key in ("train_loss", "val_loss", "lr"):
        assert [h[key] for h in history] == [h[key] for h in ref_history]
    # the optimizer state was resumed too (the last checkpoints agree on it)
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_complete_checkpoint_is_not_retrained(tmp_path, monkeypatch, poses):
    path = tmp_path / "stage1.pt"
    s = settings(epochs=2)
    model = tiny_net()
    history = fit(model, PersonCrops(poses, SIZE, AUG), None, s, path, progress=False)
    trained, blob = state(model), path.read_bytes()

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished stage was trained again")

    monkeypatch.setattr(train_mod, "run_epoch", must_not_run)
    again = tiny_net(seed=5)
    assert fit(again, PersonCrops(poses, SIZE, AUG), None, s, path, progress=False) == history
    assert_same_weights(again.state_dict(), trained)  # the finished weights are loaded
    assert path.read_bytes() == blob  # and the file is left alone


def test_resuming_with_another_model_is_refused(tmp_path, poses):
    path = tmp_path / "stage1.pt"
    fit(tiny_net(), PersonCrops(poses.subset(range(4)), SIZE, AUG), None, settings(epochs=1), path, progress=False)
    other = DeepPoseNet(input_size=SIZE, width=0.25, dropout=0.5)
    with pytest.raises(CheckpointError, match="was trained with model") as err:
        fit(other, PersonCrops(poses.subset(range(4)), SIZE, AUG), None, settings(epochs=1), path, progress=False)
    assert str(path) in str(err.value)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, poses):
    path = tmp_path / "stage1.pt"
    real_loss, real_save = train_mod.pose_loss, train_mod.save_checkpoint
    calls, saved = [], []

    def poisoned(pred, target, weight, kind="l2"):
        calls.append(1)
        loss = real_loss(pred, target, weight, kind)
        return loss * float("nan") if len(calls) > 2 else loss  # 2 batches per epoch: epoch 2 turns NaN

    def spy(p, payload):
        real_save(p, payload)
        saved.append(p.read_bytes())

    monkeypatch.setattr(train_mod, "pose_loss", poisoned)
    monkeypatch.setattr(train_mod, "save_checkpoint", spy)
    model = tiny_net()
    with pytest.raises(TrainingDiverged) as err:
        fit(model, PersonCrops(poses, SIZE, AUG), None, settings(epochs=3), path, progress=False)
    message = str(err.value)
    assert re.search(r"stage 1, epoch 2, batch(es 1-\d+| 1):", message) and "nan" in message
    assert f"last good checkpoint {path} is kept" in message and "lower learning rate" in message
    assert len(saved) == 1 and path.read_bytes() == saved[0]  # epoch 1's file, untouched
    ckpt = load_checkpoint(path, stage=1)
    assert ckpt["epoch"] == 0 and not ckpt["complete"]
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    fresh = DeepPoseNet.from_config(ckpt["model_config"])
    fresh.load_state_dict(ckpt["model"])


def test_a_huge_learning_rate_diverges_loudly(tmp_path, poses):
    path = tmp_path / "stage1.pt"
    s = settings(epochs=2, optimizer="sgd", lr=1e30, schedule="constant", weight_decay=0.0)
    with pytest.raises(TrainingDiverged, match=r"stage 1, epoch 1, batch(es)? [\d-]+: the loss is (nan|inf)") as err:
        fit(tiny_net(), PersonCrops(poses, SIZE, AUG), None, s, path, progress=False)
    assert "no checkpoint was written" in str(err.value)
    assert not path.exists()
    assert not list(tmp_path.iterdir())  # no half-written temporary file either


# --- validation and cached labels -------------------------------------------------------------------------------

def test_validation_uses_no_augmentation_and_no_dropout(poses):
    model = tiny_net(dropout=0.5)
    model.train()  # mean_loss must switch to eval mode itself
    s = settings(batch_size=5)
    augmented_source = PersonCrops(poses, SIZE, AUG)  # even a source built with augmentation
    first = mean_loss(model, augmented_source, s)
    model.train()
    assert mean_loss(model, augmented_source, s) == first
    assert mean_loss(model, PersonCrops(poses, SIZE, Augmentation.none()), s) == pytest.approx(first, rel=1e-6)
    assert not model.training


def test_model_input_applies_each_crops_colour_noise_clipped_and_keeps_channels_last():
    crops = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    colour = np.array([[1.0, 1.0, 1.0, 0.0], [1.5, 0.5, 1.0, 20.0], [0.8, 1.2, 1.0, -60.0]], dtype=np.float32)
    x = model_input(torch.from_numpy(crops), torch.from_numpy(colour))
    expected = np.clip(crops * colour[:, None, None, :3] + colour[:, None, None, 3:], 0, 255) / 255.0
    assert x.shape == (3, 3, 8, 8) and x.is_contiguous(memory_format=torch.channels_last)
    assert np.allclose(x.permute(0, 2, 3, 1).numpy(), expected, atol=1e-6)
    no_noise = model_input(torch.from_numpy(crops), torch.from_numpy(colour[[0, 0, 0]]))
    assert torch.allclose(model_input(torch.from_numpy(crops)), no_noise, rtol=0, atol=1e-7)
    assert x.min() == 0.0 and x.max() == 1.0  # the gains and offsets here reach both clips


def test_batches_carry_uint8_crops_and_their_colour_and_inputs_make_the_float_batch(poses):
    source = PersonCrops(poses, SIZE, AUG)
    batch = next(batches(source, np.arange(5), 5, seed=3))
    items = [source.item(i, item_rng(3, 0, i)) for i in range(5)]
    assert batch.pixels.dtype == torch.uint8 and batch.pixels.shape == (5, SIZE, SIZE, 3)
    assert np.array_equal(batch.pixels.numpy(), np.stack([it.crop for it in items]))
    expected = model_input(torch.from_numpy(np.stack([it.crop for it in items])),
                           torch.from_numpy(np.stack([it.colour for it in items])))
    assert torch.equal(batch.inputs(), expected) and batch.inputs().dtype == torch.float32
    plain = next(batches(source, np.arange(5), 5))  # validation: no augmentation, no colour
    assert plain.colour is None and torch.equal(plain.inputs(), plain.pixels.permute(0, 3, 1, 2) / 255.0)


def test_model_input_is_the_data_pass_s_old_float_arithmetic_bit_for_bit():
    # until the crops reached the step as uint8, the data pass made the floats with NumPy's cast and then torch's
    # addcmul; a run must train on the same numbers now (the reciprocal's multiply, say, changes most of them)
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 256, (6, 9, 9, 3), dtype=np.uint8)
    crops[0, 0, :3] = [[0, 128, 255], [1, 2, 254], [17, 51, 201]]
    colour = np.concatenate([rng.uniform(0.8, 1.2, (6, 3)), rng.uniform(-51, 51, (6, 1))], 1).astype(np.float32)
    old = torch.from_numpy(crops.astype(np.float32))
    c = torch.from_numpy(colour) / 255.0
    rows = old.view(6, 9, 27)
    torch.addcmul(c[:, None, 3:], rows, c[:, None, :3].repeat(1, 1, 9), out=rows).clamp_(0.0, 1.0)
    assert torch.equal(model_input(torch.from_numpy(crops), torch.from_numpy(colour)),
                       old.permute(0, 3, 1, 2))
    plain = torch.from_numpy(crops.astype(np.float32)).div_(255.0).permute(0, 3, 1, 2)
    assert torch.equal(model_input(torch.from_numpy(crops)), plain)
    assert torch.equal(model_input(torch.from_numpy(crops).flip(1)), plain.flip(2))  # any strides
    floats = torch.from_numpy(crops.astype(np.float32))
    model_input(floats)
    assert np.array_equal(floats.numpy(), crops)  # the caller's tensor left alone


def test_training_items_depend_on_seed_epoch_and_index_only(poses):
    source = PersonCrops(poses, SIZE, AUG)
    order = epoch_order(len(source), seed=3, epoch=1, shuffle=True)
    assert sorted(order.tolist()) == list(range(len(source)))
    assert np.array_equal(order, epoch_order(len(source), seed=3, epoch=1, shuffle=True))
    assert not np.array_equal(order, epoch_order(len(source), seed=3, epoch=2, shuffle=True))
    by4 = [b for b in batches(source, order, 4, seed=3, epoch=1)]
    by16 = next(batches(source, order, 16, seed=3, epoch=1))
    for a, b in zip((torch.cat([x[i] for x in by4]) for i in range(4)), by16, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(torch.cat([b.inputs() for b in by4]), by16.inputs())
    other_epoch = next(batches(source, order, 16, seed=3, epoch=2))
    assert not torch.equal(other_epoch.pixels, by16.pixels)  # each epoch draws new augmentations


@pytest.mark.parametrize("seed, epoch, index", [(0, 0, 0), (1003, 159, 9999), (2**32, 1, 5), (7, 2, 2**40)])
def test_item_rng_is_the_documented_stream_for_small_and_huge_keys(seed, epoch, index):
    # the fast uint32 seeding must not change a training run's random draws, and keys past 32 bits still work
    expected = np.random.default_rng([seed, epoch, 1, index]).random(6)
    assert np.array_equal(item_rng(seed, epoch, index).random(6), expected)


def test_person_crops_remember_each_box_read_only_and_crop_as_a_fresh_source_does(poses):
    used, fresh = PersonCrops(poses, SIZE, AUG, box="person"), PersonCrops(poses, SIZE, AUG, box="person")
    first = [used.item(i, item_rng(3, 0, i)) for i in range(4)]
    again = [used.item(i, item_rng(3, 1, i)) for i in range(4)]  # boxes now come from the cache
    other = [fresh.item(i, item_rng(3, 1, i)) for i in range(4)]
    for a, b in zip(again, other, strict=True):
        assert np.array_equal(a.crop, b.crop) and np.array_equal(a.target, b.target)
    assert not np.array_equal(first[0].crop, again[0].crop)  # the epoch's augmentation, not a cached crop
    assert all(not box.flags.writeable for box in used._boxes.values()) and len(used._boxes) == 4


def test_prefetched_batches_are_the_same_batches_and_errors_still_surface(poses):
    source = PersonCrops(poses, SIZE, AUG)
    order = epoch_order(len(source), seed=3, epoch=1, shuffle=True)
    plain = list(batches(source, order, 4, seed=3, epoch=1))
    ahead = list(prefetched(batches(source, order, 4, seed=3, epoch=1)))
    assert len(ahead) == len(plain) > 1
    for a, b in zip(plain, ahead, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True)) and a.pixels.dtype == torch.uint8

    def failing():
        yield 1
        raise ValueError("bad image 7")

    got = prefetched(failing())
    assert next(got) == 1
    with pytest.raises(ValueError, match="bad image 7"):
        next(got)


@pytest.mark.parametrize("threads, processes, cores, device, expected", [
    (2, "1", 2, "cpu", False),  # this machine: both cores run the step, a helper would steal one
    (2, "1", 4, "cpu", True),
    (1, "2", 2, "cpu", False),  # torchrun's two CPU processes already fill two cores
    (4, "1", 2, "cuda", True),  # the step runs on the GPU: the CPU is free for data
])
def test_the_helper_thread_runs_only_where_it_has_a_core(monkeypatch, threads, processes, cores, device, expected):
    monkeypatch.setattr(crops_mod, "usable_cores", lambda: cores)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", processes)
    assert helper_has_a_core(torch.device(device)) is expected


@pytest.mark.parametrize("has_core", [True, False])
def test_training_uses_the_helper_thread_as_the_rule_says_and_learns_the_same(tmp_path, monkeypatch, poses, has_core):
    used = []
    real = train_mod.prefetched
    monkeypatch.setattr(train_mod, "prefetched", lambda items: used.append(1) or real(items))
    monkeypatch.setattr(train_mod, "helper_has_a_core", lambda device: has_core)
    model = tiny_net()
    fit(model, PersonCrops(poses, SIZE, AUG), None, settings(epochs=2), tmp_path / "s.pt", progress=False)
    assert len(used) == (2 if has_core else 0)
    monkeypatch.setattr(train_mod, "helper_has_a_core", lambda device: not has_core)
    other = tiny_net()
    fit(other, PersonCrops(poses, SIZE, AUG), None, settings(epochs=2), tmp_path / "t.pt", progress=False)
    assert_same_weights(state(model), state(other))


def test_training_never_mutates_the_cached_label_arrays(tmp_path, poses):
    assert not poses.joints.flags.writeable and not poses.visible.flags.writeable
    joints, visible = poses.joints.copy(), poses.visible.copy()
    per_sample = [poses[i].joints.copy() for i in range(len(poses))]
    source = PersonCrops(poses, SIZE, AUG)
    item = source.item(0, np.random.default_rng(0))
    assert not np.shares_memory(item.target, poses.joints)
    fit(tiny_net(), source, PersonCrops(poses.subset(range(4)), SIZE, AUG), settings(epochs=2), tmp_path / "s.pt",
        progress=False)
    assert np.array_equal(poses.joints, joints) and np.array_equal(poses.visible, visible)
    assert all(np.array_equal(poses[i].joints, per_sample[i]) for i in range(len(poses)))
    assert not poses.joints.flags.writeable and not poses.visible.flags.writeable


def test_l1_pose_loss_sums_absolute_errors_and_l2_stays_the_default():
    pred = torch.tensor([[0.1, -0.2] + [0.0] * 26])
    target = torch.zeros(1, 14, 2)
    weight = torch.ones(1, 14)
    assert float(pose_loss(pred, target, weight, "l1")) == pytest.approx(0.3)
    assert float(pose_loss(pred, target, weight)) == pytest.approx(0.05)
    weight[0, 0] = 0.0
    assert float(pose_loss(pred, target, weight, "l1")) == 0.0


def test_outside_image_marks_the_pixels_the_warp_fills():
    image = np.full((40, 30, 3), 200, np.uint8)
    rng = np.random.default_rng(5)
    for _ in range(5):  # shifted, scaled, rotated and flipped boxes that reach past the image's edges
        t = crop_transform(np.array([15.0, 20.0, 50.0, 50.0]), SIZE, Augmentation(shift=0.3, scale=0.3, rotate=30,
                                                                                  flip=True), rng)
        crop = warp_image(image, t.matrix, SIZE)
        outside = outside_image(t.matrix, SIZE, 40, 30)
        assert outside.any() and (~outside).any()
        # nearly every marked pixel is pure fill and every other pure image: only those at the edge blend
        assert (crop[outside].max(axis=-1) < 200).mean() > 0.9 and (crop[~outside].min(axis=-1) > 0).mean() > 0.9


def test_surround_fills_only_what_lies_outside_the_image_from_another_image(poses):
    plain = PersonCrops(poses, SIZE, Augmentation(shift=0.3, scale=0.3))
    surrounded = PersonCrops(poses, SIZE, Augmentation(shift=0.3, scale=0.3, surround=1.0))
    changed = 0
    for index in range(8):
        a, b = plain.item(index, item_rng(0, 0, index)), surrounded.item(index, item_rng(0, 0, index))
        np.testing.assert_array_equal(a.target, b.target)  # the labels and the person's pixels are untouched
        np.testing.assert_array_equal(a.weight, b.weight)
        t = crop_transform(plain._boxes[index], SIZE, plain.augment, item_rng(0, 0, index))
        sample = poses[index]
        outside = outside_image(t.matrix, SIZE, sample.height, sample.width)
        np.testing.assert_array_equal(a.crop[~outside], b.crop[~outside])
        changed += int((a.crop[outside] != b.crop[outside]).any())
    assert changed >= 4  # where the box reached past the image, the fill became another image's content
    # validation crops (no generator) never change
    np.testing.assert_array_equal(surrounded.item(0, None).crop, plain.item(0, None).crop)


def test_arm_weight_scales_only_the_visible_elbows_and_wrists_and_keeps_the_crops(poses):
    arms = list(joint_index("r_wrist", "r_elbow", "l_elbow", "l_wrist"))
    plain, weighted = PersonCrops(poses, SIZE, AUG), PersonCrops(poses, SIZE, AUG, arm_weight=2.5)
    for i in range(len(poses)):  # AUG flips about half of them: left and right arms swap, both weighted alike
        a, b = plain.item(i, item_rng(5, 0, i)), weighted.item(i, item_rng(5, 0, i))
        assert np.array_equal(a.crop, b.crop) and np.array_equal(a.target, b.target)
        expected = a.weight.copy()
        expected[arms] *= 2.5
        assert np.array_equal(b.weight, expected)
        assert set(np.unique(b.weight[arms])) <= {0.0, 2.5} and set(np.unique(np.delete(b.weight, arms))) <= {0, 1}
