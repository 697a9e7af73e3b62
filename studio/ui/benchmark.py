"""The Benchmark tab's handlers: run `studio.bench.run_suite`, show its summary, re-recommend.

The app adds no second benchmark: it fills a `SuiteConfig`, forwards the suite's progress
events to the progress bar, and renders the summary it returns (or a past one from disk).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio import settings
from studio.ui.uploads import UploadError, clean_dir, extract_dataset_zip

if TYPE_CHECKING:  # the app starts without importing the benchmark
    from studio.bench.results import Summary

SOURCE_EMBEDDED = "Embedded sample"
SOURCE_CATALOGUE = "Catalogue dataset / folder"
SOURCE_ZIP = "Upload a zip (im/ + gt/)"
SOURCES = [SOURCE_EMBEDDED, SOURCE_CATALOGUE, SOURCE_ZIP]

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

def summary_table(summary: Summary, rec: dict[str, Any] | None = None,
                  metrics: list[str] | None = None) -> dict[str, Any]:
    """The summary as a Dataframe value (the same cells as the terminal and the report)."""
    from studio.bench.table import summary_table as cells

    cols, rows = cells(summary, rec, metrics=metrics, p99=bool(metrics))
    # numbers stay numbers (the Dataframe sorts them); labels keep their words
    return {"headers": [c.header for c in cols],
            "data": [[cell.value if col.numeric else cell.text for col, cell in zip(cols, r, strict=True)]
                     for r in rows]}


def recommendation_markdown(rec: dict[str, Any], summary: Summary) -> str:
    ds = summary.dataset
    env = summary.environment
    ref = summary.reference_id
    lines = []
    if ref:
        lines.append(f"**No ground truth: scores are agreement with `{ref}`**, not accuracy.")
    if rec.get("best"):
        lines.append(f"### ★ Recommended: `{rec['best']}`")
        lines.append(rec.get("sentence") or rec.get("reason", ""))
        if rec.get("why_not_best"):
            lines.append(f"<sub>{rec['why_not_best']}</sub>")
        facts = [f"ranked by **{rec.get('metric', 'iou')}**", f"tolerance {rec.get('tolerance', 0):g}",
                 f"budgets: {rec.get('budgets_text') or 'no budget given'}"]
        eq = [e["id"] for e in rec.get("equivalent") or []]
        if len(eq) > 1:
            facts.append("equivalent: " + ", ".join(f"`{x}`" for x in eq))
        if rec.get("cost_per_1000") is not None:
            facts.append(f"**${rec['cost_per_1000']:.4f} per 1,000 images**")
        lines.append(" · ".join(facts))
    else:
        lines.append("### No recommendation")
        lines.append(f"{rec.get('sentence') or rec.get('reason') or 'no variant fits'} "
                     f"(budgets: {rec.get('budgets_text') or 'no budget given'}).")
    excluded = rec.get("excluded") or []
    if excluded:
        lines.append("<details><summary>Not eligible: " + str(len(excluded)) + " variants</summary>\n\n"
                     + "\n".join(f"- `{e['id']}`: {e['why']}" for e in excluded) + "\n</details>")
    if summary.skipped:
        lines.append("<details><summary>Skipped (not installed or built here): " + str(len(summary.skipped))
                     + "</summary>\n\n" + "\n".join(f"- `{e['id']}`: {e['why']}" for e in summary.skipped)
                     + "\n</details>")
    lines.append(f"<sub>{ds.get('name', '?')} · {ds.get('n_images', '?')} images · "
                 f"{env.get('device', '?')} · {env.get('cpu', '')} · {summary.created}</sub>")
    return "\n\n".join(lines)


def _num(x: Any) -> float | None:
    """A budget from a number box: blank, zero or negative mean 'no budget'."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if f > 0 else None


def render(summary: Summary, run_path: Path | None, p95: Any = None, memory: Any = None,
           price: Any = None) -> tuple:
    """(recommendation markdown, Pareto figure, table, files, run id, public summary)."""
    from studio.bench import recommend
    from studio.bench.plots import pareto_figure

    rec = recommend(summary, budget_p95_ms=_num(p95), budget_memory_mb=_num(memory),
                    price_per_hour=_num(price), tolerance=summary.config.get("tolerance"))
    fig = pareto_figure(summary, recommendation=rec)
    # in the app's narrower column: labels may overhang the axes, the legend goes underneath
    fig.update_traces(cliponaxis=False, selector={"mode": "markers+text"})
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0}, height=560,
                      margin={"l": 70, "r": 40, "t": 60, "b": 40})
    files = []
    if run_path is not None:
        files = [str(run_path.parent / n) for n in ("report.html", "summary.json", "per_image.csv")
                 if (run_path.parent / n).is_file()]
    public = summary.to_json()
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
        return ("Run a benchmark or open a past run first.", None, {"headers": [], "data": []}, [], "", {})
    return open_run(run, p95, memory, price)


def new_run_dir() -> Path:
    """A fresh folder per run: named to the second for people, unique for two runs at once."""
    root = settings.results_dir() / "app"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=root))


def benchmark(source: str = SOURCE_EMBEDDED, dataset: str | None = None, zip_file: Any = None,
              variants: list[str] | None = None, limit: Any = 8, warmup: Any = 1, repeats: Any = 1,
              cold_start: bool = False, p95: Any = None, memory: Any = None, price: Any = None,
              progress: ProgressFn | None = None, out: Path | None = None) -> tuple:
    """Run the suite on a dataset and render its summary (see `render`)."""
    from studio.bench import SuiteConfig, run_suite

    out = Path(out) if out else new_run_dir()
    work = out / "_upload"
    ok = False
    try:
        ds = resolve_dataset(source, dataset, zip_file, work)
        n_limit = int(limit) if limit not in (None, "") and int(limit) > 0 else None
        if isinstance(variants, str):
            variants = [v for v in variants.replace(",", " ").split() if v]
        chosen = list(variants) if variants else None
        if chosen is None:
            from studio.inventory import default_variants

            chosen = [v.id for v in default_variants()]
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
        ok = True
    finally:
        clean_dir(work)  # the extracted zip is not kept; results are
        if not ok and not (out / "summary.json").is_file():
            clean_dir(out)  # a run that failed before writing anything leaves no empty folder
    return render(summary, out / "summary.json", p95, memory, price)
