"""The embedded default sample: deterministic, exact, licence-clean, with the hard cases."""

from __future__ import annotations

import numpy as np
import pytest

from studio.data import EMBEDDED_NAME, embedded_sample, open_dataset
from studio.data import embedded as emb


@pytest.fixture(scope="module")
def pairs():
    return emb.generate()


def test_is_the_default_dataset():
    ds = open_dataset()
    assert ds.name == EMBEDDED_NAME == "embedded"
    assert open_dataset("embedded").name == EMBEDDED_NAME
    assert ds.root is None and ds.catalog_name is None
    assert 20 <= len(ds) <= 30
    assert len({s.id for s in ds}) == len(ds)


def test_determinism_every_pixel_across_two_generations(pairs):
    first = emb.sample_hash(pairs)
    again = tuple(emb.render(spec, i) for i, spec in enumerate(emb.specs()))  # bypasses the cache
    assert emb.sample_hash(again) == first
    for a, b in zip(pairs, again, strict=True):
        assert a.content_hash == b.content_hash
        assert np.array_equal(a.alpha, b.alpha)


def test_sizes_vary(pairs):
    sizes = {p.image.shape[:2] for p in pairs}
    assert len(sizes) >= 8
    sides = [s for hw in sizes for s in hw]
    assert min(sides) >= 320 and max(sides) <= 1024
    assert any(h != w for h, w in sizes)


def test_ground_truth_is_exact_and_consistent(pairs):
    for p in pairs:
        h, w = p.image.shape[:2]
        assert p.image.dtype == np.uint8 and p.image.shape == (h, w, 3)
        assert p.alpha.shape == p.mask.shape == (h, w)
        assert p.alpha.dtype == np.float32 and p.mask.dtype == np.float32
        a8 = p.alpha * 255
        assert np.allclose(a8, np.round(a8), atol=1e-3), "alpha is quantised to 1/255 before compositing"
        assert np.array_equal(p.mask, (p.alpha > 0.5).astype(np.float32))
        assert not p.image.flags.writeable  # the cache cannot be mutated by callers


def test_hard_cases_present(pairs):
    by_tag = {}
    for p in pairs:
        for t in p.tags:
            by_tag.setdefault(t, []).append(p)
    for tag in ("empty", "border", "tiny", "huge", "hair", "thin", "holes", "soft", "transparent"):
        assert tag in by_tag, tag
    for p in by_tag["empty"]:
        assert p.alpha.max() == 0 and p.mask.sum() == 0
    for p in by_tag["border"]:
        m = p.mask > 0
        assert m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any(), p.id
    for p in by_tag["tiny"]:
        assert 0 < p.mask.mean() < 0.002, p.id
    for p in by_tag["huge"]:
        assert p.mask.mean() > 0.7, p.id
    for p in by_tag["hair"] + by_tag["thin"]:
        soft = ((p.alpha > 0) & (p.alpha < 1)).mean()
        assert soft > 0.002, p.id  # fine structure leaves real partial coverage
    for p in by_tag["transparent"]:
        inside = p.alpha[p.mask > 0]
        assert np.median(inside) < 0.9  # see-through, yet inside the binary mask


def test_backgrounds_are_licence_clean():
    for spec in emb.specs():
        credit = spec.background.credit.lower()
        assert "public domain" in credit or "cc0" in credit or "generated" in credit, spec.id


def test_sample_api(pairs):
    ds = embedded_sample()
    s = ds[0]
    img = s.image()
    img[:] = 0  # a copy: the cache is untouched
    assert s.image().any()
    assert s.mask().dtype == np.float32 and set(np.unique(s.mask())) <= {0.0, 1.0}
    assert s.alpha().shape == s.mask().shape
    assert s.image_size() == (img.shape[1], img.shape[0])
    assert s.image_path is None and s.mask_path is None
    hashes = [x.content_hash for x in ds]
    assert len(set(hashes)) == len(hashes) and all(len(h) == 64 for h in hashes)
    assert ds[0].content_hash == pairs[0].content_hash
    sub = open_dataset(None, limit=5, seed=1)
    assert len(sub) == 5 and [x.id for x in sub] == [x.id for x in open_dataset(None, limit=5, seed=1)]
