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

from studio.bench import plots
from studio.fileio import atomic_write_bytes
from studio.imageio import encode_png

SUMMARY_COLUMNS = ["iou", "fmeasure_max", "smeasure", "emeasure_mean", "ssim", "mae", "boundary_iou"]


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    public = {k: v for k, v in summary.items() if k != "per_image_scores"}
    atomic_write_bytes(path, json.dumps(public, indent=2, default=_json_default).encode())


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


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return html.escape(str(x))


def _summary_table(summary: dict[str, Any]) -> str:
    rec = summary.get("recommendation") or {}
    head = ["variant", "images", "errors", *SUMMARY_COLUMNS, "p50 ms", "p95 ms", "img/s", "cold start s",
            "peak RSS MB", "size MB", "flags"]
    out = ["<table class='summary'><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for r in summary.get("variants", []):
        cells = [f"<b>{html.escape(r['id'])}</b>" + (" ★" if r["id"] == rec.get("best") else ""),
                 str(r.get("n_images", 0)), str(len(r.get("errors", [])))]
        for m in SUMMARY_COLUMNS:
            s = (r.get("metrics") or {}).get(m)
            if s and s.get("mean") is not None:
                lo, hi = s.get("ci95") or (None, None)
                tip = f"95% CI [{lo:.4f}, {hi:.4f}]" if lo is not None else ""
                cells.append(f"<span title='{tip}'>{s['mean']:.4f}</span>")
            else:
                cells.append("—")
        lat = r.get("latency") or {}
        cs = r.get("cold_start") or {}
        cells += [_fmt(lat.get("p50_ms"), 0), _fmt(lat.get("p95_ms"), 0), _fmt(r.get("throughput_ips"), 2),
                  _fmt(cs.get("total_s"), 1), _fmt(r.get("peak_rss_mb"), 0), _fmt(r.get("model_size_mb"), 1),
                  "".join(f"<span class='flag'>{html.escape(f)}</span>" for f in r.get("flags", []))]
        cls = " class='failed'" if r.get("failed") else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _errors_block(summary: dict[str, Any]) -> str:
    items = []
    for r in summary.get("variants", []):
        for e in r.get("errors", [])[:20]:
            where = f" on {html.escape(e['image'])}" if e.get("image") else ""
            items.append(f"<li><b>{html.escape(r['id'])}</b>{where}: {html.escape(e['error'])}</li>")
    return f"<h2>Errors</h2><ul class='errors'>{''.join(items)}</ul>" if items else ""


def _gallery(worst: dict[str, list[dict[str, Any]]]) -> str:
    if not worst:
        return ""
    parts = ["<h2>Worst images per variant</h2><p class='note'>Error overlay: "
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
table.summary th:first-child,table.summary td:first-child{text-align:left}
table.summary tr.failed td{color:#b00}
.flag{display:inline-block;background:#fff3cd;border:1px solid #e0c36c;border-radius:4px;padding:0 5px;margin:0 2px;font-size:11px}
.rec{background:#eef6ee;border-left:5px solid #54A24B;padding:12px 16px;margin:16px 0;font-size:15px}
.rec.none{background:#fbeaea;border-color:#E45756}
.gallery{display:flex;flex-wrap:wrap;gap:12px} figure{margin:0;font-size:12px;color:#444}
figure img{border:1px solid #ddd;border-radius:4px;display:block}
.env{font-size:12px;color:#555} .note{color:#666;font-size:13px} ul.errors{font-size:13px;color:#900}
"""


def write_html(path: Path, summary: dict[str, Any], worst: dict[str, list[dict[str, Any]]]) -> None:
    rec = summary.get("recommendation") or {}
    env = summary.get("environment", {})
    ds = summary.get("dataset", {})
    figs = [plots.pareto_figure(summary), plots.metric_bars(summary)]
    if any(r.get("cold_start") for r in summary.get("variants", [])):
        figs.append(plots.cold_start_bars(summary))
    fig_html = [f.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
                for i, f in enumerate(figs)]
    rec_cls = "rec" if rec.get("best") else "rec none"
    budgets = rec.get("budgets") or {}
    btxt = ", ".join(f"{k} ≤ {v:g}" if k != "price_per_hour" else f"${v:g}/h"
                     for k, v in budgets.items() if v is not None) or "no budgets given"
    ds_flags = "".join(f"<span class='flag'>{html.escape(f)}</span>" for f in ds.get("flags", []))
    env_rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(json.dumps(v, default=str))}</td></tr>"
                       for k, v in env.items())
    doc = f"""<!doctype html><html><head><meta charset='utf-8'><title>Matting Studio report</title>
<style>{CSS}</style></head><body>
<h1>Matting Studio — benchmark report</h1>
<p class='sub'>Dataset <b>{html.escape(str(ds.get('name')))}</b> ({ds.get('n_images', 0)} images) {ds_flags} ·
device {html.escape(str(env.get('device')))} · threads {html.escape(str(env.get('threads')))} ·
{html.escape(str(summary.get('created')))}</p>
<div class='{rec_cls}'><b>Recommendation</b> ({html.escape(btxt)}): {html.escape(rec.get('reason', '—'))}</div>
<h2>Summary</h2>{_summary_table(summary)}
<p class='note'>Metrics: mean over images with bootstrap 95% intervals (hover a value);
{html.escape(str((env.get('metric_conventions') or {}).get('averaging', 'per-image averaging')))}.
Latency: warm, per image, preprocess + inference + postprocess. Cold start: fresh subprocess.
Variants flagged "untrained — latency only" have random weights: their quality numbers mean nothing.</p>
<h2>Trade-off: quality against latency (Pareto frontier)</h2><div>{fig_html[0]}</div>
<h2>Metrics</h2><div>{fig_html[1]}</div>
{'<h2>Cold start</h2><div>' + fig_html[2] + '</div>' if len(fig_html) > 2 else ''}
{_gallery(worst)}
{_errors_block(summary)}
<h2>Environment</h2><details open><summary>machine, packages, metric conventions</summary><table class='env'>{env_rows}</table></details>
</body></html>"""
    atomic_write_bytes(path, doc.encode())
