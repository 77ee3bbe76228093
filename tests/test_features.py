"""The VGG19 loader, judged by what can be observed: shapes, truncation, frozen weights, both formats."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch.nn import functional as F

from texsynth.errors import TexsynthError
from texsynth.features import (
    CONV_LAYERS,
    FEATURE_LAYERS,
    CaffeNormalize,
    TorchvisionNormalize,
    VGGFeatures,
    default_weights_path,
    load_vgg19_weights,
    pad_by_one,
)

EXPECTED_SHAPES = {
    "relu1_1": (64, 64, 64),
    "relu2_1": (128, 32, 32),
    "relu3_1": (256, 16, 16),
    "relu4_1": (512, 8, 8),
    "relu4_2": (512, 8, 8),
    "relu5_1": (512, 4, 4),
}


def test_activations_have_vgg19_shapes():
    extractor = VGGFeatures(EXPECTED_SHAPES)
    features = extractor(torch.rand(2, 3, 64, 64))
    assert set(features) == set(EXPECTED_SHAPES) | {"input"}
    for name, shape in EXPECTED_SHAPES.items():
        assert tuple(features[name].shape) == (2, *shape), name


def test_network_is_cut_after_the_deepest_requested_layer():
    extractor = VGGFeatures(["relu1_1", "relu3_1"])
    names = [name for name, _ in extractor.net.named_children()]
    assert names[-1] == "relu3_1"
    assert "conv3_2" not in names


def test_weights_are_frozen_and_get_no_gradient():
    extractor = VGGFeatures(["relu2_1"])
    assert all(not p.requires_grad for p in extractor.parameters())
    image = torch.rand(1, 3, 32, 32, requires_grad=True)
    extractor(image)["relu2_1"].sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert all(p.grad is None for p in extractor.parameters())


def test_shipped_weights_decode_to_vgg19_conv_shapes():
    weights, convention = load_vgg19_weights(None)
    assert convention == "caffe"
    assert set(weights) == set(CONV_LAYERS)
    assert tuple(weights["conv1_1"][0].shape) == (64, 3, 3, 3)
    assert tuple(weights["conv5_4"][0].shape) == (512, 512, 3, 3)
    # 8-bit codes: at most 256 distinct values per layer.
    assert weights["conv3_1"][0].unique().numel() <= 256
    raw = torch.load(default_weights_path(), weights_only=True)
    assert torch.equal(weights["conv2_1"][0], raw["block2_conv1_W_table"][raw["block2_conv1_W_q"].long()])


def test_features_are_deterministic():
    extractor = VGGFeatures(["relu3_1"])
    image = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    assert torch.equal(extractor(image)["relu3_1"], extractor(image)["relu3_1"])


def test_caffe_normalization_is_bgr_0_255_minus_mean():
    pixel = torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1)  # R, G, B
    out = CaffeNormalize()(pixel).flatten().tolist()
    assert out == pytest.approx([0.0 - 103.939, 127.5 - 116.779, 255.0 - 123.68])


def test_torchvision_state_dict_is_accepted(tmp_path):
    model = torchvision.models.vgg19()  # random weights: no download
    path = tmp_path / "vgg19.pth"
    torch.save(model.state_dict(), path)
    extractor = VGGFeatures(["relu1_1"], weights=path)
    assert isinstance(extractor.normalize, TorchvisionNormalize)
    assert torch.equal(extractor.net.conv1_1.weight, model.features[0].weight)
    # Same result as torchvision's own network on ImageNet-normalized input.
    image = torch.rand(1, 3, 16, 16)
    expected = model.features[:2](TorchvisionNormalize()(image))
    assert torch.allclose(extractor(image)["relu1_1"], expected, atol=1e-5)


def test_a_file_that_is_not_vgg19_is_a_clear_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"layer.weight": torch.zeros(2)}, path)
    with pytest.raises(TexsynthError, match="not a VGG19 state dict"):
        VGGFeatures(["relu1_1"], weights=path)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(TexsynthError, match="not a readable torch file"):
        VGGFeatures(["relu1_1"], weights=junk)


def test_avg_pooling_changes_deep_features_only():
    image = torch.rand(1, 3, 32, 32)
    layers = ["relu1_2", "relu2_1"]
    max_features = VGGFeatures(layers, pooling="max")(image)
    avg_features = VGGFeatures(layers, pooling="avg")(image)
    assert torch.equal(max_features["relu1_2"], avg_features["relu1_2"])
    assert not torch.allclose(max_features["relu2_1"], avg_features["relu2_1"])


def test_every_feature_layer_is_reachable():
    extractor = VGGFeatures(FEATURE_LAYERS)
    features = extractor(torch.rand(1, 3, 32, 32))
    assert set(FEATURE_LAYERS) <= set(features)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_the_cpu_wrap_padding_is_f_pad_circular_forward_and_backward(memory_format):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 7, 9, generator=generator).contiguous(memory_format=memory_format).requires_grad_()
    weights = torch.randn(2, 5, 9, 11, generator=generator)
    expected = F.pad(x, (1, 1, 1, 1), mode="circular")
    (expected * weights).sum().backward()
    expected_grad, x.grad = x.grad, None
    padded = pad_by_one(x, "circular")
    (padded * weights).sum().backward()
    assert torch.equal(padded, expected) and torch.allclose(x.grad, expected_grad, rtol=0, atol=1e-6)
    assert padded.is_contiguous(memory_format=memory_format)  # no layout conversion before the convolution


def test_channels_last_features_match_contiguous_ones():
    image = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    plain, last = VGGFeatures(["relu1_1", "relu3_1"]), VGGFeatures(["relu1_1", "relu3_1"], channels_last=True)
    for padding in ("zeros", "circular"):
        a, b = plain(image, padding=padding), last(image, padding=padding)
        for name in ("relu1_1", "relu3_1"):  # Caffe-scaled activations: up to thousands
            assert torch.allclose(a[name], b[name], rtol=1e-5, atol=1e-5 * float(a[name].abs().max()))
