"""Ratings from blind A/B votes: Bradley–Terry with ties (Davidson 1970), bootstrap 95 % CIs.

The model (Davidson's extension of Bradley–Terry): each variant i has a strength pi_i > 0 and
one tie parameter nu >= 0 is shared, so for a vote between i and j

    P(i preferred) = pi_i / D,   P(j preferred) = pi_j / D,   P(tie) = nu * sqrt(pi_i pi_j) / D,
    D = pi_i + pi_j + nu * sqrt(pi_i pi_j).

It is fitted by maximum likelihood (damped Newton on the concave log-likelihood in
(log pi, log nu)), on counts, vectorised so the bootstrap fits all its resamples at once.

Decisions, stated:
- **"Both bad" counts as a tie** in the fit: the voter preferred neither, which is what a tie
  says about the *relative* order. Its rate is reported on its own (`both_bad`), since it is
  also a sign that both cut-outs are poor.
- **A weak prior**: every pair of variants gets PRIOR_WINS virtual wins each way. It keeps a
  variant that has won nothing at a finite rating and pulls unconnected variants to equal;
  with a few dozen votes per pair it moves ratings by a few points only.
- **Scale**: Elo-like, rating = 1000 + 400 * log10(pi_i / geometric mean of pi) over the
  variants fitted together (those with at least one vote), so 400 points is 10:1 odds, and
  ratings are relative to that set.
- **CIs**: the votes are resampled with replacement (a multinomial over the observed
  (pair, outcome) cells), refitted N_BOOT times; the 2.5th and 97.5th percentiles of each
  variant's rating are its 95 % interval.
- **Minimum votes**: a rating is `shown` only once its variant has MIN_VOTES votes; below
  that the fronts grey it out (the figure is still computed, for whoever asks).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

MIN_VOTES = 10  # votes a variant needs before its rating is shown
PRIOR_WINS = 0.5  # virtual wins each way per pair of variants
N_BOOT = 1000
BASE = 1000.0
SCALE = 400.0 / math.log(10.0)  # Elo: 400 points per factor 10 in strength
MAX_ITER = 100  # Newton steps (it takes under ten)
TOL = 1e-9


class VoteLike(Protocol):
    variant_a: str
    variant_b: str
    choice: str


# --- counting -------------------------------------------------------------------------------

@dataclass
class Tally:
    """Votes as counts over `ids`: wins[i, j] = i preferred to j; ties and both_bad symmetric."""

    ids: list[str]
    wins: np.ndarray
    ties: np.ndarray  # tie + both_bad (as the fit counts them)
    both_bad: np.ndarray

    @property
    def n(self) -> np.ndarray:
        return self.wins + self.wins.T + self.ties

    def votes_of(self) -> np.ndarray:
        return self.n.sum(axis=1)


def tally(votes: Iterable[VoteLike], variant_ids: Sequence[str] | None = None) -> Tally:
    """Count votes between the given variants (None: every variant seen). Votes that name a
    variant outside the set are left out."""
    votes = list(votes)
    if variant_ids is None:
        seen: dict[str, None] = {}
        for v in votes:
            seen.setdefault(v.variant_a, None)
            seen.setdefault(v.variant_b, None)
        ids = sorted(seen)
    else:
        ids = list(dict.fromkeys(variant_ids))
    index = {vid: k for k, vid in enumerate(ids)}
    k = len(ids)
    wins, ties, bad = np.zeros((k, k)), np.zeros((k, k)), np.zeros((k, k))
    for v in votes:
        i, j = index.get(v.variant_a), index.get(v.variant_b)
        if i is None or j is None or i == j:
            continue
        if v.choice == "a":
            wins[i, j] += 1
        elif v.choice == "b":
            wins[j, i] += 1
        else:  # tie, both_bad
            ties[i, j] += 1
            ties[j, i] += 1
            if v.choice == "both_bad":
                bad[i, j] += 1
                bad[j, i] += 1
    return Tally(ids, wins, ties, bad)


# --- the fit --------------------------------------------------------------------------------

def _features(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j) and, per pair, the three outcomes' logits as rows over x = (theta, log nu):
    i preferred -> theta_i, j preferred -> theta_j, tie -> log nu + (theta_i + theta_j) / 2."""
    ii, jj = np.triu_indices(k, 1)
    f = np.zeros((len(ii), 3, k + 1))
    p = np.arange(len(ii))
    f[p, 0, ii] = 1.0
    f[p, 1, jj] = 1.0
    f[p, 2, ii] = f[p, 2, jj] = 0.5
    f[:, 2, k] = 1.0
    return ii, jj, f


def _loglik(x: np.ndarray, c: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihood (B,) and outcome probabilities (B, P, 3) at x (B, D); c: counts (B, P, 3)."""
    logits = np.einsum("pkd,bd->bpk", f, x)
    top = logits.max(-1, keepdims=True)
    log_d = top[..., 0] + np.log(np.exp(logits - top).sum(-1))
    ll = (c * logits).sum((-1, -2)) - (c.sum(-1) * log_d).sum(-1)
    return ll, np.exp(logits - log_d[..., None])


def fit(wins: np.ndarray, ties: np.ndarray, prior: float = PRIOR_WINS) -> tuple[np.ndarray, np.ndarray]:
    """Davidson's Bradley–Terry with ties by maximum likelihood.

    `wins` and `ties` are (..., V, V) counts (a batch of tallies fits at once). Returns
    (theta, nu): theta = log strengths, (..., V), centred to mean 0; nu the tie parameter (...).

    The log-likelihood is concave in (theta, log nu) (a sum of log-softmax terms), so damped
    Newton converges from zero in a few steps, whatever the share of ties; (sum theta)^2 / 2 is
    subtracted to pin the free shift of theta without changing the optimum."""
    wins = np.asarray(wins, dtype=np.float64)
    ties = np.asarray(ties, dtype=np.float64)
    batch_shape = wins.shape[:-2]
    k = wins.shape[-1]
    w = wins.reshape(-1, k, k)
    t = ties.reshape(-1, k, k)
    b = w.shape[0]
    ii, jj, f = _features(k)
    c = np.stack([w[:, ii, jj] + prior, w[:, jj, ii] + prior, t[:, ii, jj]], axis=-1)  # (B, P, 3)
    n = c.sum(-1)
    no_ties = c[..., 2].sum(-1) == 0  # nu = 0: log nu is fixed far below, out of the fit
    x = np.zeros((b, k + 1))
    x[no_ties, k] = -40.0
    free = np.ones((b, k + 1))
    free[no_ties, k] = 0.0
    shift = np.zeros(k + 1)
    shift[:k] = 1.0
    ll, p = _loglik(x, c, f)
    ll = ll - 0.5 * (x @ shift) ** 2
    for _ in range(MAX_ITER):
        m = np.einsum("bpk,pkd->bpd", p, f)
        g = np.einsum("bpk,pkd->bd", c - n[..., None] * p, f) - (x @ shift)[:, None] * shift
        h = (np.einsum("bp,bpk,pkd,pke->bde", n, p, f, f) - np.einsum("bp,bpd,bpe->bde", n, m, m)
             + shift[:, None] * shift[None, :])  # minus the Hessian: positive definite
        g *= free
        h = h * free[:, :, None] * free[:, None, :] + np.eye(k + 1) * (1.0 - free)[:, None, :]
        step = np.linalg.solve(h, g[..., None])[..., 0]
        scale = np.ones(b)
        for _ in range(40):  # halve the step wherever it does not raise the likelihood
            x_new = x + scale[:, None] * step
            ll_new, p_new = _loglik(x_new, c, f)
            ll_new = ll_new - 0.5 * (x_new @ shift) ** 2
            worse = ll_new < ll - 1e-12 * np.abs(ll)
            if not worse.any():
                break
            scale = np.where(worse, scale / 2, scale)
        x, ll, p = x_new, ll_new, p_new
        if float(np.max(np.abs(scale[:, None] * step))) < TOL:
            break
    theta = x[:, :k] - x[:, :k].mean(-1, keepdims=True)
    nu = np.where(no_ties, 0.0, np.exp(x[:, k]))
    return theta.reshape(*batch_shape, k), nu.reshape(batch_shape)


def to_rating(theta: np.ndarray) -> np.ndarray:
    return BASE + SCALE * (theta - theta.mean(-1, keepdims=True))


def win_probability(theta_i: float, theta_j: float, nu: float) -> tuple[float, float, float]:
    """(P(i preferred), P(tie), P(j preferred)) under the fitted model."""
    pi, pj = math.exp(theta_i), math.exp(theta_j)
    tie = nu * math.sqrt(pi * pj)
    d = pi + pj + tie
    return pi / d, tie / d, pj / d


def _bootstrap(t: Tally, n_boot: int, seed: int) -> np.ndarray:
    """Ratings of `n_boot` vote resamples, (n_boot, V)."""
    k = len(t.ids)
    cells, counts = [], []
    for i in range(k):
        for j in range(k):
            if i != j and t.wins[i, j] > 0:
                cells.append((i, j, 0))
                counts.append(t.wins[i, j])
            if i < j and t.ties[i, j] > 0:
                cells.append((i, j, 1))
                counts.append(t.ties[i, j])
    total = float(sum(counts))
    if total == 0 or n_boot <= 0:
        return np.full((max(n_boot, 0), k), BASE)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(int(total), np.array(counts) / total, size=n_boot)  # (B, cells)
    wins = np.zeros((n_boot, k, k))
    ties = np.zeros((n_boot, k, k))
    for c, (i, j, kind) in enumerate(cells):
        if kind == 0:
            wins[:, i, j] += draws[:, c]
        else:
            ties[:, i, j] += draws[:, c]
            ties[:, j, i] += draws[:, c]
    theta, _ = fit(wins, ties)
    return to_rating(theta)


# --- what the fronts show -----------------------------------------------------------------------

@dataclass
class VariantRating:
    id: str
    rating: float | None  # None: no votes at all
    ci95: tuple[float, float] | None
    votes: int
    wins: int
    losses: int
    ties: int  # includes both_bad
    both_bad: int
    shown: bool  # votes >= min_votes

    @property
    def win_rate(self) -> float | None:
        return (self.wins + 0.5 * self.ties) / self.votes if self.votes else None


@dataclass
class Ratings:
    ids: list[str]
    rows: list[VariantRating]  # best first
    nu: float
    win_rate: np.ndarray  # [i, j]: (wins + ties / 2) / votes of i against j; nan without votes
    pair_votes: np.ndarray  # [i, j]: votes between i and j
    n_votes: int
    min_votes: int = MIN_VOTES
    n_boot: int = N_BOOT
    method: str = field(default="Bradley–Terry with ties (Davidson), both-bad as tie, "
                                 f"{PRIOR_WINS:g} virtual wins each way per pair")

    def by_id(self) -> dict[str, VariantRating]:
        return {r.id: r for r in self.rows}


def fit_ratings(votes: Iterable[VoteLike], variant_ids: Sequence[str] | None = None, n_boot: int = N_BOOT,
                seed: int = 0, min_votes: int = MIN_VOTES) -> Ratings:
    """Ratings, 95 % CIs, vote counts and the pairwise win-rate matrix of `variant_ids`
    (None: every variant in the votes), from the votes between two of them."""
    t = tally(votes, variant_ids)
    k = len(t.ids)
    n = t.n
    with np.errstate(invalid="ignore", divide="ignore"):
        win_rate = np.where(n > 0, (t.wins + 0.5 * t.ties) / n, np.nan)
    if k < 2:
        rows = [VariantRating(i, None, None, 0, 0, 0, 0, 0, False) for i in t.ids]
        return Ratings(t.ids, rows, 0.0, win_rate, n, 0, min_votes, n_boot)
    per = t.votes_of()
    # only variants with votes enter the fit: one with none would sit at the anchor and move it
    voted = [i for i in range(k) if per[i] > 0]
    sub = np.ix_(voted, voted)
    fitted = Tally([t.ids[i] for i in voted], t.wins[sub], t.ties[sub], t.both_bad[sub])
    nu = 0.0
    point: dict[int, float] = {}
    ci: dict[int, tuple[float, float]] = {}
    if len(voted) >= 2:
        theta, nu_arr = fit(fitted.wins, fitted.ties)
        nu = float(nu_arr)
        rating = to_rating(theta)
        boot = _bootstrap(fitted, n_boot, seed)
        lo, hi = np.percentile(boot, [2.5, 97.5], axis=0) if len(boot) else (rating, rating)
        for pos, i in enumerate(voted):
            point[i], ci[i] = float(rating[pos]), (float(lo[pos]), float(hi[pos]))
    rows = []
    for i, vid in enumerate(t.ids):
        votes_i = int(per[i])
        rows.append(VariantRating(
            id=vid, rating=point.get(i), ci95=ci.get(i), votes=votes_i,
            wins=int(t.wins[i].sum()), losses=int(t.wins[:, i].sum()), ties=int(t.ties[i].sum()),
            both_bad=int(t.both_bad[i].sum()), shown=votes_i >= min_votes))
    rows.sort(key=lambda r: (r.rating is None, -(r.rating or 0.0), r.id))
    return Ratings(t.ids, rows, nu, win_rate, n, int(n.sum() / 2), min_votes, n_boot)


def preference(variant_ids: Sequence[str] | None = None, db_path: str | Path | None = None,
               image_hashes: Iterable[str] | None = None, min_votes: int = MIN_VOTES,
               n_boot: int = N_BOOT, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Human preference per variant, from the arena's votes: the "preference" quality axis.

    Args:
        variant_ids: the variants to rate together (None: every variant with votes). Only votes
            between two of them count, and ratings are relative to this set (mean 1000), so
            pass the variants a report compares.
        db_path: the votes database (None: `studio.settings.arena_db_path()`). A missing
            file gives an empty answer; nothing is created.
        image_hashes: only votes on these images (None: all images).
        min_votes: votes a variant needs before `shown` is True.

    Returns:
        {variant_id: {"rating": float | None, "ci95": [lo, hi] | None, "votes": int,
        "shown": bool}} for every requested variant (zero votes: rating and ci95 None).
        The rating is on an Elo-like scale (400 points = 10:1 odds); higher is preferred. Show
        it with its vote count, and hide or grey it when `shown` is False.
    """
    from studio import settings
    from studio.arena.db import ArenaDB

    path = Path(db_path) if db_path is not None else settings.arena_db_path()
    wanted = list(variant_ids) if variant_ids is not None else None
    if not path.is_file():
        return {vid: {"rating": None, "ci95": None, "votes": 0, "shown": False} for vid in wanted or []}
    votes = ArenaDB(path).votes(wanted, image_hashes)
    r = fit_ratings(votes, wanted, n_boot=n_boot, seed=seed, min_votes=min_votes)
    return {row.id: {"rating": row.rating, "ci95": list(row.ci95) if row.ci95 else None, "votes": row.votes,
                     "shown": row.shown} for row in r.rows}
