"""Make the key-version-1 fixture: CSVs imported by kraiter-sync as it was before values
read as text were typed (every CSV value sent as text).

Run with the package of that version first on the path, e.g. from a checkout of commit
353091a:  ``PYTHONPATH=/path/to/that/checkout python tests/data/legacy_v1/generate.py``.
It writes, beside this file: ``events.csv``, ``contacts.csv`` (the inputs), and
``state/ledger.db`` plus ``kraiter.db`` (the ledger and the Kraiter it imported into).

Then it leaves the state a killed run would: 4 event keys back to ``inflight``, 2 of
whose events Kraiter holds (sent, answer lost) and 2 it does not (never applied).
"""

from __future__ import annotations

import csv
import random
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
KEY = "kr_legacy_fixture_key_0001"
BASE = "http://127.0.0.1:9"  # never contacted: the client talks to the app in-process
#: Event rows (1-based) whose keys go back to inflight; the first two stay in Kraiter.
INFLIGHT_KEPT = (5, 17)
INFLIGHT_LOST = (29, 41)


def write_inputs() -> None:
    rng = random.Random(42)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    with (HERE / "events.csv").open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["email", "event", "timestamp", "amount", "count", "vip", "zip", "plan"])
        for i in range(60):
            out.writerow(
                [
                    f"user{i % 12}@example.com",
                    rng.choice(["order_placed", "page_viewed"]),
                    (start + timedelta(minutes=13 * i)).isoformat(),
                    rng.choice(["12.50", "3.0", "0.99", "100"]),
                    str(rng.randrange(0, 20)),
                    rng.choice(["true", "false", "TRUE"]),
                    rng.choice(["02134", "94105", "10001"]),
                    rng.choice(["free", "pro"]),
                ]
            )
    with (HERE / "contacts.csv").open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["email", "age", "vip", "zip", "score"])
        for i in range(12):
            out.writerow(
                [
                    f"user{i}@example.com",
                    str(20 + i),
                    rng.choice(["true", "false"]),
                    rng.choice(["02134", "94105"]),
                    rng.choice(["1.5", "2.25", "7"]),
                ]
            )


def main() -> None:
    from kraiter_sync.client import KraiterClient
    from kraiter_sync.importer import import_
    from kraiter_sync.ledger import SCHEMA_VERSION

    from kraiter_sync.config import resolve_settings
    from kraiter_sync.emulator import EmulatorConfig, asgi_transport, create_app

    if SCHEMA_VERSION != 2:
        sys.exit("run this with the kraiter-sync of key version 1 (ledger schema 2)")
    write_inputs()
    state = HERE / "state"
    db = HERE / "kraiter.db"
    for old in (state / "ledger.db", db):
        old.unlink(missing_ok=True)
    settings = resolve_settings(api_key=KEY, base_url=BASE, state_dir=state, env={})
    app = create_app(EmulatorConfig(db_path=str(db)))

    def factory(controller: Any) -> KraiterClient:
        return KraiterClient(BASE, KEY, transport=asgi_transport(app), observer=controller)

    result = import_(
        [HERE / "contacts.csv", HERE / "events.csv"],
        settings=settings,
        client_factory=factory,
    )
    app.close()
    assert result.exit_code == 0, result.as_dict()
    # the keys of chosen rows back to inflight, as a run killed after sending leaves them
    # (by hand: the ledger never downgrades done, a killed run leaves them so)
    keys = _keys_of_rows([*INFLIGHT_KEPT, *INFLIGHT_LOST])
    ledger = sqlite3.connect(state / "ledger.db")
    lost = [keys[r] for r in INFLIGHT_LOST]
    remote = [
        ledger.execute("SELECT remote_id FROM events WHERE event_key = ?", (k,)).fetchone()[0]
        for k in lost
    ]
    with ledger:
        ledger.executemany(
            "UPDATE events SET state = 'inflight', remote_id = NULL WHERE event_key = ?",
            [(k,) for k in keys.values()],
        )
    ledger.execute("VACUUM")
    ledger.close()
    kraiter = sqlite3.connect(db)
    with kraiter:
        for rid in remote:
            kraiter.execute("DELETE FROM events WHERE id = ?", (rid,))
    kraiter.execute("VACUUM")
    kraiter.close()
    for leftover in state.iterdir():
        if leftover.name != "ledger.db":
            _remove(leftover)
    print(f"fixture written: {len(keys)} keys inflight, {len(remote)} events removed")


def _keys_of_rows(rows: list[int]) -> dict[int, str]:
    """The event keys that version gives the given CSV rows."""
    import polars as pl

    from kraiter_sync.connectors import apply, resolve_connector
    from kraiter_sync.sources import open_source
    from kraiter_sync.validate import validate_events

    with open_source(HERE / "events.csv") as source:
        frame = source.read()
        detection = resolve_connector(source.schema.names())
    valid = validate_events(apply(detection.connector, frame)).valid
    picked = valid.filter(pl.col("source_row").is_in(rows))
    return dict(zip(picked["source_row"].to_list(), picked["event_key"].to_list(), strict=True))


def _remove(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            _remove(child)
        path.rmdir()
    else:
        path.unlink()


if __name__ == "__main__":
    main()
