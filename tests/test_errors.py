"""errors.py: the status → class table, exit codes, retriable / ambiguous flags."""

from __future__ import annotations

import pytest

from kraiter_sync import errors
from kraiter_sync.errors import (
    EXIT_BUSY,
    EXIT_FAILED,
    EXIT_INCOMPLETE,
    EXIT_REJECTED,
    EXIT_USAGE,
    ApiError,
    api_error_class,
)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, errors.BadRequestError),
        (401, errors.AuthenticationError),
        (403, errors.PermissionDeniedError),
        (404, errors.NotFoundError),
        (409, errors.ConflictError),
        (422, errors.UnprocessableError),
        (429, errors.RateLimitError),
        (500, errors.ServerError),
        (502, errors.ServerError),
        (503, errors.ServerError),
        (504, errors.ServerError),
        (599, errors.ServerError),
        (418, ApiError),
        (302, ApiError),
        (405, ApiError),
    ],
)
def test_api_error_class_table(status: int, cls: type[ApiError]) -> None:
    assert api_error_class(status) is cls


FLAGS: list[tuple[type[errors.KraiterSyncError], int, bool, bool]] = [
    (errors.KraiterSyncError, EXIT_FAILED, False, False),
    (errors.UsageError, EXIT_USAGE, False, False),
    (errors.ConfigError, EXIT_USAGE, False, False),
    (errors.InputError, EXIT_USAGE, False, False),
    (errors.GuardError, EXIT_USAGE, False, False),
    (errors.TransportError, EXIT_INCOMPLETE, True, False),
    (errors.ConnectError, EXIT_INCOMPLETE, True, False),
    (errors.ResponseLostError, EXIT_INCOMPLETE, True, True),
    (errors.ApiError, EXIT_FAILED, False, False),
    (errors.BadRequestError, EXIT_FAILED, False, False),
    (errors.AuthenticationError, EXIT_USAGE, False, False),
    (errors.PermissionDeniedError, EXIT_USAGE, False, False),
    (errors.NotFoundError, EXIT_FAILED, False, False),
    (errors.ConflictError, EXIT_FAILED, False, False),
    (errors.UnprocessableError, EXIT_FAILED, False, False),
    (errors.RateLimitError, EXIT_INCOMPLETE, True, False),
    (errors.ServerError, EXIT_INCOMPLETE, True, True),
    (errors.StateError, EXIT_FAILED, False, False),
    (errors.StateConnectError, EXIT_USAGE, False, False),
    (errors.LockHeldError, EXIT_BUSY, False, False),
    (errors.IncompleteError, EXIT_INCOMPLETE, False, False),
    (errors.TooManyRejectsError, EXIT_REJECTED, False, False),
]


@pytest.mark.parametrize(("cls", "exit_code", "retriable", "ambiguous"), FLAGS)
def test_flags_and_exit_codes(
    cls: type[errors.KraiterSyncError], exit_code: int, retriable: bool, ambiguous: bool
) -> None:
    assert cls.exit_code == exit_code
    assert cls.retriable is retriable
    assert cls.ambiguous is ambiguous


def test_every_exported_error_is_in_the_flag_table() -> None:
    exported = {
        getattr(errors, name) for name in errors.__all__ if isinstance(getattr(errors, name), type)
    }
    # RequestTimeoutError decides ``ambiguous`` per instance: tested below.
    assert exported == {row[0] for row in FLAGS} | {errors.RequestTimeoutError}


@pytest.mark.parametrize(("sent", "ambiguous"), [(True, True), (False, False)])
def test_request_timeout_is_ambiguous_only_when_sent(sent: bool, ambiguous: bool) -> None:
    err = errors.RequestTimeoutError("timed out", method="POST", path="/api/events", sent=sent)
    assert err.ambiguous is ambiguous
    assert err.retriable
    assert (err.method, err.path, err.sent) == ("POST", "/api/events", sent)


def test_api_error_carries_request_and_answer() -> None:
    err = errors.RateLimitError(
        "slow down",
        method="POST",
        path="/api/events",
        status=429,
        code=None,
        retry_after=2.0,
        details={"limit": 10},
    )
    assert (err.method, err.path, err.http_status, err.code) == (
        "POST",
        "/api/events",
        429,
        "RATE_LIMITED",
    )
    assert err.retry_after == 2.0
    assert err.details == {"limit": 10}
    assert str(err) == "429 RATE_LIMITED from Kraiter on POST /api/events: slow down"


def test_status_defaults_to_the_class_status() -> None:
    assert errors.NotFoundError("x", method="GET", path="/p").http_status == 404
    assert errors.ServerError("x", method="GET", path="/p", status=503).http_status == 503


def test_auth_errors_name_the_next_step() -> None:
    err = errors.AuthenticationError("unknown key", method="GET", path="/api/contacts")
    assert "KRAITER_API_KEY" in str(err)
    assert "--api-key" in str(err)
    forbidden = errors.PermissionDeniedError("no", method="GET", path="/api/contacts")
    assert "permissions" in str(forbidden)
