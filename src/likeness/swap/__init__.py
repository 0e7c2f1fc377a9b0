"""Swappers: ``classical`` (embedded landmark warp) and ``inswapper`` (production)."""

from likeness.swap.types import Swapper

__all__ = ["Swapper"]
