"""Decoding media with limits. Nothing here writes media: that is ``likeness.disclosure``'s job."""

from likeness.media.image import DEFAULT_MAX_PIXELS, Picture, load_image

__all__ = ["DEFAULT_MAX_PIXELS", "Picture", "load_image"]
