"""The pretrained person detector (detector.py): anchors, decoding, where a look's keypoints land in the photo,
the model's install and check, and (where it is installed, as ``make`` installs it) what it finds on LSP people."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from deeppose_lab import detector, framing
from deeppose_lab.cli import main as cli_main
from deeppose_lab.datasets import load_lsp
from deeppose_lab.errors import ConfigError
from deeppose_lab.geometry import make_box
from deeppose_lab.synthetic import SyntheticPoses

needs_detector = pytest.mark.skipif(not detector.available(), reason="the person detector is not installed "
                                    "(`deeppose-lab download detector`; `make` installs it)")


def test_the_anchors_are_mediapipes_two_per_cell_per_layer() -> None:
    centres = detector.anchor_centres()
    assert centres.shape == (2254, 2)  # the model's outputs: 28² × 2 + 14² × 2 + 7² × 6
    np.testing.assert_allclose(centres[:3], [[0.5 / 28, 0.5 / 28]] * 2 + [[1.5 / 28, 0.5 / 28]])
    np.testing.assert_allclose(centres[2 * 28 * 28], [0.5 / 14, 0.5 / 14])  # the 14 × 14 layer, row by row
    np.testing.assert_allclose(centres[-6:], [[6.5 / 7, 6.5 / 7]] * 6)  # three stride-32 layers share the 7 × 7 cells


def raw_outputs(picks: dict[int, tuple[float, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs where anchor k scores logit s and puts its four keypoints at ``points`` (input px), its face
    box 20 px square at its first keypoint; every other anchor scores nothing."""
    raw, logits = np.zeros((2254, 12)), np.full(2254, -50.0)
    centres = detector.anchor_centres() * detector.INPUT_SIDE
    for k, (logit, points) in picks.items():
        raw[k, :2] = points[0] - centres[k]
        raw[k, 2:4] = 20.0
        raw[k, 4:] = (points - centres[k]).ravel()
        logits[k] = logit
    return raw, logits


def test_decode_averages_the_detections_that_overlap_the_best_one_by_score() -> None:
    person = np.array([[100.0, 120.0], [100.0, 40.0], [100.0, 80.0], [100.0, 50.0]])
    elsewhere = np.array([[30.0, 30.0], [30.0, 10.0], [30.0, 20.0], [30.0, 15.0]])
    weak = person.copy()
    weak[1:] += 40.0  # its face box where the person's is, its body elsewhere
    raw, logits = raw_outputs({500: (np.log(3.0), person), 530: (0.0, person + 4.0), 560: (-3.0, weak),
                               1700: (0.5, elsewhere)})
    score, keypoints = detector.decode(raw, logits)
    assert score == pytest.approx(0.75)  # sigmoid(log 3)
    # scores 0.75 and 0.5 averaged; 0.047 (under half the best) and the far one left out
    np.testing.assert_allclose(keypoints, person + 4.0 * 0.5 / 1.25, atol=1e-9)


def test_decode_survives_an_empty_face_box() -> None:
    raw, logits = np.zeros((2254, 12)), np.zeros(2254)
    raw[:, 4:] = 7.0
    score, keypoints = detector.decode(raw, logits)
    assert score == pytest.approx(0.5) and np.isfinite(keypoints).all()


def test_a_look_puts_the_keypoints_back_in_photo_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    class FindsTheBrightSquare:
        """A stand-in model: one detection, its hips at the centroid of the input's bright pixels."""

        def get_input_details(self) -> list[dict]:
            return [{"index": 0}]

        def get_output_details(self) -> list[dict]:
            return [{"index": 1, "shape": np.array([1, 2254, 1])}, {"index": 0, "shape": np.array([1, 2254, 12])}]

        def set_tensor(self, index: int, value: np.ndarray) -> None:
            assert value.dtype == np.float32 and value.shape == (1, 224, 224, 3)
            assert value.min() == -1.0 and value.max() == 1.0  # MediaPipe's input range: black -1, white 1
            ys, xs = np.nonzero(value[0, ..., 0] > 0.5)
            centre = np.array([xs.mean(), ys.mean()]) + 0.5  # pixel centres
            self.out = raw_outputs({7: (5.0, np.array([centre, centre - (0, 30), centre, centre]))})

        def invoke(self) -> None:
            pass

        def get_tensor(self, index: int) -> np.ndarray:
            return self.out[0][None] if index == 0 else self.out[1][None, :, None]

    monkeypatch.setattr(detector, "interpreter", lambda path: FindsTheBrightSquare())
    photo = np.zeros((600, 900, 3), np.uint8)
    photo[300:340, 620:660] = 255  # centre (640, 320)
    for cx, cy, side in ((450, 300, 900), (640, 320, 200), (600, 350, 120), (640, 320, 50)):  # shrunk, then zoomed
        score, keypoints = detector.look(photo, cx, cy, side)
        np.testing.assert_allclose(keypoints[0], [640, 320], atol=0.1 + side / detector.INPUT_SIDE / 2)


def test_a_second_look_that_finds_nobody_keeps_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    first = np.array([[100.0, 100.0], [100.0, 60.0], [100.0, 80.0], [100.0, 70.0]])  # hips (100, 100), radius 40
    looks = iter([(0.9, first), (0.02, first + 500.0)])
    monkeypatch.setattr(detector, "look", lambda image, cx, cy, side: next(looks))
    box = detector.detector_box(np.zeros((300, 300, 3), np.uint8), margin=0.16)
    side = detector.BODY_EXTENT * 1.32 * 40.0
    np.testing.assert_allclose(box, [100.0 + detector.BOX_SHIFT[0] * 40, 100.0 + detector.BOX_SHIFT[1] * 40, side,
                                     side])


def test_download_detector_refuses_the_data_set_options(capsys: pytest.CaptureFixture) -> None:
    for argv in (["--root", "/x"], ["--sha256", "ab"], ["--from", "https://example.com/m.whl"],
                 ["--from", "a.whl", "--from", "b.whl"], ["--verify", "--from", "a.whl"]):
        assert cli_main(["download", "detector", *argv]) == 2
        assert "download detector takes --from with one mediapipe wheel on disk" in capsys.readouterr().err


def test_the_model_is_taken_out_of_a_wheel_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = tmp_path / "mediapipe-0.10.14-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(detector.WHEEL_MEMBER, b"not the model")
    with pytest.raises(ConfigError, match=f"{wheel}: {detector.WHEEL_MEMBER} has SHA-256"):
        detector.download_model(tmp_path / "model.tflite", wheel)
    assert not (tmp_path / "model.tflite").exists()
    monkeypatch.setattr(detector, "MODEL_SHA256", detector.sha256_of(b"not the model"))
    dest = detector.download_model(tmp_path / "d" / "model.tflite", wheel)
    assert dest.read_bytes() == b"not the model"
    wheel.write_bytes(b"")  # a file already there and intact is kept: the wheel is not read again
    assert detector.download_model(dest, wheel) == dest


def test_a_wheel_without_the_model_is_named(tmp_path: Path) -> None:
    wheel = tmp_path / "other.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("other/file.txt", b"x")
    with pytest.raises(ConfigError, match=f"{wheel}: not a mediapipe wheel holding"):
        detector.download_model(tmp_path / "model.tflite", wheel)


def test_a_missing_or_damaged_model_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("DEEPPOSE_DETECTOR", str(tmp_path / "pose_detection.tflite"))
    assert not detector.available()
    with pytest.raises(detector.DetectorMissing, match="pose_detection.tflite: no person detector installed"):
        detector.detector_box(np.zeros((100, 100, 3), np.uint8), 0.16)
    (tmp_path / "pose_detection.tflite").write_bytes(b"damaged")
    assert cli_main(["download", "detector", "--verify"]) == 2
    assert "pose_detection.tflite: SHA-256" in capsys.readouterr().err


def test_auto_framing_takes_the_detectors_box_where_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    people = SyntheticPoses(2, seed=1)
    box = make_box(40.0, 50.0, 60.0, 60.0)
    monkeypatch.setattr(detector, "available", lambda: True)
    monkeypatch.setattr(detector, "detector_box", lambda image, margin: box)
    found = framing.find_people(None, people, 0.16, "auto")
    assert found.methods == ["detector", "detector"]
    np.testing.assert_allclose(found.boxes, [box, box])
    monkeypatch.setattr(detector, "detector_box", lambda image, margin: None)  # nobody found: HOG's turn
    monkeypatch.setattr(framing, "hog_box", lambda image, margin: box)
    assert framing.find_people(None, people, 0.16, "auto").methods == ["hog", "hog"]
    monkeypatch.setattr(detector, "available", lambda: False)
    monkeypatch.setattr(detector, "detector_box", lambda image, margin: pytest.fail("the detector is not installed"))
    assert framing.find_people(None, people, 0.16, "auto").methods == ["hog", "hog"]


@needs_detector
def test_the_detector_frames_pasted_lsp_people(lsp_root: Path) -> None:
    scenes = framing.pasted_scenes(load_lsp(lsp_root, split="test").subset(range(20)))
    overlaps = []
    for n in range(len(scenes)):
        truth = scenes.pasted[n].copy()
        truth[2:] = truth[2:].max()
        box = detector.detector_box(scenes.image(n), margin=0.16)
        overlaps.append(0.0 if box is None else framing.box_iou(box, truth))
    # dev split: IoU over 0.5 in 95 % of 200 scenes (HOG: 85 %), over 0.7 in 77 % (docs/framing.md)
    assert np.mean(np.array(overlaps) > 0.5) >= 0.85 and np.median(overlaps) > 0.7


@needs_detector
def test_the_detector_finds_nobody_in_a_blank_photo() -> None:
    assert detector.detector_box(np.full((300, 400, 3), 128, np.uint8), 0.16) is None
