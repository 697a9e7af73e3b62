"""Look and feel: one theme, a little CSS, the header. Fonts are system fonts: the app must
render the same offline (a Space behind a proxy, CI without internet) as online."""

from __future__ import annotations

from studio.visuals import FALSE_NEGATIVE_RGB, FALSE_POSITIVE_RGB

FONT_STACK = ["Inter", "ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
MONO_STACK = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]


def theme():
    import gradio as gr

    return gr.themes.Soft(
        primary_hue="indigo", secondary_hue="sky", neutral_hue="slate",
        radius_size="md", font=FONT_STACK, font_mono=MONO_STACK,
    ).set(
        block_title_text_weight="600",
        button_primary_text_color="white",
        body_background_fill="#f6f7fb",
        body_background_fill_dark="#0f1117",
    )


CSS = """
.gradio-container { max-width: 1560px !important; margin: 0 auto; }
#studio-header { padding: 6px 4px 2px 4px; }
#studio-header h1 { font-size: 1.65rem; margin: 0; letter-spacing: -0.01em; }
#studio-header p { margin: 4px 0 0 0; color: var(--body-text-color-subdued); font-size: 0.98rem; }
#studio-header .pill { display: inline-block; padding: 1px 9px; margin-right: 6px; border-radius: 999px;
  background: var(--color-accent-soft); color: var(--color-accent); font-size: 0.8rem; font-weight: 600; }
.legend { font-size: 0.85rem; color: var(--body-text-color-subdued); }
.legend .sw { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin: 0 4px 0 10px;
  vertical-align: -1px; }
#compare-status, #bench-status { min-height: 1.6em; }
#recommendation { border-left: 4px solid var(--color-accent); padding: 4px 14px !important;
  background: var(--block-background-fill); border-radius: 6px; }
#recommendation h3 { margin: 6px 0 4px 0; }
#compare-gallery .grid-wrap.fixed-height { height: auto !important; max-height: none !important; }
#compare-gallery .thumbnail-item { height: clamp(150px, 16vw, 250px) !important; aspect-ratio: auto !important; }
#compare-gallery .thumbnail-item img { object-fit: contain !important; width: 100%; height: 100%; }
#compare-table, #bench-table, #zoo-table { --font-mono: var(--font); }
#compare-table td, #bench-table td, #zoo-table td { font-variant-numeric: tabular-nums; }
#compare-table td, #compare-table th, #bench-table td, #bench-table th { font-size: 0.86rem; }
#bench-table th, #bench-table td, #bench-gt-table th, #bench-gt-table td { padding-left: 6px; padding-right: 6px; }
#bench-notes { line-height: 1.25; }
#bench-notes sub { font-size: 0.8rem; }
#export-row { align-items: center; gap: 10px; }
#export-note { min-height: 0; }
.family-group { margin-bottom: 2px !important; }
.run-button { min-height: 46px; font-size: 1.05rem !important; }
footer { opacity: 0.75; }
"""


def header_html(n_installed: int, n_zoo: int, device: str) -> str:
    return f"""
<div id="studio-header">
  <h1>Matting Studio</h1>
  <p>Choose a background-removal model for production: cut-out quality, latency, memory and cost,
  side by side — on your own images.</p>
  <p style="margin-top:8px"><span class="pill">{n_installed} of {n_zoo} models installed</span>
  <span class="pill">{device}</span><span class="pill">models load on first use</span></p>
</div>
"""


def _rgb(c: tuple[int, int, int]) -> str:
    return f"rgb({c[0]},{c[1]},{c[2]})"


LEGEND_HTML = (
    '<div class="legend">Each row: cut-out on a checkerboard · mask · errors against the reference '
    '(the mask, or the reference model\'s matte)'
    f'<span class="sw" style="background:{_rgb(FALSE_POSITIVE_RGB)}"></span>false positive'
    f'<span class="sw" style="background:{_rgb(FALSE_NEGATIVE_RGB)}"></span>false negative</div>'
)
