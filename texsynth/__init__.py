"""texsynth: neural texture synthesis, style transfer and multi-style blending from YAML recipes."""

from ._version import __version__
from .api import Rendered, Synthesis, pick_device, render, synthesize
from .errors import TexsynthError
from .optimize import Progress, StepReport
from .recipe import Recipe, load_recipe, parse_recipe

__all__ = [
    "Progress",
    "Recipe",
    "Rendered",
    "StepReport",
    "Synthesis",
    "TexsynthError",
    "__version__",
    "load_recipe",
    "parse_recipe",
    "pick_device",
    "render",
    "synthesize",
]
