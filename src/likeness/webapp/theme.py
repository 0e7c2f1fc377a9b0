"""The studio's look: a calm theme with fonts Gradio ships (no web font is fetched) and a few styles."""

from __future__ import annotations

from typing import Any

CSS = """
.gradio-container { max-width: 1280px !important; margin: 0 auto; }
#lk-title h1 { margin-bottom: 0; letter-spacing: -0.01em; }
#lk-title p { margin-top: 2px; color: var(--body-text-color-subdued); }
.lk-user { font-size: 0.92em; padding: 6px 0; }
.lk-role { display: inline-block; padding: 0 8px; margin: 0 4px; border-radius: 999px;
           background: var(--primary-100); color: var(--primary-700); font-weight: 600; font-size: 0.9em; }
.lk-muted { color: var(--body-text-color-subdued); }
.lk-help { color: var(--body-text-color-subdued); font-size: 0.95em; margin-bottom: 4px; }
.lk-banner { border-radius: 10px; padding: 12px 16px; border: 1px solid; margin: 4px 0; }
.lk-banner-title { font-weight: 700; font-size: 1.05em; margin-bottom: 4px; }
.lk-banner-body p { margin: 4px 0; }
.lk-banner-body ul { margin: 4px 0 4px 18px; }
.lk-banner code { font-size: 0.9em; }
.lk-ok { background: #ecfdf5; border-color: #10b981; color: #064e3b; }
.lk-refused { background: #fef2f2; border-color: #ef4444; color: #7f1d1d; }
.lk-error { background: #fff7ed; border-color: #f97316; color: #7c2d12; }
.lk-warn { background: #fffbeb; border-color: #f59e0b; color: #78350f; }
.lk-synthetic { background: #eef2ff; border-color: #6366f1; color: #312e81; }
.lk-working { background: #f5f3ff; border-color: #a78bfa; color: #4c1d95; }
.lk-neutral { background: #f8fafc; border-color: #cbd5e1; color: #334155; }
.lk-verdict { font-weight: 600; }
.lk-banner table.lk-windows { border-collapse: collapse; margin: 4px 0; font-size: 0.9em; }
.lk-banner table.lk-windows th, .lk-banner table.lk-windows td { padding: 2px 10px 2px 0; text-align: left;
           border-bottom: 1px solid rgba(0, 0, 0, 0.08); }
.dark .lk-banner { background: transparent; color: var(--body-text-color); }
"""


def make_theme() -> Any:
    import gradio as gr

    return gr.themes.Soft(
        primary_hue="indigo",
        secondary_hue="slate",
        neutral_hue="slate",
        radius_size="md",
        font=(
            gr.themes.LocalFont("IBM Plex Sans", weights=(400, 700)),
            "ui-sans-serif",
            "system-ui",
            "sans-serif",
        ),
        font_mono=(gr.themes.LocalFont("IBM Plex Mono", weights=(400, 600)), "ui-monospace", "monospace"),
    ).set(
        block_title_text_weight="600",
        button_primary_text_color="white",
    )
