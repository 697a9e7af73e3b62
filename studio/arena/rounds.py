"""The arena's game: rounds, votes, and the standings, as plain functions any front may call.

A round: `next_round` picks (pair, image) with `studio.arena.pairing`, makes the two cut-outs
(`studio.engine.cutout`: from the benchmark's prediction cache, else computed once through the
pooled runner and written there), stores the round (round id -> image and variants, sides
included) and returns the images with the round id only. `vote` takes the round id back: the
server alone knows which variant was where, and the round id is the vote id, so a retried submit
is recorded once. Nothing is kept in the process between the two calls, so any number of
browsers or scripts vote at once.

What the arena accepts (it counts only votes it can vouch for):
- every string a client sends is bounded (`settings.ARENA_MAX_*`), with a clear error;
- image sets go through `images.check_spec`, the one resolver (the hosted-app rule included);
- on a hosted app (`settings.on_spaces()`) the candidates are the server's
  (`settings.arena_variants()`, else every installed, trained default variant), never the
  client's, and importing votes is off;
- a round expires `settings.arena_round_ttl_s()` after it was drawn, and a voter holds at most
  `settings.arena_max_open_rounds()` open rounds: past that, drawing shows their oldest open
  round again instead of a new one;
- an imported vote must name zoo variants and a sha256 image hash; it is marked imported, and
  the standings say how many of the counted votes were imported.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from studio import engine, inventory, settings, visuals
from studio.arena import images as arena_images
from studio.arena import pairing, ratings
from studio.arena.db import CHOICES, ArenaDB, Round, Vote, check_text, new_vote
from studio.data import Sample
from studio.errors import StudioError
from studio.zoo import Variant, load_zoo

DEFAULT_BACKGROUND = "checkerboard"
MAX_CHOICE_CHARS = 32  # "A better", "both bad" ... with room for spelling


class ArenaError(StudioError):
    """Something the arena refuses; the message says what to do."""


# A cut-out for the arena: (variant, sample, its RGB pixels) -> alpha. The default runs on the CPU
# through the engine; the app passes one that runs on its device, inside its GPU-aware function.
Cutout = Callable[[Variant, Sample, np.ndarray], np.ndarray]


def engine_cutout(variant: Variant, sample: Sample, image: np.ndarray) -> np.ndarray:
    return engine.cutout(variant, image, sample.content_hash)[0]


def _text(what: str, value: object, limit: int, required: bool = False) -> str | None:
    return check_text(what, value, limit, required=required, error=ArenaError)


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


# --- candidates -------------------------------------------------------------------------------

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


def server_candidates() -> list[str]:
    """The hosted arena's candidates: STUDIO_ARENA_VARIANTS, else the installed, trained defaults."""
    return settings.arena_variants() or default_variant_ids()


def parse_variant_ids(variant_ids: list[str] | str | None) -> list[str]:
    """A client's variant list (a list, or "a, b" text), deduplicated and bounded."""
    if isinstance(variant_ids, str):
        _text("variants", variant_ids, settings.ARENA_MAX_CANDIDATES * (settings.ARENA_MAX_ID + 1))
        variant_ids = [p for p in variant_ids.replace(",", " ").split() if p]
    if variant_ids is not None and not isinstance(variant_ids, list | tuple):
        raise ArenaError(f"variants: expected a list of ids, got {type(variant_ids).__name__}")
    items = list(variant_ids or [])
    if len(items) > settings.ARENA_MAX_CANDIDATES:
        raise ArenaError(f"variants: {len(items)} named, at most {settings.ARENA_MAX_CANDIDATES}")
    ids = [_text("variant id", v, settings.ARENA_MAX_ID, required=True) for v in items]
    return list(dict.fromkeys(i for i in ids if i))


def candidates(variant_ids: list[str] | str | None) -> list[str]:
    """The variants a round is drawn from: the client's choice locally; on a hosted app the
    server's set, whatever the client sent (a client that chooses the candidates can stuff the
    ratings by asking only for the pair it wants)."""
    ids = parse_variant_ids(variant_ids)  # bounded even where it is then ignored
    return server_candidates() if settings.on_spaces() else ids


def check_variants(variant_ids: list[str] | str | None) -> list[Variant]:
    """The chosen variants, or ArenaError: fewer than two, unknown, not installed, or untrained
    (random weights cut out noise: votes on them would mean nothing)."""
    ids = parse_variant_ids(variant_ids)
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


def parse_limit(limit: float | str | None) -> int | None:
    """The images box: a positive count, or None for all."""
    try:
        n = int(float(limit or 0))
    except (TypeError, ValueError, OverflowError):
        raise ArenaError(f"images: {str(limit)[:20]!r} is not a number") from None
    return n if n > 0 else None


# --- rounds and votes -------------------------------------------------------------------------

def new_voter_id() -> str:
    return "anon-" + secrets.token_hex(6)


def _show(rnd: Round, iset: arena_images.ImageSet, by_id: dict[str, Variant], cutout: Cutout,
          reopened: bool, open_rounds: int) -> dict[str, Any]:
    sample = iset.sample(rnd.image_hash)
    rgb = sample.image()
    alpha_a = cutout(by_id[rnd.variant_a], sample, rgb)
    alpha_b = cutout(by_id[rnd.variant_b], sample, rgb)
    h, w = alpha_a.shape
    bg = rnd.background or DEFAULT_BACKGROUND
    backdrop = arena_images.background(bg, h, w)
    return {
        "round": {"round_id": rnd.round_id, "image_name": sample.id, "image_hash": rnd.image_hash,
                  "image_set": iset.name, "n_images": len(iset.samples), "background": bg,
                  "reopened": reopened, "open_rounds": open_rounds},
        "views": [visuals.composite(rgb, alpha_a, backdrop), visuals.composite(rgb, alpha_b, backdrop)],
        "cutouts": [visuals.cutout_rgba(rgb, alpha_a), visuals.cutout_rgba(rgb, alpha_b)],
        "voter_id": rnd.voter_id,
    }


def _reopen(rnd: Round, iset: arena_images.ImageSet, cutout: Cutout, open_rounds: int) -> dict[str, Any]:
    """A voter at the open-round limit gets their oldest open round again, not a new one."""
    if rnd.image_hash not in iset.by_hash:  # drawn from another set (or subset) than asked now
        iset = arena_images.open_set(rnd.set_spec)
    by_id = {v.id: v for v in check_variants([rnd.variant_a, rnd.variant_b])}
    return _show(rnd, iset, by_id, cutout, reopened=True, open_rounds=open_rounds)


def next_round(set_spec: str | None, variant_ids: list[str] | str | None, background: str | None = None,
               voter_id: str | None = None, limit: float | None = None, seed: int | None = None,
               db_path: str | Path | None = None, cutout: Cutout | None = None) -> dict[str, Any]:
    """Pick and store the next round. Returns {"round": what a client may see (round id,
    image name and hash, set, background, whether it was shown before), "views": [A, B]
    composites on the background, "cutouts": [A, B] RGBA cut-outs, "voter_id"}; the variants
    stay on the server."""
    cutout = cutout or engine_cutout
    voter = _text("voter id", voter_id, settings.ARENA_MAX_VOTER_ID) or new_voter_id()
    bg = _text("background", background, settings.ARENA_MAX_ID) or DEFAULT_BACKGROUND
    if bg not in arena_images.BACKGROUNDS:
        raise ArenaError(f"background {bg!r} is not one of {', '.join(arena_images.BACKGROUNDS)}")
    variants = check_variants(candidates(variant_ids))
    if set_spec is not None and not isinstance(set_spec, str):
        raise ArenaError(f"image set: expected text, got {type(set_spec).__name__}")
    iset = arena_images.open_set(set_spec, parse_limit(limit))  # the one resolver: images.check_spec
    db = database(db_path)
    now = time.time()
    ttl = settings.arena_round_ttl_s()
    db.purge_rounds(older_than=now - 2 * ttl)  # past expiry; kept a while to say "expired"
    open_now = db.open_rounds(voter, ttl, now)
    if len(open_now) >= settings.arena_max_open_rounds():
        return _reopen(open_now[0], iset, cutout, len(open_now))
    ids = [v.id for v in variants]
    votes = db.votes(ids)
    pending = [r for r in db.pending() if r.variant_a in ids and r.variant_b in ids]
    pick = pairing.next_pick(ids, iset.hashes, votes, pending,
                             seed=secrets.randbits(32) if seed is None else seed)
    sample = iset.sample(pick.image_hash)
    rnd = Round(round_id=uuid.uuid4().hex, image_hash=pick.image_hash, variant_a=pick.variant_a,
                variant_b=pick.variant_b, voter_id=voter, created_at=now, image_name=sample.id,
                set_spec=iset.spec, background=bg)
    shown = _show(rnd, iset, {v.id: v for v in variants}, cutout, reopened=False, open_rounds=len(open_now) + 1)
    db.add_round(rnd)  # stored only once its cut-outs exist: a failed draw leaves no open round
    return shown


def parse_choice(choice: str | None) -> str:
    """"a", "A better", "B", "tie", "both bad" ... -> a | b | tie | both_bad."""
    raw = _text("choice", choice, MAX_CHOICE_CHARS) or ""
    c = raw.lower().replace(" ", "_").replace("-", "_")
    aliases = {"a_better": "a", "left": "a", "b_better": "b", "right": "b", "bothbad": "both_bad"}
    c = aliases.get(c, c)
    if c not in CHOICES:
        raise ArenaError(f"choice {raw!r}: one of {', '.join(CHOICES)}")
    return c


def _ack(stored: Vote, inserted: bool, db: ArenaDB) -> dict[str, Any]:
    return {"ok": True, "round_id": stored.vote_id, "vote_id": stored.vote_id, "recorded": inserted,
            "duplicate": not inserted, "choice": stored.choice, "a": stored.variant_a, "b": stored.variant_b,
            "image_name": stored.image_name, "votes_total": db.count()}


def vote(round_id: str | None, choice: str | None, voter_id: str | None = None,
         db_path: str | Path | None = None) -> dict[str, Any]:
    """Record the vote on a round (committed before this returns) and reveal the names.

    Idempotent: the round id is the vote id, so sending the same vote again records nothing
    and returns the vote first stored (`"duplicate": true`). A round not voted on within
    `settings.arena_round_ttl_s()` is refused as expired."""
    rid = _text("round id", round_id, settings.ARENA_MAX_ID)
    if not rid:
        raise ArenaError("no round to vote on: start the arena first")
    c = parse_choice(choice)
    voter = _text("voter id", voter_id, settings.ARENA_MAX_VOTER_ID)
    db = database(db_path)
    rnd = db.get_round(rid)
    if rnd is None:
        raise ArenaError(f"unknown round {rid[:12]}…: start a new round")
    first = db.get_vote(rid)
    if first is not None:  # a retry: answered even after expiry
        return _ack(first, False, db)
    ttl = settings.arena_round_ttl_s()
    age = time.time() - rnd.created_at
    if age > ttl:
        raise ArenaError(f"round {rid[:8]} expired: it was drawn {age / 60:.0f} min ago, and a round takes "
                         f"votes for {ttl / 60:.0f} min. Start a new round")
    stored, inserted = db.record_vote(new_vote(rid, rnd, c, voter))
    return _ack(stored, inserted, db)


# --- standings --------------------------------------------------------------------------------

@dataclass
class Standings:
    ratings: ratings.Ratings
    imported: int  # of the votes the fit counted, how many were imported from a CSV


def standings(variant_ids: list[str] | None, image_hashes: list[str] | None = None,
              n_boot: int = ratings.N_BOOT, db_path: str | Path | None = None) -> Standings:
    """The ratings of the chosen variants (None or empty: every variant voted on) from the votes
    between two of them (on `image_hashes` when given), and how many of those were imported."""
    ids = parse_variant_ids(variant_ids) or None
    votes = database(db_path).votes(ids, image_hashes)
    fit = ratings.fit_ratings(votes, ids, n_boot=n_boot)
    counted = set(fit.ids)
    imported = sum(v.imported for v in votes if v.variant_a in counted and v.variant_b in counted)
    return Standings(fit, imported)


# --- CSV ------------------------------------------------------------------------------------

def export_votes(path: str | Path, db_path: str | Path | None = None) -> int:
    """Every vote as CSV at `path`; returns the count."""
    return database(db_path).export_csv(path)


def check_imported(vote: Vote) -> None:
    """What an imported vote must name beyond its format: variants of this zoo, and a
    background the arena shows."""
    zoo = load_zoo()
    for vid in (vote.variant_a, vote.variant_b):
        if vid not in zoo.variants:
            raise ArenaError(f"variant {vid[:40]!r} is not in the zoo")
    if vote.background is not None and vote.background not in arena_images.BACKGROUNDS:
        raise ArenaError(f"background {vote.background[:40]!r} is not one of {', '.join(arena_images.BACKGROUNDS)}")


def import_votes(path: str | Path, db_path: str | Path | None = None) -> tuple[int, int]:
    """Add an exported CSV's votes, every row checked (`check_imported`) and marked imported;
    those already here (by vote id) are skipped: (added, skipped). Off on a hosted app: its
    ratings count only votes cast on it."""
    if settings.on_spaces():
        raise ArenaError("importing votes is off on the hosted app: its ratings count only votes cast on it")
    return database(db_path).import_csv(path, check=check_imported)
