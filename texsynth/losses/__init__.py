"""Loss families, one per module: a pure function and a thin ``nn.Module`` holding its target.

Every loss returns one value per batch item, shape (B,), so batched tiles can
report their own losses; the optimizer sums them.
"""

from .content import ContentLoss, content_loss
from .gram import GramLoss, MaskedGramLoss, gram_loss, gram_matrix, masked_gram_matrix
from .sliced import SlicedWassersteinLoss, random_projections, sliced_wasserstein_loss
from .tv import TotalVariationLoss, total_variation

__all__ = [
    "ContentLoss",
    "GramLoss",
    "MaskedGramLoss",
    "SlicedWassersteinLoss",
    "TotalVariationLoss",
    "content_loss",
    "gram_loss",
    "gram_matrix",
    "masked_gram_matrix",
    "random_projections",
    "sliced_wasserstein_loss",
    "total_variation",
]
