"""The arena's votes in SQLite: one row per vote, safe with several voters and processes at once.

Why SQLite and these settings:
- WAL mode: readers never block the one writer, and a killed process leaves a database that
  the next open recovers (the WAL is replayed), so no acknowledged vote is lost.
- `synchronous=FULL`: a vote is on disk when `record_vote` returns, so an acknowledged vote
  survives even a power cut, not only a killed app.
- One short transaction per vote (`BEGIN IMMEDIATE` ... `COMMIT`) and a `busy_timeout`: writers
  queue for the lock instead of failing; a killed app loses at most the vote in flight.
- `vote_id` is UNIQUE and inserted with `ON CONFLICT DO NOTHING`: a retried submit (same id)
  records nothing twice, whichever process or thread sends it.

Tables (schema version in `PRAGMA user_version`; `MIGRATIONS` takes any older file to the latest):
- `votes`: vote_id (the round id for votes cast in the app), image_hash (sha256 of the image
  file; of the pixels for the embedded sample), variant_a (shown left as "A"), variant_b
  (shown right as "B"), choice (a | b | tie | both_bad), created_at (unix seconds), voter_id
  (an anonymous id the browser keeps), since v2 image_name and background, and since v3
  imported (1 for a vote read from a CSV: cast elsewhere, so this server cannot vouch for it).
- `rounds`: what the server showed (round id -> image and the two variants, sides included), so
  a vote names only its round id and a client never learns the variants before voting.

Every vote is checked before it is stored (`Vote.check`): a known choice, bounded ids
(`settings.ARENA_MAX_*`), an image hash that is a sha256, so what is stored exports and
re-imports.
"""

from __future__ import annotations

import contextlib
import csv
import math
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from studio import settings
from studio.errors import StudioError

CHOICES = ("a", "b", "tie", "both_bad")
SCHEMA_VERSION = 3
BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for the lock before giving up
PENDING_S = 300.0  # a round shown this recently and not yet voted counts as a vote in flight


class ArenaDBError(StudioError):
    """A vote or a database the arena cannot use; the message says why."""


SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def check_text(what: str, value: object, limit: int, *, required: bool = True, printable: bool = True,
               error: type[StudioError] = ArenaDBError) -> str | None:
    """`value` as stripped text, or `error` with a plain reason: not text, empty (when
    `required`), longer than `limit` characters, or (`printable`) holding control characters.
    Empty and not required gives None."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise error(f"{what}: expected text, got {type(value).__name__}")
    text = value.strip()
    if len(text) > limit:
        raise error(f"{what}: {len(text):,} characters, at most {limit} allowed")
    if not text:
        if required:
            raise error(f"{what}: missing")
        return None
    if printable and not text.isprintable():
        raise error(f"{what}: control or invisible characters are not allowed")
    return text


@dataclass(frozen=True)
class Vote:
    vote_id: str
    image_hash: str
    variant_a: str  # shown on the left, as "A"
    variant_b: str  # shown on the right, as "B"
    choice: str  # a | b | tie | both_bad
    created_at: float  # unix seconds
    voter_id: str
    image_name: str | None = None  # v2
    background: str | None = None  # v2
    imported: bool = False  # v3: read from a CSV, not cast on this server

    def check(self) -> Vote:
        if self.choice not in CHOICES:
            raise ArenaDBError(f"choice {str(self.choice)[:20]!r} is not one of {', '.join(CHOICES)}")
        if not (self.vote_id and self.image_hash and self.variant_a and self.variant_b):
            raise ArenaDBError("a vote needs a vote id, an image hash and two variant ids")
        check_text("vote id", self.vote_id, settings.ARENA_MAX_ID)
        check_text("variant A", self.variant_a, settings.ARENA_MAX_ID)
        check_text("variant B", self.variant_b, settings.ARENA_MAX_ID)
        check_text("voter id", self.voter_id, settings.ARENA_MAX_VOTER_ID)
        check_text("image name", self.image_name, settings.ARENA_MAX_NAME, required=False, printable=False)
        check_text("background", self.background, settings.ARENA_MAX_NAME, required=False)
        if self.variant_a == self.variant_b:
            raise ArenaDBError(f"a vote compares two different variants, got {self.variant_a} twice")
        if not SHA256_HEX.fullmatch(str(self.image_hash)):
            raise ArenaDBError(f"image hash {str(self.image_hash)[:20]!r}…: not a sha256 (64 hex digits)")
        if not math.isfinite(self.created_at):
            raise ArenaDBError(f"created_at {self.created_at!r} is not a time")
        return self


@dataclass(frozen=True)
class Round:
    round_id: str
    image_hash: str
    variant_a: str
    variant_b: str
    voter_id: str
    created_at: float
    image_name: str | None = None
    set_spec: str | None = None
    background: str | None = None  # v2


VOTE_FIELDS = [f.name for f in fields(Vote)]
ROUND_FIELDS = [f.name for f in fields(Round)]


# --- schema and migrations ----------------------------------------------------------------------

def _v1(conn: sqlite3.Connection) -> None:
    conn.execute("""
        CREATE TABLE votes (
            id INTEGER PRIMARY KEY,
            vote_id TEXT NOT NULL UNIQUE,
            image_hash TEXT NOT NULL,
            variant_a TEXT NOT NULL,
            variant_b TEXT NOT NULL,
            choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'both_bad')),
            created_at REAL NOT NULL,
            voter_id TEXT NOT NULL,
            CHECK (variant_a <> variant_b)
        )""")
    conn.execute("CREATE INDEX votes_pair ON votes (variant_a, variant_b)")
    conn.execute("""
        CREATE TABLE rounds (
            round_id TEXT PRIMARY KEY,
            image_hash TEXT NOT NULL,
            variant_a TEXT NOT NULL,
            variant_b TEXT NOT NULL,
            voter_id TEXT NOT NULL,
            created_at REAL NOT NULL,
            image_name TEXT,
            set_spec TEXT
        )""")
    conn.execute("CREATE INDEX rounds_created ON rounds (created_at)")


def _v2(conn: sqlite3.Connection) -> None:
    # v2 records what the voter saw: the image's name (for reading a CSV) and the background
    conn.execute("ALTER TABLE votes ADD COLUMN image_name TEXT")
    conn.execute("ALTER TABLE votes ADD COLUMN background TEXT")
    conn.execute("ALTER TABLE rounds ADD COLUMN background TEXT")


def _v3(conn: sqlite3.Connection) -> None:
    # v3 tells votes cast here from votes read from a CSV, and finds a voter's open rounds fast
    conn.execute("ALTER TABLE votes ADD COLUMN imported INTEGER NOT NULL DEFAULT 0")
    conn.execute("CREATE INDEX rounds_voter ON rounds (voter_id, created_at)")


# MIGRATIONS[n] takes a database at version n to n + 1. Never edit a step once released: add one.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2, _v3]
assert len(MIGRATIONS) == SCHEMA_VERSION


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the database to `target` in one transaction (concurrent openers wait, then find
    it done). Returns the version it found. A file from a newer studio is refused."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = _user_version(conn)
        if found > SCHEMA_VERSION:
            raise ArenaDBError(f"arena database schema v{found} is newer than this studio's "
                               f"v{SCHEMA_VERSION}; update the studio, or set STUDIO_ARENA_DB to another file")
        for step in range(found, target):
            MIGRATIONS[step](conn)
        if target > found:
            conn.execute(f"PRAGMA user_version = {int(target)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


# --- the database ---------------------------------------------------------------------------------

class ArenaDB:
    """The votes file at `path` (default: `studio.settings.arena_db_path()`), created and
    migrated on open. Every method opens its own short-lived connection, so one object is
    safe to share between threads, and several processes may open the same file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else settings.arena_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self.connect() as conn:
                # WAL is a property of the file: set once, every later connection uses it
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise ArenaDBError(f"{self.path}: SQLite refused WAL mode (got {mode}); "
                                       "is it on a network file system?")
                self.found_version = migrate(conn)
        except sqlite3.DatabaseError as exc:
            raise ArenaDBError(f"{self.path}: not a usable arena database ({exc})") from None

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: no implicit transactions; writes say BEGIN IMMEDIATE themselves
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = FULL")
            conn.row_factory = sqlite3.Row
            yield conn
        finally:
            conn.close()

    # --- facts about the file
    def schema_version(self) -> int:
        with self.connect() as conn:
            return _user_version(conn)

    def journal_mode(self) -> str:
        with self.connect() as conn:
            return str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()

    def integrity(self) -> str:
        with self.connect() as conn:
            return str(conn.execute("PRAGMA integrity_check").fetchone()[0])

    # --- rounds
    def add_round(self, rnd: Round) -> None:
        cols = ", ".join(ROUND_FIELDS)
        marks = ", ".join("?" for _ in ROUND_FIELDS)
        with self.connect() as conn:
            conn.execute(f"INSERT INTO rounds ({cols}) VALUES ({marks})", astuple_of(rnd, ROUND_FIELDS))

    def get_round(self, round_id: str) -> Round | None:
        with self.connect() as conn:
            row = conn.execute(f"SELECT {', '.join(ROUND_FIELDS)} FROM rounds WHERE round_id = ?",
                               (round_id,)).fetchone()
        return Round(**dict(row)) if row else None

    def pending(self, since_s: float = PENDING_S) -> list[Round]:
        """Rounds shown in the last `since_s` seconds without a vote yet (votes in flight)."""
        cutoff = time.time() - since_s
        with self.connect() as conn:
            rows = conn.execute(
                f"SELECT {', '.join('r.' + f for f in ROUND_FIELDS)} FROM rounds r WHERE r.created_at > ? "
                "AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.vote_id = r.round_id)", (cutoff,)).fetchall()
        return [Round(**dict(r)) for r in rows]

    def open_rounds(self, voter_id: str, ttl_s: float, now: float | None = None) -> list[Round]:
        """The voter's rounds not voted on and not expired (drawn in the last `ttl_s` seconds),
        oldest first."""
        cutoff = (time.time() if now is None else now) - ttl_s
        with self.connect() as conn:
            rows = conn.execute(
                f"SELECT {', '.join('r.' + f for f in ROUND_FIELDS)} FROM rounds r WHERE r.voter_id = ? "
                "AND r.created_at > ? AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.vote_id = r.round_id) "
                "ORDER BY r.created_at", (voter_id, cutoff)).fetchall()
        return [Round(**dict(r)) for r in rows]

    def purge_rounds(self, older_than: float) -> int:
        """Delete rounds drawn before `older_than` (unix seconds) that were never voted on: they
        can no longer be voted on, and a client drawing rounds must not grow the file forever."""
        with self.connect() as conn:
            cur = conn.execute("DELETE FROM rounds WHERE created_at < ? AND NOT EXISTS "
                               "(SELECT 1 FROM votes v WHERE v.vote_id = rounds.round_id)", (older_than,))
            return int(cur.rowcount)

    # --- votes
    def record_vote(self, vote: Vote) -> tuple[Vote, bool]:
        """Store a vote and commit. Returns (the stored vote, whether this call inserted it):
        a retry with a known vote_id inserts nothing and returns the vote first stored."""
        vote.check()
        cols = ", ".join(VOTE_FIELDS)
        marks = ", ".join("?" for _ in VOTE_FIELDS)
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.execute(f"INSERT INTO votes ({cols}) VALUES ({marks}) ON CONFLICT(vote_id) DO NOTHING",
                                   astuple_of(vote, VOTE_FIELDS))
                inserted = cur.rowcount == 1
                row = conn.execute(f"SELECT {cols} FROM votes WHERE vote_id = ?", (vote.vote_id,)).fetchone()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return _vote(row), inserted

    def get_vote(self, vote_id: str) -> Vote | None:
        with self.connect() as conn:
            row = conn.execute(f"SELECT {', '.join(VOTE_FIELDS)} FROM votes WHERE vote_id = ?",
                               (vote_id,)).fetchone()
        return _vote(row) if row else None

    def votes(self, variant_ids: Iterable[str] | None = None,
              image_hashes: Iterable[str] | None = None) -> list[Vote]:
        """Every vote in time order; with `variant_ids`, only votes between two of them; with
        `image_hashes`, only votes on those images."""
        with self.connect() as conn:
            rows = conn.execute(f"SELECT {', '.join(VOTE_FIELDS)} FROM votes ORDER BY id").fetchall()
        out = [_vote(r) for r in rows]
        if variant_ids is not None:
            keep = set(variant_ids)
            out = [v for v in out if v.variant_a in keep and v.variant_b in keep]
        if image_hashes is not None:
            imgs = set(image_hashes)
            out = [v for v in out if v.image_hash in imgs]
        return out

    def count(self, imported: bool | None = None) -> int:
        """Votes stored (`imported`: only those read from a CSV, or only those cast here)."""
        where = "" if imported is None else f" WHERE imported = {int(bool(imported))}"
        with self.connect() as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM votes{where}").fetchone()[0])

    # --- CSV
    def export_csv(self, path: str | Path) -> int:
        """Every vote as CSV (the columns of `Vote`, plus created_utc for reading). Returns the count."""
        votes = self.votes()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=[*VOTE_FIELDS, "created_utc"])
            w.writeheader()
            for v in votes:
                row = asdict(v)
                row["imported"] = int(v.imported)
                row["created_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(v.created_at))
                w.writerow(row)
        return len(votes)

    def import_csv(self, path: str | Path, check: Callable[[Vote], None] | None = None) -> tuple[int, int]:
        """Add the votes of a CSV (as `export_csv` writes; v1 files without image_name or
        background too), each marked imported. Every row is checked (`Vote.check`, then `check`,
        e.g. that its variants are in the zoo); votes whose vote_id is already here are skipped.
        One transaction: a bad row stops the import with nothing added. Returns (added, skipped)."""
        required = {"vote_id", "image_hash", "variant_a", "variant_b", "choice", "created_at", "voter_id"}
        name = Path(path).name
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            try:
                header = reader.fieldnames or []
            except csv.Error as exc:
                raise ArenaDBError(f"{name}: not a readable CSV ({exc})") from None
            missing = required - set(header)
            if missing:
                raise ArenaDBError(f"{name}: not an arena votes CSV (missing columns: "
                                   f"{', '.join(sorted(missing))})")
            votes = []
            try:
                for row in reader:
                    if None in row or any(v is None for v in row.values()):
                        raise ArenaDBError("a row with more or fewer fields than the header")
                    vote = Vote(
                        vote_id=row["vote_id"], image_hash=row["image_hash"].strip(), variant_a=row["variant_a"],
                        variant_b=row["variant_b"], choice=row["choice"], created_at=float(row["created_at"]),
                        voter_id=row["voter_id"] or "imported", image_name=row.get("image_name") or None,
                        background=row.get("background") or None, imported=True).check()
                    if check is not None:
                        check(vote)
                    votes.append(vote)
            except csv.Error as exc:  # e.g. a field over the csv module's size limit
                raise ArenaDBError(f"{name}, line {reader.line_num + 1}: not readable as CSV ({exc})") from None
            except (ValueError, StudioError) as exc:
                raise ArenaDBError(f"{name}, line {reader.line_num}: {exc}") from None
        cols = ", ".join(VOTE_FIELDS)
        marks = ", ".join("?" for _ in VOTE_FIELDS)
        added = 0
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for v in votes:
                    cur = conn.execute(f"INSERT INTO votes ({cols}) VALUES ({marks}) "
                                       "ON CONFLICT(vote_id) DO NOTHING", astuple_of(v, VOTE_FIELDS))
                    added += cur.rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return added, len(votes) - added


def astuple_of(obj: Vote | Round, names: list[str]) -> tuple:
    return tuple(getattr(obj, n) for n in names)


def _vote(row: sqlite3.Row) -> Vote:
    d = dict(row)
    d["imported"] = bool(d.get("imported"))  # SQLite keeps it as 0 / 1
    return Vote(**d)


def new_vote(vote_id: str, rnd: Round, choice: str, voter_id: str | None = None,
             now: float | None = None) -> Vote:
    """The vote for a round, as the app records it (the round id is the vote id)."""
    return Vote(vote_id=vote_id, image_hash=rnd.image_hash, variant_a=rnd.variant_a, variant_b=rnd.variant_b,
                choice=choice, created_at=time.time() if now is None else now,
                voter_id=voter_id or rnd.voter_id, image_name=rnd.image_name, background=rnd.background)
