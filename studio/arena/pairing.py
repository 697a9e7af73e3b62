"""Which pair of variants, on which image, to show next: where one more vote teaches the most.

The rule (deterministic for a given seed):
0. Warm-up: while a pair has fewer than WARMUP_VOTES votes (rounds in flight included), the
   pair with the fewest goes first: a fit on a handful of votes is not worth following yet.
1. Fit the ratings to the votes so far (`ratings.fit`, no bootstrap: a point estimate).
2. Score each pair by how uncertain its outcome is under that fit, 4 p (1 - p) with
   p = pi_i / (pi_i + pi_j) (1 for an even match, near 0 for a foregone one), divided by
   sqrt(1 + n) where n counts its votes plus rounds in flight (shown, not yet voted). Close
   pairs get most votes, and no pair is starved: its score grows back as the others fill.
3. On that pair, take the image with the fewest votes (and rounds in flight) for the pair, then
   the fewest for any pair, so every image is judged before any is judged twice.
4. Ties are broken by a seeded shuffle, and the sides (which variant is A, on the left) by a
   seeded coin, so the voter cannot learn a position.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from studio.arena import ratings

WARMUP_VOTES = 3  # votes every pair gets before the uncertainty rule takes over


class Shown(Protocol):
    """A vote or a round: two variants on one image."""

    variant_a: str
    variant_b: str
    image_hash: str


@dataclass(frozen=True)
class Pick:
    variant_a: str  # shown left, as "A"
    variant_b: str
    image_hash: str
    score: float  # the pair's uncertainty / sqrt(1 + votes)


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def pair_scores(variant_ids: Sequence[str], votes: Iterable[ratings.VoteLike],
                pending: Iterable[Shown] = ()) -> dict[tuple[str, str], float]:
    """{(id, id) sorted: score} for every pair of `variant_ids` (rules 0 and 2 above: a pair
    still in warm-up scores above 1, fewer votes higher)."""
    ids = list(dict.fromkeys(variant_ids))
    votes = list(votes)
    t = ratings.tally(votes, ids)
    theta, _ = ratings.fit(t.wins, t.ties)
    counts = Counter(_pair(v.variant_a, v.variant_b) for v in [*votes, *pending])
    index = {vid: k for k, vid in enumerate(ids)}
    out = {}
    for a, b in itertools.combinations(sorted(ids), 2):
        p = 1.0 / (1.0 + np.exp(theta[index[b]] - theta[index[a]]))
        n = counts[(a, b)]
        out[(a, b)] = float(1.0 + WARMUP_VOTES - n) if n < WARMUP_VOTES else \
            float(4.0 * p * (1.0 - p) / np.sqrt(1.0 + n))
    return out


def next_pick(variant_ids: Sequence[str], image_hashes: Sequence[str], votes: Iterable[Shown],
              pending: Iterable[Shown] = (), seed: int = 0) -> Pick:
    """The next round: two of `variant_ids` (sides drawn) on one of `image_hashes`.

    `votes` are past votes (anything with variant_a, variant_b, image_hash and choice);
    `pending` are rounds shown and not yet voted (counted as votes, without an outcome)."""
    ids = sorted(dict.fromkeys(variant_ids))
    images = list(dict.fromkeys(image_hashes))
    if len(ids) < 2:
        raise ValueError("the arena needs at least two variants")
    if not images:
        raise ValueError("the arena needs at least one image")
    votes, pending = list(votes), list(pending)
    rng = np.random.default_rng(seed)
    scores = pair_scores(ids, votes, pending)
    pairs = list(scores)
    order = rng.permutation(len(pairs))
    best = max(order, key=lambda k: scores[pairs[k]])  # max keeps the first of equals: shuffled
    a, b = pairs[best]
    on_pair: Counter[str] = Counter()
    on_image: Counter[str] = Counter()
    for v in [*votes, *pending]:
        on_image[v.image_hash] += 1
        if _pair(v.variant_a, v.variant_b) == (a, b):
            on_pair[v.image_hash] += 1
    shuffled = [images[k] for k in rng.permutation(len(images))]
    image = min(shuffled, key=lambda h: (on_pair[h], on_image[h]))
    if rng.random() < 0.5:
        a, b = b, a
    return Pick(a, b, image, scores[pairs[best]])
