"""What a variant loads, wherever it comes from: one resolver over fetched weights files
(`studio.weights`) and derived builds (`studio.quant.builds`).

The engine and every front ask here. The two stores below it do not know of each other
beyond this: builds read their source through `studio.weights`, and `studio.weights` never
imports the quantization lab.
"""

from __future__ import annotations

from studio import weights
from studio.errors import NotBuilt, WeightsNotInstalled
from studio.quant import builds
from studio.weights.store import Installed
from studio.zoo import Variant

__all__ = ["Installed", "NotBuilt", "WeightsNotInstalled", "installed", "obtain_command", "require"]


def installed(variant: Variant) -> Installed | None:
    """The variant's artifact on this machine, or None (also None for weightless variants)."""
    if variant.is_build:
        rec = builds.installed(variant)
        return rec.installed() if rec else None
    return weights.installed_for(variant)


def require(variant: Variant, verify: bool = True) -> Installed | None:
    """The artifact, hash-checked when `verify`; WeightsNotInstalled (or NotBuilt) naming the
    command that would make it when it is missing. None for weightless variants."""
    if variant.is_build:
        rec = builds.verify(variant) if verify else builds.installed(variant)
        if rec is None:
            raise NotBuilt(f"{variant.id}: not built here. Build it with: {obtain_command(variant)}")
        return rec.installed()
    return weights.require(variant, verify=verify)


def obtain_command(variant: Variant) -> str | None:
    """The command that makes a variant runnable here (None when it needs nothing)."""
    if variant.is_build:
        return builds.build_command(variant)
    if not variant.file:
        return None
    return weights.pull_command(variant)
