"""The ledger's SQLite schema, as the ordered migrations that build it, and the event
key version this code writes (see :mod:`kraiter_sync.state.ledger`)."""

from __future__ import annotations

__all__ = ["KEY_VERSION", "MIGRATIONS", "SCHEMA_VERSION"]

MIGRATIONS: list[str] = [
    # version 1
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        command TEXT NOT NULL,
        target TEXT NOT NULL,
        args TEXT NOT NULL DEFAULT '{}',
        started_at REAL NOT NULL,
        finished_at REAL,
        status TEXT NOT NULL DEFAULT 'running',
        counts TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE targets (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE events (
        target INTEGER NOT NULL,  -- targets.id
        event_key TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('inflight', 'done', 'rejected')),
        remote_id TEXT,
        code TEXT,
        message TEXT,
        run_id INTEGER,
        updated_at REAL NOT NULL,
        PRIMARY KEY (target, event_key)
    ) WITHOUT ROWID;
    CREATE TABLE contacts (
        target TEXT NOT NULL,
        email TEXT NOT NULL,
        contact_id TEXT NOT NULL,
        props_hash TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (target, email)
    ) WITHOUT ROWID;
    CREATE TABLE watermarks (
        target TEXT NOT NULL,
        stream TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (target, stream)
    ) WITHOUT ROWID;
    """,
    # version 2: who ran a run (to tell killed runs), which key a tenant name belongs to
    """
    ALTER TABLE runs ADD COLUMN pid INTEGER;
    ALTER TABLE runs ADD COLUMN host TEXT;
    ALTER TABLE runs ADD COLUMN proc_start TEXT;
    CREATE TABLE tenants (
        base TEXT NOT NULL,
        tenant TEXT NOT NULL,
        key_fingerprint TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (base, tenant)
    ) WITHOUT ROWID;
    """,
    # version 3: what a run's report draws besides its counts (request timeline, rejects
    # by rule); NULL for runs recorded before
    """
    ALTER TABLE runs ADD COLUMN details TEXT;
    """,
    # version 4: event keys of text values changed (key version 2: typed properties);
    # every target holding events now may hold version-1 keys
    """
    CREATE TABLE key_versions (
        target INTEGER PRIMARY KEY,  -- targets.id
        oldest INTEGER NOT NULL      -- the oldest key version among its events
    );
    INSERT INTO key_versions (target, oldest)
        SELECT id, 1 FROM targets
        WHERE EXISTS (SELECT 1 FROM events WHERE events.target = targets.id);
    """,
    # version 5: event keys of values whose JSON type a reader coerced changed (key
    # version 3: NDJSON and JSON columns keep each value's type); every target holding
    # events now may hold version-2 keys (version-1 marks stay)
    """
    INSERT OR IGNORE INTO key_versions (target, oldest)
        SELECT id, 2 FROM targets
        WHERE EXISTS (SELECT 1 FROM events WHERE events.target = targets.id);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
#: The event key version this code writes: 3 since NDJSON lines and JSON columns keep
#: each value's JSON type (``jsontypes``: 2 coerced a column's values to one type per
#: chunk, 1 = 1.0 next to floats); 2 since values read as text are typed
#: (``validate.text_types``); 1 before, when every CSV value was sent as text. The keys
#: of earlier versions are computed (``legacy_keys``) for targets that may hold them.
KEY_VERSION = 3
