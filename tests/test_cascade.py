"""The cascade and its classic bugs: boxes centred on the previous estimate, moves in IMAGE pixels, statistics from the
training set only, the one-hot loss weight that follows its joint under a flip, and a label-free stage 1.

Most tests use fake networks with a known output, so every expected pose is computed by hand; one module-scoped
smoke run checks where a real run takes its displacement statistics from.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from deeppose_lab import pipeline
from deeppose_lab import train as train_mod
from deeppose_lab.cascade import (
    Cascade,
    DisplacementStats,
    FrozenGraph,
    RefineCrops,
    diam_floors,
    displacement_stats,
    predict_stage1,
    refine,
)
from deeppose_lab.crops import box_views, view_count
from deeppose_lab.datasets import PoseDataset
from deeppose_lab.errors import ConfigError
from deeppose_lab.geometry import Augmentation, denormalise, image_box, make_box
from deeppose_lab.model import DeepPoseNet
from deeppose_lab.profiles import get_profile
from deeppose_lab.skeleton import NUM_JOINTS, flip_permutation, torso_diameter
from deeppose_lab.splits import load_data

SIZE = 48
# A plausible pose in box-normalised units (about [−0.5, 0.5]); joint order as in skeleton.JOINT_NAMES.
TEMPLATE = np.array([
    [-0.10, 0.45], [-0.10, 0.25], [-0.10, 0.05], [0.10, 0.05], [0.10, 0.25], [0.10, 0.45],
    [-0.30, 0.05], [-0.25, -0.10], [-0.15, -0.25], [0.15, -0.25], [0.25, -0.10], [0.30, 0.05],
    [0.00, -0.30], [0.00, -0.45],
])


class ArrayPoses(PoseDataset):
    """Images and labels given as arrays."""

    def __init__(self, images: list[np.ndarray], joints: np.ndarray, visible: np.ndarray | None = None) -> None:
        visible = np.ones(joints.shape[:2], bool) if visible is None else visible
        super().__init__([f"img{i}" for i in range(len(images))], joints, visible)
        self.images = images

    def load_image(self, i: int) -> np.ndarray:
        return self.images[i].copy()


class FixedNet(nn.Module):
    """A 'network' whose normalised output is the same (14, 2) array for every crop; checks its input."""

    def __init__(self, out: np.ndarray, size: int = SIZE) -> None:
        super().__init__()
        # a (frozen) parameter rather than a buffer: callers find the model's device from its parameters
        self.out = nn.Parameter(torch.as_tensor(np.asarray(out, np.float32).reshape(1, 2 * NUM_JOINTS)),
                                requires_grad=False)
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the cascade hands over its uint8 crops as they are: DeepPoseNet normalises them in one pass
        assert x.dtype == torch.uint8 and tuple(x.shape[1:]) == (3, self.size, self.size)
        return self.out.repeat(len(x), 1)


def noise_images(shapes=((90, 130), (150, 70), (64, 64))) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in shapes]


def poses_in(images: list[np.ndarray], scale: float = 0.8) -> np.ndarray:
    """TEMPLATE placed in each image's square box, each a little differently: (N, 14, 2) pixels."""
    out = []
    for k, img in enumerate(images):
        box = image_box(*img.shape[:2])
        out.append(denormalise(TEMPLATE * (scale - 0.1 * k), box) + [3.0 * k, -2.0 * k])
    return np.stack(out)


def side(pose: np.ndarray, sigma: float) -> np.ndarray:
    return sigma * torso_diameter(pose)


# --- (a), (b): refinement moves joints in image pixels ---------------------------------------------------------

def test_zero_output_leaves_every_joint_where_it_was():
    images = noise_images()
    previous = poses_in(images)
    previous[1, 6] = [-20.0, 160.0]  # an estimate outside the image is no special case
    data = ArrayPoses(images, previous + 7.0)  # labels elsewhere: refinement must not look at them
    out = refine(FixedNet(np.zeros((14, 2))), data, previous, sigma=2.0, size=SIZE)
    np.testing.assert_allclose(out, previous, atol=1e-4)


@pytest.mark.parametrize("sigma", [1.0, 1.5])
def test_a_fixed_normalised_output_moves_every_joint_by_that_times_sigma_diam_pixels(sigma):
    images = noise_images()
    previous = poses_in(images)
    diam = torso_diameter(previous)
    assert len(set(np.round(diam, 3))) == len(images) and not np.allclose(sigma * diam, SIZE)
    offset = np.array([0.1, -0.2])
    out = refine(FixedNet(np.tile(offset, (14, 1))), ArrayPoses(images, previous), previous, sigma, SIZE,
                 images_per_batch=2)
    expected = previous + offset * (sigma * diam)[:, None, None]
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_flip_averaged_refinement_cancels_a_sideways_bias_and_keeps_the_vertical_move():
    images = noise_images()
    previous = poses_in(images)
    side = 2.0 * torso_diameter(previous)
    out = refine(FixedNet(np.tile([0.1, -0.2], (14, 1))), ArrayPoses(images, previous), previous, 2.0, SIZE,
                 flip_test=True)
    # the mirror sees the same "0.1 to the right" as 0.1 to the left of the unmirrored crop: the two cancel
    expected = previous + np.array([0.0, -0.2]) * side[:, None, None]
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_joint_i_moves_by_output_i_only():
    images = noise_images()
    previous = poses_in(images)
    outputs = np.stack([np.arange(14) * 0.01, np.arange(14) * -0.02], axis=1)  # a different move per joint
    out = refine(FixedNet(outputs), ArrayPoses(images, previous), previous, 2.0, SIZE)
    expected = previous + outputs[None] * side(previous, 2.0)[:, None, None]
    np.testing.assert_allclose(out, expected, atol=1e-4)


# --- (f): the whole cascade ---------------------------------------------------------------------------------------

def test_cascade_predict_trajectory_by_hand():
    images = noise_images()
    data = ArrayPoses(images, poses_in(images))
    offset = np.array([0.05, 0.1])
    cascade = Cascade(FixedNet(TEMPLATE, 64), 64, [FixedNet(np.tile(offset, (14, 1)))] * 2, SIZE, sigma=1.5)
    poses = cascade.predict(data)
    assert poses.shape == (3, len(images), 14, 2)
    stage1 = np.stack([denormalise(TEMPLATE, image_box(*img.shape[:2])) for img in images])
    np.testing.assert_allclose(poses[0], stage1, atol=1e-4)  # N⁻¹ of the output in the square image box
    for s in (1, 2):
        step = offset * side(poses[s - 1], 1.5)[:, None, None]
        np.testing.assert_allclose(poses[s], poses[s - 1] + step, atol=1e-4)
    assert cascade.predict(data, stages=2).shape == (2, len(images), 14, 2)
    np.testing.assert_allclose(cascade.predict(data, stages=1)[0], stage1, atol=1e-4)


def test_a_user_box_is_squared_like_the_training_boxes():
    images = noise_images()
    data = ArrayPoses(images, poses_in(images))
    tall = np.array([make_box(60, 45, 30, 80), make_box(35, 75, 50, 100), make_box(32, 32, 40, 20)])
    out = predict_stage1(FixedNet(TEMPLATE, 64), data, 64, boxes=tall)
    squared = [make_box(b[0], b[1], max(b[2:]), max(b[2:])) for b in tall]
    np.testing.assert_allclose(out, np.stack([denormalise(TEMPLATE, b) for b in squared]), atol=1e-4)


def test_inference_uses_no_labels():
    images = noise_images()
    a = ArrayPoses(images, poses_in(images))
    b = ArrayPoses(images, poses_in(images, scale=0.3)[::-1] * 1.3 + 25.0, np.zeros((3, 14), bool))
    torch.manual_seed(0)
    stage1 = DeepPoseNet(input_size=SIZE, width=0.125, dropout=0.5)
    refiner = DeepPoseNet(input_size=SIZE, width=0.125, dropout=0.5)
    cascade = Cascade(stage1, SIZE, [refiner], SIZE, sigma=2.0)
    pa, pb = cascade.predict(a), cascade.predict(b)
    assert pa.shape == (2, 3, 14, 2) and np.all(np.isfinite(pa))
    np.testing.assert_array_equal(pa[0], pb[0])  # stage 1: whole-image box, no labels
    np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(pa[0], predict_stage1(stage1, a, SIZE))  # eval mode: dropout is off
    fake = Cascade(FixedNet(TEMPLATE), SIZE, [FixedNet(np.full((14, 2), 0.1))], SIZE, sigma=2.0)
    np.testing.assert_array_equal(fake.predict(a), fake.predict(b))



def test_bf16_inference_is_close_to_fp32_and_really_runs_in_bf16():
    images = noise_images()
    data = ArrayPoses(images, poses_in(images))
    torch.manual_seed(0)
    stage1, refiner = (DeepPoseNet(input_size=SIZE, width=0.125, dropout=0.5, lrn=True) for _ in range(2))
    fp32 = Cascade(stage1, SIZE, [refiner], SIZE, sigma=2.0).predict(data)
    bf16 = Cascade(stage1, SIZE, [refiner], SIZE, sigma=2.0, bf16=True).predict(data)
    assert not np.array_equal(fp32, bf16)  # the flag reaches the networks
    assert np.abs(fp32 - bf16).max() < 1.0  # pixels: bf16 keeps about three significant digits

# --- (c), (e): training crops of a refinement stage ---------------------------------------------------------------

def zero_stats(mean: np.ndarray | None = None, var: float = 1e-12) -> DisplacementStats:
    mean = np.zeros((14, 2)) if mean is None else mean
    return DisplacementStats(mean, np.tile(np.eye(2) * var, (14, 1, 1)), np.full(14, 10))


def test_validation_crop_is_centred_on_the_previous_estimate():
    joint = 6
    image = np.zeros((100, 120, 3), np.uint8)
    previous = denormalise(TEMPLATE, make_box(60, 50, 80, 80))
    previous[joint] = [40.5, 30.5]  # a pixel centre
    image[29:32, 39:42] = 255  # a 3×3 bright dot centred there
    true = previous + [10.0, -7.0]
    sigma = SIZE / torso_diameter(previous)  # crop scale 1: the box is SIZE pixels wide
    data = ArrayPoses([image], true[None])
    crops = RefineCrops(data, previous[None], zero_stats(), sigma, SIZE, 1, Augmentation.none(), simulate=False)
    assert len(crops) == 14
    item = crops.item(joint, None)
    w = item.crop.astype(np.float64).sum(axis=2)
    assert w.sum() > 0
    rows, cols = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    assert (w * cols).sum() / w.sum() == pytest.approx(SIZE / 2, abs=0.05)
    assert (w * rows).sum() / w.sum() == pytest.approx(SIZE / 2, abs=0.05)
    np.testing.assert_allclose(item.target[joint], np.array([10.0, -7.0]) / SIZE, atol=1e-6)
    assert item.weight.tolist() == [1.0 if j == joint else 0.0 for j in range(14)]


def test_simulated_boxes_are_centred_on_the_true_joint_plus_the_mean_displacement():
    images = noise_images()
    true = poses_in(images)
    previous = true * 1.1 - 4.0  # stage s−1's estimate: another torso size than the labels
    crops = RefineCrops(ArrayPoses(images, true), previous, zero_stats(), 2.0, SIZE, 3, Augmentation.none())
    assert len(crops) == 3 * 14 * 3
    for n in range(3):
        for joint in (0, 6, 13):
            for b in range(3):
                item = crops.item((n * 14 + joint) * 3 + b, np.random.default_rng(b))
                np.testing.assert_allclose(item.target[joint], 0.0, atol=1e-5)
                assert np.flatnonzero(item.weight).tolist() == [joint]
    # a known mean displacement δ (in σ·diam units of the PREVIOUS pose): the box centre is y_i + δ·side
    mean = np.zeros((14, 2))
    mean[6] = [0.1, -0.05]
    crops = RefineCrops(ArrayPoses(images, true), previous, zero_stats(mean), 2.0, SIZE, 1, Augmentation.none())
    item = crops.item(1 * 14 + 6, None)
    s = side(previous[1], 2.0)
    expected = (true[1] - (true[1, 6] + mean[6] * s)) / s  # N(y; b) for every joint in that box
    np.testing.assert_allclose(item.target, expected, atol=1e-6)
    np.testing.assert_allclose(item.target[6], -mean[6], atol=1e-6)


def test_hidden_joints_get_no_weight():
    images = noise_images()
    true = poses_in(images)
    visible = np.ones((3, 14), bool)
    visible[0, 6] = False
    crops = RefineCrops(ArrayPoses(images, true, visible), true, zero_stats(), 2.0, SIZE, 1,
                        Augmentation(flip=True))
    for seed in range(6):
        assert not crops.item(6, np.random.default_rng(seed)).weight.any()
    unmasked = RefineCrops(ArrayPoses(images, true, visible), true, zero_stats(), 2.0, SIZE, 1,
                           Augmentation.none(), mask_hidden=False)
    assert unmasked.item(6, None).weight[6] == 1.0


def test_the_one_hot_weight_follows_its_joint_under_a_flip():
    images = noise_images()
    true = poses_in(images)
    crops = RefineCrops(ArrayPoses(images, true), true, zero_stats(), 2.0, SIZE, 1, Augmentation(flip=True))
    perm = flip_permutation()
    for joint in (0, 6, 8, 12):
        seen = set()
        for seed in range(16):
            item = crops.item(14 + joint, np.random.default_rng(seed))
            (k,) = np.flatnonzero(item.weight)
            seen.add(int(k))
            # the weighted output is the one whose target is the crop centre, i.e. the joint the box was made for
            np.testing.assert_allclose(item.target[k], 0.0, atol=1e-5)
        assert seen == {joint, int(perm[joint])}  # both unflipped and flipped crops were drawn


def test_others_weigh_every_visible_joint_the_crop_shows_and_no_other():
    images = noise_images()
    true = poses_in(images)
    for flip in (False, True):
        crops = RefineCrops(ArrayPoses(images, true), true, zero_stats(), 2.0, SIZE, 1, Augmentation(flip=flip),
                            others=0.25)
        for joint in (0, 6, 12):
            for seed in range(4):
                item = crops.item(14 + joint, np.random.default_rng(seed))
                inside = (np.abs(item.target) <= 0.5).all(axis=-1)
                own = np.isclose(np.abs(item.target).max(axis=-1), 0.0, atol=1e-5)  # the box's joint: its centre
                assert item.weight.tolist() == np.where(own, 1.0, 0.25 * inside).tolist()
                assert own.sum() == 1 and inside.sum() > 1 and not inside.all()
    visible = np.ones((3, 14), bool)
    visible[1, 7] = False
    crops = RefineCrops(ArrayPoses(images, true, visible), true, zero_stats(), 1.0, SIZE, 1, Augmentation.none(),
                        others=1.0)
    item = crops.item(14 + 6, None)
    assert item.weight[6] == 1 and item.weight[7] == 0 and (np.abs(item.target[7]) <= 0.5).all()  # hidden: never
    only = RefineCrops(ArrayPoses(images, true), true, zero_stats(), 1.0, SIZE, 1, Augmentation.none())
    assert np.flatnonzero(only.item(14 + 6, None).weight).tolist() == [6]  # the paper's: joint i only


# --- (d): displacement statistics -------------------------------------------------------------------------------

def test_displacement_stats_are_in_sigma_diam_units_of_the_previous_pose():
    rng = np.random.default_rng(1)
    n, sigma = 40, 1.5
    diam = rng.uniform(20, 80, n)
    pred = np.zeros((n, 14, 2))
    pred[:] = rng.uniform(-30, 30, (n, 14, 2)) + 100
    pred[:, 9] = pred[:, 2] + np.stack([diam * 0.6, -diam * 0.8], axis=1)  # |l_shoulder − r_hip| = diam
    np.testing.assert_allclose(torso_diameter(pred), diam)
    true_mean = rng.normal(0, 0.1, (14, 2))
    d = true_mean + rng.normal(0, 1, (n, 14, 2)) * [0.05, 0.12]  # displacements in σ·diam units
    true = pred - d * (sigma * diam)[:, None, None]
    visible = np.ones((n, 14), bool)
    visible[:5, 3] = False
    true[:5, 3] = -1e6  # hidden LSP-extended joints can hold anything; they must not enter the fit
    visible[:, 13] = False
    visible[0, 13] = True  # a single example: too few to fit
    true[5:8, 4] = pred[5:8, 4] - 3.0 * sigma * diam[5:8, None]  # far outside their boxes: stage s cannot see them
    d[5:8, 4] = 3.0
    usable = visible & (np.abs(d) <= 0.5).all(axis=-1)
    assert not usable[5:8, 4].any()
    stats = displacement_stats(pred, true, visible, sigma)
    for j in range(13):
        dj = d[usable[:, j], j]
        np.testing.assert_allclose(stats.mean[j], dj.mean(axis=0), atol=1e-4)
        np.testing.assert_allclose(stats.cov[j], np.cov(dj, rowvar=False), atol=1e-5)
    assert stats.count.tolist() == usable.sum(axis=0).tolist()
    np.testing.assert_allclose(stats.mean[13], 0.0)
    np.testing.assert_allclose(stats.cov[13], np.eye(2) * 0.01)
    # symmetric displacements by hand: mean m, covariance diag(2a²/3, 2b²/3) (four samples, unbiased)
    a, b, m = 0.2, 0.1, np.array([0.05, -0.03])
    d4 = m + np.array([[a, 0], [-a, 0], [0, b], [0, -b]])
    pred4 = np.repeat(pred[:1], 4, axis=0)
    true4 = pred4 - d4[:, None, :] * sigma * diam[0]
    stats4 = displacement_stats(pred4, true4, np.ones((4, 14), bool), sigma)
    np.testing.assert_allclose(stats4.mean, np.tile(m, (14, 1)), atol=1e-12)
    np.testing.assert_allclose(stats4.cov[0], np.diag([2 * a * a / 3, 2 * b * b / 3]), atol=1e-5)
    payload = DisplacementStats.from_payload(stats.to_payload())
    np.testing.assert_array_equal(payload.mean, stats.mean)
    np.testing.assert_array_equal(payload.cov, stats.cov)


def cpu_only(mp: pytest.MonkeyPatch) -> None:
    """One device for the run and the checks, so recomputed statistics match to float precision."""
    mp.setattr(train_mod, "default_device", lambda: torch.device("cpu"), raising=False)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    profile = get_profile("smoke", epochs=1, refine_epochs=1, stages=2, synthetic_train=24, synthetic_test=8,
                          val_images=4)
    run_dir = tmp_path_factory.mktemp("smoke_run")
    with pytest.MonkeyPatch.context() as mp:
        cpu_only(mp)
        pipeline.train_run(run_dir, profile, "synthetic", progress=False, log=lambda msg: None)
    return run_dir, profile


def test_stage2_statistics_come_from_the_training_set(smoke_run):
    run_dir, profile = smoke_run
    splits = load_data("synthetic", profile)
    model1, _ = pipeline.load_stage(run_dir, 1)

    def stats_on(data: PoseDataset) -> DisplacementStats:
        pose = predict_stage1(model1, data, profile.stage1.input_size, flip_test=profile.flip_test)
        return displacement_stats(pose, data.joints, data.visible, profile.sigma, diam_floors(data))

    stored = pipeline.stage_stats(run_dir, 2)
    on_train, on_test = stats_on(splits.train), stats_on(splits.test)
    np.testing.assert_allclose(stored.mean, on_train.mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stored.cov, on_train.cov, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(stored.count, on_train.count)
    assert not np.allclose(stored.mean, on_test.mean, rtol=1e-3, atol=1e-4)
    assert stored.count.max() <= len(splits.train)


@pytest.mark.parametrize("init", ["previous", "scratch"])
def test_a_refiner_starts_from_the_previous_stage_only_when_asked(init, tmp_path, monkeypatch):
    cpu_only(monkeypatch)
    profile = get_profile("smoke", refine_init=init, synthetic_train=4, synthetic_test=2)
    profile = profile.replace(refiner=dataclasses.replace(profile.refiner, epochs=0))  # its starting weights only
    splits = load_data("synthetic", profile)
    torch.manual_seed(1)
    previous = profile.stage1.build_model()
    pose = predict_stage1(previous, splits.train, profile.stage1.input_size)
    floors = diam_floors(splits.train)
    model, _ = pipeline.train_refiner(tmp_path, profile, 2, previous, splits.train, pose, floors, splits.train, pose,
                                  floors, progress=False)
    same = [torch.equal(a, b) for a, b in zip(model.state_dict().values(), previous.state_dict().values(), strict=True)]
    assert all(same) if init == "previous" else not any(same[:1])


def test_refine_init_previous_needs_the_same_network_shape():
    with pytest.raises(ValueError, match="refine_init=previous"):
        get_profile("classroom", refine_input_size=80)  # conv5 pools to 2×2 at 80 px, 3×3 at 112
    assert get_profile("classroom", refine_input_size=80, refine_init="scratch").refiner.input_size == 80


def test_a_finished_run_predicts_and_is_not_retrained(smoke_run, monkeypatch):
    run_dir, profile = smoke_run
    splits = load_data("synthetic", profile)
    cascade = pipeline.load_cascade(run_dir)
    poses = cascade.predict(splits.test)
    assert poses.shape == (2, 8, 14, 2) and np.all(np.isfinite(poses))
    assert not np.array_equal(poses[0], poses[1])  # stage 2 moved the joints

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished stage was trained again")

    monkeypatch.setattr(train_mod, "run_epoch", must_not_run)
    cpu_only(monkeypatch)
    again = pipeline.train_run(run_dir, profile, "synthetic", progress=False, log=lambda msg: None)
    np.testing.assert_array_equal(again.predict(splits.test), poses)


class BrightestPixel(torch.nn.Module):
    """A mirror-consistent 'network': right joints 0.1 right of the brightest pixel, left joints 0.1 left of it."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        flat = x.sum(dim=1).view(b, -1).argmax(dim=1)
        u = ((flat % w).float() + 0.5) / w - 0.5
        v = ((flat // w).float() + 0.5) / h - 0.5
        joints = torch.stack([u, v], dim=-1)[:, None, :].repeat(1, 14, 1)
        side = torch.zeros(14)
        side[[0, 1, 2, 6, 7, 8]], side[[3, 4, 5, 9, 10, 11]] = 0.1, -0.1
        joints[..., 0] += side
        return joints.reshape(b, 28)


def test_flip_averaging_maps_the_mirrored_prediction_back():
    from deeppose_lab.cascade import run_model

    crops = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    for k, (row, col) in enumerate([(9, 5), (20, 25), (3, 17)]):
        crops[k, row, col] = 255  # a dot per crop, the first left of centre and above it
    model = BrightestPixel()
    plain = run_model(model, crops)
    averaged = run_model(model, crops, batch_size=2, flip_test=True)  # two chunks: halves must not mix
    # The mirrored crop's answer, negated in x AND relabelled left/right, is the same pose again; leaving out
    # either step moves the right joints 0.1 the wrong way.
    np.testing.assert_allclose(averaged, plain, atol=1e-6)
    np.testing.assert_allclose(plain[0, 0], [(5 + 0.5) / 32 - 0.5 + 0.1, (9 + 0.5) / 32 - 0.5], atol=1e-6)


def test_with_mirrors_appends_each_crop_mirrored_left_to_right():
    from deeppose_lab.cascade import with_mirrors

    crops = np.random.default_rng(0).integers(0, 256, (5, 7, 9, 3), dtype=np.uint8)
    both = with_mirrors(crops[::2])  # a strided batch too
    np.testing.assert_array_equal(both, np.concatenate([crops[::2], crops[::2, :, ::-1]]))
    assert with_mirrors(crops[:0]).shape == (0, 7, 9, 3)


def test_box_views_scale_and_move_the_test_box_by_fractions_of_its_side():
    box = make_box(100.0, 80.0, 60.0, 60.0)
    assert [len(box_views(box, s, d)) for s, d in ((0, 0), (0.1, 0), (0, 0.06), (0.1, 0.06))] == [1, 3, 5, 15]
    np.testing.assert_array_equal(box_views(box)[0], box)
    views = box_views(box, 0.1, 0.05)
    np.testing.assert_array_equal(views[0], box)  # the one box first, as without views
    assert sorted({round(v[2], 6) for v in views}) == [54.0, 60.0, 66.0] and np.all(views[:, 2] == views[:, 3])
    big = views[views[:, 2] > 65]  # the 1.1 box moved by 0.05 of ITS side, 3.3 px, each way along x and y
    np.testing.assert_allclose(sorted(big[:, 0]), [96.7, 100, 100, 100, 103.3])
    np.testing.assert_allclose(sorted(big[:, 1]), [76.7, 80, 80, 80, 83.3])
    with pytest.raises(ValueError, match="scale"):
        box_views(box, 1.0, 0.0)


class WildFirstCrop(FixedNet):
    """FixedNet, except that the first crop of every call is answered 10 box sides away: one wild view."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x).clone()
        out[0] += 10.0
        return out


def test_stage1_views_map_each_view_back_and_keep_the_median():
    images = noise_images()
    offset = np.tile([0.1, -0.2], (14, 1))
    data = ArrayPoses(images, np.zeros((len(images), 14, 2)))
    one_box = predict_stage1(FixedNet(offset), data, SIZE)
    for views in ((0.1, 0.0), (0.0, 0.06), (0.1, 0.06)):
        # a fixed output lands at centre + output × side in each view: views symmetric about the box have the one
        # box's answer as their median (a view mapped back through another view's matrix would not)
        np.testing.assert_allclose(predict_stage1(FixedNet(offset), data, SIZE, views=views), one_box, atol=1e-4)
    # one image a call (batch 15): the wild answer is one view of each image; a mean would move every joint 2/3 of
    # the box's side, the median not at all
    wild = predict_stage1(WildFirstCrop(offset), data, SIZE, batch_size=15, views=(0.1, 0.06))
    np.testing.assert_allclose(wild, one_box, atol=1e-4)


def test_refiner_views_move_each_joint_to_the_median_of_its_own_views():
    images = noise_images()
    previous = poses_in(images)
    outputs = np.stack([np.arange(14) * 0.01, np.arange(14) * -0.02], axis=1)  # a different move per joint
    data = ArrayPoses(images, previous)
    one_box = refine(FixedNet(outputs), data, previous, 1.5, SIZE)
    for views, images_per_batch in (((0.1, 0.0), 4), ((0.0, 0.06), 2), ((0.1, 0.06), 1), ((0.1, 0.06), 4)):
        # views symmetric about each joint's box have its one-box move as their median, if every view is mapped
        # back through its own matrix and read at its own joint's output, and each image's crops stay its own
        moved = refine(FixedNet(outputs), data, previous, 1.5, SIZE, images_per_batch=images_per_batch, views=views)
        np.testing.assert_allclose(moved, one_box, atol=1e-4)
    # the network sees 56 crops a call: the first of each call (four joints' single views) answers wildly
    wild = refine(WildFirstCrop(outputs), data, previous, 1.5, SIZE, views=(0.1, 0.06), flip_test=True)
    np.testing.assert_allclose(wild, refine(FixedNet(outputs), data, previous, 1.5, SIZE, flip_test=True), atol=1e-4)


def test_a_cascade_takes_its_refiner_views_from_the_profile_unless_told_otherwise(smoke_run):
    run_dir, _ = smoke_run
    assert pipeline.load_cascade(run_dir).refine_views == (0.0, 0.0)  # smoke: one box
    viewing = run_dir.parent / "refine_viewing"
    shutil.copytree(run_dir, viewing, dirs_exist_ok=True)
    meta = pipeline.read_run(run_dir)
    for key in ("refine_view_scale", "refine_view_shift"):  # a run from before the fields: its one box
        del meta["profile"][key]
    (viewing / "run.json").write_text(json.dumps(meta))
    assert pipeline.load_cascade(viewing).refine_views == (0.0, 0.0)
    meta["profile"].update(refine_view_scale=0.1, refine_view_shift=0.06)
    (viewing / "run.json").write_text(json.dumps(meta))
    cascade = pipeline.load_cascade(viewing)
    assert cascade.refine_views == (0.1, 0.06) and cascade.stage1_views == (0.0, 0.0)
    assert pipeline.load_cascade(viewing, refine_views=(0, 0)).refine_views == (0.0, 0.0)
    assert pipeline.load_cascade(viewing, views=(0.1, 0)).refine_views == (0.1, 0.06)  # --views is stage 1's
    with pytest.raises(ConfigError, match="refine_view_shift"):
        pipeline.load_cascade(run_dir, refine_views=(0.1, 1.0))


def test_a_cascade_takes_its_views_from_the_profile_unless_told_otherwise(smoke_run):
    run_dir, _ = smoke_run
    meta = pipeline.read_run(run_dir)
    assert pipeline.load_cascade(run_dir).stage1_views == (0.0, 0.0)
    viewing = run_dir.parent / "viewing"
    shutil.copytree(run_dir, viewing, dirs_exist_ok=True)
    meta["profile"].update(view_scale=0.1, view_shift=0.06)
    (viewing / "run.json").write_text(json.dumps(meta))
    assert pipeline.load_cascade(viewing).stage1_views == (0.1, 0.06)
    assert pipeline.load_cascade(viewing, views=(0, 0)).stage1_views == (0.0, 0.0)
    assert pipeline.load_cascade(run_dir, views=(0.2, 0)).stage1_views == (0.2, 0.0)
    with pytest.raises(ConfigError, match="view_scale"):
        pipeline.load_cascade(run_dir, views=(1.0, 0))
    assert view_count(*pipeline.load_cascade(viewing).stage1_views) == 15


def test_bf16_copies_follow_new_weights_and_leave_the_network_alone():
    images = noise_images()
    data = ArrayPoses(images, poses_in(images))
    torch.manual_seed(0)
    stage1 = DeepPoseNet(input_size=SIZE, width=0.125, dropout=0.5)
    cascade = Cascade(stage1, SIZE, [], SIZE, sigma=2.0, bf16=True)
    before = cascade.predict(data)
    assert all(p.dtype == torch.float32 for p in stage1.parameters())  # the caller's network is not cast
    assert cascade.runnable(stage1).features.conv1.weight.dtype == torch.bfloat16  # cast once, not per call
    other = DeepPoseNet(input_size=SIZE, width=0.125, dropout=0.5)
    stage1.load_state_dict(other.state_dict())  # new weights, same object
    after = cascade.predict(data)
    np.testing.assert_allclose(after, Cascade(other, SIZE, [], SIZE, sigma=2.0, bf16=True).predict(data))
    assert not np.allclose(before, after)


def test_bf16_copies_follow_new_batchnorm_statistics():
    """BatchNorm's running statistics are buffers, folded into the bf16 copy: new ones (a training-mode forward
    changes them, no parameter) must remake it."""
    images = noise_images()
    data = ArrayPoses(images, poses_in(images))
    torch.manual_seed(0)
    net = DeepPoseNet(input_size=SIZE, width=0.125, dropout=0.5, batchnorm=True).eval()
    cascade = Cascade(net, SIZE, [], SIZE, sigma=2.0, bf16=True)
    before = cascade.predict(data)
    with torch.no_grad():
        net.train()(torch.rand(8, 3, SIZE, SIZE) * 3)  # moves every running mean and variance
    net.eval()
    after = cascade.predict(data)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, Cascade(net, SIZE, [], SIZE, sigma=2.0, bf16=True).predict(data))


needs_c_compiler = pytest.mark.skipif(not any(shutil.which(cc) for cc in ("cc", "gcc", "clang")),
                                      reason="torch.compile's CPU back end needs a C compiler")


@pytest.fixture
def fresh_dynamo():
    """Dynamo compiles a function's code at most ``recompile_limit`` (8) times, then runs it eager: a frozen graph
    is one entry per network, so each compiling test starts from an empty cache."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@needs_c_compiler
def test_a_compiled_cascade_predicts_what_the_eager_one_does(fresh_dynamo):
    images = noise_images()
    data = ArrayPoses(images, poses_in(images))
    torch.manual_seed(0)
    stage1 = DeepPoseNet(input_size=SIZE, width=0.125, dropout=0.5, lrn=True).eval()  # LRN: the fused layer
    refiner = DeepPoseNet(input_size=SIZE, width=0.125, dropout=0.5, lrn=True).eval()
    eager = Cascade(stage1, SIZE, [refiner], SIZE, sigma=2.0, flip_test=True)
    compiled = Cascade(stage1, SIZE, [refiner], SIZE, sigma=2.0, flip_test=True, compile=True)
    assert compiled.runnable(stage1) is not stage1 and compiled.runnable(stage1) is compiled.runnable(stage1)
    np.testing.assert_allclose(compiled.predict(data), eager.predict(data), atol=1e-3)  # pixels
    np.testing.assert_allclose(compiled.predict(data.subset(range(1))), eager.predict(data.subset(range(1))),
                               atol=1e-3)  # another batch size: the same graph (dynamo compiles a batch of 1 apart)


@needs_c_compiler
@pytest.mark.parametrize("bf16", [False, True])
def test_a_compiled_cascade_follows_new_weights_and_keeps_two_alike_networks_apart(bf16, fresh_dynamo):
    """Compiling freezes the weights into the graph (``Cascade.runnable``): a network given new weights must be
    compiled again, and two networks of one shape (stage 2 and 3) must not share one frozen graph."""
    images = noise_images()
    data = ArrayPoses(images, poses_in(images))
    torch.manual_seed(0)
    nets = [DeepPoseNet(input_size=SIZE, width=0.125, dropout=0.5).eval() for _ in range(3)]
    compiled = Cascade(nets[0], SIZE, nets[1:], SIZE, sigma=2.0, bf16=bf16, compile=True)
    eager = Cascade(nets[0], SIZE, nets[1:], SIZE, sigma=2.0, bf16=bf16)
    pixels = 0.1 if bf16 else 1e-3  # a compiled bf16 graph rounds in other places than eager bf16
    np.testing.assert_allclose(compiled.predict(data), eager.predict(data), atol=pixels)
    before = compiled.predict(data)
    nets[2].load_state_dict(DeepPoseNet(input_size=SIZE, width=0.125, dropout=0.5).state_dict())  # same object
    after = compiled.predict(data)
    np.testing.assert_allclose(after, eager.predict(data), atol=pixels)
    assert not np.allclose(before[2], after[2]) and np.allclose(before[:2], after[:2])


@needs_c_compiler
def test_a_frozen_graph_holds_its_weights_as_constants(fresh_dynamo):
    """What makes the compiled cascade faster: the weights frozen into the graph, not read from the module (a
    ``torch.compile`` option that is silently ignored would leave them live, and this test would fail)."""
    torch.manual_seed(0)
    frozen = FrozenGraph(DeepPoseNet(input_size=SIZE, width=0.125, dropout=0.5).eval())
    x = torch.rand(3, 3, SIZE, SIZE)
    with torch.no_grad():
        first = frozen(x)
        for p in frozen.parameters():
            p.data.zero_()  # behind the graph's back
        assert torch.equal(frozen(x), first)
