"""Dataset folders: layout detection, pairing, unpaired reporting, subsets and loading errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.data import DatasetError, open_dataset
from studio.errors import StudioError
from studio.imageio import ImageError


def img(path: Path, w: int = 12, h: int = 8, value: int = 128, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((h, w, 3) if mode == "RGB" else (h, w), value, np.uint8)
    Image.fromarray(arr).save(path)
    return path


def pair(root: Path, stem: str, im: str = "im", gt: str = "gt", ext: str = ".jpg", w: int = 12, h: int = 8) -> None:
    img(root / im / f"{stem}{ext}", w, h)
    img(root / gt / f"{stem}.png", w, h, 255, mode="L")


def test_im_gt_pairs_by_stem_and_reports_unpaired(tmp_path):
    root = tmp_path / "mine"
    for s in ("b", "a", "c"):
        pair(root, s)
    img(root / "im" / "lonely.jpg")
    img(root / "gt" / "orphan.png", mode="L")
    (root / "im" / ".hidden.jpg").write_bytes(b"x")  # hidden files are not data
    img(root / "im" / "__MACOSX" / "a.jpg")
    (root / "im" / "notes.txt").write_text("not an image")
    ds = open_dataset(root)
    assert [s.id for s in ds] == ["a", "b", "c"]
    assert ds.name == "mine" and ds.catalog_name is None
    assert any("im/lonely.jpg has no mask in gt/" in n for n in ds.unpaired)
    assert any("gt/orphan.png has no image in im/" in n for n in ds.unpaired)
    assert len(ds.unpaired) == 2
    s = ds["a"]
    assert s.image().shape == (8, 12, 3) and s.image().dtype == np.uint8
    m = s.mask()
    assert m.dtype == np.float32 and m.shape == (8, 12) and m.max() == 1.0
    assert s.alpha() is None
    assert s.content_hash == hashlib.sha256(s.image_path.read_bytes()).hexdigest()


def test_duplicate_stems_are_noted(tmp_path):
    pair(tmp_path / "d", "x")
    img(tmp_path / "d" / "im" / "x.png")
    ds = open_dataset(tmp_path / "d")
    assert len(ds) == 1
    assert any("same name" in n for n in ds.unpaired)


def test_duts_layout_and_catalogue_name(tmp_path):
    root = tmp_path / "DUTS-TE"
    for s in ("ILSVRC2012_test_00000003", "sun_a"):
        pair(root, s, im="DUTS-TE-Image", gt="DUTS-TE-Mask")
    ds = open_dataset(root)
    assert len(ds) == 2 and ds.catalog_name == "DUTS-TE"
    # the image folder alone finds its mask folder beside it
    ds2 = open_dataset(root / "DUTS-TE-Image")
    assert len(ds2) == 2 and ds2.catalog_name == "DUTS-TE"


def test_dis5k_splits(tmp_path):
    root = tmp_path / "DIS5K"
    pair(root / "DIS-TE1", "1#Accessories#1#Bag#1")
    pair(root / "DIS-TE2", "2#x")
    with pytest.raises(DatasetError, match="several datasets"):
        open_dataset(root)
    ds = open_dataset(root / "DIS-TE1")
    assert [s.id for s in ds] == ["1#Accessories#1#Bag#1"]
    assert ds.catalog_name == "DIS5K-TE1"


def test_hrsod_layout(tmp_path):
    root = tmp_path / "HRSOD_release"
    pair(root, "t1", im="HRSOD_test", gt="HRSOD_test_mask")
    pair(root, "r1", im="HRSOD_train", gt="HRSOD_train_mask")
    with pytest.raises(DatasetError, match="several image/reference pairs"):
        open_dataset(root)
    ds = open_dataset(root / "HRSOD_test")
    assert [s.id for s in ds] == ["t1"] and ds.catalog_name == "HRSOD"


def test_single_pair_one_level_down_and_davis_nesting(tmp_path):
    root = tmp_path / "download"
    for seq in ("bear", "boat"):
        for f in ("00000", "00001"):
            img(root / "DAVIS" / "JPEGImages" / "480p" / seq / f"{f}.jpg")
            img(root / "DAVIS" / "Annotations" / "480p" / seq / f"{f}.png", mode="L")
    img(root / "DAVIS" / "JPEGImages" / "1080p" / "bear" / "00000.jpg", 24, 16)
    ds = open_dataset(root)
    assert [s.id for s in ds] == ["bear/00000", "bear/00001", "boat/00000", "boat/00001"]
    assert "480p" in str(ds[0].image_path)


def test_images_only_folder(tmp_path):
    for s in ("p", "q"):
        img(tmp_path / "photos" / f"{s}.jpg")
    ds = open_dataset(tmp_path / "photos")
    assert len(ds) == 2 and not ds.has_references
    assert ds[0].mask() is None and ds[0].alpha() is None
    assert ds.notes and "no reference" in ds.notes[0]


def test_alpha_folder_and_marker(tmp_path):
    root = tmp_path / "anything"
    pair(root, "a")
    a = np.tile(np.linspace(0, 255, 12, dtype=np.uint8), (8, 1))
    (root / "alpha").mkdir()
    Image.fromarray(a).save(root / "alpha" / "a.png")
    (root / ".catalog").write_text("SOD\n")
    ds = open_dataset(root)
    assert ds.catalog_name == "SOD"
    alpha = ds[0].alpha()
    assert alpha is not None and 0 < alpha.mean() < 1 and alpha[0, 0] == 0


def test_no_layout_is_a_clear_error(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no dataset layout"):
        open_dataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match="not a folder|not in the catalogue"):
        open_dataset(str(tmp_path / "missing"))


def test_limit_is_deterministic_and_independent_of_file_order(tmp_path):
    stems = [f"img{i:03d}" for i in range(40)]
    for order, name in ((stems, "one"), (stems[::-1], "two")):
        for s in order:
            pair(tmp_path / name, s)
    a = [s.id for s in open_dataset(tmp_path / "one", limit=7, seed=3)]
    b = [s.id for s in open_dataset(tmp_path / "two", limit=7, seed=3)]
    assert a == b and len(a) == 7 and a == sorted(a)
    assert [s.id for s in open_dataset(tmp_path / "one", limit=7, seed=3)] == a
    assert [s.id for s in open_dataset(tmp_path / "one", limit=7, seed=4)] != a
    sub = open_dataset(tmp_path / "one", limit=7)
    assert sub.total == 40 and len(sub) == 7 and any("subset" in n for n in sub.notes)
    assert len(open_dataset(tmp_path / "one", limit=100)) == 40
    with pytest.raises(DatasetError):
        open_dataset(tmp_path / "one", limit=0)


def test_mask_size_mismatch_names_the_pair(tmp_path):
    img(tmp_path / "d" / "im" / "x.jpg", 12, 8)
    img(tmp_path / "d" / "gt" / "x.png", 10, 8, mode="L")
    s = open_dataset(tmp_path / "d")["x"]
    with pytest.raises(ImageError) as exc:
        s.mask()
    msg = str(exc.value)
    assert "'x'" in msg and "gt/x.png is 10x8" in msg and "im/x.jpg is 12x8" in msg


def test_corrupt_files_open_but_fail_per_sample(tmp_path):
    root = tmp_path / "d"
    pair(root, "good")
    (root / "im" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    img(root / "gt" / "bad.png", mode="L")
    img(root / "im" / "badmask.jpg")
    (root / "gt" / "badmask.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    ds = open_dataset(root)  # opening decodes nothing
    assert len(ds) == 3
    assert ds["good"].mask() is not None
    with pytest.raises(ImageError, match="bad.jpg"):
        ds["bad"].image()
    with pytest.raises(ImageError, match="bad.jpg"):
        ds["bad"].mask()
    with pytest.raises(ImageError, match="'badmask'.*badmask.png"):
        ds["badmask"].mask()
    with pytest.raises(StudioError):  # fronts that catch StudioError catch it too
        ds["bad"].image()
    assert len(ds["bad"].content_hash) == 64  # hashing bytes still works


def test_a_folder_laid_out_as_sod_dev_opens_and_is_recognised_as_sod(tmp_path):
    """sod-dev's layout (BSDS photographs, landscape and portrait, mostly .jpg with some .png,
    binary .png masks), written from the embedded sample's photographs: opened by path it is
    flagged as the SOD catalogue set, and every pair loads with its mask at the image's size.
    (The real sod-dev is research-use only and stays out of the repository.)"""
    from studio.data.embedded import pair as embedded_pair

    root = tmp_path / "sod-dev"
    sizes = [(481, 321), (321, 481)]  # BSDS's two orientations
    for i in range(6):
        p = embedded_pair(i)
        w, h = sizes[i % 2]
        ext = ".png" if i == 5 else ".jpg"
        (root / "im").mkdir(parents=True, exist_ok=True)
        (root / "gt").mkdir(exist_ok=True)
        Image.fromarray(p.image).resize((w, h), Image.LANCZOS).save(root / "im" / f"{100075 + i}{ext}")
        mask = Image.fromarray((p.mask * 255).astype(np.uint8)).resize((w, h), Image.NEAREST)
        mask.save(root / "gt" / f"{100075 + i}.png")
    ds = open_dataset(root)
    assert len(ds) == 6 and not ds.unpaired
    assert ds.catalog_name == "SOD"
    for s, (w, h) in zip(ds, sizes * 3, strict=True):
        image, mask = s.image(), s.mask()
        assert image.shape == (h, w, 3) and image.dtype == np.uint8
        assert mask.shape == (h, w) and set(np.unique(mask)) <= {0.0, 1.0}

