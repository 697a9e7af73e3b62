"""What the zoo offers and what is on this machine: one description per variant that every
front shows (`studio models`, the app's pickers and Models tab, reports), and the selection of
what can run here."""

from __future__ import annotations

from dataclasses import dataclass, field

from studio import artifacts, labels
from studio.zoo import Variant, load_zoo


@dataclass
class VariantInfo:
    """What every front shows about a variant: its zoo row plus what is on this machine."""

    variant: Variant
    installed: bool
    path: str | None
    size_mb: float | None
    untrained: bool
    flags: list[str] = field(default_factory=list)
    pull_command: str | None = None


def describe(variant: Variant | str) -> VariantInfo:
    zoo = load_zoo()
    v = zoo.get(variant) if isinstance(variant, str) else variant
    rec = artifacts.installed(v)
    needs_weights = v.needs_artifact
    flags = []
    untrained = bool(rec and rec.untrained)
    if untrained:
        flags.append(labels.UNTRAINED)
    if v.non_commercial:
        flags.append(labels.NON_COMMERCIAL)
    if v.requires:
        flags.append(labels.needs(v.requires))
    wf = zoo.file_of(v)
    size = rec.size / 1e6 if rec else (wf.expected_mb if wf and not v.is_build else None)
    return VariantInfo(
        variant=v,
        installed=(rec is not None) or not needs_weights,
        path=rec.path if rec else None,
        size_mb=size,
        untrained=untrained,
        flags=flags,
        pull_command=None if (rec or not needs_weights) else artifacts.obtain_command(v),
    )


def installed_variants(include_references: bool = False) -> list[Variant]:
    """Every variant that can run here now (weights present, or none needed). Parity
    references (the same weights through rembg's session) only when asked for."""
    return [v for v in load_zoo().variants.values()
            if describe(v).installed and not v.requires and (v.default or include_references)]


def default_variants() -> list[Variant]:
    """What the app selects unless the user changes it: installed, trained variants, without
    parity references; an untrained checkpoint is opt-in (its quality is noise)."""
    return [v for v in installed_variants() if not describe(v).untrained]


@dataclass
class Selection:
    """Variants a pattern list picked: those that can run here, and the rest with why."""

    runnable: list[Variant]
    skipped: list[tuple[Variant, str]]  # (variant, "not built: studio build X" …)


def select_runnable(patterns: list[str] | str | None, device: str = "cpu") -> Selection:
    """Ids, globs or families -> what can run here. A glob or family quietly leaves out what is
    not installed or built (listed in `skipped` with the command that would make it); an
    explicit id that cannot run stays in `runnable`, so running it reports the error."""
    zoo = load_zoo()
    if not patterns:
        return Selection(installed_variants(), [])
    if isinstance(patterns, str):
        patterns = [p for p in patterns.replace(",", " ").split() if p]
    runnable: dict[str, Variant] = {}
    skipped: dict[str, tuple[Variant, str]] = {}
    for pat in patterns:
        explicit = pat in zoo.variants
        for v in zoo.select([pat]):
            if v.id in runnable:
                continue
            info = describe(v)
            why = None
            if v.requires and not device.startswith(v.requires):
                why = f"{labels.needs(v.requires)}, the run is on {device}"
            elif not info.installed:
                state = "not built" if v.is_build else "not installed"
                why = f"{state}: {info.pull_command}"
            if why is None or explicit:
                runnable[v.id] = v
                skipped.pop(v.id, None)
            else:
                skipped.setdefault(v.id, (v, why))
    order = list(zoo.variants)
    return Selection(sorted(runnable.values(), key=lambda v: order.index(v.id)),
                     sorted(skipped.values(), key=lambda t: order.index(t[0].id)))


def zoo_rows(patterns: list[str] | None = None) -> list[dict]:
    """One dict per variant: what `studio models` and the app's Models tab show."""
    rows = []
    for v in load_zoo().select(patterns or None):
        info = describe(v)
        notes = " ".join(x for x in [*(f"[{f}]" for f in info.flags), v.notes] if x)
        rows.append({
            "id": v.id, "family": v.family, "backend": v.backend, "runtime": v.runtime, "precision": v.precision,
            "input": v.input_size_label,
            "size_mb": round(info.size_mb, 1) if info.size_mb else None,
            "license": v.license,
            "installed": info.installed,
            "is_build": v.is_build,
            "where": info.path or ("no weights needed" if not v.needs_artifact else info.pull_command),
            "untrained": info.untrained,
            "trained_on": list(v.trained_on),
            "notes": notes,
        })
    return rows
