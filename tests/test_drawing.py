"""Drawing: pure functions that put the right colour on the right pixel, and never crash on odd joints."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deeppose_lab import drawing
from deeppose_lab.skeleton import JOINT_NAMES, NUM_JOINTS

H, W = 120, 100
R_WRIST, L_WRIST, NECK, HEAD = (JOINT_NAMES.index(n) for n in ("r_wrist", "l_wrist", "neck", "head_top"))

# A spread-out pose in internal pixels, every joint on a pixel centre (c + 0.5, r + 0.5) and ≥ 10 px apart.
POSE = np.array(
    [
        [35, 110], [35, 90], [38, 70],  # r_ankle, r_knee, r_hip
        [62, 70], [65, 90], [65, 110],  # l_hip, l_knee, l_ankle
        [10, 60], [20, 45], [35, 30],  # r_wrist, r_elbow, r_shoulder
        [65, 30], [80, 45], [90, 60],  # l_shoulder, l_elbow, l_wrist
        [50, 25], [50, 8],  # neck, head_top
    ],
    dtype=np.float64,
) + 0.5


def black() -> np.ndarray:
    return np.zeros((H, W, 3), dtype=np.uint8)


def pixel(img: np.ndarray, xy: np.ndarray, scale: int = 1) -> tuple[int, ...]:
    """The pixel whose centre is internal point ``xy`` (after upscaling by ``scale``)."""
    c, r = (np.floor(np.asarray(xy) * scale)).astype(int)
    return tuple(int(v) for v in img[r, c])


def only(joint: int) -> np.ndarray:
    """POSE with every joint but one set to NaN: a lone dot, no bones across it."""
    pose = np.full_like(POSE, np.nan)
    pose[joint] = POSE[joint]
    return pose


# --- draw_pose ---------------------------------------------------------------------------------------------


def test_draw_pose_is_pure():
    image, joints, visible = black(), POSE.copy(), np.ones(NUM_JOINTS, bool)
    visible[3] = False
    out = drawing.draw_pose(image, joints, visible)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out is not image and not np.shares_memory(out, image)
    assert not image.any() and np.array_equal(joints, POSE) and not visible[3]
    assert out.any()


def test_draw_pose_accepts_read_only_images():
    image = black()
    image.setflags(write=False)  # datasets hand out read-only cached images
    out = drawing.draw_pose(image, POSE)
    assert out.flags.writeable


def test_joint_colours_by_side():
    out = drawing.draw_pose(black(), POSE)
    assert pixel(out, POSE[R_WRIST]) == drawing.RIGHT_COLOR
    assert pixel(out, POSE[L_WRIST]) == drawing.LEFT_COLOR
    assert pixel(out, POSE[HEAD]) == drawing.CENTRE_COLOR
    assert drawing.RIGHT_COLOR != drawing.LEFT_COLOR


def test_single_colour_still_tells_left_from_right():
    color = (0, 200, 60)
    out = drawing.draw_pose(black(), POSE, color=color)
    assert pixel(out, POSE[R_WRIST]) == color
    left = pixel(out, POSE[L_WRIST])
    assert left != color and left != (0, 0, 0)


def test_hidden_joint_is_a_ring_visible_is_filled():
    shown = drawing.draw_pose(black(), only(L_WRIST))
    hidden = drawing.draw_pose(black(), only(L_WRIST), np.zeros(NUM_JOINTS, bool))
    assert pixel(shown, POSE[L_WRIST]) == drawing.LEFT_COLOR
    assert pixel(hidden, POSE[L_WRIST]) == (0, 0, 0)  # the inside of the ring shows the image
    r, c = int(POSE[L_WRIST, 1]), int(POSE[L_WRIST, 0])
    ring = hidden[r - 4:r + 5, c - 4:c + 5]
    assert (ring == drawing.LEFT_COLOR).all(axis=2).any()
    assert not np.array_equal(shown, hidden)


def test_bones_are_drawn_between_joints():
    pose = np.full_like(POSE, np.nan)
    pose[[NECK, HEAD]] = POSE[[NECK, HEAD]]
    out = drawing.draw_pose(black(), pose)
    midpoint = (POSE[NECK] + POSE[HEAD]) / 2
    assert pixel(out, midpoint) == drawing.CENTRE_COLOR


@pytest.mark.parametrize("far", [1e9, -1e9, 1e300, np.inf, -np.inf, np.nan])
def test_far_and_nan_joints_do_not_crash(far):
    pose = POSE.copy()
    pose[HEAD] = [far, far]
    pose[R_WRIST, 0] = far
    out = drawing.draw_pose(black(), pose, boxes=np.array([[far, far, 10, 10], [50, 50, far, 5]]))
    assert out.shape == (H, W, 3)
    assert pixel(out, POSE[L_WRIST]) == drawing.LEFT_COLOR  # the rest of the pose is still there


def test_a_bone_to_a_far_joint_is_clipped_not_dropped():
    pose = np.full_like(POSE, np.nan)
    pose[NECK] = [50.5, 100.5]
    pose[HEAD] = [50.5, -1e7]  # straight up, far outside the image
    out = drawing.draw_pose(black(), pose)
    assert pixel(out, [50.5, 10.5]) == drawing.CENTRE_COLOR


def test_clip_segment():
    lo, hi = np.array([0.0, 0.0]), np.array([10.0, 10.0])
    a, b = drawing.clip_segment(np.array([-10.0, 5.0]), np.array([20.0, 5.0]), lo, hi)
    assert np.allclose(a, [0, 5]) and np.allclose(b, [10, 5])
    assert drawing.clip_segment(np.array([-10.0, -1.0]), np.array([20.0, -1.0]), lo, hi) is None
    a, b = drawing.clip_segment(np.array([2.0, 3.0]), np.array([4.0, 5.0]), lo, hi)
    assert np.allclose(a, [2, 3]) and np.allclose(b, [4, 5])


@pytest.mark.parametrize("scale", [2, 3])
def test_scale_upscales_and_keeps_joints_on_their_pixels(scale):
    image = black()
    image[:, : W // 2] = 40  # a left half that must end up in the left half after upscaling
    out = drawing.draw_pose(image, POSE, scale=scale)
    assert out.shape == (H * scale, W * scale, 3)
    assert pixel(out, POSE[R_WRIST], scale) == drawing.RIGHT_COLOR
    assert pixel(out, POSE[L_WRIST], scale) == drawing.LEFT_COLOR
    assert tuple(out[5, 5]) == (40, 40, 40) and tuple(out[5, -5]) == (0, 0, 0)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="scale"):
        drawing.draw_pose(black(), POSE, scale=0)
    with pytest.raises(ValueError, match="joints"):
        drawing.draw_pose(black(), POSE[:13])
    with pytest.raises(ValueError, match="visible"):
        drawing.draw_pose(black(), POSE, np.ones(13, bool))
    with pytest.raises(ValueError, match="image"):
        drawing.draw_pose(np.zeros((H, W), np.uint8), POSE)


def test_boxes_are_outlined():
    nothing = np.full_like(POSE, np.nan)
    out = drawing.draw_pose(black(), nothing, boxes=np.array([[50.0, 60.0, 40.0, 30.0]]))
    row = out[60]  # the box's left and right edges are at x = 30 and x = 70
    yellow = (row == drawing.BOX_COLOR).all(axis=1)
    assert yellow[28:32].any() and yellow[68:72].any() and not yellow[35:65].any()


def test_one_box_per_joint_takes_the_joint_colour():
    nothing = np.full_like(POSE, np.nan)
    boxes = np.column_stack([POSE, np.full((NUM_JOINTS, 2), 6.0)])
    out = drawing.draw_pose(black(), nothing, boxes=boxes)
    r, c = int(POSE[L_WRIST, 1]), int(POSE[L_WRIST, 0])
    assert (out[r - 4:r + 5, c - 4:c + 5] == drawing.LEFT_COLOR).all(axis=2).any()


# --- draw_poses --------------------------------------------------------------------------------------------


def test_draw_poses_truth_and_prediction_in_their_colours():
    image = black()
    pred = POSE + [0.0, 6.0]
    out = drawing.draw_poses(image, [POSE, pred], scale=2)
    assert out.shape == (2 * H, 2 * W, 3) and not image.any()
    assert pixel(out, POSE[R_WRIST], 2) == drawing.TRUTH_COLOR
    assert pixel(out, pred[R_WRIST], 2) == drawing.PRED_COLOR


def test_draw_poses_checks_its_lists():
    with pytest.raises(ValueError, match="colours"):
        drawing.draw_poses(black(), [POSE, POSE], colors=[(1, 2, 3)])
    with pytest.raises(ValueError, match="visibility"):
        drawing.draw_poses(black(), [POSE, POSE], visible=[None])


# --- contact_sheet and save_png ----------------------------------------------------------------------------


def test_contact_sheet_shape_and_placement():
    red = np.zeros((40, 20, 3), np.uint8)
    red[..., 0] = 255
    tiles = [red, black(), np.zeros((30, 30), np.uint8), black(), black()]
    sheet = drawing.contact_sheet(tiles, columns=3, tile_size=32, pad=4)
    assert sheet.shape == (2 * 32 + 3 * 4, 3 * 32 + 4 * 4, 3) and sheet.dtype == np.uint8
    assert tuple(sheet[4 + 16, 4 + 16]) == (255, 0, 0)  # the first tile's centre
    assert tuple(sheet[4 + 16, 4 + 1]) == drawing.TILE_BACKGROUND  # letterboxed, not stretched


def test_contact_sheet_captions_add_height():
    plain = drawing.contact_sheet([black()] * 2, columns=2, tile_size=32)
    captioned = drawing.contact_sheet([black()] * 2, columns=2, captions=["a", "a very long caption\nline 2"],
                                      tile_size=32)
    assert captioned.shape[1] == plain.shape[1] and captioned.shape[0] > plain.shape[0]
    assert drawing.contact_sheet([black()], columns=5, tile_size=32, pad=0).shape == (32, 32, 3)


def test_contact_sheet_errors():
    with pytest.raises(ValueError, match="at least one tile"):
        drawing.contact_sheet([], columns=3)
    with pytest.raises(ValueError, match="captions"):
        drawing.contact_sheet([black()], columns=1, captions=["a", "b"])
    with pytest.raises(ValueError, match="columns"):
        drawing.contact_sheet([black()], columns=0)


def test_save_png_round_trip_and_leaves_no_temporary_files(tmp_path):
    img = drawing.draw_pose(black(), POSE)
    path = tmp_path / "sub" / "pose.png"
    drawing.save_png(path, img)
    assert np.array_equal(np.asarray(Image.open(path)), img)
    assert [p.name for p in path.parent.iterdir()] == ["pose.png"]


def test_draw_boxes_outlines_each_box_in_its_own_colour():
    from deeppose_lab.drawing import draw_boxes
    from deeppose_lab.geometry import make_box

    img = np.zeros((60, 80, 3), np.uint8)
    out = draw_boxes(img, [make_box(20, 30, 20, 20), make_box(60, 30, 20, 20)], [(255, 0, 0), (0, 255, 0)],
                     thickness=1)
    assert out.shape == (60, 80, 3) and not img.any()  # the input is untouched
    assert (out[19, 9:30] == (255, 0, 0)).all() and (out[19, 49:70] == (0, 255, 0)).all()  # top edges (y = 20 - 0.5)
    assert not out[30, 20].any()  # inside stays as it was
    with pytest.raises(ValueError, match="2 boxes but only 1 colours"):
        draw_boxes(img, [make_box(1, 1, 1, 1)] * 2, [(1, 2, 3)])
