"""texsynth: neural texture synthesis, style transfer and multi-style blending from YAML recipes."""

__version__ = "0.1.0"

from .api import Rendered, Synthesis, pick_device, render, synthesize  # noqa: E402
from .errors import TexsynthError  # noqa: E402
from .optimize import Progress  # noqa: E402
from .recipe import Recipe, load_recipe, parse_recipe  # noqa: E402

__all__ = [
    "Progress",
    "Recipe",
    "Rendered",
    "Synthesis",
    "TexsynthError",
    "__version__",
    "load_recipe",
    "parse_recipe",
    "pick_device",
    "render",
    "synthesize",
]
