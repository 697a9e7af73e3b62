"""`studio metrics PRED_DIR GT_DIR [--json] [--compare ...]` on temporary folders."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from studio.cli import main
from studio.cli.metrics import pair_by_stem
from studio.errors import StudioError
from studio.imageio import load_mask, save_alpha_png
from studio.metrics import METRIC_NAMES, score_image


def _pair(i: int, shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    h, w = 40 + i, 50
    yy, xx = np.mgrid[0:h, 0:w]
    gt = (((yy - h / 2) / (h / 4)) ** 2 + ((xx - w / 2) / (w / 4)) ** 2 < 1).astype(np.float32)
    pred = cv2.GaussianBlur(np.roll(gt, shift + i % 3, axis=1), (0, 0), 1.0)
    return pred, gt


@pytest.fixture
def folders(tmp_path):
    """gt/ with 5 references (and im/ beside it: a dataset root); a/ with plain-stem
    predictions (one missing, one extra); b/ with `studio predict`-style
    <stem>.<variant>.png names, worse predictions."""
    gt, a, b = tmp_path / "gt", tmp_path / "a", tmp_path / "b"
    for i in range(5):
        pred, ref = _pair(i)
        save_alpha_png(ref, gt / f"img{i}.png")
        save_alpha_png(ref, tmp_path / "im" / f"img{i}.png")  # so tmp_path is a dataset root
        if i < 4:
            save_alpha_png(pred, a / f"img{i}.png")
        save_alpha_png(_pair(i, shift=6)[0], b / f"img{i}.isnet-general-use.png")
    save_alpha_png(np.zeros((5, 5)), a / "stray.png")
    return tmp_path


def test_pairing_by_stem(folders):
    p = pair_by_stem(folders / "a", folders / "gt")
    assert [s for s, _, _ in p.pairs] == ["img0", "img1", "img2", "img3"]
    assert [x.name for x in p.unpaired_pred] == ["stray.png"]
    assert [x.name for x in p.unpaired_gt] == ["img4.png"]
    q = pair_by_stem(folders / "b", folders)  # a dataset root holding im/ + gt/
    assert len(q.pairs) == 5 and q.pairs[0][1].name == "img0.isnet-general-use.png"
    assert q.pairs[0][2].parent.name == "gt"
    assert not pair_by_stem(folders / "b", folders / "gt", variant="other").pairs


def test_references_found_by_the_one_layout_detector(folders, tmp_path):
    """A DUTS root (X-Image/ + X-Mask/, one folder down) works as GT_DIR, as it does for
    `eval/run.py --dataset` and the app's zips."""
    import shutil

    duts = tmp_path / "DUTS-TE-root" / "DUTS-TE"
    shutil.copytree(folders / "gt", duts / "DUTS-TE-Mask")
    shutil.copytree(folders / "im", duts / "DUTS-TE-Image")
    q = pair_by_stem(folders / "b", tmp_path / "DUTS-TE-root")
    assert len(q.pairs) == 5 and {r.parent.name for _, _, r in q.pairs} == {"DUTS-TE-Mask"}
    # a folder that is no dataset: the detector's reason, and what else to pass
    (tmp_path / "empty").mkdir()
    with pytest.raises(StudioError, match="no dataset layout found.*pass the folder of reference masks"):
        pair_by_stem(folders / "b", tmp_path / "empty")


def test_ambiguous_predictions_need_a_variant(folders):
    save_alpha_png(_pair(0)[0], folders / "b" / "img0.isnet-general-use-fp16.png")
    with pytest.raises(StudioError, match="--variant"):
        pair_by_stem(folders / "b", folders / "gt")
    assert len(pair_by_stem(folders / "b", folders / "gt", variant="isnet-general-use").pairs) == 5


def test_cli_json(folders, capsys, tmp_path):
    rc = main(["metrics", str(folders / "a"), str(folders / "gt"), "--json", "--n-boot", "100",
               "--per-image", str(tmp_path / "rows.csv")])
    out, err = capsys.readouterr()
    assert rc == 0
    res = json.loads(out)
    assert res["n_images"] == 4
    for k in METRIC_NAMES:
        assert set(res[k]) == {"mean", "ci95"} and len(res[k]["ci95"]) == 2
    assert res["conventions"]["averaging"].startswith("per image")
    assert res["conventions"]["bootstrap"]["n_boot"] == 100
    assert res["unpaired"] == {"pred": ["stray.png"], "gt": ["img4.png"]}
    assert "stray.png" in err and "img4.png" in err
    with open(tmp_path / "rows.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == ["img0", "img1", "img2", "img3"]
    first = score_image(load_mask(folders / "a" / "img0.png"), load_mask(folders / "gt" / "img0.png"))
    assert float(rows[0]["iou"]) == first.values["iou"]


def test_cli_table_and_compare(folders, capsys):
    rc = main(["metrics", str(folders / "a"), str(folders / "gt"), "--n-boot", "100"])
    out, _ = capsys.readouterr()
    assert rc == 0
    assert "4 images" in out and "per image" in out
    for k in METRIC_NAMES:
        assert f"\n{k} " in out
    rc = main(["metrics", str(folders / "a"), str(folders / "gt"), "--compare", str(folders / "b"),
               "--json", "--n-boot", "200"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and res["n_images"] == 4  # the images both folders have
    iou = res["compare"]["paired"]["iou"]
    assert iou["diff"] > 0 and iou["diff"] == pytest.approx(
        res["iou"]["mean"] - res["compare"]["metrics"]["iou"]["mean"])
    main(["metrics", str(folders / "a"), str(folders / "gt"), "--compare", str(folders / "b")])
    assert "verdict" in capsys.readouterr().out


def test_cli_reports_bad_pairs_and_empty_folders(folders, capsys, tmp_path):
    save_alpha_png(np.zeros((7, 9)), folders / "a" / "img4.png")  # wrong size
    rc = main(["metrics", str(folders / "a"), str(folders / "gt"), "--json", "--n-boot", "50"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "img4.png" in err and "9x7" in err
    assert json.loads(out)["n_images"] == 4
    (tmp_path / "empty").mkdir()
    assert main(["metrics", str(tmp_path / "empty"), str(folders / "gt")]) == 2
    assert "no prediction" in capsys.readouterr().err
    assert main(["metrics", str(tmp_path / "nope"), str(folders / "gt")]) == 2
