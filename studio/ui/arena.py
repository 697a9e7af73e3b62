"""The Arena tab's handlers: blind A/B rounds, votes and ratings, as plain functions.

A round: `next_round` picks (pair, image) with `studio.arena.pairing`, makes the two cut-outs
(from the benchmark's prediction cache, else computed once through the pooled runner and
written there, so the arena and the benchmark share predictions), stores the round (round id
-> image and variants, sides included) and returns the images with the round id only. `vote`
takes the round id back: the server alone knows which variant was where, and the round id is
the vote id, so a retried submit is recorded once. Nothing is kept in the process between the
two calls, so any number of browsers or scripts vote at once.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from studio import artifacts, inventory, settings, visuals
from studio.arena import images as arena_images
from studio.arena import pairing, ratings
from studio.arena.db import CHOICES, ArenaDB, Round, new_vote
from studio.data import Sample
from studio.errors import StudioError
from studio.ui.uploads import UploadError, extract_dataset_zip, upload_path
from studio.zoo import Variant, load_zoo

SOURCE_EMBEDDED = "Embedded sample"
SOURCE_FOLDER = "Catalogue dataset / folder"
SOURCE_ZIP = "Upload a zip of images"
SOURCE_RUN = "Images of a past benchmark run"
SOURCES = [SOURCE_EMBEDDED, SOURCE_FOLDER, SOURCE_ZIP, SOURCE_RUN]
CHOICE_LABELS = {"a": "A better", "b": "B better", "tie": "Tie", "both_bad": "Both bad"}
DEFAULT_BACKGROUND = "checkerboard"
RATING_HEADERS = ["#", "variant", "rating", "95 % CI", "votes", "won", "tied", "lost", "both bad", "win rate"]


class ArenaError(StudioError):
    """Something the arena refuses; the message says what to do."""


# --- the database, one object per file per process ----------------------------------------------

_dbs: dict[Path, ArenaDB] = {}
_dbs_lock = threading.Lock()


def database(path: str | Path | None = None) -> ArenaDB:
    """The votes database (opened, and migrated, once per process)."""
    p = Path(path) if path is not None else settings.arena_db_path()
    with _dbs_lock:
        if p not in _dbs:
            _dbs[p] = ArenaDB(p)
        return _dbs[p]


# --- variants and cut-outs --------------------------------------------------------------------

def variant_choices() -> list[tuple[str, str]]:
    """(label, id) of the variants the arena can judge here: installed and trained."""
    out = []
    for v in load_zoo().variants.values():
        info = inventory.describe(v)
        if info.installed and not info.untrained and not v.requires:
            out.append((v.id if v.default else f"{v.id}  ·  parity reference", v.id))
    return out


def default_variant_ids() -> list[str]:
    """What the picker starts with: the installed, trained variants the studio runs by default."""
    return [v.id for v in inventory.installed_variants() if not inventory.describe(v).untrained]


def check_variants(variant_ids: list[str] | str | None) -> list[Variant]:
    """The chosen variants, or ArenaError: fewer than two, unknown, not installed, or untrained
    (random weights cut out noise: votes on them would mean nothing)."""
    if isinstance(variant_ids, str):
        variant_ids = [p for p in variant_ids.replace(",", " ").split() if p]
    ids = list(dict.fromkeys(variant_ids or []))
    if len(ids) < 2:
        raise ArenaError("choose at least two variants to compare")
    zoo = load_zoo()
    out = []
    for vid in ids:
        if vid not in zoo.variants:
            raise ArenaError(f"{vid}: no such variant in the zoo")
        v = zoo.get(vid)
        info = inventory.describe(v)
        if info.untrained:
            raise ArenaError(f"{vid}: untrained weights (latency only). Its cut-outs are noise, so the arena "
                             "refuses it; fetch the trained weights to judge it")
        if not info.installed:
            raise ArenaError(f"{vid}: not installed here. Get it with: {info.pull_command}")
        if v.requires:
            raise ArenaError(f"{vid}: needs {v.requires}; the arena runs where the app runs")
        out.append(v)
    return out


def _cache_for(variant: Variant, device: str):
    """The benchmark's prediction cache entry folder for this variant, keyed as the suite keys it."""
    from studio.prediction_cache import PredictionCache, variant_fingerprint

    rec = artifacts.installed(variant)
    return PredictionCache(variant_fingerprint(variant, rec.sha256 if rec else None, device, 0))


def cutout_alpha(variant: Variant, sample: Sample, image: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """(alpha, whether it came from the cache). A miss runs the variant once through the pooled
    runner (`studio.ui.compare.infer`, the GPU-aware path) and stores the result in the
    prediction cache, as the benchmark would (threads 0, the app's device)."""
    from studio.ui import compare, space

    device = space.device_for(variant.backend)
    cache = _cache_for(variant, device)
    hit = cache.get(sample.content_hash)
    if hit is not None:
        return hit.alpha, True
    rgb = sample.image() if image is None else image
    matte, _, cold = compare.infer(variant.id, rgb)
    if cold:  # the first call after loading is not a warm timing: time a second one for the cache
        matte, _, _ = compare.infer(variant.id, rgb)
    return cache.put(sample.content_hash, matte.alpha, [matte.timings]).alpha, False


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
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
    return arena_images.UPLOAD_PREFIX + key


def resolve_set(source: str | None, dataset: str | None, zip_file: Any, run: str | None) -> str:
    """The set spec for what the user chose in the tab."""
    if not source or source == SOURCE_EMBEDDED:
        return "embedded"
    if source == SOURCE_ZIP:
        return save_zip(zip_file)
    if source == SOURCE_RUN:
        if not run:
            raise UploadError("choose a past benchmark run")
        return run if run.startswith(arena_images.RUN_PREFIX) else arena_images.RUN_PREFIX + run
    if source == SOURCE_FOLDER:
        name = (dataset or "").strip()
        if not name:
            raise UploadError("choose a catalogue dataset, or type a folder of images (masks optional)")
        looks_like_path = "/" in name or name.startswith(".")
        if looks_like_path and settings.on_spaces():
            raise UploadError("on the hosted app, images come from the catalogue or an uploaded zip")
        if looks_like_path and not Path(name).expanduser().is_dir():
            raise UploadError(f"{name}: no such folder")
        return str(Path(name).expanduser().resolve()) if looks_like_path else name
    raise UploadError(f"unknown image source {source!r}; one of: {', '.join(SOURCES)}")


def prepare(source: str | None, dataset: str | None, zip_file: Any, run: str | None,
            limit: float | None = None) -> tuple[str, str]:
    """(set spec, a line saying what is loaded): opens the set once so errors show now."""
    spec = resolve_set(source, dataset, zip_file, run)
    iset = arena_images.open_set(spec, _limit(limit))
    notes = f" · {'; '.join(iset.notes[:2])}" if iset.notes else ""
    return spec, f"**{iset.name}**: {len(iset.samples)} images{notes}"


def _limit(limit: float | str | None) -> int | None:
    try:
        n = int(float(limit or 0))
    except (TypeError, ValueError):
        raise ArenaError(f"images: {limit!r} is not a number") from None
    return n if n > 0 else None


# --- rounds and votes -------------------------------------------------------------------------

def new_voter_id() -> str:
    return "anon-" + secrets.token_hex(6)


def next_round(set_spec: str | None, variant_ids: list[str] | str | None, background: str | None = None,
               voter_id: str | None = None, limit: float | None = None, seed: int | None = None,
               db_path: str | Path | None = None) -> dict[str, Any]:
    """Pick and store the next round. Returns {"round": what a client may see (round id,
    image name and hash, set, background), "views": [A, B] composites on the background,
    "cutouts": [A, B] RGBA cut-outs, "voter_id"}; the variants stay on the server."""
    variants = check_variants(variant_ids)
    ids = [v.id for v in variants]
    bg = background or DEFAULT_BACKGROUND
    if bg not in arena_images.BACKGROUNDS:
        raise ArenaError(f"background {bg!r} is not one of {', '.join(arena_images.BACKGROUNDS)}")
    iset = arena_images.open_set(set_spec, _limit(limit))
    db = database(db_path)
    voter = (voter_id or "").strip() or new_voter_id()
    votes = db.votes(ids)
    pending = [r for r in db.pending() if r.variant_a in ids and r.variant_b in ids]
    pick = pairing.next_pick(ids, iset.hashes, votes, pending,
                             seed=secrets.randbits(32) if seed is None else seed)
    sample = iset.sample(pick.image_hash)
    rgb = sample.image()
    by_id = {v.id: v for v in variants}
    alpha_a, _ = cutout_alpha(by_id[pick.variant_a], sample, rgb)
    alpha_b, _ = cutout_alpha(by_id[pick.variant_b], sample, rgb)
    h, w = alpha_a.shape
    backdrop = arena_images.background(bg, h, w)
    rnd = Round(round_id=uuid.uuid4().hex, image_hash=pick.image_hash, variant_a=pick.variant_a,
                variant_b=pick.variant_b, voter_id=voter, created_at=time.time(), image_name=sample.id,
                set_spec=iset.spec, background=bg)
    db.add_round(rnd)
    return {
        "round": {"round_id": rnd.round_id, "image_name": sample.id, "image_hash": pick.image_hash,
                  "image_set": iset.name, "n_images": len(iset.samples), "background": bg},
        "views": [visuals.composite(rgb, alpha_a, backdrop), visuals.composite(rgb, alpha_b, backdrop)],
        "cutouts": [visuals.cutout_rgba(rgb, alpha_a), visuals.cutout_rgba(rgb, alpha_b)],
        "voter_id": voter,
    }


def parse_choice(choice: str | None) -> str:
    """"a", "A better", "B", "tie", "both bad" ... -> a | b | tie | both_bad."""
    c = (choice or "").strip().lower().replace(" ", "_").replace("-", "_")
    aliases = {"a_better": "a", "left": "a", "b_better": "b", "right": "b", "bothbad": "both_bad"}
    c = aliases.get(c, c)
    if c not in CHOICES:
        raise ArenaError(f"choice {choice!r}: one of {', '.join(CHOICES)}")
    return c


def vote(round_id: str | None, choice: str | None, voter_id: str | None = None,
         db_path: str | Path | None = None) -> dict[str, Any]:
    """Record the vote on a round (committed before this returns) and reveal the names.

    Idempotent: the round id is the vote id, so sending the same vote again records nothing
    and returns the vote first stored (`"duplicate": true`)."""
    rid = (round_id or "").strip()
    if not rid:
        raise ArenaError("no round to vote on: start the arena first")
    c = parse_choice(choice)
    db = database(db_path)
    rnd = db.get_round(rid)
    if rnd is None:
        raise ArenaError(f"unknown round {rid[:12]}…: start a new round")
    stored, inserted = db.record_vote(new_vote(rid, rnd, c, (voter_id or "").strip() or None))
    return {"ok": True, "round_id": rid, "vote_id": stored.vote_id, "recorded": inserted, "duplicate": not inserted,
            "choice": stored.choice, "a": stored.variant_a, "b": stored.variant_b,
            "image_name": stored.image_name, "votes_total": db.count()}


def reveal_markdown(ack: dict[str, Any]) -> str:
    chose = CHOICE_LABELS.get(ack["choice"], ack["choice"])
    again = " (already recorded; counted once)" if ack.get("duplicate") else ""
    return (f"Last round: **A** was `{ack['a']}` · **B** was `{ack['b']}` — you chose **{chose}**{again}. "
            f"{ack['votes_total']} vote{'s' if ack['votes_total'] != 1 else ''} in all.")


# --- ratings ----------------------------------------------------------------------------------

def _fmt_ci(ci: tuple[float, float] | None) -> str:
    return f"{ci[0]:.0f} – {ci[1]:.0f}" if ci else "—"


def ratings_view(variant_ids: list[str] | None, set_spec: str | None = None, only_this_set: bool = False,
                 limit: float | None = None, n_boot: int = ratings.N_BOOT,
                 db_path: str | Path | None = None) -> tuple[dict, dict, str]:
    """(ratings table, win-rate matrix, a note) for the chosen variants. Ratings below the
    minimum vote count are not shown (a dash, and the rows sorted last)."""
    ids = list(dict.fromkeys(variant_ids or []))
    db = database(db_path)
    hashes = arena_images.open_set(set_spec, _limit(limit)).hashes if only_this_set else None
    votes = db.votes(ids or None, hashes)
    r = ratings.fit_ratings(votes, ids or None, n_boot=n_boot)
    shown = [row for row in r.rows if row.shown]
    hidden = [row for row in r.rows if not row.shown]
    data = []
    for k, row in enumerate(shown + hidden, start=1):
        if row.shown and row.rating is not None:
            rating, ci, rank = f"{row.rating:.0f}", _fmt_ci(row.ci95), str(k)
        else:
            rating, ci, rank = f"needs {r.min_votes} votes", "—", ""
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
    note = (f"{r.n_votes} {scope} between these variants. {r.method}; 95 % bootstrap CIs over "
            f"{r.n_boot} resamples of the votes; a rating shows once its variant has {r.min_votes} votes. "
            "Win rate counts a tie or a both-bad vote as half a win. Matrix: the row's win rate against "
            "the column's variant (votes).")
    return ({"headers": RATING_HEADERS, "data": data},
            {"headers": ["row vs column", *[f"{k}." for k in range(1, len(order) + 1)]], "data": matrix}, note)


# --- CSV ------------------------------------------------------------------------------------

def export_votes(db_path: str | Path | None = None) -> tuple[Path, int]:
    """Every vote as a CSV file in a fresh download folder: (path, count)."""
    from studio.ui import outputs

    path = outputs.new_dir("arena") / f"arena-votes-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    return path, database(db_path).export_csv(path)


def import_votes(csv_file: Any, db_path: str | Path | None = None) -> tuple[int, int]:
    """Add an exported CSV's votes; those already here (by vote id) are skipped: (added, skipped)."""
    loc = upload_path(csv_file)
    if loc is None:
        raise UploadError("no CSV uploaded")
    return database(db_path).import_csv(loc[0])
