"""The synthetic data set: determinism, LSP-like labels, and visibility flags that agree with the drawn pixels.

The key test renders a part-index map with the same shapes as the RGB image and checks, joint by joint, that
"hidden" means exactly "a part drawn after the joint's own part is on top of it", wherever the geometry is
not a boundary call. A wrong owner table, a reversed draw order or a flag computed from other shapes than
the drawn ones all fail it.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from deeppose_lab import synthetic as syn
from deeppose_lab.sample import Sample
from deeppose_lab.skeleton import JOINT_NAMES, NUM_JOINTS
from deeppose_lab.synthetic import SyntheticPoses, synthetic_splits


@pytest.fixture(scope="module")
def small() -> SyntheticPoses:
    return SyntheticPoses(40, seed=7)


@pytest.fixture(scope="module")
def many() -> SyntheticPoses:
    """Labels only (no image is rendered), for statistics."""
    return SyntheticPoses(2000, seed=11)


def test_shapes_dtypes_and_sizes(small: SyntheticPoses) -> None:
    assert len(small) == 40 and small.file_offset == 0.0 and small.name == "synthetic"
    assert small.joints.shape == (40, NUM_JOINTS, 2) and small.joints.dtype == np.float64
    assert small.visible.shape == (40, NUM_JOINTS) and small.visible.dtype == bool
    assert len(set(small.ids)) == 40
    for i in range(len(small)):
        sample = small[i]
        assert isinstance(sample, Sample)  # constructing it ran Sample's own shape/dtype checks
        assert syn.MIN_SIDE <= sample.height <= syn.MAX_SIDE and syn.MIN_SIDE <= sample.width <= syn.MAX_SIDE
        assert (sample.height, sample.width) == tuple(small.figures.sizes[i])
    heights, widths = small.figures.sizes.T
    assert len(set(heights.tolist())) > 5 and np.any(heights != widths)  # varied, not all square


def test_labels_are_read_only(small: SyntheticPoses) -> None:
    for arr in (small.joints, small.visible, small.figures.joints, small.figures.cap_a):
        with pytest.raises(ValueError):
            arr[0] = 0


def test_same_seed_same_data_and_other_seed_differs() -> None:
    a, b, c = SyntheticPoses(6, seed=3), SyntheticPoses(6, seed=3), SyntheticPoses(6, seed=4)
    np.testing.assert_array_equal(a.joints, b.joints)
    np.testing.assert_array_equal(a.visible, b.visible)
    for i in range(6):
        np.testing.assert_array_equal(a[i].image, b[i].image)
    assert not np.allclose(a.joints, c.joints)
    assert all(a[i].image.shape != c[i].image.shape or np.any(a[i].image != c[i].image) for i in range(6))


def test_sample_depends_only_on_seed_and_index() -> None:
    """Render order and data set size (across a label block boundary) change nothing about sample i."""
    forward, backward = SyntheticPoses(300, seed=2), SyntheticPoses(300, seed=2)
    picks = [0, 5, syn.BLOCK - 1, syn.BLOCK, 299]
    first = {i: forward.image(i) for i in picks}
    later = {i: backward.image(i) for i in reversed(picks)}
    for i in picks:
        np.testing.assert_array_equal(first[i], later[i])
    longer = SyntheticPoses(600, seed=2)
    np.testing.assert_array_equal(longer.joints[:300], forward.joints)
    np.testing.assert_array_equal(longer.visible[:300], forward.visible)
    np.testing.assert_array_equal(longer.image(syn.BLOCK), first[syn.BLOCK])


def test_visible_joints_lie_inside_their_image(many: SyntheticPoses) -> None:
    h, w = many.figures.sizes[:, None, 0], many.figures.sizes[:, None, 1]
    x, y = many.joints[..., 0], many.joints[..., 1]
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    assert np.all(inside[many.visible])
    assert np.any(~inside)  # a few limbs are cut by the image border, as in LSP


def test_person_fills_the_image(many: SyntheticPoses) -> None:
    """At test time the box is the whole image, so the person must span most of it."""
    extent = np.ptp(many.joints, axis=1).max(axis=1) / many.figures.sizes.max(axis=1)
    assert np.median(extent) > 0.6 and np.mean(extent > 0.4) > 0.95


def test_hidden_fraction_is_lsp_like(many: SyntheticPoses) -> None:
    hidden = 1.0 - many.visible.mean()
    assert 0.04 < hidden < 0.20, hidden  # LSP: about 7 % of joints are flagged occluded
    per_joint = 1.0 - many.visible.mean(axis=0)
    assert np.all(per_joint < 0.35), per_joint


def test_flags_agree_with_drawn_pixels(small: SyntheticPoses) -> None:
    fig, band = small.figures, 1.5  # px either side of the cover threshold where rasterisation may disagree
    depths, rank = syn.part_depths(fig), fig.rank
    later = rank[:, None, :] > rank[:, syn.JOINT_OWNER][:, :, None]
    inside = syn.inside_image(fig.joints, fig.sizes)
    checked = hidden_checked = 0
    for i in range(len(small)):
        parts = small.part_map(i)
        assert parts.shape == tuple(fig.sizes[i])
        for j in range(NUM_JOINTS):
            near_edge = later[i, j] & (depths[i, j] > -band) & (depths[i, j] < syn.COVER_MARGIN + band)
            if not inside[i, j] or near_edge.any():
                continue
            x, y = np.floor(fig.joints[i, j]).astype(int)
            top = parts[y, x]
            covered_in_pixels = bool(top >= 0 and rank[i, top] > rank[i, syn.JOINT_OWNER[j]])
            assert covered_in_pixels == (not small.visible[i, j]), (i, JOINT_NAMES[j], top)
            checked += 1
            hidden_checked += covered_in_pixels
    assert checked > 0.8 * inside.sum() and hidden_checked >= 5  # the test is not vacuous


def test_drawn_capsules_centre_on_their_geometry() -> None:
    """Pixels and labels share one convention: a filled capsule's pixel centres average to its midpoint."""
    rng = np.random.default_rng(0)
    errors = []
    for _ in range(50):
        a = rng.uniform(10, 30, 2)
        b, r = a + rng.uniform(-8, 8, 2), rng.uniform(2, 6)
        img = Image.new("L", (48, 48))
        syn.fill_polygon(ImageDraw.Draw(img), syn.stadium(a[None], b[None], np.array([r]))[0], fill=1)
        ys, xs = np.nonzero(np.asarray(img))
        errors.append([xs.mean() + 0.5 - (a[0] + b[0]) / 2, ys.mean() + 0.5 - (a[1] + b[1]) / 2])
    assert np.all(np.abs(np.mean(errors, axis=0)) < 0.15), np.mean(errors, axis=0)  # a half-pixel slip fails


def test_occluded_only_by_parts_drawn_later() -> None:
    """Unit case: one joint (r_wrist, owned by the right forearm) against three parts covering it."""
    depths = np.full((1, NUM_JOINTS, len(syn.PARTS)), -5.0)
    rank = np.arange(len(syn.PARTS))[None].copy()  # drawn in PARTS order: torso and head after the arms
    wrist = 6
    assert syn.JOINT_OWNER[wrist] == syn.R_FORE
    depths[0, wrist, syn.R_THIGH] = 9.0  # drawn before the forearm: cannot hide it
    assert not syn.occluded(depths, rank)[0, wrist]
    depths[0, wrist, syn.TORSO] = syn.COVER_MARGIN / 2  # drawn later, but only grazes it
    assert not syn.occluded(depths, rank)[0, wrist]
    depths[0, wrist, syn.HEAD] = 3.0  # drawn later and covers it
    assert syn.occluded(depths, rank)[0, wrist]
    assert syn.occluded(depths, rank).sum() == 1


def test_shape_depths() -> None:
    pts = np.array([[[0.0, 0.0], [5.0, 3.0], [5.0, 10.0], [-4.0, 0.0]]])
    caps = syn.capsule_depth(pts, np.array([[[0.0, 0.0]]]), np.array([[[10.0, 0.0]]]), np.array([[4.0]]))[..., 0]
    np.testing.assert_allclose(caps, [[4.0, 1.0, -6.0, 0.0]])
    square = np.array([[[-2.0, -2.0], [8.0, -2.0], [8.0, 8.0], [-2.0, 8.0]]])
    np.testing.assert_allclose(syn.polygon_depth(pts, square), [[2.0, 3.0, -2.0, -2.0]])
    ellipse = syn.ellipse_depth(pts, np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]]), np.array([[4.0, 2.0]]))
    assert ellipse[0, 0] == pytest.approx(2.0) and ellipse[0, 3] == pytest.approx(0.0) and ellipse[0, 2] < 0


def test_right_is_on_image_left_when_facing_the_camera(many: SyntheticPoses) -> None:
    """Person-centric labels: facing the camera, the right shoulder is on the viewer's left, at any body angle."""
    up = many.joints[:, 12] - (many.joints[:, 2] + many.joints[:, 3]) / 2
    right_to_left = many.joints[:, 9] - many.joints[:, 8]
    handedness = up[:, 0] * right_to_left[:, 1] - up[:, 1] * right_to_left[:, 0]
    cos_yaw = np.cos(many.figures.facing)
    clear = np.abs(cos_yaw) > 0.3
    assert clear.sum() > 500
    np.testing.assert_array_equal(np.sign(handedness[clear]), np.sign(cos_yaw[clear]))


def test_poses_are_varied(many: SyntheticPoses) -> None:
    """Raised arms, crossed legs and rotated bodies all occur, so the cascade has something to refine."""
    j = many.joints
    wrist_above_head = (j[:, 6, 1] < j[:, 13, 1]) | (j[:, 11, 1] < j[:, 13, 1])
    body_up = j[:, 12] - (j[:, 2] + j[:, 3]) / 2
    tilt = np.degrees(np.abs(np.arctan2(body_up[:, 0], -body_up[:, 1])))
    assert 0.03 < wrist_above_head.mean() < 0.5
    assert np.mean(tilt > 45) > 0.05 and np.mean(tilt < 20) > 0.5


def test_splits_are_disjoint() -> None:
    train, test = synthetic_splits(30, 20, seed=1)
    assert (train.name, test.name, len(train), len(test)) == ("synthetic-train", "synthetic-test", 30, 20)
    assert not np.any(np.all(np.isclose(train.joints[:20], test.joints), axis=(1, 2)))
    assert not any(train[i].image.shape == test[i].image.shape and np.array_equal(train[i].image, test[i].image)
                   for i in range(5))
    again, _ = synthetic_splits(30, 20, seed=1)
    np.testing.assert_array_equal(again.joints, train.joints)


def test_bad_arguments_and_empty_set() -> None:
    with pytest.raises(ValueError):
        SyntheticPoses(-1)
    with pytest.raises(ValueError):
        SyntheticPoses(3, seed=-2)
    assert len(SyntheticPoses(0)) == 0
