"""Docs that cannot drift: every shell and Python example in README.md and docs/*.md runs.

Each page gets a temporary directory holding a copy of ``sample_data/`` and its own local
Kraiter served on 127.0.0.1 (a free port, stopped after); the page's blocks then run in
order in that directory, as a reader following the page would run them, with
``KRAITER_API_KEY`` and ``KRAITER_BASE_URL`` pointing at that Kraiter:

- ``bash`` / ``sh`` blocks run as one ``bash -e`` script: exit code 0 unless the page says
  otherwise;
- ``console`` blocks are transcripts: each ``$ `` line runs through bash as typed at a
  prompt (no ``-e``; exit 0 unless the page says otherwise for the last one), and the
  lines shown after it must each appear in what it printed (stdout and stderr
  interleaved, as on a terminal), in order. ``…``
  in a shown line stands for anything, and so do durations and rates (``0.6 s``,
  ``251.3s``, ``4,792 rows/s``), which differ on every run;
- ``python`` blocks run in a subprocess of this interpreter.

Other languages (``toml``, ``ini``, ``cron``, ``text``, ``pyi``: signatures) are not run;
the configuration files docs/sync.md shows are checked by tests/sync/test_docs.py.
Every fence names its language. An HTML comment right before a block steers it::

    <!-- docs-test: skip because REASON -->     not run; counted, and the list stays short
    <!-- docs-test: instead SCRIPT because REASON -->
                                                 SCRIPT runs in its place (the part of the
                                                 block CI can run); counted as a skip
    <!-- docs-test: exit N -->                  the block (its last command) exits N
    <!-- docs-test: postgres -->                $STATE_URL names a fresh schema of the
                                                 test PostgreSQL (.ci/postgres.sh; without
                                                 one the page stops there: skipped, or
                                                 failed under CI=true), dropped after
    <!-- docs-test: s3 BUCKET -->               a local S3 (moto, on 127.0.0.1) holding
                                                 BUCKET, for the rest of the page
    <!-- docs-test: before
    shell lines run first, unseen by the reader (the inputs the example names)
    -->

Pages under ``docs/integrations/`` are not collected here: their examples need the
orchestrators' extras and are executed by ``tests/integrations``.

A small collector rather than a doc-testing plugin: the plugins on PyPI run Python
blocks in-process (pytest-markdown-docs, mktestdocs) or compare a shell block's whole
output exactly (pytest-codeblocks); none runs console transcripts with stable-line
matching against a server shared by one page's blocks.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kraiter_sync.emulator import EmulatorConfig
from kraiter_sync.emulator.server import serve_in_thread
from tests.helpers.cloud import AWS_ENV, moto_server, s3_client
from tests.helpers.paths import REPO_ROOT
from tests.helpers.pgstate import fresh_schema

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
RUN = {"bash", "sh", "console", "python"}
SHOWN = {"toml", "ini", "cron", "text", "pyi", "json"}
MAX_SKIPS = 8  # every skip is a block no test runs: keep the list short (7 today)
KEY = "kr_docs_example"

_FENCE = re.compile(r"^( *)```(\S*)[^\n]*\n(.*?)^\1```[ \t]*$", re.M | re.S)
_DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(.*?)-->", re.S)
_VARYING = re.compile(r"\d[\d,]*(?:\.\d+)? ?(?:s\b|rows/s|requests/s)")


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    text: str
    directives: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO_ROOT)}:{self.line}"

    def directive(self, name: str) -> str | None:
        for d in self.directives:
            if d == name or d.startswith((name + " ", name + "\n")):
                return d[len(name) :].strip()
        return None


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found = []
    for m in _FENCE.finditer(text):
        indent = m.group(1)
        body = "\n".join(ln.removeprefix(indent) for ln in m.group(3).splitlines()) + "\n"
        before = text[: m.start()].rstrip()
        directives = []
        while before.endswith("-->"):
            start = before.rfind("<!--")
            d = _DIRECTIVE.fullmatch(before[start:])
            if d is None:
                break
            directives.insert(0, d.group(1).strip())
            before = before[:start].rstrip()
        line = text.count("\n", 0, m.start()) + 1
        found.append(Block(page, line, m.group(2), body, directives))
    return found


def all_blocks() -> list[Block]:
    return [b for page in PAGES for b in blocks(page)]


def _pattern(shown: str) -> re.Pattern[str]:
    parts = re.split(r"(…|" + _VARYING.pattern + ")", shown.strip())
    regex = "".join(".*?" if i % 2 else re.escape(p) for i, p in enumerate(parts) if p is not None)
    return re.compile(regex)


def _check_output(block: Block, command: str, shown: list[str], printed: str) -> None:
    lines = printed.splitlines()
    at = 0
    for want in (s for s in shown if s.strip()):
        pattern = _pattern(want)
        for i in range(at, len(lines)):
            if pattern.search(lines[i]):
                at = i + 1
                break
        else:
            pytest.fail(
                f"{block.where}: `{command}` did not print, in order:\n  {want}\n"
                f"it printed:\n{printed}"
            )


@dataclass
class Reader:
    """A reader working through one page: a directory, an environment, a Kraiter."""

    cwd: Path
    env: dict[str, str]
    cleanup: contextlib.ExitStack

    def sh(
        self,
        script: str,
        *,
        timeout: float = 120,
        typed: bool = False,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``script`` with bash: stopping at the first failure, or ``typed`` at a prompt
        (no ``-e``; stderr into stdout, as a terminal shows them)."""
        strict = [] if typed else ["-e", "-o", "pipefail"]
        merged = typed
        return subprocess.run(
            ["bash", *strict, "-c", script],
            cwd=self.cwd,
            env=env or self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merged else subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run(self, block: Block) -> None:
        before = block.directive("before")
        if before:
            done = self.sh(before)
            assert done.returncode == 0, f"{block.where}: set-up failed:\n{done.stderr}"
        expected = int(block.directive("exit") or 0)
        instead = block.directive("instead")
        bucket = block.directive("s3")
        if bucket:
            endpoint = self.cleanup.enter_context(moto_server())
            s3_client(endpoint).create_bucket(Bucket=bucket)
            self.env.update(AWS_ENV, AWS_ENDPOINT_URL=endpoint, AWS_EC2_METADATA_DISABLED="true")
        env = self.env
        if block.directive("postgres") is not None:
            env = {**self.env, "STATE_URL": self.cleanup.enter_context(fresh_schema())}
        if block.lang in {"bash", "sh"}:
            script = instead.rsplit(" because ", 1)[0] if instead else block.text
            done = self.sh(script, env=env)
            assert done.returncode == expected, (
                f"{block.where}: exit {done.returncode}, not {expected}\n{done.stdout}{done.stderr}"
            )
        elif block.lang == "console":
            self._transcript(block, expected)
        elif block.lang == "python":
            done = subprocess.run(
                [sys.executable, "-c", block.text],
                cwd=self.cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == expected, f"{block.where}:\n{done.stdout}{done.stderr}"

    def _transcript(self, block: Block, expected: int) -> None:
        steps: list[tuple[str, list[str]]] = []
        for line in block.text.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
        assert steps, f"{block.where}: a console block without a `$ ` command"
        for n, (command, shown) in enumerate(steps):
            done = self.sh(command, typed=True)
            want = expected if n == len(steps) - 1 else 0
            printed = done.stdout
            assert done.returncode == want, (
                f"{block.where}: `{command}` exited {done.returncode}, not {want}\n{printed}"
            )
            _check_output(block, command, shown, printed)


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[Reader]:
    work = tmp_path / "work"
    shutil.copytree(REPO_ROOT / "sample_data", work / "sample_data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRAITER")}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env["KRAITER_SYNC_HEARTBEAT"] = "0"
    with (
        contextlib.ExitStack() as cleanup,
        serve_in_thread(EmulatorConfig(db_path=str(tmp_path / "kraiter.db"))) as url,
    ):
        env["KRAITER_API_KEY"] = KEY
        env["KRAITER_BASE_URL"] = url
        yield Reader(work, env, cleanup)


def runs(block: Block) -> bool:
    return block.lang in RUN and block.directive("skip") is None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_example_of_the_page_runs(page: Path, reader: Reader) -> None:
    for block in blocks(page):
        if runs(block):
            reader.run(block)


def test_the_collector_finds_the_examples() -> None:
    """A fence the pattern stops matching would silently run nothing: count what runs."""
    found = all_blocks()
    assert sum(runs(b) for b in found) >= 15
    assert sum(b.text.count("\n```") for b in found) == 0, "a fence was read as text"


def test_every_block_names_a_language_the_collector_knows() -> None:
    unknown = [
        f"{b.where}: {b.lang or '(none)'}" for b in all_blocks() if b.lang not in RUN | SHOWN
    ]
    assert unknown == []


def test_skips_are_few_and_each_says_why() -> None:
    skipped = [b for b in all_blocks() if b.directive("skip") is not None]
    for b in skipped:
        assert re.match(r"because \S", b.directive("skip") or ""), f"{b.where}: no reason"
    replaced = [b for b in all_blocks() if b.directive("instead") is not None]
    for b in replaced:
        assert re.search(r"\S because \S", b.directive("instead") or ""), f"{b.where}: no reason"
        assert b.lang in {"bash", "sh"}, f"{b.where}: `instead` is for shell blocks"
    skipped += replaced
    assert len(skipped) <= MAX_SKIPS, [b.where for b in skipped]


def test_a_shown_line_matches_only_what_it_shows() -> None:
    page = REPO_ROOT / "README.md"
    block = Block(page, 1, "console", "")
    _check_output(
        block,
        "x",
        ["exported 12 rows in 0.6 s (20 rows/s) to …/events"],
        ("exported 12 rows in 1.25 s (9,600 rows/s) to out/events\n"),
    )
    with pytest.raises(pytest.fail.Exception):
        _check_output(block, "x", ["exported 13 rows in 0.6 s"], "exported 12 rows in 0.6 s\n")
    with pytest.raises(pytest.fail.Exception):
        _check_output(block, "x", ["b", "a"], "a\nb\n")


def test_markers_are_read_from_the_comments_right_before_a_block(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "Intro.\n\n<!-- docs-test: skip because no account -->\n```bash\nkraiter-sync x\n```\n\n"
        "<!-- docs-test: before\ntouch a.csv\n-->\n<!-- docs-test: exit 3 -->\n"
        "- item\n\n  ```console\n  $ kraiter-sync y\n  out\n  ```\n\n"
        "<!-- docs-test: exit 2 -->\n\nProse between.\n\n```python\nprint(1)\n```\n",
        encoding="utf-8",
    )
    first, second, third = blocks(page)
    assert (first.lang, first.directive("skip"), first.line) == ("bash", "because no account", 4)
    assert second.directive("before") is None  # a list item stands between
    assert (second.lang, second.text) == ("console", "$ kraiter-sync y\nout\n")
    assert third.directives == []  # prose stands between
