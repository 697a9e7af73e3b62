"""The Models tab's handlers: the zoo table, fetching weights, and what the pool holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from studio.pool import DEFAULT_POOL
from studio.zoo import load_zoo

ZOO_HEADERS = ["variant", "installed", "size MB", "precision", "input", "backend", "licence", "training data",
               "notes / how to get it"]
ZOO_COLUMN_WIDTHS = ["15%", "7%", "6%", "8%", "8%", "6%", "15%", "12%", "23%"]


def zoo_table() -> dict[str, Any]:
    """`studio models` as a Dataframe value (the same rows: `studio.cli.models.zoo_rows`)."""
    from studio.inventory import zoo_rows

    data = []
    for r in zoo_rows():
        status = "✓ untrained" if r["installed"] and r["untrained"] else ("✓" if r["installed"] else "—")
        how = r["notes"] if r["installed"] else " · ".join(x for x in (f"fetch: {r['where']}", r["notes"]) if x)
        data.append([r["id"], status, r["size_mb"], r["precision"], r["input"], r["backend"], r["license"],
                     ", ".join(r["trained_on"]) or "—", how])
    return {"headers": ZOO_HEADERS, "data": data}


def fetchable() -> list[tuple[str, str]]:
    """(label, id) of variants whose weights are not here yet."""
    from studio.inventory import describe

    out = []
    zoo = load_zoo()
    for v in zoo.variants.values():
        if not v.file:
            continue
        info = describe(v)
        if info.installed and not info.untrained:
            continue
        wf = zoo.file_of(v)
        size = f"~{wf.expected_mb:.0f} MB" if wf and wf.expected_mb else "size unknown"
        label = f"{v.id}  ·  {size}" + ("  ·  installed untrained" if info.untrained else "")
        out.append((label, v.id))
    return out


def fetch(variant_ids: list[str] | None, untrained: bool = False,
          progress: Callable[..., Any] | None = None) -> str:
    """Pull weights for each variant (tqdm bars feed the app's progress bar); report each."""
    from studio import weights

    ids = list(variant_ids or [])
    if not ids:
        return "Choose at least one variant to fetch."
    if progress is not None:
        progress(0.0, desc=f"fetching {len(ids)} weights file(s)")
    results = weights.pull(ids, untrained=bool(untrained), progress=True)
    lines = []
    for vid, res in results.items():
        if isinstance(res, Exception):
            msg = str(res).replace("\n", "\n  ")
            lines.append(f"- ✗ `{vid}`: {msg}")
        else:
            kind = " (untrained — latency only)" if getattr(res, "untrained", False) else ""
            lines.append(f"- ✓ `{vid}`: {res.size / 1e6:.1f} MB from {res.source}{kind}")
    ok = sum(not isinstance(r, Exception) for r in results.values())
    return f"**Fetched {ok} of {len(results)}.**\n\n" + "\n".join(lines)


def pool_status() -> str:
    keys = DEFAULT_POOL.keys()
    used, budget = DEFAULT_POOL.used_mb(), DEFAULT_POOL.budget_mb
    held = ", ".join(f"`{k[0]}` ({k[1]})" for k in keys) or "none yet (models load on first use)"
    return (f"**Loaded models** (shared by all users, least recently used evicted first): {held}. "
            f"Weights held: {used:.0f} MB of a {budget:.0f} MB budget (`STUDIO_POOL_BUDGET_MB`).")
