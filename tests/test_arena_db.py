"""The arena's votes database: WAL, migrations, idempotent votes under concurrent writers, a
writer killed with SIGKILL, CSV round trips, and the checks every stored vote passes (bounded
ids, a sha256 image hash), imported votes marked as such."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

import pytest

from studio.arena import db as arena_db
from studio.arena.db import ArenaDB, ArenaDBError, Round, Vote, new_vote

REPO = Path(__file__).resolve().parents[1]


def _hash(i: int) -> str:
    """A sha256-shaped image hash (64 hex digits), as the arena stores."""
    return f"{i:064x}"


def _vote(i: int, choice: str = "a", vote_id: str | None = None) -> Vote:
    return Vote(vote_id=vote_id or f"v{i}", image_hash=_hash(i % 5), variant_a="x", variant_b="y", choice=choice,
                created_at=1_700_000_000.0 + i, voter_id=f"voter{i % 3}", image_name=f"img{i % 5}",
                background="white")


def test_new_database_is_wal_at_latest_schema(tmp_path):
    db = ArenaDB(tmp_path / "a.sqlite")
    assert db.journal_mode() == "wal"
    assert db.schema_version() == arena_db.SCHEMA_VERSION
    assert db.found_version == 0
    assert db.integrity() == "ok"


def test_default_path_is_the_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("STUDIO_ARENA_DB", str(tmp_path / "x" / "votes.sqlite"))
    assert ArenaDB().path == tmp_path / "x" / "votes.sqlite"
    assert (tmp_path / "x" / "votes.sqlite").is_file()


def test_record_vote_is_idempotent_by_vote_id(tmp_path):
    db = ArenaDB(tmp_path / "a.sqlite")
    stored, inserted = db.record_vote(_vote(1, "a", vote_id="round-1"))
    assert inserted and stored.choice == "a"
    # a retry, even with another choice, records nothing and returns the first vote
    again, inserted2 = db.record_vote(_vote(1, "b", vote_id="round-1"))
    assert not inserted2 and again.choice == "a"
    assert db.count() == 1


def test_bad_votes_are_refused(tmp_path):
    db = ArenaDB(tmp_path / "a.sqlite")
    with pytest.raises(ArenaDBError, match="choice"):
        db.record_vote(_vote(1, "maybe"))
    with pytest.raises(ArenaDBError, match="two different"):
        db.record_vote(Vote("v", _hash(1), "x", "x", "a", 0.0, "me"))
    assert db.count() == 0


def test_round_binds_the_variants_and_its_vote(tmp_path):
    db = ArenaDB(tmp_path / "a.sqlite")
    rnd = Round("r1", _hash(7), "left-model", "right-model", "voter", time.time(), "img", "embedded", "black")
    db.add_round(rnd)
    assert db.get_round("r1") == rnd
    assert [r.round_id for r in db.pending()] == ["r1"]
    stored, _ = db.record_vote(new_vote("r1", rnd, "b"))
    assert (stored.variant_a, stored.variant_b, stored.choice, stored.background) == \
        ("left-model", "right-model", "b", "black")
    assert db.pending() == []  # voted: no longer in flight


def _v1_file(path: Path) -> None:
    """A database as version 1 of the schema left it, with two votes."""
    conn = sqlite3.connect(path, isolation_level=None)
    arena_db.migrate(conn, target=1)
    conn.execute("INSERT INTO votes (vote_id, image_hash, variant_a, variant_b, choice, created_at, voter_id) "
                 "VALUES ('old1', 'h', 'x', 'y', 'a', 1.0, 'v'), ('old2', 'h', 'y', 'x', 'tie', 2.0, 'v')")
    conn.close()


def test_v1_database_is_migrated_keeping_its_votes(tmp_path):
    path = tmp_path / "old.sqlite"
    _v1_file(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert "image_name" not in [r[1] for r in conn.execute("PRAGMA table_info(votes)")]
    conn.close()
    db = ArenaDB(path)
    assert db.found_version == 1
    assert db.schema_version() == arena_db.SCHEMA_VERSION == 3
    votes = db.votes()
    assert [(v.vote_id, v.choice, v.image_name, v.background, v.imported) for v in votes] == \
        [("old1", "a", None, None, False), ("old2", "tie", None, None, False)]  # cast on this server
    db.record_vote(_vote(3))  # the v2 columns take values now
    assert db.get_vote("v3").background == "white"


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "future.sqlite"
    ArenaDB(path)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {arena_db.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ArenaDBError, match="newer"):
        ArenaDB(path)


def test_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ArenaDBError, match="not a usable arena database"):
        ArenaDB(path)


def test_concurrent_threads_lose_nothing_and_record_nothing_twice(tmp_path):
    db = ArenaDB(tmp_path / "a.sqlite")
    errors = []

    def writer(k: int) -> None:
        try:
            for i in range(60):
                # every vote is sent by two threads (a retry racing the original)
                db.record_vote(_vote(i + 60 * (k // 2), vote_id=f"v{i + 60 * (k // 2)}"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ids = [v.vote_id for v in db.votes()]
    assert len(ids) == 180 == len(set(ids))


def _process_writer(path: str, start: int, n: int) -> int:
    d = ArenaDB(path)
    new = 0
    for i in range(start, start + n):
        _, inserted = d.record_vote(_vote(i))
        new += inserted
    return new


def test_concurrent_processes_lose_nothing_and_record_nothing_twice(tmp_path):
    path = tmp_path / "a.sqlite"
    # four processes open a file that does not exist yet (creation and migration race too);
    # their ranges overlap by half, as retries from several clients would
    with get_context("spawn").Pool(4) as pool:
        inserted = pool.starmap(_process_writer, [(str(path), k * 25, 50) for k in range(4)])
    db = ArenaDB(path)
    ids = [v.vote_id for v in db.votes()]
    assert len(ids) == len(set(ids)) == 125  # votes 0..124, each once
    assert sum(inserted) == 125
    assert db.integrity() == "ok"


WRITER = """
import sys, time
sys.path.insert(0, sys.argv[2])
from studio.arena.db import ArenaDB, Vote
db = ArenaDB(sys.argv[1])
i = 0
while True:
    db.record_vote(Vote(f"k{i}", "0" * 64, "x", "y", "a", time.time(), "v"))
    print(f"k{i}", flush=True)  # acknowledged only after the commit returned
    i += 1
"""


def test_kill_9_of_a_writer_loses_no_acknowledged_vote(tmp_path):
    path = tmp_path / "a.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(REPO)], stdout=subprocess.PIPE,
                            text=True)
    acked = []
    try:
        for line in proc.stdout:
            acked.append(line.strip())
            if len(acked) >= 40:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    db = ArenaDB(path)  # opens after the kill; the WAL is recovered
    assert db.integrity() == "ok"
    stored = {v.vote_id for v in db.votes()}
    assert set(acked) <= stored
    assert len(stored) - len(acked) <= 2  # at most the votes in flight past the last line read


def test_csv_round_trip_and_import_skips_duplicates(tmp_path):
    src = ArenaDB(tmp_path / "a.sqlite")
    for i in range(12):
        src.record_vote(_vote(i, ("a", "b", "tie", "both_bad")[i % 4]))
    csv_path = tmp_path / "votes.csv"
    assert src.export_csv(csv_path) == 12
    dst = ArenaDB(tmp_path / "b.sqlite")
    dst.record_vote(_vote(0))  # already there: skipped on import
    assert dst.import_csv(csv_path) == (11, 1)
    # every field survives the trip; what came from the file is marked imported (vote 0 was cast here)
    assert [replace(v, imported=False) for v in dst.votes()] == src.votes()
    assert [v.imported for v in dst.votes()] == [False] + [True] * 11
    assert (dst.count(imported=True), dst.count(imported=False)) == (11, 1)
    assert dst.import_csv(csv_path) == (0, 12)


def test_import_of_a_v1_csv_and_a_bad_csv(tmp_path):
    v1 = tmp_path / "v1.csv"
    v1.write_text("vote_id,image_hash,variant_a,variant_b,choice,created_at,voter_id\n"
                  f"r1,{_hash(1)},x,y,both_bad,5.0,v\n")
    db = ArenaDB(tmp_path / "a.sqlite")
    assert db.import_csv(v1) == (1, 0)
    assert db.get_vote("r1").image_name is None
    bad = tmp_path / "bad.csv"
    bad.write_text(f"vote_id,image_hash,variant_a,variant_b,choice,created_at,voter_id\nr2,{_hash(1)},x,y,maybe,5,v\n")
    with pytest.raises(ArenaDBError, match="line 2"):
        db.import_csv(bad)
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(ArenaDBError, match="missing columns"):
        db.import_csv(other)
    assert db.count() == 1


def _v2_file(path: Path) -> None:
    """A database as version 2 of the schema left it, with one vote and one round."""
    conn = sqlite3.connect(path, isolation_level=None)
    arena_db.migrate(conn, target=2)
    conn.execute("INSERT INTO votes (vote_id, image_hash, variant_a, variant_b, choice, created_at, voter_id, "
                 f"image_name, background) VALUES ('old', '{_hash(3)}', 'x', 'y', 'b', 1.0, 'v', 'img', 'white')")
    conn.execute(f"INSERT INTO rounds VALUES ('r', '{_hash(3)}', 'x', 'y', 'v', 1.0, 'img', 'embedded', 'white')")
    conn.close()


def test_v2_database_is_migrated_its_votes_counted_as_cast_here(tmp_path):
    path = tmp_path / "v2.sqlite"
    _v2_file(path)
    db = ArenaDB(path)
    assert db.found_version == 2 and db.schema_version() == 3
    (old,) = db.votes()
    assert (old.vote_id, old.background, old.imported) == ("old", "white", False)
    with db.connect() as conn:
        indexes = {r[1] for r in conn.execute("PRAGMA index_list(rounds)")}
    assert "rounds_voter" in indexes  # a voter's open rounds are found without a scan
    assert db.count(imported=True) == 0 and db.count() == 1


@pytest.mark.parametrize("field, value, message", [
    ("voter_id", "v" * 65, "voter id: 65 characters, at most 64"),
    ("vote_id", "r" * 129, "vote id: 129 characters, at most 128"),
    ("variant_a", "m" * 129, "variant A: 129 characters, at most 128"),
    ("image_name", "n" * 257, "image name: 257 characters, at most 256"),
    ("image_hash", "h", "not a sha256"),
    ("image_hash", "A" * 64, "not a sha256"),  # hex digits as hashlib writes them: lower case
    ("voter_id", "bad\x00id", "control or invisible characters"),
    ("created_at", float("nan"), "is not a time"),
])
def test_every_stored_vote_is_bounded_and_well_formed(tmp_path, field, value, message):
    db = ArenaDB(tmp_path / "a.sqlite")
    with pytest.raises(ArenaDBError, match=message):
        db.record_vote(replace(_vote(1), **{field: value}))
    assert db.count() == 0
    db.record_vote(replace(_vote(1), voter_id="v" * 64, vote_id="r" * 128))  # at the bounds: stored
    assert db.count() == 1


def test_import_refuses_rows_it_cannot_vouch_for_with_the_line(tmp_path):
    head = "vote_id,image_hash,variant_a,variant_b,choice,created_at,voter_id\n"
    db = ArenaDB(tmp_path / "a.sqlite")
    cases = {
        "huge.csv": (head + f"r1,{_hash(1)},x,y,a,5,{'v' * 200_000}\n", "line 2: not readable as CSV"),
        "long.csv": (head + f"r1,{_hash(1)},x,y,a,5,{'v' * 65}\n", "line 2: voter id: 65 characters"),
        "hash.csv": (head + f"r1,{_hash(1)},x,y,a,5,v\nr2,not-a-hash,x,y,a,5,v\n", "line 3: .*not a sha256"),
        "ragged.csv": (head + f"r1,{_hash(1)},x,y,a,5,v,extra\n", "line 2: a row with more or fewer fields"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ArenaDBError, match=message):
            db.import_csv(tmp_path / name)
    assert db.count() == 0  # a bad row stops the import with nothing added

    def only_x_and_y(v: Vote) -> None:
        if {v.variant_a, v.variant_b} != {"x", "y"}:
            raise ArenaDBError(f"variant {v.variant_a} is not in the zoo")

    (tmp_path / "evil.csv").write_text(head + f"r1,{_hash(1)},x,y,a,5,v\nr2,{_hash(2)},evil-model,y,a,5,v\n")
    with pytest.raises(ArenaDBError, match="evil.csv, line 3: variant evil-model is not in the zoo"):
        db.import_csv(tmp_path / "evil.csv", check=only_x_and_y)
    assert db.count() == 0


def test_open_rounds_are_the_voters_unvoted_unexpired_ones_and_old_ones_are_purged(tmp_path):
    db = ArenaDB(tmp_path / "a.sqlite")
    now = 10_000.0
    for k, (voter, age) in enumerate([("me", 10), ("me", 50), ("me", 5000), ("you", 10)]):
        db.add_round(Round(f"r{k}", _hash(k), "x", "y", voter, now - age, f"img{k}", "embedded", "white"))
    db.record_vote(new_vote("r0", db.get_round("r0"), "a"))
    assert [r.round_id for r in db.open_rounds("me", ttl_s=1000, now=now)] == ["r1"]  # r0 voted, r2 expired
    assert db.purge_rounds(older_than=now - 1000) == 1  # r2: never voted, past its time
    assert db.get_round("r2") is None and db.get_round("r0") is not None
