"""Thin launcher for the likeness studio: ``python app/launch.py [--host H --port P --home DIR]``.

The app itself lives in the package (``likeness.webapp``) so it works from a wheel install too;
this is the same as ``likeness app``.
"""

import os

# Before anything imports Gradio: no analytics, no Hugging Face lookups.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"

from likeness.webapp.cli import app

if __name__ == "__main__":
    app(prog_name="likeness app")
