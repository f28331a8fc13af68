"""Starting a stage from torchvision's ImageNet AlexNet (``StageRecipe.init``): the profile field, its validation,
loading by key name from a file or torch hub's cache, and the hash-checked download (from a server on 127.0.0.1).

The synthetic weights have torchvision's names and shapes (244 MB), so they are made and written once per module,
in torch.save's format before 1.6 (a 2017 file may be in it; test_model.py loads the zip format).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import http.server
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from test_model import OURS, TORCHVISION_SHAPES

from deeppose_lab import cli
from deeppose_lab.errors import ConfigError
from deeppose_lab.images import DataError
from deeppose_lab.model import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    IMAGENET_URL,
    TORCHVISION_CHANNELS,
    TORCHVISION_MIN_INPUT,
    DeepPoseNet,
    dry_feature_shape,
    hub_cache_path,
    imagenet_weights_file,
    pretrained_alexnet,
    torchvision_config,
    torchvision_layout,
)
from deeppose_lab.profiles import Profile, StageRecipe, get_profile

IMAGENET_SETS = {"stage1.init": "imagenet", "stage1.lrn": "false"}  # the paper profile's stage 1 from ImageNet
# DeepPoseNet.config of the presets' recipes before ``init`` existed (printed by the code of that time; the classroom's
# dropout has been 0 since trial U)
PAPER_CHANNELS = (96, 256, 384, 384, 256)
CONFIG_BEFORE = {
    "classroom": {"num_joints": 14, "input_size": 112, "width": 0.5, "dropout": 0.0, "lrn": False,
                  "channels": PAPER_CHANNELS, "hidden": 4096, "conv1_padding": 4, "ceil_pool": True,
                  "adaptive_pool": None, "batchnorm": False},
    "paper": {"num_joints": 14, "input_size": 220, "width": 1.0, "dropout": 0.6, "lrn": True,
              "channels": PAPER_CHANNELS, "hidden": 4096, "conv1_padding": 4, "ceil_pool": True,
              "adaptive_pool": None, "batchnorm": False},
}


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """torchvision-shaped random weights, saved as torch hub names its files: alexnet-owt-<SHA-256 prefix>.pth."""
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=gen) for k, shape in TORCHVISION_SHAPES.items()}
    return saved(state, tmp_path_factory.mktemp("served"), "alexnet-owt-{}.pth"), state


def saved(state: dict[str, torch.Tensor], folder: Path, pattern: str, digest: str | None = None) -> Path:
    """``state`` saved under ``pattern`` with the first 8 hex digits of its SHA-256 (or ``digest``)."""
    tmp = folder / "saving.pth"
    torch.save(state, tmp, _use_new_zipfile_serialization=False)
    return tmp.rename(folder / pattern.format(digest or sha256(tmp)[:8]))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture
def hub_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache ($TORCH_HOME), with no proxy between us and 127.0.0.1."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """``folder`` over HTTP on 127.0.0.1 in a thread; yields the base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_loaded_by_name(model: DeepPoseNet, state: dict[str, torch.Tensor]) -> None:
    ours = model.state_dict()
    for tv_key, tensor in state.items():
        layer, param = tv_key.rsplit(".", 1)
        if layer in OURS:
            assert torch.equal(ours[f"{OURS[layer]}.{param}"], tensor), tv_key
    assert ours["head.fc8.weight"].shape == (28, 4096) and not ours["head.fc8.bias"].any()  # fresh, as at random


# --- the profile field ---------------------------------------------------------------------------------------

def test_init_is_set_from_the_command_line_and_round_trips_through_json() -> None:
    args = argparse.Namespace(profile="paper", set=[f"{k}={v}" for k, v in IMAGENET_SETS.items()], epochs=None)
    p = cli.profile_from(args)
    assert (p.stage1.init, p.refiner.init, p.stage1.layout, p.refiner.layout) == \
        ("imagenet", "random", "torchvision", "paper")
    assert Profile.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    # torchvision's layout at the paper's 220 px and dropout: what the network and its checkpoint will say
    assert p.stage1.model_config() == torchvision_config(dropout=0.6, input_size=220)
    assert p.stage1.model_config()["channels"] == TORCHVISION_CHANNELS
    assert p.refiner.model_config() == CONFIG_BEFORE["paper"]  # refine_init=scratch: the refiners are the paper's


def test_a_profile_from_before_init_loads_as_random_with_the_same_network() -> None:
    for name, config in CONFIG_BEFORE.items():
        old = get_profile(name).to_dict()
        for recipe in ("stage1", "refiner"):
            del old[recipe]["init"]
        p = Profile.from_dict(old)
        assert p == get_profile(name) and p.stage1.init == p.refiner.init == "random"
        assert p.stage1.model_config() == config
    assert StageRecipe().build_model().config == CONFIG_BEFORE["classroom"]


@pytest.mark.parametrize(("name", "sets", "words"), [
    ("classroom", {"stage1.init": "imagenet"}, r"stage1\.width=0\.5; set stage1\.width=1\.0, or stage1\.init=random"),
    ("paper", {"stage1.init": "imagenet"}, r"stage1\.lrn=True; set stage1\.lrn=false"),
    ("paper", {**IMAGENET_SETS, "stage1.batchnorm": "true"}, r"has stage1\.batchnorm=True"),
    ("paper", {"init": "imagenet"}, r"stage1\.lrn=True"),  # the flat name sets both recipes, as dropout does
    ("paper", {**IMAGENET_SETS, "stage1.init": "imagnet"}, r"stage1\.init must be random, imagenet or the path"),
    ("paper", {**IMAGENET_SETS, "stage1.input_size": "62"}, r"stage1\.input_size 62.*at least 63 px"),
    ("paper", {**IMAGENET_SETS, "refine_init": "previous", "refiner.lrn": "false"},
     r"refine_init=previous copies.*'layout': 'torchvision'.*give the refiner stage 1's init"),
])
def test_validation_names_the_fields_that_conflict(name: str, sets: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        get_profile(name, **sets)


def test_a_refiner_copying_an_imagenet_stage_1_has_its_layout() -> None:
    p = get_profile("paper", **IMAGENET_SETS, refine_init="previous", **{"refiner.lrn": "false",
                                                                        "refiner.init": "imagenet"})
    assert p.refiner.model_config() == {**p.stage1.model_config(), "dropout": p.refiner.dropout}
    q = get_profile("paper", init="imagenet", lrn="false")  # both recipes; refine_init=scratch: both from ImageNet
    assert q.stage1.init == q.refiner.init == "imagenet"


def test_a_recipe_never_describes_a_network_it_would_not_build() -> None:
    with pytest.raises(ConfigError, match=r"init=imagenet .* has width=0\.5"):
        StageRecipe(init="imagenet").network()


def test_a_stored_run_whose_weights_file_has_moved_still_loads(tmp_path: Path) -> None:
    d = get_profile("paper", **IMAGENET_SETS).to_dict()
    d["stage1"]["init"] = str(tmp_path / "gone.pth")
    assert Profile.from_dict(d).stage1.init == str(tmp_path / "gone.pth")  # evaluation needs no ImageNet file


def test_the_smallest_input_of_torchvisions_layout() -> None:
    trunk = dict(channels=list(TORCHVISION_CHANNELS), lrn=False, conv1_padding=2, ceil_pool=False, adaptive_pool=6)
    assert dry_feature_shape(TORCHVISION_MIN_INPUT, **trunk) == (256, 6, 6)
    with pytest.raises(ValueError, match="too small"):
        dry_feature_shape(TORCHVISION_MIN_INPUT - 1, **trunk)


# --- loading -------------------------------------------------------------------------------------------------

def test_torchvision_config_is_the_layouts_config_and_nothing_else_takes_its_weights(tmp_path: Path) -> None:
    with torch.device("meta"):
        assert torchvision_layout(input_size=220).config == torchvision_config(input_size=220)
    with pytest.raises(ValueError, match="ImageNet weights need torchvision's layout"):
        pretrained_alexnet(tmp_path / "never_read.pth", get_profile("paper").stage1.model_config())


def test_build_model_from_a_file_loads_every_weight_by_name(weights: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, state = weights
    recipe = get_profile("paper", **{**IMAGENET_SETS, "stage1.init": str(path)}).stage1
    model = recipe.build_model()
    assert_loaded_by_name(model, state)
    assert model.config == recipe.model_config()  # what pipeline.check_stage_matches_run compares
    # torchvision's weights expect ImageNet's mean/std on 0–1 RGB: what every DeepPoseNet normalises with
    assert model.mean.flatten().tolist() == pytest.approx(IMAGENET_MEAN)
    assert model.std.flatten().tolist() == pytest.approx(IMAGENET_STD)


def test_a_wrong_file_is_named_with_what_is_wrong(tmp_path: Path) -> None:
    state = {k: torch.zeros(s) for k, s in TORCHVISION_SHAPES.items() if not k.startswith("classifier")}
    state["features.3.weight"] = torch.zeros(256, 96, 5, 5)  # the paper's conv2
    path = tmp_path / "alexnet-paper.pth"
    torch.save(state, path)
    recipe = get_profile("paper", **{**IMAGENET_SETS, "stage1.init": str(path)}).stage1
    with pytest.raises(DataError, match=r"alexnet-paper\.pth: not torchvision's AlexNet.*'features\.3\.weight' has "
                                        r"shape \(256, 96, 5, 5\).*missing key 'classifier\.1\.weight'"):
        recipe.build_model()


# --- torch hub's cache and the download ----------------------------------------------------------------------

def test_imagenet_loads_from_torch_hubs_cache(weights: tuple[Path, dict[str, torch.Tensor]], hub_home: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path, state = weights
    monkeypatch.setenv("DEEPPOSE_IMAGENET_URL", f"http://127.0.0.1:{closed_port()}/{path.name}")  # no server
    hub_home.mkdir(parents=True)
    os.link(path, hub_home / path.name)  # where torchvision or torch hub would have left it
    assert_loaded_by_name(get_profile("paper", **IMAGENET_SETS).stage1.build_model(), state)


def test_imagenet_is_downloaded_once_into_torch_hubs_cache(weights: tuple[Path, dict[str, torch.Tensor]],
                                                          hub_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = weights
    with serve(path.parent) as base:
        monkeypatch.setenv("DEEPPOSE_IMAGENET_URL", f"{base}/{path.name}")
        cached = imagenet_weights_file(progress=False)
    assert cached == hub_home / path.name and sha256(cached) == sha256(path)
    assert [f.name for f in hub_home.iterdir()] == [path.name]  # no partial file left beside it
    stamp = cached.stat().st_mtime_ns
    assert imagenet_weights_file(progress=False) == cached  # the server is gone: found in the cache
    assert cached.stat().st_mtime_ns == stamp


def test_a_download_whose_hash_does_not_match_its_name_is_refused(tmp_path: Path, hub_home: Path) -> None:
    forged = saved({"x": torch.zeros(3)}, tmp_path, "alexnet-owt-{}.pth", digest="00000000")
    unnamed = tmp_path / "alexnet.pth"
    unnamed.write_bytes(forged.read_bytes())
    with serve(tmp_path) as base:
        with pytest.raises(DataError, match=rf"{base}/{forged.name}: download refused: the file's SHA-256 does not "
                                            r"start with 00000000"):
            imagenet_weights_file(f"{base}/{forged.name}", progress=False)
        with pytest.raises(DataError, match=r"'alexnet\.pth' carries no SHA-256 prefix"):
            imagenet_weights_file(f"{base}/alexnet.pth", progress=False)
    assert not hub_home.exists() or not any(hub_home.iterdir())  # nothing reached the cache


def test_without_a_network_the_error_says_where_to_put_the_file(hub_home: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert hub_cache_path(IMAGENET_URL) == hub_home / "alexnet-owt-7be5be79.pth"  # torch hub's own place for it
    monkeypatch.setenv("DEEPPOSE_IMAGENET_URL", f"http://127.0.0.1:{closed_port()}/alexnet-owt-7be5be79.pth")
    recipe = get_profile("paper", **IMAGENET_SETS).stage1
    with pytest.raises(DataError, match=rf"{hub_home / 'alexnet-owt-7be5be79.pth'}: torchvision's ImageNet AlexNet "
                                        r"weights are not there, and downloading .* failed .* copy it to this path"):
        recipe.build_model()
