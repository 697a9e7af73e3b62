"""Interleaved timing: the one loop that times candidates against each other on a noisy machine.

    res = interleave({"fp32": run_a, "int8": run_b}, images, rounds=3, seed=0)
    res.samples("int8")                 # seconds, one per round
    res.ratios("int8", "fp32")          # per-round t_fp32 / t_int8: > 1 means int8 is faster
    speed_ratio(res.ratios("int8", "fp32"))  # {"median", "ci95", "n"}: the paired speed-up

A round is one item (an image, a feed) with every candidate run once on it, in an order shuffled
by a seeded RNG; the rounds are `rounds` passes over the items. Load from other programs then
falls on every candidate alike, and a ratio taken within a round cancels it: variants timed one
after another compare two different machines. The 1-minute load average is read at the start of
every round, so a report can say how busy the machine was.

Used by the benchmark suite (`studio.bench.executor.time_candidates`), the quantisation search
(`studio.quant.search`) and the measurement scripts in `eval/` (quant/latency, quant/runtime_settings,
quant/build_table, bench_metrics). It sits at the bottom of the package (numpy and the standard
library only) because both `studio.quant` and `studio.bench` use it and bench already reads quant.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

N_BOOT = 2000
BUSY_SENTENCE = ("timed on a busy machine (load {load:.1f} on {cores} cores): ratios are interleaved and hold; "
                 "absolute milliseconds are inflated.")


@dataclass
class Round:
    """One item with every candidate run once on it."""

    index: int
    item: str  # the item's label (an image id)
    order: list[str]  # the shuffled order the candidates ran in
    load: float | None  # 1-minute load average at the start of the round
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each candidate's call
    parts: dict[str, dict[str, float]] = field(default_factory=dict)  # what a call returned, when a mapping

    def value(self, cid: str, key: str | None = None) -> float | None:
        """The candidate's sample: wall seconds (key None), the sum of the returned parts ("total"),
        or one returned part (e.g. "inference")."""
        if cid not in self.seconds:
            return None
        if key is None:
            return self.seconds[cid]
        parts = self.parts.get(cid) or {}
        if key == "total":
            return float(sum(parts.values())) if parts else self.seconds[cid]
        return parts.get(key)


@dataclass
class Interleaved:
    """What `interleave` measured: every round, in the order run."""

    rounds: list[Round]
    seed: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # candidate -> the error that dropped it

    @property
    def ids(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.rounds:
            seen.update(dict.fromkeys(r.order))
        return list(seen)

    def samples(self, cid: str, key: str | None = None) -> list[float]:
        """The candidate's samples in round order (see `Round.value` for `key`)."""
        out = [r.value(cid, key) for r in self.rounds]
        return [x for x in out if x is not None]

    def ratios(self, cid: str, against: str, key: str | None = None) -> list[float]:
        """Per-round t_against / t_cid over the rounds both ran in: > 1 where `cid` was faster."""
        out = []
        for r in self.rounds:
            a, b = r.value(cid, key), r.value(against, key)
            if a is not None and b is not None and a > 0:
                out.append(b / a)
        return out

    @property
    def loads(self) -> list[float]:
        return [r.load for r in self.rounds if r.load is not None]

    @property
    def load_max(self) -> float | None:
        return max(self.loads) if self.loads else None


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not on this platform
        return None


def interleave(candidates: Mapping[str, Callable[[Any], Any]], items: Sequence[Any], rounds: int = 1,
               seed: int = 0, labels: Sequence[str] | None = None, gap: float = 0.0, keep_going: bool = False,
               on_round: Callable[[Round, int], None] | None = None,
               clock: Callable[[], float] = time.perf_counter) -> Interleaved:
    """Time every candidate once per round on the round's item, in a seeded shuffled order.

    Args:
        candidates: id -> callable(item). Its wall time is the sample; when it returns a mapping
            of floats (e.g. a Matte's `timings`), that is kept too (`Round.parts`).
        items: what each round runs on; there are `rounds` x len(items) rounds.
        seed: the shuffles' seed (the same seed gives the same schedule).
        labels: a name per item for the record (default: its index).
        gap: seconds to sleep before each call, so a runtime's spinning threads from the last call
            go quiet before the next is timed.
        keep_going: a candidate that raises is recorded in `errors` and left out of later rounds
            (else the error propagates).
        on_round: called after each round with (round, total rounds), e.g. for a progress bar.
    """
    rng = random.Random(seed)
    ids = list(candidates)
    names = list(labels) if labels is not None else [str(i) for i in range(len(items))]
    total = max(0, rounds) * len(items)
    out = Interleaved([], seed)
    k = 0
    for _ in range(max(0, rounds)):
        for name, item in zip(names, items, strict=True):
            order = [c for c in ids if c not in out.errors]
            rng.shuffle(order)
            rnd = Round(k, name, order, load_average())
            for cid in order:
                if gap:
                    time.sleep(gap)
                t0 = clock()
                try:
                    got = candidates[cid](item)
                except Exception as exc:
                    if not keep_going:
                        raise
                    out.errors[cid] = f"{type(exc).__name__}: {exc}"
                    continue
                rnd.seconds[cid] = clock() - t0
                if isinstance(got, Mapping):
                    rnd.parts[cid] = {str(p): float(x) for p, x in got.items()}
            out.rounds.append(rnd)
            k += 1
            if on_round is not None:
                on_round(rnd, total)
    return out


# --- what the rounds say --------------------------------------------------------------------------

def speed_ratio(ratios: Sequence[float], n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any] | None:
    """The paired speed-up: median of the per-round ratios, with a bootstrap 95 % CI (rounds
    resampled). None without a ratio."""
    x = np.asarray([r for r in ratios if r is not None and math.isfinite(r) and r > 0], float)
    if x.size == 0:
        return None
    med = float(np.median(x))
    if x.size == 1 or n_boot <= 0:
        return {"median": med, "ci95": [med, med], "n": int(x.size)}
    rng = np.random.default_rng(seed)
    boot = np.median(x[rng.integers(0, x.size, size=(n_boot, x.size))], axis=1)
    lo, hi = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    return {"median": med, "ci95": [lo, hi], "n": int(x.size)}


def verdict(ratio: dict[str, Any] | None) -> int | None:
    """+1: faster (the CI lies wholly above 1); -1: slower (wholly below); 0: equally fast
    (the CI holds 1); None: no paired timing."""
    if not ratio:
        return None
    lo, hi = ratio["ci95"]
    if lo > 1.0:
        return 1
    if hi < 1.0:
        return -1
    return 0


def busy_sentence(load_max: float | None, cores: int | None) -> str | None:
    """The busy-machine sentence, when the load went above the core count during timing."""
    if load_max is None or not cores or load_max <= cores:
        return None
    return BUSY_SENTENCE.format(load=load_max, cores=cores)


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float] | None:
    """p50/p90/p95/p99/mean in milliseconds."""
    if not seconds:
        return None
    ms = np.asarray(seconds, float) * 1e3
    p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p95_ms": float(p95), "p99_ms": float(p99),
            "mean_ms": float(ms.mean())}


# --- the record a summary keeps (so a recommendation can be re-asked without rerunning) -------------

def to_record(res: Interleaved, key: str | None = None, group: int = 0) -> list[dict[str, Any]]:
    """Each round as JSON: {group, image, order, load, ms: {id: ms}} (the `key` sample)."""
    out = []
    for r in res.rounds:
        ms = {c: round(v * 1e3, 3) for c in r.order if (v := r.value(c, key)) is not None}
        out.append({"group": group, "image": r.item, "order": list(r.order), "load": r.load, "ms": ms})
    return out


def record_ratios(rounds: Sequence[Mapping[str, Any]], cid: str, against: str) -> list[float]:
    """Per-round t_against / t_cid from a summary's rounds record."""
    out = []
    for r in rounds:
        ms = r.get("ms") or {}
        a, b = ms.get(cid), ms.get(against)
        if a and b:
            out.append(b / a)
    return out


def record_speed(record: Mapping[str, Any] | None, cid: str, against: str, n_boot: int = N_BOOT,
                 seed: int = 0) -> dict[str, Any] | None:
    """Speed-up of `cid` over `against` from a summary's `run.timing` record: paired by round
    where the two ran in the same rounds; else through the anchor both were timed beside
    (groups that share one anchor: the ratio of the two anchor ratios, each bootstrapped)."""
    if not record or cid == against:
        return None
    rounds = record.get("samples") or []
    direct = record_ratios(rounds, cid, against)
    if direct:
        return speed_ratio(direct, n_boot, seed)
    anchor = record.get("anchor")
    if not anchor or anchor in (cid, against):
        return None
    a = np.asarray(record_ratios(rounds, cid, anchor), float)  # t_anchor / t_cid
    b = np.asarray(record_ratios(rounds, against, anchor), float)  # t_anchor / t_against
    if a.size == 0 or b.size == 0:
        return None
    rng = np.random.default_rng(seed)
    boot = (np.median(a[rng.integers(0, a.size, size=(n_boot, a.size))], axis=1)
            / np.median(b[rng.integers(0, b.size, size=(n_boot, b.size))], axis=1))
    lo, hi = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    return {"median": float(np.median(a) / np.median(b)), "ci95": [lo, hi], "n": int(min(a.size, b.size)),
            "via": anchor}


def plan_groups(anchor: str, ids: Sequence[str], memory_mb: Mapping[str, float | None],
                budget_mb: float | None) -> list[list[str]]:
    """Which candidates are loaded (and timed) together: all of them when their memory fits the
    budget, else groups that each hold the anchor plus as many others as fit beside it (first
    fit, largest first), so every ratio is still paired with the anchor's run of the same round.
    A candidate without a memory figure counts as the largest known one."""
    others = [i for i in ids if i != anchor]
    known = [float(m) for m in memory_mb.values() if m]
    default = max(known) if known else 0.0

    def mem(i: str) -> float:
        m = memory_mb.get(i)
        return float(m) if m else default

    if budget_mb is None or mem(anchor) + sum(mem(i) for i in others) <= budget_mb:
        return [[anchor, *others]]
    room = max(0.0, budget_mb - mem(anchor))
    groups: list[list[str]] = []
    used: list[float] = []
    for i in sorted(others, key=lambda x: (-mem(x), others.index(x))):
        for k in range(len(groups)):
            if used[k] + mem(i) <= room:
                groups[k].append(i)
                used[k] += mem(i)
                break
        else:
            groups.append([i])  # alone beside the anchor even when it alone is over the budget
            used.append(mem(i))
    return [[anchor, *sorted(g, key=others.index)] for g in groups]
