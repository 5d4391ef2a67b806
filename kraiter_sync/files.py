"""Spreadsheet-formula neutralisation for CSV cells (CSV injection, OWASP).

A cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as a
formula by Excel, LibreOffice and Google Sheets. Every CSV file kraiter-sync writes (rejects,
exports) passes its string columns through :func:`neutralise_expr` so that opening it in a
spreadsheet is safe: such cells get a leading apostrophe, the spreadsheet convention for
"this is text".
"""

from __future__ import annotations

import polars as pl

__all__ = ["FORMULA_PREFIXES", "neutralise", "neutralise_expr", "neutralise_frame"]

#: Characters that make a spreadsheet evaluate a cell.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

_PATTERN = r"^[=+\-@\t\r]"


def neutralise(value: str) -> str:
    """Prefix ``'`` to a single cell value that a spreadsheet would evaluate."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def neutralise_expr(expr: pl.Expr) -> pl.Expr:
    """The vectorised form of :func:`neutralise` for a Utf8 expression (nulls stay null)."""
    return pl.when(expr.str.contains(_PATTERN)).then(pl.lit("'") + expr).otherwise(expr)


def neutralise_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Neutralise every Utf8 column of ``frame``; other columns are left as they are."""
    return frame.with_columns(
        neutralise_expr(pl.col(name)).alias(name)
        for name, dtype in frame.schema.items()
        if dtype == pl.String
    )
