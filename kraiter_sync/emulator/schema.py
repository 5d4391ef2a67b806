"""The emulator's SQLite schema (one database, every table keyed by tenant first)."""

from __future__ import annotations

__all__ = ["SCHEMA", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    id INTEGER PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,      -- sha256 of the bearer key; the key itself is never stored
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS contacts (
    tenant INTEGER NOT NULL,
    id TEXT NOT NULL,
    email TEXT NOT NULL,                -- as first sent
    email_lc TEXT NOT NULL,             -- uniqueness is case-insensitive
    properties TEXT NOT NULL,           -- JSON object
    user_id TEXT,
    suppressed INTEGER NOT NULL DEFAULT 0,
    unsubscribed INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS contacts_email ON contacts (tenant, email_lc);
CREATE TABLE IF NOT EXISTS events (
    tenant INTEGER NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    contact_id TEXT,                    -- NULL only for link-later events not yet linked
    email TEXT,                         -- set while unlinked
    email_lc TEXT,
    properties TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_contact ON events (tenant, contact_id, id);
CREATE INDEX IF NOT EXISTS events_unlinked ON events (tenant, email_lc, id)
    WHERE contact_id IS NULL;
CREATE TABLE IF NOT EXISTS sends (
    tenant INTEGER NOT NULL,
    id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    email TEXT NOT NULL,
    template_id TEXT NOT NULL,
    template_name TEXT,
    subject TEXT,
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    source_id TEXT,
    sent_at TEXT,
    delivered_at TEXT,
    opened_at TEXT,
    clicked_at TEXT,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sends_contact ON sends (tenant, contact_id, id);
CREATE TABLE IF NOT EXISTS scheduled (
    tenant INTEGER NOT NULL,
    id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    email TEXT NOT NULL,
    template_id TEXT NOT NULL,
    template_name TEXT,
    subject TEXT,
    scheduled_for TEXT NOT NULL,
    source TEXT NOT NULL,
    source_id TEXT,
    step INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS scheduled_due ON scheduled (tenant, scheduled_for, id);
CREATE INDEX IF NOT EXISTS scheduled_contact ON scheduled (tenant, contact_id, scheduled_for);
CREATE TABLE IF NOT EXISTS sequences (
    tenant INTEGER NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    triggers TEXT NOT NULL,             -- JSON [{"event": name}]
    steps TEXT NOT NULL,                -- JSON list of step objects
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS enrolments (
    tenant INTEGER NOT NULL,
    contact_id TEXT NOT NULL,
    sequence_id TEXT NOT NULL,
    status TEXT NOT NULL,
    current_step INTEGER NOT NULL,
    enrolled_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant, contact_id, sequence_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sequence_log (   -- timeline entries of type "sequence"
    tenant INTEGER NOT NULL,
    id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sequence_log_contact ON sequence_log (tenant, contact_id, id);
CREATE TABLE IF NOT EXISTS segments (
    tenant INTEGER NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS memberships (
    tenant INTEGER NOT NULL,
    contact_id TEXT NOT NULL,
    segment_id TEXT NOT NULL,
    joined_at TEXT NOT NULL,
    PRIMARY KEY (tenant, contact_id, segment_id)
) WITHOUT ROWID;
"""
