"""`kraiter-sync export` end to end: real HTTP, exit codes, and a SIGKILLed process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from kraiter_sync.cli import main
from kraiter_sync.emulator import EmulatorConfig, create_app, serve_in_thread
from tests.helpers.exports import KEY, client_for, read_output, row_ids, seeded_db, truth
from tests.helpers.paths import REPO_ROOT


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, object]]:
    """A seeded emulator on real HTTP with a little latency (so a run can be killed)."""
    db = seeded_db(tmp_path / "kraiter.db", events=150)
    app = create_app(EmulatorConfig(db_path=db, latency_ms=15))
    with serve_in_thread(app=app) as url:
        yield url, app
    app.close()


def _env(url: str, tmp_path: Path, cli_env: dict[str, str]) -> dict[str, str]:
    return {**cli_env, "KRAITER_BASE_URL": url, "KRAITER_API_KEY": KEY}


def test_export_cli_writes_files_and_prints_a_summary(
    served: tuple[str, object], tmp_path: Path, cli_env: dict[str, str]
) -> None:
    url, _ = served
    env = _env(url, tmp_path, cli_env)
    result = CliRunner().invoke(
        main, ["export", "contacts", "--out", str(tmp_path / "out"), "--format", "csv"], env=env
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("exported 5 contacts rows (snapshot)")
    assert KEY not in result.output
    assert read_output(tmp_path / "out" / "contacts", "csv").height == 5


def test_contacts_flag_on_a_feed_stream_is_a_usage_error(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    listed = tmp_path / "vip.txt"
    listed.write_text("email\nann@example.com\n")
    result = CliRunner().invoke(
        main,
        ["export", "events", "--out", str(tmp_path / "o"), "--contacts", str(listed)],
        env=cli_env,
    )
    assert result.exit_code == 2
    assert "error: --contacts applies to the per-contact streams" in result.stderr


def test_out_of_retries_exits_4(tmp_path: Path, cli_env: dict[str, str]) -> None:
    config = EmulatorConfig(fail_rate=1.0, seed=1)
    with serve_in_thread(config) as url:
        result = CliRunner().invoke(
            main,
            ["export", "events", "--out", str(tmp_path / "o"), "--max-retries", "0"],
            env=_env(url, tmp_path, cli_env),
        )
    assert result.exit_code == 4
    assert "re-run the same command to resume" in result.stderr
    assert "Traceback" not in result.output


def test_sigkilled_export_resumes_without_duplicates(
    served: tuple[str, object], tmp_path: Path, cli_env: dict[str, str], python: str
) -> None:
    url, app = served
    env = _env(url, tmp_path, cli_env)
    out = tmp_path / "out"
    args = [
        python,
        "-m",
        "kraiter_sync",
        "export",
        "events",
        "--out",
        str(out),
        "--page-size",
        "5",
        "--chunk-rows",
        "5",
    ]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    try:
        # a few checkpoints are in the run's hidden staging folder
        while len(list(out.glob(".events.run-*/chunk-*.arrow"))) < 3:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint was written in time"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    partial = read_output(out / "events", "parquet").height
    assert partial == 0  # nothing is visible before the run ends
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "resuming the interrupted events export" in done.stderr

    async def expected() -> list[str]:
        async with client_for(app) as client:  # type: ignore[arg-type]
            return await truth(client, "events")

    want = asyncio.run(expected())
    got = row_ids("events", read_output(out / "events", "parquet"))
    assert partial < len(want)
    assert len(got) == len(set(got))
    assert sorted(got) == sorted(want)


def test_docs_name_every_export_option_and_column() -> None:
    from kraiter_sync.export import SCHEMAS

    text = (REPO_ROOT / "docs" / "export.md").read_text()
    command = main.commands["export"]
    common = {
        "--api-key",
        "--base-url",
        "--state-dir",
        "--state",
        "--config",
        "--quiet",
        "--verbose",
    }
    common |= {"--log-format", "--help", "--json", "--heartbeat"}
    for param in command.params:
        for opt in param.opts:
            if opt.startswith("--") and opt not in common:
                assert f"`{opt}" in text, f"{opt} is not documented in docs/export.md"
    for stream, schema in SCHEMAS.items():
        rows = [ln for ln in text.splitlines() if ln.startswith(f"| {stream} | `")]
        assert len(rows) == 1, stream
        documented = [c.split("`")[1] for c in rows[0].split(", ")]
        assert documented == list(schema), stream


def test_a_held_export_lock_exits_5_busy_and_writes_nothing(
    served: tuple[str, object], tmp_path: Path, cli_env: dict[str, str]
) -> None:
    from kraiter_sync.config import resolve_settings
    from kraiter_sync.export.state import ExportState, state_path

    url, _ = served
    env = _env(url, tmp_path, cli_env)
    out = tmp_path / "out"
    settings = resolve_settings(api_key=KEY, base_url=url, state_dir=tmp_path / "state", env={})
    held = ExportState(state_path(settings.state_dir, settings.target, "contacts", out))
    with held.locked():
        result = CliRunner().invoke(main, ["export", "contacts", "--out", str(out)], env=env)
    assert result.exit_code == 5, result.output
    assert result.stderr.splitlines() == [
        "error: another export of this stream to this directory is running "
        f"(lock {held.path.with_suffix('.lock')}, held by pid {os.getpid()}); wait for it to "
        "finish",
        "busy: another run holds the state lock, nothing was started",
    ]
    assert not (out / "contacts").exists()


def test_a_tenant_name_refuses_another_accounts_key_for_export(
    served: tuple[str, object], tmp_path: Path, cli_env: dict[str, str]
) -> None:
    url, _ = served
    out = tmp_path / "out"
    args = ["export", "events", "--out", str(out), "--tenant", "acme"]
    first = CliRunner().invoke(main, args, env=_env(url, tmp_path, cli_env))
    assert first.exit_code == 0, first.output
    other = {**_env(url, tmp_path, cli_env), "KRAITER_API_KEY": "kr_another_account"}
    second = CliRunner().invoke(main, args, env=other)
    assert second.exit_code == 2
    assert "tenant 'acme' was first used with another API key" in second.stderr
    assert "kr_another_account" not in second.output


def test_export_into_a_folder_with_the_users_files_is_refused_and_loses_nothing(
    served: tuple[str, object], tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """mkdir -p X/contacts/sub; echo hi > X/contacts/thesis.docx; export contacts --out X"""
    url, _ = served
    env = _env(url, tmp_path, cli_env)
    out = tmp_path / "X"
    (out / "contacts" / "sub").mkdir(parents=True)
    (out / "contacts" / "thesis.docx").write_text("hi\n")
    args = ["export", "contacts", "--out", str(out)]
    refused = CliRunner().invoke(main, args, env=env)
    assert refused.exit_code == 2
    assert isinstance(refused.exception, SystemExit)
    assert refused.stderr.splitlines()[-1] == (
        f"error: refusing to export into {out / 'contacts'}: it holds 2 files kraiter-sync did "
        "not write (sub/, thesis.docx). Choose another --out, or pass --overwrite to export "
        "there anyway: kraiter-sync only ever replaces or deletes the files it wrote"
    )
    for extra in ([], ["--overwrite"]):
        result = CliRunner().invoke(main, [*args, *extra], env=env)
        if extra:
            assert result.exit_code == 0, result.output
            assert read_output(out / "contacts", "parquet").height == 5
        assert (out / "contacts" / "thesis.docx").read_text() == "hi\n"
        assert (out / "contacts" / "sub").is_dir()
    again = CliRunner().invoke(main, args, env=env)  # claimed now: no --overwrite needed
    assert again.exit_code == 0, again.output
    assert (out / "contacts" / "thesis.docx").read_text() == "hi\n"
    assert len(list((out / "contacts").glob("part-*"))) == 1


@pytest.mark.parametrize("what", ["symlink", "file"])
def test_a_link_or_file_in_place_of_the_stream_folder_is_a_clear_error(
    served: tuple[str, object], tmp_path: Path, cli_env: dict[str, str], what: str
) -> None:
    url, _ = served
    out = tmp_path / "X"
    out.mkdir()
    if what == "symlink":
        (tmp_path / "home").mkdir()
        (out / "events").symlink_to(tmp_path / "home")
    else:
        (out / "events").write_text("not a folder")
    result = CliRunner().invoke(
        main, ["export", "events", "--out", str(out), "--full"], env=_env(url, tmp_path, cli_env)
    )
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    expected = "is a symbolic link" if what == "symlink" else "is a file, where the events export"
    assert f"error: {out / 'events'} {expected}" in result.stderr
    if what == "symlink":
        assert list((tmp_path / "home").iterdir()) == []


@pytest.mark.parametrize("answer", ["y", "n"])
def test_replace_names_what_it_deletes_and_asks_on_a_terminal(
    served: tuple[str, object],
    tmp_path: Path,
    cli_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
) -> None:
    from kraiter_sync.cli import export as export_cli

    url, _ = served
    env = _env(url, tmp_path, cli_env)
    out = tmp_path / "X"
    args = ["export", "events", "--out", str(out)]
    assert CliRunner().invoke(main, args, env=env).exit_code == 0
    before = sorted((out / "events").rglob("part-*"))
    monkeypatch.setattr(export_cli, "_interactive", lambda: True)
    result = CliRunner().invoke(main, [*args, "--replace"], env=env, input=f"{answer}\n")
    assert f"then deletes the {len(before)} files" in result.stderr
    assert "Continue?" in result.stderr
    if answer == "n":
        assert result.exit_code == 2
        assert "not confirmed: nothing was exported or deleted" in result.stderr
        assert sorted((out / "events").rglob("part-*")) == before
    else:
        assert result.exit_code == 0, result.output
        assert f"{len(before)} earlier file(s) replaced" in result.stdout
        assert not set(before) & set((out / "events").rglob("part-*"))


def test_since_and_until_export_a_window_beside_the_stream(
    served: tuple[str, object], tmp_path: Path, cli_env: dict[str, str]
) -> None:
    url, _ = served
    env = _env(url, tmp_path, cli_env)
    out = tmp_path / "X"
    args = ["export", "events", "--out", str(out)]
    assert CliRunner().invoke(main, args, env=env).exit_code == 0
    before = sorted((out / "events").rglob("*"))
    window = [*args, "--since", "2025-03-02", "--until", "2025-03-03"]
    result = CliRunner().invoke(main, window, env=env)
    assert result.exit_code == 0, result.output
    assert "(window)" in result.stdout
    assert sorted((out / "events").rglob("*")) == before
    got = read_output(out / "events-since-2025-03-02-until-2025-03-03", "parquet")
    assert set(got["timestamp"].dt.strftime("%Y-%m-%d")) == {"2025-03-02"}


def test_to_duckdb_and_compact_from_the_command_line(
    served: tuple[str, object], tmp_path: Path, cli_env: dict[str, str]
) -> None:
    url, _ = served
    env = _env(url, tmp_path, cli_env)
    db = tmp_path / "a.duckdb"
    result = CliRunner().invoke(main, ["export", "contacts", "--to", f"duckdb:///{db}"], env=env)
    assert result.exit_code == 0, result.output
    assert "5 rows in the table" in result.stdout
    import duckdb

    with duckdb.connect(str(db)) as conn:
        assert conn.execute("SELECT count(*) FROM kraiter_contacts").fetchone() == (5,)
    out = tmp_path / "X"
    for _ in range(2):
        assert (
            CliRunner().invoke(main, ["export", "sends", "--out", str(out)], env=env).exit_code == 0
        )
    compacted = CliRunner().invoke(main, ["export", "compact", "--out", str(out)], env=env)
    assert compacted.exit_code == 0, compacted.output
    assert compacted.stdout.startswith(f"compacted {out / 'sends'}: ")
    for both in (["--out", str(out), "--to", f"duckdb:///{db}"], []):
        refused = CliRunner().invoke(main, ["export", "events", *both], env=env)
        assert refused.exit_code == 2
        assert "give one destination: --out DIR (files) or --to URL" in refused.stderr
