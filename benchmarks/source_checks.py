"""What reading sources exactly costs: ``validate`` of CSV and NDJSON events files, this
checkout ÷ a baseline revision, as ratios measured in one run.

This checkout reads NDJSON line by line with Python's ``json`` into columns that keep
each value's type (``sources.ndjson``) where the baseline used polars' NDJSON reader, and
counts the fields of each CSV record in a block that may hold a ragged one
(``sources.ragged``: a block whose last column has nulls). Files, each validated as
``kraiter-sync validate`` does (read, map, validate):

* ``csv``: the shop export of ``typed_csv.py`` (no empty value: no field count);
* ``csv, empty last``: the same with every third value of the last column empty, so
  every block is counted (the worst case);
* ``ndjson``: the same rows as NDJSON, properties as top-level keys.

Each side is best of ``--repeat`` (3), alternating, each run in a fresh subprocess; the
baseline is ``git archive``d into a temporary directory.

    python benchmarks/source_checks.py [--rows 500000] [--baseline main] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from typed_csv import generate  # (the benchmarks directory is no package)

ROOT = Path(__file__).resolve().parent.parent

WORKER = """
import sys, time
sys.path.insert(0, {root!r})
from kraiter_sync import InputOptions, validate_inputs
start = time.perf_counter()
result = validate_inputs([{path!r}], options=InputOptions(kind="events"))
elapsed = time.perf_counter() - start
(report,) = result.reports
assert report.balanced and report.rows_read == {rows}, report
print(elapsed)
"""


def inputs(work: Path, rows: int) -> dict[str, Path]:
    csv = work / f"events-{rows}.csv"
    if not csv.exists():
        generate(csv, rows)
    frame = pl.read_csv(csv, infer_schema=False)
    empty = work / f"events-{rows}-empty-last.csv"
    if not empty.exists():
        last = frame.columns[-1]
        i = pl.int_range(pl.len())
        frame.with_columns(pl.when(i % 3 != 0).then(pl.col(last)).alias(last)).write_csv(empty)
    ndjson = work / f"events-{rows}.ndjson"
    if not ndjson.exists():
        pl.read_csv(csv).write_ndjson(ndjson)
    return {"csv": csv, "csv, empty last": empty, "ndjson": ndjson}


def run(root: Path, path: Path, rows: int) -> float:
    code = WORKER.format(root=str(root), path=str(path), rows=rows)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", default="main", help="git revision to compare with")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="source-checks-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        files = inputs(work, args.rows)
        before = Path(tmp) / "before"
        before.mkdir()
        archive = subprocess.run(
            ["git", "archive", args.baseline], cwd=ROOT, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True)
        best = {(name, side): float("inf") for name in files for side in ("before", "now")}
        for _ in range(args.repeat):
            for name, path in files.items():
                for side, root in (("before", before), ("now", ROOT)):
                    seconds = run(root, path, args.rows)
                    best[name, side] = min(best[name, side], seconds)
    print(f"validate {args.rows:,} rows, best of {args.repeat} ({args.baseline} -> this checkout):")
    for name in files:
        was, now = best[name, "before"], best[name, "now"]
        print(f"  {name:16} {was:6.2f} s -> {now:6.2f} s  {now / was:.2f}x")


if __name__ == "__main__":
    main()
