"""The package version: a leaf module, so that any module can read it without importing the rest of normgan."""

__version__ = "0.1.0"  # also in pyproject.toml
