"""C sources of the validator's fast path (``kraiter_native.c`` + vendored ``xxhash.h``,
BSD-2-Clause, see ``LICENSE-xxhash``) and how they are built (:mod:`.build`). Loaded by
:mod:`kraiter_sync.validate.native`."""
