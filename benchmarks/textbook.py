"""The textbook implementation of Gatys et al.'s style transfer, as the PyTorch
tutorial "Neural Transfer Using PyTorch" writes it, for ``speed.py`` to race
against texsynth.

A normalization module and VGG19's layers copied into an ``nn.Sequential``,
with transparent ``ContentLoss``/``StyleLoss`` layers spliced in that stash
``self.loss``; Gram = F·Fᵀ / (a·b·c·d); style weight 1e6, content weight 1;
fp32, batch 1; ``torch.optim.LBFGS`` with its defaults and a closure that
clamps the image and counts evaluations. The code follows the tutorial's
line by line (its names, its comments) with these changes, so that only the
implementation differs from texsynth's and it runs on any device:

- the VGG19 weights are texsynth's (the Caffe convolutions from
  ``texsynth.features.load_vgg19_weights``), so ``Normalization`` does their
  RGB -> BGR, x255, minus-mean instead of ImageNet's mean/std, with the mean
  in a buffer (the tutorial creates it on its default device instead);
- the layers to put losses after are arguments, named in the tutorial's
  running count (``relu_10`` is texsynth's ``relu4_2``, see ``tutorial_name``);
- ``run_style_transfer`` takes the built model and calls two hooks per
  evaluation, which the benchmark uses for its clocks (and to stop).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from texsynth.features import CAFFE_BGR_MEAN, CONV_LAYERS, load_vgg19_weights

#: Loss layers on both sides, by texsynth's names: (style layers, content layers).
LAYER_SETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "relu": (("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"), ("relu4_2",)),
    "tutorial": (("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"), ("conv2_2",)),
}
STYLE_WEIGHT = 1_000_000  # the tutorial's
CONTENT_WEIGHT = 1


def gram_matrix(input: Tensor) -> Tensor:
    a, b, c, d = input.size()  # a=batch size(=1), b=number of feature maps, (c,d)=dimensions of a f. map
    features = input.view(a * b, c * d)
    G = torch.mm(features, features.t())
    return G.div(a * b * c * d)


class ContentLoss(nn.Module):
    def __init__(self, target: Tensor) -> None:
        super().__init__()
        self.target = target.detach()

    def forward(self, input: Tensor) -> Tensor:
        self.loss = F.mse_loss(input, self.target)
        return input


class StyleLoss(nn.Module):
    def __init__(self, target_feature: Tensor) -> None:
        super().__init__()
        self.target = gram_matrix(target_feature).detach()

    def forward(self, input: Tensor) -> Tensor:
        G = gram_matrix(input)
        self.loss = F.mse_loss(G, self.target)
        return input


class Normalization(nn.Module):
    """The tutorial's normalization, for the Caffe weights: RGB [0, 1] -> BGR [0, 255] minus the mean."""

    def __init__(self) -> None:
        super().__init__()
        # The tutorial makes its mean on the default device; a buffer follows .to(device).
        self.register_buffer("mean", torch.tensor(CAFFE_BGR_MEAN).view(-1, 1, 1))

    def forward(self, img: Tensor) -> Tensor:
        return img[:, [2, 1, 0]] * 255 - self.mean


def vgg19_cnn() -> nn.Sequential:
    """torchvision's ``vgg19().features`` layout, holding texsynth's VGG19 weights."""
    weights, convention = load_vgg19_weights()
    if convention != "caffe":  # pragma: no cover - the shipped weights are Caffe's
        raise RuntimeError("the benchmark's normalization expects the shipped Caffe weights")
    layers: list[nn.Module] = []
    for name in CONV_LAYERS:
        weight, bias = weights[name]
        if name.endswith("_1") and name != "conv1_1":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        conv = nn.Conv2d(weight.shape[1], weight.shape[0], kernel_size=3, padding=1)
        with torch.no_grad():
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
        layers += [conv, nn.ReLU(inplace=True)]
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers).eval()


def tutorial_name(name: str) -> str:
    """texsynth's layer name -> the tutorial's running count: relu4_2 -> relu_10."""
    kind, position = name[:4], name[4:]
    return f"{kind}_{CONV_LAYERS.index('conv' + position) + 1}"


def get_style_model_and_losses(
    cnn: nn.Sequential,
    normalization: nn.Module,
    style_img: Tensor,
    content_img: Tensor | None,
    content_layers: list[str],
    style_layers: list[str],
) -> tuple[nn.Sequential, list[StyleLoss], list[ContentLoss]]:
    """The tutorial's model builder (layer names in its running count: conv_1, relu_1, pool_1, ...)."""
    content_losses = []
    style_losses = []
    model = nn.Sequential(normalization)

    i = 0  # increment every time we see a conv
    for layer in cnn.children():
        if isinstance(layer, nn.Conv2d):
            i += 1
            name = "conv_{}".format(i)
        elif isinstance(layer, nn.ReLU):
            name = "relu_{}".format(i)
            # The in-place version doesn't play very nicely with the ContentLoss
            # and StyleLoss we insert below. So we replace with out-of-place ones here.
            layer = nn.ReLU(inplace=False)
        elif isinstance(layer, nn.MaxPool2d):
            name = "pool_{}".format(i)
        elif isinstance(layer, nn.BatchNorm2d):
            name = "bn_{}".format(i)
        else:
            raise RuntimeError("Unrecognized layer: {}".format(layer.__class__.__name__))

        model.add_module(name, layer)

        if name in content_layers:
            target = model(content_img).detach()
            content_loss = ContentLoss(target)
            model.add_module("content_loss_{}".format(i), content_loss)
            content_losses.append(content_loss)

        if name in style_layers:
            target_feature = model(style_img).detach()
            style_loss = StyleLoss(target_feature)
            model.add_module("style_loss_{}".format(i), style_loss)
            style_losses.append(style_loss)

    # now we trim off the layers after the last content and style losses
    for i in range(len(model) - 1, -1, -1):
        if isinstance(model[i], ContentLoss) or isinstance(model[i], StyleLoss):
            break
    model = model[: (i + 1)]
    return model, style_losses, content_losses


class Enough(Exception):
    """Raised from an evaluation hook once the benchmark has what it measures."""


def run_style_transfer(
    model: nn.Sequential,
    style_losses: list[StyleLoss],
    content_losses: list[ContentLoss],
    input_img: Tensor,
    num_steps: int = 300,
    style_weight: float = STYLE_WEIGHT,
    content_weight: float = CONTENT_WEIGHT,
    on_start: Callable[[], None] | None = None,
    on_eval: Callable[[int, Tensor], None] | None = None,
) -> Tensor:
    """The tutorial's loop; ``on_start()`` and ``on_eval(run, input_img)`` are called at the start
    and the end of every evaluation (the benchmark's only additions)."""
    input_img.requires_grad_(True)
    model.eval()
    model.requires_grad_(False)
    optimizer = torch.optim.LBFGS([input_img])
    run = [0]
    while run[0] <= num_steps:

        def closure():
            if on_start is not None:
                on_start()
            # correct the values of updated input image
            with torch.no_grad():
                input_img.clamp_(0, 1)
            optimizer.zero_grad()
            model(input_img)
            style_score = 0
            content_score = 0
            for sl in style_losses:
                style_score += sl.loss
            for cl in content_losses:
                content_score += cl.loss
            style_score *= style_weight
            content_score *= content_weight
            loss = style_score + content_score
            loss.backward()
            run[0] += 1
            if on_eval is not None:
                on_eval(run[0], input_img)
            return style_score + content_score

        optimizer.step(closure)
    with torch.no_grad():
        input_img.clamp_(0, 1)
    return input_img


def textbook_model(
    style: Tensor, content: Tensor | None, layers: str, device: torch.device
) -> tuple[nn.Sequential, list[StyleLoss], list[ContentLoss]]:
    """The tutorial's model on ``device`` with the loss layers of the ``layers`` preset."""
    style_layers, content_layers = LAYER_SETS[layers]
    return get_style_model_and_losses(
        vgg19_cnn().to(device),
        Normalization().to(device),
        style.to(device),
        content.to(device) if content is not None else None,
        [tutorial_name(n) for n in content_layers] if content is not None else [],
        [tutorial_name(n) for n in style_layers],
    )
