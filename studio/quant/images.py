"""The images a build calibrates on and checks agreement on, and the part left for testing.

A set is a small mapping: `{dataset, part, count, seed}`.
- `dataset`: `embedded` (the sample generated in code, on every machine), `sod-dev`
  (`../shared/datasets/sod-dev`), or a dataset folder / catalogue name `studio.data` opens;
- `part: calibration`: the `count` samples that `studio.data.subset` ranks first for `seed`
  (sha256 of seed and id). `held_out()` is every other sample: the disjoint part to
  measure on. `part: all`: the first `count` of the same ranking, with nothing held out
  in particular (for agreement checks). `part: held-out` (with `skip`): the `count` samples
  ranked just after the first `skip`, i.e. images a build calibrated on the first `skip`
  never saw (an int8-static build's agreement check).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from studio import settings
from studio.errors import StudioError
from studio.prepost import Preprocess

SHARED_SETS = {"sod-dev": ("datasets", "sod-dev")}
# What a ranges file records about where its images came from (../shared/datasets/README.md).
LICENCES = {
    "sod-dev": ("SOD salient-object benchmark (Movahedi & Elder, 2010) on BSDS500 photographs; "
                "research use only (BSDS images are Corel-derived; the SOD annotation is York "
                "University's). Not redistributed: only ranges derived from it are committed."),
    "embedded": ("the studio's embedded sample, generated in code (studio.data.embedded) over "
                 "scikit-image's bundled photographs (public domain or CC0)"),
}


def dataset_licence(name: str) -> str:
    """The licence line a ranges file records for its calibration images."""
    if name in LICENCES:
        return LICENCES[name]
    from studio.data import catalogue

    entry = catalogue.find_entry(name)
    return f"{entry.title}: {entry.licence}" if entry is not None else "unknown (a local folder)"


class CalibrationDataMissing(StudioError):
    """The recipe's calibration images are not on this machine."""


def dataset_path(name: str) -> str | None:
    """The location `studio.data.open_dataset` should open for a recipe's dataset name."""
    if name in ("embedded", "", None):
        return None
    if name in SHARED_SETS:
        root = settings.shared_dir().joinpath(*SHARED_SETS[name])
        if not root.is_dir():
            raise CalibrationDataMissing(
                f"this recipe needs images of {name} (to calibrate on or to check the build's "
                f"agreement on), which live in the shared folder ({root}), absent on this "
                f"machine. Put the folder there (or set STUDIO_SHARED), or use a recipe whose "
                f"calibration and check sets are the embedded sample (dataset: embedded)."
            )
        return str(root)
    return name


@dataclass(frozen=True)
class ImageSet:
    dataset: str
    part: str
    count: int
    seed: int
    skip: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageSet:
        return cls(str(d.get("dataset", "embedded")), str(d.get("part", "calibration")),
                   int(d.get("count", 16)), int(d.get("seed", 0)), int(d.get("skip", 0)))

    def _open(self, limit: int | None):
        from studio.data import open_dataset

        spec = dataset_path(self.dataset)
        if spec is not None and not Path(spec).exists() and "/" in spec:
            raise CalibrationDataMissing(f"calibration dataset folder {spec} does not exist")
        return open_dataset(spec, limit=limit, seed=self.seed)

    def samples(self) -> list:
        """The chosen samples, in id order."""
        if self.part == "held-out":
            seen = {s.id for s in self._open(self.skip)} if self.skip else set()
            return [s for s in self._open(self.skip + self.count) if s.id not in seen]
        return list(self._open(self.count))

    def held_out(self) -> list:
        """Every sample of the dataset that is not in this set (empty for `part: all`)."""
        if self.part == "all":
            return []
        chosen = {s.id for s in self.samples()}
        return [s for s in self._open(None) if s.id not in chosen]

    def provenance(self) -> dict[str, Any]:
        """Every chosen image's id and content hash, the dataset's name and licence."""
        chosen = self.samples()
        fp = self.fingerprint(chosen)
        return {"dataset": self.dataset, "licence": dataset_licence(self.dataset), "part": self.part,
                "count": len(chosen), "seed": self.seed,
                "images": [{"id": s.id, "sha256": s.content_hash} for s in chosen],
                "content_sha256": fp["content_sha256"]}

    def fingerprint(self, chosen: list | None = None) -> dict[str, Any]:
        """What the build hash needs to know: which pixels, not which path."""
        chosen = self.samples() if chosen is None else chosen
        h = hashlib.sha256()
        for s in chosen:
            h.update(f"{s.id}\0{s.content_hash}\n".encode())
        return {"dataset": self.dataset, "part": self.part, "count": len(chosen), "seed": self.seed,
                "ids": [s.id for s in chosen], "content_sha256": h.hexdigest()}


def feeds(samples: list, input_name: str, size: tuple[int, int], cfg: Preprocess) -> Iterator[dict[str, np.ndarray]]:
    """Model inputs for the samples, made by the onnx backend's own preprocessing."""
    from studio.prepost import preprocess

    for s in samples:
        yield {input_name: preprocess(s.image(), size, cfg)}
