"""Which API key a ``--tenant`` name belongs to: the refusal both backends give."""

from __future__ import annotations

from kraiter_sync.errors import ConfigError

__all__ = ["tenant_conflict"]


def tenant_conflict(base: str, tenant: str) -> ConfigError:
    """Another key for a tenant name first used with another one (exit 2)."""
    msg = (
        f"tenant {tenant!r} was first used with another API key on {base}: this "
        "key may belong to another Kraiter account, whose ledger and watermarks "
        f"must not be mixed with {tenant}'s. If you rotated {tenant}'s key, pass "
        "--tenant-rotate once; otherwise use another --tenant"
    )
    return ConfigError(msg)
