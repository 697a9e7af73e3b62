"""The Benchmark tab's handlers: run `studio.bench.run_suite`, show its summary, re-recommend.

The app adds no second benchmark: it fills a `SuiteConfig`, forwards the suite's progress
events to the progress bar, and renders the summary it returns (or a past one from disk).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio import settings
from studio.ui.uploads import UploadError, clean_dir, extract_dataset_zip

SOURCE_EMBEDDED = "Embedded sample"
SOURCE_CATALOGUE = "Catalogue dataset / folder"
SOURCE_ZIP = "Upload a zip (im/ + gt/)"
SOURCES = [SOURCE_EMBEDDED, SOURCE_CATALOGUE, SOURCE_ZIP]

TABLE_METRICS = {"iou": "IoU", "fmeasure_max": "max F", "smeasure": "S", "emeasure_mean": "mean E",
                 "ssim": "SSIM", "mae": "MAE"}
TABLE_HEADERS = ["", "variant", "n", *TABLE_METRICS.values(), "p50 ms", "p95 ms", "img/s", "cold s",
                 "RSS MB", "size MB", "$/1k img", "notes"]

ProgressFn = Callable[..., Any]


# --- datasets -----------------------------------------------------------------------------

def catalogue_choices() -> list[str]:
    """Catalogue datasets present on this machine (and, locally, ../shared's sod-dev)."""
    names: list[str] = []
    try:
        from studio.data import catalog

        names += [name for name, entry in catalog().items() if entry.installed]
    except Exception:  # the catalogue is optional for the app
        pass
    shared = settings.shared_dir() / "datasets" / "sod-dev"
    if not settings.on_spaces() and shared.is_dir():
        names.append(str(shared))
    return list(dict.fromkeys(names))


def resolve_dataset(source: str, name: str | None, zip_file: Any, workdir: Path) -> str | None:
    """The `dataset` value for SuiteConfig: None (embedded), a catalogue name, or a folder."""
    if source == SOURCE_EMBEDDED or not source:
        return None
    if source == SOURCE_ZIP:
        return str(extract_dataset_zip(zip_file, workdir / "zip"))
    if source == SOURCE_CATALOGUE:
        name = (name or "").strip()
        if not name:
            raise UploadError("choose a catalogue dataset, or type a folder that holds im/ and gt/")
        looks_like_path = "/" in name or name.startswith(".")
        if looks_like_path and settings.on_spaces():
            raise UploadError("on the hosted app, datasets come from the catalogue or an uploaded zip")
        if looks_like_path and not Path(name).expanduser().is_dir():
            raise UploadError(f"{name}: no such folder")
        return str(Path(name).expanduser()) if looks_like_path else name
    raise UploadError(f"unknown dataset source {source!r}; one of: {', '.join(SOURCES)}")


# --- progress --------------------------------------------------------------------------------

def progress_adapter(progress: ProgressFn | None, n_variants: int) -> Callable[[dict[str, Any]], None]:
    """Turn the suite's events into one bar over all variants (images advance it in between)."""
    state = {"variant_index": 0}

    def on_event(ev: dict[str, Any]) -> None:
        if progress is None:
            return
        stage = ev.get("stage")
        done, total = ev.get("done") or 0, ev.get("total") or 0
        if stage == "variant":
            state["variant_index"] = done
            frac = done / max(n_variants, 1)
        elif stage == "image" and total:
            frac = (state["variant_index"] + done / total) / max(n_variants, 1)
        elif stage == "cold_start":
            frac = done / max(n_variants, 1)
        else:
            frac = 1.0
        progress(min(max(frac, 0.0), 1.0), desc=str(ev.get("message") or stage or ""))

    return on_event


# --- rendering a summary ------------------------------------------------------------------

def _fmt(x: Any, digits: int) -> Any:
    return None if x is None else round(float(x), digits)


def summary_table(summary: dict[str, Any], rec: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary as Dataframe value: one row per variant, the recommended one starred."""
    from studio.bench.recommend import LATENCY_ONLY_FLAGS, cost_per_1000

    rec = rec if rec is not None else summary.get("recommendation") or {}
    price = (rec.get("budgets") or {}).get("price_per_hour")
    rows = []
    for r in summary.get("variants", []):
        m = r.get("metrics") or {}
        lat = r.get("latency") or {}
        cold = r.get("cold_start") or {}
        marks = "★" if r["id"] == rec.get("best") else ("☆" if r["id"] == rec.get("runner_up") else "")
        notes = list(r.get("flags") or [])
        errs = r.get("errors") or []
        if r.get("failed"):
            notes.insert(0, "FAILED: " + (errs[0]["error"] if errs else "no images ran"))
        elif errs:
            notes.append(f"{len(errs)} errors")
        latency_only = any(f in LATENCY_ONLY_FLAGS for f in r.get("flags") or [])
        rows.append([
            marks, r["id"] + ("  ⚠ untrained" if latency_only else ""), r.get("n_images", 0),
            *[_fmt((m.get(k) or {}).get("mean"), 4) for k in TABLE_METRICS],
            _fmt(lat.get("p50_ms"), 0), _fmt(lat.get("p95_ms"), 0), _fmt(r.get("throughput_ips"), 2),
            _fmt(cold.get("total_s"), 2), _fmt(r.get("peak_rss_mb"), 0), _fmt(r.get("model_size_mb"), 1),
            _fmt(cost_per_1000(r, price), 4), "; ".join(notes),
        ])
    return {"headers": TABLE_HEADERS, "data": rows}


def recommendation_markdown(rec: dict[str, Any], summary: dict[str, Any]) -> str:
    budgets = rec.get("budgets") or {}
    parts = [f"p95 ≤ {budgets['p95_ms']:g} ms" if budgets.get("p95_ms") else None,
             f"peak RSS ≤ {budgets['memory_mb']:g} MB" if budgets.get("memory_mb") else None,
             f"${budgets['price_per_hour']:g}/h" if budgets.get("price_per_hour") else None]
    within = ", ".join(p for p in parts if p) or "no budget set"
    ds = summary.get("dataset") or {}
    env = summary.get("environment") or {}
    lines = []
    if rec.get("best"):
        lines.append(f"### ★ Recommended: `{rec['best']}`")
        lines.append(rec.get("reason", ""))
        facts = [f"ranked by **{rec.get('metric', 'iou')}**", f"budgets: {within}"]
        if rec.get("runner_up"):
            sig = rec.get("significant")
            verdict = {True: "gap significant", False: "gap not significant", None: "gap not tested"}[sig]
            facts.append(f"runner-up `{rec['runner_up']}` ({verdict}, paired bootstrap)")
        if rec.get("cost_per_1000") is not None:
            facts.append(f"**${rec['cost_per_1000']:.4f} per 1,000 images**")
        lines.append(" · ".join(facts))
    else:
        lines.append("### No recommendation")
        lines.append(f"{rec.get('reason', 'no variant fits')} (budgets: {within}).")
    excluded = rec.get("excluded") or []
    if excluded:
        lines.append("<details><summary>Not eligible: " + str(len(excluded)) + " variants</summary>\n\n"
                     + "\n".join(f"- `{e['id']}`: {e['why']}" for e in excluded) + "\n</details>")
    lines.append(f"<sub>{ds.get('name', '?')} · {ds.get('n_images', '?')} images · "
                 f"{env.get('device', '?')} · {env.get('cpu', '')} · {summary.get('created', '')}</sub>")
    return "\n\n".join(lines)


def _num(x: Any) -> float | None:
    """A budget from a number box: blank, zero or negative mean 'no budget'."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if f > 0 else None


def render(summary: dict[str, Any], run_path: Path | None, p95: Any = None, memory: Any = None,
           price: Any = None) -> tuple:
    """(recommendation markdown, Pareto figure, table, files, run id, public summary)."""
    from studio.bench import recommend
    from studio.bench.plots import pareto_figure

    rec = recommend(summary, budget_p95_ms=_num(p95), budget_memory_mb=_num(memory),
                    price_per_hour=_num(price))
    fig = pareto_figure(summary, recommendation=rec)
    # in the app's narrower column: labels may overhang the axes, the legend goes underneath
    fig.update_traces(cliponaxis=False, selector={"mode": "markers+text"})
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0}, height=560,
                      margin={"l": 70, "r": 40, "t": 60, "b": 40})
    files = []
    if run_path is not None:
        files = [str(run_path.parent / n) for n in ("report.html", "summary.json", "per_image.csv")
                 if (run_path.parent / n).is_file()]
    public = {k: v for k, v in summary.items() if k != "per_image_scores"}
    public["recommendation"] = rec
    return (recommendation_markdown(rec, summary), fig, summary_table(summary, rec), files,
            run_id(run_path) if run_path else "", public)


# --- runs on disk ---------------------------------------------------------------------------

def run_id(path: Path) -> str:
    """A run's name: its summary.json relative to the results folder."""
    try:
        return str(Path(path).resolve().relative_to(settings.results_dir().resolve()))
    except ValueError:
        return str(path)


def run_path(run: str) -> Path:
    """The summary.json of a run id; refuses anything outside the results folder."""
    if not run:
        raise UploadError("no benchmark run yet: run one, or open a past run")
    root = settings.results_dir().resolve()
    p = (root / run).resolve()
    if p.is_dir():
        p = p / "summary.json"
    if not p.is_relative_to(root):
        raise UploadError(f"{run}: not a run under {root}")
    if not p.is_file():
        raise UploadError(f"{run}: no summary.json there")
    return p


def past_runs() -> list[tuple[str, str]]:
    """(label, run id) of every summary.json under eval/results, newest first."""
    import json

    from studio.bench import list_runs

    out = []
    for p in list_runs():
        try:
            s = json.loads(p.read_text())
            ds = (s.get("dataset") or {}).get("name", "?")
            label = (f"{run_id(p.parent)} — {len(s.get('variants', []))} variants on {ds} "
                     f"({(s.get('dataset') or {}).get('n_images', '?')} images), {s.get('created', '')}")
        except (OSError, ValueError):
            label = f"{run_id(p.parent)} (unreadable)"
        out.append((label, run_id(p)))
    return out


def open_run(run: str, p95: Any = None, memory: Any = None, price: Any = None) -> tuple:
    from studio.bench import load_summary

    p = run_path(run)
    try:
        summary = load_summary(p)
    except (OSError, ValueError) as exc:
        raise UploadError(f"{run}: cannot read it ({exc})") from None
    return render(summary, p, p95, memory, price)


def rerecommend(run: str, p95: Any = None, memory: Any = None, price: Any = None) -> tuple:
    """New budgets on the current run: recompute the recommendation, nothing reruns."""
    if not run:
        return ("Run a benchmark or open a past run first.", None, {"headers": TABLE_HEADERS, "data": []},
                [], "", {})
    return open_run(run, p95, memory, price)


def new_run_dir() -> Path:
    return settings.results_dir() / "app" / time.strftime("%Y%m%d-%H%M%S")


def benchmark(source: str = SOURCE_EMBEDDED, dataset: str | None = None, zip_file: Any = None,
              variants: list[str] | None = None, limit: Any = 8, warmup: Any = 1, repeats: Any = 1,
              cold_start: bool = False, p95: Any = None, memory: Any = None, price: Any = None,
              progress: ProgressFn | None = None, out: Path | None = None) -> tuple:
    """Run the suite on a dataset and render its summary (see `render`)."""
    from studio.bench import SuiteConfig, run_suite

    out = Path(out) if out else new_run_dir()
    work = out / "_upload"
    try:
        ds = resolve_dataset(source, dataset, zip_file, work)
        n_limit = int(limit) if limit not in (None, "") and int(limit) > 0 else None
        if isinstance(variants, str):
            variants = [v for v in variants.replace(",", " ").split() if v]
        chosen = list(variants) if variants else None
        if chosen is None:
            from studio.inventory import installed_variants

            chosen = [v.id for v in installed_variants()]
        if not chosen:
            raise UploadError("no variants chosen, and none is installed: fetch weights on the Models tab")
        cfg = SuiteConfig(models=chosen, dataset=ds, limit=n_limit, device="cpu", threads=0,
                          warmup=max(0, int(warmup or 0)), repeats=max(1, int(repeats or 1)),
                          cold_start=bool(cold_start), budget_p95_ms=_num(p95), budget_memory_mb=_num(memory),
                          price_per_hour=_num(price), out=out, resume=True, name="app")
        if progress is not None:
            progress(0.0, desc=f"starting: {len(chosen)} variants")
        summary = run_suite(cfg, progress=progress_adapter(progress, len(chosen)), show_bars=False,
                            keep_loaded=True)
    finally:
        clean_dir(work)  # the extracted zip is not kept; results are
    return render(summary, out / "summary.json", p95, memory, price)
