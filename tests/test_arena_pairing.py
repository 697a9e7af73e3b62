"""The next round goes where a vote teaches the most, deterministically for a seed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from studio.arena import pairing


@dataclass
class V:
    variant_a: str
    variant_b: str
    choice: str
    image_hash: str


IDS = ["m1", "m2", "m3"]
IMAGES = [f"img{k}" for k in range(6)]


def test_same_seed_same_pick_and_seeds_vary_it():
    votes = [V("m1", "m2", "a", "img0"), V("m2", "m3", "tie", "img1")]
    picks = {pairing.next_pick(IDS, IMAGES, votes, seed=s) for s in range(40)}
    assert pairing.next_pick(IDS, IMAGES, votes, seed=7) == pairing.next_pick(IDS, IMAGES, votes, seed=7)
    assert len(picks) > 1


def test_warm_up_first():
    votes = [V("m1", "m2", "a", "img0")] * pairing.WARMUP_VOTES + [V("m1", "m3", "a", "img0")]
    for s in range(10):
        p = pairing.next_pick(IDS, IMAGES, votes, seed=s)
        assert {p.variant_a, p.variant_b} == {"m2", "m3"}  # no votes yet: before m1-m3 (one vote)


def test_prefers_the_most_uncertain_pair():
    # m1 beats m3 every time; m1 vs m2 and m2 vs m3 are even, with as many votes
    votes = ([V("m1", "m3", "a", "img0")] * 12 + [V("m1", "m2", "a", "img0"), V("m2", "m1", "a", "img0")] * 6
             + [V("m2", "m3", "a", "img0"), V("m3", "m2", "a", "img0")] * 6)
    scores = pairing.pair_scores(IDS, votes)
    assert scores[("m1", "m3")] < min(scores[("m1", "m2")], scores[("m2", "m3")])
    chosen = Counter(frozenset((p.variant_a, p.variant_b))
                     for p in (pairing.next_pick(IDS, IMAGES, votes, seed=s) for s in range(30)))
    assert frozenset(("m1", "m3")) not in chosen


def test_a_pair_with_fewer_votes_goes_first_when_equally_uncertain():
    votes = [V("m1", "m2", "tie", "img0")] * 5 + [V("m2", "m3", "tie", "img0")] * 5
    for s in range(10):
        p = pairing.next_pick(IDS, IMAGES, votes, seed=s)
        assert {p.variant_a, p.variant_b} == {"m1", "m3"}


def test_rounds_in_flight_count_as_votes():
    pending = [V("m1", "m2", "", "img0")] * 3 + [V("m2", "m3", "", "img0")] * 3
    p = pairing.next_pick(IDS, IMAGES, [], pending, seed=0)
    assert {p.variant_a, p.variant_b} == {"m1", "m3"}


def test_the_image_with_fewest_votes_for_the_pair():
    ids = ["m1", "m2"]
    votes = [V("m1", "m2", "a", h) for h in IMAGES[:5]] + [V("m2", "m1", "tie", "img0")]
    for s in range(10):
        assert pairing.next_pick(ids, IMAGES, votes, seed=s).image_hash == "img5"


def test_every_image_and_side_get_used_over_rounds():
    ids = ["m1", "m2"]
    votes: list[V] = []
    left = Counter()
    for s in range(60):
        p = pairing.next_pick(ids, IMAGES, votes, seed=s)
        left[p.variant_a] += 1
        votes.append(V(p.variant_a, p.variant_b, "tie", p.image_hash))
    per_image = Counter(v.image_hash for v in votes)
    assert set(per_image.values()) == {10}  # 60 votes over 6 images: 10 each, none skipped
    assert 15 < left["m1"] < 45  # sides drawn, not fixed


def test_not_uniform_a_simulated_arena_spends_votes_on_close_pairs():
    # strengths: m1 >> m2 ~ m3; votes follow the model's preference, no noise
    strength = {"m1": 3.0, "m2": 0.0, "m3": 0.1}
    votes: list[V] = []
    for s in range(150):
        p = pairing.next_pick(IDS, IMAGES, votes, seed=s)
        a, b = p.variant_a, p.variant_b
        choice = "a" if strength[a] > strength[b] else "b"
        if {a, b} == {"m2", "m3"}:
            choice = ("a", "b")[s % 2]  # too close to call
        votes.append(V(a, b, choice, p.image_hash))
    n = Counter(frozenset((v.variant_a, v.variant_b)) for v in votes)
    close = n[frozenset(("m2", "m3"))]
    assert close > n[frozenset(("m1", "m2"))] and close > n[frozenset(("m1", "m3"))]
    assert min(n.values()) >= pairing.WARMUP_VOTES  # nobody starved
