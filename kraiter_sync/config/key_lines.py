"""Where keys are in a ``kraiter-sync.toml`` text: TOML parsers do not report where a
*value* sits, so :class:`LineIndex` scans the text lightly (table headers and ``key =``
lines, skipping multi-line strings) for ``config.file`` to name the line of every key."""

from __future__ import annotations

import re

__all__ = ["LineIndex"]

_HEADER = re.compile(r"^\s*\[(?!\[)\s*(.+?)\s*\]\s*(?:#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)
_PART = re.compile(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""")


def _dotted(text: str) -> tuple[str, ...]:
    return tuple(p.strip("\"'") for p in _PART.findall(text))


class LineIndex:
    """Line numbers (1-based) of table headers and ``key =`` lines, by full key path."""

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        in_string: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if in_string is not None:
                if line.count(in_string) % 2 == 1:
                    in_string = None
                continue
            header = _HEADER.match(line)
            if header:
                table = _dotted(header.group(1))
                self.lines.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if key:
                path = table + _dotted(key.group(1))
                self.lines.setdefault(path, number)
                self.lines.setdefault(path[:-1], number)  # dotted keys define tables too
                rest = line[key.end() :]
                for quote in ('"""', "'''"):
                    if rest.count(quote) % 2 == 1:
                        in_string = quote
                        break

    def line(self, *path: str) -> int | None:
        """The line of ``path``, else of the nearest enclosing table that has one."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None
