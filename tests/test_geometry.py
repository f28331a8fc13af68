"""Boxes, N and N⁻¹, the one-matrix crop, flips and augmentation (the classic DeepPose geometry bugs).

Every test is built so that the classic bug it names gives a different answer: an off-by-crop-offset or
off-by-scale uncrop, a lost x/y scale, a flip without relabelling, a warp whose pixels disagree with its
joints, validation with random augmentation, labels changed in place.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deeppose_lab import geometry as g
from deeppose_lab.skeleton import (
    FLIP,
    FLIP_PAIRS,
    JOINT_NAMES,
    NUM_JOINTS,
    TORSO_PAIR,
    flip_permutation,
    torso_diameter,
)

# A person about 100 px tall, standing in a 160×120 (h×w) picture, in internal pixel coordinates.
POSE = np.array(
    [
        [48, 140], [49, 110], [50, 80], [66, 80], [67, 110], [68, 140],
        [35, 85], [38, 62], [45, 42], [71, 42], [78, 62], [81, 85],
        [58, 36], [58, 18],
    ],
    dtype=np.float64,
) + 0.25
ALL_VISIBLE = np.ones(NUM_JOINTS, dtype=bool)
R_WRIST, L_WRIST = JOINT_NAMES.index("r_wrist"), JOINT_NAMES.index("l_wrist")


def unflip(points: np.ndarray, t: g.CropTransform) -> np.ndarray:
    """Undo the left/right relabelling of a flipped crop (the permutation is its own inverse)."""
    return points[flip_permutation()] if t.flipped else points


def roundtrip(joints: np.ndarray, box: np.ndarray, size: int, aug: g.Augmentation,
              rng: np.random.Generator | None) -> tuple[np.ndarray, g.CropTransform]:
    """Image → crop → N-space → back to the image, the way training targets and predictions travel."""
    t = g.crop_transform(box, size, aug, rng)
    moved, _ = g.transform_joints(t, joints, ALL_VISIBLE)
    back = g.uncrop_joints(g.crop_to_normalised(moved, size), t.matrix, size)
    return unflip(back, t), t


def bright_spot(crop: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre (x, y) of a crop's red channel, in continuous pixel coordinates."""
    w = crop[..., 0].astype(np.float64)
    rows, cols = np.mgrid[0:crop.shape[0], 0:crop.shape[1]] + 0.5
    return np.array([(w * cols).sum(), (w * rows).sum()]) / w.sum()


def single_pixel_image(h: int, w: int, row: int, col: int) -> np.ndarray:
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[row, col] = 255
    return img


# --- skeleton facts the geometry relies on ---------------------------------------------------------

def test_flip_permutation_swaps_left_and_right_names():
    perm = flip_permutation()
    assert np.array_equal(perm[perm], np.arange(NUM_JOINTS))  # flipping labels twice is the identity
    for i, name in enumerate(JOINT_NAMES):
        mirrored = name.replace("r_", "x_").replace("l_", "r_").replace("x_", "l_")
        assert JOINT_NAMES[perm[i]] == mirrored
    assert len({j for pair in FLIP_PAIRS for j in pair}) == 12  # neck and head top stay put
    assert np.array_equal(FLIP, perm) and not FLIP.flags.writeable  # the shared copy cannot be scribbled on


def test_torso_diameter_is_left_shoulder_to_right_hip():
    assert [JOINT_NAMES[j] for j in TORSO_PAIR] == ["l_shoulder", "r_hip"]
    pose = np.zeros((NUM_JOINTS, 2))
    pose[JOINT_NAMES.index("l_shoulder")] = [3.0, 0.0]
    pose[JOINT_NAMES.index("r_hip")] = [0.0, 4.0]
    pose[JOINT_NAMES.index("r_shoulder")] = [100.0, 100.0]  # the other diagonal must not count
    assert torso_diameter(pose) == pytest.approx(5.0)
    assert torso_diameter(np.stack([pose, 2 * pose])).tolist() == pytest.approx([5.0, 10.0])


# --- boxes and N -------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [(0, 10), (10, 0), (-5, 10), (float("nan"), 10), (10, float("inf"))])
def test_make_box_refuses_empty_or_non_finite_sizes(bad):
    with pytest.raises(ValueError, match="positive size"):
        g.make_box(0.0, 0.0, *bad)


def test_box_from_corners_and_square_box():
    box = g.box_from_corners(10, 20, 50, 120)
    assert box.tolist() == [30, 70, 40, 100]
    assert g.square_box(box).tolist() == [30, 70, 100, 100]


def test_normalise_inverse_roundtrip():
    box = g.make_box(53.2, 81.7, 37.0, 91.0)
    assert np.allclose(g.denormalise(g.normalise(POSE, box), box), POSE, atol=1e-12)
    u = np.random.default_rng(0).uniform(-1, 1, size=(5, NUM_JOINTS, 2))
    assert np.allclose(g.normalise(g.denormalise(u, box), box), u, atol=1e-12)


def test_normalise_keeps_separate_x_and_y_scales():
    box = g.make_box(100.0, 50.0, 40.0, 100.0)  # tall, not square
    corners = np.array([[80.0, 0.0], [120.0, 100.0], [100.0, 50.0]])
    assert np.allclose(g.normalise(corners, box), [[-0.5, -0.5], [0.5, 0.5], [0.0, 0.0]])
    # the crop matrix agrees with N for the same non-square box: one scale per axis
    m = g.box_to_crop(box, 64)
    assert np.allclose(m[:2, :2], np.diag([64 / 40, 64 / 100]))
    assert np.allclose(g.crop_to_normalised(g.apply_affine(m, POSE), 64), g.normalise(POSE, box))
    assert np.allclose(g.uncrop_joints(g.normalise(POSE, box), m, 64), POSE)


def test_box_to_crop_closed_form_is_the_product_it_stands_for():
    box = g.make_box(37.0, -12.5, 40.0, 90.0)  # non-square, off-image
    for degrees in (0.0, 17.0, -90.0, 180.0):
        about = g.translation(37.0, -12.5) @ g.rotation(degrees) @ g.translation(-37.0, 12.5)
        product = g.translation(28, 28) @ g.scaling(56 / 40, 56 / 90) @ g.translation(-37.0, 12.5) @ about
        assert np.allclose(g.box_to_crop(box, 56, degrees), product, atol=1e-12)


def test_normalised_crop_conversions_are_inverse():
    u = np.array([[-0.5, -0.5], [0.0, 0.0], [0.5, 0.25]])
    assert np.allclose(g.normalised_to_crop(u, 100), [[0, 0], [50, 50], [100, 75]])
    assert np.allclose(g.crop_to_normalised(g.normalised_to_crop(u, 37), 37), u)


def test_person_box_is_square_and_holds_visible_joints_with_margin():
    joints = POSE.copy()
    visible = ALL_VISIBLE.copy()
    joints[0] = [-900.0, 4000.0]  # an unannotated joint far outside the picture
    visible[0] = False
    margin = 0.2
    box = g.person_box(joints, visible, margin=margin)
    assert box[2] == box[3]
    pts = joints[visible]
    extent = float(np.max(pts.max(0) - pts.min(0)))
    assert box[2] == pytest.approx(extent * (1 + 2 * margin))
    room = box[2:] / 2 - np.abs(pts - box[:2])  # distance from each visible joint to the box edge
    assert (room >= margin * extent - 1e-9).all()
    assert (np.abs(g.normalise(joints[0], box)) > 0.5).any()  # the hidden stray joint did not stretch it
    # with fewer than two visible joints, all joints count
    few = np.zeros(NUM_JOINTS, dtype=bool)
    few[3] = True
    assert np.allclose(g.person_box(joints, few), g.person_box(joints))


def test_image_box_uses_no_ground_truth():
    assert list(inspect.signature(g.image_box).parameters) == ["height", "width"]
    box = g.image_box(160, 120)
    assert box.tolist() == [60, 80, 160, 160]  # whole image, padded to a square around its centre
    assert g.image_box(50, 200).tolist() == [100, 25, 200, 200]


def test_cascade_box_side_is_sigma_times_diameter():
    diam = float(torso_diameter(POSE))
    boxes = g.cascade_boxes(POSE, sigma=1.5)
    assert boxes.shape == (NUM_JOINTS, 4)
    assert np.allclose(boxes[:, :2], POSE)
    assert np.allclose(boxes[:, 2:], 1.5 * diam)
    collapsed = np.zeros((NUM_JOINTS, 2))  # a degenerate pose still gives usable boxes
    assert np.allclose(g.cascade_boxes(collapsed, sigma=2.0, min_diam=3.0)[:, 2:], 6.0)


def test_one_sigma_diam_side_whatever_the_floor():
    """The refinement boxes (``cascade_boxes``: widgets, predict, ``refine``) and the training crops' side
    (``box_side``) once had different floors: below 1 px a floor of 0.3 gave 0.6-px boxes in one and 2 px in the
    other. Now both are ``box_side``."""
    collapsed = np.zeros((NUM_JOINTS, 2))
    for floor in (0.0, 0.3, 1.0, 3.0):
        expected = 2.0 * max(floor, g.MIN_DIAM)
        assert float(g.box_side(collapsed, 2.0, floor)) == expected
        assert np.all(g.cascade_boxes(collapsed, 2.0, floor)[:, 2:] == expected)


# --- crop and uncrop -------------------------------------------------------------------------------

AUGMENTS = [
    g.Augmentation.none(),
    g.Augmentation(shift=0.1, scale=0.25, rotate=30.0, flip=True),
    g.Augmentation(shift=0.3, scale=0.5, rotate=180.0, flip=True, colour=0.3),
]


@pytest.mark.parametrize("aug", AUGMENTS, ids=["none", "moderate", "wild"])
@pytest.mark.parametrize("box", [g.make_box(60, 80, 90, 130), g.make_box(-10, 300, 33, 7)], ids=["tall", "flat"])
def test_crop_then_uncrop_returns_joints_within_a_hundredth_of_a_pixel(aug, box):
    flips = 0
    for seed in range(40):
        back, t = roundtrip(POSE, box, 64, aug, np.random.default_rng(seed))
        assert np.abs(back - POSE).max() < 0.01
        flips += t.flipped
    assert (flips > 0) == aug.flip  # the flipped case was really exercised


def test_uncrop_catches_offset_and_scale_bugs():
    """The buggy inverses (forgetting the crop offset or the resize scale) land far from the truth."""
    box = g.make_box(70.0, 90.0, 50.0, 120.0)
    m = g.box_to_crop(box, 64)
    u = g.crop_to_normalised(g.apply_affine(m, POSE), 64)
    assert np.allclose(g.uncrop_joints(u, m, 64), POSE)
    assert np.abs(u * box[2:] - POSE).max() > 10  # no crop offset
    assert np.abs(u * 64 + box[:2] - POSE).max() > 10  # crop-size scale instead of the box's


def test_a_stack_of_crops_is_uncropped_each_by_its_own_matrix():
    """The cascade maps all crops of a batch back in one call; each must use its own matrix, not a neighbour's."""
    rng = np.random.default_rng(0)
    mats = np.stack([g.box_to_crop(g.make_box(*rng.uniform(0, 200, 2), *rng.uniform(20, 90, 2)), 64,
                                   rng.uniform(-40, 40)) for _ in range(6)])
    outputs = rng.uniform(-0.6, 0.6, (6, 14, 2))
    one_by_one = np.stack([g.uncrop_joints(u, m, 64) for u, m in zip(outputs, mats, strict=True)])
    np.testing.assert_array_equal(g.uncrop_joints(outputs, mats, 64), one_by_one)
    assert np.abs(one_by_one[1:] - g.uncrop_joints(outputs[1:], mats[:-1], 64)).max() > 1  # a shift shows


def test_crop_sample_target_is_n_of_y_without_augmentation():
    img = np.zeros((160, 120, 3), dtype=np.uint8)
    box = g.make_box(60, 80, 90, 130)
    crop, target, vis, t = g.crop_sample(img, POSE, ALL_VISIBLE, box, 48)
    assert crop.shape == (48, 48, 3) and crop.dtype == np.uint8
    assert np.allclose(target, g.normalise(POSE, box))
    assert np.array_equal(vis, ALL_VISIBLE) and not t.flipped


def test_validation_without_augmentation_is_deterministic():
    rng_img = np.random.default_rng(1)
    img = rng_img.integers(0, 256, size=(160, 120, 3), dtype=np.uint8)
    box = g.make_box(60, 80, 100, 100)
    none = g.Augmentation.none()
    assert none.is_identity and not AUGMENTS[1].is_identity
    runs = [g.crop_sample(img, POSE, ALL_VISIBLE, box, 40, none, rng) for rng in
            (None, np.random.default_rng(0), np.random.default_rng(12345))]
    for crop, target, _, t in runs[1:]:
        assert np.array_equal(crop, runs[0][0])
        assert np.array_equal(target, runs[0][1])
        assert np.array_equal(t.matrix, g.box_to_crop(box, 40))
    rng = np.random.default_rng(7)
    g.crop_sample(img, POSE, ALL_VISIBLE, box, 40, none, rng)
    assert rng.random() == np.random.default_rng(7).random()  # validation draws nothing from the stream


def test_random_augmentation_needs_an_explicit_generator_and_varies():
    box = g.make_box(60, 80, 100, 100)
    with pytest.raises(ValueError, match="Generator"):
        g.crop_transform(box, 32, AUGMENTS[1], None)
    a = g.crop_transform(box, 32, AUGMENTS[1], np.random.default_rng(0)).matrix
    b = g.crop_transform(box, 32, AUGMENTS[1], np.random.default_rng(1)).matrix
    assert not np.allclose(a, b)


def test_cached_labels_are_never_changed_in_place():
    joints, visible = POSE.copy(), ALL_VISIBLE.copy()
    visible[3] = False
    joints.setflags(write=False)
    visible.setflags(write=False)  # as a data set hands them out
    before_j, before_v = joints.copy(), visible.copy()
    img = np.zeros((160, 120, 3), dtype=np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(10):
        _, target, vis, _ = g.crop_sample(img, joints, visible, g.make_box(60, 80, 100, 100), 32, AUGMENTS[2], rng)
        target += 1.0  # a caller scribbling on its target must not reach the cache
        vis[:] = True
    assert np.array_equal(joints, before_j) and np.array_equal(visible, before_v)


def test_colour_jitter_moves_no_joint_and_is_left_to_the_batch():
    img = np.random.default_rng(1).integers(0, 256, (160, 120, 3), dtype=np.uint8)
    box = g.make_box(60, 80, 100, 100)
    crop, target, _, t = g.crop_sample(img, POSE, ALL_VISIBLE, box, 32, g.Augmentation(colour=0.5),
                                       np.random.default_rng(3))
    assert np.allclose(target, g.normalise(POSE, box)) and not t.flipped
    assert np.array_equal(crop, g.warp_image(img, g.box_to_crop(box, 32), 32))  # the crop itself is plain
    gains, offset = t.colour[:3], t.colour[3]  # three gains, then an offset in grey levels
    assert np.all((gains >= 0.5) & (gains <= 1.5)) and -127.5 <= offset <= 127.5 and len(set(gains)) == 3
    again = g.crop_transform(box, 32, g.Augmentation(colour=0.5), np.random.default_rng(3))
    assert np.array_equal(again.colour, t.colour)  # drawn from the crop's own stream, like its geometry
    assert g.crop_transform(box, 32, g.Augmentation(rotate=10.0), np.random.default_rng(3)).colour is None


def test_a_cached_image_with_a_spare_channel_warps_exactly_like_a_plain_one():
    img = np.random.default_rng(5).integers(0, 256, (37, 51, 3), dtype=np.uint8)
    view = g.with_spare_channel(img)
    assert np.array_equal(view, img) and not view.flags.writeable
    assert g.spare_channel_base(view).shape == (37, 51, 4) and g.spare_channel_base(img) is None
    assert g.spare_channel_base(view[1:]) is None and g.spare_channel_base(view[:, ::-1]) is None  # not the base
    rng = np.random.default_rng(6)
    for _ in range(5):  # boxes partly outside the image, rotated, flipped: the fill must match too
        t = g.crop_transform(g.make_box(20, 30, 60, 60), 24, g.Augmentation(0.3, 0.3, 45.0, True), rng)
        assert np.array_equal(g.warp_image(view, t.matrix, 24, fill=(9, 8, 7)),
                              g.warp_image(img, t.matrix, 24, fill=(9, 8, 7)))
    grey = np.zeros((4, 4), dtype=np.uint8)
    assert g.with_spare_channel(grey) is grey and not grey.flags.writeable  # left for Sample to refuse


# --- the warp moves pixels exactly where the matrix moves joints -----------------------------------

def test_single_bright_pixel_lands_where_the_matrix_sends_its_centre():
    img = single_pixel_image(30, 40, row=7, col=11)
    centre = np.array([11.5, 7.5])  # internal coordinates of that pixel's centre
    box = g.make_box(20.0, 15.0, 24.0, 24.0)  # scale 1: crop pixel = image pixel shifted by (8, 3)
    for m in (g.box_to_crop(box, 24), g.horizontal_flip(24) @ g.box_to_crop(box, 24)):
        crop = g.warp_image(img, m, 24)
        x, y = g.apply_affine(m, centre)
        assert crop[int(y), int(x)].tolist() == [255, 255, 255]
        assert np.count_nonzero(crop[..., 0]) == 1
    # the numbers, so that a half-pixel slip in the flip (x → size − 1 − x) is caught too
    assert g.apply_affine(g.box_to_crop(box, 24), centre).tolist() == [3.5, 4.5]
    assert g.apply_affine(g.horizontal_flip(24) @ g.box_to_crop(box, 24), centre).tolist() == [20.5, 4.5]


def test_bright_pixel_follows_rotation_and_upscaling():
    img = single_pixel_image(30, 40, row=7, col=11)
    box = g.make_box(20.0, 15.0, 24.0, 24.0)
    centre = np.array([11.5, 7.5])
    about = g.translation(20, 15) @ g.rotation(90.0) @ g.translation(-20, -15)
    m = g.box_to_crop(box, 24) @ about
    crop = g.warp_image(img, m, 24)
    x, y = g.apply_affine(m, centre)
    assert crop[int(y), int(x), 0] >= 250 and np.count_nonzero(crop[..., 0] > 5) == 1
    m2 = g.box_to_crop(box, 96)  # 4× upscaling: a blob centred on the mapped pixel centre
    assert np.allclose(bright_spot(g.warp_image(img, m2, 96)), g.apply_affine(m2, centre), atol=1e-6)


def test_blob_follows_random_augmentation():
    yy, xx = np.mgrid[0:80, 0:80] + 0.5
    rng = np.random.default_rng(0)
    aug = g.Augmentation(shift=0.05, scale=0.2, rotate=180.0, flip=True)
    for _ in range(12):
        x0, y0 = rng.uniform(37, 43, size=2)
        blob = np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 2.0**2))
        img = np.repeat((blob * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=2)
        t = g.crop_transform(g.make_box(40, 40, 40, 40), 64, aug, rng)
        spot = bright_spot(g.warp_image(img, t.matrix, 64))
        assert np.abs(spot - g.apply_affine(t.matrix, [x0, y0])).max() < 0.1


def test_flip_twice_is_identity_and_flip_mirrors_the_content():
    f = g.horizontal_flip(48)
    assert np.allclose(f @ f, np.eye(3))
    img = np.random.default_rng(2).integers(0, 256, size=(70, 50, 3), dtype=np.uint8)
    m = g.box_to_crop(g.make_box(25.3, 33.1, 41.0, 57.0), 48) @ g.rotation(7.0)
    plain = g.warp_image(img, m, 48).astype(int)
    flipped = g.warp_image(img, f @ m, 48).astype(int)
    assert np.abs(flipped - plain[:, ::-1]).max() <= 1
    assert np.abs(flipped - plain).max() > 50  # the content really changed
    assert np.array_equal(g.warp_image(img, f @ f @ m, 48), g.warp_image(img, m, 48))


def test_flipped_crop_swaps_left_and_right_labels_onto_the_right_pixels():
    """After a flip, the joint called l_wrist must sit on the pixel where the person's right wrist was."""
    img = np.zeros((160, 120, 3), dtype=np.uint8)
    col, row = int(POSE[R_WRIST, 0]), int(POSE[R_WRIST, 1])
    img[row - 1:row + 2, col - 1:col + 2] = 255  # mark the right wrist only
    box = g.make_box(60.0, 80.0, 120.0, 120.0)
    aug = g.Augmentation(flip=True)
    seen = set()
    for seed in range(20):
        crop, target, _, t = g.crop_sample(img, POSE, ALL_VISIBLE, box, 120, aug, np.random.default_rng(seed))
        seen.add(t.flipped)
        name = "l_wrist" if t.flipped else "r_wrist"
        x, y = g.normalised_to_crop(target[JOINT_NAMES.index(name)], 120)
        assert crop[int(y), int(x)].tolist() == [255, 255, 255], (seed, t.flipped)
        if t.flipped:  # and the raw, unswapped label would have pointed at the mirrored left wrist
            x_bad, y_bad = g.apply_affine(t.matrix, POSE[L_WRIST])
            assert crop[int(y_bad), int(x_bad)].tolist() == [0, 0, 0]
    assert seen == {True, False}


def test_warp_refuses_what_is_not_a_uint8_rgb_image():
    box = g.box_to_crop(g.make_box(10.0, 10.0, 20.0, 20.0), 8)
    for bad in (np.zeros((20, 20, 3), np.float32), np.zeros((20, 20), np.uint8), np.zeros((20, 20, 4), np.uint8)):
        with pytest.raises(ValueError, match="uint8 RGB"):
            g.warp_image(bad, box, 8)


def test_crop_outside_the_image_is_constant_fill():
    img = np.full((20, 30, 3), 200, dtype=np.uint8)
    far = g.box_to_crop(g.make_box(500.0, -300.0, 20.0, 20.0), 16)
    assert (g.warp_image(img, far, 16) == 0).all()
    assert (g.warp_image(img, far, 16, fill=(7, 8, 9)) == [7, 8, 9]).all()
    # a box hanging off the left edge: left half padding, right half image
    half = g.warp_image(img, g.box_to_crop(g.make_box(0.0, 10.0, 20.0, 20.0), 20), 20, fill=(1, 2, 3))
    assert (half[:, :10] == [1, 2, 3]).all() and (half[:, 10:] == 200).all()


# --- property tests --------------------------------------------------------------------------------

finite = dict(allow_nan=False, allow_infinity=False)
boxes = st.builds(g.make_box, st.floats(-100, 300, **finite), st.floats(-100, 300, **finite),
                  st.floats(4, 500, **finite), st.floats(4, 500, **finite))
augments = st.builds(g.Augmentation, shift=st.floats(0, 0.5, **finite), scale=st.floats(0, 0.9, **finite),
                     rotate=st.floats(0, 180, **finite), flip=st.booleans(), colour=st.just(0.0))
poses = st.lists(st.tuples(st.floats(-200, 400, **finite), st.floats(-200, 400, **finite)),
                 min_size=NUM_JOINTS, max_size=NUM_JOINTS).map(lambda p: np.array(p, dtype=np.float64))


@settings(max_examples=150, deadline=None)
@given(pose=poses, box=boxes, aug=augments, size=st.integers(8, 256), seed=st.integers(0, 2**32 - 1))
def test_property_random_crops_roundtrip_joints(pose, box, aug, size, seed):
    back, _ = roundtrip(pose, box, size, aug, np.random.default_rng(seed))
    assert np.abs(back - pose).max() < 0.01


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(1, 40), w=st.integers(1, 40), box=boxes, aug=augments, size=st.integers(1, 48),
       seed=st.integers(0, 2**32 - 1), value=st.integers(1, 254))
def test_property_warp_never_reads_outside_the_image(h, w, box, aug, size, seed, value):
    """A constant image warps to that constant inside the image, to the fill outside it, and only within
    half a pixel of the edge to a blend of the two: nothing from beyond the image leaks in."""
    img = np.full((h, w, 3), value, dtype=np.uint8)
    fill = np.array([0, 255, 0])
    t = g.crop_transform(box, size, aug, np.random.default_rng(seed))
    crop = g.warp_image(img, t.matrix, size, fill=tuple(fill)).astype(int)
    c = int(np.argmax(np.abs(value - fill)))  # the channel where image and fill differ most
    share = (crop[..., c] - fill[c]) / (value - fill[c])  # how much of the image each pixel shows
    assert np.abs(crop - (share[..., None] * value + (1 - share[..., None]) * fill)).max() <= 1.5
    rows, cols = np.mgrid[0:size, 0:size] + 0.5
    src = g.apply_affine(np.linalg.inv(t.matrix), np.stack([cols, rows], axis=-1))
    m = 0.5 + 1e-3  # half a pixel, plus OpenCV's fixed-point coordinate rounding
    inside = (src[..., 0] > m) & (src[..., 0] < w - m) & (src[..., 1] > m) & (src[..., 1] < h - m)
    outside = (src[..., 0] < -m) | (src[..., 0] > w + m) | (src[..., 1] < -m) | (src[..., 1] > h + m)
    assert (crop[inside] == value).all()
    assert (crop[outside] == fill).all()


def test_box_corners_inverts_box_from_corners():
    box = g.make_box(30.5, 40.0, 21.0, 9.0)
    np.testing.assert_allclose(g.box_corners(box), [20.0, 35.5, 41.0, 44.5])
    np.testing.assert_allclose(g.box_from_corners(*g.box_corners(box)), box)
