"""The one place texsynth's version is written; pyproject.toml reads it (dynamic version)."""

__version__ = "0.1.0"
