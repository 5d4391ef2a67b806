"""What typing CSV values costs: ``validate`` of a CSV events file, this checkout ÷ an
earlier one (before values read as text were typed), as ratios measured in one run.

Sides, each best of ``--repeat`` (3), alternating, each in a fresh subprocess:

* ``before``: the ``--baseline`` git revision (default: the commit before typing), via
  ``git archive`` into a temporary directory;
* ``typed``: this checkout, as ``kraiter-sync validate`` runs it;
* ``typed+legacy``: this checkout computing version-1 keys too, as ``import`` does for
  a target whose ledger predates typing (``ValidationOptions.legacy_keys``).

The file has the columns of a shop export: email, event, timestamp, and six property
columns, four of which hold numbers or booleans (so most values are typed).

    python benchmarks/typed_csv.py [--rows 1000000] [--baseline REV] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent

WORKER = """
import sys, time, dataclasses
sys.path.insert(0, {root!r})
from kraiter_sync import InputOptions, ValidationOptions, validate_inputs  # public: any layout
options = InputOptions()
if {legacy}:
    options = dataclasses.replace(options, validation=ValidationOptions(legacy_keys=True))
start = time.perf_counter()
result = validate_inputs([{path!r}], options=options)
elapsed = time.perf_counter() - start
(report,) = result.reports
assert report.balanced and report.rows_read == {rows}, report
print(elapsed)
"""


def generate(path: Path, rows: int) -> None:
    i = pl.int_range(0, rows, dtype=pl.Int64, eager=True).alias("i")
    frame = i.to_frame().select(
        email=pl.format("user{}@example{}.com", pl.col("i") * 7919 % 200_000, pl.col("i") % 50),
        event=pl.lit(["signup", "page_view", "purchase", "login"]).list.get(pl.col("i") % 4),
        timestamp=(pl.lit(1_700_000_000_000_000) + pl.col("i") * 1_000_003)
        .cast(pl.Datetime("us", "UTC"))
        .dt.to_string("%Y-%m-%dT%H:%M:%S%.3fZ"),
        amount=pl.format("{}.{}", pl.col("i") % 500, pl.col("i") % 90 + 10),
        count=(pl.col("i") % 37).cast(pl.String),
        vip=pl.when(pl.col("i") % 3 == 0).then(pl.lit("true")).otherwise(pl.lit("false")),
        zip=pl.format("0{}", pl.col("i") % 9000 + 1000),
        plan=pl.lit(["free", "pro", "team"]).list.get(pl.col("i") % 3),
        ratio=(pl.col("i") % 1000 / 1000).cast(pl.String),
    )
    frame.write_csv(path)


def run(root: Path, path: Path, rows: int, *, legacy: bool) -> float:
    code = WORKER.format(root=str(root), path=str(path), rows=rows, legacy=legacy)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", default="353091a", help="git revision before typing")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="typed-csv-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        path = work / f"events-{args.rows}.csv"
        if not path.exists():
            generate(path, args.rows)
        before = Path(tmp) / "before"
        before.mkdir()
        archive = subprocess.run(
            ["git", "archive", args.baseline], cwd=ROOT, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True)
        sides = {
            "before": (before, False),
            "typed": (ROOT, False),
            "typed+legacy": (ROOT, True),
        }
        best = dict.fromkeys(sides, float("inf"))
        for _ in range(args.repeat):
            for name, (root, legacy) in sides.items():
                best[name] = min(best[name], run(root, path, args.rows, legacy=legacy))
        size = path.stat().st_size / 2**20
    print(f"validate {args.rows:,} CSV rows ({size:.0f} MiB), best of {args.repeat}:")
    for name, seconds in best.items():
        ratio = seconds / best["before"]
        print(f"  {name:13} {seconds:6.2f} s  {args.rows / seconds:>10,.0f} rows/s  {ratio:.2f}x")


if __name__ == "__main__":
    main()
