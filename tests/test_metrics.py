"""PCP and PDJ on hand-made poses with known answers.

Each classic DeepPose bug (per-axis distance, predicted limb length, predicted torso) gets a case on
which the buggy variant, written inline here, gives a DIFFERENT answer from ours; the test checks both, so
it cannot pass by accident on a case where the bug would be harmless.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import POSE

from deeppose_lab import metrics
from deeppose_lab.skeleton import LIMB_GROUPS, LIMBS, NUM_JOINTS, PAPER_GROUPS, TORSO_PAIR, torso_diameter

LIMB_NAMES = list(LIMBS)


def batch(*poses: np.ndarray) -> np.ndarray:
    return np.stack(poses).astype(np.float64)


def limb_length(name: str, pose: np.ndarray = POSE) -> float:
    a, b = LIMBS[name]
    return float(np.linalg.norm(pose[a] - pose[b]))


def move_limb(name: str, delta_a: np.ndarray, delta_b: np.ndarray, pose: np.ndarray = POSE) -> np.ndarray:
    """A copy of ``pose`` with the limb's two endpoints moved by the given pixel offsets."""
    a, b = LIMBS[name]
    out = pose.copy()
    out[a] += delta_a
    out[b] += delta_b
    return out


@pytest.fixture
def strict_numpy():
    """Turn numpy floating-point warnings and Python warnings into errors: degenerate cases must stay quiet."""
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_pose_fixture_lengths():
    assert limb_length("r_upper_arm") == limb_length("l_lower_arm") == 25
    assert limb_length("r_upper_leg") == limb_length("l_lower_leg") == 35
    assert limb_length("head") == 20


# --- perfect predictions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["strict", "loose"])
def test_perfect_prediction_scores_one(mode):
    true = batch(POSE, POSE + [5.0, -3.0])
    res = metrics.pcp(true.copy(), true, mode=mode)
    assert all(v == 1.0 for v in res["limbs"].values())
    assert all(v == 1.0 for v in res["groups"].values())
    assert res["mean"] == 1.0 and res["mode"] == mode and res["threshold"] == 0.5 and res["n"] == 2
    curve = metrics.pdj(true.copy(), true)
    assert curve.shape == (51, NUM_JOINTS)
    assert np.all(curve == 1.0)  # for f > 0, and also at f = 0 since the errors are exactly zero
    assert np.all(metrics.joint_errors(true, true) == 0)
    assert all(np.all(e == 0) for e in metrics.limb_errors(true, true).values())


# --- the 0.5 tolerance, Euclidean, along x -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["strict", "loose"])
@pytest.mark.parametrize("name", LIMB_NAMES)
@pytest.mark.parametrize(("shift", "expected"), [(0.4, 1.0), (0.6, 0.0)])
def test_shift_along_x(name, shift, expected, mode):
    dx = np.array([shift * limb_length(name), 0.0])
    pred = move_limb(name, dx, dx)
    res = metrics.pcp(batch(pred), batch(POSE), mode=mode)
    assert res["limbs"][name] == expected
    np.testing.assert_allclose(metrics.limb_errors(batch(pred), batch(POSE))[name], [[shift, shift]])


def test_threshold_argument_moves_the_boundary():
    dx = np.array([0.4 * limb_length("head"), 0.0])
    pred, true = batch(move_limb("head", dx, dx)), batch(POSE)
    assert metrics.pcp(pred, true, threshold=0.5)["limbs"]["head"] == 1.0
    assert metrics.pcp(pred, true, threshold=0.3)["limbs"]["head"] == 0.0


def test_strict_and_loose_differ():
    """Endpoint errors 0.8 L and 0.1 L: strict needs both ≤ 0.5 L (wrong); loose needs the mean 0.45 L (right)."""
    length = limb_length("l_upper_leg")
    pred = batch(move_limb("l_upper_leg", [0.8 * length, 0.0], [0.1 * length, 0.0]))
    assert metrics.pcp(pred, batch(POSE), mode="strict")["limbs"]["l_upper_leg"] == 0.0
    assert metrics.pcp(pred, batch(POSE), mode="loose")["limbs"]["l_upper_leg"] == 1.0


def test_unknown_mode_raises():
    with pytest.raises(ValueError, match="mode"):
        metrics.pcp(batch(POSE), batch(POSE), mode="lenient")


# --- classic bugs, each shown to change the answer ---------------------------------------------------------


def test_euclidean_not_per_axis():
    """0.45 L off in x AND y: per axis each is within 0.5 L, but the Euclidean error is 0.636 L (wrong)."""
    name = "r_lower_arm"
    length = limb_length(name)
    d = np.array([0.45 * length, 0.45 * length])
    pred, true = batch(move_limb(name, d, d)), batch(POSE)

    for mode in ("strict", "loose"):
        assert metrics.pcp(pred, true, mode=mode)["limbs"][name] == 0.0
    np.testing.assert_allclose(metrics.limb_errors(pred, true)[name], [[0.45 * np.sqrt(2)] * 2])

    a, b = LIMBS[name]
    diff = np.abs(pred[0, [a, b]] - true[0, [a, b]])  # (2 endpoints, 2 axes)
    buggy_max_axis = bool(np.all(diff.max(axis=1) <= 0.5 * length))
    buggy_dx_only = bool(np.all(diff[:, 0] <= 0.5 * length))
    assert buggy_max_axis and buggy_dx_only  # both bugs would call this limb correct


def test_true_limb_length_not_predicted():
    """Both endpoints 0.6 L off, pushed outward so the predicted limb is 2.2 L long: wrong, not 0.27 < 0.5."""
    name = "r_upper_leg"  # (r_hip above r_knee): push the hip up and the knee down
    length = limb_length(name)
    pred, true = batch(move_limb(name, [0.0, -0.6 * length], [0.0, 0.6 * length])), batch(POSE)

    assert metrics.pcp(pred, true)["limbs"][name] == 0.0
    np.testing.assert_allclose(metrics.limb_errors(pred, true)[name], [[0.6, 0.6]])

    a, b = LIMBS[name]
    pred_length = np.linalg.norm(pred[0, a] - pred[0, b])
    assert pred_length == pytest.approx(2.2 * length)
    errs = np.linalg.norm(pred[0, [a, b]] - true[0, [a, b]], axis=-1)
    assert bool(np.all(errs <= 0.5 * pred_length))  # the bug would call it correct


def test_pdj_uses_true_torso_not_predicted():
    """Every joint 0.3 diam off; the prediction also blows the torso up 10×. PDJ@0.2 must be 0, not 1."""
    true = batch(POSE)
    diam = float(torso_diameter(true)[0])
    pred = true + [0.3 * diam, 0.0]
    ls, rh = TORSO_PAIR
    centre = (pred[0, ls] + pred[0, rh]) / 2
    for j in (ls, rh):  # keep each torso joint's error ≥ 0.3 diam, but make the predicted torso 10 diam long
        pred[0, j] = centre + 10 * (pred[0, j] - centre)
    assert float(torso_diameter(pred)[0]) == pytest.approx(10 * diam)

    ours = metrics.pdj_at(pred, true, 0.2)
    assert np.all(ours == 0.0)

    err = np.linalg.norm(pred - true, axis=-1)
    buggy = (err <= 0.2 * torso_diameter(pred)[:, None]).mean(axis=0)
    others = [j for j in range(NUM_JOINTS) if j not in TORSO_PAIR]
    assert np.all(buggy[others] == 1.0)  # the bug would call every other joint detected


# --- degenerate ground truth ------------------------------------------------------------------------------


def test_zero_length_limb_is_finite_and_strict(strict_numpy):
    true_pose = POSE.copy()
    true_pose[13] = true_pose[12]  # head_top on the neck: zero-length head
    true = batch(true_pose, true_pose)
    pred = true.copy()
    pred[1, 13] += [1.0, 0.0]  # image 1 misses the head top by one pixel
    errs = metrics.limb_errors(pred, true)
    assert all(np.all(np.isfinite(e)) for e in errs.values())
    assert errs["head"][0].tolist() == [0.0, 0.0]
    for mode in ("strict", "loose"):
        res = metrics.pcp(pred, true, mode=mode)
        assert res["limbs"]["head"] == 0.5  # exact → correct, 1 px off a zero-length limb → wrong
        assert np.isfinite(res["mean"])


def test_zero_torso_is_finite(strict_numpy):
    true_pose = POSE.copy()
    ls, rh = TORSO_PAIR
    true_pose[ls] = true_pose[rh]
    true = batch(true_pose, true_pose)
    assert torso_diameter(true)[0] == 0
    pred = true.copy()
    pred[1] += [1.0, 0.0]
    curve = metrics.pdj(pred, true)
    assert np.all(np.isfinite(curve))
    assert np.all(curve[1:] == 0.5)  # image 0 exact → detected; image 1 one pixel off a zero torso → not
    score = metrics.per_image_score(pred, true)
    assert np.all(np.isfinite(score)) and score[0] == 0 and score[1] > score[0]
    assert np.isfinite(metrics.mean_pdj(pred, true))


# --- grouping ---------------------------------------------------------------------------------------------


def test_groups_average_left_and_right():
    right_wrong = batch(move_limb("r_upper_arm", [0.0, 0.0], [20.0, 0.0]))  # r_elbow 0.8 L off
    res = metrics.pcp(right_wrong, batch(POSE))
    assert res["limbs"]["r_upper_arm"] == 0.0 and res["limbs"]["l_upper_arm"] == 1.0
    assert res["groups"]["upper_arm"] == 0.5


def test_groups_are_means_of_their_limbs_on_random_predictions():
    rng = np.random.default_rng(0)
    true = POSE + rng.normal(0, 3, size=(40, NUM_JOINTS, 2))
    pred = true + rng.normal(0, 8, size=true.shape)
    res = metrics.pcp(pred, true)
    assert set(res["groups"]) == set(LIMB_GROUPS) and set(res["limbs"]) == set(LIMBS)
    for group, members in LIMB_GROUPS.items():
        assert res["groups"][group] == pytest.approx(np.mean([res["limbs"][m] for m in members]))
    assert res["mean"] == pytest.approx(np.mean([res["groups"][g] for g in PAPER_GROUPS]))
    assert 0 < res["mean"] < 1  # the case is not trivially all-right or all-wrong


def test_mean_is_over_the_four_paper_groups_only():
    """Arms and legs all wrong, head and torso right: the paper's mean is 0, not 2/6 (groups) or 2/10 (limbs)."""
    assert PAPER_GROUPS == ("upper_arm", "lower_arm", "upper_leg", "lower_leg")
    pred = POSE.copy()
    for j in (7, 6, 10, 11, 1, 0, 4, 5):  # elbows, wrists, knees, ankles: far off
        pred[j] += [100.0, 0.0]
    res = metrics.pcp(batch(pred), batch(POSE))
    assert res["groups"]["head"] == 1.0 and res["groups"]["torso"] == 1.0
    assert all(res["groups"][g] == 0.0 for g in PAPER_GROUPS)
    assert res["mean"] == 0.0
    assert np.mean(list(res["groups"].values())) == pytest.approx(2 / 6)  # the six-group bug
    assert np.mean(list(res["limbs"].values())) == pytest.approx(2 / 10)  # the all-limbs bug

    head_only_wrong = POSE.copy()
    head_only_wrong[13] += [100.0, 0.0]
    assert metrics.pcp(batch(head_only_wrong), batch(POSE))["mean"] == 1.0


# --- masks, shapes, helpers -------------------------------------------------------------------------------


def test_mask_scores_a_subset():
    good, bad = POSE, POSE + [100.0, 0.0]
    pred, true = batch(good, bad), batch(POSE, POSE)
    assert metrics.pcp(pred, true)["mean"] == 0.5
    assert metrics.pcp(pred, true, mask=np.array([True, False]))["mean"] == 1.0
    res = metrics.pcp(pred, true, mask=np.array([False, True]))
    assert res["mean"] == 0.0 and res["n"] == 1
    assert np.all(metrics.pdj(pred, true, mask=np.array([True, False])) == 1.0)
    with pytest.raises(ValueError, match="no images"):
        metrics.pcp(pred, true, mask=np.array([False, False]))
    with pytest.raises(ValueError, match="mask"):
        metrics.pcp(pred, true, mask=np.array([1, 0]))


def test_shape_checks():
    with pytest.raises(ValueError, match="same shape"):
        metrics.pcp(batch(POSE), batch(POSE, POSE))
    with pytest.raises(ValueError, match="shape"):
        metrics.joint_errors(POSE, POSE)  # a single (14, 2) pose is not a batch
    with pytest.raises(ValueError, match="fractions"):
        metrics.pdj(batch(POSE), batch(POSE), fractions=np.zeros((2, 2)))


def test_joint_errors_are_euclidean_pixels():
    pred = batch(POSE)
    pred[0, 4] += [3.0, 4.0]
    err = metrics.joint_errors(pred, batch(POSE))
    assert err.shape == (1, NUM_JOINTS)
    assert err[0, 4] == 5.0 and err.sum() == 5.0


def test_pdj_curve_rows_and_helpers_agree():
    rng = np.random.default_rng(1)
    true = POSE + rng.normal(0, 3, size=(30, NUM_JOINTS, 2))
    pred = true + rng.normal(0, 10, size=true.shape)
    fractions = np.array([0.0, 0.1, 0.2, 0.5])
    curve = metrics.pdj(pred, true, fractions)
    assert curve.shape == (4, NUM_JOINTS)
    assert np.all(np.diff(curve, axis=0) >= 0)  # more tolerance never detects fewer joints
    np.testing.assert_array_equal(metrics.pdj_at(pred, true, 0.2), curve[2])
    assert metrics.mean_pdj(pred, true, 0.2) == pytest.approx(curve[2].mean())
    np.testing.assert_array_equal(metrics.pdj(pred, true)[20], metrics.pdj_at(pred, true, 0.2))
    assert not metrics.DEFAULT_PDJ_FRACTIONS.flags.writeable


def test_pdj_boundary_in_torso_units():
    true = batch(POSE)
    diam = float(torso_diameter(true)[0])
    pred = true.copy()
    pred[0, 12] += [0.15 * diam, 0.0]  # the neck 0.15 diam off
    at = metrics.pdj(pred, true, np.array([0.1, 0.2]))
    assert at[0, 12] == 0.0 and at[1, 12] == 1.0
    assert np.all(np.delete(at, 12, axis=1) == 1.0)


def test_per_image_score_and_best_and_worst():
    true = batch(POSE, POSE, POSE, POSE * 2)
    pred = true.copy()
    pred[1] += [10.0, 0.0]
    pred[2] += [30.0, 0.0]
    pred[3] += [20.0, 0.0]  # 20 px on a person twice the size scores better than 30 px, worse than 10 px
    score = metrics.per_image_score(pred, true)
    diam = float(torso_diameter(true)[0])
    np.testing.assert_allclose(score, [0.0, 10 / diam, 30 / diam, 10 / diam])
    best, worst = metrics.best_and_worst(pred, true, k=2)
    assert best.tolist() == [0, 1]  # tie between 1 and 3 resolves by image order
    assert worst.tolist() == [2, 1]
    pred[0, 0] = np.nan
    _, worst = metrics.best_and_worst(pred, true, k=1)
    assert worst.tolist() == [0]
    assert metrics.best_and_worst(pred, true, k=10)[0].size == 4
