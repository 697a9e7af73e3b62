"""Which of a run's images a variant has seen: in training (the zoo's `trained_on` against the
dataset catalogue) or in calibration (a static int8 build's calibration images, by content)."""

from __future__ import annotations

import functools

from studio.errors import StudioError
from studio.zoo import Variant, load_zoo


@functools.cache
def _calibration_hashes(variant_id: str) -> frozenset[str] | None:
    from studio.quant.builds import recipe_of
    from studio.quant.images import ImageSet

    v = load_zoo().get(variant_id)
    hashes: set[str] = set()
    while v is not None and v.is_build:
        try:
            recipe = recipe_of(v)
        except StudioError:
            return None
        cal = recipe.params.get("calibration") if recipe.kind == "int8-static" else None
        if cal:
            try:
                hashes |= {s.content_hash for s in ImageSet.from_dict(cal).samples()}
            except StudioError:
                return None  # the images are not here: unknown, not "none"
        v = load_zoo().variants.get(v.derived_from or "")
    return frozenset(hashes)


def calibration_hashes(variant: Variant) -> frozenset[str] | None:
    """Content hashes of the images a build (or a build it derives from) was calibrated on:
    empty for variants without calibration, None when they cannot be known here."""
    if not variant.is_build:
        return frozenset()
    try:
        return _calibration_hashes(variant.id)
    except StudioError:
        return None
