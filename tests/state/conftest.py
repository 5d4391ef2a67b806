"""Fixtures of the state tests: every store test runs on SQLite and on PostgreSQL."""

from tests.helpers.pgstate import opener, pg_state

__all__ = ["opener", "pg_state"]
