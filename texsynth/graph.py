"""Compile a recipe and its targets into a loss graph.

The graph is built from three combinators — :class:`AtLayer` (apply a loss to
one named activation), :class:`Weighted` (scale by a weight) and :class:`Sum` —
and returns its top-level terms by name (``style``, ``content``, ``tv``), so a
progress bar or a trace can show each. ``print(graph)`` reads like the recipe.

Style blends happen at the target level (Gatys et al. 2016, §3): each layer's
target Gram matrix is the weighted mean of the style images' Grams, and one
loss per layer compares against it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from .losses import ContentLoss, GramLoss, TotalVariationLoss, gram_matrix
from .recipe import Recipe

Extractor = Callable[[Tensor], Mapping[str, Tensor]]

#: Relative content errors run about ten times larger than relative Gram errors
#: for the same visual change, so the content term is scaled down by this much:
#: then ``content.weight: 1`` with ``style_weight: 1`` gives a balanced transfer
#: (measured on Chelsea × Starry Night: 1:1 unscaled kept the photo almost as is).
CONTENT_SCALE = 0.1


class AtLayer(nn.Module):
    """Apply ``loss`` to the activation named ``layer``."""

    def __init__(self, layer: str, loss: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.loss = loss

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        return self.loss(features[self.layer])

    def extra_repr(self) -> str:
        return f"layer={self.layer!r}"


class Weighted(nn.Module):
    """``weight * module(features)``."""

    def __init__(self, weight: float, module: nn.Module) -> None:
        super().__init__()
        self.weight = float(weight)
        self.module = module

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        return self.weight * self.module(features)

    def extra_repr(self) -> str:
        return f"weight={self.weight:g}"


class Sum(nn.Module):
    """The sum of several terms."""

    def __init__(self, terms: Sequence[nn.Module]) -> None:
        super().__init__()
        self.terms = nn.ModuleList(terms)

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        return torch.stack([term(features) for term in self.terms]).sum(dim=0)


class LossGraph(nn.Module):
    """Named loss terms over a feature dict; each term gives one value per batch item, (B,)."""

    def __init__(self, terms: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.terms = nn.ModuleDict(terms)

    def forward(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {name: term(features) for name, term in self.terms.items()}

    @property
    def layers(self) -> set[str]:
        """Every activation the graph reads (``"input"`` included when a pixel term is present)."""
        return {module.layer for module in self.modules() if isinstance(module, AtLayer)}


def normalized(weights: Mapping[str, float] | Sequence[float]) -> list[float]:
    """Weights divided by their sum, so a blend or a layer set always totals 1."""
    values = [float(w) for w in (weights.values() if isinstance(weights, Mapping) else weights)]
    total = sum(values)
    if not total > 0:
        raise ValueError(f"weights must sum to more than 0, got {values}")
    return [value / total for value in values]


@torch.no_grad()
def style_targets(
    extract: Extractor, images: Sequence[Tensor], weights: Sequence[float], layers: Sequence[str], **options
) -> dict[str, Tensor]:
    """Blend target per layer: the weighted mean of each style image's Gram matrix, (C, C).

    ``options`` go to the extractor (e.g. its padding).
    """
    targets: dict[str, Tensor] = {}
    for image, share in zip(images, normalized(weights)):
        features = extract(image, **options)
        for layer in layers:
            gram = gram_matrix(features[layer].float())[0]  # (C, C)
            targets[layer] = targets[layer] + share * gram if layer in targets else share * gram
    return targets


@torch.no_grad()
def content_targets(extract: Extractor, image: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
    features = extract(image)
    return {layer: features[layer].float() for layer in layers}


def compile_graph(
    recipe: Recipe, style_grams: Mapping[str, Tensor], content_features: Mapping[str, Tensor] | None = None
) -> LossGraph:
    """The loss graph of ``recipe``: style_weight·style + content.weight·CONTENT_SCALE·content + tv_weight·tv."""
    layer_shares = zip(recipe.style_layers, normalized(recipe.style_layers))
    terms: dict[str, nn.Module] = {
        "style": Weighted(
            recipe.style_weight,
            Sum([Weighted(share, AtLayer(layer, GramLoss(style_grams[layer]))) for layer, share in layer_shares]),
        )
    }
    if recipe.content is not None:
        if content_features is None:
            raise ValueError("the recipe has a content image but no content targets were given")
        shares = zip(recipe.content.layers, normalized(recipe.content.layers))
        terms["content"] = Weighted(
            recipe.content.weight * CONTENT_SCALE,
            Sum([Weighted(share, AtLayer(layer, ContentLoss(content_features[layer]))) for layer, share in shares]),
        )
    if recipe.tv_weight > 0:
        terms["tv"] = Weighted(recipe.tv_weight, AtLayer("input", TotalVariationLoss(circular=recipe.tileable)))
    return LossGraph(terms)
