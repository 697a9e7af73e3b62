"""Variant choices as the app shows them: grouped by family, untrained ones apart and flagged.

What starts selected is `studio.inventory.default_variants()` (installed, trained, no parity
references). An untrained checkpoint is offered in its own, clearly labelled group that starts
unticked: its quality numbers are noise, so picking it is opt-in.
"""

from __future__ import annotations

from dataclasses import dataclass

from studio import labels
from studio.inventory import describe
from studio.zoo import load_zoo

FAMILY_LABELS = {
    "isnet": "IS-Net",
    "u2net": "U²-Net",
    "birefnet": "BiRefNet",
    "bria": "BRIA RMBG",
    "inspyrenet": "InSPyReNet",
    "classical": "Classical",
}
UNTRAINED_GROUP = "untrained"  # the pseudo-family every untrained checkpoint is listed under
UNTRAINED_GROUP_LABEL = f"Untrained checkpoints ({labels.UNTRAINED}; opt-in)"


@dataclass(frozen=True)
class Choice:
    id: str
    family: str
    label: str
    installed: bool
    untrained: bool
    default: bool  # chosen unless the user unticks it (parity references and untrained are not)


def family_label(family: str) -> str:
    if family == UNTRAINED_GROUP:
        return UNTRAINED_GROUP_LABEL
    return FAMILY_LABELS.get(family, family)


def label(variant_id: str, untrained: bool) -> str:
    """How a picker, caption or table names a variant: untrained ones say so."""
    return f"{variant_id}  ·  {labels.UNTRAINED}" if untrained else variant_id


def choices() -> list[Choice]:
    """Every zoo variant in zoo order, with the label the pickers show."""
    out = []
    for v in load_zoo().variants.values():
        info = describe(v)
        parts = [v.id]
        if info.untrained:
            parts.append(f"⚠ {labels.UNTRAINED}")
        elif v.non_commercial:
            parts.append("non-commercial")
        if v.requires:
            parts.append(labels.needs(v.requires))
        parity = not bool(getattr(v, "default", True))
        if parity:
            parts.append("parity reference")
        out.append(Choice(v.id, v.family, "  ·  ".join(parts),
                          installed=info.installed and not v.requires, untrained=info.untrained,
                          default=not parity and not info.untrained))
    return out


def families() -> list[str]:
    """Families in zoo order, then the untrained group."""
    seen: dict[str, None] = {}
    for v in load_zoo().variants.values():
        seen.setdefault(v.family, None)
    return [*seen, UNTRAINED_GROUP]


def grouped(installed_only: bool = True) -> dict[str, list[tuple[str, str]]]:
    """{family: [(label, id), ...]} in zoo order; untrained variants under UNTRAINED_GROUP (last).
    Groups with no entries are kept, empty (the layout hides them)."""
    groups: dict[str, list[tuple[str, str]]] = {f: [] for f in families()}
    for c in choices():
        if c.installed or not installed_only:
            groups[UNTRAINED_GROUP if c.untrained else c.family].append((c.label, c.id))
    return groups


def installed_ids() -> list[str]:
    return [c.id for c in choices() if c.installed]


def installed_choices() -> list[tuple[str, str]]:
    """(label, id) of every installed variant: the Benchmark tab's model picker."""
    return [(c.label, c.id) for c in choices() if c.installed]


def default_ids() -> list[str]:
    """What the pickers start with: `studio.inventory.default_variants()` in zoo order."""
    from studio.inventory import default_variants

    wanted = {v.id for v in default_variants()}
    return [c.id for c in choices() if c.id in wanted]


def untrained_ids() -> list[str]:
    return [c.id for c in choices() if c.untrained]


def reference_choices() -> list[tuple[str, str]]:
    """Variants a labels-free score can be measured against: installed and trained (parity
    references included: they are the same weights through another session)."""
    return [(c.id, c.id) for c in choices() if c.installed and not c.untrained]


DEFAULT_REFERENCE = "isnet-general-use"


def default_reference() -> str | None:
    """isnet-general-use when it is installed, else the first trained installed variant."""
    ids = [vid for _, vid in reference_choices()]
    if DEFAULT_REFERENCE in ids:
        return DEFAULT_REFERENCE
    return ids[0] if ids else None


def merge(*groups: list[str] | None) -> list[str]:
    """The union of the per-family pickers, in zoo order: what `compare` receives."""
    picked = {vid for g in groups if g for vid in g}
    return [c.id for c in choices() if c.id in picked]
