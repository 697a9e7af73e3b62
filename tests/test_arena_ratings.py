"""Bradley–Terry with ties on simulated votes: it recovers a known order, its CIs shrink with
votes, "both bad" counts as a tie, and `preference` reads the database."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass

import numpy as np
import pytest

from studio.arena import ratings
from studio.arena.db import ArenaDB

IDS = ["best", "good", "fair", "poor"]
TRUE_THETA = np.array([1.2, 0.5, 0.0, -1.0])
TRUE_NU = 0.5


@dataclass
class V:
    variant_a: str
    variant_b: str
    choice: str
    image_hash: str = "0" * 64  # a sha256 as the arena stores it


def simulate(n: int, seed: int = 0, both_bad_share: float = 0.0) -> list[V]:
    """Votes drawn from Davidson's model with TRUE_THETA and TRUE_NU, pairs uniform."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        i, j = rng.choice(len(IDS), 2, replace=False)
        p = ratings.win_probability(TRUE_THETA[i], TRUE_THETA[j], TRUE_NU)
        outcome = rng.choice(3, p=p)
        choice = ("a", "tie", "b")[outcome]
        if choice == "tie" and rng.random() < both_bad_share:
            choice = "both_bad"
        out.append(V(IDS[i], IDS[j], choice))
    return out


def test_fit_recovers_a_known_order_and_scale():
    r = ratings.fit_ratings(simulate(1500, seed=1), IDS, n_boot=200)
    assert [row.id for row in r.rows] == IDS
    got = {row.id: row.rating for row in r.rows}
    want = ratings.to_rating(TRUE_THETA)
    for vid, w in zip(IDS, want, strict=True):
        assert abs(got[vid] - w) < 40, (vid, got[vid], w)  # 1500 votes: within ~2 standard errors
        row = r.by_id()[vid]
        assert row.ci95[0] < row.rating < row.ci95[1]
    assert abs(r.nu - TRUE_NU) < 0.15


def test_cis_shrink_with_votes():
    def widths(n: int) -> np.ndarray:
        r = ratings.fit_ratings(simulate(n, seed=2), IDS, n_boot=300)
        return np.array([row.ci95[1] - row.ci95[0] for row in r.rows])

    few, many = widths(60), widths(960)
    assert np.all(many < few)
    # sixteen times the votes: about a quarter of the width
    assert 0.15 < float(np.median(many / few)) < 0.4


def test_both_bad_counts_as_a_tie_and_is_reported():
    votes = simulate(400, seed=3, both_bad_share=0.5)
    as_ties = [V(v.variant_a, v.variant_b, "tie" if v.choice == "both_bad" else v.choice) for v in votes]
    r1 = ratings.fit_ratings(votes, IDS, n_boot=50)
    r2 = ratings.fit_ratings(as_ties, IDS, n_boot=50)
    for a, b in zip(r1.rows, r2.rows, strict=True):
        assert a.id == b.id and a.rating == pytest.approx(b.rating)
    assert sum(row.both_bad for row in r1.rows) == 2 * sum(v.choice == "both_bad" for v in votes)
    assert sum(row.both_bad for row in r2.rows) == 0


def test_win_rate_matrix_counts_ties_as_half():
    votes = [V("x", "y", "a")] * 3 + [V("y", "x", "a")] + [V("x", "y", "tie")] * 2
    r = ratings.fit_ratings(votes, ["x", "y", "z"], n_boot=20)
    i, j, k = 0, 1, 2
    assert r.win_rate[i, j] == pytest.approx((3 + 1) / 6)
    assert r.win_rate[j, i] == pytest.approx((1 + 1) / 6)
    assert math.isnan(r.win_rate[i, k])
    assert r.pair_votes[i, j] == 6
    z = r.by_id()["z"]
    assert z.votes == 0 and z.rating is None and not z.shown


def test_a_rating_is_shown_only_past_the_minimum_votes():
    votes = [V("x", "y", "a")] * (ratings.MIN_VOTES - 1)
    r = ratings.fit_ratings(votes, n_boot=20)
    assert all(not row.shown for row in r.rows)
    r = ratings.fit_ratings([*votes, V("y", "x", "b")], n_boot=20)
    assert all(row.shown for row in r.rows)
    assert r.rows[0].id == "x"


def test_a_variant_that_never_wins_stays_finite():
    r = ratings.fit_ratings([V("x", "y", "a")] * 50, n_boot=50)
    assert all(math.isfinite(row.rating) for row in r.rows)
    assert r.rows[0].id == "x" and r.rows[0].rating - r.rows[1].rating > 400


def test_batched_fit_equals_single_fits():
    t = ratings.tally(simulate(300, seed=4), IDS)
    t2 = ratings.tally(simulate(300, seed=5), IDS)
    theta, nu = ratings.fit(np.stack([t.wins, t2.wins]), np.stack([t.ties, t2.ties]))
    for k, one in enumerate((t, t2)):
        th, n = ratings.fit(one.wins, one.ties)
        np.testing.assert_allclose(theta[k], th, atol=1e-7)
        assert nu[k] == pytest.approx(float(n), abs=1e-7)


def test_preference_reads_the_database(tmp_path):
    path = tmp_path / "votes.sqlite"
    assert ratings.preference(["x"], db_path=path) == {"x": {"rating": None, "ci95": None, "votes": 0,
                                                            "shown": False}}
    assert not path.exists()  # asking creates nothing
    csv_path = tmp_path / "votes.csv"  # one import: one transaction instead of 200 synced commits
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["vote_id", "image_hash", "variant_a", "variant_b", "choice", "created_at", "voter_id"])
        w.writerows([f"v{k}", v.image_hash, v.variant_a, v.variant_b, v.choice, k, "me"]
                    for k, v in enumerate(simulate(200, seed=6)))
    assert ArenaDB(path).import_csv(csv_path) == (200, 0)
    pref = ratings.preference(db_path=path, n_boot=100)
    assert set(pref) == set(IDS)
    assert max(pref, key=lambda vid: pref[vid]["rating"]) == "best"
    for p in pref.values():
        assert set(p) == {"rating", "ci95", "votes", "shown"}
        assert p["ci95"][0] <= p["rating"] <= p["ci95"][1]
        assert p["shown"] == (p["votes"] >= ratings.MIN_VOTES)
    two = ratings.preference(["best", "poor"], db_path=path, n_boot=100)
    assert set(two) == {"best", "poor"}
    assert two["best"]["votes"] < pref["best"]["votes"]  # only votes between the two count
    assert ratings.preference(db_path=path, image_hashes=["other"]) == {}
