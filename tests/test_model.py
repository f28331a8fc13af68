"""DeepPoseNet against the paper's layer list, its parameter count by hand, and torchvision's AlexNet file layout.

Full-size models are built once per module; everything else uses narrow, small-input variants so the file stays
fast on a 2-core CPU. Only one 220-px forward (batch 1) is run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from deeppose_lab.model import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PAPER_LAYERS,
    TORCHVISION_CHANNELS,
    DeepPoseNet,
    count_parameters,
    format_layer_table,
    layer_table,
    load_torchvision_alexnet,
    normalise_input,
    paper_layers,
    to_joints,
)

# torchvision.models.alexnet's state dict: names and shapes (features.{0,3,6,8,10}, classifier.{1,4,6}).
TORCHVISION_SHAPES = {
    "features.0.weight": (64, 3, 11, 11), "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5), "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3), "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3), "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3), "features.10.bias": (256,),
    "classifier.1.weight": (4096, 9216), "classifier.1.bias": (4096,),
    "classifier.4.weight": (4096, 4096), "classifier.4.bias": (4096,),
    "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,),
}
OURS = {"features.0": "features.conv1", "features.3": "features.conv2", "features.6": "features.conv3",
        "features.8": "features.conv4", "features.10": "features.conv5", "classifier.1": "head.fc6",
        "classifier.4": "head.fc7"}


@pytest.fixture(scope="module")
def paper_net() -> DeepPoseNet:
    torch.manual_seed(0)
    return DeepPoseNet()


def small(**kwargs: object) -> DeepPoseNet:
    args = dict(input_size=64, width=0.125) | kwargs
    return DeepPoseNet(**args)  # type: ignore[arg-type]


def conv(c_in: int, c_out: int, k: int) -> int:
    return c_out * c_in * k * k + c_out


def fc(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


# ------------------------------------------------------------------------------------------------ paper network


def test_default_model_matches_paper_layer_list(paper_net: DeepPoseNet) -> None:
    rows = layer_table(paper_net)
    assert [(r.kind, r.output_shape) for r in rows] == [(p.kind, p.output_shape) for p in PAPER_LAYERS]
    labels = [p.label for p in PAPER_LAYERS]
    assert labels == ["C(55×55×96)", "LRN", "P", "C(27×27×256)", "LRN", "P", "C(13×13×384)", "C(13×13×384)",
                      "C(13×13×256)", "P", "F(4096)", "F(4096)", "F(28)"]
    assert paper_layers(num_joints=1)[-1].output_shape == (2,)


def test_paper_filters_and_activations(paper_net: DeepPoseNet) -> None:
    convs = [m for m in paper_net.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.kernel_size[0], m.stride[0]) for m in convs] == [(11, 4), (5, 1), (3, 1), (3, 1), (3, 1)]
    details = {r.name: r.detail for r in layer_table(paper_net)}
    assert all("ReLU" in details[f"features.conv{i}"] for i in range(1, 6))
    assert "ReLU" in details["head.fc6"] and "dropout 0.6" in details["head.fc7"]
    assert details["head.fc8"] == "4096 → 28"  # no ReLU, no dropout after the output layer


def test_parameter_count_from_first_principles(paper_net: DeepPoseNet) -> None:
    expected = (conv(3, 96, 11) + conv(96, 256, 5) + conv(256, 384, 3) + conv(384, 384, 3) + conv(384, 256, 3)
                + fc(256 * 6 * 6, 4096) + fc(4096, 4096) + fc(4096, 2 * 14))
    assert expected == 58_396_060  # "about 58 M" (the paper's count)
    assert count_parameters(paper_net) == expected
    rows = layer_table(paper_net)
    assert sum(r.params for r in rows) == expected
    text = format_layer_table(rows)
    assert text.splitlines()[-1].split() == ["total", "58,396,060"]
    assert "features.conv1" in text and "96×55×55" in text


def test_forward_at_220_and_joint_layout(paper_net: DeepPoseNet) -> None:
    paper_net.eval()
    x = torch.rand(1, 3, 220, 220)
    with torch.no_grad():
        y = paper_net(x)
        joints = paper_net.predict_normalised(x)
    assert y.shape == (1, 28) and joints.shape == (1, 14, 2)
    assert torch.equal(joints[0, 3], y[0, 6:8])  # x3, y3 at positions 6, 7
    assert y.abs().max() < 0.25  # untrained: near the box centre


# ------------------------------------------------------------------------------------------------ variants


@pytest.mark.parametrize(("width", "size", "cells"), [(0.25, 64, 2), (0.25, 96, 3), (0.25, 112, 3),
                                                      (0.5, 112, 3), (0.125, 48, 1)])
def test_narrow_variants_build_and_forward(width: float, size: int, cells: int) -> None:
    model = DeepPoseNet(input_size=size, width=width, dropout=0.5, lrn=True).eval()
    rows = layer_table(model)
    assert [r.kind for r in rows] == [p.kind for p in PAPER_LAYERS]  # same 13-layer structure
    assert rows[0].output_shape[0] == round(96 * width) and rows[-2].output_shape == (round(4096 * width),)
    assert rows[9].output_shape == (round(256 * width), cells, cells)
    with torch.no_grad():
        assert model(torch.rand(2, 3, size, size)).shape == (2, 28)


def test_width_never_below_eight_channels() -> None:
    rows = layer_table(small(width=0.001, num_joints=1))
    assert [r.output_shape[0] for r in rows if r.kind in "CF"] == [8, 8, 8, 8, 8, 8, 8, 2]


def test_too_small_input_and_bad_args_are_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        DeepPoseNet(input_size=16, width=0.125)
    with pytest.raises(ValueError, match="dropout"):
        small(dropout=1.0)
    with pytest.raises(ValueError, match="channels"):
        small(channels=(8, 8, 8))


def test_wrong_input_gives_a_clear_error() -> None:
    model = small()
    with pytest.raises(TypeError, match="uint8 in 0–255"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.int64))  # e.g. labels or indices passed by mistake
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\)"):
        model(torch.zeros(1, 64, 64, 3))


# ------------------------------------------------------------------------------------------------ behaviour


def test_output_has_no_activation_or_clamp() -> None:
    model = small(num_joints=2).eval()
    with torch.no_grad():
        model.head.fc8.bias.fill_(-5.0)
        assert (model(torch.rand(3, 3, 64, 64)) < 0).all()  # a ReLU would give 0, a clamp −0.5 or −1
        model.head.fc8.weight.zero_()
        model.head.fc8.bias.copy_(torch.tensor([-3.0, 2.0, 0.7, -0.6]))
        assert torch.equal(model(torch.rand(1, 3, 64, 64)), torch.tensor([[-3.0, 2.0, 0.7, -0.6]]))


def test_dropout_active_in_train_and_off_in_eval() -> None:
    torch.manual_seed(0)
    model = small(dropout=0.5)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        model.train()
        assert not torch.equal(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.5 for m in model.modules()) == 2


def test_input_is_normalised_with_imagenet_statistics() -> None:
    model = small().eval()
    seen = []
    model.features.conv1.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    mean_image = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand(1, 3, 64, 64)
    with torch.no_grad():
        model(mean_image)
    assert seen[0].abs().max() < 1e-6


def test_channels_last_input_is_normalised_to_the_same_numbers_and_layout() -> None:
    model = small().eval()
    x = torch.rand(2, 3, 64, 64)
    plain = normalise_input(x, model.mean, model.std)
    fast = normalise_input(x.contiguous(memory_format=torch.channels_last), model.mean, model.std)
    assert torch.equal(plain, fast) and fast.is_contiguous(memory_format=torch.channels_last)
    expected = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(plain, expected)  # and per channel: r, g, b not mixed up along the row
    odd = x.contiguous(memory_format=torch.channels_last)[:, :, ::2]  # other strides take the plain path
    torch.testing.assert_close(normalise_input(odd, model.mean, model.std), expected[:, :, ::2])


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_uint8_input_gives_exactly_the_numbers_of_the_float_crop(layout: torch.memory_format) -> None:
    model = small().eval()
    pixels = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8).contiguous(memory_format=layout)
    as_float = pixels.float() / 255.0
    expected = normalise_input(as_float, model.mean, model.std)
    assert torch.equal(normalise_input(pixels, model.mean, model.std), expected)
    bf16 = normalise_input(pixels, model.mean, model.std, torch.bfloat16)  # straight into the first conv's dtype
    assert bf16.dtype == torch.bfloat16 and torch.equal(bf16, expected.bfloat16())
    assert bf16.is_contiguous(memory_format=layout)
    with torch.no_grad():
        assert torch.equal(model(pixels), model(as_float))
        assert pixels.sum() == pixels.clone().sum()  # the caller's crops are not written to


def test_normalisation_buffers_stay_out_of_state_dict() -> None:
    model = small()
    assert {"mean", "std"} <= {name for name, _ in model.named_buffers()}
    assert all(not k.endswith(("mean", "std")) for k in model.state_dict())
    assert model.to(torch.float64).mean.dtype == torch.float64  # still moves with the model


def test_from_config_round_trip(tmp_path: Path) -> None:
    model = small(width=0.25, input_size=96, dropout=0.3, lrn=False, num_joints=3).eval()
    path = tmp_path / "ckpt.pt"
    torch.save({"model_config": model.config, "model": model.state_dict()}, path)
    ckpt = torch.load(path, weights_only=True)
    rebuilt = DeepPoseNet.from_config(ckpt["model_config"]).eval()
    rebuilt.load_state_dict(ckpt["model"])  # strict: same keys and shapes
    assert rebuilt.config == model.config
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
    with pytest.raises(ValueError, match="unknown DeepPoseNet config keys"):
        DeepPoseNet.from_config(model.config | {"depth": 5})


def test_to_joints_layout() -> None:
    y = torch.arange(8.0).view(1, 8)
    assert to_joints(y).tolist() == [[[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]]]


# ------------------------------------------------------------------------------------------------ torchvision


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=gen) for k, shape in TORCHVISION_SHAPES.items()}
    path = tmp_path_factory.mktemp("tv") / "alexnet-owt-7be5be79.pth"
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("size", [224, 220])
def test_load_torchvision_alexnet(torchvision_file: tuple[Path, dict[str, torch.Tensor]], size: int) -> None:
    path, state = torchvision_file
    model = load_torchvision_alexnet(path, num_joints=14, input_size=size).eval()
    ours = model.state_dict()
    for tv_key, tensor in state.items():
        layer, param = tv_key.rsplit(".", 1)
        if layer in OURS:
            assert torch.equal(ours[f"{OURS[layer]}.{param}"], tensor), tv_key
    assert ours["head.fc8.weight"].shape == (28, 4096) and not ours["head.fc8.bias"].any()  # fresh, not 1000-class
    assert [r.output_shape[0] for r in layer_table(model) if r.kind == "C"] == list(TORCHVISION_CHANNELS)
    assert count_parameters(model) == sum(torch.Size(s).numel() for s in TORCHVISION_SHAPES.values()) \
        - fc(4096, 1000) + fc(4096, 28)
    with torch.no_grad():
        assert model(torch.rand(1, 3, size, size)).shape == (1, 28)


def test_wrong_shaped_state_dict_names_file_and_key(tmp_path: Path) -> None:
    state = {k: torch.zeros(s) for k, s in TORCHVISION_SHAPES.items() if k.startswith("features")}
    state["features.3.weight"] = torch.zeros(256, 96, 5, 5)  # the paper's conv2, not torchvision's
    path = tmp_path / "not_alexnet.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"not_alexnet\.pth.*'features\.3\.weight' has shape \(256, 96, 5, 5\)"):
        load_torchvision_alexnet(path)


def test_foreign_files_give_clear_errors(tmp_path: Path) -> None:
    ours = tmp_path / "ours.pth"
    torch.save(small().state_dict(), ours)
    with pytest.raises(ValueError, match=r"ours\.pth.*unexpected key 'features\.conv1\.weight'"):
        load_torchvision_alexnet(ours)
    whole = tmp_path / "whole_model.pth"
    torch.save(nn.Linear(2, 2), whole)
    with pytest.raises(ValueError, match=r"whole_model\.pth: not a weights-only"):
        load_torchvision_alexnet(whole)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(ValueError, match=r"list\.pth: expected a state dict"):
        load_torchvision_alexnet(listed)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_torchvision_alexnet(tmp_path / "missing.pth")


@pytest.mark.parametrize("beta", [0.75, 0.6])
def test_channel_lrn_matches_pytorch_local_response_norm(beta):
    from deeppose_lab.model import ChannelLRN

    x = torch.randn(2, 7, 5, 4, requires_grad=True) * 40  # big activations, where the normalisation bites
    ours, ref = ChannelLRN(5, 5e-4, beta, 2.0), nn.LocalResponseNorm(5, 5e-4, beta, 2.0)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
    g1, = torch.autograd.grad(ours(x).sum(), x)
    g2, = torch.autograd.grad(ref(x).sum(), x)
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(ref(x), x)  # the layer does something at this scale


def test_batchnorm_sits_between_every_convolution_and_its_relu():
    net = DeepPoseNet(input_size=64, width=0.125, lrn=False, batchnorm=True)
    names = list(net.features._modules)
    for i in range(1, 6):
        assert names[names.index(f"conv{i}") + 1] == f"bn{i}" and names[names.index(f"bn{i}") + 1] == f"relu{i}"
    assert DeepPoseNet.from_config(net.config).config["batchnorm"] is True
    assert "bn1" not in DeepPoseNet(input_size=64, width=0.125).features._modules  # the paper's has none


def test_folding_batchnorm_keeps_the_outputs_and_leaves_the_network_alone():
    from deeppose_lab.model import fold_batchnorm

    torch.manual_seed(0)
    net = DeepPoseNet(input_size=64, width=0.125, lrn=False, batchnorm=True, dropout=0.0)
    net.train()
    for _ in range(3):  # running statistics away from (0, 1)
        net(torch.rand(8, 3, 64, 64) * 0.5 + 0.3)
    for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
        nn.init.uniform_(bn.weight, 0.5, 2.0)
        nn.init.uniform_(bn.bias, -0.5, 0.5)
    net.eval()
    x = torch.rand(4, 3, 64, 64)
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    torch.testing.assert_close(folded(x), net(x), rtol=1e-4, atol=1e-5)
