"""The notebook widgets, headless: each builder returns a widget whose picture follows its controls.

No browser and no kernel: a control's value is set from Python, which fires the same observer a slider
drag does, and the picture (``viewer.array``, PNG bytes in ``viewer.image.value``) is checked pixel by pixel.
"""

from __future__ import annotations

import io

import ipywidgets
import numpy as np
import pytest
from PIL import Image

from deeppose_lab import widgets as W
from deeppose_lab.drawing import BOX_COLOR, LEFT_COLOR, RIGHT_COLOR, SIDES, draw_pose
from deeppose_lab.geometry import cascade_boxes
from deeppose_lab.skeleton import JOINT_NAMES, NUM_JOINTS, flip_permutation
from deeppose_lab.synthetic import SyntheticPoses


@pytest.fixture(scope="module")
def people() -> SyntheticPoses:
    return SyntheticPoses(5, seed=0)


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def pixel(picture: np.ndarray, point: np.ndarray, scale: int, offset: tuple[float, float] = (0, 0)) -> tuple:
    """The colour at an internal-pixel point of a picture drawn at ``scale`` (where draw_pose puts its dot)."""
    x, y = np.asarray(point) * scale - 0.5 + offset
    return tuple(int(v) for v in picture[int(round(y)), int(round(x))])


def isolated_joints(joints: np.ndarray, visible: np.ndarray, side: str, size: float, min_gap: float) -> list[int]:
    """Visible joints of ``side`` inside a size×size picture and at least ``min_gap`` from every other joint."""
    out = []
    for j in range(NUM_JOINTS):
        others = np.delete(joints, j, axis=0)
        gap = np.min(np.linalg.norm(others - joints[j], axis=1))
        inside = bool(np.all((joints[j] > 2) & (joints[j] < size - 2)))
        if SIDES[j] == side and visible[j] and inside and gap > min_gap:
            out.append(j)
    return out


def test_png_and_helpers():
    arr = np.zeros((5, 7, 3), np.uint8)
    arr[2, 3] = (10, 20, 30)
    assert np.array_equal(decode(W.png_bytes(arr)), arr)
    assert W.encode_image(arr, "jpeg")[:2] == b"\xff\xd8"
    with pytest.raises(ValueError, match="png"):
        W.encode_image(arr, "gif")
    assert [W.clamp_index(v, 4) for v in (-3, 0, 2, 3, 99, 2.7, float("nan"), float("inf"), None, "x")] == \
        [0, 0, 2, 3, 3, 2, 0, 3, 0, 0]
    assert [W.joint_or_all(v) for v in (-1, None, 3, 20, float("nan"))] == [-1, -1, 3, 13, -1]
    assert W.display_scale(160, 120, 320) == 2 and W.display_scale(1000, 900, 320) == 1


# --- sample browser ------------------------------------------------------------------------------------------

def test_sample_browser_draws_the_chosen_sample(people):
    viewer = W.sample_browser(people)
    assert isinstance(viewer, ipywidgets.VBox) and isinstance(viewer.image, ipywidgets.Image)
    first = viewer.image.value
    assert np.array_equal(decode(first), viewer.array)
    viewer.controls["index"].value = 4  # what dragging the slider to 4 does: the 4th image (index 3)
    assert viewer.state["index"] == 3 and "(4 of " in viewer.caption.value
    assert viewer.image.value != first
    s = people[3]
    k = viewer.state["scale"]
    assert np.array_equal(viewer.array, draw_pose(s.image, s.joints, s.visible, scale=k))
    assert s.id in viewer.caption.value and "4 of 5" in viewer.caption.value


def test_sample_browser_joints_toggle(people):
    viewer = W.sample_browser(people)
    with_joints = viewer.array.copy()
    viewer.controls["joints"].value = False
    k = viewer.state["scale"]
    plain = np.asarray(Image.fromarray(people[0].image).resize((people[0].width * k, people[0].height * k),
                                                                 Image.Resampling.BICUBIC))
    assert np.array_equal(viewer.array, plain)
    assert not np.array_equal(viewer.array, with_joints)


def test_sample_browser_clamps_any_index(people):
    viewer = W.sample_browser(people)
    slider = viewer.controls["index"]
    assert (slider.min, slider.max) == (1, len(people))  # counts as the captions do
    for asked, got in ((10**6, 4), (-7, 0), (float("nan"), 0), (2.9, 2)):
        viewer.update(index=asked)
        assert viewer.state["index"] == got
    with pytest.raises(TypeError, match="unknown control"):
        viewer.update(nonsense=1)


def test_builders_refuse_empty_data():
    empty = SyntheticPoses(0)
    none = np.zeros((1, 0, NUM_JOINTS, 2))
    for build in (lambda: W.sample_browser(empty), lambda: W.crop_explorer(empty),
                  lambda: W.cascade_stepper(empty, none, 2.0), lambda: W.error_inspector(empty, none[0])):
        with pytest.raises(ValueError, match="empty"):
            build()


def test_single_sample_disables_the_slider():
    viewer = W.sample_browser(SyntheticPoses(1, seed=2))
    assert viewer.controls["index"].disabled
    viewer.update(index=5)
    assert viewer.state["index"] == 0


def test_builders_return_without_displaying(people, monkeypatch):
    import IPython.display

    def no_display(*args, **kwargs):
        raise AssertionError("a builder must return its widget, not display it")

    monkeypatch.setattr(IPython.display, "display", no_display)
    viewer = W.sample_browser(people)
    bundle = viewer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith("sample_browser") and "image/jpeg" in bundle  # a still for code hosts


# --- crop explorer -------------------------------------------------------------------------------------------

def test_crop_explorer_flip_swaps_left_and_right(people):
    viewer = W.crop_explorer(people, size=64)
    before = dict(viewer.state)
    size, k = 64, before["crop_scale"]
    radius = 1.9 * max(1, round(size * k / 150))  # draw_pose's dot radius at this picture size
    candidates = isolated_joints(before["crop_joints"], before["crop_visible"], "right", size, 3 * radius / k)
    assert candidates, "the fixed synthetic sample should have an isolated visible right joint"
    j = candidates[0]
    assert pixel(before["crop_panel"], before["crop_joints"][j], k) == RIGHT_COLOR

    viewer.controls["flip"].value = True
    after = viewer.state
    assert after["transform"].flipped
    partner = flip_permutation()[j]
    mirrored = np.column_stack([size - before["crop_joints"][:, 0], before["crop_joints"][:, 1]])
    np.testing.assert_allclose(after["crop_joints"], mirrored[flip_permutation()], atol=1e-9)
    np.testing.assert_array_equal(after["crop_visible"], before["crop_visible"][flip_permutation()])
    # The right joint's dot is now mirrored, and it is the person's LEFT joint there: blue, not red.
    assert pixel(after["crop_panel"], after["crop_joints"][partner], k) == LEFT_COLOR
    # The pixels are mirrored exactly as the labels are.
    assert np.abs(after["crop"].astype(int) - before["crop"][:, ::-1].astype(int)).mean() < 1.0


def test_crop_explorer_box_controls(people):
    viewer = W.crop_explorer(people, size=48)
    base = viewer.state["box"].copy()
    np.testing.assert_allclose(viewer.state["normalised"], (viewer.state["crop_joints"] / 48) - 0.5)
    assert np.all(np.abs(viewer.state["normalised"]) <= 0.5)  # the person box holds every joint

    at_one = viewer.state["normalised"].copy()
    viewer.controls["scale"].value = 2.0
    np.testing.assert_allclose(viewer.state["box"][2:], base[2:] * 2)
    np.testing.assert_allclose(viewer.state["normalised"], at_one / 2, atol=1e-9)  # N(y) halves as the box doubles

    viewer.controls["scale"].value = 1.0
    viewer.controls["shift_x"].value = 0.5
    np.testing.assert_allclose(viewer.state["box"][0], base[0] + 0.5 * base[2])
    assert "shift (+0.50" in viewer.caption.value

    viewer.controls["shift_x"].value = 0.0
    still = viewer.array.copy()
    viewer.controls["rotate"].value = 30.0
    assert not np.array_equal(still, viewer.array)
    centre = viewer.state["normalised"].mean(axis=0)  # rotation about the box centre keeps the pose centred
    assert np.all(np.abs(centre) < 0.2)

    viewer.controls["box"].value = "image"
    h, w = people[0].image.shape[:2]
    np.testing.assert_allclose(viewer.state["box"], [w / 2, h / 2, max(h, w), max(h, w)])
    viewer.update(index=99, scale=0.0)  # out of range: last image, the smallest box instead of a crash
    assert viewer.state["index"] == len(people) - 1


def test_crop_explorer_rejects_tiny_crops(people):
    with pytest.raises(ValueError, match="size"):
        W.crop_explorer(people, size=4)


# --- cascade stepper -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trajectory(people) -> np.ndarray:
    """Three fake stages: the pose moves 9 px left, then 9 px up, then lands on the truth."""
    truth = people.joints
    return np.stack([truth + [9.0, 9.0], truth + [0.0, 9.0], truth])


def test_cascade_stepper_moves_joints_to_the_stage(people, trajectory):
    viewer = W.cascade_stepper(people, trajectory, sigma=2.0)
    assert viewer.controls["stage"].max == 3 and viewer.state["stage"] == 3
    viewer.controls["truth"].value = False
    pictures = {}
    for stage in (1, 2, 3):
        viewer.controls["stage"].value = stage
        st = viewer.state
        assert st["stage"] == stage
        np.testing.assert_array_equal(st["pose"], trajectory[stage - 1, 0])
        k = st["scale"]
        for j in isolated_joints(st["pose"], np.ones(NUM_JOINTS, bool), "right", 1e9, 12.0 / k):
            assert pixel(viewer.array, st["pose"][j], k) == RIGHT_COLOR
        pictures[stage] = viewer.image.value
    assert len(set(pictures.values())) == 3


def test_cascade_stepper_boxes_come_from_the_previous_stage(people, trajectory):
    viewer = W.cascade_stepper(people, trajectory, sigma=2.0)
    viewer.update(stage=1)
    assert viewer.state["boxes"] is None and "Stage 1 regresses" in viewer.caption.value
    viewer.update(stage=2, index=1)
    np.testing.assert_allclose(viewer.state["boxes"], cascade_boxes(trajectory[0, 1], 2.0))
    everything = viewer.array.copy()
    viewer.update(stage=2, index=1, joint=JOINT_NAMES.index("r_wrist"))
    assert viewer.state["joint"] == 6 and "r_wrist" in viewer.caption.value
    assert not np.array_equal(everything, viewer.array)  # one box instead of fourteen
    viewer.update(stage=99, index=-5, joint=77)
    assert (viewer.state["stage"], viewer.state["index"], viewer.state["joint"]) == (3, 0, 13)
    viewer.update(stage=-4)
    assert viewer.state["stage"] == 1


def test_cascade_stepper_checks_its_input(people, trajectory):
    with pytest.raises(ValueError, match="shape"):
        W.cascade_stepper(people, trajectory[:, :3], 2.0)  # poses for 3 images, data set of 5
    with pytest.raises(ValueError, match="shape"):
        W.cascade_stepper(people, trajectory[0], 2.0)  # one stage without its stage axis
    with pytest.raises(ValueError, match="shape"):
        W.cascade_stepper(people, trajectory[:0], 2.0)  # no stages at all
    with pytest.raises(ValueError, match="sigma"):
        W.cascade_stepper(people, trajectory, 0.0)
    single = W.cascade_stepper(people, trajectory[:1], 2.0)
    assert single.controls["stage"].disabled and single.state["stage"] == 1


# --- error inspector -----------------------------------------------------------------------------------------

def test_error_inspector_ranks_the_chosen_joint(people):
    pred = people.joints.copy()
    wrist, knee = JOINT_NAMES.index("r_wrist"), JOINT_NAMES.index("l_knee")
    pred[2, wrist] += [30.0, 0.0]
    pred[4, wrist] += [0.0, 12.0]
    pred[1, knee] += [5.0, 5.0]
    viewer = W.error_inspector(people, pred)
    assert viewer.controls["joint"].value == wrist
    assert (viewer.state["index"], viewer.state["rank"]) == (2, 0)
    assert viewer.state["error"] == pytest.approx(30.0)
    # The error itself is drawn as a yellow line from the true to the predicted joint.
    k = W.display_scale(*people[2].image.shape[:2])
    middle = (people.joints[2, wrist] + pred[2, wrist]) / 2
    assert pixel(viewer.array, middle, k) == BOX_COLOR
    viewer.controls["rank"].value = 2
    assert viewer.state["index"] == 4 and "rank 2 of 5" in viewer.caption.value
    first = viewer.image.value
    viewer.controls["joint"].value = knee
    assert viewer.state["rank"] == 1 and viewer.state["index"] == 0 and viewer.image.value != first
    viewer.update(rank=0)
    assert viewer.state["index"] == 1 and "l_knee" in viewer.caption.value
    viewer.update(rank=10**9)
    assert viewer.state["rank"] == len(people) - 1


def test_error_inspector_puts_missing_predictions_first(people):
    pred = people.joints.copy()
    pred[3, 0] = np.nan
    pred[1, 0] += 50.0
    viewer = W.error_inspector(people, pred)
    viewer.update(joint=0, rank=0)
    assert viewer.state["index"] == 3  # NaN: the worst, not silently skipped
    viewer.update(joint=0, rank=1)
    assert viewer.state["index"] == 1
    np.testing.assert_array_equal(W.error_order(np.array([1.0, np.nan, 3.0, 3.0])), [1, 2, 3, 0])


def test_error_inspector_checks_shapes(people):
    with pytest.raises(ValueError, match="pred"):
        W.error_inspector(people, people.joints[:2])
    with pytest.raises(ValueError, match="true"):
        W.error_inspector(people, people.joints, true=people.joints[None])


def test_widgets_survive_missing_predictions(people, trajectory):
    broken = trajectory.copy()
    broken[0, 2] = np.nan  # stage 1 failed on image 2: no boxes for stage 2, nothing to draw for stage 1
    viewer = W.cascade_stepper(people, broken, sigma=2.0)
    for stage in (1, 2, 3):
        viewer.update(index=2, stage=stage)
        assert viewer.array.ndim == 3 and viewer.state["stage"] == stage
    inspector = W.error_inspector(people, np.full_like(people.joints, np.nan))
    inspector.update(rank=3)
    assert "nan px" in inspector.caption.value


def test_the_saved_still_says_it_is_static_and_the_live_picture_keeps_its_drawn_width(people):
    import base64
    import io

    from PIL import Image

    viewer = W.sample_browser(people)
    still = np.asarray(Image.open(io.BytesIO(base64.b64decode(viewer._repr_mimebundle_()["image/jpeg"]))))
    h, w = viewer.array.shape[:2]
    assert still.shape[0] == h + 18 and still.shape[1] >= w  # a line of text under the picture
    assert (still[h + 3:, :200] < 200).any()  # dark text on the white strip
    assert viewer.image.layout.width == f"{w}px" and viewer.image.layout.align_self == "flex-start"
    viewer.update(index=1)
    assert viewer.image.layout.width == f"{viewer.array.shape[1]}px"


def test_box_picker_finds_the_pose_in_the_box_the_corners_say_and_shows_a_big_photo_small():
    photo = np.zeros((3024, 4032, 3), np.uint8)
    seen = []

    def pose_of(box):
        seen.append(box)
        return np.tile(box[:2], (NUM_JOINTS, 1))  # every joint at the box's centre

    viewer = W.box_picker(photo, pose_of, np.array([1000.0, 1500.0, 400.0, 800.0]))
    assert max(viewer.array.shape[:2]) <= W.PHOTO_SIDE + 1  # a phone photo shown at screen size
    assert viewer.state["corners"] == (800, 1100, 1200, 1900)
    viewer.controls["x1"].value = 1600
    np.testing.assert_allclose(seen[-1], [1200, 1500, 800, 800])
    assert "MY_BOX = (800, 1100, 1600, 1900)" in viewer.caption.value
    viewer.update(x0=2000, x1=1000)  # corners swapped by hand: still a box, never an empty one
    assert viewer.state["corners"][:3:2] == (1000, 2000)
    small = W.box_picker(np.zeros((150, 100, 3), np.uint8), pose_of, np.array([50.0, 75.0, 60.0, 120.0]))
    assert small.state["factor"] == 3 and small.array.shape[:2] == (450, 300)  # a small one enlarged
