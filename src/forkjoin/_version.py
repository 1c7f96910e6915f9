"""The version of forkjoin, written only here (pyproject.toml reads it)."""

__version__ = "0.2.0"
