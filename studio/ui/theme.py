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
#studio-header .pill { display: inline-block; padding: 1px 9px; margin: 0 6px 4px 0; border-radius: 999px;
  background: var(--color-accent-soft); color: var(--color-accent); font-size: 0.8rem; font-weight: 600; }
.legend { font-size: 0.85rem; color: var(--body-text-color-subdued); }
.legend .sw { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin: 0 4px 0 10px;
  vertical-align: -1px; }
/* Run and the one progress line: a bar that stays in view however far the page scrolls */
.action-bar { position: sticky !important; top: 0; z-index: 60; align-items: center !important;
  background: var(--body-background-fill); padding: 6px 2px !important; margin-bottom: 4px;
  border-bottom: 1px solid var(--border-color-primary); }
.action-bar .run-button { margin: 0 !important; }
#compare-status, #bench-status { min-height: 1.6em; }
#compare-status p, #bench-status p { margin: 0; }
#compare-notes { font-size: 0.85rem; }
#recommendation { border-left: 4px solid var(--color-accent); padding: 4px 14px !important;
  background: var(--block-background-fill); border-radius: 6px; }
#recommendation h3 { margin: 6px 0 4px 0; }
#recommendation table { display: block; overflow-x: auto; max-width: 100%; font-size: 0.86rem; }
#recommendation td, #recommendation th { padding: 2px 8px; }
#recommendation td { white-space: nowrap; }
#compare-gallery .grid-wrap.fixed-height { height: auto !important; max-height: none !important; }
#compare-gallery .thumbnail-item { height: clamp(120px, 16vw, 250px) !important; aspect-ratio: auto !important; }
#drilldown-worst .grid-wrap.fixed-height, #drilldown-flagged .grid-wrap.fixed-height { height: auto !important;
  max-height: none !important; }
#drilldown-worst .thumbnail-item, #drilldown-flagged .thumbnail-item { height: clamp(120px, 14vw, 220px) !important;
  aspect-ratio: auto !important; }
#compare-gallery .thumbnail-item img, #drilldown-worst .thumbnail-item img,
#drilldown-flagged .thumbnail-item img { object-fit: contain !important; width: 100%; height: 100%; }
#compare-table, #bench-table, #zoo-table { --font-mono: var(--font); }
#compare-table td, #bench-table td, #zoo-table td { font-variant-numeric: tabular-nums; }
#compare-table td, #compare-table th, #bench-table td, #bench-table th { font-size: 0.86rem; }
#bench-table th, #bench-table td, #bench-gt-table th, #bench-gt-table td { padding-left: 6px; padding-right: 6px; }
/* wide tables scroll inside their own box, never the page */
.scroll-table { max-width: 100%; min-width: 0; }
.scroll-table .table-wrap, .scroll-table .table-container { overflow-x: auto !important; max-width: 100%; }
#bench-notes { line-height: 1.25; }
#bench-notes sub { font-size: 0.8rem; }
#export-row { align-items: center; gap: 10px; flex-wrap: wrap; }
#export-note { min-height: 0; }
.family-group { margin-bottom: 2px !important; }
.run-button { min-height: 46px; font-size: 1.05rem !important; }
footer { opacity: 0.75; }
"""


# Phone rules go in the page's <head>: Gradio scopes `css` under its own container, which a rule
# for the container's padding (outside that scope) would never reach.
HEAD = """<style id="studio-phone">
/* a wide table or gallery must not widen the page: every box may shrink, and they scroll inside */
.gradio-container, .gradio-container .main, .gradio-container .wrap, .gradio-container .contain,
.gradio-container .tabs, .gradio-container .tabitem, .gradio-container .row, .gradio-container .column {
  min-width: 0 !important; max-width: 100%; }
/* clip, not hidden: a hidden overflow makes the container a scroll box, and the sticky bars would
   stick to it (which never scrolls) instead of the page */
.gradio-container { width: 100% !important; overflow: visible !important; overflow-x: clip !important; }
@media (max-width: 720px) {
  .gradio-container > .main { padding-left: 8px !important; padding-right: 8px !important; }
  .gradio-container .main, .gradio-container .wrap, .gradio-container .contain { min-width: 0 !important; }
  .gradio-container .row { flex-wrap: wrap !important; }
  .gradio-container .row > .column, .gradio-container .stack-on-phone > * {
    min-width: 100% !important; flex: 1 1 100% !important; }
  .gradio-container .column, .gradio-container .block, .gradio-container .form { min-width: 0 !important; }
  .gradio-container .action-bar { flex-wrap: nowrap !important; gap: 8px; }
  .gradio-container .action-bar > * { min-width: 0 !important; }
  .gradio-container .action-bar .run-button { min-width: 112px !important; max-width: 132px;
    flex: 0 0 auto !important; font-size: 0.95rem !important; }
  #compare-status, #bench-status { font-size: 0.85rem; }
  #studio-header h1 { font-size: 1.3rem; }
  #studio-header p { font-size: 0.85rem; }
  #studio-header p.tagline { display: none; }
  .gradio-container .tab-wrapper, .gradio-container [role=tablist] { overflow-x: auto; max-width: 100%; }
  #compare-gallery .thumbnail-item { height: 110px !important; }
  .gradio-container .gallery, .gradio-container .grid-wrap { max-width: 100%; overflow-x: auto; }
  #arena-views { display: grid !important; grid-template-columns: 1fr 1fr; gap: 6px; }
  #arena-views > * { min-width: 0 !important; }
  #arena-view-a, #arena-view-b { height: 270px !important; }
  /* A and B side by side first; the original under them, smaller */
  #arena-original { grid-column: 1 / span 2; order: 3; height: 140px !important; }
  #arena-buttons { display: grid !important; grid-template-columns: 1fr 1fr; gap: 6px; }
  #arena-buttons > *, #arena-buttons button { min-width: 0 !important; }
}
</style>"""


def header_html(n_installed: int, n_zoo: int, device: str) -> str:
    return f"""
<div id="studio-header">
  <h1>Matting Studio</h1>
  <p class="tagline">Choose a background-removal model for production: cut-out quality, latency, memory and cost,
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
