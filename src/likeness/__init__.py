"""likeness: consented, disclosed synthetic media."""

__version__ = "0.1.0"
