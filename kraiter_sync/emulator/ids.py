"""Ids and cursors.

Ids are a prefix plus a ULID-like body (48-bit milliseconds, 80 random bits, Crockford
base32) that is *monotonic* within a process: a later id always sorts after an earlier
one, so "order by id" is creation order and a cursor holding the last id is stable
while records are appended.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import threading
import time

__all__ = ["IdGenerator", "decode_cursor", "encode_cursor"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits per lookup
_RAND_BITS = 80
_RAND_MAX = (1 << _RAND_BITS) - 1


def _encode(value: int) -> str:
    """128-bit integer → 26 Crockford characters (2 leading bits pad to 130)."""
    chars = []
    for _ in range(13):
        chars.append(_PAIRS[value & 0x3FF])
        value >>= 10
    return "".join(reversed(chars))


class IdGenerator:
    """Thread-safe monotonic ULID-like bodies."""

    def __init__(self) -> None:
        # Ids must be unique and ordered, not unguessable.
        self._rng = random.Random()  # noqa: S311
        self._lock = threading.Lock()
        self._last_ms = 0
        self._last_rand = 0

    def body(self) -> str:
        with self._lock:
            now_ms = time.time_ns() // 1_000_000
            if now_ms <= self._last_ms:
                now_ms = self._last_ms
                rand = self._last_rand + 1
                if rand > _RAND_MAX:  # pragma: no cover - 2**80 ids in one millisecond
                    now_ms += 1
                    rand = 0
            else:
                # Leave head-room so the increments of a busy millisecond never overflow.
                rand = self._rng.getrandbits(_RAND_BITS - 1)
            self._last_ms = now_ms
            self._last_rand = rand
        return _encode((now_ms << _RAND_BITS) | rand)

    def new(self, prefix: str) -> str:
        return f"{prefix}_{self.body()}"

    def observe(self, existing_id: str | None) -> None:
        """Never go below an id already stored (a file database outlives the process)."""
        if not existing_id or "_" not in existing_id:
            return
        body = existing_id.split("_", 1)[1]
        value = 0
        try:
            for ch in body:
                value = value * 32 + _CROCKFORD.index(ch)
        except ValueError:
            return
        ms, rand = value >> _RAND_BITS, value & _RAND_MAX
        with self._lock:
            if (ms, rand) > (self._last_ms, self._last_rand):
                self._last_ms, self._last_rand = ms, rand


def encode_cursor(payload: dict[str, str]) -> str:
    """Opaque cursor: base64 of a small JSON object such as ``{"id": "<last id>"}``."""
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, str] | None:
    """The cursor's payload, or ``None`` when it is not one of ours."""
    text = cursor.strip().replace("+", "-").replace("/", "_")
    text += "=" * (-len(text) % 4)
    try:
        payload = json.loads(base64.urlsafe_b64decode(text))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
        return None
    if not all(isinstance(v, str) for v in payload.values()):
        return None
    return payload
