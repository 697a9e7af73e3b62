"""Scripted voters for the Arena, through the app's API (gradio_client), for the evidence the
arena owes: it finds the true order, it takes concurrent voters, it survives `kill -9`.

    python eval/arena_sim.py oracle --limit 12          # IoU oracle on sod-dev, 20 % noise
    python eval/arena_sim.py concurrency --votes 200    # 4 voters at once, with retries
    python eval/arena_sim.py kill --acks 40             # kill -9 the app mid-voting, restart
    python eval/arena_sim.py screenshots                # docs/screenshots/arena_*.png

Each starts `python app.py` on a free port (or uses --url) with the environment's
STUDIO_RESULTS and STUDIO_ARENA_DB: point them at a scratch folder, e.g.

    export STUDIO_RESULTS=/tmp/arena/results STUDIO_ARENA_DB=/tmp/arena/votes.sqlite

The oracle: for each round it reads the two RGBA cut-outs the API returns, scores each
against the reference mask (IoU at 0.5), prefers the higher (equal: tie), and with
probability --noise replaces that with a coin flip between A and B. The true order is the
variants' mean IoU over the same images, with variants closer than --tolerance (the
studio's IoU equivalence tolerance) counted as tied: the fit must order the groups, and
place tied variants within each other's 95 % CI.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from studio import settings  # noqa: E402

TOLERANCE = 0.005  # IoU: the recommendation's equivalence tolerance (DESIGN.md)


# --- plumbing ---------------------------------------------------------------------------------

@contextlib.contextmanager
def app(url: str | None, log: Path | None = None) -> Iterator[Any]:
    """(url, server or None): the given app, or `python app.py` started here."""
    if url:
        yield url, None
        return
    from studio.launch import running_app

    with running_app(env={"STUDIO_PREFETCH": "none"}, log=log, timeout=300) as server:
        yield server.url, server


def client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False)


def default_variants() -> list[str]:
    from studio.arena.rounds import default_variant_ids

    return default_variant_ids()


def spec_of(dataset: str) -> str:
    """A folder as an absolute path (the app may run elsewhere), anything else as given."""
    return str(Path(dataset).resolve()) if Path(dataset).exists() else dataset


def read_alpha(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"))[..., 3].astype(np.float32) / 255.0


def iou(alpha: np.ndarray, mask: np.ndarray) -> float:
    a, m = alpha > 0.5, mask > 0.5
    union = int((a | m).sum())
    return 1.0 if union == 0 else float((a & m).sum()) / union


def next_round(c: Any, spec: str, variants: list[str], background: str, voter: str, limit: int) -> dict:
    out = c.predict(spec, variants, background, voter, limit, api_name="/arena_next")
    return {"round": out[0], "cutout_a": out[3], "cutout_b": out[4], "voter": out[6]}


def send_vote(c: Any, round_id: str, choice: str, voter: str) -> dict:
    return c.predict(round_id, choice, voter, api_name="/arena_vote")[1]


def write(out: Path | None, result: dict) -> None:
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


# --- oracle -----------------------------------------------------------------------------------

def true_ious(spec: str, limit: int, variants: list[str]) -> dict[str, dict[str, float]]:
    """{variant: {image hash: IoU}} from the prediction cache the app filled (computed here,
    through the engine, for any pair the arena never showed)."""
    from studio import engine
    from studio.arena.images import open_set
    from studio.zoo import load_zoo

    iset = open_set(spec, limit)
    out: dict[str, dict[str, float]] = {}
    for vid in variants:
        v = load_zoo().get(vid)
        out[vid] = {h: iou(engine.cutout(v, s.image(), h)[0], s.mask()) for h, s in iset.by_hash.items()}
    return out


def groups_of(mean: dict[str, float], tolerance: float) -> list[list[str]]:
    """Variants by mean IoU, best first, those within `tolerance` of the group's best together."""
    order = sorted(mean, key=mean.get, reverse=True)
    groups: list[list[str]] = []
    for vid in order:
        if groups and mean[groups[-1][0]] - mean[vid] < tolerance:
            groups[-1].append(vid)
        else:
            groups.append([vid])
    return groups


def order_ok(ratings: dict[str, float], groups: list[list[str]]) -> bool:
    """Every variant of a better group rated above every variant of a worse one."""
    return all(ratings[a] > ratings[b] for g1, g2 in itertools.combinations(groups, 2) for a in g1 for b in g2)


def separated(cis: dict[str, list[float]], groups: list[list[str]]) -> bool:
    """Every variant of a better group has its 95 % CI wholly above every worse one's."""
    return all(cis[a][0] > cis[b][1] for g1, g2 in itertools.combinations(groups, 2) for a in g1 for b in g2)


def first_stable(flags: list[bool], votes: list[int]) -> int | None:
    """The vote count from which a condition held at every later check."""
    return next((votes[i] for i in range(len(flags)) if all(flags[i:])), None)


def oracle(a: argparse.Namespace) -> dict:
    """Vote --votes times as the IoU oracle, then replay the stored votes in order (prefixes of
    --check-every) to find when the fit got the true order and when its CIs separated it.
    --votes 0 only analyses the oracle's votes already in the database."""
    from studio.arena.db import ArenaDB
    from studio.arena.images import open_set
    from studio.arena.ratings import fit_ratings

    variants = a.variants or default_variants()
    spec = spec_of(a.dataset)
    iset = open_set(spec, a.limit)
    masks = {h: s.mask() for h, s in iset.by_hash.items()}
    if any(m is None for m in masks.values()):
        raise SystemExit(f"{a.dataset}: the oracle needs reference masks for every image")
    rng = random.Random(a.seed)
    noisy = 0
    t0 = time.perf_counter()
    if a.votes:
        with app(a.url) as (url, _):
            c = client(url)
            for k in range(1, a.votes + 1):
                r = next_round(c, spec, variants, a.background, "oracle", a.limit)
                h = r["round"]["image_hash"]
                ia, ib = iou(read_alpha(r["cutout_a"]), masks[h]), iou(read_alpha(r["cutout_b"]), masks[h])
                choice = "a" if ia > ib else "b" if ib > ia else "tie"
                if rng.random() < a.noise:
                    choice = rng.choice(["a", "b"])
                    noisy += 1
                send_vote(c, r["round"]["round_id"], choice, "oracle")
                if k % 50 == 0:
                    print(f"{k} votes sent", flush=True)
    wall = time.perf_counter() - t0
    truth = true_ious(spec, a.limit, variants)
    mean = {v: float(np.mean(list(d.values()))) for v, d in truth.items()}
    groups = groups_of(mean, a.tolerance)
    votes = [v for v in ArenaDB(settings.arena_db_path()).votes(variants, list(masks)) if v.voter_id == "oracle"]
    history = []
    for k in range(a.check_every, len(votes) + 1, a.check_every):
        r = fit_ratings(votes[:k], variants, n_boot=a.boot)
        ratings = {row.id: row.rating for row in r.rows}
        cis = {row.id: list(row.ci95) for row in r.rows}
        history.append({"votes": k, "order_ok": order_ok(ratings, groups), "separated": separated(cis, groups)})
    checks = [hh["votes"] for hh in history]
    final_fit = fit_ratings(votes, variants)
    final = [{"id": row.id, "rating": round(row.rating, 1), "ci95": [round(x, 1) for x in row.ci95],
              "votes": row.votes, "shown": row.shown} for row in final_fit.rows]
    by_id = {row["id"]: row for row in final}
    tied_overlap = {"/".join(g): all(by_id[x]["ci95"][0] <= by_id[y]["ci95"][1] and
                                     by_id[y]["ci95"][0] <= by_id[x]["ci95"][1]
                                     for x, y in itertools.combinations(g, 2))
                    for g in groups if len(g) > 1}
    beats = {f"{x} > {y}": round(float(np.mean([truth[x][h] > truth[y][h] for h in truth[x]])), 3)
             for x, y in itertools.permutations(variants, 2)}
    pair_votes = {f"{x} vs {y}": int(final_fit.pair_votes[final_fit.ids.index(x), final_fit.ids.index(y)])
                  for x, y in itertools.combinations(variants, 2)}
    return {
        "scenario": "oracle", "dataset": iset.name, "images": len(iset.samples), "variants": variants,
        "noise": a.noise, "noisy_votes": noisy if a.votes else None, "votes": len(votes),
        "wall_s": round(wall, 1),
        "true_mean_iou": {v: round(x, 5) for v, x in sorted(mean.items(), key=lambda t: -t[1])},
        "true_groups": groups, "tolerance": a.tolerance, "share_of_images_where_row_beats_col": beats,
        "order_ok_from_vote": first_stable([hh["order_ok"] for hh in history], checks),
        "cis_separate_groups_from_vote": first_stable([hh["separated"] for hh in history], checks),
        "order_ok_at_end": bool(history and history[-1]["order_ok"]),
        "tied_groups_ci_overlap": tied_overlap, "votes_per_pair": pair_votes, "final": final,
        "history": history,
    }


# --- concurrency ------------------------------------------------------------------------------

def concurrency(a: argparse.Namespace) -> dict:
    from studio.arena.db import ArenaDB

    variants = a.variants or default_variants()
    db = ArenaDB(settings.arena_db_path())
    before = db.count()
    per_voter = a.votes // a.voters
    sent: dict[str, list[str]] = {}
    retries = [0]
    errors: list[str] = []
    lock = threading.Lock()
    t0 = time.perf_counter()
    with app(a.url) as (url, _):
        def voter(k: int) -> None:
            rng = random.Random(k)
            c = client(url)
            mine: list[str] = []
            try:
                for _ in range(per_voter):
                    r = next_round(c, spec_of(a.dataset), variants, "checkerboard", f"voter-{k}", a.limit)
                    rid = r["round"]["round_id"]
                    choice = rng.choice(["a", "b", "tie", "both_bad"])
                    ack = send_vote(c, rid, choice, f"voter-{k}")
                    assert ack["recorded"], ack
                    mine.append(rid)
                    if rng.random() < 0.1:  # a retry of the same submit: must not count twice
                        assert send_vote(c, rid, choice, f"voter-{k}")["duplicate"]
                        with lock:
                            retries[0] += 1
            except Exception as exc:  # reported, and the totals below will not match
                errors.append(f"voter {k}: {type(exc).__name__}: {exc}")
            with lock:
                sent[f"voter-{k}"] = mine

        threads = [threading.Thread(target=voter, args=(k,)) for k in range(a.voters)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    wall = time.perf_counter() - t0
    all_sent = [rid for ids in sent.values() for rid in ids]
    with db.connect() as conn:
        dupes = conn.execute("SELECT COUNT(*) FROM (SELECT vote_id FROM votes GROUP BY vote_id "
                             "HAVING COUNT(*) > 1)").fetchone()[0]
    stored = {v.vote_id for v in db.votes()}
    return {
        "scenario": "concurrency", "voters": a.voters, "votes_sent": len(all_sent), "retries_sent": retries[0],
        "rows_added": db.count() - before, "duplicate_vote_ids": dupes,
        "every_sent_vote_stored": set(all_sent) <= stored, "errors": errors, "wall_s": round(wall, 1),
        "votes_per_s": round(len(all_sent) / wall, 2), "journal_mode": db.journal_mode(),
    }


# --- kill -9 ----------------------------------------------------------------------------------

def kill(a: argparse.Namespace) -> dict:
    from studio.arena.db import ArenaDB

    variants = a.variants or default_variants()
    path = settings.arena_db_path()
    before = ArenaDB(path).count()
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    with app(None, log=Path(os.environ.get("TMPDIR", "/tmp")) / "arena-kill-app.log") as (url, server):
        def voter(k: int) -> None:
            c = client(url)
            while not stop.is_set():
                try:
                    r = next_round(c, spec_of(a.dataset), variants, "white", f"kill-{k}", a.limit)
                    send_vote(c, r["round"]["round_id"], "a", f"kill-{k}")
                except Exception:
                    return  # the app is gone
                with lock:
                    acked.append(r["round"]["round_id"])

        threads = [threading.Thread(target=voter, args=(k,), daemon=True) for k in range(a.voters)]
        for t in threads:
            t.start()
        while len(acked) < a.acks:
            time.sleep(0.01)
        os.kill(server.process.pid, signal.SIGKILL)  # mid-voting: other votes are in flight
        with lock:
            acked_at_kill = list(acked)
        server.process.wait()
        stop.set()
        for t in threads:
            t.join(timeout=30)
        killed_rc = server.process.returncode
    db = ArenaDB(path)  # opens after the kill: the WAL is replayed
    stored = {v.vote_id for v in db.votes()}
    after_kill = db.count()
    # restart the app on the same database and vote once more
    with app(None) as (url, _):
        c = client(url)
        r = next_round(c, spec_of(a.dataset), variants, "white", "after-restart", a.limit)
        ack = send_vote(c, r["round"]["round_id"], "b", "after-restart")
    return {
        "scenario": "kill", "signal": "SIGKILL", "app_returncode": killed_rc, "voters": a.voters,
        "acknowledged_before_kill": len(acked_at_kill), "acknowledged_in_all": len(acked),
        "rows_after_kill": after_kill - before,
        "every_acknowledged_vote_stored": set(acked) <= stored,
        "integrity_check": db.integrity(), "schema_version": db.schema_version(),
        "vote_after_restart_recorded": ack["recorded"], "rows_after_restart": ArenaDB(path).count() - before,
    }


# --- screenshots ------------------------------------------------------------------------------

def screenshots(a: argparse.Namespace) -> dict:
    from playwright.sync_api import sync_playwright

    chromium = "/usr/bin/chromium"
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    out = Path(a.shots)
    out.mkdir(parents=True, exist_ok=True)
    spec = spec_of(a.dataset)
    with app(a.url) as (url, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=args)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(600_000)
        page.goto(url)
        page.get_by_role("tab", name="Arena").click()
        page.get_by_label(SOURCE_FOLDER).check()
        page.fill("#arena-dataset input", spec)
        page.keyboard.press("Enter")
        page.fill("#arena-limit input", str(a.limit))
        page.get_by_label(a.background, exact=True).check()
        if a.variants:  # keep only these in the picker (the tab starts with every installed one)
            tokens = page.locator("#arena-variants .token")
            while extra := [i for i, t in enumerate(tokens.all_inner_texts()) if t.strip() not in a.variants]:
                tokens.nth(extra[0]).locator(".token-remove").click()
        page.click("#arena-start")
        page.wait_for_function("() => (document.querySelector('#arena-prompt')?.innerText || '').includes('Which')")
        page.wait_for_selector("#arena-view-b img")
        for key in ("a", "ArrowRight"):  # two votes by keyboard: the reveal line shows the last
            before = page.evaluate(ROUND_SHOWN)
            page.locator("body").press(key)
            page.wait_for_function(f"(b) => {{ const r = ({ROUND_SHOWN})(); return r !== null && r !== b; }}",
                                   arg=before)
        page.wait_for_function("() => (document.querySelector('#arena-reveal')?.innerText || '').includes('was')")
        page.wait_for_selector("#arena-view-b img")
        page.wait_for_timeout(1500)
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(300)
        page.screenshot(path=str(out / "arena_vote.png"))
        page.locator("#arena-ratings-section").screenshot(path=str(out / "arena_ratings.png"))
        reveal = page.inner_text("#arena-reveal")
        browser.close()
    return {"scenario": "screenshots", "files": [str(out / "arena_vote.png"), str(out / "arena_ratings.png")],
            "reveal": reveal}


SOURCE_FOLDER = "Catalogue dataset / folder"
# the round id the Arena's prompt shows (as the page's keyboard handler reads it)
ROUND_SHOWN = ("() => { const m = (document.querySelector('#arena-prompt')?.innerText || '')"
               ".match(/round ([0-9a-f]{8})/); return m ? m[1] : null; }")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=["oracle", "concurrency", "kill", "screenshots"])
    ap.add_argument("--url", help="an app already running (default: start one)")
    ap.add_argument("--dataset", help="set spec (default: sod-dev for oracle/screenshots, embedded otherwise)")
    ap.add_argument("--limit", type=int, help="images (0: all; default 12 for oracle and screenshots, else 4)")
    ap.add_argument("--variants", nargs="*", help="default: every installed, trained variant")
    ap.add_argument("--votes", type=int, default=300)
    ap.add_argument("--voters", type=int, default=4)
    ap.add_argument("--acks", type=int, default=40, help="kill: votes acknowledged before the kill")
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--tolerance", type=float, default=TOLERANCE)
    ap.add_argument("--check-every", type=int, default=10)
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap resamples per check")
    ap.add_argument("--background", default="checkerboard")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shots", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--out", type=Path, help="also write the result JSON here")
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the app we started, too
    if a.dataset is None:
        sod = settings.shared_dir() / "datasets" / "sod-dev"
        a.dataset = str(sod) if a.scenario in ("oracle", "screenshots") and sod.is_dir() else "embedded"
    if a.limit is None:  # concurrency and kill test the database, not the models: few images
        a.limit = 12 if a.scenario in ("oracle", "screenshots") else 4
    fn = {"oracle": oracle, "concurrency": concurrency, "kill": kill, "screenshots": screenshots}[a.scenario]
    write(a.out, fn(a))
    return 0


if __name__ == "__main__":
    sys.exit(main())
