"""The dataset catalogue and the trained-on (contamination) flag."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PIL import Image

from studio.data import catalog, effective_trained_on, find_entry, open_dataset, trained_on_flag
from studio.data.catalogue import REQUIRED, recognise, training_names
from studio.zoo import load_zoo

ISSUE_SETS = {"DUTS-TE", "DIS5K-VD", "DIS5K-TE1", "DIS5K-TE2", "DIS5K-TE3", "DIS5K-TE4", "HRSOD", "UHRSD",
              "P3M-500", "AM-2k", "ECSSD", "HKU-IS", "SOD", "DAVIS-2016"}


def test_catalogue_has_every_standard_set_with_complete_fields():
    cat = catalog()
    assert set(cat) >= ISSUE_SETS
    for name, e in cat.items():
        for key in REQUIRED:
            assert getattr(e, key) not in (None, ""), (name, key)
        assert e.size > 0
        assert e.url.startswith(("http://", "https://"))
        assert e.reference in ("mask", "alpha")
        assert e.download.automatic or e.download.manual, name
        for url, filename in e.download.sources():
            assert url.startswith(("http://", "https://")) and filename


def test_training_names_use_the_zoo_spelling():
    zoo = load_zoo()
    spelled = {t for v in zoo.variants.values() for t in v.trained_on}
    cat = catalog()
    # every catalogue split the zoo mentions is spelled as the zoo spells it
    for e in cat.values():
        for n in e.training_names:
            assert n == n.strip() and " " not in n
    assert {"DUTS-TE", "HRSOD-TE", "UHRSD-TE", "DIS5K-VD", "DIS5K-TE1", "P3M-500", "DAVIS-2016"} <= {
        n for e in cat.values() for n in e.training_names} & spelled


def test_trained_by_is_derived_from_the_zoo():
    duts = find_entry("duts-te")  # case-insensitive
    assert duts is not None
    by = duts.trained_by()
    assert "inspyrenet-base" in by and "birefnet-general" in by
    assert "isnet-general-use" not in by and "u2net" not in by
    assert find_entry("SOD").trained_by() == []
    assert "isnet-general-use" not in find_entry("DIS5K-TE1").trained_by()  # IS-Net saw DIS5K-TR only
    assert "birefnet-portrait" in find_entry("P3M-500").trained_by()


def test_trained_on_flag(tmp_path):
    zoo = load_zoo()
    root = tmp_path / "DIS-TE1"
    for sub, arr in (("im", np.zeros((4, 4, 3), np.uint8)), ("gt", np.zeros((4, 4), np.uint8))):
        (root / sub).mkdir(parents=True)
        Image.fromarray(arr).save(root / sub / "a.png")
    ds = open_dataset(root)
    assert ds.catalog_name == "DIS5K-TE1"
    assert trained_on_flag(zoo.get("birefnet-general"), ds)
    assert trained_on_flag(zoo.get("inspyrenet-fast"), ds)
    assert not trained_on_flag(zoo.get("isnet-general-use"), ds)
    assert not trained_on_flag(zoo.get("inspyrenet-base"), open_dataset())  # the embedded sample
    assert trained_on_flag(zoo.get("u2net"), "DUTS-TR")
    assert training_names("DIS-VD") == ("DIS5K-VD",)
    assert trained_on_flag(zoo.get("inspyrenet-base"), "DIS-VD")


def test_derived_build_inherits_training_sets():
    zoo = load_zoo()
    base = zoo.get("inspyrenet-base")
    derived = replace(base, id="inspyrenet-base-int8-test", trained_on=(), derived_from="inspyrenet-base")
    assert effective_trained_on(derived, zoo) == base.trained_on


def test_folder_names_are_recognised(tmp_path):
    for name, want in (("sod-dev", "SOD"), ("DUTS-TE", "DUTS-TE"), ("HRSOD_test", "HRSOD"),
                       ("DIS-TE4", "DIS5K-TE4"), ("my-photos", None)):
        (tmp_path / name).mkdir()
        assert recognise(tmp_path / name) == want, name
