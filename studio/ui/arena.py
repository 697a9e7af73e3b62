"""The Arena tab's handlers: thin calls into `studio.arena.rounds` (the game), plus what only the
page has: its image-source picker, the uploaded zip, the reveal line, the ratings as tables, and
CSV files in the app's download folder.

The app's cut-outs run on the app's device inside its GPU-aware inference function
(`compare.infer`), which is why `next_round` here passes `app_cutout` to the game.
"""

from __future__ import annotations

import hashlib
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from studio import engine
from studio.arena import images as arena_images
from studio.arena import ratings, rounds
from studio.arena.rounds import DEFAULT_BACKGROUND, ArenaError, parse_limit
from studio.data import Sample
from studio.ui.uploads import UploadError, extract_dataset_zip, upload_path
from studio.zoo import Variant

__all__ = ["DEFAULT_BACKGROUND", "SOURCES", "ArenaError", "next_round", "prepare", "ratings_view"]

SOURCE_EMBEDDED = "Embedded sample"
SOURCE_FOLDER = "Catalogue dataset / folder"
SOURCE_ZIP = "Upload a zip of images"
SOURCE_RUN = "Images of a past benchmark run"
SOURCES = [SOURCE_EMBEDDED, SOURCE_FOLDER, SOURCE_ZIP, SOURCE_RUN]
CHOICE_LABELS = {"a": "A better", "b": "B better", "tie": "Tie", "both_bad": "Both bad"}
RATING_HEADERS = ["#", "variant", "rating", "95 % CI", "votes", "won", "tied", "lost", "both bad", "win rate"]
PROVISIONAL = "provisional"  # a rating below the minimum vote count: shown, labelled, not ranked

def app_cutout(variant: Variant, sample: Sample, image: np.ndarray) -> np.ndarray:
    """A cut-out on the app's device, through `compare.infer` (on ZeroGPU, the function that
    holds the GPU), cached as the benchmark caches it."""
    from studio.ui import compare, space

    alpha, _ = engine.cutout(variant, image, sample.content_hash, device=space.device_for(variant.backend),
                             infer_fn=compare.infer)
    return alpha


def next_round(set_spec: str | None, variant_ids: list[str] | str | None, background: str | None = None,
               voter_id: str | None = None, limit: float | None = None, seed: int | None = None) -> dict[str, Any]:
    """`rounds.next_round` with the app's cut-outs (`seed`: a fixed pick, for tests)."""
    return rounds.next_round(set_spec, variant_ids, background, voter_id, limit, seed=seed, cutout=app_cutout)


# --- image sets -------------------------------------------------------------------------------

def save_zip(zip_file: Any) -> str:
    """Extract an uploaded zip of images (masks optional) once, under the arena's uploads
    folder, named by the zip's content hash. Returns its set spec (`upload:KEY`)."""
    loc = upload_path(zip_file)
    if loc is None:
        raise UploadError("no zip uploaded")
    digest = hashlib.sha256()
    with open(loc[0], "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    key = digest.hexdigest()[:16]
    dest = arena_images.uploads_dir() / key
    if not dest.is_dir():
        tmp = dest.with_name(f".{key}-{uuid.uuid4().hex[:6]}")
        try:
            extract_dataset_zip(zip_file, tmp, masks_required=False)
            tmp.rename(dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return arena_images.UPLOAD_PREFIX + key


def resolve_set(source: str | None, dataset: str | None, zip_file: Any, run: str | None) -> str:
    """The set spec for what the user chose in the tab (checked by `images.check_spec`, as
    `arena_next` checks whatever a client sends)."""
    if not source or source == SOURCE_EMBEDDED:
        return "embedded"
    if source == SOURCE_ZIP:
        return save_zip(zip_file)
    if source == SOURCE_RUN:
        if not run:
            raise UploadError("choose a past benchmark run")
        spec = run if run.startswith(arena_images.RUN_PREFIX) else arena_images.RUN_PREFIX + run
        return arena_images.check_spec(spec)
    if source == SOURCE_FOLDER:
        if not (dataset or "").strip():
            raise UploadError("choose a catalogue dataset, or type a folder of images (masks optional)")
        return arena_images.check_spec(dataset)
    raise UploadError(f"unknown image source {source!r}; one of: {', '.join(SOURCES)}")


def prepare(source: str | None, dataset: str | None, zip_file: Any, run: str | None,
            limit: float | None = None) -> tuple[str, str]:
    """(set spec, a line saying what is loaded): opens the set once so errors show now."""
    spec = resolve_set(source, dataset, zip_file, run)
    iset = arena_images.open_set(spec, parse_limit(limit))
    notes = f" · {'; '.join(iset.notes[:2])}" if iset.notes else ""
    return spec, f"**{iset.name}**: {len(iset.samples)} images{notes}"


# --- what the page shows --------------------------------------------------------------------

def prompt_markdown(rnd: dict[str, Any]) -> str:
    """The line above the two cut-outs (the keyboard script reads the round id from it)."""
    again = (f" · shown again: you have {rnd['open_rounds']} rounds open, vote on this one first"
             if rnd.get("reopened") else "")
    return (f"**Which cut-out is better?** Image `{rnd['image_name']}` of {rnd['image_set']} "
            f"({rnd['n_images']} images) on {rnd['background']} · round `{rnd['round_id'][:8]}`{again}")


def reveal_markdown(ack: dict[str, Any]) -> str:
    chose = CHOICE_LABELS.get(ack["choice"], ack["choice"])
    again = " (already recorded; counted once)" if ack.get("duplicate") else ""
    return (f"Last round: **A** was `{ack['a']}` · **B** was `{ack['b']}` — you chose **{chose}**{again}. "
            f"{ack['votes_total']} vote{'s' if ack['votes_total'] != 1 else ''} in all.")


def _fmt_ci(ci: tuple[float, float] | None) -> str:
    return f"{ci[0]:.0f} – {ci[1]:.0f}" if ci else "—"


def ratings_view(variant_ids: list[str] | None, set_spec: str | None = None, only_this_set: bool = False,
                 limit: float | None = None, n_boot: int = ratings.N_BOOT,
                 db_path: str | Path | None = None) -> tuple[dict, dict, str]:
    """(ratings table, win-rate matrix, a note) for the chosen variants. A rating below the
    minimum vote count is shown as provisional (labelled, greyed, unranked, after the ranked ones);
    a variant without votes has a dash."""
    hashes = arena_images.open_set(set_spec, parse_limit(limit)).hashes if only_this_set else None
    st = rounds.standings(variant_ids, hashes, n_boot=n_boot, db_path=db_path)
    r = st.ratings
    shown = [row for row in r.rows if row.shown]
    hidden = [row for row in r.rows if not row.shown]
    data = []
    for k, row in enumerate(shown + hidden, start=1):
        if row.shown and row.rating is not None:
            rating, ci, rank = f"{row.rating:.0f}", _fmt_ci(row.ci95), str(k)
        elif row.rating is not None:
            rating = f"{row.rating:.0f} {PROVISIONAL} ({row.votes} of {r.min_votes} votes)"
            ci, rank = _fmt_ci(row.ci95), ""
        else:
            rating, ci, rank = "no votes yet", "—", ""
        wr = row.win_rate
        data.append([rank, row.id, rating, ci, row.votes, row.wins, row.ties - row.both_bad, row.losses,
                     row.both_bad, f"{wr:.0%}" if wr is not None else "—"])
    # the matrix: numbered, so a dozen variants fit across; variants without votes left out
    order = [row.id for row in shown + hidden if row.votes]
    index = {vid: k for k, vid in enumerate(r.ids)}
    matrix = []
    for k, a in enumerate(order, start=1):
        cells: list[Any] = [f"{k}. {a}"]
        for b in order:
            i, j = index[a], index[b]
            n = int(r.pair_votes[i, j])
            cells.append("" if a == b else (f"{r.win_rate[i, j]:.0%} ({n})" if n else "—"))
        matrix.append(cells)
    scope = "votes on this image set" if only_this_set else "votes on all images"
    imported = (f", {st.imported} of them imported from a CSV (cast elsewhere; counted)" if st.imported
                else ", none imported")
    note = (f"{r.n_votes} {scope} between these variants{imported}. {r.method}; 95 % bootstrap CIs over "
            f"{r.n_boot} resamples of the votes; a rating is ranked once its variant has {r.min_votes} votes "
            f"(below that it is {PROVISIONAL}, greyed). Win rate counts a tie or a both-bad vote as half a win. "
            "Matrix: the row's win rate against the column's variant (votes).")
    return ({"headers": RATING_HEADERS, "data": data},
            {"headers": ["row vs column", *[f"{k}." for k in range(1, len(order) + 1)]], "data": matrix}, note)


def original_image(set_spec: str | None, limit: float | None, rnd: dict[str, Any] | None) -> np.ndarray | None:
    """The round's image itself, shown beside the two cut-outs (it says nothing of the variants)."""
    if not rnd or not rnd.get("image_hash"):
        return None
    for lim in (parse_limit(limit), None):  # a reopened round may come from the whole set
        iset = arena_images.open_set(set_spec, lim)
        if rnd["image_hash"] in iset.by_hash:
            return iset.sample(rnd["image_hash"]).image()
    return None


# --- CSV ------------------------------------------------------------------------------------

def export_votes(db_path: str | Path | None = None) -> tuple[Path, int]:
    """Every vote as a CSV file in a fresh download folder: (path, count)."""
    from studio.ui import outputs

    path = outputs.new_dir("arena") / f"arena-votes-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    return path, rounds.export_votes(path, db_path)


def import_votes(csv_file: Any, db_path: str | Path | None = None) -> tuple[int, int]:
    """Add an uploaded CSV's votes (`rounds.import_votes`: checked, marked imported, off on a
    hosted app): (added, skipped)."""
    loc = upload_path(csv_file)
    if loc is None:
        raise UploadError("no CSV uploaded")
    return rounds.import_votes(loc[0], db_path)
