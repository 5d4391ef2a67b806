"""Several workers on one import, through the PostgreSQL state: shard leases, rate shares.

**Shard leases.** An import run by workers (``import --workers N``, on one machine or
the same command on several) splits its events and contacts into :data:`SHARDS` shards by
a hash of the contact's email, so every event of one contact, and so every event key,
belongs to exactly one shard. A worker claims one shard at a time
(``SELECT … FOR UPDATE SKIP LOCKED``: two workers never get the same one), sends what
the shard holds, and marks it done. Its claim is a lease: renewed while the worker lives
(:meth:`ShardLeases.renew`), taken over by another worker once it expires (the holder was
killed or its machine vanished). The new holder finds the keys the dead one left
``inflight`` in the ledger and verifies them against Kraiter before sending, as any
resumed run does. A job is the import's target and inputs; when every shard of it is
done and a worker starts it again, a new *round* begins (the ledger skips what is done).
A worker works in the round it joined only: one that finished the last round leaves a
new round to the workers that started it. Workers started together by
``import --workers N`` join the round their parent began, never a new one.

Two different imports run by workers on one target at once (a backfill beside a nightly
import) may hold events of one contact: a shard is never claimed while a worker of
another job on the same target holds the same shard, so no event key is ever sent by
two workers at once. Claims on one target are serialised by a transaction-level
advisory lock (a few dozen per run), which makes that check exact.

**Rate shares.** Every run sending to one target over this state keeps a row in
``rate_shares`` while it sends (renewed twice a second, gone a few seconds after its
process); each paces itself to ``limit x max_share / live runs``, so runs on one tenant
together stay within the limit and keep headroom for the application's own traffic.

Times are the server's clock (``clock_timestamp()``), so machines agree on expiries.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Iterator

import psycopg

from kraiter_sync.errors import StateError
from kraiter_sync.state.pgdb import PgDatabase

__all__ = ["SHARDS", "RateShares", "ShardLeases", "holder_name", "one_at_a_time"]

#: Shards per job: enough that 4 workers stay busy to the end and a dead worker's lease
#: holds back only a small part of the work.
SHARDS = 32

_NOW = "extract(epoch FROM clock_timestamp())"


@contextlib.contextmanager
def one_at_a_time(db: PgDatabase, name: str) -> Iterator[None]:
    """Wait for, then hold for the block, a session advisory lock on a connection of its
    own (freed when the block ends, or when the process dies)."""
    conn = db.connect()
    try:
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", [db.lock_key(name)])
        except psycopg.Error as exc:
            raise db.translate(exc) from None
        yield
    finally:
        conn.close()


def holder_name() -> str:
    """This process, as a lease holder: host, pid and a random tag (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class ShardLeases:
    """The shards of one job, leased to workers (see the module docstring)."""

    def __init__(
        self,
        db: PgDatabase,
        target: str,
        job: str,
        *,
        holder: str,
        ttl: float = 60.0,
        shards: int = SHARDS,
    ) -> None:
        self.db = db
        self.target = target
        self.job = job
        self.holder = holder
        self.ttl = ttl
        self.shards = shards
        #: The round this worker works in (set by :meth:`begin`).
        self.round = 0

    def begin(self, *, new_round: bool = True) -> int:
        """Create the job's shards, or (``new_round``) start a new round when the last one
        finished; join the current round. Returns it."""
        with self.db.tx() as conn:
            conn.execute(
                self.db.q(
                    "INSERT INTO {s}.work_shards (target, job, shard) SELECT %s, %s, g "
                    "FROM generate_series(0, %s) AS g ON CONFLICT DO NOTHING"
                ),
                [self.target, self.job, self.shards - 1],
            )
            rows = conn.execute(
                self.db.q(
                    "SELECT done, holder IS NOT NULL AND expires_at > " + _NOW + " "
                    "FROM {s}.work_shards WHERE job = %s FOR UPDATE"
                ),
                [self.job],
            ).fetchall()
            if new_round and rows and all(done and not live for done, live in rows):
                conn.execute(
                    self.db.q(
                        "UPDATE {s}.work_shards SET done = false, holder = NULL, "
                        "expires_at = NULL, round = round + 1 WHERE job = %s"
                    ),
                    [self.job],
                )
            found = conn.execute(
                self.db.q("SELECT max(round) FROM {s}.work_shards WHERE job = %s"), [self.job]
            ).fetchone()
        self.round = int(found[0]) if found and found[0] is not None else 0
        return self.round

    def claim(self) -> int | None:
        """A shard nobody holds (free, or its holder's lease expired) and no worker of
        another job on this target holds either; None: none now."""
        with self.db.tx() as conn:
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s)", [self.db.lock_key(f"work:{self.target}")]
            )
            rows = conn.execute(
                self.db.q(
                    "UPDATE {s}.work_shards AS w SET holder = %s, expires_at = "
                    + _NOW
                    + " + %s FROM (SELECT job, shard FROM {s}.work_shards AS c WHERE job = %s "
                    "AND NOT done AND round = %s AND (holder IS NULL OR expires_at <= "
                    + _NOW
                    + ") AND NOT EXISTS (SELECT 1 FROM {s}.work_shards AS o "
                    "WHERE o.target = c.target AND o.shard = c.shard AND o.job <> c.job "
                    "AND o.holder IS NOT NULL AND o.expires_at > "
                    + _NOW
                    + ") ORDER BY shard LIMIT 1 FOR UPDATE SKIP LOCKED) AS free "
                    "WHERE w.job = free.job AND w.shard = free.shard RETURNING w.shard"
                ),
                [self.holder, self.ttl, self.job, self.round],
            ).fetchall()
        return int(rows[0][0]) if rows else None

    def renew(self, shard: int) -> None:
        """Extend this worker's lease; :class:`StateError` when another worker took it."""
        rows = self.db.query(
            "UPDATE {s}.work_shards SET expires_at = " + _NOW + " + %s "
            "WHERE job = %s AND shard = %s AND holder = %s RETURNING shard",
            [self.ttl, self.job, shard, self.holder],
        )
        if not rows:
            msg = (
                f"the lease on shard {shard} of this import expired and another worker took it "
                "over, so this worker sends nothing more; re-run the same command to check "
                "that everything was sent"
            )
            raise StateError(msg)

    def finish(self, shard: int) -> None:
        """The shard's work is done (held by this worker)."""
        self.db.query(
            "UPDATE {s}.work_shards SET done = true, holder = NULL, expires_at = NULL "
            "WHERE job = %s AND shard = %s AND holder = %s RETURNING shard",
            [self.job, shard, self.holder],
        )

    def release(self, shard: int) -> None:
        """Give the shard back unfinished (a stopped worker): free for another at once."""
        self.db.query(
            "UPDATE {s}.work_shards SET holder = NULL, expires_at = NULL "
            "WHERE job = %s AND shard = %s AND holder = %s RETURNING shard",
            [self.job, shard, self.holder],
        )

    def wait(self) -> float | None:
        """Seconds until a held shard's lease may expire; None: every shard of this
        worker's round is done."""
        rows = self.db.query(
            "SELECT min(expires_at) - " + _NOW + ", count(*) FROM {s}.work_shards "
            "WHERE job = %s AND NOT done AND round = %s",
            [self.job, self.round],
        )
        left, pending = rows[0]
        if not pending:
            return None
        return max(float(left or 0.0), 0.0)


class RateShares:
    """The runs sharing one target's rate budget (see the module docstring)."""

    #: Seconds a run's row outlives its last renewal (a killed run's share returns then).
    ttl = 5.0

    def __init__(self, db: PgDatabase, target: str, *, holder: str) -> None:
        self.db = db
        self.target = target
        self.holder = holder

    def beat(self, rate_limit: float | None) -> tuple[int, float | None]:
        """Renew this run's row (with the limit it knows); the live runs and the limit.

        The limit is the highest any live run knows (``--rate`` or the headers).
        """
        with self.db.tx() as conn:
            conn.execute(
                self.db.q(
                    "INSERT INTO {s}.rate_shares AS r (target, holder, expires_at, rate_limit) "
                    "VALUES (%s, %s, " + _NOW + " + %s, %s) ON CONFLICT (target, holder) "
                    "DO UPDATE SET expires_at = excluded.expires_at, "
                    "rate_limit = excluded.rate_limit"
                ),
                [self.target, self.holder, self.ttl, rate_limit],
            )
            conn.execute(
                self.db.q("DELETE FROM {s}.rate_shares WHERE target = %s AND expires_at < " + _NOW),
                [self.target],
            )
            row = conn.execute(
                self.db.q(
                    "SELECT count(*), max(rate_limit) FROM {s}.rate_shares WHERE target = %s"
                ),
                [self.target],
            ).fetchone()
        if row is None:  # an aggregate always answers one row
            return 1, rate_limit
        return int(row[0]), (float(row[1]) if row[1] is not None else None)

    def leave(self) -> None:
        """This run no longer sends: its share goes to the others at once."""
        self.db.query(
            "DELETE FROM {s}.rate_shares WHERE target = %s AND holder = %s RETURNING holder",
            [self.target, self.holder],
        )
