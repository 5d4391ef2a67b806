"""The compiled fast path of the validator (``kraiter_sync/native/kraiter_native.c``).

The events validator's hot loops run in C over the Arrow buffers polars holds, one pass
each: email trimming/lowercasing/checking, numbering event names by distinct value, ISO
timestamp formatting, event-key hashing (XXH3-128 from the vendored ``xxhash.h``), flat
properties JSON and the seen-key set. Each wrapper returns exactly what the polars path
returns (``tests/test_validate_native.py`` compares them) and hands what it can't decide
back to that path (returning None, or a status per row), so rule codes and messages are
decided in one place only.

The library is loaded with :mod:`ctypes` (no Python C API, and the GIL is released
during each call). A wheel built by ``hatch_build.py`` carries it prebuilt; otherwise it
is compiled once with the system C compiler into the user cache
(``$XDG_CACHE_HOME/kraiter-sync/native``), named by a digest of its sources so an
upgrade rebuilds it. Without a compiler everything still works, on the polars path.

``KRAITER_SYNC_NATIVE=0`` turns the fast path off; ``=require`` makes its absence an
error. (The test suite fails under ``CI`` when the library doesn't build, so the fast path
cannot silently go untested.)
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import threading
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from kraiter_sync.logs import get_logger
from kraiter_sync.native.build import SOURCE_DIR, compile_library, library_name

__all__ = [
    "NativeKeySet",
    "available",
    "distinct",
    "emails",
    "event_keys",
    "iso_ms",
    "json_objects",
    "library",
    "library_name",
]

ABI = 8
_ENV = "KRAITER_SYNC_NATIVE"
_log = get_logger("native")
_p = ctypes.c_void_p
_i64 = ctypes.c_int64


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kraiter-sync" / "native"


def _find_or_build() -> Path:
    name = library_name()
    prebuilt = SOURCE_DIR / name  # shipped in the wheel by hatch_build.py
    if prebuilt.exists():
        return prebuilt
    cached = _cache_dir() / name
    if not cached.exists():
        _log.debug("compiling the native validator into %s", cached)
        compile_library(cached)
    return cached


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    sig: dict[str, tuple[Any, list[Any]]] = {
        "ks_abi": (ctypes.c_int, []),
        "ks_init": (None, []),
        "ks_view_bytes": (_i64, [_i64, _p]),
        "ks_emails": (_i64, [_i64, _p, _p, _p, _i64, _p]),
        "ks_distinct": (_i64, [_i64, _p, _i64, _p, _p]),
        "ks_iso_ms": (ctypes.c_int, [_i64, _p, _p, _p]),
        "ks_keys": (ctypes.c_int, [_i64, _p, _p, _p, _p, _p, _p, _p, _p, _p, _p]),
        "ks_json_objects": (_i64, [_i64, _i64, _p, _p, _p, _p, _p, _p, _i64]),
        "ks_set_new": (_p, []),
        "ks_set_free": (None, [_p]),
        "ks_set_count": (ctypes.c_uint64, [_p]),
        "ks_set_bytes": (ctypes.c_uint64, [_p]),
        "ks_set_mark": (_i64, [_p, _i64, _p, _p, _p, _p]),
        "ks_set_reserve": (ctypes.c_int, [_p, ctypes.c_uint64]),
        "ks_set_contains": (None, [_p, _i64, _p, _p, _p]),
    }
    for fn, (res, args) in sig.items():
        f = getattr(lib, fn)
        f.restype = res
        f.argtypes = args
    return lib


def _load(path: Path) -> ctypes.CDLL:
    lib = _bind(ctypes.CDLL(str(path)))
    if lib.ks_abi() != ABI:
        msg = f"native validator ABI {lib.ks_abi()} != {ABI} in {path}"
        raise OSError(msg)
    lib.ks_init()
    return lib


_LOCK = threading.Lock()


def library() -> ctypes.CDLL | None:
    """The loaded library, or None when turned off or impossible (then polars does it all).

    Loaded once per process, under a lock: the validator's worker threads ask at once."""
    with _LOCK:
        return _library()


@cache
def _library() -> ctypes.CDLL | None:
    mode = os.environ.get(_ENV, "").strip().lower()
    if mode in {"0", "off", "false", "no"}:
        return None
    try:
        lib = _load(_find_or_build())
    except (OSError, subprocess.SubprocessError) as exc:
        if mode == "require":
            msg = f"{_ENV}=require but the native validator is unavailable: {exc}"
            raise RuntimeError(msg) from exc
        _log.debug("native validator unavailable, using the polars path: %s", exc)
        return None
    return lib


def available() -> bool:
    return library() is not None


# --- Arrow buffer plumbing ---------------------------------------------------------------


_EMPTY = pa.py_buffer(b"\0" * 8)


class _View(ctypes.Structure):
    """``ks_view``: a string_view array as polars holds it (no copy)."""

    _fields_ = (
        ("views", _p),
        ("bufs", _p),
        ("validity", _p),
        ("voff", _i64),
    )


class _Strings:
    """A String series as its Arrow string_view buffers (kept alive while in use)."""

    def __init__(self, s: pl.Series) -> None:
        arr = s.cast(pl.String).rechunk().to_arrow(compat_level=pl.CompatLevel.newest())
        if not pa.types.is_string_view(arr.type):  # pragma: no cover - older polars
            arr = arr.cast(pa.string_view())
        self.arr = arr
        validity, views, *data = arr.buffers()
        if views is None:  # pragma: no cover - arrow always has the views buffer
            msg = "string_view array without views"
            raise ValueError(msg)
        self._bufs = (_p * max(len(data), 1))(*[b.address if b is not None else 0 for b in data])
        self.view = _View(
            views.address + 16 * arr.offset,
            ctypes.cast(self._bufs, _p),
            validity.address if validity is not None and arr.null_count else None,
            arr.offset,
        )

    def total_bytes(self, lib: ctypes.CDLL) -> int:
        """Bytes of all the strings, counted per row: views can share bytes, so the data
        buffers' sizes are no bound for an output that copies them."""
        return int(lib.ks_view_bytes(len(self.arr), self.ref))

    @property
    def ref(self) -> Any:
        return ctypes.byref(self.view)


def _words(s: pl.Series, dtype: pl.DataType, width: int = 8) -> tuple[pa.Array, int]:
    """``s`` as one Arrow array of ``width``-byte values, and the address of its first."""
    arr = s.cast(dtype).rechunk().to_arrow()
    values = arr.buffers()[1]
    return arr, int(values.address if values is not None else _EMPTY.address) + width * arr.offset


class _Integers:
    """An integer series as a ``ks_view`` over its 8-byte values (kinds 2 and 3)."""

    def __init__(self, s: pl.Series) -> None:
        self.kind = 3 if s.dtype.is_unsigned_integer() else 2
        self.arr, start = _words(s, pl.UInt64() if self.kind == 3 else pl.Int64())
        validity = self.arr.buffers()[0]
        self.view = _View(
            start,
            None,
            validity.address if validity is not None and self.arr.null_count else None,
            self.arr.offset,
        )


class _Lease:
    """Holds a pooled block while polars holds the buffer made of it; hands it back after."""

    __slots__ = ("block", "pool")

    def __init__(self, pool: _BlockPool, block: pa.Buffer) -> None:
        self.pool, self.block = pool, block

    def __del__(self) -> None:
        self.pool.put(self.block)


class _BlockPool:
    """Output blocks kept for reuse once polars drops what was made of them.

    Every chunk needs the same few large outputs (tens of MiB); fresh memory for each
    cost a page fault per 4 KiB (about 7% of a validation run). Blocks are sized in
    1 MiB steps and at most ``limit`` bytes are kept idle.
    """

    STEP = 1 << 20

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._idle: dict[int, list[pa.Buffer]] = {}
        self._idle_bytes = 0
        # re-entrant: a lease can be dropped (and hand its block back) in any thread at
        # any point, including inside get() or put() of the thread that holds the lock
        self._lock = threading.RLock()

    def get(self, size: int) -> pa.Buffer:
        if size < self.STEP:
            return pa.allocate_buffer(max(size, 8))
        cls = -(-size // self.STEP) * self.STEP
        with self._lock:
            stack = self._idle.get(cls)
            block = stack.pop() if stack else None
            if block is not None:
                self._idle_bytes -= cls
        if block is None:
            block = pa.allocate_buffer(cls)
        return pa.foreign_buffer(block.address, size, base=_Lease(self, block))

    def put(self, block: pa.Buffer) -> None:
        with self._lock:
            if self._idle_bytes + block.size <= self.limit:
                self._idle.setdefault(block.size, []).append(block)
                self._idle_bytes += block.size


_POOL = _BlockPool(limit=256 << 20)


def _buffer(size: int) -> pa.Buffer:
    return _POOL.get(size)


#: String outputs are string_view arrays with one data buffer: view offsets are int32.
_MAX_DATA = 2**31 - 1


def _strings(n: int, views: pa.Buffer, data: pa.Buffer, name: str) -> pl.Series:
    arr = pa.Array.from_buffers(pa.string_view(), n, [None, views, data])
    return pl.Series(name, arr)


def _numbers(n: int, buf: pa.Buffer, typ: pa.DataType, name: str) -> pl.Series:
    return pl.Series(name, pa.Array.from_buffers(typ, n, [None, buf]))


# --- the four loops ------------------------------------------------------------------------


def emails(values: pl.Series) -> tuple[pl.Series, pl.Series] | None:
    """(trimmed lowercased text, status) per row; see ``ks_emails`` for the status codes."""
    lib = library()
    if lib is None:
        return None
    n = len(values)
    src = _Strings(values)
    size = src.total_bytes(lib)
    if size > _MAX_DATA:
        return None
    views, out_data, status = _buffer(16 * n), _buffer(size), _buffer(n)
    if lib.ks_emails(n, src.ref, views.address, out_data.address, size, status.address) < 0:
        return None  # cannot happen with the size above; never write past the buffer

    return _strings(n, views, out_data, "email"), _numbers(n, status, pa.uint8(), "status")


def distinct(values: pl.Series, max_distinct: int) -> tuple[pl.Series, pl.Series] | None:
    """(``codes``, ``first_rows``): each row's value numbered by first appearance (nulls get
    the number one past the last) and the row where each value first appears; None when
    there are more than ``max_distinct`` values."""
    lib = library()
    n = len(values)
    if lib is None or n >= 2**32:
        return None
    src = _Strings(values)
    codes, first = _buffer(4 * n), _buffer(8 * (max_distinct + 1))
    count = lib.ks_distinct(n, src.ref, max_distinct, codes.address, first.address)
    if count < 0:
        return None
    return (
        _numbers(n, codes, pa.uint32(), "code"),
        _numbers(int(count), first, pa.int64(), "row"),
    )


def iso_ms(us: pl.Series) -> pl.Series | None:
    """UTC microseconds since the epoch (Int64) → ``YYYY-MM-DDTHH:MM:SS.sssZ``; None when
    the C path can't (nulls, years outside 1..9999)."""
    lib = library()
    n = len(us)
    if lib is None or us.null_count() or 24 * n > _MAX_DATA:
        return None
    _arr, start = _words(us, pl.Int64())  # (the array keeps the values alive)
    views, out = _buffer(16 * n), _buffer(24 * n)
    if lib.ks_iso_ms(n, start, views.address, out.address) != 0:
        return None
    return _strings(n, views, out, us.name)


def _flags(mask: pl.Series) -> tuple[pa.Array, int]:
    """A Boolean series (no nulls) as one byte a row, and the address of the first."""
    return _words(mask, pl.UInt8(), width=1)


def event_keys(frame: pl.DataFrame, skip: pl.Series | None = None) -> pl.DataFrame | None:
    """``event_key``, ``hi``, ``lo`` as :func:`kraiter_sync.validate.keys.key_parts` makes
    them; None when a row lacks a part (that path then produces its nulls). Rows where
    ``skip`` is True (rejected rows) are not read; their key is all zeros."""
    lib = library()
    n = frame.height
    if lib is None or 32 * n > _MAX_DATA:
        return None
    contact, email = frame["contact_id"], frame["email"]
    live = ~skip if skip is not None else None

    def lacks(missing: pl.Series) -> bool:
        return bool((missing & live).any() if live is not None else missing.any())

    if any(
        frame[c].null_count() and lacks(frame[c].is_null())
        for c in ("name", "timestamp_iso", "properties")
    ):
        return None
    if email.null_count() and lacks(contact.is_null() & email.is_null()):
        return None
    cols = [_Strings(frame[c]) for c in ("email", "name", "timestamp_iso", "properties")]
    c = _Strings(contact) if contact.null_count() < n else None
    _held, skip_at = _flags(skip) if skip is not None else (None, None)
    hex_views, hexes = _buffer(16 * n), _buffer(32 * n)
    hi, lo = _buffer(8 * n), _buffer(8 * n)
    rc = lib.ks_keys(
        n,
        c.ref if c else None,
        *[s.ref for s in cols],
        skip_at,
        hex_views.address,
        hexes.address,
        hi.address,
        lo.address,
    )
    if rc != 0:
        msg = "native event-key hashing ran out of memory"
        raise MemoryError(msg)
    return pl.DataFrame(
        [
            _numbers(n, hi, pa.uint64(), "hi"),
            _numbers(n, lo, pa.uint64(), "lo"),
            _strings(n, hex_views, hexes, "event_key"),
        ]
    )


#: Leaf types whose JSON text is their polars String cast (floats included: checked
#: against ``struct.json_encode`` in the tests); integers are formatted in C; anything
#: else takes the polars path.
_RAW_JSON = (pl.Boolean, pl.Float64)
_INTEGERS = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)


def json_objects(frame: pl.DataFrame) -> pl.Series | None:
    """One compact JSON object per row from flat columns (keys in column order), leaving
    out null values, exactly as ``struct.json_encode`` minus its ``"key":null`` entries.
    None when a column's type isn't handled here."""
    lib = library()
    if lib is None or not all(
        d == pl.String or d in _RAW_JSON or d in _INTEGERS for d in frame.dtypes
    ):
        return None
    n, width = frame.height, frame.width
    cols: list[_Strings | _Integers] = []
    kind_list = []
    for name, dtype in frame.schema.items():
        if dtype in _INTEGERS:
            ints = _Integers(frame[name])
            cols.append(ints)
            kind_list.append(ints.kind)
        else:
            cols.append(_Strings(frame[name]))
            kind_list.append(0 if dtype == pl.String else 1)
    kinds = (ctypes.c_int32 * width)(*kind_list)
    keys = [json.dumps(c, ensure_ascii=False).encode() + b":" for c in frame.columns]
    key_off = (_i64 * (width + 1))(*[sum(len(k) for k in keys[:j]) for j in range(width + 1)])
    key_data = ctypes.create_string_buffer(b"".join(keys) + b"\0" * 16)  # (read 16 at a time)
    views = (_View * width)(*[c.view for c in cols])
    args = (n, width, views, kinds, key_off, key_data)
    # An upper bound spares a sizing pass over every value (untouched pages of the
    # buffer cost no memory): braces, commas and keys, then per value at most 6 bytes
    # per string byte escaped plus quotes, the text itself, or 20 digits.
    size = n * (2 + sum(len(k) + 1 for k in keys))
    for col, kind in zip(cols, kind_list, strict=True):
        if isinstance(col, _Integers):
            size += 20 * n
        else:
            text = col.total_bytes(lib)
            size += 6 * text + 2 * n if kind == 0 else text
    if size > _MAX_DATA:
        size = lib.ks_json_objects(*args, None, None, 0)  # exact
        if size > _MAX_DATA:
            return None
    out_views, out = _buffer(16 * n), _buffer(size)
    if lib.ks_json_objects(*args, out_views.address, out.address, size) < 0:
        return None  # cannot happen with the bound above; never write past the buffer
    return _strings(n, out_views, out, "properties")


class NativeKeySet:
    """The seen-key set in C: 16 bytes a slot, at most 3/4 full (see ``ks_set_mark``)."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        self._handle = lib.ks_set_new()
        if not self._handle:
            msg = "cannot allocate the seen-key set"
            raise MemoryError(msg)

    def __del__(self) -> None:
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            self._lib.ks_set_free(handle)

    @property
    def count(self) -> int:
        return int(self._lib.ks_set_count(self._handle))

    @property
    def nbytes(self) -> int:
        return int(self._lib.ks_set_bytes(self._handle))

    def reserve(self, n: int) -> bool:
        """Room for ``n`` keys in all, made now; False when the memory isn't there (the
        set then grows as keys come, as without a reservation)."""
        return int(self._lib.ks_set_reserve(self._handle, n)) == 0

    @staticmethod
    def _halves(hi: pl.Series, lo: pl.Series) -> tuple[pa.Array, int, pa.Array, int]:
        a, a_start = _words(hi, pl.UInt64())
        b, b_start = _words(lo, pl.UInt64())
        if a.null_count or b.null_count:
            msg = "event key halves must not be null"
            raise ValueError(msg)
        return a, a_start, b, b_start

    def mark(self, hi: pl.Series, lo: pl.Series, skip: pl.Series | None = None) -> pl.Series:
        """True for each key not seen before (earlier rows count); remembers them. Rows
        where ``skip`` is True are False and not remembered."""
        n = len(hi)
        _a, hi_start, _b, lo_start = self._halves(hi, lo)
        _held, skip_at = _flags(skip) if skip is not None else (None, None)
        out = _buffer(n)
        if self._lib.ks_set_mark(self._handle, n, hi_start, lo_start, skip_at, out.address) < 0:
            msg = "the seen-key set cannot grow (out of memory)"
            raise MemoryError(msg)
        return _numbers(n, out, pa.uint8(), "first").cast(pl.Boolean)

    def contains(self, hi: pl.Series, lo: pl.Series) -> pl.Series:
        n = len(hi)
        _a, hi_start, _b, lo_start = self._halves(hi, lo)
        out = _buffer(n)
        self._lib.ks_set_contains(self._handle, n, hi_start, lo_start, out.address)
        return _numbers(n, out, pa.uint8(), "found").cast(pl.Boolean)
