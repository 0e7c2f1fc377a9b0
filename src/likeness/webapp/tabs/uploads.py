"""Upload fields that hand a handler the uploaded file as it is, for likeness to check.

Gradio's own ``gr.Image`` opens every upload with PIL before any handler runs, and ``gr.File``
refuses names outside ``file_types``: a text file named .jpg, an empty file, random bytes, a video,
a WAV renamed .jpg or a decompression bomb failed there with Gradio's generic "The upstream Gradio
app has raised an exception", naming neither the file nor the problem. The fields made here are the
stock components (the same in the browser and in the API description) whose preprocessing passes
the handler the uploaded path without opening it, so every upload reaches likeness's own checks
(:func:`likeness.media.image.load_image`, the video probe, the consent document check), whose
:class:`~likeness.errors.BadInput` names the file and what is wrong with it. The same holds for
gradio_client, which posts the same payloads.

(They are not subclasses: Gradio writes a ``.pyi`` stub next to the module of every component
class it sees defined.)
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio.data_classes import FileData, ListFiles


def _image_path(payload: Any) -> str | None:
    return None if payload is None or not payload.path else str(payload.path)


def image_upload(**options: Any) -> gr.Image:
    """A ``gr.Image`` upload (with the stock preview) whose handler gets the file's path, unopened."""
    field = gr.Image(type="filepath", image_mode=None, **options)
    field.preprocess = _image_path  # type: ignore[method-assign]
    return field


def file_upload(**options: Any) -> gr.File:
    """A ``gr.File`` upload whose handler gets the path (or, with ``file_count="multiple"``, the
    paths) whatever the names; ``file_types`` only guides the browser's file picker."""
    field = gr.File(type="filepath", **options)

    def paths(payload: ListFiles | FileData | None) -> str | list[str] | None:
        if payload is None:
            return None
        found = [str(item.path) for item in (payload if isinstance(payload, ListFiles) else [payload])]
        if field.file_count == "single":
            return found[0] if found else None
        return found

    field.preprocess = paths  # type: ignore[method-assign]
    return field
