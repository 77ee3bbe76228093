"""texsynth: neural texture synthesis, style transfer and multi-style blending from YAML recipes.

The names below load on first use (PEP 562), so ``import texsynth`` does not
import torch: the command line starts its signal handling first, and Ctrl-C
while torch loads is one line, not a traceback.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .api import Rendered, Synthesis, pick_device, render, synthesize
    from .errors import TexsynthError
    from .optimize import Progress, StepReport
    from .recipe import Recipe, load_recipe, parse_recipe

#: Each public name and the module it lives in.
_HOMES = {
    "Progress": "optimize",
    "Recipe": "recipe",
    "Rendered": "api",
    "StepReport": "optimize",
    "Synthesis": "api",
    "TexsynthError": "errors",
    "load_recipe": "recipe",
    "parse_recipe": "recipe",
    "pick_device": "api",
    "render": "api",
    "synthesize": "api",
}

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'texsynth' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
