"""Variant choices as the app shows them: grouped by family, untrained ones flagged."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Choice:
    id: str
    family: str
    label: str
    installed: bool
    untrained: bool
    default: bool  # chosen unless the user unticks it (parity references are not)


def family_label(family: str) -> str:
    return FAMILY_LABELS.get(family, family)


def choices() -> list[Choice]:
    """Every zoo variant in zoo order, with the label the pickers show."""
    out = []
    for v in load_zoo().variants.values():
        info = describe(v)
        parts = [v.id]
        if info.untrained:
            parts.append("⚠ untrained — latency only")
        elif v.non_commercial:
            parts.append("non-commercial")
        if v.requires:
            parts.append(f"needs {v.requires}")
        default = bool(getattr(v, "default", True))
        if not default:
            parts.append("parity reference")
        out.append(Choice(v.id, v.family, "  ·  ".join(parts),
                          installed=info.installed and not v.requires, untrained=info.untrained,
                          default=default))
    return out


def families() -> list[str]:
    """Families in zoo order."""
    seen: dict[str, None] = {}
    for v in load_zoo().variants.values():
        seen.setdefault(v.family, None)
    return list(seen)


def grouped(installed_only: bool = True) -> dict[str, list[tuple[str, str]]]:
    """{family: [(label, id), ...]} in zoo order; families with no entries are kept, empty."""
    groups: dict[str, list[tuple[str, str]]] = {f: [] for f in families()}
    for c in choices():
        if c.installed or not installed_only:
            groups[c.family].append((c.label, c.id))
    return groups


def installed_ids() -> list[str]:
    return [c.id for c in choices() if c.installed]


def default_ids() -> list[str]:
    """What the pickers start with: every installed variant (as `inventory.installed_variants`)."""
    return [c.id for c in choices() if c.installed and c.default]


def merge(*groups: list[str] | None) -> list[str]:
    """The union of the per-family pickers, in zoo order: what `compare` receives."""
    picked = {vid for g in groups if g for vid in g}
    return [c.id for c in choices() if c.id in picked]
