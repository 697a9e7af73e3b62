"""Outputs of a run: per-image CSV, summary.json, and a self-contained HTML report."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from studio import labels
from studio.bench import plots
from studio.bench.results import Summary
from studio.bench.table import legend, metric_label, summary_table
from studio.fileio import atomic_write_bytes
from studio.imageio import encode_png


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def write_summary(path: Path, summary: Summary) -> None:
    atomic_write_bytes(path, json.dumps(summary.to_json(), indent=2, default=_json_default).encode())


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def thumbnail_b64(rgb: np.ndarray, max_side: int = 240) -> str:
    from PIL import Image

    img = Image.fromarray(rgb)
    img.thumbnail((max_side, max_side))
    return base64.b64encode(encode_png(np.asarray(img))).decode()


def _summary_table(summary: Summary, rec: dict[str, Any]) -> str:
    cols, rows = summary_table(summary, rec)
    head = "".join(f"<th title='{html.escape(c.legend)}'>{html.escape(c.header)}</th>" for c in cols)
    out = [f"<table class='summary'><thead><tr>{head}</tr></thead><tbody>"]
    for r, cells in zip(summary.variants, rows, strict=True):
        tds = []
        for c, cell in zip(cols, cells, strict=True):
            text = html.escape(cell.text)
            if c.key == "variant":
                text = f"<b>{text}</b>"
            if c.key == "flags":
                text = "".join(f"<span class='flag'>{html.escape(f)}</span>" for f in r.flags)
            cls = " class='muted'" if cell.muted else ""
            tip = f" title='{html.escape(cell.tip)}'" if cell.tip else ""
            tds.append(f"<td{cls}{tip}>{text}</td>")
        chosen = rec.get("recommended", rec.get("best"))
        cls = " class='failed'" if r.failed else (" class='rec'" if r.id == chosen else "")
        out.append(f"<tr{cls}>" + "".join(tds) + "</tr>")
    out.append("</tbody></table>")
    out.append("<p class='note'>" + "<br>".join(html.escape(x) for x in legend(cols, summary.reference_id))
               + "</p>")
    return "".join(out)


def _gt_block(summary: Summary) -> str:
    """A labels-free run's images that do have masks, scored against them, apart."""
    rows = [r for r in summary.variants if r.metrics_gt]
    if not rows:
        return ""
    n = len(next(iter(summary.per_image_gt_scores.values()), {})) or "?"
    metrics = ["iou", "fmeasure_max", "smeasure", "mae"]
    head = "".join(f"<th>{metric_label(m)}</th>" for m in metrics)
    body = "".join(
        f"<tr><td><b>{html.escape(r.id)}</b></td>"
        + "".join(f"<td>{(r.metrics_gt.get(m) or {}).get('mean', float('nan')):.4f}</td>" for m in metrics)
        + "</tr>" for r in rows)
    return (f"<h2>Against ground truth: the {n} images that have masks</h2>"
            "<p class='note'>Scored against their reference masks, separately from the agreement above.</p>"
            f"<table class='summary'><thead><tr><th>variant</th>{head}</tr></thead><tbody>{body}</tbody></table>")


def _errors_block(summary: Summary) -> str:
    items = []
    for r in summary.variants:
        for e in r.errors[:20]:
            where = f" on {html.escape(e['image'])}" if e.get("image") else ""
            items.append(f"<li><b>{html.escape(r.id)}</b>{where}: {html.escape(e['error'])}</li>")
    for s in summary.skipped:
        items.append(f"<li><b>{html.escape(s['id'])}</b>: skipped, {html.escape(s['why'])}</li>")
    return f"<h2>Errors and skipped variants</h2><ul class='errors'>{''.join(items)}</ul>" if items else ""


def _gallery(worst: dict[str, list[dict[str, Any]]], summary: Summary) -> str:
    if not worst:
        return ""
    ref = summary.reference_id
    title = (f"Where each variant departs most from {html.escape(ref)}" if ref
             else "Worst images per variant")
    against = f"{html.escape(ref)}'s matte" if ref else "the reference mask"
    parts = [f"<h2>{title}</h2><p class='note'>Error overlay against {against}: "
             "<span style='color:#ff00aa'>■</span> false positive, <span style='color:#00c8ff'>■</span> "
             "false negative.</p>"]
    for vid, items in worst.items():
        cards = "".join(
            f"<figure><img src='data:image/png;base64,{it['png']}' alt='{html.escape(it['image'])}'>"
            f"<figcaption>{html.escape(it['image'])} — {html.escape(it['metric'])} {it['value']:.3f}</figcaption></figure>"
            for it in items)
        parts.append(f"<h3>{html.escape(vid)}</h3><div class='gallery'>{cards}</div>")
    return "".join(parts)


CSS = """
body{font-family:Inter,Helvetica,Arial,sans-serif;margin:24px 40px;color:#1d1d1f;max-width:1500px}
h1{margin-bottom:4px} .sub{color:#666;margin-top:0}
table.summary{border-collapse:collapse;font-size:13px;margin:12px 0;width:100%}
table.summary th,table.summary td{border-bottom:1px solid #e3e3e3;padding:6px 8px;text-align:right;white-space:nowrap}
table.summary th:nth-child(-n+2),table.summary td:nth-child(-n+2){text-align:left}
table.summary tr.failed td{color:#b00} table.summary tr.rec td{background:#f1f8f1}
table.summary td.muted{color:#aaa;text-decoration:line-through}
.flag{display:inline-block;background:#fff3cd;border:1px solid #e0c36c;border-radius:4px;padding:0 5px;margin:0 2px;font-size:11px}
.rec{background:#eef6ee;border-left:5px solid #54A24B;padding:12px 16px;margin:16px 0;font-size:15px}
.rec.none{background:#fbeaea;border-color:#E45756} .rec .why{color:#444;font-size:13px;margin-top:6px}
.agree{background:#eef3fb;border-left:5px solid #4C78A8;padding:8px 14px;margin:10px 0;font-size:14px}
.gallery{display:flex;flex-wrap:wrap;gap:12px} figure{margin:0;font-size:12px;color:#444}
figure img{border:1px solid #ddd;border-radius:4px;display:block}
.env{font-size:12px;color:#555} .note{color:#666;font-size:13px} ul.errors{font-size:13px;color:#900}
"""


def recommendation_html(rec: dict[str, Any]) -> str:
    """The recommendation box: the same sentences as the terminal and the app card
    (`studio.bench.recommend.recommendation_lines`), the equivalent set and the rule."""
    from studio.bench.recommend import recommendation_lines

    chosen = rec.get("recommended", rec.get("best"))
    cls = "rec" if chosen else "rec none"
    eq = [e["id"] for e in rec.get("equivalent") or []]
    lines = rec.get("lines") or recommendation_lines(rec)
    parts = [f"<div class='{cls}'><b>Recommendation</b> ({html.escape(rec.get('budgets_text') or 'no budget given')},"
             f" ranked by {html.escape(str(rec.get('metric')))}, tolerance {rec.get('tolerance', 0):g}): "
             f"{html.escape(lines[0])}"]
    for line in lines[1:]:
        parts.append(f"<div class='why'>{html.escape(line)}</div>")
    if eq:
        parts.append(f"<div class='why'>Equivalent set: {html.escape(', '.join(eq))}. "
                     f"Rule: {html.escape(rec.get('rule', ''))}.</div>")
    t = rec.get("timing") or {}
    if t.get("interleaved"):
        load = f"load average up to {t['load_max']:.1f}" if t.get("load_max") is not None else "load not read"
        parts.append(f"<div class='why'>Speed: one interleaved timing phase, {t.get('n_rounds')} rounds "
                     f"({t.get('rounds')} passes × {t.get('images')} images, every variant once per round, shuffled) "
                     f"on {html.escape(str(t.get('node') or '?'))}, {load} on {t.get('cores')} cores.</div>")
    parts.append("</div>")
    return "".join(parts)


def _disagreement_block(summary: Summary) -> str:
    """A labels-free run's disagreement set: what a person should judge, blind."""
    dis = summary.run.get("disagreements") or {}
    images = dis.get("images") or []
    if not summary.reference_id or not dis:
        return ""
    head = (f"<h2>Disagreements: {len(images)} of {dis.get('of', '?')} images</h2><p class='note'>"
            f"{html.escape(dis.get('rule', ''))}. Judge them blind: <code>eval/run.py … --arena</code> writes them "
            "as an arena set and prints the app link.</p>")
    if not images:
        return head
    rows = "".join(f"<tr><td>{html.escape(e['image'])}</td><td>{e['gap']:.4f}</td><td>"
                   + html.escape(", ".join(f"{k} {v:.4f}" for k, v in e["by"].items())) + "</td></tr>"
                   for e in images[:60])
    return (head + "<table class='summary'><thead><tr><th>image</th><th>largest gap below the floor</th>"
            f"<th>by candidate</th></tr></thead><tbody>{rows}</tbody></table>")


def write_html(path: Path, summary: Summary, worst: dict[str, list[dict[str, Any]]]) -> None:
    rec = summary.recommendation or {}
    env = summary.environment
    ds = summary.dataset
    ref = summary.reference_id
    figs = [plots.pareto_figure(summary), plots.metric_bars(summary)]
    if any(r.cold_start or r.bundle_cold_start for r in summary.variants):
        figs.append(plots.cold_start_bars(summary))
    fig_html = [f.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
                for i, f in enumerate(figs)]
    ds_flags = "".join(f"<span class='flag'>{html.escape(f)}</span>" for f in ds.get("flags", []))
    env_rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(json.dumps(v, default=str))}</td></tr>"
                       for k, v in env.items())
    agree = (f"<div class='agree'>No ground truth: every score below is <b>agreement with {html.escape(ref)}</b> "
             f"(its mattes binarised as masks are, soft for the matting metrics), not accuracy.</div>"
             if ref else "")
    sitting = summary.run.get("sitting")
    doc = f"""<!doctype html><html><head><meta charset='utf-8'><title>Matting Studio report</title>
<style>{CSS}</style></head><body>
<h1>Matting Studio — benchmark report</h1>
<p class='sub'>Dataset <b>{html.escape(str(ds.get('name')))}</b> ({ds.get('n_images', 0)} images,
{ds.get('n_with_masks', ds.get('n_images', 0))} with masks) {ds_flags} ·
device {html.escape(str(env.get('device')))} · threads {html.escape(str(env.get('threads')))} ·
executor {html.escape(str(env.get('executor', 'local')))} · {html.escape(str(summary.created))}
{f' · sitting {html.escape(str(sitting))}' if sitting else ''}</p>
{agree}
{recommendation_html(rec)}
<h2>Summary</h2>{_summary_table(summary, rec)}
<p class='note'>Metrics: mean over images with bootstrap 95% intervals (hover a value);
{html.escape(str((env.get('metric_conventions') or {}).get('averaging', 'per-image averaging')))}.
Latency: warm, per image, preprocess + inference + postprocess, all measured in this run's sitting,
in one interleaved timing phase (every variant once per round, shuffled); speed ratios are the median of
per-round ratios with a bootstrap 95 % CI.
Cold start: fresh subprocess. Variants flagged "{labels.UNTRAINED}" have random weights: their quality
numbers are struck through. "calibrated on N of these images": hover its score for the held-out part.</p>
<h2>Trade-off: quality against latency (Pareto frontier)</h2><div>{fig_html[0]}</div>
<h2>Metrics</h2><div>{fig_html[1]}</div>
{'<h2>Cold start</h2><div>' + fig_html[2] + '</div>' if len(fig_html) > 2 else ''}
{_disagreement_block(summary)}
{_gt_block(summary)}
{_gallery(worst, summary)}
{_errors_block(summary)}
<h2>Environment</h2><details open><summary>machine, packages, metric conventions</summary><table class='env'>{env_rows}</table></details>
</body></html>"""
    atomic_write_bytes(path, doc.encode())
