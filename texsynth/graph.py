"""Compile a recipe and its targets into a loss graph.

The graph is built from three combinators — :class:`AtLayer` (apply a loss to
one named activation), :class:`Weighted` (scale by a weight) and :class:`Sum` —
and returns its top-level terms by name (``style``, ``content``, ``tv``), so a
progress bar or a trace can show each. ``print(graph)`` reads like the recipe.

Style blends happen at the target level (Gatys et al. 2016, §3): each layer's
target Gram matrix is the weighted mean of the style images' Grams, and one
loss per layer compares against it. The sliced-Wasserstein loss blends the
same way, as one mixture distribution of the styles' features per layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .losses import ContentLoss, GramLoss, MaskedGramLoss, SlicedWassersteinLoss, TotalVariationLoss, gram_matrix
from .recipe import Recipe, StyleLoss

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

    @contextmanager
    def repeated_draws(self) -> Iterator[Callable[[], None]]:
        """Yield ``rewind``: after it, random losses draw again what they drew at the start.

        Evaluating a batch one item at a time must show every item the same
        random projections, as a single batched call would.
        """
        random = [module for module in self.modules() if isinstance(module, SlicedWassersteinLoss)]
        states = [module.generator_state() for module in random]

        def rewind() -> None:
            for module, state in zip(random, states):
                module.set_generator_state(state)

        yield rewind

    @property
    def layers(self) -> set[str]:
        """Every activation the graph reads (``"input"`` included when a pixel term is present)."""
        return {module.layer for module in self.modules() if isinstance(module, AtLayer)}

    def set_blend(self, weights: Sequence[float]) -> None:
        """Re-blend every style term by ``weights``, one per style (>= 0, normalized), in place.

        The targets become exactly what :func:`compile_graph` builds for a recipe
        with these weights: the weighted mean of the styles' Grams, the weighted
        mixture of their features. Masked styles are matched region by region,
        not blended, so a masked graph refuses.
        """
        blendable = [module for module in self.modules() if isinstance(module, (GramLoss, SlicedWassersteinLoss))]
        if any(isinstance(module, MaskedGramLoss) for module in self.modules()) or not blendable:
            raise ValueError("this graph's styles are masked (matched region by region), so they cannot be re-blended")
        for module in blendable:
            module.set_weights(weights)

    def reseed_random_terms(self, seed: int) -> None:
        """Restart every random term's draws from ``seed`` (and its own seed), e.g. once per training iteration."""
        for module in self.modules():
            if isinstance(module, SlicedWassersteinLoss):
                module.reseed_from(seed)

    def set_content_targets(self, targets: Mapping[str, Tensor]) -> None:
        """Compare the content terms with these features by layer, one item per batch item (B, C, H, W).

        A network trained on many photos compares each output with its own photo.
        """
        found = set()
        for module in self.modules():
            if isinstance(module, AtLayer) and isinstance(module.loss, ContentLoss):
                module.loss.set_target(targets[module.layer])
                found.add(module.layer)
        if not found:
            raise ValueError("this graph has no content term")


def normalized(weights: Mapping[str, float] | Sequence[float]) -> list[float]:
    """Weights divided by their sum, so a blend or a layer set always totals 1."""
    values = [float(w) for w in (weights.values() if isinstance(weights, Mapping) else weights)]
    total = sum(values)
    if not total > 0:
        raise ValueError(f"weights must sum to more than 0, got {values}")
    return [value / total for value in values]


@torch.no_grad()
def style_features(
    extract: Extractor, images: Sequence[Tensor], layers: Sequence[str], **options
) -> dict[str, list[Tensor]]:
    """Each style image's activations per layer, (1, C, H, W) each; ``options`` go to the extractor."""
    found: dict[str, list[Tensor]] = {layer: [] for layer in layers}
    for image in images:
        features = extract(image, **options)
        for layer in layers:
            found[layer].append(features[layer].float())
    return found


def blend_grams(features: Mapping[str, Sequence[Tensor]], weights: Sequence[float]) -> dict[str, Tensor]:
    """Per layer, the weighted mean of the style images' Gram matrices, (C, C)."""
    shares = normalized(weights)
    return {
        layer: sum(share * gram_matrix(image)[0] for share, image in zip(shares, images))  # type: ignore[misc]
        for layer, images in features.items()
    }


def style_targets(
    extract: Extractor, images: Sequence[Tensor], weights: Sequence[float], layers: Sequence[str], **options
) -> dict[str, Tensor]:
    """Blend target per layer: the weighted mean of each style image's Gram matrix, (C, C)."""
    return blend_grams(style_features(extract, images, layers, **options), weights)


@torch.no_grad()
def content_targets(extract: Extractor, image: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
    features = extract(image)
    return {layer: features[layer].float() for layer in layers}


def style_loss_at(
    recipe: Recipe,
    layer: str,
    style: Mapping[str, Sequence[Tensor]],
    weights: Sequence[float],
    masks: Sequence[Tensor | None] | None = None,
) -> nn.Module:
    """The recipe's style loss for one layer, against the blend of the style images' features there.

    With masks, styles are not blended: each is matched where its mask allows
    (a style without a mask: everywhere), weighted by its share.
    """
    if masks is not None and any(mask is not None for mask in masks):
        terms = []
        for share, features, mask in zip(normalized(weights), style[layer], masks):
            target = gram_matrix(features)[0]
            terms.append(Weighted(share, GramLoss(target) if mask is None else MaskedGramLoss(target, mask)))
        return Sum(terms)

    def gram() -> nn.Module:
        return GramLoss([gram_matrix(features)[0] for features in style[layer]], weights)

    def sliced() -> nn.Module:
        return SlicedWassersteinLoss(style[layer], weights, seed=_layer_seed(recipe.seed, layer))

    return {
        StyleLoss.GRAM: gram,
        StyleLoss.SLICED: sliced,
        StyleLoss.BOTH: lambda: Sum([gram(), sliced()]),
    }[recipe.effective_style_loss]()


def _layer_seed(seed: int, layer: str) -> int:
    # Layers of equal width would otherwise draw the very same projections.
    return (seed * 7919 + sum(ord(c) * 31**i for i, c in enumerate(layer))) % 2**63


def compile_graph(
    recipe: Recipe,
    style: Mapping[str, Sequence[Tensor]],
    content_features: Mapping[str, Tensor] | None = None,
    masks: Sequence[Tensor | None] | None = None,
) -> LossGraph:
    """The loss graph of ``recipe``: style_weight·style + content.weight·CONTENT_SCALE·content + tv_weight·tv.

    ``style`` holds each style image's activations per style layer (see :func:`style_features`);
    ``masks``, one per style or None, each (1, 1, H, W) at the output's size.
    """
    weights = [s.weight for s in recipe.styles]
    layer_shares = zip(recipe.style_layers, normalized(recipe.style_layers))
    terms: dict[str, nn.Module] = {
        "style": Weighted(
            recipe.style_weight,
            Sum(
                [
                    Weighted(share, AtLayer(layer, style_loss_at(recipe, layer, style, weights, masks)))
                    for layer, share in layer_shares
                ]
            ),
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
