"""SQLite storage of the local Kraiter: every object of the contract, per tenant.

One connection, used under the app's lock, one short transaction per request and
committed before the answer leaves. Files run in WAL mode with ``synchronous=NORMAL``
(durable against a crash of the process, which is what the importer's crash tests
kill). SQL strings are constants, so :mod:`sqlite3`'s statement cache keeps them
prepared. Every query is scoped by tenant: data never crosses tenants.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kraiter_sync.emulator.ids import IdGenerator
from kraiter_sync.emulator.journeys import JourneyStore
from kraiter_sync.emulator.rows import (
    CONTACT_COLS,
    EVENT_COLS,
    Page,
    contact_row,
    dumps,
    event_row,
    like_escape,
    page,
)
from kraiter_sync.emulator.schema import SCHEMA, SCHEMA_VERSION
from kraiter_sync.emulator.validation import ApiProblem, format_ts

__all__ = ["UNSET", "Page", "Store"]

#: "Not given" (distinct from None, which clears userId).
UNSET: Any = object()


class Store(JourneyStore):
    """The emulator's data. Methods are synchronous and must be called under one lock."""

    def __init__(
        self,
        db_path: str | os.PathLike[str] = ":memory:",
        *,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.path = os.fspath(db_path)
        if self.path != ":memory:" and not self.path.startswith("file:"):
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)  # e.g. a new state dir
        self._now = now or (lambda: datetime.now(UTC))
        self.ids = IdGenerator()
        self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.closed = False
        self.conn.execute("PRAGMA busy_timeout = 5000")
        if self.path != ":memory:":
            self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute("PRAGMA temp_store = MEMORY")
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            msg = (
                f"{self.path} was written by a newer kraiter-sync (schema {version}); "
                "upgrade kraiter-sync or use another --db"
            )
            raise RuntimeError(msg)
        self.conn.executescript(SCHEMA)
        self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        for table in ("contacts", "events", "sends", "scheduled", "sequence_log", "segments"):
            # Per tenant, so each max is one primary-key lookup, not a table scan.
            last = self.conn.execute(
                f"SELECT max((SELECT max(id) FROM {table} WHERE tenant = t.id)) FROM tenants t"
            ).fetchone()[0]
            self.ids.observe(last)
        self._tenants: dict[str, int] = {}
        self._triggers: dict[int, dict[str, list[str]]] = {}
        self._data_version = self._read_data_version()

    def close(self) -> None:
        """Commit what is pending and close; closing twice is harmless."""
        if self.closed:
            return
        self.commit()
        self.conn.close()
        self.closed = True

    # -- plumbing ---------------------------------------------------------------------

    def now(self) -> str:
        return format_ts(self._now())

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit of writes.

        Alone it is ``BEGIN IMMEDIATE`` … ``COMMIT``. Inside the app's shared batch
        (:meth:`batched`) it is a savepoint: a failing request rolls back only itself.
        """
        if self.conn.in_transaction:
            self.conn.execute("SAVEPOINT unit")
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK TO unit")
                self.conn.execute("RELEASE unit")
                raise
            self.conn.execute("RELEASE unit")
            return
        self._begin()
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @contextmanager
    def batched(self) -> Iterator[None]:
        """Join (or open) the transaction shared by the requests of one loop iteration.

        The caller must :meth:`commit` before it answers: group commit keeps the
        promise "committed before the answer" at one fsync-free WAL write per batch.
        """
        if not self.conn.in_transaction:
            self._begin()
        with self.transaction():
            yield

    def commit(self) -> None:
        if self.conn.in_transaction:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error:
                self.conn.execute("ROLLBACK")
                raise

    def _begin(self) -> None:
        """Take the write lock; drop caches if another connection committed meanwhile.

        While we hold the lock nobody else can commit, so one check per transaction
        keeps the trigger cache exact without a query per event.
        """
        self.conn.execute("BEGIN IMMEDIATE")
        version = self._read_data_version()
        if version != self._data_version:
            self._triggers.clear()
            self._data_version = version

    def _read_data_version(self) -> int:
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def tenant(self, key_hash: str) -> int:
        """The tenant of a key hash, created on first sight (any ``kr_`` key is a tenant)."""
        tenant = self._tenants.get(key_hash)
        if tenant is not None:
            return tenant
        row = self.conn.execute("SELECT id FROM tenants WHERE key_hash = ?", (key_hash,)).fetchone()
        if row is None:
            with self.transaction():
                cur = self.conn.execute(
                    "INSERT INTO tenants (key_hash, created_at) VALUES (?, ?)",
                    (key_hash, self.now()),
                )
            tenant = int(cur.lastrowid or 0)
        else:
            tenant = int(row[0])
        self._tenants[key_hash] = tenant
        return tenant

    # -- contacts ---------------------------------------------------------------------

    def get_contact(self, tenant: int, contact_id: str) -> dict[str, Any] | None:
        if contact_id.startswith("con_"):  # the SDK examples' prefix names the same contact
            contact_id = "cnt_" + contact_id[4:]
        row = self.conn.execute(
            f"SELECT {CONTACT_COLS} FROM contacts WHERE tenant = ? AND id = ?",
            (tenant, contact_id),
        ).fetchone()
        return contact_row(row) if row else None

    def require_contact(self, tenant: int, contact_id: str) -> dict[str, Any]:
        contact = self.get_contact(tenant, contact_id)
        if contact is None:
            msg = f"no contact with id {contact_id}"
            raise ApiProblem(404, msg)
        return contact

    def contact_by_email(self, tenant: int, email: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            f"SELECT {CONTACT_COLS} FROM contacts WHERE tenant = ? AND email_lc = ?",
            (tenant, email.lower()),
        ).fetchone()
        return contact_row(row) if row else None

    def _contact_id_by_email(self, tenant: int, email_lc: str) -> str | None:
        row = self.conn.execute(
            "SELECT id FROM contacts WHERE tenant = ? AND email_lc = ?", (tenant, email_lc)
        ).fetchone()
        return row[0] if row else None

    def _link_waiting_events(self, tenant: int, contact_id: str, email_lc: str) -> None:
        self.conn.execute(
            "UPDATE events SET contact_id = ?, email = NULL, email_lc = NULL "
            "WHERE tenant = ? AND contact_id IS NULL AND email_lc = ?",
            (contact_id, tenant, email_lc),
        )

    def create_contact(
        self,
        tenant: int,
        email: str,
        properties: dict[str, Any],
        user_id: str | None = None,
    ) -> dict[str, Any]:
        """Insert a contact; 409 when the email (any case) is taken."""
        email_lc = email.lower()
        if self._contact_id_by_email(tenant, email_lc) is not None:
            msg = f"a contact with email {email} already exists"
            raise ApiProblem(409, msg, field="email")
        props = {k: v for k, v in properties.items() if v is not None}
        now = self.now()
        contact_id = self.ids.new("cnt")
        self.conn.execute(
            "INSERT INTO contacts (tenant, id, email, email_lc, properties, user_id, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (tenant, contact_id, email, email_lc, dumps(props), user_id, now, now),
        )
        self._link_waiting_events(tenant, contact_id, email_lc)
        return {
            "id": contact_id,
            "email": email,
            "properties": props,
            "userId": user_id,
            "suppressed": False,
            "unsubscribed": False,
            "createdAt": now,
            "updatedAt": now,
        }

    def update_contact(
        self,
        tenant: int,
        contact_id: str,
        *,
        email: str | None = None,
        properties: dict[str, Any] | None = None,
        user_id: Any = UNSET,
        unsubscribed: bool | None = None,
        suppressed: bool | None = None,
    ) -> dict[str, Any]:
        """Change only what is given; properties merge key by key, ``None`` removes a key."""
        contact = self.require_contact(tenant, contact_id)
        contact_id = contact["id"]
        if email is not None and email.lower() != contact["email"].lower():
            if self._contact_id_by_email(tenant, email.lower()) is not None:
                msg = f"another contact already has email {email}"
                raise ApiProblem(409, msg, field="email")
            self._link_waiting_events(tenant, contact_id, email.lower())
        if email is not None:
            contact["email"] = email
        if properties:
            merged = dict(contact["properties"])
            for key, value in properties.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            contact["properties"] = merged
        if user_id is not UNSET:
            contact["userId"] = user_id
        if unsubscribed is not None:
            contact["unsubscribed"] = unsubscribed
        if suppressed is not None:
            contact["suppressed"] = suppressed
        contact["updatedAt"] = self.now()
        self.conn.execute(
            "UPDATE contacts SET email = ?, email_lc = ?, properties = ?, user_id = ?, "
            "unsubscribed = ?, suppressed = ?, updated_at = ? WHERE tenant = ? AND id = ?",
            (
                contact["email"],
                contact["email"].lower(),
                dumps(contact["properties"]),
                contact["userId"],
                int(contact["unsubscribed"]),
                int(contact["suppressed"]),
                contact["updatedAt"],
                tenant,
                contact_id,
            ),
        )
        return contact

    def upsert_contact(
        self, tenant: int, email: str, properties: dict[str, Any], user_id: Any = UNSET
    ) -> tuple[dict[str, Any], bool]:
        """Create, or merge into the contact with this email. Returns (contact, created)."""
        existing = self._contact_id_by_email(tenant, email.lower())
        if existing is None:
            uid = None if user_id is UNSET else user_id
            return self.create_contact(tenant, email, properties, uid), True
        return (
            self.update_contact(tenant, existing, properties=properties, user_id=user_id),
            False,
        )

    def delete_contact(self, tenant: int, contact_id: str) -> None:
        """Remove the contact and everything that belongs to it."""
        contact_id = self.require_contact(tenant, contact_id)["id"]
        for table in ("contacts",):
            self.conn.execute(
                f"DELETE FROM {table} WHERE tenant = ? AND id = ?", (tenant, contact_id)
            )
        for table in ("events", "sends", "scheduled", "enrolments", "sequence_log", "memberships"):
            self.conn.execute(
                f"DELETE FROM {table} WHERE tenant = ? AND contact_id = ?", (tenant, contact_id)
            )

    def list_contacts(
        self,
        tenant: int,
        *,
        search: str | None,
        suppressed: bool | None,
        after: str | None,
        limit: int,
    ) -> Page:
        sql = f"SELECT {CONTACT_COLS} FROM contacts WHERE tenant = ?"
        params: list[Any] = [tenant]
        if search:
            sql += " AND email_lc LIKE ? ESCAPE '\\'"
            params.append(f"%{like_escape(search.lower())}%")
        if suppressed is not None:
            sql += " AND suppressed = ?"
            params.append(int(suppressed))
        if after:
            sql += " AND id > ?"
            params.append(after)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit + 1)
        return page(self.conn.execute(sql, params).fetchall(), limit, contact_row)

    # -- events -----------------------------------------------------------------------

    def track_event(
        self,
        tenant: int,
        *,
        name: str,
        contact_id: str | None,
        email: str | None,
        properties: dict[str, Any],
        timestamp: str | None,
        unknown_email: str,
    ) -> dict[str, Any]:
        """Store one event (never deduplicated) and fire matching sequence triggers."""
        now = self.now()
        email_col: str | None = None
        email_lc: str | None = None
        if contact_id is not None:
            if contact_id.startswith("con_"):
                contact_id = "cnt_" + contact_id[4:]
            row = self.conn.execute(
                "SELECT 1 FROM contacts WHERE tenant = ? AND id = ?", (tenant, contact_id)
            ).fetchone()
            if row is None:
                msg = f"no contact with id {contact_id}"
                raise ApiProblem(404, msg, field="contactId")
        else:
            assert email is not None  # noqa: S101 - the app checked that one of them is given
            email_lc = email.lower()
            contact_id = self._contact_id_by_email(tenant, email_lc)
            if contact_id is None:
                if unknown_email == "not-found":
                    msg = f"no contact with email {email}"
                    raise ApiProblem(404, msg, field="email")
                if unknown_email == "create":
                    contact_id = self.create_contact(tenant, email, {})["id"]
                else:  # link-later: keep the email, link when the contact appears
                    email_col = email
            if contact_id is not None:
                email_lc = None
        event_id = self.ids.new("evt")
        props_json = dumps(properties)
        ts = timestamp or now
        self.conn.execute(
            "INSERT INTO events (tenant, id, name, contact_id, email, email_lc, properties, "
            "timestamp, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (tenant, event_id, name, contact_id, email_col, email_lc, props_json, ts, now),
        )
        if contact_id is not None:
            sequences = self._trigger_map(tenant).get(name)
            if sequences:
                for sequence_id in sequences:
                    self._enrol(tenant, contact_id, sequence_id)
        event: dict[str, Any] = {
            "id": event_id,
            "name": name,
            "contactId": contact_id,
            "properties": properties,
            "timestamp": ts,
            "createdAt": now,
        }
        if contact_id is None:
            event["email"] = email_col
        return event

    def _system_event(
        self, tenant: int, contact_id: str, name: str, properties: dict[str, Any], ts: str
    ) -> None:
        self.conn.execute(
            "INSERT INTO events (tenant, id, name, contact_id, properties, timestamp, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (tenant, self.ids.new("evt"), name, contact_id, dumps(properties), ts, ts),
        )

    def list_events(
        self,
        tenant: int,
        *,
        contact_id: str | None,
        email: str | None,
        name: str | None,
        after: str | None,
        limit: int,
    ) -> Page:
        sql = f"SELECT {EVENT_COLS} FROM events WHERE tenant = ?"
        params: list[Any] = [tenant]
        if contact_id is not None:
            if contact_id.startswith("con_"):
                contact_id = "cnt_" + contact_id[4:]
            sql += " AND contact_id = ?"
            params.append(contact_id)
        elif email is not None:
            found = self._contact_id_by_email(tenant, email.lower())
            if found is not None:
                sql += " AND contact_id = ?"
                params.append(found)
            else:  # link-later events still waiting for this email
                sql += " AND contact_id IS NULL AND email_lc = ?"
                params.append(email.lower())
        if name is not None:
            sql += " AND name = ?"
            params.append(name)
        if after:
            sql += " AND id > ?"
            params.append(after)
        sql += " ORDER BY id LIMIT ?"
        params.append(limit + 1)
        return page(self.conn.execute(sql, params).fetchall(), limit, event_row)

    # -- sends and scheduled sends ------------------------------------------------------

    # -- sequences ----------------------------------------------------------------------

    # -- delivery (the admin "tick") -----------------------------------------------------

    # -- segments and timeline ------------------------------------------------------------
