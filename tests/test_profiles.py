"""Profiles: the four presets, $DEEPPOSE_PROFILE, command-line overrides and validation."""

from __future__ import annotations

import dataclasses
import json

import pytest

from deeppose_lab.geometry import Augmentation
from deeppose_lab.profiles import PROFILES, VIEW_FIELDS, Profile, apply_overrides, get_profile, validate, without_views


@pytest.mark.parametrize("name", ["smoke", "classroom", "lesson", "paper"])
def test_presets_exist_and_are_valid(name):
    p = get_profile(name)
    assert p.name == name and p == PROFILES[name]
    validate(p)


def test_paper_profile_is_the_papers_recipe():
    p = get_profile("paper")
    assert (p.stage1.input_size, p.stage1.width, p.stage1.optimizer, p.stage1.lr, p.sigma, p.stages,
            p.boxes_per_joint) == (220, 1.0, "adagrad", 5e-4, 2.0, 3, 40)
    assert p.refiner == p.stage1.__class__(**{**p.stage1.__dict__, "epochs": 20})  # the same recipe, fewer epochs


def test_lesson_is_the_classroom_recipe_with_less_training():
    lesson, classroom = get_profile("lesson"), get_profile("classroom")
    fewer = {"stage1": dataclasses.replace(classroom.stage1, epochs=6),
             "refiner": dataclasses.replace(classroom.refiner, epochs=1)}
    assert lesson == classroom.replace(name="lesson", **fewer)
    assert lesson.stage1.epochs < classroom.stage1.epochs and lesson.refiner.epochs < classroom.refiner.epochs


def test_smoke_is_smaller_than_classroom():
    smoke, classroom = get_profile("smoke"), get_profile("classroom")
    assert smoke.stage1.input_size < classroom.stage1.input_size and smoke.stage1.epochs < classroom.stage1.epochs
    assert smoke.synthetic_train < classroom.synthetic_train


def test_default_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("DEEPPOSE_PROFILE", raising=False)
    assert get_profile().name == "classroom"
    monkeypatch.setenv("DEEPPOSE_PROFILE", "smoke")
    assert get_profile().name == "smoke"
    assert get_profile("paper").name == "paper"  # an explicit name wins over the environment
    monkeypatch.setenv("DEEPPOSE_PROFILE", "turbo")
    with pytest.raises(ValueError, match="unknown profile 'turbo'"):
        get_profile()


def test_unknown_profile_lists_the_choices():
    with pytest.raises(ValueError, match=r"classroom.*paper.*smoke"):
        get_profile("nope")


def test_overrides_convert_strings_to_the_field_type():
    p = get_profile("smoke", input_size="96", lr="0.01", bf16="yes", channels_last="0", optimizer="sgd", sigma="1.5",
                    refine_init="scratch")
    assert p.stage1.input_size == 96 and isinstance(p.stage1.input_size, int)
    assert p.stage1.lr == 0.01 and isinstance(p.stage1.lr, float)
    assert p.number_format == "bf16" and p.channels_last is False  # bf16=yes: the name before number_format
    assert p.stage1.optimizer == p.refiner.optimizer == "sgd" and p.sigma == 1.5
    assert get_profile("smoke").stage1.input_size == 64  # the preset itself is untouched
    q = get_profile("smoke", epochs=5, lr=1)  # non-strings pass through
    assert q.stage1.epochs == 5 and q.stage1.lr == 1


@pytest.mark.parametrize(("field", "text", "words"), [
    ("input_size", "big", "must be a int"),
    ("input_size", "64.5", "must be a int"),
    ("lr", "fast", "must be a float"),
    ("bf16", "maybe", "true or false"),
    ("number_format", "fp16", "auto, bf16, fp32"),
    ("augment", "none", "cannot be set from the command line"),
    ("stage1", "fast", "cannot be set from the command line"),
    ("refiner.lr", "fast", "must be a float"),
])
def test_bad_override_strings(field, text, words):
    with pytest.raises(ValueError, match=words):
        get_profile("smoke", **{field: text})


def test_unknown_field():
    with pytest.raises(ValueError, match="unknown profile field 'batchsize'"):
        get_profile("smoke", batchsize="3")


@pytest.mark.parametrize(("field", "value"), [
    ("input_size", "0"), ("input_size", "-64"), ("batch_size", "0"), ("stages", "0"), ("lr", "0"),
    ("lr", "-0.1"), ("lr", "nan"), ("sigma", "0"), ("width", "-1"), ("boxes_per_joint", "0"),
    ("refine_input_size", "-48"), ("epochs", "-1"), ("weight_decay", "-1e-4"), ("val_images", "-3"),
    ("augment.surround", "1.5"), ("augment.surround", "-0.1"),
    ("input_size", "32"), ("dropout", "1.0"), ("dropout", "-0.1"), ("optimizer", "rmsprop"),
    ("schedule", "linear"), ("train_box", "face"),
])
def test_validation_refuses_bad_values(field, value):
    named = field.replace("refine_", "refiner.").removesuffix("_size")  # "input sizes below 48 px" for 32
    with pytest.raises(ValueError, match=named):
        get_profile("classroom", **{field: value})


def test_arm_weight_is_a_positive_weight_and_the_paper_weighs_every_joint_alike():
    assert get_profile("paper").arm_weight == 1.0 and get_profile("classroom", arm_weight="2").arm_weight == 2.0
    for bad in ("0", "-1"):
        with pytest.raises(ValueError, match="arm_weight is stage 1's loss weight of elbows and wrists"):
            get_profile("classroom", arm_weight=bad)


def test_refine_others_is_a_weight_from_0_to_1():
    assert get_profile("classroom").refine_others == 0.3 and get_profile("paper").refine_others == 0.0
    stored = get_profile("classroom").to_dict()
    assert Profile.from_dict(stored) == get_profile("classroom")
    del stored["refine_others"]  # a run.json written before the field: its refiners counted their own joint alone
    assert Profile.from_dict(stored) == get_profile("classroom", refine_others="0")
    for bad in ("-0.1", "1.5"):
        with pytest.raises(ValueError, match="refine_others is a loss weight from 0 to 1"):
            get_profile("classroom", refine_others=bad)


def test_zero_val_every_is_allowed_but_not_zero_epochs():
    p = get_profile("smoke", val_every="0", threads="0")
    assert p.val_every == 0 and p.threads == 0
    for field in ("epochs", "refine_epochs", "refiner.epochs"):
        with pytest.raises(ValueError, match="epochs must be at least 1"):
            get_profile("smoke", **{field: "0"})


def test_apply_overrides_with_nothing_returns_an_equal_profile():
    assert apply_overrides(PROFILES["paper"], {}) == PROFILES["paper"]


def test_to_dict_from_dict_roundtrip_through_json():
    for name in PROFILES:
        p = get_profile(name, lr="0.002")
        back = Profile.from_dict(json.loads(json.dumps(p.to_dict())))
        assert back == p and isinstance(back.augment, Augmentation)


def test_from_dict_keeps_the_default_augmentation_when_absent():
    assert Profile.from_dict({"name": "x"}).augment == Profile().augment
    assert not Profile().augment.is_identity
    aug = Augmentation(flip=True)
    assert Profile.from_dict({"augment": aug}).augment == aug
    assert Profile.from_dict({"augment": None}).augment.is_identity


def test_from_dict_refuses_unknown_fields():
    with pytest.raises(ValueError, match="unknown profile fields"):
        Profile.from_dict({"name": "x", "learning_rate": 1.0})


def test_validation_only_profiles_use_no_augmentation_preset():
    """Presets augment training crops; validation code must pass Augmentation.none() itself."""
    assert Augmentation.none().is_identity
    assert all(not p.augment.is_identity for p in PROFILES.values())


def test_one_augmentation_range_can_be_set_by_name():
    p = get_profile("classroom", **{"augment.rotate": "10", "augment.flip": "false"})
    assert p.augment.rotate == 10.0 and p.augment.flip is False and p.augment.scale == get_profile().augment.scale
    with pytest.raises(ValueError, match="unknown augmentation field 'spin'"):
        get_profile("classroom", **{"augment.spin": "1"})
    with pytest.raises(ValueError, match="augment.rotate must be a float"):
        get_profile("classroom", **{"augment.rotate": "lots"})


# --- per-stage recipes ----------------------------------------------------------------------------------------

def test_each_stage_has_one_recipe_and_one_builder():
    p = get_profile("classroom", **{"refiner.dropout": "0.1", "stage1.epochs": "7"})
    assert p.recipe(1) is p.stage1 and p.recipe(2) is p.recipe(3) is p.refiner
    assert (p.stage1.epochs, p.refiner.epochs, p.stage1.dropout, p.refiner.dropout) == (7, 4, 0.0, 0.1)
    net = p.refiner.build_model()
    assert {k: net.config[k] for k in p.refiner.network()} == p.refiner.network()


def test_flat_names_keep_their_old_meaning():
    """``--set lr`` was stage 1's, ``refine_lr`` the refiners', and a field both used set both: still so."""
    p = get_profile("classroom", lr="0.002", refine_lr="0.0001", refine_epochs="3", dropout="0.3", batch_size="32")
    assert (p.stage1.lr, p.refiner.lr, p.stage1.epochs, p.refiner.epochs) == (0.002, 0.0001, 14, 3)  # refine_epochs
    assert p.stage1.dropout == p.refiner.dropout == 0.3 and p.stage1.batch_size == p.refiner.batch_size == 32


def test_a_flat_run_file_from_before_recipes_loads_as_the_same_profile():
    old = {"name": "classroom", "input_size": 112, "width": 0.5, "dropout": 0.2, "lrn": False, "batchnorm": False,
           "optimizer": "adam", "loss": "l1", "lr": 0.001, "weight_decay": 0.05, "schedule": "cosine",
           "batch_size": 64, "epochs": 20, "refine_input_size": 112, "refine_width": 0.5, "refine_epochs": 2,
           "refine_lr": 0.0003, "stages": 3}
    then = get_profile("classroom", epochs="20", refine_epochs="2", stages="3", dropout="0.2", refine_others="0",
                       lsp_repeats="1", view_scale="0", view_shift="0")  # the recipe then
    assert Profile.from_dict(old) == then
    with pytest.raises(ValueError, match=r"refiner.lr must be a float"):
        Profile.from_dict({**old, "refine_lr": "fast"})
    with pytest.raises(ValueError, match=r"unknown profile fields \['stage1.speed'\]"):
        Profile.from_dict({"stage1": {"speed": 1}})


def test_a_run_from_before_lsp_repeats_resumes_with_each_image_once():
    """Its run.json has no ``lsp_repeats``: it trained every LSP image once an epoch, not the classroom's 16."""
    old = get_profile("classroom").to_dict()
    del old["lsp_repeats"]
    assert Profile.from_dict(old).lsp_repeats == 1
    assert Profile.from_dict(get_profile("classroom").to_dict()).lsp_repeats == 16


def test_a_run_from_before_box_views_keeps_its_one_box_and_a_new_one_gets_the_views():
    old = get_profile("classroom").to_dict()
    del old["view_scale"], old["view_shift"]
    assert (Profile.from_dict(old).view_scale, Profile.from_dict(old).view_shift) == (0.0, 0.0)
    new = Profile.from_dict(get_profile("classroom").to_dict())
    assert (new.view_scale, new.view_shift, new.refine_view_scale, new.refine_view_shift) == (0.1, 0.06, 0.0, 0.0)
    before_refiner_views = get_profile("classroom").to_dict()
    del before_refiner_views["refine_view_scale"], before_refiner_views["refine_view_shift"]
    old_run = Profile.from_dict(before_refiner_views)
    assert (old_run.view_scale, old_run.refine_view_scale, old_run.refine_view_shift) == (0.1, 0.0, 0.0)
    for name in ("paper", "smoke"):
        assert all(getattr(get_profile(name), key) == 0.0 for key in VIEW_FIELDS)


def test_training_poses_look_through_one_box_at_every_stage():
    viewing = get_profile("classroom", refine_view_scale="0.1", refine_view_shift="0.06")
    assert {getattr(viewing, key) for key in VIEW_FIELDS} == {0.1, 0.06}
    assert all(getattr(without_views(viewing), key) == 0.0 for key in VIEW_FIELDS)  # how refiners' poses are made
    assert without_views(viewing).replace(**{k: getattr(viewing, k) for k in VIEW_FIELDS}) == viewing


def test_refine_init_previous_needs_a_refiner_of_stage_1s_shape():
    with pytest.raises(ValueError, match="refine_init=previous copies stage 1's weights"):
        get_profile("classroom", **{"refiner.width": "0.25"})
    assert get_profile("classroom", refine_init="scratch", **{"refiner.width": "0.25"}).refiner.width == 0.25
    assert get_profile("classroom", **{"refiner.dropout": "0.5"}).refiner.dropout == 0.5  # no weights: allowed
    # 96 px keeps stage 1's 3×3 last feature map at 112 px, so its weights fit; 80 px pools to 2×2 and does not
    assert get_profile("classroom", **{"refiner.input_size": "96"}).refiner.input_size == 96
    with pytest.raises(ValueError, match="refine_init=previous copies stage 1's weights"):
        get_profile("classroom", **{"refiner.input_size": "80"})
